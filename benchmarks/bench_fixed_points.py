"""Fixed-point search: one batched optimisation over all initial states vs a loop over the points,
same optimiser, same network, same states, one process.

Measured: the Adam phase of :func:`dynatools.fixed_points` (``dynatools.fixed_points._adam``:
``torch.optim.Adam`` on ``sum_i q_i``, ``q = 0.5 ||F(h) - h||^2``, with the exponential learning-rate
decay and the per-point convergence mask) on the map ``h -> tanh(W h + b)`` of a random
``--units``-unit network (default 256; ``W ~ N(0, gain^2 / units)``, gain 1.5, seeded), from
``--points`` initial states (default 1000) taken from the network's own trajectories.

- batched (ours): all points as one ``(point, unit)`` tensor, one Adam, ``--iters`` iterations.
- loop (the baseline): the same function on one point at a time (its own Adam: the per-point
  path is the same, Adam being elementwise), on the first ``--loop-points`` points (default 50),
  and its time scaled to all points (each point costs the same: same iterations, same sizes).

``tol`` is set below reach (1e-30), so every point runs all ``--iters`` iterations in both: the
comparison is per iteration of the same work. Before any time is printed the loop's final states
must equal the batched ones (float64: max abs difference < 1e-8; float32: < 1e-3).

Threads: both run with the same torch threads (``--threads``, else what
``dynatools.threads.choose_threads`` picks for the batched work, at most the machine's cores); the
loop's single-point work is far below the threshold where threads help. Medians of ``--repeats``
(default 3) runs, the order batched -> loop reversed every other round.

Also reported: the full ``dynatools.fixed_points`` call (Adam, duplicate merge, Levenberg-Marquardt
polishing, linearisation) on the same problem, and what it found.

Run: ``python benchmarks/bench_fixed_points.py [--units 256] [--points 1000] [--iters 200]
[--loop-points 50] [--repeats 3] [--dtype float32|float64] [--threads N] [--device cpu|cuda]``
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np
import torch

from dynatools.fixed_points import _adam, _Map, fixed_points
from dynatools.threads import choose_threads, torch_threads


def network(units: int, dtype: torch.dtype, device: str, gain: float = 1.5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    W = (gain * torch.randn(units, units, generator=g, dtype=torch.float64) / units**0.5).to(device, dtype)
    b = (0.1 * torch.randn(units, generator=g, dtype=torch.float64)).to(device, dtype)

    def step(h: torch.Tensor, u: torch.Tensor | None) -> torch.Tensor:
        return torch.tanh(torch.addmm(b, h, W.T))

    return step


def states(step, units: int, points: int, dtype: torch.dtype, device: str, seed: int = 1) -> torch.Tensor:
    """``points`` states from 20 trajectories of the network (after 20 steps of transient)."""
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(20, units, generator=g, dtype=torch.float64).to(device, dtype)
    out = []
    with torch.no_grad():
        for t in range(20 + -(-points // 20)):
            h = step(h, None)
            if t >= 20:
                out.append(h)
    return torch.cat(out)[:points].contiguous()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--units", type=int, default=256)
    ap.add_argument("--points", type=int, default=1000)
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--loop-points", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    dtype = getattr(torch, args.dtype)
    step = network(args.units, dtype, args.device)
    h0 = states(step, args.units, args.points, dtype, args.device)
    net = _Map(step, None, False, None)
    kw = dict(tol=1e-30, max_iter=args.iters, lr=1e-2, lr_final=1e-2, progress=False)
    threads = args.threads or choose_threads(6.0 * args.points * args.units**2)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    m = min(args.loop_points, args.points)

    def batched():
        sync()
        t = time.perf_counter()
        h, q, _ = _adam(net, h0, None, **kw)
        sync()
        return time.perf_counter() - t, h

    def loop():
        sync()
        t = time.perf_counter()
        hs = [_adam(net, h0[i:i + 1], None, **kw)[0] for i in range(m)]
        sync()
        return time.perf_counter() - t, torch.cat(hs)

    with torch_threads(threads), torch.enable_grad():
        _adam(net, h0[:4], None, **{**kw, "max_iter": 5})          # warm-up (imports, allocator)
        times_b, times_l = [], []
        for r in range(args.repeats):
            order = (batched, loop) if r % 2 == 0 else (loop, batched)
            for fn in order:
                t, h = fn()
                (times_b if fn is batched else times_l).append(t)
                if fn is batched:
                    hb = h
                else:
                    hl = h
        diff = float((hb[:m] - hl).abs().max())
        limit = 1e-8 if dtype == torch.float64 else 1e-3
        if not diff < limit:
            raise SystemExit(f"batched and looped points differ by {diff:.3g} (limit {limit:g}); not timing.")
        t0 = time.perf_counter()
        fp = fixed_points(step, h0, max_iter=args.iters * 5, device=args.device)
        sync()
        full = time.perf_counter() - t0
    tb = statistics.median(times_b)
    tl = statistics.median(times_l) * args.points / m
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, {threads} thread(s), "
          f"{args.device}, {args.dtype}")
    print(f"problem: {args.points} initial states, {args.units} units, {args.iters} Adam iterations each")
    print(f"batched (one (point, unit) tensor): {tb:8.2f} s  [{min(times_b):.2f}-{max(times_b):.2f}]  "
          f"{1e6 * tb / (args.iters * args.points):.1f} us per point-iteration")
    print(f"per-point loop ({m} points timed, x{args.points / m:g}): {tl:8.2f} s  "
          f"[{min(times_l) * args.points / m:.2f}-{max(times_l) * args.points / m:.2f}]  "
          f"{1e6 * tl / (args.iters * args.points):.1f} us per point-iteration")
    print(f"speed-up: {tl / tb:.1f}x (goal >= 20x); batched and looped final states agree to {diff:.2g}")
    cls = {c: int((fp.stability.values == c).sum()) for c in ("stable", "saddle", "unstable", "marginal")}
    print(f"full dynatools.fixed_points (max_iter={args.iters * 5}, polish, linearisation): {full:.2f} s; "
          f"{fp.sizes['point']} fixed point(s) {cls}, {fp.attrs['iterations']} Adam iterations, "
          f"{fp.attrs['n_not_converged']} minima above tol (slow or stuck)")


if __name__ == "__main__":
    main()
