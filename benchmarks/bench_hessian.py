"""Benchmark: top-k Hessian eigenvalues of an RNN loss. dynatools (ARPACK's implicitly restarted
Lanczos, ``scipy.sparse.linalg.eigsh``, on Hessian-vector products) against two baselines:

1. SAME ALGORITHM (the headline): what a user writes with scipy and torch alone: ``eigsh`` on a
   ``scipy.sparse.linalg.LinearOperator`` whose matvec is a plain
   ``torch.autograd.functional.hvp`` of the loss (reverse-over-reverse, as its docs describe), and
   the same with ``torch.autograd.functional.vhp`` (which those docs recommend for a twice
   differentiable function: for a symmetric Hessian ``v^T H = (H v)^T``), and as an expert
   writes it: the gradient ``g`` computed once with ``create_graph=True`` and each product one
   ``torch.autograd.grad(g, x, v, retain_graph=True)`` (one double backward, no new forward
   pass; "graph"). Same ARPACK, same
   ``which="LM"``, same start vector, so the same iterations and (nearly) the same number of
   HVPs; what differs is the cost of each HVP and the code around it. Compared in WALL TIME at
   equal accuracy (median over ``--repeats`` alternating rounds).
2. DIFFERENT ALGORITHM: power iteration with deflation as PyHessian does it
   (amirgholami/PyHessian, ``pyhessian/hessian.py``, ``hessian.eigenvalues(maxIter=100, tol,
   top_n)``): for each eigenvalue in turn, start from a random unit vector; at every iteration
   orthonormalise it against the eigenvectors already found (Gram-Schmidt), take ``Hv``, the
   Rayleigh quotient ``v . Hv`` as the eigenvalue estimate, ``v = Hv / |Hv|``; stop when the
   relative change of the estimate ``|old - new| / (|old| + 1e-6) < tol`` (keeping, as PyHessian
   does, the previous estimate) or after ``max_iter`` iterations; store the eigenvalue and ``v``.
   Written here in numpy on a flat float64 vector, with dynatools' own HVP
   (``dynatools.hessian._Flat.hvp_numpy``, ``torch.func`` forward-over-reverse, counted), so the
   HVP counts of ours and of power iteration compare one to one. This measures the choice of
   algorithm (Lanczos vs power iteration), not the implementation; compared in HVPs (single
   run: the counts are deterministic).

Measured: the k largest-magnitude eigenvalues (default k = 5) of the Hessian of a leaky RNN's loss
(``trainers.LeakyRNN(units, n_heads=N_max - 1, fused=False)`` in float64, default 20 units, 858
parameters) at its initial weights, with respect to all of its trainable parameters (a dict of
named parameters). The loss is the summed (over heads) batch-mean cross-entropy of the
last-step readout on ONE fixed N-parity batch (N = 2..N_max) drawn by ``trainers.Parity().sample``
with a seeded generator, as in ``trainers.engine._loop``.

- ours: ``dynatools.hessian.hessian_eigenvalues(loss, params, k=k, which="LM", tol=tol, seed=s)``;
  its HVPs are ``attrs["n_hvp"]``.
- user eigsh (hvp / vhp / graph): the loss as a function of one flat float64 vector (``torch.split`` +
  ``view`` back into the dict), ``eigsh(LinearOperator(matvec=...), k, which="LM", tol,
  v0=np.random.default_rng(s).standard_normal(n), return_eigenvectors=False)``: the start vector
  ours draws for seed s; HVPs counted in the matvec.

Accuracy = max over the k eigenvalues of ``|lambda - ref| / |ref|``, both lists sorted by
decreasing magnitude. Reference: the dense Hessian (``method="dense"``, ``torch.func.hessian``
and ``numpy.linalg.eigh``) when it has at most ``--dense-max`` parameters (default 3000);
above that (100 units: ~12k parameters, a 1.1 GiB matrix that ``torch.func.hessian`` would build
by vmapping ~12k tangents through the whole unrolled RNN) the best-converged Lanczos run
(``tol=0``, another start vector), whose Ritz pairs are checked by their residuals
``|H v - lambda v| / |lambda|`` (extra HVPs, not counted for anyone). When the dense Hessian is
used, the ``tol=0`` Lanczos run is compared with it too.

Procedure: for each method a short list of tolerances is tried from loose to tight; the first
whose k eigenvalues are all within ``--accuracy`` (default 1e-3) of the reference is kept. Then
ours and the two user-eigsh baselines run again at their kept tolerances for ``--repeats``
rounds (default 3), in an order reversed every other round; median wall times are reported, and
every timed run is checked against the reference again. Ratios: same algorithm = baseline wall
time / ours (> 1: ours faster); different algorithm = ours' HVPs / power iteration's HVPs at the
same accuracy (the issue's goal: <= 1/3), with the wall-time ratio beside it.

Threads: all methods run with the same number of torch threads (``dynatools.threads
.torch_threads``): ``--threads N``, else what the project's thread policy picks for the work of
one step of the network (``2 * batch * n_params`` flop: one thread at the default and paper
sizes); ``OMP_WAIT_POLICY=PASSIVE`` is set before torch loads unless the environment sets one.

Sizes: the defaults (20 units, k = 5) finish in a few minutes on 2 cores. The paper-size setting
of ``docs/benchmarks.md`` is ``--units 100 --k 20`` (~12k parameters; power iteration alone
spends thousands of HVPs: many minutes), and ``--units 30 --k 20`` sits in between.

Run: ``python benchmarks/bench_hessian.py [--units 20] [--k 5] [--batch 64] [--seed 0]
[--accuracy 1e-3] [--n-max 10] [--length L] [--max-iter 100] [--dense-max 3000] [--repeats 3]
[--ours-tols "0.1 0.03 ..."] [--power-tols "1e-2 3e-3 ..."] [--no-power] [--threads T]``
"""

from __future__ import annotations

# The thread policy must see the environment before torch is imported.
from dynatools.threads import choose_threads, prefer_passive_waiting, set_threads, torch_threads

prefer_passive_waiting()

import argparse  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from scipy.sparse.linalg import LinearOperator, eigsh  # noqa: E402
from torch.func import functional_call  # noqa: E402

import trainers  # noqa: E402
from dynatools.hessian import _Flat, hessian_eigenvalues  # noqa: E402

OURS_TOLS = (1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 1e-4, 1e-5, 1e-6, 0.0)
POWER_TOLS = (1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 3e-6, 1e-6)
USER_HVPS = ("hvp", "vhp", "graph")


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


def run_user(loss_fn, params, k, tol, seed, kind):
    """ARPACK as a user calls it: eigsh on a LinearOperator whose matvec is
    ``torch.autograd.functional.hvp`` (kind "hvp"), ``vhp`` ("vhp") or one double backward
    through the gradient's graph, built once ("graph"), of the loss of one flat parameter vector."""
    t0 = time.perf_counter()
    names = list(params)
    shapes = [params[name].shape for name in names]
    sizes = [params[name].numel() for name in names]
    x0 = torch.cat([params[name].detach().reshape(-1) for name in names])
    n = x0.numel()

    def flat_loss(x):
        return loss_fn({name: part.view(shape) for name, part, shape in zip(names, torch.split(x, sizes), shapes)})

    count = 0
    if kind == "graph":              # the gradient's graph built once, one double backward per product
        x = x0.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(flat_loss(x), x, create_graph=True)

        def product(v):
            return torch.autograd.grad(g, x, v, retain_graph=True)[0]
    else:
        fn = torch.autograd.functional.hvp if kind == "hvp" else torch.autograd.functional.vhp

        def product(v):
            return fn(flat_loss, x0, v)[1]

    def matvec(v):
        nonlocal count
        count += 1
        return product(torch.as_tensor(np.ascontiguousarray(v).reshape(-1), dtype=x0.dtype)).detach().numpy()

    op = LinearOperator((n, n), matvec=matvec, dtype=np.float64)
    v0 = np.random.default_rng(seed).standard_normal(n)       # the start vector ours draws for this seed
    vals = eigsh(op, k=k, which="LM", tol=tol, v0=v0, return_eigenvectors=False)
    wall = time.perf_counter() - t0
    return by_magnitude(vals), count, wall


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


def load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--units", type=int, default=20, help="paper size: 100 (with --k 20)")
    ap.add_argument("--k", type=int, default=5, help="number of eigenvalues (largest magnitude)")
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
    ap.add_argument("--repeats", type=int, default=3,
                    help="alternating timed rounds of ours and the user-eigsh baselines (medians)")
    ap.add_argument("--ours-tols", default=None,
                    help="eigsh tolerances to try for ours and the user-eigsh baselines, loose to tight "
                         "(default " + " ".join(map(str, OURS_TOLS)) + ")")
    ap.add_argument("--power-tols", default=None,
                    help="power-iteration tolerances to try, loose to tight (default "
                         + " ".join(map(str, POWER_TOLS)) + ")")
    ap.add_argument("--no-power", action="store_true", help="skip the power-iteration baseline")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads for every method (default: the dynatools.threads policy)")
    args = ap.parse_args()
    if (min(args.units, args.k, args.batch, args.max_iter, args.repeats) < 1 or args.n_max < 2
            or not args.accuracy > 0):
        ap.error("need units, k, batch, max-iter, repeats >= 1, n-max >= 2, accuracy > 0")
    if args.threads is not None and args.threads < 1:
        ap.error("--threads must be >= 1")
    try:
        ours_tols = parse_floats(args.ours_tols) if args.ours_tols else OURS_TOLS
        power_tols = parse_floats(args.power_tols) if args.power_tols else POWER_TOLS
    except ValueError as exc:
        ap.error(f"bad tolerance list: {exc}")
    if min(ours_tols + power_tols) < 0:
        ap.error("tolerances must be >= 0")

    loss_fn, params, info = make_problem(args)
    n = info["n_params"]
    if args.k >= n - 1:
        ap.error(f"k={args.k} must be below n_params - 1 = {n - 1}")
    work = 2.0 * args.batch * n                      # dynatools.threads.step_work of the network
    n_threads = args.threads if args.threads is not None else choose_threads(work)
    how = "--threads" if args.threads is not None else f"dynatools.threads policy for {work:.2g} flop/step"
    set_threads(n_threads)
    with torch_threads(n_threads):
        bench(args, loss_fn, params, info, ours_tols, power_tols, n_threads, how)


def bench(args, loss_fn, params, info, ours_tols, power_tols, n_threads, how) -> None:
    n = info["n_params"]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average "
          f"{load()}, python {platform.python_version()}, torch {torch.__version__}, device cpu")
    print(f"threads: torch {torch.get_num_threads()} (= {n_threads}, from {how}); OMP_WAIT_POLICY="
          f"{os.environ.get('OMP_WAIT_POLICY', '(unset)')}")
    print(f"setup: LeakyRNN {args.units} units (fused=False, float64), {info['heads']} heads "
          f"(N = 2..{args.n_max}), parity batch {args.batch} x length {info['length']}, seed "
          f"{args.seed}; n_params = {n}; top-{args.k} largest-magnitude eigenvalues; accuracy "
          f"{args.accuracy:g} relative; power iteration max_iter {args.max_iter}", flush=True)
    print("compared: (1) SAME algorithm: ours (ARPACK eigsh on dynatools' HVPs: double backward of a kept gradient graph, checked once against torch.func) vs a user's "
          "eigsh on torch.autograd.functional.hvp / vhp / a stored gradient graph, in wall time; "
          "(2) DIFFERENT algorithm: ours (ARPACK Lanczos) vs power iteration with deflation (PyHessian), "
          "in HVPs")

    flat = _Flat(loss_fn, params)
    flat.hvp_numpy(np.ones(n))                                        # warm-up, untimed
    ts = []
    for _ in range(3):
        t0 = time.perf_counter()
        flat.hvp_numpy(np.random.default_rng(0).standard_normal(n))
        ts.append(time.perf_counter() - t0)
    t_hvp = float(np.median(ts))
    print(f"one HVP (dynatools, torch.func forward-over-reverse): {t_hvp * 1e3:.1f} ms (median of 3)", flush=True)

    ref, ref_desc, ref_lines = reference(loss_fn, params, args.k, n, args)
    print(f"reference: {ref_desc}")
    print("\n".join("  " + s for s in ref_lines))
    r = by_magnitude(ref)
    print(f"  reference eigenvalues: {', '.join(f'{x:.4g}' for x in r)}", flush=True)

    print("sweep (loose -> tight; stops at the first tolerance reaching the accuracy):")
    runners = {"ours": lambda tol: run_ours(loss_fn, params, args.k, tol, args.seed)}
    for kind in USER_HVPS:
        runners[f"user eigsh+{kind}"] = (lambda kind: lambda tol: run_user(loss_fn, params, args.k, tol,
                                                                            args.seed, kind))(kind)
    kept, tried = {}, {}
    for name, fn in runners.items():
        tried[name], kept[name] = sweep(name, ours_tols, fn, ref, args.accuracy)
    power = None
    if not args.no_power:
        tried["power"], power = sweep("power iteration", power_tols,
                                      lambda tol: run_power(loss_fn, params, args.k, tol, args.max_iter,
                                                            args.seed), ref, args.accuracy)
        if power is not None:
            iters = power["extra"][0]
            capped = sum(i == args.max_iter for i in iters)
            print(f"  power iteration at tol={power['tol']:g}: iterations per eigenvalue "
                  f"{', '.join(map(str, iters))} ({capped} stopped at max_iter)")

    # ---- timed rounds of the same-algorithm comparison, at the kept tolerances
    timed = [name for name in runners if kept[name] is not None]
    walls = {name: [] for name in timed}
    errs = {name: [] for name in timed}
    print(f"timed rounds ({args.repeats}, order reversed every other round): {', '.join(timed)}", flush=True)
    for rnd in range(args.repeats):
        for name in (timed if rnd % 2 == 0 else timed[::-1]):
            vals, n_hvp, wall = runners[name](kept[name]["tol"])[:3]
            walls[name].append(wall)
            errs[name].append(max_rel_err(vals, ref))
    bad = {name: max(e) for name, e in errs.items() if max(e) > args.accuracy}
    if bad:
        raise SystemExit(f"a timed run missed the accuracy {args.accuracy:g}: {bad}; times not printed.")
    med = {name: statistics.median(w) for name, w in walls.items()}
    print(f"  all timed runs within {args.accuracy:g} of the reference; load average {load()}")

    print()
    print(f"| method | algorithm | tol | HVPs | wall s (median of {args.repeats}) | ms per HVP | "
          f"max rel err | within {args.accuracy:g} |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    algo = {"ours": "ARPACK Lanczos, kept gradient graph (checked vs torch.func)",
            "user eigsh+hvp": "ARPACK Lanczos, autograd hvp",
            "user eigsh+vhp": "ARPACK Lanczos, autograd vhp",
            "user eigsh+graph": "ARPACK Lanczos, double backward of a stored gradient graph",
            "power": "power iteration + deflation, dynatools HVP"}
    for name in list(runners) + ([] if args.no_power else ["power"]):
        row = kept.get(name) if name != "power" else power
        if row is not None:
            wall = med.get(name, row["wall"])
            wall_txt = f"{wall:.2f}" + ("" if name in med else " (1 run)")
            print(f"| {name} | {algo[name]} | {row['tol']:g} | {row['n_hvp']} | {wall_txt} | "
                  f"{1e3 * wall / row['n_hvp']:.0f} | {row['err']:.1e} | yes |")
        else:
            best = min(tried[name], key=lambda x: x["err"])
            print(f"| {name} | {algo[name]} | none in list (best: {best['tol']:g}) | {best['n_hvp']} | "
                  f"{best['wall']:.2f} (1 run) | {1e3 * best['wall'] / best['n_hvp']:.0f} | {best['err']:.1e} | "
                  f"not reached |")
    print("per round (wall s):")
    for name, w in walls.items():
        print(f"  {name}: {', '.join(f'{x:.2f}' for x in w)}")
    print()
    if "ours" in med:
        same = [f"vs {name} ({kept[name]['n_hvp']} HVPs) {med[name] / med['ours']:.2f}x"
                for name in runners if name != "ours" and name in med]
        print(f"HEADLINE, same algorithm (ARPACK eigsh), wall time baseline / ours at accuracy "
              f"{args.accuracy:g} (> 1: ours faster), n_params {n}, {n_threads} torch thread(s): "
              f"ours {med['ours']:.2f} s ({kept['ours']['n_hvp']} HVPs); " + "; ".join(same))
    else:
        print(f"HEADLINE: ours did not reach accuracy {args.accuracy:g} within its tolerance list; no ratio")
    if not args.no_power:
        ours = kept["ours"]
        if ours is not None and power is not None:
            ratio = ours["n_hvp"] / power["n_hvp"]
            print(f"different algorithm (Lanczos vs power iteration with deflation, same HVP): HVP ratio "
                  f"ours / power iteration = {ours['n_hvp']} / {power['n_hvp']} = {ratio:.3f} (goal <= 0.333: "
                  f"{'met' if ratio <= 1 / 3 else 'NOT met'}); wall-time ratio (single sweep runs) "
                  f"{ours['wall'] / power['wall']:.3f}")
        else:
            missing = [nm for nm, row in (("ours", ours), ("power iteration", power)) if row is None]
            print(f"different algorithm: accuracy {args.accuracy:g} not reached by {' and '.join(missing)} "
                  f"within the tolerance list" + (f" (max_iter {args.max_iter})" if power is None else "")
                  + "; no ratio at equal accuracy")
    print(f"reference: {ref_desc}; ours and power iteration count the same dynatools.hessian._Flat.hvp_numpy, "
          f"the user baselines count their own matvec calls; load average at the end {load()}")


if __name__ == "__main__":
    main()
