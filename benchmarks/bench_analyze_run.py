"""Benchmark: ``trainers.analyze.analyze_run`` over a curriculum run's checkpoints, serial against
dask with 2 worker processes (goal: >= 1.7x).

The run: ``--checkpoints`` (default 10) solved-N checkpoints N = 2, 3, ... of a ``--units``-unit
(default 500, the paper's size) leaky RNN, written by ``trainers.checkpoint.save_checkpoint`` exactly as
``trainers train`` writes them (random weights with timescales spread from 1 to 3: the analysis
does the same work whatever the weights). Each checkpoint is recorded (``trainers.record`` with
p ~ U(0, 1) per trial, ``--steps`` steps x ``--trials`` trials) and analysed (autocorrelations and timescale fits of
every unit, PCA dimensionality, weight balance).

- serial: ``analyze_run(run, parallel="serial", refresh=True)``: one checkpoint after another in
  this process, with torch and the autocorrelation code free to use every core (their defaults).
- dask: ``analyze_run(run, parallel="dask", workers=2, refresh=True)``: dask's multiprocessing
  scheduler on two spawned worker processes with ``cores // 2`` threads each, one checkpoint per
  task (process start-up and imports included).

Run it under ``OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 DYNATOOLS_THREADS=1`` to compare with a
single-threaded serial run (the scaling of the checkpoints alone).

Both results are checked to be equal before the times are printed.

- auto: ``analyze_run(run, refresh=True)``, the default (``parallel="auto"``): a pool only when
  at least 3 cores are free (cores minus the load average), else serial. The goal for the
  default is never more than 10% slower than serial.

``--load K`` runs K CPU-bound background processes during all measurements (a shared machine).

    python benchmarks/bench_analyze_run.py [--checkpoints 10] [--units 100] [--steps 20000] [--trials 4] [--load 1]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import xarray as xr

import trainers
import trainers.analyze as analyze_mod
from dynatools.threads import set_threads
from trainers.analyze import analyze_run
from trainers.checkpoint import save_checkpoint
from trainers.rundir import RunDir


def make_run(root: Path, n_checkpoints: int, units: int) -> Path:
    cfg = trainers.TrainConfig.from_dict({"units": units, "n_max": n_checkpoints + 1, "seed": 0,
                                         "device": "cpu"}).resolved()
    rd = RunDir(root)
    rd.checkpoints_dir.mkdir(parents=True)
    for i in range(n_checkpoints):
        N = 2 + i
        net = trainers.LeakyRNN(units, n_heads=cfg.n_heads, generator=torch.Generator().manual_seed(i))
        with torch.no_grad():
            net.tau.copy_(torch.linspace(1.0, 3.0, units))
        Ns = list(range(2, N + 1))
        save_checkpoint(rd.checkpoint_path(N), net,
                        {"kind": "solved", "config": cfg.to_dict(), "epoch": i + 1, "Ns": Ns,
                         "accuracy": {str(n): 99.0 for n in Ns}})
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoints", type=int, default=10)
    ap.add_argument("--units", type=int, default=500)
    ap.add_argument("--steps", type=int, default=20_000)
    ap.add_argument("--trials", type=int, default=4)
    ap.add_argument("--threads", type=int, default=None,
                    help="dynatools.threads.set_threads(N) first (torch, FFT and numpy's BLAS), as --threads does")
    ap.add_argument("--load", type=int, default=0,
                    help="CPU-bound background processes running during the measurements (a shared machine)")
    args = ap.parse_args()
    set_threads(args.threads)
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.load)]
    try:
        _measure(args)
    finally:
        for b in burners:
            b.kill()


def _measure(args: argparse.Namespace) -> None:
    kw = dict(steps=args.steps, trials=args.trials, refresh=True, progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        run = make_run(Path(tmp) / "run", args.checkpoints, args.units)
        print(f"run: {args.checkpoints} checkpoints of a {args.units}-unit leaky RNN; "
              f"{args.trials} trials x {args.steps} steps each; torch threads {torch.get_num_threads()}")
        with warnings.catch_warnings():                 # 200 steps: 'short' fits and rank warnings
            warnings.simplefilter("ignore")
            analyze_run(run, parallel="serial", **{**kw, "steps": 200})  # warm-up (imports, caches)
        t0 = time.perf_counter()
        serial = analyze_run(run, parallel="serial", **kw)
        t_serial = time.perf_counter() - t0
        t0 = time.perf_counter()
        parallel = analyze_run(run, parallel="dask", workers=2, **kw)
        t_dask = time.perf_counter() - t0
        chosen = []
        real = analyze_mod._run_dask
        analyze_mod._run_dask = lambda *a, **k: (chosen.append("dask"), real(*a, **k))[1]
        try:
            t0 = time.perf_counter()
            auto = analyze_run(run, parallel="auto", **kw)
            t_auto = time.perf_counter() - t0
        finally:
            analyze_mod._run_dask = real
    xr.testing.assert_allclose(serial.drop_attrs(), parallel.drop_attrs())
    xr.testing.assert_allclose(serial.drop_attrs(), auto.drop_attrs())
    print(f"load average {os.getloadavg()[0]:.2f} at the end (our own workers included), "
          f"{args.load} background process(es)")
    print(f"serial       {t_serial:8.2f} s  ({t_serial / args.checkpoints:.2f} s per checkpoint)")
    print(f"dask, 2 wkrs {t_dask:8.2f} s   ratio serial/dask {t_serial / t_dask:5.2f}x (goal >= 1.7x)")
    print(f"auto         {t_auto:8.2f} s   chose {'dask' if chosen else 'serial'}; ratio serial/auto "
          f"{t_serial / t_auto:5.2f}x (goal: >= 0.9x); results equal")
    print(f"summary: N {serial.N.values.min()}..{serial.N.values.max()}, "
          f"median tau_net {float(np.nanmedian(serial.tau_net)):.3g}")


if __name__ == "__main__":
    main()
