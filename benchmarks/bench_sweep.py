"""Benchmark: a grid of small training runs as a sweep on a local dask cluster against the loop a
user would write (issue 18).

- loop: ``for config in grid: trainers.train(config, run_dir)``, one run after another in one
  process, with the engine's thread policy (one thread for a network this small).
- sweep: :func:`trainers.sweep.run_sweep` with its default ``LocalCluster`` (one worker process
  per core, one run at a time each, ``cores // runs`` threads per run); the time includes
  starting the cluster and the workers' imports.

Both train the same grid (the same configurations and seeds) into separate folders; the final
weights of every run are checked to be equal before the times are printed. The load average is
printed before and after (the machine's other work shares the cores).

    python benchmarks/bench_sweep.py [--runs 8] [--units 64] [--epochs 8] [--steps 100] [--workers N]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

import trainers
from dynatools.threads import available_cores
from trainers.sweep import Sweep, run_sweep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8, help="runs in the grid (seeds 0..runs-1)")
    parser.add_argument("--units", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=100, help="optimizer steps per epoch")
    parser.add_argument("--workers", type=int, help="workers of the local cluster (default one per core)")
    args = parser.parse_args()
    base = {"task": "parity", "units": args.units, "batch": args.batch, "steps_per_epoch": args.steps,
            "eval_batches": 2, "max_epochs": args.epochs, "n_max": 6, "device": "cpu"}
    sweep = Sweep(base, {"seed": list(range(args.runs))})
    runs = sweep.runs()
    print(f"{args.runs} runs: parity, {args.units} units, batch {args.batch}, {args.epochs} epochs of "
          f"{args.steps} steps; {available_cores()} cores; load {os.getloadavg()[0]:.2f}; torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        for run in runs:
            trainers.train(run.config, tmp / "loop" / run.name, progress=False)
        loop = time.perf_counter() - t0
        t0 = time.perf_counter()
        report = run_sweep(sweep, tmp / "sweep", workers=args.workers, progress=False)
        swept = time.perf_counter() - t0
        assert report.ok and len(report.trained) == len(runs), report
        for run in runs:
            a = trainers.RunDir(tmp / "loop" / run.name).latest.payload["state_dict"]
            b = trainers.RunDir(tmp / "sweep" / run.name).latest.payload["state_dict"]
            assert all(torch.equal(a[k], b[k]) for k in a), run.name
    print(f"  loop (one process, one run after another): {loop:7.1f} s")
    print(f"  sweep (LocalCluster, {args.workers or available_cores()} workers):       {swept:7.1f} s "
          f"(includes starting the cluster)")
    print(f"  ratio loop / sweep: {loop / swept:.2f}x; same weights in every run; load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
