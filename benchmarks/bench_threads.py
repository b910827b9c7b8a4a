"""The thread policy on a shared machine: each workload alone and beside CPU-bound work, with the
policy of ``dynatools.threads`` and with torch's defaults.

Workloads (each one command in a fresh process, so OpenMP starts with the environment given):

- ``train``: the README's training (``trainers train --curriculum multi-head --units 64 --batch
  64 --steps-per-epoch 100 --eval-batches 10``), 3 epochs.
- ``lyapunov``: ``dynatools.lyapunov_spectrum`` of a 256-unit tanh network, 100 steps, 8
  trajectories (large enough for two threads; ``import dynatools`` comes before ``import torch``,
  as the policy needs).
- ``report``: ``trainers report`` of a small trained run (recording, timescales, PCA, ablation,
  perturbation, figures), 5000 steps x 4 trials.
- ``tests``: the test files the issue saw collapse (``tests/test_lyapunov.py``).

Settings:

- ``policy``: what a user gets now: idle OpenMP threads sleep (``OMP_WAIT_POLICY=PASSIVE``,
  set by ``import dynatools``/``trainers`` before torch loads) and small work runs on one thread.
- ``torch default``: ``OMP_WAIT_POLICY=ACTIVE`` and ``DYNATOOLS_THREADS`` = the cores (torch's own
  default: one spinning thread per core), i.e. the behaviour before the policy.

Conditions: ``alone``, and ``loaded``: beside ``--load`` (default 1) CPU-bound background
processes (``while True: pass``), started before and stopped after each measurement. The
settings and conditions alternate over ``--repeats``; medians are printed, with the ratio
loaded / alone (the acceptance of issue 12: within 2x).

    python benchmarks/bench_threads.py [--workloads train lyapunov report tests] [--repeats 3] [--load 1] [--timeout 600]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TRAIN = ["trainers", "train", "--curriculum", "multi-head", "--units", "64", "--batch", "64", "--n-max", "30",
         "--steps-per-epoch", "100", "--eval-batches", "10", "--max-epochs", "3", "--device", "cpu",
         "--seed", "0", "-q"]
LYAPUNOV = """
import dynatools as dt   # before torch: the passive wait policy applies (dynatools.threads)
import torch
torch.manual_seed(0)
W = torch.randn(256, 256, dtype=torch.float64) * 1.5 / 256 ** 0.5
step = lambda h, u: torch.tanh(h @ W.T)
dt.lyapunov_spectrum(step, h0=torch.randn(8, 256, dtype=torch.float64) * 0.1, steps=100, warmup=20, seed=0)
"""


def _commands(work: str, tmp: Path) -> list[list[str]]:
    if work == "train":
        out = tmp / "train"
        shutil.rmtree(out, ignore_errors=True)
        return [TRAIN + ["--out", str(out)]]
    if work == "lyapunov":
        return [[sys.executable, "-c", LYAPUNOV]]
    if work == "report":
        shutil.rmtree(tmp / "report", ignore_errors=True)
        shutil.rmtree(tmp / "run" / "analysis", ignore_errors=True)
        return [["trainers", "report", str(tmp / "run"), "-o", str(tmp / "report"), "--steps", "5000",
                 "--trials", "4", "-q"]]
    if work == "tests":
        return [[sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "tests" / "test_lyapunov.py")]]
    raise ValueError(f"unknown workload {work!r}; choose from train, lyapunov, report, tests")


def _env(setting: str, cores: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_WAIT_POLICY", "DYNATOOLS_THREADS", "OMP_NUM_THREADS")}
    if setting == "torch default":
        env.update(OMP_WAIT_POLICY="ACTIVE", DYNATOOLS_THREADS=str(cores))
    return env


def _timed(cmds: list[list[str]], env: dict[str, str], load: int, cwd: Path, timeout: float) -> float:
    """Seconds the commands took; inf if they ran past ``timeout`` (then they are stopped)."""
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(load)]
    try:
        time.sleep(0.5 if load else 0.0)
        t0 = time.perf_counter()
        for cmd in cmds:
            try:
                subprocess.run(cmd, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, timeout=max(1.0, timeout - (time.perf_counter() - t0)))
            except subprocess.TimeoutExpired:
                return float("inf")
        return time.perf_counter() - t0
    finally:
        for b in burners:
            b.kill()
            b.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workloads", nargs="+", default=["train", "lyapunov", "report", "tests"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--load", type=int, default=1, help="CPU-bound background processes in the loaded condition")
    ap.add_argument("--settings", nargs="+", default=["policy", "torch default"])
    ap.add_argument("--timeout", type=float, default=600.0, help="stop a measurement after this many seconds "
                    "(reported as inf)")
    args = ap.parse_args()
    cores = len(os.sched_getaffinity(0))
    print(f"machine: {platform.processor() or platform.machine()}, {cores} cores; load average before: "
          f"{os.getloadavg()[0]:.2f}; {args.repeats} repeats, loaded = beside {args.load} busy process(es)")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if "report" in args.workloads:              # a small trained run for the report
            subprocess.run(["trainers", "train", "--out", str(tmp / "run"), "--curriculum", "multi-head",
                            "--units", "32", "--batch", "32", "--steps-per-epoch", "50", "--eval-batches", "4",
                            "--max-epochs", "40", "--n-max", "4", "--device", "cpu", "--seed", "1", "-q"],
                           check=True, stdout=subprocess.DEVNULL)
        times: dict[tuple[str, str, str], list[float]] = {}
        for r in range(args.repeats):
            for work in args.workloads:
                for setting in args.settings:
                    for cond, load in (("alone", 0), ("loaded", args.load)):
                        t = _timed(_commands(work, tmp), _env(setting, cores), load, tmp, args.timeout)
                        times.setdefault((work, setting, cond), []).append(t)
                        print(f"  repeat {r + 1}: {work:9s} {setting:14s} {cond:7s} {t:8.2f} s", flush=True)
    print(f"\n{'workload':10s} {'setting':14s} {'alone':>9s} {'loaded':>9s} {'loaded/alone':>13s}")
    for work in args.workloads:
        for setting in args.settings:
            a = statistics.median(times[(work, setting, "alone")])
            b = statistics.median(times[(work, setting, "loaded")])
            print(f"{work:10s} {setting:14s} {a:8.2f}s {b:8.2f}s {b / a:12.2f}x")


if __name__ == "__main__":
    main()
