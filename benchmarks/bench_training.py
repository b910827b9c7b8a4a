"""Multi-head parity training: trainers against a straightforward baseline, same work, one process.

Measured: sequences per second of training steps of a leaky RNN (500 units, batch 256) on
N-parity with every head N = 2..N_max active (N_max - 1 heads), for N_max = 10 and 30 (also
50 and 100 on CUDA). One optimizer step = draw a batch -> initial state -> run the network ->
readout of the last step for the active heads -> summed cross-entropy -> backward ->
``clip_grad_norm_(2.0)`` -> SGD (lr 0.05, momentum 0.1, Nesterov).

- ours: ``trainers.Parity().sample`` on the device, ``trainers.LeakyRNN(units,
  n_heads=N_max - 1, negative_slope=0.01)`` (fused recurrence), ``model.readout(H[:, -1],
  heads=len(Ns))``: the per-step lines of ``trainers.engine._loop``, copied below.
- baseline: the same model written as a user would, following the authors' code
  (LevinaLab/rnn_timescale_public, ``src/tasks/tasks.py`` and ``src/models/RNN_Stack.py``):
  per-sequence task generation in a Python loop (own p and bits per sequence, one Python call
  per sequence and N for the parity of its last N bits, then stacking), an ``nn.Module`` with
  an ``nn.Linear`` input layer applied to all steps at once, an ``nn.Linear`` recurrent layer
  whose diagonal is zeroed with ``weight.data.fill_diagonal_(0.)`` in every forward pass, a
  Python loop over time steps, one ``nn.Linear(units, 2)`` per head in an ``nn.ModuleList``
  evaluated in a Python loop, ``nn.CrossEntropyLoss`` summed over heads.

Fairness: same batch, units, heads and optimizer; the sequence lengths (uniform in
[N_max + 2, 4 N_max + 2)) are drawn once from a seeded numpy RNG and the SAME list is fed to
both, so both do identical amounts of work; both start from the same weights; warm-up steps are
not timed; ``torch.set_num_threads`` is left at its default; the two alternate over the repeats
and the median sequences/s of each is reported. Before timing, a small case (16 units, one fixed
batch, the baseline's modules holding ours' weights) checks that both compute the same loss and
the same gradients (max abs difference < 1e-4) and the same parity labels.

One known difference, inherited from the authors' code: the baseline's recurrent weight gets a
gradient on its diagonal too (zeroed again in the next forward pass, so it never acts); it does
enter the baseline's gradient norm for clipping. Ours masks the diagonal, its gradient is zero.

Run: ``python benchmarks/bench_training.py [--n-max 10 30] [--steps 5] [--repeats 3]
[--units 500] [--batch 256] [--device auto|cpu|cuda]``
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import trainers
from trainers.engine import resolve_device

LR, MOMENTUM, CLIP, SLOPE = 0.05, 0.1, 2.0, 0.01


# ----------------------------------------------------------------------------------- ours
def ours_loss(model, inputs, labels, h0, n_heads):
    """Forward pass and loss exactly as in ``trainers.engine._loop``."""
    H = model(inputs, h0)
    logits = model.readout(H[:, -1], heads=n_heads)          # (batch, head, class)
    return F.cross_entropy(logits.transpose(1, 2), labels, reduction="none").mean(0).sum()


def ours_step(model, optimizer, task, Ns, batch, length, generator, device):
    """One optimizer step: the lines of ``trainers.engine._loop`` (length given explicitly)."""
    b = task.sample(Ns, batch, generator=generator, device=device, length=length)
    h0 = model.initial_state(batch, generator=generator)
    loss = ours_loss(model, b.inputs, b.labels, h0, len(Ns))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=CLIP)
    optimizer.step()
    return loss.detach()


def make_ours(units, n_heads, device, seed=0):
    model = trainers.LeakyRNN(units, n_heads=n_heads, negative_slope=SLOPE,
                              generator=torch.Generator().manual_seed(seed)).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    return model, torch.optim.SGD(params, lr=LR, momentum=MOMENTUM, nesterov=True)


# ------------------------------------------------------------------------------- baseline
def generate_binary_sequence(M):
    return (torch.rand(M) < torch.rand(1)) * 1.0            # own p ~ U(0, 1) per sequence


def get_parity(vec, N):
    return (vec[-N:].sum() % 2).long()


def baseline_batch(Ns, bs, M, device):
    """Per-sequence generation as in the authors' tasks.py; returns (time, batch, 1) and labels."""
    with torch.no_grad():
        sequences = [generate_binary_sequence(M).unsqueeze(-1) for _ in range(bs)]
        labels = [torch.stack([get_parity(s, N) for s in sequences]) for N in Ns]
    return torch.stack(sequences).permute(1, 0, 2).to(device), [lab.to(device) for lab in labels]


class BaselineRNN(nn.Module):
    """One leaky layer as in the authors' RNN_Stack (trainable tau, readout heads in a ModuleList)."""

    def __init__(self, n_units, n_heads, input_size=1, num_classes=2):
        super().__init__()
        self.n_units = n_units
        self.input_layer = nn.Linear(input_size, n_units)
        self.w_hh = nn.Linear(n_units, n_units)
        self.tau = nn.Parameter(1 + torch.rand(n_units))
        self.fc = nn.ModuleList([nn.Linear(n_units, num_classes) for _ in range(n_heads)])
        self.afunc = nn.LeakyReLU(SLOPE)

    def forward(self, data, h, n_heads):
        """``data`` (time, batch, input), ``h`` (batch, unit) -> final state, list of logits."""
        x = self.input_layer(data)
        self.w_hh.weight.data.fill_diagonal_(0.0)           # no self-connections
        for t in range(data.size(0)):
            h = (1 - 1 / torch.clamp(self.tau, min=1.0)) * h + \
                (self.w_hh(h) + x[t]) / torch.clamp(self.tau, min=1.0)
            h = self.afunc(h)
        return h, [self.fc[i](h) for i in range(n_heads)]


def baseline_loss(model, criterion, data, labels, h0, n_heads):
    _, out = model(data, h0, n_heads)
    loss = 0
    for i in range(n_heads):
        loss = loss + criterion(out[i], labels[i])
    return loss


def baseline_step(model, optimizer, criterion, Ns, batch, length, device):
    data, labels = baseline_batch(Ns, batch, length, device)
    h0 = 0.1 * torch.rand(batch, model.n_units, device=device)
    loss = baseline_loss(model, criterion, data, labels, h0, len(Ns))
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=CLIP)
    optimizer.step()
    return loss.detach()


def make_baseline(units, n_heads, device):
    model = BaselineRNN(units, n_heads).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, nesterov=True)
    return model, optimizer, nn.CrossEntropyLoss()


def copy_weights(ours, base):
    """Give the baseline's modules exactly the weights of ours."""
    with torch.no_grad():
        base.tau.copy_(ours.tau)
        base.input_layer.weight.copy_(ours.W_in)
        base.input_layer.bias.copy_(ours.b_in)
        base.w_hh.weight.copy_(ours.effective_W_rec())
        base.w_hh.bias.copy_(ours.b_rec)
        for i, fc in enumerate(base.fc):
            fc.weight.copy_(ours.heads.weight[i])
            fc.bias.copy_(ours.heads.bias[i])


# ---------------------------------------------------------------------------------- check
def check_equivalence(device, units=16, n_max=6, batch=8, length=25, tol=1e-4):
    """Same loss, gradients and labels on one fixed batch; returns (ok, report lines)."""
    Ns = list(range(2, n_max + 1))
    torch.manual_seed(1)
    ours, _ = make_ours(units, len(Ns), device, seed=1)
    base, _, criterion = make_baseline(units, len(Ns), device)
    copy_weights(ours, base)
    b = trainers.Parity().sample(Ns, batch, generator=torch.Generator(device=device).manual_seed(2),
                                 device=device, length=length)
    h0 = ours.initial_state(batch, generator=torch.Generator(device=device).manual_seed(3))
    seqs = list(b.bits.cpu())
    base_labels = [torch.stack([get_parity(s, N) for s in seqs]).to(device) for N in Ns]
    labels_same = all(torch.equal(base_labels[i], b.labels[:, i]) for i in range(len(Ns)))

    loss_o = ours_loss(ours, b.inputs, b.labels, h0, len(Ns))
    loss_o.backward()
    loss_b = baseline_loss(base, criterion, b.inputs.transpose(0, 1), base_labels, h0.clone(), len(Ns))
    loss_b.backward()

    off = 1.0 - torch.eye(units, device=device)
    pairs = {
        "tau": (ours.tau.grad, base.tau.grad),
        "W_in": (ours.W_in.grad, base.input_layer.weight.grad),
        "b_in": (ours.b_in.grad, base.input_layer.bias.grad),
        "W_rec off-diag": (ours.W_rec.grad * off, base.w_hh.weight.grad * off),
        "b_rec": (ours.b_rec.grad, base.w_hh.bias.grad),
        "heads W": (ours.heads.weight.grad, torch.stack([fc.weight.grad for fc in base.fc])),
        "heads b": (ours.heads.bias.grad, torch.stack([fc.bias.grad for fc in base.fc])),
    }
    diffs = {k: float((a - c).abs().max()) for k, (a, c) in pairs.items()}
    loss_o, loss_b = loss_o.detach(), loss_b.detach()
    loss_diff = abs(float(loss_o) - float(loss_b))
    our_diag = float(ours.W_rec.grad.diagonal().abs().max())
    base_diag = float(base.w_hh.weight.grad.diagonal().norm())
    ok = labels_same and loss_diff < tol and max(diffs.values()) < tol and our_diag == 0.0
    lines = [
        (f"check ({units} units, batch {batch}, N = 2..{n_max}, length {length}, same weights, "
         f"inputs and h0, {device.type}): {'OK' if ok else 'FAILED'}"),
        (f"  loss ours {float(loss_o):.6f}, baseline {float(loss_b):.6f}, |diff| {loss_diff:.1e}; "
         f"labels identical: {labels_same}"),
        "  max |grad ours - grad baseline|: " + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items()),
        (f"  W_rec diagonal gradient: ours max |g| {our_diag:.1e} (masked), baseline norm "
         f"{base_diag:.2e} (unused: zeroed in the next forward pass; enters its clip norm)"),
    ]
    return ok, lines


# --------------------------------------------------------------------------------- timing
def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_one(n_max, args, device):
    Ns = list(range(2, n_max + 1))
    lo, hi = trainers.Parity.length_range(n_max)
    rng = np.random.default_rng(1000 + n_max)
    lengths = [int(x) for x in rng.integers(lo, hi, size=args.warmup + args.repeats * args.steps)]
    warm, timed = lengths[: args.warmup], lengths[args.warmup:]

    torch.manual_seed(0)
    ours, opt_o = make_ours(args.units, len(Ns), device, seed=0)
    base, opt_b, criterion = make_baseline(args.units, len(Ns), device)
    copy_weights(ours, base)
    task = trainers.Parity()
    gen = torch.Generator(device=device).manual_seed(0)

    def run_ours(ls):
        sync(device)
        t0 = time.perf_counter()
        for L in ls:
            ours_step(ours, opt_o, task, Ns, args.batch, L, gen, device)
        sync(device)
        return time.perf_counter() - t0

    def run_base(ls):
        sync(device)
        t0 = time.perf_counter()
        for L in ls:
            baseline_step(base, opt_b, criterion, Ns, args.batch, L, device)
        sync(device)
        return time.perf_counter() - t0

    run_ours(warm)
    run_base(warm)
    sps_o, sps_b = [], []
    for r in range(args.repeats):
        ls = timed[r * args.steps:(r + 1) * args.steps]
        order = (("ours", run_ours), ("base", run_base))
        for name, fn in (order if r % 2 == 0 else order[::-1]):
            sps = args.steps * args.batch / fn(ls)
            (sps_o if name == "ours" else sps_b).append(sps)
    o, b = statistics.median(sps_o), statistics.median(sps_b)
    print(f"N_max={n_max}: ours {', '.join(f'{x:.1f}' for x in sps_o)} seq/s; baseline "
          f"{', '.join(f'{x:.1f}' for x in sps_b)} seq/s (per repeat)", flush=True)
    return {"n_max": n_max, "heads": len(Ns), "mean_len": float(np.mean(timed)),
            "ours": o, "base": b, "ratio": o / b}


def parse_n_max(values):
    return [int(v) for item in values for v in item.replace(",", " ").split()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-max", nargs="+", default=None,
                    help='largest N, one run each (default "10 30"; on CUDA "10 30 50 100")')
    ap.add_argument("--steps", type=int, default=None,
                    help="optimizer steps timed per repeat (default 5 on CPU, 20 on CUDA)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=None,
                    help="untimed steps per implementation (default 1 on CPU, 3 on CUDA)")
    ap.add_argument("--units", type=int, default=500)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = ap.parse_args()

    try:
        device = resolve_device(args.device)
    except ValueError as exc:
        ap.error(str(exc))
    cuda = device.type == "cuda"
    n_maxes = parse_n_max(args.n_max) if args.n_max else ([10, 30, 50, 100] if cuda else [10, 30])
    if args.steps is None:
        args.steps = 20 if cuda else 5
    if args.warmup is None:
        args.warmup = 3 if cuda else 1
    if min(n_maxes) < 2 or min(args.steps, args.repeats, args.units, args.batch) < 1 or args.warmup < 0:
        ap.error("need n-max >= 2, steps, repeats, units, batch >= 1, warmup >= 0")

    dev_name = torch.cuda.get_device_name(device) if cuda else "cpu"
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"python {platform.python_version()}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), device {dev_name}")
    print(f"setup: {args.units} units, batch {args.batch}, heads N = 2..N_max, "
          f"{args.steps} timed steps x {args.repeats} repeats (alternating) after {args.warmup} "
          f"warm-up step(s) each; SGD lr {LR} momentum {MOMENTUM} Nesterov, clip {CLIP}")

    ok, lines = check_equivalence(device)
    print("\n".join(lines), flush=True)
    if not ok:
        raise SystemExit("equivalence check FAILED: the two implementations do not compute the "
                         "same thing; timings would not be comparable.")

    rows = [bench_one(n, args, device) for n in n_maxes]
    print()
    print("| N_max | heads | mean length | ours seq/s | baseline seq/s | ratio |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['n_max']} | {r['heads']} | {r['mean_len']:.1f} | {r['ours']:.1f} | "
              f"{r['base']:.1f} | {r['ratio']:.2f}x |")
    print("\nmedian over repeats; ratio = ours / baseline sequences per second (> 1: ours faster)")


if __name__ == "__main__":
    main()
