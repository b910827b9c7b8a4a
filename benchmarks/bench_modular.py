"""Benchmark: the fused block recurrence of :class:`trainers.models.ModularRNN` against a per-module
Python loop, forward + backward (goal of issue 15: >= 3x).

- fused: ``ModularRNN.forward`` (all modules in one recurrence over ``modules * module_size``
  units, one matmul per step with the assembled block matrix, the leaky RNN's fused kernel and
  hand-written backward pass), then the readout of the last state through every head.
- loop: what a user would write from 004 Eq. 4: for every time step, for every module, the
  module's own small matmuls (``W_rec`` with zero diagonal, ``W_ff`` from the previous module's
  previous state, ``W_in``, bias), the leaky update, then each module's head; autograd for the
  backward pass. Same parameters (shared tensors).

Loss: ``logsumexp`` of every head's logits on the last state, summed. Before timing, the two
losses and the gradients of every parameter are checked to agree. Times are the median of
``--repeats`` forward+backward passes after one warm-up.

    DYNATOOLS_THREADS=1 python benchmarks/bench_modular.py [--modules 30] [--module-size 10] [--batch 256] [--time 100]
"""

from __future__ import annotations

import argparse
import statistics
import time

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


def fused_forward(net: ModularRNN, u: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    return net.readout(net(u, h0)[:, -1])


def _pass(fn, net, u, h0):
    net.zero_grad(set_to_none=True)
    loss = fn(net, u, h0).logsumexp(-1).sum()
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in net.parameters()]


def _time(fn, net, u, h0, repeats: int) -> float:
    _pass(fn, net, u, h0)                              # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        _pass(fn, net, u, h0)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modules", type=int, default=30)
    ap.add_argument("--module-size", type=int, default=10)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--time", type=int, default=100, help="sequence length (parity at N=25: up to 100)")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    net = ModularRNN(args.modules * args.module_size, n_modules=args.modules, module_size=args.module_size,
                     n_heads=args.modules, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    u = torch.randint(0, 2, (args.batch, args.time, 1), generator=g).float()
    h0 = net.initial_state(args.batch, generator=g)
    with torch_threads():
        threads = torch.get_num_threads()
        (lf, gf), (ll, gl) = _pass(fused_forward, net, u, h0), _pass(loop_forward, net, u, h0)
        torch.testing.assert_close(lf, ll, rtol=1e-4, atol=1e-4)
        for a, b in zip(gf, gl):
            torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)
        t_fused = _time(fused_forward, net, u, h0, args.repeats)
        t_loop = _time(loop_forward, net, u, h0, args.repeats)
    print(f"{args.modules} modules x {args.module_size} units, batch {args.batch}, {args.time} steps, "
          f"forward+backward, {threads} torch thread(s); results agree")
    print(f"  per-module loop : {t_loop * 1e3:9.1f} ms")
    print(f"  fused           : {t_fused * 1e3:9.1f} ms")
    print(f"  speed-up        : {t_loop / t_fused:9.1f}x  (goal >= 3x)")


if __name__ == "__main__":
    main()
