"""Benchmark: top-k Hessian eigenvalues of an RNN loss, dynatools' Lanczos against power iteration
with deflation (PyHessian's method), counted in Hessian-vector products at equal accuracy.

Measured: the k largest-magnitude eigenvalues (default k = 20) of the Hessian of a leaky RNN's
loss (``trainers.LeakyRNN(units, n_heads=N_max - 1, fused=False)`` in float64, default 100
units) at its initial weights, with respect to all of its trainable parameters (a dict of named
parameters, ~12k for 100 units). The loss is the summed (over heads) batch-mean cross-entropy of
the last-step readout on ONE fixed N-parity batch (N = 2..N_max) drawn by
``trainers.Parity().sample`` with a seeded generator, as in ``trainers.engine._loop``.

- ours: ``dynatools.hessian.hessian_eigenvalues(loss, params, k=k, which="LM", tol=tol)``
  (implicitly restarted Lanczos, scipy ``eigsh``); its HVPs are ``attrs["n_hvp"]``.
- baseline: power iteration with deflation as PyHessian does it (amirgholami/PyHessian,
  ``pyhessian/hessian.py``, ``hessian.eigenvalues(maxIter=100, tol, top_n)``): for each
  eigenvalue in turn, start from a random unit vector; at every iteration orthonormalise it
  against the eigenvectors already found (Gram-Schmidt), take ``Hv``, the Rayleigh quotient
  ``v . Hv`` as the eigenvalue estimate, ``v = Hv / |Hv|``; stop when the relative change of the
  estimate ``|old - new| / (|old| + 1e-6) < tol`` (keeping, as PyHessian does, the previous
  estimate) or after ``max_iter`` iterations; store the eigenvalue and ``v``. Written here in
  numpy on a flat float64 vector.

Fairness: both use the SAME Hessian-vector product, ``dynatools.hessian._Flat.hvp_numpy``
(``torch.func`` forward-over-reverse on the flat float64 parameter vector), which counts every
call, so HVP counts are comparable one to one; both run on the same loss, batch and weights.
Power iteration finds eigenvalues of largest magnitude, so ours is run with ``which="LM"`` and
both are compared with the reference's largest-magnitude eigenvalues, each list sorted by
decreasing magnitude. Accuracy = max over the k eigenvalues of ``|lambda - ref| / |ref|``.

Reference eigenvalues: the dense Hessian (``method="dense"``, ``torch.func.hessian`` and
``numpy.linalg.eigh``) when it has at most ``--dense-max`` parameters (default 3000); above
that (100 units: ~12k parameters, a 1.1 GiB matrix that ``torch.func.hessian`` would build by
vmapping ~12k tangents through the whole unrolled RNN: far too much memory and time) the
best-converged Lanczos run (``tol=0``, another start vector), whose Ritz pairs are checked by
their residuals ``|H v - lambda v| / |lambda|`` (extra HVPs, not counted for anyone).
When the dense Hessian is used, the ``tol=0`` Lanczos run is compared with it too.

Procedure: for each method a short list of tolerances is tried from loose to tight; the first
whose k eigenvalues are all within ``--accuracy`` (default 1e-3) of the reference is the one
reported; the ratio is ours' HVPs / power iteration's HVPs at that accuracy (goal: <= 1/3).
Wall times are single runs (one untimed HVP warms up first); HVP counts are deterministic.

Run: ``python benchmarks/bench_hessian.py [--units 100] [--k 20] [--batch 64] [--seed 0]
[--accuracy 1e-3] [--n-max 10] [--length L] [--max-iter 100] [--dense-max 3000]
[--ours-tols "0.1 0.03 ..."] [--power-tols "1e-2 3e-3 ..."] [--threads T]``
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call

import trainers
from dynatools.hessian import _Flat, hessian_eigenvalues

OURS_TOLS = (1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 1e-4, 1e-5, 1e-6, 0.0)
POWER_TOLS = (1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 3e-6, 1e-6)


# ------------------------------------------------------------------------------------ problem
def make_problem(args):
    """(loss_fn, params, info) for one fixed parity batch and a float64 LeakyRNN."""
    Ns = list(range(2, args.n_max + 1))
    model = trainers.LeakyRNN(args.units, n_heads=len(Ns), fused=False,
                              generator=torch.Generator().manual_seed(args.seed)).double()
    g = torch.Generator().manual_seed(args.seed + 1)
    b = trainers.Parity().sample(Ns, args.batch, generator=g, length=args.length)
    u = b.inputs.to(torch.float64)                                    # (batch, time, 1)
    labels = b.labels                                                 # (batch, head)
    h0 = model.initial_state(args.batch, generator=g)                 # float64 (model dtype)
    params = {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}
    head_names = ("heads.weight", "heads.bias")

    def loss_fn(p):
        H = functional_call(model, p, (u, h0))                        # (batch, time, unit)
        logits = functional_call(model.heads, {"weight": p[head_names[0]], "bias": p[head_names[1]]},
                                 (H[:, -1],))                         # (batch, head, class)
        return F.cross_entropy(logits.transpose(1, 2), labels, reduction="none").mean(0).sum()

    info = {"heads": len(Ns), "length": u.shape[1], "n_params": sum(v.numel() for v in params.values())}
    return loss_fn, params, info


# ------------------------------------------------------------------------ power iteration
def _orthonormal(w, vecs):
    """PyHessian's ``orthnormal``: subtract the projections on vecs one by one, normalise."""
    for v in vecs:
        w = w - (w @ v) * v
    return w / np.linalg.norm(w)


def power_iteration(hvp, n, k, tol, max_iter=100, seed=0):
    """Top-k eigenvalues by power iteration with deflation, as PyHessian's
    ``hessian.eigenvalues(maxIter, tol, top_n)``; returns (eigenvalues, iterations per eigenvalue)."""
    rng = np.random.default_rng(seed)
    vals, vecs, iters = [], [], []
    for _ in range(k):
        lam = None
        v = rng.standard_normal(n)
        v = v / np.linalg.norm(v)
        it = 0
        for it in range(1, max_iter + 1):
            v = _orthonormal(v, vecs)
            Hv = hvp(v)
            new = float(Hv @ v)
            v = Hv / np.linalg.norm(Hv)
            if lam is None:
                lam = new
            elif abs(lam - new) / (abs(lam) + 1e-6) < tol:
                break
            else:
                lam = new
        vals.append(lam)
        vecs.append(v)
        iters.append(it)
    return np.asarray(vals), iters


# ----------------------------------------------------------------------------------- runs
def by_magnitude(w):
    w = np.asarray(w, dtype=float)
    return w[np.argsort(-np.abs(w), kind="stable")]


def max_rel_err(vals, ref):
    vals, ref = by_magnitude(vals), by_magnitude(ref)
    return float(np.max(np.abs(vals - ref) / np.abs(ref)))


def run_ours(loss_fn, params, k, tol, seed):
    t0 = time.perf_counter()
    res = hessian_eigenvalues(loss_fn, params, k=k, which="LM", tol=tol, seed=seed)
    wall = time.perf_counter() - t0
    return res.hessian_eigenvalue.values, int(res.attrs["n_hvp"]), wall


def run_power(loss_fn, params, k, tol, max_iter, seed):
    flat = _Flat(loss_fn, params)
    t0 = time.perf_counter()
    vals, iters = power_iteration(flat.hvp_numpy, flat.n, k, tol, max_iter=max_iter, seed=seed)
    wall = time.perf_counter() - t0
    return vals, flat.n_hvp, wall, iters


def reference(loss_fn, params, k, n_params, args):
    """(ref eigenvalues, description, extra report lines)."""
    lines = []
    t0 = time.perf_counter()
    lz = hessian_eigenvalues(loss_fn, params, k=k, which="LM", tol=0.0, seed=args.seed + 1000,
                             return_eigenvectors=True)
    t_lz = time.perf_counter() - t0
    lz_vals = lz.hessian_eigenvalue.values
    # residual check of the tol=0 Ritz pairs
    flat = _Flat(loss_fn, params)
    V = lz.eigenvector.values
    res = [np.linalg.norm(flat.hvp_numpy(v) - lam * v) / (abs(lam) * np.linalg.norm(v))
           for lam, v in zip(lz_vals, V)]
    lines.append(f"Lanczos tol=0 (start seed {args.seed + 1000}): {lz.attrs['n_hvp']} HVPs, "
                 f"{t_lz:.1f} s; max relative residual |Hv - lambda v| / |lambda| = {max(res):.1e}")
    if n_params <= args.dense_max:
        t0 = time.perf_counter()
        dense = hessian_eigenvalues(loss_fn, params, k=k, which="LM", method="dense")
        t_d = time.perf_counter() - t0
        ref = dense.hessian_eigenvalue.values
        lines.append(f"dense Hessian ({n_params} x {n_params}): {t_d:.1f} s; Lanczos tol=0 vs dense: "
                     f"max relative difference {max_rel_err(lz_vals, ref):.1e}")
        return ref, "dense Hessian (torch.func.hessian + numpy eigh)", lines
    lines.append(f"dense Hessian skipped: {n_params} parameters > --dense-max {args.dense_max} "
                 f"(a {n_params}^2 float64 matrix = {n_params**2 * 8 / 2**30:.1f} GiB, and "
                 f"torch.func.hessian vmaps {n_params} tangents through the RNN)")
    return lz_vals, "best-converged Lanczos (eigsh tol=0), residual-checked", lines


def sweep(name, tols, run, ref, accuracy):
    """Try tolerances loose -> tight; return (rows, first row reaching accuracy or None)."""
    rows, hit = [], None
    for tol in tols:
        out = run(tol)
        err = max_rel_err(out[0], ref)
        row = {"method": name, "tol": tol, "vals": out[0], "n_hvp": out[1], "wall": out[2],
               "err": err, "ok": err <= accuracy, "extra": out[3:]}
        rows.append(row)
        v, r = by_magnitude(out[0]), by_magnitude(ref)
        i = int(np.argmax(np.abs(v - r) / np.abs(r)))
        print(f"  {name:<16} tol={tol:<7g} HVPs {row['n_hvp']:>6}  {row['wall']:7.1f} s  "
              f"max rel err {err:.1e}  {'OK' if row['ok'] else '-'}  (worst: #{i} {v[i]:.4g} vs "
              f"ref {r[i]:.4g})", flush=True)
        if row["ok"]:
            hit = row
            break
    return rows, hit


def parse_floats(text):
    return tuple(float(v) for v in text.replace(",", " ").split())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--units", type=int, default=100)
    ap.add_argument("--k", type=int, default=20, help="number of eigenvalues (largest magnitude)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0, help="weights, batch and start vectors")
    ap.add_argument("--accuracy", type=float, default=1e-3,
                    help="max relative error of every eigenvalue against the reference")
    ap.add_argument("--n-max", type=int, default=10, help="parity heads N = 2..N_max")
    ap.add_argument("--length", type=int, default=None,
                    help="sequence length (default: drawn from Parity.length_range(N_max), seeded)")
    ap.add_argument("--max-iter", type=int, default=100,
                    help="power iterations per eigenvalue at most (PyHessian's default 100)")
    ap.add_argument("--dense-max", type=int, default=3000,
                    help="largest parameter count for the dense-Hessian reference")
    ap.add_argument("--ours-tols", default=None,
                    help="eigsh tolerances to try, loose to tight (default "
                         + " ".join(map(str, OURS_TOLS)) + ")")
    ap.add_argument("--power-tols", default=None,
                    help="power-iteration tolerances to try, loose to tight (default "
                         + " ".join(map(str, POWER_TOLS)) + ")")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if min(args.units, args.k, args.batch, args.max_iter) < 1 or args.n_max < 2 or not args.accuracy > 0:
        ap.error("need units, k, batch, max-iter >= 1, n-max >= 2, accuracy > 0")
    try:
        ours_tols = parse_floats(args.ours_tols) if args.ours_tols else OURS_TOLS
        power_tols = parse_floats(args.power_tols) if args.power_tols else POWER_TOLS
    except ValueError as exc:
        ap.error(f"bad tolerance list: {exc}")
    if min(ours_tols + power_tols) < 0:
        ap.error("tolerances must be >= 0")
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    loss_fn, params, info = make_problem(args)
    n = info["n_params"]
    if args.k >= n - 1:
        ap.error(f"k={args.k} must be below n_params - 1 = {n - 1}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"python {platform.python_version()}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), device cpu")
    print(f"setup: LeakyRNN {args.units} units (fused=False, float64), {info['heads']} heads "
          f"(N = 2..{args.n_max}), parity batch {args.batch} x length {info['length']}, seed "
          f"{args.seed}; n_params = {n}; top-{args.k} largest-magnitude eigenvalues; accuracy "
          f"{args.accuracy:g} relative; power iteration max_iter {args.max_iter}", flush=True)

    flat = _Flat(loss_fn, params)
    flat.hvp_numpy(np.ones(n))                                        # warm-up, untimed
    ts = []
    for _ in range(3):
        t0 = time.perf_counter()
        flat.hvp_numpy(np.random.default_rng(0).standard_normal(n))
        ts.append(time.perf_counter() - t0)
    t_hvp = float(np.median(ts))
    print(f"one HVP: {t_hvp * 1e3:.1f} ms (median of 3)", flush=True)

    ref, ref_desc, ref_lines = reference(loss_fn, params, args.k, n, args)
    print(f"reference: {ref_desc}")
    print("\n".join("  " + s for s in ref_lines))
    r = by_magnitude(ref)
    print(f"  reference eigenvalues: {', '.join(f'{x:.4g}' for x in r)}", flush=True)

    print("sweep (loose -> tight; stops at the first tolerance reaching the accuracy):")
    ours_rows, ours = sweep("ours (Lanczos)", ours_tols,
                            lambda tol: run_ours(loss_fn, params, args.k, tol, args.seed), ref, args.accuracy)
    power_rows, power = sweep("power iteration", power_tols,
                              lambda tol: run_power(loss_fn, params, args.k, tol, args.max_iter, args.seed),
                              ref, args.accuracy)
    if power is not None:
        iters = power["extra"][0]
        capped = sum(i == args.max_iter for i in iters)
        print(f"  power iteration at tol={power['tol']:g}: iterations per eigenvalue "
              f"{', '.join(map(str, iters))} ({capped} stopped at max_iter)")

    print()
    print(f"| method | tol | HVPs | wall s | max rel err | within {args.accuracy:g} |")
    print("|---|---:|---:|---:|---:|---|")
    for name, row, tried in (("ours (Lanczos, eigsh LM)", ours, ours_rows),
                             ("power iteration + deflation", power, power_rows)):
        if row is not None:
            print(f"| {name} | {row['tol']:g} | {row['n_hvp']} | {row['wall']:.1f} | "
                  f"{row['err']:.1e} | yes |")
        else:
            best = min(tried, key=lambda x: x["err"])
            print(f"| {name} | none in list (best: {best['tol']:g}) | {best['n_hvp']} | "
                  f"{best['wall']:.1f} | {best['err']:.1e} | not reached |")
    print()
    if ours is not None and power is not None:
        ratio = ours["n_hvp"] / power["n_hvp"]
        print(f"n_params {n}: HVP ratio ours / power iteration = {ours['n_hvp']} / {power['n_hvp']} "
              f"= {ratio:.3f} (goal <= 0.333: {'met' if ratio <= 1 / 3 else 'NOT met'}); wall-time "
              f"ratio {ours['wall'] / power['wall']:.3f}")
    else:
        missing = [nm for nm, row in (("ours", ours), ("power iteration", power)) if row is None]
        print(f"n_params {n}: accuracy {args.accuracy:g} not reached by {' and '.join(missing)} "
              f"within the tolerance list" + (f" (max_iter {args.max_iter})" if power is None else "")
              + "; no ratio at equal accuracy")
    print(f"reference: {ref_desc}; HVPs counted by the same dynatools.hessian._Flat.hvp_numpy; "
          f"wall times are single runs on a possibly shared machine")


if __name__ == "__main__":
    main()
