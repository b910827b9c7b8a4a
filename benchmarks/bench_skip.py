"""Training-time methods of 002 Sec. 3 (CD, SCTT, DASC) against the base model they replace.

Measured: seconds per training step of an ensemble of K rate networks (002's sizes: 50 units,
batch 20, 85 inputs, 33 sigmoid outputs, ReLU, the authors' initialisation and populations,
dt 5 ms, tau 100 ms; T = 400 steps, a delayed task) under each simulation of
``trainers.skip.Simulation``. One training step: ``Ensemble.run`` (one network's own forward for
K = 1), the masked MSE of the readout, backward, ``Adam.step``. The data are random (fixed per
process); the cost does not depend on the values.

Rows, each against the base model at the same (theta-reduced) length:

- ``base`` at T steps; ``sctt`` and ``dasc`` at theta 10 and 40, beta 0.5, at T steps (the same
  T Euler steps plus the skip connections: the overhead is the cost of the mixing);
- ``cd`` at theta 10 from the T-step inputs (every 10th input, ``ceil(T / 10)`` steps of
  ``10 dt``, scored against every 10th target) against ``base`` on those ``ceil(T / 10)`` steps.

The issue's goal: each method adds at most 10% to the step time of its matching base row.

Baseline (the speed-up): DASC as a user writes it in PyTorch, with autograd through a Python
loop over time; the K members' weights stacked and multiplied with ``torch.bmm``; the input
projection of all steps hoisted out of the loop (one ``bmm``); every theta-th step
``h <- beta h + (1 - beta) (h_s + theta (h_{s+1} - h_s))``. Same weights, data, loss, optimiser
and threads. Before any time is taken, its loss and gradients are checked against ours.

Rows alternate over the repeats (``--steps`` timed steps each, after a warm-up); the median per
step is reported, and the overhead both from the medians and as the median of the per-repeat
ratios (paired: more robust on a shared machine).

Run: ``python benchmarks/bench_skip.py [--members 8] [--steps-T 400] [--units 50] [--batch 20]
[--noise] [--steps 5] [--repeats 7] [--rows skip cd user] [--quick]``; set ``DYNATOOLS_THREADS=1`` on a shared machine.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import time

import torch

import trainers  # noqa: F401  (thread policy before torch does any work)
from dynatools.threads import step_work, torch_threads
from trainers.ensemble import Ensemble
from trainers.models import RateRNN
from trainers.skip import Simulation

LR = 2e-3                 # 002's Adam learning rate for the cognitive tasks


def make_members(args) -> list[RateRNN]:
    opts = dict(input_dim=args.input_dim, n_heads=1, n_classes=args.outputs, activation="relu", init="002",
                output_activation="sigmoid", input_units=0.4, output_units=0.4, dt=5.0, tau_ms=100.0)
    if args.noise:
        opts.update(sigma=0.1, noise="ou", noise_tau_ms=100.0)
    return [RateRNN(args.units, generator=torch.Generator().manual_seed(k), **opts) for k in range(args.members)]


def make_data(args, T: int):
    g = torch.Generator().manual_seed(1234)
    K, B = args.members, args.batch
    u = torch.randn(K, B, T, args.input_dim, generator=g)
    target = torch.rand(K, B, T, args.outputs, generator=g) * 0.8 + 0.05
    mask = (torch.rand(K, B, T, 1, generator=g) < 0.5).float().expand(K, B, T, args.outputs).contiguous()
    noise = torch.randn(K, B, T, args.units, generator=g) if args.noise else None
    return u, target, mask, noise


def masked_mse(y: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Each member's masked MSE, summed over members (as ``trainers.ensemble.member_losses``)."""
    return ((mask * (y - target) ** 2).sum((1, 2, 3)) / mask.sum((1, 2, 3)).clamp(min=1)).sum()



def optimizer_step(loss_fn, opt: torch.optim.Optimizer) -> float:
    """One training step: the loss, its backward and the optimizer's update; returns the loss."""
    loss = loss_fn()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return float(loss.detach())

class Ours:
    """One training step of ``Ensemble.run`` under a simulation (fresh copies of the members)."""

    def __init__(self, args, sim: Simulation | None, data):
        self.ens = Ensemble(make_members(args)).train()
        self.opt = torch.optim.Adam(self.ens.parameters(), lr=LR)
        self.sim, self.data = sim, data
        self.h0 = self.ens.initial_state(args.batch)

    def loss(self) -> torch.Tensor:
        u, target, mask, noise = self.data
        _, Y = self.ens.run(u, self.h0, noise, simulation=self.sim)
        if self.sim is not None and self.sim.coarse > 1:        # CD: scored at its coarse steps
            c = self.sim.coarse
            target, mask = target[..., ::c, :], mask[..., ::c, :]
        return masked_mse(Y.squeeze(-2), target, mask)

    def step(self) -> float:
        return optimizer_step(self.loss, self.opt)


class UserDASC:
    """DASC as a user writes it: stacked weights, ``torch.bmm``, autograd through a time loop."""

    def __init__(self, args, theta: int, beta: float, data):
        members = make_members(args)
        st = lambda f: torch.stack([f(m).detach().clone() for m in members])  # noqa: E731
        self.W = st(lambda m: m.W_rec).requires_grad_()                     # (K, N, N)
        self.W_in = st(lambda m: m.W_in).requires_grad_()                   # (K, N, I)
        self.b = st(lambda m: m.b).requires_grad_()                         # (K, N)
        self.W_out = st(lambda m: m.heads.weight[0]).requires_grad_()       # (K, O, N)
        self.b_out = st(lambda m: m.heads.bias[0]).requires_grad_()         # (K, O)
        self.in_mask = members[0].input_mask.clone()
        self.out_mask = members[0].output_mask.clone()
        self.alpha = st(lambda m: m.alpha())[:, None, :]                    # (K, 1, N), fixed
        self.sigma = members[0].sigma if args.noise else 0.0
        self.ou_a = math.exp(-5.0 / 100.0)
        self.theta, self.beta, self.data = theta, beta, data
        self.opt = torch.optim.Adam([self.W, self.W_in, self.b, self.W_out, self.b_out], lr=LR)

    def loss(self) -> torch.Tensor:
        u, target, mask, noise = self.data
        K, B, T, _ = u.shape
        W_in = self.W_in * self.in_mask[:, None]
        drive = torch.bmm(u.reshape(K, B * T, -1), W_in.transpose(1, 2)).reshape(K, B, T, -1) + self.b[:, None, None]
        h = torch.zeros(K, B, self.W.shape[1])
        Wt = self.W.transpose(1, 2)
        o = None
        c = math.sqrt(1 - self.ou_a ** 2)
        hs = []
        for t in range(T):
            x = drive[:, :, t]
            if self.sigma > 0:                                   # Ornstein-Uhlenbeck input noise
                o = noise[:, :, t] if o is None else self.ou_a * o + c * noise[:, :, t]
                x = x + self.sigma * o
            if t % self.theta == 0:
                h_s = h
            h = h + self.alpha * (torch.relu(torch.bmm(h, Wt) + x) - h)
            if t % self.theta == 0:
                h_s1 = h
            if t % self.theta == self.theta - 1:                 # 002 Eq. 9
                estimate = h_s + self.theta * (h_s1 - h_s)
                h = self.beta * h + (1 - self.beta) * estimate
            hs.append(h)
        H = torch.stack(hs, 2)                                   # (K, B, T, N)
        W_out = self.W_out * self.out_mask
        y = torch.sigmoid(torch.bmm(H.reshape(K, B * T, -1), W_out.transpose(1, 2)).reshape(K, B, T, -1)
                          + self.b_out[:, None, None])
        return masked_mse(y, target, mask)

    def step(self) -> float:
        return optimizer_step(self.loss, self.opt)


def check_agreement(args, data) -> None:
    """Baseline and ours (DASC theta 10, beta 0.5): same loss and gradients before any update."""
    ours, user = Ours(args, Simulation("dasc", 10, 0.5), data), UserDASC(args, 10, 0.5, data)
    lo, lu = ours.loss(), user.loss()
    lo.backward()
    lu.backward()
    torch.testing.assert_close(lo, lu, rtol=1e-4, atol=1e-6)
    got = {"W_rec": torch.stack([m.W_rec.grad for m in ours.ens.members]),
           "W_in": torch.stack([m.W_in.grad for m in ours.ens.members]),
           "W_out": torch.stack([m.heads.weight.grad[0] for m in ours.ens.members])}
    want = {"W_rec": user.W.grad, "W_in": user.W_in.grad, "W_out": user.W_out.grad}
    for name in got:
        torch.testing.assert_close(got[name], want[name], rtol=1e-3, atol=1e-5 * float(want[name].abs().max()))


def timed(runner, steps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
        runner.step()
    return (time.perf_counter() - t0) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=8, help="ensemble size K (1: one network, no vmap)")
    ap.add_argument("--steps-T", dest="T", type=int, default=400, help="Euler steps per trial (400 = 2 s at 5 ms)")
    ap.add_argument("--units", type=int, default=50)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--input-dim", type=int, default=85)
    ap.add_argument("--outputs", type=int, default=33)
    ap.add_argument("--noise", action="store_true", help="private OU noise, sigma 0.1 (002's code)")
    ap.add_argument("--steps", type=int, default=5, help="timed training steps per row and repeat")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--rows", nargs="+", choices=("skip", "cd", "user"), default=["skip", "cd", "user"],
                    help="groups of rows to time: skip (base, SCTT, DASC at T), cd (CD and base at T/10), "
                    "user (the baseline; needs skip)")
    ap.add_argument("--quick", action="store_true", help="tiny smoke run (sizes and repeats cut)")
    args = ap.parse_args()
    if args.quick:
        args.members, args.T, args.units, args.batch = min(args.members, 2), 80, 8, 4
        args.input_dim, args.outputs, args.steps, args.repeats = 5, 3, 1, 1

    T, Tc = args.T, -(-args.T // 10)
    full, reduced = make_data(args, T), None
    reduced = tuple(None if x is None else x[..., ::10, :].contiguous() for x in full)
    check_agreement(args, full)

    if "user" in args.rows and "skip" not in args.rows:
        ap.error("--rows user needs skip (the speed-up is against ours DASC θ10)")
    rows = [  # (name, runner, matching base row)
        ("base", Ours(args, None, full), None),
        ("sctt θ10", Ours(args, Simulation("sctt", 10, 0.5), full), "base"),
        ("sctt θ40", Ours(args, Simulation("sctt", 40, 0.5), full), "base"),
        ("dasc θ10", Ours(args, Simulation("dasc", 10, 0.5), full), "base"),
        ("dasc θ40", Ours(args, Simulation("dasc", 40, 0.5), full), "base"),
        (f"base T={Tc}", Ours(args, None, reduced), None),
        ("cd θ10", Ours(args, Simulation("cd", 10), full), f"base T={Tc}"),
        ("user dasc θ10", UserDASC(args, 10, 0.5, full), None),
    ]
    def group(name: str) -> str:
        return "user" if name.startswith("user") else "cd" if name.startswith(("cd", "base T")) else "skip"
    rows = [r for r in rows if group(r[0]) in args.rows]
    work = step_work(Ensemble(make_members(args)), args.members * args.batch)
    with torch_threads(work=work) as n_threads:
        print(f"machine: {platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}, "
              f"torch threads {n_threads}, load average {os.getloadavg()[0]:.2f}")
        print(f"{args.members} members x {args.units} units, batch {args.batch}, T = {T} steps, "
              f"{args.input_dim} inputs, {args.outputs} outputs, noise {'OU 0.1' if args.noise else 'off'}; "
              f"{args.steps} steps x {args.repeats} repeats; loss and gradients of the baseline checked")
        for _, r, _ in rows:                                     # warm-up
            timed(r, 1)
        times = {name: [] for name, _, _ in rows}
        for _ in range(args.repeats):
            for name, r, _ in rows:
                times[name].append(timed(r, args.steps))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{'row':>14} | {'ms/step':>8} | {'vs':>10} | {'overhead':>8} | {'paired':>8} | goal <= 10%")
    for name, _, base in rows:
        if name.startswith("user"):
            continue
        if base is None:
            print(f"{name:>14} | {1e3 * med[name]:8.2f} | {'':>10} | {'':>8} | {'':>8} |")
            continue
        over = 100 * (med[name] / med[base] - 1)
        paired = 100 * (statistics.median(a / b for a, b in zip(times[name], times[base])) - 1)
        print(f"{name:>14} | {1e3 * med[name]:8.2f} | {base:>10} | {over:+7.1f}% | {paired:+7.1f}% | "
              f"{'met' if max(over, paired) <= 10 else 'NOT met'}")
    if "user dasc θ10" not in med:
        return
    user, ours = med["user dasc θ10"], med["dasc θ10"]
    print(f"baseline (user DASC θ10, autograd loop, bmm): {1e3 * user:.2f} ms/step; "
          f"ours DASC θ10 {1e3 * ours:.2f} ms/step: speed-up {user / ours:.2f}x")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
