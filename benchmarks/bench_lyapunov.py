"""Lyapunov spectrum: dynatools against two baselines (expert and naive), same network and inputs, one process.

Measured: the full Lyapunov spectrum (all ``units`` exponents, QR method) of a leaky RNN
(``trainers.LeakyRNN(units, negative_slope=0.01)``, seeded, float64 by default) driven by
Bernoulli(0.5) input bits (one trajectory, seeded), over ``--steps`` steps (default 200).

- ours: ``dynatools.lyapunov.lyapunov_spectrum(net.step, h0, inputs, device=...)``: the model's
  analytic ``net.jacobian`` (picked up because ``step`` is a bound method of the model), batched
  ``Q <- J Q`` and ``torch.linalg.qr`` every ``reortho_every`` steps (one row per value of
  ``--reortho-every``, default 1 and 5), plus one row in float32 (when the main dtype is
  float64).
- expert baseline (the HEADLINE comparison): the same QR method as an experienced torch user
  writes it: the Jacobian of the step by ``torch.func.vmap(torch.func.jacrev(step_one,
  has_aux=True))`` over the batch of trajectories (one reverse pass per output row, batched by
  vmap, and the next state returned as the aux output so the step runs once), ``Q = J @ Q``,
  ``torch.linalg.qr`` every ``reortho_every`` steps with the sign fix of diag(R), ``log |diag R|``
  accumulated in float64. Same number of steps, same ``reortho_every``, same dtype, device and
  threads as ours, timed in full.
- naive baseline (a strawman, kept for reference): per step, the Jacobian by autograd ONE ROW AT
  A TIME (``torch.autograd.grad(h_next[0, i], h, retain_graph=True)`` for i in range(n), i.e.
  ``units`` backward calls per step), then ``Q = J @ Q`` in numpy, ``np.linalg.qr``, sign fix,
  ``log |diag R|``. It costs ~100 ms per step at 500 units, so it is timed on the first
  ``--naive-steps`` steps (default 20) of the same input and compared per step; main dtype only.

All three start from the same network, inputs, h0 and initial orthonormal Q (the one ours draws
with seed 0), and all do a QR at the last step as well.

Procedure:

1. Agreement, small case (20 units, 300 steps, float64, every ``reortho_every``): ours, expert
   and naive must give the same exponents (the tolerances of step 4), else the script stops.
2. Warm-up (10 steps of each implementation, untimed).
3. ``--repeats`` rounds (default 3); in each round every implementation runs once per
   configuration (dtype, reortho_every), the order ours -> expert -> naive reversed every other
   round so that drifts of the machine's load hit all of them alike. Medians of the per-step
   times are reported, with the spread (min-max).
4. Agreement at full size, checked BEFORE any time is printed: ours and the expert baseline
   (same steps) must agree: float64 max abs difference < 1e-8 at reortho_every=1 and < 1e-5
   above, float32 < 5e-3, on every exponent lambda_i that keeps at least half the digits between
   two QRs: the product of r = reortho_every Jacobians stretches direction 1 by
   ``exp((lambda_1 - lambda_i) r)`` more than direction i, and the rounding of the two Jacobians
   (analytic vs autograd) grows by that factor, so the exponents with ``(lambda_1 - lambda_i) r >
   ln(1 / sqrt(eps))`` (float64: 18.0, float32: 8.0) are reported but not held. Ours' running
   estimate after the naive prefix must agree with the naive baseline in the same way.
5. This machine's matmul + QR throughput: a torch loop of ``Q = torch.linalg.qr(J @ Q)[0]`` for
   a ``units x units`` J (same dtype, device and threads); ours' per-step time as a fraction of
   it (goal >= 50% for reortho_every=1).

Threads: every implementation runs with the same number of torch threads, inside
``dynatools.threads.torch_threads(n)``: ``--threads N``, else what the project's thread policy
(``dynatools.threads.choose_threads``) picks for the work of one step (a units x units matmul and
QR). The number is also fixed for dynatools itself (``dynatools.threads.set_threads``), and
``OMP_WAIT_POLICY=PASSIVE`` is set before torch loads (unless the environment sets a policy).
The naive baseline's numpy ``@`` and ``np.linalg.qr`` run on numpy's own BLAS threads, which
``--threads`` does not set (``OPENBLAS_NUM_THREADS`` does); its time is the row-by-row autograd.

Run: ``python benchmarks/bench_lyapunov.py [--units 500] [--steps 200] [--naive-steps 20]
[--repeats 3] [--reortho-every "1 5"] [--threads N] [--device auto|cpu|cuda]
[--dtype float64|float32] [--no-float32]``
"""

from __future__ import annotations

# The thread policy must see the environment before torch is imported.
from dynatools.threads import choose_threads, prefer_passive_waiting, set_threads, torch_threads

prefer_passive_waiting()

import argparse  # noqa: E402
import copy  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

import trainers  # noqa: E402
from dynatools.lyapunov import lyapunov_spectrum  # noqa: E402
from trainers.engine import resolve_device  # noqa: E402

SLOPE = 0.01
DTYPES = {"float64": torch.float64, "float32": torch.float32}
SEED_Q = 0          # the seed passed to lyapunov_spectrum for the initial tangent vectors
IMPLS = ("ours", "expert", "naive")


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def dname(dtype) -> str:
    return str(dtype).replace("torch.", "")


def tolerance(dtype, reortho_every):
    """(tolerance, spread limit): two implementations of the same computation must agree to the
    tolerance on every exponent lambda_i with ``(lambda_1 - lambda_i) * reortho_every <= spread
    limit``. Between two QRs the product of ``reortho_every`` Jacobians stretches direction 1 by
    ``exp((lambda_1 - lambda_i) * reortho_every)`` more than direction i, and rounding (eps: 1e-16
    in float64, 1e-7 in float32) grows by that factor; so only the exponents that keep at least
    half the digits, ``exp(spread) <= 1 / sqrt(eps)``, are held to the tolerance."""
    limit = float(np.log(1 / np.sqrt(torch.finfo(dtype).eps)))
    if dtype == torch.float32:
        return 5e-3, limit
    return (1e-8 if reortho_every == 1 else 1e-5), limit


# ---------------------------------------------------------------------------------- setup
def make_case(units, steps, seed=0):
    """CPU float32 network (seeded), h0 (1, units) and Bernoulli(0.5) bits (1, steps, 1)."""
    net = trainers.LeakyRNN(units, negative_slope=SLOPE, generator=torch.Generator().manual_seed(seed))
    h0 = net.initial_state(1, generator=torch.Generator().manual_seed(seed + 1))
    bits = torch.bernoulli(torch.full((1, steps, 1), 0.5), generator=torch.Generator().manual_seed(seed + 2))
    return net, h0, bits


def on(net, device, dtype):
    return copy.deepcopy(net).to(device=device, dtype=dtype)


def initial_q(n):
    """The initial orthonormal tangent vectors that ``lyapunov_spectrum(seed=SEED_Q)`` draws."""
    gen = torch.Generator(device="cpu").manual_seed(SEED_Q)
    return torch.linalg.qr(torch.randn(1, n, n, generator=gen, dtype=torch.float64))[0][0]


def qr_now(t, total, reortho_every):
    return (t + 1) % reortho_every == 0 or t + 1 == total


# ----------------------------------------------------------------------------------- ours
def ours(net, h0, bits, device, dtype, reortho_every):
    """(seconds, exponents largest first, dataset): one call of ``lyapunov_spectrum``."""
    h0 = h0.to(device=device, dtype=dtype)
    bits = bits.to(device=device, dtype=dtype)
    sync(device)
    t0 = time.perf_counter()
    ds = lyapunov_spectrum(net.step, h0, bits, reortho_every=reortho_every, device=device, dtype=dtype,
                           seed=SEED_Q)
    sync(device)
    return time.perf_counter() - t0, np.sort(ds.lyapunov.values)[::-1], ds


# ------------------------------------------------------------------------ expert baseline
def expert(net, h0, bits, Q0, device, dtype, reortho_every):
    """The QR method as an expert torch user writes it: ``vmap(jacrev(step))`` Jacobians over the
    batch of trajectories, batched ``J @ Q``, ``torch.linalg.qr`` every ``reortho_every`` steps.
    Returns (seconds, exponents largest first)."""
    from torch.func import jacrev, vmap

    def step_one(h, u):                      # one trajectory: h (n,), u (input_dim,)
        h_next = net.step(h[None], u[None])[0]
        return h_next, h_next                # (output to differentiate, aux: the next state)

    jac_and_next = vmap(jacrev(step_one, has_aux=True))   # -> J (batch, n, n), h_next (batch, n)

    h = h0.to(device=device, dtype=dtype)
    u_all = bits.to(device=device, dtype=dtype)
    b, n = h.shape
    T = u_all.shape[1]
    Q = Q0.to(device=device, dtype=dtype).expand(b, n, n).clone()
    log_sum = torch.zeros(b, n, dtype=torch.float64, device=device)
    sync(device)
    t0 = time.perf_counter()
    with torch.no_grad():
        for t in range(T):
            J, h = jac_and_next(h, u_all[:, t])
            Q = J @ Q
            if qr_now(t, T, reortho_every):
                Q, R = torch.linalg.qr(Q)
                d = torch.diagonal(R, dim1=-2, dim2=-1)
                Q = Q * torch.where(d < 0, -1.0, 1.0).to(dtype)[:, None, :]
                log_sum += torch.log(d.abs().to(torch.float64))
    sync(device)
    sec = time.perf_counter() - t0
    return sec, np.sort((log_sum / T).mean(0).cpu().numpy())[::-1]


# ------------------------------------------------------------------------- naive baseline
def naive(net, h0, bits, Q0, device, dtype, reortho_every):
    """Row-by-row autograd Jacobian + numpy QR (a strawman); returns (seconds, exponents sorted
    largest first)."""
    h = h0.to(device=device, dtype=dtype)
    u_all = bits.to(device=device, dtype=dtype)
    n, T = h.shape[1], u_all.shape[1]
    np_dtype = np.float64 if dtype == torch.float64 else np.float32
    Q = Q0.numpy().astype(np_dtype)
    log_sum = np.zeros(n)
    sync(device)
    t0 = time.perf_counter()
    for t in range(T):
        h = h.detach().requires_grad_(True)
        h_next = net.step(h, u_all[:, t])
        J = np.empty((n, n), dtype=np_dtype)
        for i in range(n):
            (g,) = torch.autograd.grad(h_next[0, i], h, retain_graph=True)
            J[i] = g[0].cpu().numpy()
        Q = J @ Q
        if qr_now(t, T, reortho_every):
            Q, R = np.linalg.qr(Q)
            d = np.diag(R)
            sign = np.where(d < 0, -1.0, 1.0).astype(np_dtype)
            Q = Q * sign[None, :]
            log_sum += np.log(np.abs(d).astype(np.float64))
        h = h_next.detach()
    sync(device)
    return time.perf_counter() - t0, np.sort(log_sum / T)[::-1]


def run(impl, net, h0, bits, device, dtype, reortho_every):
    """(seconds, exponents largest first, dataset or None) of one implementation."""
    if impl == "ours":
        return ours(net, h0, bits, device, dtype, reortho_every)
    fn = expert if impl == "expert" else naive
    sec, exps = fn(net, h0, bits, initial_q(h0.shape[1]), device, dtype, reortho_every)
    return sec, exps, None


# ---------------------------------------------------------------------------------- check
def compare(a, b, dtype, reortho_every):
    """(ok, max |a - b| over the exponents held to the tolerance, max over all, tolerance, how
    many are held, median |a - b|); a and b sorted largest first, a is ours."""
    tol, limit = tolerance(dtype, reortho_every)
    a, b = np.asarray(a), np.asarray(b)
    diff = np.abs(a - b)
    m = max(1, int(((a[0] - a) * reortho_every <= limit).sum()))
    held = float(diff[:m].max())
    return held < tol, held, float(diff.max()), tol, m, float(np.median(diff))


def check_small(device, reorthos, units=20, steps=300):
    net, h0, bits = make_case(units, steps, seed=11)
    net = on(net, device, torch.float64)
    ok_all, lines = True, []
    for r in reorthos:
        _, mine, ds = ours(net, h0, bits, device, torch.float64, r)
        res = {impl: run(impl, net, h0, bits, device, torch.float64, r)[1] for impl in ("expert", "naive")}
        analytic = ds.attrs["jacobian"] == "analytic"
        parts = []
        for impl, exps in res.items():
            ok, held, full, tol, m, mid = compare(mine, exps, torch.float64, r)
            ok_all &= ok
            parts.append(f"{impl} {held:.1e}" + ("" if m == units else f" (largest {m}; all: {full:.1e})"))
        ok_all &= analytic
        lines.append(f"  reortho_every={r}: max |ours - baseline|: {', '.join(parts)} (tolerance "
                     f"{tolerance(torch.float64, r)[0]:.0e}); ours used the {ds.attrs['jacobian']} "
                     f"Jacobian; largest 3: ours {fmt(mine[:3])}")
    head = (f"check ({units} units, {steps} steps, float64, same network, inputs, h0 and initial Q, "
            f"{device.type}): {'OK' if ok_all else 'FAILED'}")
    return ok_all, [head] + lines


# ----------------------------------------------------------------------------- throughput
def matmul_qr_ms(n, device, dtype, iters, warmup=5):
    """ms per iteration of ``Q = torch.linalg.qr(J @ Q)[0]`` for an n x n J."""
    gen = torch.Generator().manual_seed(7)
    J = (torch.randn(n, n, generator=gen, dtype=torch.float64) / n ** 0.5).to(device=device, dtype=dtype)
    Q = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))[0].to(device=device, dtype=dtype)
    for _ in range(warmup):
        Q = torch.linalg.qr(J @ Q)[0]
    sync(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        Q = torch.linalg.qr(J @ Q)[0]
    sync(device)
    return 1e3 * (time.perf_counter() - t0) / iters


def fmt(values):
    return "[" + ", ".join(f"{v:+.5f}" for v in values) + "]"


def parse_ints(values):
    return [int(v) for item in values for v in str(item).replace(",", " ").split()]


def spread(values):
    return f"{min(values):.2f}-{max(values):.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--units", type=int, default=500)
    ap.add_argument("--steps", type=int, default=200, help="steps timed for ours and the expert baseline")
    ap.add_argument("--naive-steps", type=int, default=20,
                    help="prefix of the same input on which the naive baseline is timed (0: skip it)")
    ap.add_argument("--repeats", type=int, default=3, help="alternating rounds; medians are reported")
    ap.add_argument("--reortho-every", nargs="+", default=["1 5"],
                    help='one configuration per value (default "1 5")')
    ap.add_argument("--no-float32", action="store_true",
                    help="skip the extra float32 configuration (when the main dtype is float64)")
    ap.add_argument("--throughput-steps", type=int, default=100,
                    help="iterations of the matmul + QR loop")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads for every implementation (default: dynatools.threads policy)")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--dtype", default="float64", choices=list(DTYPES))
    args = ap.parse_args()

    try:
        device = resolve_device(args.device)
    except ValueError as exc:
        ap.error(str(exc))
    reorthos = parse_ints(args.reortho_every)
    if (min(args.units, args.steps, args.repeats, args.throughput_steps) < 1
            or not reorthos or min(reorthos) < 1 or args.naive_steps < 0):
        ap.error("need units, steps, repeats, throughput-steps, reortho-every >= 1, naive-steps >= 0")
    if args.naive_steps > args.steps:
        ap.error("naive-steps cannot exceed steps (it times a prefix of the same input)")
    if args.threads is not None and args.threads < 1:
        ap.error("--threads must be >= 1")
    dtype = DTYPES[args.dtype]
    cuda = device.type == "cuda"

    # one units x units matmul (2 n^3) and QR (4/3 n^3) per step
    work = 2 * args.units ** 3 + 4 * args.units ** 3 / 3
    n_threads = args.threads if args.threads is not None else choose_threads(work)
    how = "--threads" if args.threads is not None else f"dynatools.threads policy for {work:.2g} flop/step"
    set_threads(n_threads)          # dynatools' own calls use the same number
    with torch_threads(n_threads):
        bench(args, device, cuda, dtype, reorthos, n_threads, how)


def bench(args, device, cuda, dtype, reorthos, n_threads, how) -> None:
    dev_name = torch.cuda.get_device_name(device) if cuda else "cpu"
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}, python "
          f"{platform.python_version()}, numpy {np.__version__}, torch {torch.__version__}, device {dev_name}")
    print(f"threads: torch {torch.get_num_threads()} (= {n_threads}, from {how}); OMP_WAIT_POLICY="
          f"{os.environ.get('OMP_WAIT_POLICY', '(unset)')}")
    configs = [(dtype, r) for r in reorthos]
    if dtype == torch.float64 and not args.no_float32:
        configs.append((torch.float32, reorthos[0]))
    naive_on = args.naive_steps > 0
    print(f"setup: LeakyRNN({args.units}, negative_slope={SLOPE}), one trajectory, Bernoulli(0.5) input "
          f"bits, all {args.units} exponents; configurations (dtype, reortho_every): "
          f"{', '.join(f'({dname(d)}, {r})' for d, r in configs)}; ours and expert timed on "
          f"{args.steps:,} steps" + (f", naive on the first {args.naive_steps} ({args.dtype} only)"
                                      if naive_on else ", naive skipped")
          + f"; {args.repeats} alternating rounds, medians", flush=True)

    ok, lines = check_small(device, reorthos)
    print("\n".join(lines), flush=True)
    if not ok:
        raise SystemExit("agreement check FAILED: the implementations do not compute the same exponents; "
                         "timings would not be comparable.")

    net_cpu, h0, bits = make_case(args.units, args.steps, seed=0)
    nets = {d: on(net_cpu, device, d) for d in {d for d, _ in configs}}

    def impls_for(d):
        return IMPLS if (naive_on and d == dtype) else IMPLS[:2]

    def inputs_for(impl):
        return bits[:, :args.naive_steps] if impl == "naive" else bits

    for d, r in configs:                                           # warm-up, untimed
        for impl in impls_for(d):
            run(impl, nets[d], h0, bits[:, :10], device, d, r)

    times = {(c, impl): [] for c in configs for impl in IMPLS}
    results = {}
    for rnd in range(args.repeats):
        for c in configs:
            order = impls_for(c[0]) if rnd % 2 == 0 else impls_for(c[0])[::-1]
            for impl in order:
                sec, exps, ds = run(impl, nets[c[0]], h0, inputs_for(impl), device, c[0], c[1])
                steps = args.naive_steps if impl == "naive" else args.steps
                times[(c, impl)].append(1e3 * sec / steps)
                results.setdefault((c, impl), (exps, ds))
        print(f"round {rnd + 1}/{args.repeats} done", flush=True)

    # ---- agreement at full size, before any time is printed
    print("\nagreement at full size (same network, inputs, h0, initial Q):")
    ok_all = True
    for c in configs:
        d, r = c
        mine, ds = results[(c, "ours")]
        ok, held, full, tol, m, mid = compare(mine, results[(c, "expert")][0], d, r)
        ok_all &= ok
        print(f"  {dname(d)}, reortho_every={r}: ours vs expert ({args.steps:,} steps): max |diff| "
              + (f"{held:.1e} over all {args.units} exponents" if m == args.units else
                 f"{held:.1e} over the largest {m}, {full:.1e} over all {args.units} (the others lose more "
                 f"than half their digits between two QRs; not held)")
              + f" (median {mid:.1e}), tolerance {tol:.0e}: {'OK' if ok else 'FAILED'}")
        if (c, "naive") in results:
            if args.naive_steps in ds.time.values:
                run_est = np.sort(ds.running.sel(time=args.naive_steps).values)[::-1]
                ok, held, full, tol, m, mid = compare(run_est, results[(c, "naive")][0], d, r)
                ok_all &= ok
                print(f"  {dname(d)}, reortho_every={r}: ours' running estimate after {args.naive_steps} "
                      f"steps vs naive: max |diff| {held:.1e}"
                      + ("" if m == args.units else f" over the largest {m} ({full:.1e} over all)")
                      + f", tolerance {tol:.0e}: {'OK' if ok else 'FAILED'}")
            else:
                print(f"  {dname(d)}, reortho_every={r}: naive not compared ({args.naive_steps} steps is "
                      f"not a multiple of reortho_every)")
    if not ok_all:
        raise SystemExit("agreement check at full size FAILED; timings not printed.")

    thr = {d: matmul_qr_ms(args.units, device, d, args.throughput_steps) for d in nets}

    # ---- times
    print(f"\nper-step times, median over {args.repeats} rounds (min-max in brackets); ratio = "
          f"baseline ms/step / ours ms/step (> 1: ours faster)")
    print("| dtype | reortho_every | ours ms/step | expert ms/step | **ratio vs expert** | "
          "naive ms/step | ratio vs naive |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    med = {key: statistics.median(v) for key, v in times.items() if v}
    for c in configs:
        d, r = c
        o, e = med[(c, "ours")], med[(c, "expert")]
        nv = med.get((c, "naive"))
        naive_cells = (f"{nv:.2f} [{spread(times[(c, 'naive')])}] | {nv / o:.1f}x" if nv is not None
                       else "- | -")
        print(f"| {dname(d)} | {r} | {o:.2f} [{spread(times[(c, 'ours')])}] | "
              f"{e:.2f} [{spread(times[(c, 'expert')])}] | **{e / o:.2f}x** | {naive_cells} |")
    c0 = configs[0]
    o0, e0 = med[(c0, "ours")], med[(c0, "expert")]
    print(f"\nHEADLINE ({dname(c0[0])}, reortho_every={c0[1]}, {args.units} units, {n_threads} torch "
          f"thread(s)): ours {o0:.2f} ms/step vs expert baseline (vmap(jacrev) + torch.linalg.qr) "
          f"{e0:.2f} ms/step: {e0 / o0:.2f}x"
          + (f"; vs the naive row-by-row baseline {med[(c0, 'naive')]:.2f} ms/step: "
             f"{med[(c0, 'naive')] / o0:.1f}x" if (c0, "naive") in med else ""))
    print("per round (ms/step):")
    for c in configs:
        for impl in IMPLS:
            if times[(c, impl)]:
                print(f"  {dname(c[0])}, reortho_every={c[1]}, {impl}: "
                      f"{', '.join(f'{x:.2f}' for x in times[(c, impl)])}")

    print("\nlargest 3 exponents (natural log per step):")
    for c in configs:
        for impl in IMPLS:
            if (c, impl) in results:
                steps = args.naive_steps if impl == "naive" else args.steps
                print(f"  {impl}, {dname(c[0])}, reortho_every={c[1]} ({steps:,} steps): "
                      f"{fmt(results[(c, impl)][0][:3])}")

    print(f"\nmatmul + QR throughput (torch, {torch.get_num_threads()} threads, {device.type}, "
          f"{args.units}x{args.units}, {args.throughput_steps} iterations of "
          f"Q = torch.linalg.qr(J @ Q)[0]):")
    for d, ms in thr.items():
        print(f"  {dname(d)}: {ms:.3f} ms/iteration")
    for c in configs:
        d, r = c
        frac = thr[d] / med[(c, "ours")]
        note = "" if r == 1 else f" (one QR every {r} steps, so this can exceed 100%)"
        print(f"  ours, {dname(d)}, reortho_every={r}: {100 * frac:.0f}% of the {dname(d)} matmul + QR "
              f"throughput (goal >= 50% for reortho_every=1){note}")
    print(f"\nload average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
