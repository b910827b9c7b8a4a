"""Regenerate the figures of docs/cognitive-tasks.md.

    python docs/make_task_figures.py            # both figures (about half a minute on a CPU)
    python docs/make_task_figures.py --tasks    # docs/images/cognitive_tasks.png only
    python docs/make_task_figures.py --run runs/go   # the learning curves of a trained run

- ``docs/images/cognitive_tasks.png``: one trial of each of the 16 cognitive tasks (seed 0):
  periods, inputs (fixation, ring 1, ring 2) and targets (fixation output, output ring);
- ``docs/images/ensemble_learning.png``: learning curves of an ensemble: of the run directory
  given with ``--run`` (the docs' figure: the fidelity run of docs/ensembles.md, 8 networks on
  ``go``), else of a tiny ensemble trained here (8 rate networks of 32 units on ``go``, 5 epochs of
  20 steps, seed 0: far too short to solve the task, it shows what the figure draws).

The figures come from :func:`dynatools.plot.task_trial` and :func:`dynatools.plot.learning_curves`;
this script is the only place that turns trainers' objects into their Datasets.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import xarray as xr  # noqa: E402

from dynatools import plot  # noqa: E402
from trainers.tasks import COGNITIVE_TASKS, TASKS  # noqa: E402
from trainers.tasks.trials import PAD, PERIODS  # noqa: E402

IMAGES = Path(__file__).resolve().parent / "images"
DPI = 100


def trial_dataset(task, batch) -> xr.Dataset:
    """A recording-like Dataset of a :class:`~trainers.tasks.trials.TrialBatch`: ``input``,
    ``target``, ``period`` (names, ``"pad"`` on padding), ``trial_length``, time in seconds."""
    codes = batch.periods.numpy()
    names = np.array(list(PERIODS) + ["pad"])
    period = names[np.where(codes == PAD, len(PERIODS), codes)]
    dt = float(task.dt) / 1000.0                       # the task's dt is in ms
    T = codes.shape[1]
    return xr.Dataset(
        {"input": (("trial", "time", "input_dim"), batch.inputs.numpy()),
         "target": (("trial", "time", "head"), batch.targets.numpy())},
        coords={"time": ("time", np.arange(T) * dt, {"units": "s"}), "period": (("trial", "time"), period),
                "trial_length": ("trial", batch.lengths.numpy())},
        attrs={"dt": dt, "task": task.name})


def cognitive_tasks(path: Path) -> None:
    fig, axes = plt.subplots(4, 4, figsize=(16, 13))
    for ax, cls in zip(axes.ravel(), COGNITIVE_TASKS):
        task = TASKS[cls.name]()
        batch = task.sample(1, generator=torch.Generator().manual_seed(0))
        plot.task_trial(trial_dataset(task, batch), fixation=0, ax=ax)
    fig.suptitle("One trial of each cognitive task (seed 0): periods; input rings 1 and 2 (64 channels); "
                 "target ring (32 channels); fixation input (grey) and target (dashed)", fontsize=11)
    fig.subplots_adjust(left=0.04, right=0.99, bottom=0.04, top=0.94, wspace=0.22, hspace=0.32)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def ensemble_learning(path: Path, run_dir: str | None = None) -> None:
    import trainers

    if run_dir is not None:
        rd = trainers.RunDir(run_dir)
        metrics, cfg = rd.metrics(), rd.config
        title = (f"{cfg.task}: {cfg.members} rate networks of {cfg.units} units (002's defaults, seed "
                 f"{cfg.seed}); stopped: {metrics.attrs['stop_reason']}")
    else:
        run = trainers.train({"task": "go", "members": 8, "units": 32, "steps_per_epoch": 20, "max_epochs": 5,
                              "seed": 0, "device": "cpu"}, progress=False)
        metrics, title = run.metrics(), "go: 8 rate networks of 32 units, 5 epochs of 20 steps (seed 0)"
    fig = plot.learning_curves(metrics, loss=True)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", action="store_true", help="only the figure of the 16 tasks")
    parser.add_argument("--run", help="a trained run directory whose learning curves to draw")
    args = parser.parse_args()
    IMAGES.mkdir(exist_ok=True)
    cognitive_tasks(IMAGES / "cognitive_tasks.png")
    print(IMAGES / "cognitive_tasks.png")
    if not args.tasks:
        ensemble_learning(IMAGES / "ensemble_learning.png", args.run)
        print(IMAGES / "ensemble_learning.png")


if __name__ == "__main__":
    main()
