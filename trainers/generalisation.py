"""Generalisation to N + K (004: Hamidi, Khajehabdollahi et al., "Modular Growth of Hierarchical
Networks", "Results", "Finally, we test generalization performance ...", Fig. 2c).

004 trains networks to ``N_solved = 10`` and tests them on ``N = 10 + K``, K = 1, 2, ..., with at
most 10 epochs of additional training on the new task: "For modular networks, the N = 10 module is
now tested for solving N = 10 + K, while the non-modular network is tested on a new read-out head
for N = 10 + K". Accuracy is "the percentage of correct trials".

:func:`generalisation` does this for one run directory, :func:`generalisation_runs` for several
(004 averages 3 modular and 4 non-modular networks), :func:`plot_generalisation` draws Fig. 2c.
The re-training is the engine's (:func:`trainers.train` / :func:`trainers.resume`, one epoch at
a time so that it stops as soon as the new head meets the curriculum's rule); nothing here has a
training loop of its own.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from dynatools.utils import check_choice, check_positive_int
from trainers.config import TrainConfig
from trainers.curricula import THRESHOLD
from trainers.models.modular import ModularRNN
from trainers.rundir import RunDir

#: What re-trains, per architecture (the first is the default).
MODES = {"modular": ("module",), "non-modular": ("network", "readout")}

#: The run's training settings the re-training keeps (unless overridden).
SETTINGS = ("batch", "steps_per_epoch", "eval_batches", "optimizer", "lr", "momentum", "nesterov", "clip")


def _architecture(cfg: TrainConfig) -> str:
    return "modular" if cfg.curriculum == "growth" else "non-modular"


def _start_model(cfg: TrainConfig, init: torch.nn.Module, init_readout: bool) -> torch.nn.Module:
    """The network the engine starts re-training from (:func:`trainers.train` with ``init``): a
    fresh model of ``cfg`` (seeded as the engine seeds it) with ``init``'s matching weights."""
    from trainers.engine import _copy_matching, _seeds, resolve_device

    model = cfg.make_model(cfg.make_task(), generator=torch.Generator().manual_seed(_seeds(cfg.seed)[0]))
    _copy_matching(init, model, heads=init_readout)
    if hasattr(init, "h0_scale") and hasattr(model, "h0_scale"):
        model.h0_scale = float(init.h0_scale)
    return model.to(resolve_device(cfg.device))


def _per_head(model: torch.nn.Module) -> int:
    """Entries of one readout head (weights and bias)."""
    heads = [p for name, p in model.named_parameters() if name.startswith("heads.")]
    return int(sum(p.numel() for p in heads) // model.heads.n_heads)


def _evaluate(model: torch.nn.Module, task: Any, Ns: list[int], head: int, *, batch: int, batches: int,
              seed: int) -> float:
    """Accuracy (per cent) of ``head`` (answering ``Ns[head]``) by the task's own evaluation
    (``task.evaluate``: fresh sequences, readout on the last step) on sequences drawn from ``seed``."""
    dev = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        acc = task.evaluate(model, Ns, batch=batch, batches=batches,
                            generator=torch.Generator(device=dev).manual_seed(int(seed)))
    finally:
        model.train(was_training)
    return float(acc[head])


def _configs(model: torch.nn.Module, task: Any, mode: str, N_new: int, settings: dict[str, Any],
             seed: int) -> tuple[TrainConfig, list[int], int]:
    """The re-training configuration for ``N_new``, the Ns its heads answer and the head of N_new."""
    from trainers.retrain import _base_config

    if mode == "module":
        m = model.n_modules
        Ns = list(range(N_new - m + 1, N_new + 1))       # head m - 1 (the module that solved N) answers N_new
        base = _base_config(model, task, {"curriculum": "all-heads", "max_epochs": 1, "seed": seed, **settings,
                                          "curriculum_options": {"n_start": Ns[0], "n_max": N_new}})
        base["model_options"] = {**base["model_options"], "frozen_modules": m - 1}
        return TrainConfig.from_dict(base).resolved(), Ns, m - 1
    base = _base_config(model, task, {"curriculum": "none", "n_heads": 1, "max_epochs": 1, "seed": seed, **settings,
                                      "curriculum_options": {"n_start": N_new, "n_max": N_new}})
    return TrainConfig.from_dict(base).resolved(), [N_new], 0


def _retrain(cfg: TrainConfig, init: torch.nn.Module, init_readout: bool, label: str, epochs: int,
             threshold: float, run_dir: Path, progress: bool) -> tuple[torch.nn.Module, list[float]]:
    """Train with the engine one epoch at a time (:func:`trainers.train`, then
    :func:`trainers.resume` with one more epoch) until the head ``label`` exceeds ``threshold`` in
    the engine's evaluation after an epoch, or ``epochs`` epochs; the network and that head's
    accuracy after every epoch."""
    from trainers.engine import resume, train

    run = train(cfg, run_dir, init=init, init_readout=init_readout, progress=progress)
    curve: list[float] = []
    while True:
        curve.append(float(run.history[-1]["accuracy"][label]))
        if curve[-1] > threshold or run.stop_reason == "target" or len(run.history) >= epochs:
            return run.model, curve
        run = resume(run_dir, max_epochs=len(run.history) + 1, progress=progress)


def generalisation(run: str | os.PathLike | RunDir, N: int, Ks: Sequence[int] = (1, 2, 3, 4, 5), *,
                   epochs: int = 10, train: str | None = None, fresh_head: bool = False,
                   threshold: float = THRESHOLD, seed: int = 0, eval_seed: int | None = None,
                   test_batches: int | None = None, run_dir: str | os.PathLike | None = None,
                   progress: bool = False, device: str = "auto", **config: Any) -> xr.Dataset:
    """Accuracy on N + K of a network trained to solve N, after at most ``epochs`` epochs of
    re-training on N + K (004 Fig. 2c).

    The network is the run's as it was when N was solved (``RunDir(run).load(N)``). For each K:

    * **modular** (a ``growth`` run), ``train="module"``: "the N module is now tested for solving
      N + K". Every module is frozen except the last one (the module that solved N), which trains
      with its head (W^R, W^FF, W^I, bias, tau and head, as in growth) on N + K; its head starts
      as trained for N (``fresh_head=True``: a fresh head). Nothing is added. In the engine this
      is an ``all-heads`` run whose last head is the module's (the frozen heads' losses carry no
      gradient: a module never feeds an earlier one, so the trained parameters get exactly the
      gradient of the N + K head alone).
    * **non-modular** (any other curriculum), ``train="network"`` (default): "tested on a new
      read-out head for N + K". 004 does not say what trains; here the whole network trains with
      one fresh head for N + K and that head's loss only, exactly :func:`trainers.retrain.retrain`
      (the timescale paper's re-training protocol, Sec. 4.3 / Fig. 8c, on which 004 builds). This
      is the reading most favourable to the non-modular network (every parameter may adapt), so
      the comparison with the modular network (one module adapts) is conservative. The old
      heads are left out (not in the loss). ``train="readout"``: only a new head, the
      network frozen, fitted to convergence by logistic regression on the last state
      (:func:`trainers.retrain.refit_readout`; ``epochs`` not used): the best any new head alone
      can do.

    Training stops early once the N + K head exceeds ``threshold`` (the curriculum's rule, 98%)
    in the engine's evaluation after an epoch, or when it exceeds it before any training. The
    re-training keeps the run's batch, steps per epoch, evaluation batches and optimiser settings
    (``**config`` overrides them; e.g. ``steps_per_epoch=50``).

    ``accuracy`` is measured on the final network by the task's evaluation (fresh sequences of
    length N+K+2..4(N+K)+1, readout on the last step, per cent of correct trials) on ``test_batches``
    batches drawn from ``eval_seed`` (the same seed for every K and every run).

    Parameters
    ----------
    run : path-like or RunDir
        A finished training run that solved ``N`` (it has ``checkpoints/N###.pt``).
    N : int
        The N the network was trained to (004: 10).
    Ks : sequence of int, default (1, 2, 3, 4, 5)
        Positive offsets.
    epochs : int, default 10
        At most this many epochs of re-training (004: 10); 0 evaluates the network as it is.
    train : {"module"} for modular runs, {"network", "readout"} otherwise; optional
        What re-trains (default "module" / "network"; see above).
    fresh_head : bool, default False
        Modular runs: start the module's head fresh instead of from its N head.
    threshold : float, default 98.0
        Early stop when the N + K head's accuracy (per cent) exceeds it.
    seed : int, default 0
        Seed of the re-training runs (data, fresh heads).
    eval_seed : int, optional
        Seed of the evaluation sequences (default ``seed``).
    test_batches : int, optional
        Batches of the final evaluation (default the re-training's ``eval_batches``).
    run_dir : path-like, optional
        Keep the re-training runs there, one run directory per K (``K001``, ...; each a normal run,
        ``trainers.RunDir(run_dir / "K001").load()`` gives the re-trained network); default a
        temporary directory, removed afterwards.
    progress : bool, default False
    device : {"auto", "cpu", "cuda"}, default "auto"
    **config
        Other :class:`~trainers.TrainConfig` fields of the re-training (``batch``,
        ``steps_per_epoch``, ``eval_batches``, ``lr``, ...).

    Returns
    -------
    xarray.Dataset
        Over ``K`` (coordinate ``N_new`` = N + K): ``accuracy`` (per cent, after re-training),
        ``initial_accuracy`` (before), ``epochs_trained``, ``solved`` (the rule was met);
        ``train_accuracy`` over ``(K, epoch)``: the N + K head's accuracy in the engine's evaluation
        after each epoch (NaN after the stop). Attrs: ``N``, ``run``, ``architecture``, ``train``,
        ``size`` (module size or units), ``n_modules``, ``trainable_parameters`` (re-trained
        entries), ``epochs``, ``threshold``, ``seed``, ``eval_seed``, ``test_batches``,
        ``batch``, ``fresh_head``, ``settings`` (JSON of the first re-training configuration).

    Examples
    --------
    >>> from trainers.generalisation import generalisation
    >>> ds = generalisation("runs/modular15", 10, range(1, 6), epochs=10)   # doctest: +SKIP
    >>> ds["accuracy"].to_pandas()                                         # doctest: +SKIP
    """
    rd = run if isinstance(run, RunDir) else RunDir(run)
    N = check_positive_int("N", N, minimum=2)
    Ks = [check_positive_int("K", k) for k in Ks]
    if not Ks or len(set(Ks)) != len(Ks):
        raise ValueError(f"Ks must be distinct positive integers (004: K = 1, 2, ...); found {list(Ks)}.")
    epochs = check_positive_int("epochs", epochs, minimum=0)
    threshold = float(threshold)
    if not 0.0 <= threshold < 100.0:
        raise ValueError(f"threshold is an accuracy in per cent in [0, 100) (the curriculum's 98); found {threshold}.")
    seed = check_positive_int("seed", seed, minimum=0)
    eval_seed = seed if eval_seed is None else check_positive_int("eval_seed", eval_seed, minimum=0)
    run_cfg = rd.config
    arch = _architecture(run_cfg)
    mode = check_choice("train", MODES[arch][0] if train is None else train, MODES[arch])
    model, task, _ = rd.load(N)
    if arch == "modular":
        if not isinstance(model, ModularRNN):
            raise TypeError(f"{rd.path}: a growth run should hold a ModularRNN; found {type(model).__name__}.")
        if model.frozen_recurrent or model.frozen_feedforward:
            raise ValueError(f"{rd.path} is a run of a freezing variant of 004 Fig. 6a (W^R or W^FF frozen in every "
                             f"module); the engine's configuration cannot keep them frozen while the module "
                             f"re-trains, so generalisation supports the 'earlier' runs (004's) only.")
    elif fresh_head:
        raise ValueError("fresh_head is for modular runs; a non-modular network always gets a new head for N + K.")
    fixed = sorted(set(config) & {"max_epochs", "time_budget", "model", "curriculum", "units", "n_heads", "task",
                                  "members", "model_options", "curriculum_options", "task_options"})
    if fixed:
        raise ValueError(f"{fixed} are set by generalisation (the network, task and N + K come from the run, the "
                         f"epochs from `epochs`); give only training settings such as batch, steps_per_epoch, lr.")
    if run_dir is not None:
        taken = [str(RunDir(Path(run_dir) / f"K{K:03d}").path) for K in Ks
                 if RunDir(Path(run_dir) / f"K{K:03d}").latest_path.exists()]
        if taken:
            raise FileExistsError(f"run_dir already holds re-training runs {taken}; give an empty run_dir.")
    settings = {k: getattr(run_cfg, k) for k in SETTINGS}
    settings.update(device=device, **config)
    cfgs = {K: _configs(model, task, mode, N + K, settings, seed) for K in Ks} if mode != "readout" else {}
    first = next(iter(cfgs.values()))[0] if cfgs else None
    batch = int(first.batch if first else settings["batch"])
    n_eval = check_positive_int("test_batches", test_batches if test_batches is not None else
                                (first.eval_batches if first else settings["eval_batches"]))

    acc, init_acc, trained, curves, trainable = [], [], [], [], 0
    with tempfile.TemporaryDirectory(prefix="generalisation-") as tmp:
        root = Path(run_dir) if run_dir is not None else Path(tmp)
        for K in Ks:
            N_new = N + K
            if mode == "readout":
                from trainers.retrain import refit_readout

                fit = refit_readout(model, [N_new], task=task, batch=batch * n_eval, seed=eval_seed)
                acc.append(100.0 * float(fit["test_accuracy"].values[0]))
                init_acc.append(np.nan)
                trained.append(0)
                curves.append([])
                trainable = _per_head(model)
                continue
            cfg, Ns, head = cfgs[K]
            init_readout = mode == "module" and not fresh_head
            start = _start_model(cfg, model, init_readout)
            trainable = int(sum(p.numel() for p in start.parameters() if p.requires_grad))
            kw = {"batch": batch, "batches": n_eval, "seed": eval_seed}
            before = _evaluate(start, task, Ns, head, **kw)
            final, curve = start, []
            if epochs > 0 and not before > threshold:
                final, curve = _retrain(cfg, model, init_readout, str(N_new), epochs, threshold,
                                        root / f"K{K:03d}", progress)
            init_acc.append(before)
            acc.append(before if final is start else _evaluate(final, task, Ns, head, **kw))
            trained.append(len(curve))
            curves.append(curve)
    width = max(epochs, 1) if mode != "readout" else 1
    curve_arr = np.full((len(Ks), width), np.nan)
    for i, c in enumerate(curves):
        curve_arr[i, :len(c)] = c
    curve_arr = curve_arr[:, :epochs] if mode != "readout" else curve_arr[:, :0]
    acc_arr = np.asarray(acc)
    solved = np.asarray([any(a > threshold for a in c) or bool(b > threshold) for c, b in zip(curves, init_acc)])
    ds = xr.Dataset(
        {"accuracy": ("K", acc_arr), "initial_accuracy": ("K", np.asarray(init_acc, dtype=float)),
         "epochs_trained": ("K", np.asarray(trained, dtype=int)), "solved": ("K", solved),
         "train_accuracy": (("K", "epoch"), curve_arr)},
        coords={"K": Ks, "N_new": ("K", [N + k for k in Ks]), "epoch": np.arange(1, curve_arr.shape[1] + 1)},
        attrs={"N": N, "run": str(rd.path), "architecture": arch, "train": mode,
               "size": int(model.module_size if arch == "modular" else run_cfg.units),
               "n_modules": int(getattr(model, "n_modules", 1)), "trainable_parameters": trainable,
               "epochs": epochs, "threshold": threshold, "seed": seed, "eval_seed": eval_seed,
               "test_batches": n_eval, "batch": batch, "fresh_head": int(fresh_head),
               "task": task.name, "settings": first.to_json() if first is not None else json.dumps(settings),
               "method": "004 Fig. 2c: accuracy (per cent of correct trials) on N + K after at most `epochs` "
                         "epochs of re-training (trainers.generalisation)"},
    )
    for v in ("accuracy", "initial_accuracy", "train_accuracy"):
        ds[v].attrs["units"] = "%"
    return ds


def generalisation_runs(runs: Sequence[str | os.PathLike | RunDir], N: int, Ks: Sequence[int] = (1, 2, 3, 4, 5),
                        **kwargs: Any) -> xr.Dataset:
    """:func:`generalisation` of several runs, stacked over ``run`` (004 Fig. 2c averages 3 modular
    and 4 non-modular networks), with the per-run ``architecture``, ``size`` and
    ``trainable_parameters`` as coordinates. Keyword arguments go to :func:`generalisation`
    (``run_dir``, if given, gets one folder per run: ``run000``, ...)."""
    runs = list(runs)
    if not runs:
        raise ValueError("runs is empty; give the run directories of trained networks.")
    base = kwargs.pop("run_dir", None)
    out = []
    for i, r in enumerate(runs):
        kw = dict(kwargs)
        if base is not None:
            kw["run_dir"] = Path(base) / f"run{i:03d}"
        out.append(generalisation(r, N, Ks, **kw))
    per_run = {k: ("run", [d.attrs[k] for d in out]) for k in ("architecture", "train", "size", "trainable_parameters")}
    ds = xr.concat(out, dim="run", combine_attrs="drop")
    ds = ds.assign_coords(run=[d.attrs["run"] for d in out], **per_run)
    ds.attrs = {k: v for k, v in out[0].attrs.items()
                if k not in ("run", "architecture", "train", "size", "trainable_parameters", "n_modules", "settings")}
    return ds


def plot_generalisation(ds: xr.Dataset, ax: Any = None) -> Any:
    """004 Fig. 2c: accuracy on N + K against K, per architecture: the mean over runs with the
    standard deviation as error bars (one run: its values).

    Parameters
    ----------
    ds : xarray.Dataset
        From :func:`generalisation` (one run) or :func:`generalisation_runs`.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    from dynatools.plot import PALETTE, _plt

    if ax is None:
        _, ax = _plt().subplots(figsize=(4.5, 3.5))
    if "run" not in ds.dims:
        groups = [(ds.attrs.get("architecture", ""), ds["accuracy"].expand_dims(run=[0]))]
    else:
        arch = ds["architecture"].values.astype(str)
        groups = [(a, ds["accuracy"].isel(run=np.flatnonzero(arch == a))) for a in sorted(set(arch))]
    for i, (label, acc) in enumerate(groups):
        mean, std = acc.mean("run"), acc.std("run") if acc.sizes["run"] > 1 else None
        n = acc.sizes["run"]
        ax.errorbar(ds["K"].values, mean.values, yerr=None if std is None else std.values, marker="o", ms=4,
                    capsize=3, color=PALETTE[i % len(PALETTE)], label=f"{label} ({n} run{'s' * (n > 1)})")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.axhline(50.0, color="0.6", lw=0.8, ls=":")
    ax.set_xlabel(f"K (tested on N = {ds.attrs.get('N', 'N')} + K)")
    ax.set_ylabel("accuracy (%)")
    ax.legend(frameon=False, fontsize=8)
    return ax


__all__ = ["MODES", "generalisation", "generalisation_runs", "plot_generalisation"]
