"""Lyapunov spectrum: dynatools against a straightforward baseline, same network and inputs, one process.

Measured: the full Lyapunov spectrum (all ``units`` exponents, QR method) of a leaky RNN
(``trainers.LeakyRNN(units, negative_slope=0.01)``, seeded, float64 by default) driven by
Bernoulli(0.5) input bits (one trajectory, seeded), over ``--steps`` steps (default 10,000).

- ours: ``dynatools.lyapunov.lyapunov_spectrum(net.step, h0, inputs, device=...)``: the model's
  analytic ``net.jacobian`` (picked up because ``step`` is a bound method of the model), batched
  ``Q <- J Q`` and ``torch.linalg.qr`` every ``reortho_every`` steps (default 1; one row per value
  of ``--reortho-every``), plus one row in float32 (when the main dtype is float64).
- baseline: what a user writes: per step, the Jacobian of ``net.step`` by autograd ONE ROW AT A
  TIME (``torch.autograd.grad(h_next[0, i], h, retain_graph=True)`` for i in range(n)), then
  ``Q = J @ Q`` in numpy, ``np.linalg.qr``, sign fix of diag(R), accumulate ``log |diag R|``.
  Same network, inputs, h0 and initial orthonormal Q (the one ours draws with seed 0).

The baseline costs tens of ms per step at 500 units, so it is timed on the first
``--baseline-steps`` steps only (default 300); the table compares per-step times and extrapolates
the baseline's total to ``--steps``. Before timing, a small case (20 units, 300 steps, float64)
checks that both give the same exponents (max abs difference < 1e-8); at full size, ours' running
estimate after the baseline's prefix is compared with the baseline's exponents as well.

Also measured: this machine's matmul + QR throughput, a torch loop of
``Q = torch.linalg.qr(J @ Q)[0]`` for a ``units x units`` J (same dtype, device and torch thread
count); ours' per-step time is reported as a fraction of it (goal >= 50% for reortho_every=1).

Run: ``python benchmarks/bench_lyapunov.py [--units 500] [--steps 10000] [--baseline-steps 300]
[--reortho-every "1 5"] [--device auto|cpu|cuda] [--dtype float64|float32]``
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import time

import numpy as np
import torch

import trainers
from dynatools.lyapunov import lyapunov_spectrum
from trainers.engine import resolve_device

SLOPE = 0.01
DTYPES = {"float64": torch.float64, "float32": torch.float32}
SEED_Q = 0          # the seed passed to lyapunov_spectrum for the initial tangent vectors


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def dname(dtype) -> str:
    return str(dtype).replace("torch.", "")


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


# ----------------------------------------------------------------------------------- ours
def ours(net, h0, bits, device, dtype, reortho_every):
    """Returns (seconds, dataset): one call of ``lyapunov_spectrum`` on the model's step."""
    h0 = h0.to(device=device, dtype=dtype)
    bits = bits.to(device=device, dtype=dtype)
    sync(device)
    t0 = time.perf_counter()
    ds = lyapunov_spectrum(net.step, h0, bits, reortho_every=reortho_every, device=device, dtype=dtype,
                           seed=SEED_Q)
    sync(device)
    return time.perf_counter() - t0, ds


# ------------------------------------------------------------------------------- baseline
def baseline(net, h0, bits, Q0, device, dtype):
    """Row-by-row autograd Jacobian + numpy QR, as a user writes it; returns (seconds, exponents
    sorted largest first)."""
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
        Q, R = np.linalg.qr(Q)
        d = np.diag(R)
        sign = np.where(d < 0, -1.0, 1.0).astype(np_dtype)
        Q = Q * sign[None, :]
        log_sum += np.log(np.abs(d).astype(np.float64))
        h = h_next.detach()
    sync(device)
    return time.perf_counter() - t0, np.sort(log_sum / T)[::-1]


# ---------------------------------------------------------------------------------- check
def check_agreement(device, units=20, steps=300, tol=1e-8):
    net, h0, bits = make_case(units, steps, seed=11)
    net = on(net, device, torch.float64)
    _, ds = ours(net, h0, bits, device, torch.float64, 1)
    _, base = baseline(net, h0, bits, initial_q(units), device, torch.float64)
    mine = np.sort(ds.lyapunov.values)[::-1]
    diff = float(np.abs(mine - base).max())
    analytic = ds.attrs["jacobian"] == "analytic"
    ok = diff < tol and analytic
    lines = [
        (f"check ({units} units, {steps} steps, float64, reortho_every=1, same network, inputs, h0 "
         f"and initial Q, {device.type}): {'OK' if ok else 'FAILED'}"),
        (f"  max |exponent ours - baseline| = {diff:.1e} (tolerance {tol:.0e}); ours used the "
         f"{ds.attrs['jacobian']} Jacobian; largest 3: ours {fmt(mine[:3])}, baseline {fmt(base[:3])}"),
    ]
    return ok, lines


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--units", type=int, default=500)
    ap.add_argument("--steps", type=int, default=10_000, help="steps of ours (timed in full)")
    ap.add_argument("--baseline-steps", type=int, default=300,
                    help="prefix of the same input on which the baseline is timed")
    ap.add_argument("--reortho-every", nargs="+", default=["1 5"],
                    help='one row of ours per value (default "1 5")')
    ap.add_argument("--throughput-steps", type=int, default=300,
                    help="iterations of the matmul + QR loop")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--dtype", default="float64", choices=list(DTYPES))
    args = ap.parse_args()

    try:
        device = resolve_device(args.device)
    except ValueError as exc:
        ap.error(str(exc))
    reorthos = parse_ints(args.reortho_every)
    if (min(args.units, args.steps, args.baseline_steps, args.throughput_steps) < 1
            or not reorthos or min(reorthos) < 1):
        ap.error("need units, steps, baseline-steps, throughput-steps, reortho-every >= 1")
    if args.baseline_steps > args.steps:
        ap.error("baseline-steps cannot exceed steps (it times a prefix of the same input)")
    dtype = DTYPES[args.dtype]
    cuda = device.type == "cuda"

    dev_name = torch.cuda.get_device_name(device) if cuda else "cpu"
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), device {dev_name}")
    print(f"setup: LeakyRNN({args.units}, negative_slope={SLOPE}), {args.dtype}, one trajectory, "
          f"Bernoulli(0.5) input bits, {args.steps:,} steps, all {args.units} exponents; "
          f"ours reortho_every in {reorthos}; baseline timed on the first {args.baseline_steps} "
          f"steps (per-step times compared, baseline total extrapolated)", flush=True)

    ok, lines = check_agreement(device)
    print("\n".join(lines), flush=True)
    if not ok:
        raise SystemExit("agreement check FAILED: the two implementations do not compute the same "
                         "exponents; timings would not be comparable.")

    net_cpu, h0, bits = make_case(args.units, args.steps, seed=0)
    nets = {dtype: on(net_cpu, device, dtype)}
    extra = torch.float32 if dtype == torch.float64 else None
    if extra is not None:
        nets[extra] = on(net_cpu, device, extra)

    # warm-up (first calls: imports, allocator, BLAS threads), not timed
    for dt_, net in nets.items():
        ours(net, h0, bits[:, :10], device, dt_, 1)

    rows = []
    for r in reorthos:
        sec, ds = ours(nets[dtype], h0, bits, device, dtype, r)
        rows.append({"name": f"ours, {args.dtype}, reortho_every={r}", "dtype": dtype, "r": r,
                     "steps": args.steps, "ms": 1e3 * sec / args.steps, "ds": ds})
        print(f"ours reortho_every={r} ({args.dtype}): {sec:.2f} s for {args.steps:,} steps", flush=True)
    if extra is not None:
        r = reorthos[0]
        sec, ds = ours(nets[extra], h0, bits, device, extra, r)
        rows.append({"name": f"ours, float32, reortho_every={r}", "dtype": extra, "r": r,
                     "steps": args.steps, "ms": 1e3 * sec / args.steps, "ds": ds})
        print(f"ours reortho_every={r} (float32): {sec:.2f} s for {args.steps:,} steps", flush=True)

    sec_b, base_exp = baseline(nets[dtype], h0, bits[:, :args.baseline_steps], initial_q(args.units),
                               device, dtype)
    base_ms = 1e3 * sec_b / args.baseline_steps
    print(f"baseline ({args.dtype}): {sec_b:.2f} s for the first {args.baseline_steps} steps", flush=True)

    thr = {dt_: matmul_qr_ms(args.units, device, dt_, args.throughput_steps) for dt_ in nets}

    total_hdr = f"total for {args.steps:,} steps"
    print()
    print(f"| implementation | steps timed | ms/step | {total_hdr} | ratio vs baseline |")
    print("|---|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['name']} | {row['steps']:,} | {row['ms']:.3f} | "
              f"{row['ms'] * args.steps / 1e3:.2f} s | {base_ms / row['ms']:.1f}x |")
    print(f"| baseline (row-by-row autograd + numpy QR), {args.dtype} | {args.baseline_steps:,} | "
          f"{base_ms:.3f} | {base_ms * args.steps / 1e3:.2f} s (extrapolated) | 1.0x |")
    print(f"\nms/step = wall time / steps timed. The baseline is timed on the first "
          f"{args.baseline_steps} steps only and its total is extrapolated to {args.steps:,} steps; "
          f"ratio = baseline ms/step / ours ms/step (> 1: ours faster).")

    print("\nlargest 3 exponents (natural log per step):")
    for row in rows:
        print(f"  {row['name']} ({args.steps:,} steps): {fmt(row['ds'].lyapunov.values[:3])}")
    print(f"  baseline (first {args.baseline_steps} steps only): {fmt(base_exp[:3])}")
    for row in rows:
        ds = row["ds"]
        if row["dtype"] == dtype and args.baseline_steps in ds.time.values:
            run = np.sort(ds.running.sel(time=args.baseline_steps).values)[::-1]
            print(f"  agreement on the prefix: {row['name']}, running estimate after "
                  f"{args.baseline_steps} steps vs baseline, max |diff| over all {args.units} "
                  f"exponents = {np.abs(run - base_exp).max():.1e}"
                  + ("" if row["r"] == 1 else " (between QRs the product of reortho_every Jacobians "
                     "spans their whole spectrum, so the most negative exponents lose digits)"))

    print(f"\nmatmul + QR throughput (torch, {torch.get_num_threads()} threads, {device.type}, "
          f"{args.units}x{args.units}, {args.throughput_steps} iterations of "
          f"Q = torch.linalg.qr(J @ Q)[0]):")
    for dt_, ms in thr.items():
        print(f"  {dname(dt_)}: {ms:.3f} ms/iteration")
    for row in rows:
        frac = thr[row["dtype"]] / row["ms"]
        note = "" if row["r"] == 1 else f" (one QR every {row['r']} steps, so this can exceed 100%)"
        print(f"  {row['name']}: {100 * frac:.0f}% of the {dname(row['dtype'])} matmul + QR "
              f"throughput (goal >= 50% for reortho_every=1){note}")


if __name__ == "__main__":
    main()
