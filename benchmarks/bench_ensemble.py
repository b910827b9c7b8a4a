"""Ensembles of rate networks trained in parallel against the same networks trained one by one.

Measured: wall-clock seconds of ``--steps`` optimiser steps of each of K rate networks (002's
model: ReLU rate RNN, dt 5 ms, tau 100 ms, sigmoid readout, Adam, clipping 1.0) on a cognitive
task (default ``go``; 002's batch), i.e. K x steps network updates, three ways in one process:

- ours, parallel: ``trainers.ensemble.trial_epoch`` on an ``Ensemble`` of K members (one
  vmapped computation: batched matrix products; the engine's thread choice);
- ours, sequential: the same code with K = 1, run K times (member k's seed), as K separate
  ``trainers train`` runs would do it;
- baseline: a straightforward loop as a user writes it, K times: ``RateRNN`` forward over the
  batch, readout, masked MSE, backward, ``clip_grad_norm_``, ``Adam.step`` (torch's default
  threads).

Same work: member k draws the same trials (seed + k) in all three, so the trial lengths agree;
the parallel run pads each step's batches to the longest member (extra work that only it does).
Before timing, the parallel losses of the first step are checked against the sequential ones
(rtol 1e-4). Warm-up steps are not timed; the three alternate over the repeats and the median
is reported.

Run: ``python benchmarks/bench_ensemble.py [--members 16] [--units 256] [--task go]
[--batch B] [--steps 5] [--repeats 3] [--device auto|cpu|cuda]``
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from types import SimpleNamespace

import numpy as np
import torch

import trainers
from dynatools.threads import step_work, torch_threads
from trainers.engine import _member_streams, _seeds, make_optimizer, resolve_device
from trainers.ensemble import Ensemble, member_batch, trial_epoch
from trainers.tasks.trials import masked_mse


def build(cfg, task, seeds, device):
    members = []
    for s in seeds:
        init_seed, _, _ = _seeds(s)
        members.append(cfg.make_model(task, generator=torch.Generator().manual_seed(init_seed)))
    ens = Ensemble(members).to(device)
    return ens, make_optimizer(cfg, ens)


def ours(cfg, task, seeds, device, steps):
    """``steps`` steps of the ensemble of the members with ``seeds`` (the engine's code)."""
    ens, opt = build(cfg, task, seeds, device)
    streams = [_member_streams(s, 1, device)[0].data for s in seeds]
    run_cfg = SimpleNamespace(**{**cfg.__dict__, "steps_per_epoch": steps})
    with torch_threads(work=3 * step_work(ens, cfg.batch)):
        t0 = time.perf_counter()
        rec, _ = trial_epoch(ens, task, opt, run_cfg, streams, device, iteration=0)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0, np.array(rec["loss"])


def baseline(cfg, task, seed, device, steps):
    """A user's loop for one network (torch's default threads)."""
    init_seed, _, _ = _seeds(seed)
    net = cfg.make_model(task, generator=torch.Generator().manual_seed(init_seed)).to(device)
    opt = make_optimizer(cfg, net)
    gen = _member_streams(seed, 1, device)[0].data
    losses = []
    t0 = time.perf_counter()
    for _ in range(steps):
        b = task.sample(cfg.batch, generator=gen, device=device)
        h0 = net.initial_state(cfg.batch, generator=gen)
        y = net.readout(net(b.inputs, h0), heads=1)
        loss = masked_mse(y, b)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.clip)
        opt.step()
        losses.append(float(loss))
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, np.array(losses)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=16)
    ap.add_argument("--units", type=int, default=256)
    ap.add_argument("--task", default="go")
    ap.add_argument("--batch", type=int, default=None, help="trials per batch (default: the task's, 002)")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--skip-sequential", action="store_true", help="time the parallel run only (GPU scaling)")
    args = ap.parse_args()
    device = resolve_device(args.device)
    given = {"task": args.task, "units": args.units, "seed": 0, "device": device.type}
    if args.batch:
        given["batch"] = args.batch
    cfg = trainers.TrainConfig.from_dict(given).resolved()
    task = cfg.make_task()
    seeds = [cfg.seed + k for k in range(args.members)]
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}, device {device}, "
          f"torch threads {torch.get_num_threads()}")
    print(f"task {cfg.task}, {args.members} members x {cfg.units} units, batch {cfg.batch}, {args.steps} steps each")

    # correctness: the parallel first steps equal the sequential ones
    _, par = ours(cfg, task, seeds, device, 2)
    for k in range(min(args.members, 3)):
        _, one = ours(cfg, task, [seeds[k]], device, 2)
        np.testing.assert_allclose(par[:, k], one[:, 0], rtol=1e-4)
    ours(cfg, task, seeds, device, 1)                           # warm-up
    baseline(cfg, task, seeds[0], device, 1)

    times = {"parallel": [], "sequential": [], "baseline": []}
    for _ in range(args.repeats):
        times["parallel"].append(ours(cfg, task, seeds, device, args.steps)[0])
        if args.skip_sequential:
            continue
        times["sequential"].append(sum(ours(cfg, task, [s], device, args.steps)[0] for s in seeds))
        times["baseline"].append(sum(baseline(cfg, task, s, device, args.steps)[0] for s in seeds))
    med = {k: statistics.median(v) for k, v in times.items() if v}
    updates = args.members * args.steps
    for k, v in med.items():
        print(f"{k:>10}: {v:8.3f} s  ({updates / v:7.1f} network updates/s)")
    if not args.skip_sequential:
        print(f"speed-up parallel vs ours sequential: {med['sequential'] / med['parallel']:.2f}x; "
              f"vs baseline: {med['baseline'] / med['parallel']:.2f}x")


if __name__ == "__main__":
    main()
