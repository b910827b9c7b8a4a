"""Benchmark: the fused recurrence of :class:`trainers.models.ModularRNN` against a per-module
Python loop, forward + backward (goal of issue 15: >= 3x at 30 modules of 10 units).

- loop: what a user would write from 004 Eq. 4: for every time step, for every module, the
  module's own small matmuls (``W_rec`` with zero diagonal, ``W_ff`` from the previous module's
  previous state, ``W_in``, bias), the leaky update (Eq. 1), then each module's head; autograd
  for the backward pass. Same parameters (shared tensors).
- fused, default: ``ModularRNN.forward`` with automatic ``block_modules``
  (:meth:`ModularRNN.blocks`; on CPU at batch 256, blocks of about 50 units): one loop over
  time, one batched matmul per step over blocks of consecutive modules (each block also reads
  the module before it), the hand-written backward pass, weight gradients as one batched
  product after the time loop. ``--blocks`` sets ``block_modules`` instead.
- fused, dense: the same kernel with ``block_modules = n_modules``: the dense ``(unit, unit)``
  block-bidiagonal matrix in one matmul per step (the arithmetic of the fused path before the
  banded kernel).

Each is followed by the readout of the last state through every head. Loss: ``logsumexp`` of
every head's logits on the last state, summed. Before timing, the losses and the gradients of
every parameter are checked to agree with the loop's. The variants are timed in turn (one
forward+backward each, ``--repeats`` rounds, after a warm-up), so that they share the machine's
load; the table gives the median wall time and the median CPU time of the thread (less
sensitive to other processes on a loaded machine). The load average is printed before and
after.

    DYNATOOLS_THREADS=1 python benchmarks/bench_modular.py [--modules 30] [--module-size 10] [--batch 256] [--time 100]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Callable

import torch

from dynatools.threads import torch_threads
from trainers.models import ModularRNN


def loop_forward(net: ModularRNN, u: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """Per-module loop over time and modules (004 Eq. 1, 4); returns the heads' logits of the last
    state, ``(batch, head, class)``."""
    ms, M = net.module_size, net.n_modules
    eye = torch.eye(ms, dtype=u.dtype)
    W_rec = [w * (1 - eye) for w in net.W_rec]
    tau = [t.clamp(min=1.0) for t in net.tau]
    r = list(h0.split(ms, dim=-1))
    for t in range(u.shape[1]):
        new = []
        for m in range(M):
            C = r[m] @ W_rec[m].T + u[:, t] @ net.W_in[m].T + net.bias[m]
            if m > 0:
                C = C + r[m - 1] @ net.W_ff[m - 1].T
            new.append((1 - 1 / tau[m]) * r[m]
                       + torch.nn.functional.leaky_relu(C, net.negative_slope) / tau[m])
        r = new
    return torch.stack([r[min(k, M - 1)] @ net.heads.weight[k].T + net.heads.bias[k]
                        for k in range(net.n_heads)], dim=1)


def fused_forward(blocks: int | None) -> Callable[[ModularRNN, torch.Tensor, torch.Tensor], torch.Tensor]:
    """The model's fused forward with ``block_modules = blocks``, then every head on the last state."""
    def run(net: ModularRNN, u: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
        net.block_modules = blocks
        return net.readout(net(u, h0)[:, -1])
    return run


def _pass(fn, net, u, h0):
    net.zero_grad(set_to_none=True)
    loss = fn(net, u, h0).logsumexp(-1).sum()
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in net.parameters()]


def _timed(fn, net, u, h0) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.thread_time()
    _pass(fn, net, u, h0)
    return time.perf_counter() - wall, time.thread_time() - cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modules", type=int, default=30)
    ap.add_argument("--module-size", type=int, default=10)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--time", type=int, default=100, help="sequence length (parity at N=25: up to 100)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--blocks", type=int, default=None,
                    help="block_modules of the banded variant (default: automatic)")
    args = ap.parse_args()

    net = ModularRNN(args.modules * args.module_size, n_modules=args.modules, module_size=args.module_size,
                     n_heads=args.modules, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    u = torch.randint(0, 2, (args.batch, args.time, 1), generator=g).float()
    h0 = net.initial_state(args.batch, generator=g)
    net.block_modules = args.blocks
    variants = {
        "per-module loop": loop_forward,
        f"fused, dense (1 block of {args.modules})": fused_forward(args.modules),
        f"fused, default ({net.blocks(args.batch)} modules/block)": fused_forward(args.blocks),
    }
    load0 = os.getloadavg()
    with torch_threads():
        threads = torch.get_num_threads()
        ll, gl = _pass(loop_forward, net, u, h0)
        for name, fn in list(variants.items())[1:]:
            lf, gf = _pass(fn, net, u, h0)
            torch.testing.assert_close(lf, ll, rtol=1e-4, atol=1e-4, msg=f"{name}: loss differs")
            for a, b in zip(gf, gl):
                torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4, msg=f"{name}: gradient differs")
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
        for _ in range(args.repeats):
            for name, fn in variants.items():
                times[name].append(_timed(fn, net, u, h0))
    load1 = os.getloadavg()
    wall = {k: statistics.median(w for w, _ in v) for k, v in times.items()}
    cpu = {k: statistics.median(c for _, c in v) for k, v in times.items()}
    base = "per-module loop"
    print(f"{args.modules} modules x {args.module_size} units, batch {args.batch}, {args.time} steps, "
          f"forward+backward, {threads} torch thread(s); results agree. Load average "
          f"{load0[0]:.1f} before, {load1[0]:.1f} after ({os.cpu_count()} CPUs)")
    print(f"  {'':34s} {'wall':>9s} {'cpu':>9s} {'speed-up wall':>14s} {'cpu':>6s}")
    for k in variants:
        print(f"  {k:34s} {wall[k] * 1e3:6.1f} ms {cpu[k] * 1e3:6.1f} ms {wall[base] / wall[k]:13.1f}x "
              f"{cpu[base] / cpu[k]:5.1f}x")
    print("  goal: fused >= 3x the per-module loop")


if __name__ == "__main__":
    main()
