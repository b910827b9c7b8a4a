"""N solved after a fixed number of epochs against trainable parameters: the Pareto plot of 004
(Hamidi, Khajehabdollahi et al., "Modular Growth of Hierarchical Networks", Fig. 2b: "Pareto
frontier of performance after 60 training epochs"; "Results": "a modular architecture can solve a
task with fewer parameters than a non-modular network").

* :func:`pareto_table` reads finished training runs (their run directories) and returns, per run,
  the architecture, the size, ``N_solved`` after ``epochs`` epochs and the trainable parameters of
  the network that solves it.
* :func:`pareto_front` keeps the non-dominated runs of each architecture (fewer parameters and
  a higher ``N_solved``).
* :func:`plot_pareto` draws both (Fig. 2b).
* :func:`learning_curves` and :func:`plot_learning_curves`: ``N_solved`` after every epoch of
  each run (Fig. 2a, "modular architectures ... can solve a new task at every epoch while the
  non-modular networks plateau").

Parameter counts follow ``trainers.modular_analysis`` (docs/modular.md, "Size-matched
non-modular baselines"): entries as stored (held-at-zero diagonals count), counted on the actual
network; a parameter counts once if it was trained at any point up to ``N_solved``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import xarray as xr

from dynatools.utils import check_positive_int
from trainers.models.modular import ModularRNN
from trainers.rundir import RunDir

MODULAR = "modular"
NON_MODULAR = "non-modular"


# ---------------------------------------------------------------------------- parameter counts
def grown_parameters(model: ModularRNN, n_modules: int | None = None, *, freeze: str = "earlier") -> int:
    """Parameters a growth run trained to build the first ``n_modules`` modules of ``model``
    (default all): for each module, what was trainable while it was the newest (004 "Modular
    networks": only the newest module trains, earlier ones are frozen).

    With ``freeze="earlier"`` (004's default) and trained tau this is every entry of those modules
    and their heads (W^R, W^FF, W^I, bias, tau, head), :func:`trainers.modular_analysis.modular_parameters`
    of the same size. The Fig. 6a variants train fewer: ``"recurrent-after-2"`` never trains the
    W^R of modules 1, 2, ... (duplicated from module 0), ``"feedforward-after-3"`` never trains the
    W^FF of modules 2, 3, ... (duplicated from module 1). Untrained tau (``train_tau`` False) is
    not counted.

    Parameters
    ----------
    model : ModularRNN
    n_modules : int, optional
        Count modules ``0 .. n_modules - 1`` (default all).
    freeze : {"earlier", "recurrent-after-2", "feedforward-after-3", "decay"}, default "earlier"
        The growth curriculum's freezing variant ("decay": every entry trains, each counted once).

    Returns
    -------
    int

    Examples
    --------
    >>> import torch
    >>> from trainers.models import ModularRNN
    >>> from trainers.pareto import grown_parameters
    >>> net = ModularRNN(20, n_modules=2, n_heads=2, frozen_modules=1)
    >>> grown_parameters(net)           # 2 * (100 + 3 * 10 + 22) + 100: every entry
    404
    """
    from trainers.curricula import GROWTH_FREEZING

    if not isinstance(model, ModularRNN):
        raise TypeError(f"grown_parameters counts a ModularRNN grown by the growth curriculum; found "
                        f"{type(model).__name__}.")
    if freeze not in GROWTH_FREEZING:
        raise ValueError(f"freeze={freeze!r} is not a growth freezing variant; choose one of {list(GROWTH_FREEZING)}.")
    n = model.n_modules if n_modules is None else check_positive_int("n_modules", n_modules)
    if n > model.n_modules:
        raise ValueError(f"n_modules={n} exceeds the network's {model.n_modules} modules.")
    total = 0
    for m in range(n):
        total += model.W_in[m].numel() + model.bias[m].numel()
        total += model.heads.weight[m].numel() + model.heads.bias[m].numel()
        if model.train_tau:
            total += model.tau[m].numel()
        if not (freeze == "recurrent-after-2" and m >= 1):
            total += model.W_rec[m].numel()
        if m >= 1 and not (freeze == "feedforward-after-3" and m >= 2):
            total += model.W_ff[m - 1].numel()
    return int(total)


def _head_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable entries outside the readout heads, entries of one head)."""
    core = sum(p.numel() for name, p in model.named_parameters() if p.requires_grad and not name.startswith("heads."))
    heads = [p for name, p in model.named_parameters() if name.startswith("heads.")]
    n_heads = model.heads.n_heads
    return int(core), int(sum(p.numel() for p in heads) // max(n_heads, 1))


# ---------------------------------------------------------------------------- reading runs
def _history(rd: RunDir) -> list[dict[str, Any]]:
    """The run's per-epoch history: ``metrics.jsonl`` (else the latest checkpoint's)."""
    if rd.metrics_path.is_file():
        return [json.loads(line) for line in rd.metrics_path.read_text().splitlines() if line.strip()]
    return list(rd.latest.meta.get("history") or [])


def n_solved_after(history: Sequence[dict[str, Any]], epochs: int, n_start: int = 2) -> int:
    """Largest N whose heads were solved at or before epoch ``epochs`` (004 Fig. 2b's ``N_solved``
    after a fixed number of epochs); ``n_start - 1`` when nothing was solved.

    ``history`` is a run's ``metrics.jsonl`` lines: ``epoch``, ``Ns`` (the active heads) and
    ``solved`` (the curriculum's rule met after that epoch).

    Examples
    --------
    >>> from trainers.pareto import n_solved_after
    >>> h = [{"epoch": 1, "Ns": [2], "solved": True}, {"epoch": 2, "Ns": [2, 3], "solved": False},
    ...      {"epoch": 3, "Ns": [2, 3], "solved": True}]
    >>> n_solved_after(h, 2), n_solved_after(h, 3), n_solved_after(h[1:2], 3)
    (2, 3, 1)
    """
    epochs = check_positive_int("epochs", epochs)
    solved = [max(h["Ns"]) for h in history if int(h["epoch"]) <= epochs and h.get("solved") and h.get("Ns")]
    return int(max(solved, default=int(n_start) - 1))


def _architecture(cfg: Any) -> str:
    return MODULAR if cfg.curriculum == "growth" else NON_MODULAR


def run_point(run: str | os.PathLike | RunDir, epochs: int = 60) -> dict[str, Any]:
    """One run's row of :func:`pareto_table` (a dict)."""
    rd = run if isinstance(run, RunDir) else RunDir(run)
    epochs = check_positive_int("epochs", epochs)
    cfg = rd.config
    cur = cfg.curriculum_options
    if "n_start" not in cur:
        raise ValueError(f"{rd.path} was trained with curriculum {cfg.curriculum!r}, which has no task sizes N; "
                         f"the Pareto plot (004 Fig. 2b) compares runs of a curriculum over N (growth, multi-head).")
    n_start, n_max = int(cur["n_start"]), int(cur["n_max"])
    history = _history(rd)
    if not history:
        raise ValueError(f"{rd.path} has no completed epoch (metrics.jsonl is empty); train it first.")
    n = n_solved_after(history, epochs, n_start)
    arch = _architecture(cfg)
    # the heads trained up to N_solved: those active when it was solved (modular: one per module);
    # nothing solved: those of the first stage (the latest network holds them)
    ck = rd.checkpoint(n if n >= n_start else None)
    model = ck.model()
    trained = max(len(ck.Ns if n >= n_start else history[0].get("Ns") or [n_start]), 1)
    model_parameters = int(sum(p.numel() for p in model.parameters() if p.requires_grad))
    if arch == MODULAR:
        if not isinstance(model, ModularRNN):
            raise TypeError(f"{rd.path}: a growth run should hold a ModularRNN; found {type(model).__name__}.")
        parameters = grown_parameters(model, min(trained, model.n_modules), freeze=str(cur.get("freeze", "earlier")))
        model_parameters = int(sum(p.numel() for p in model.parameters()))
        size, module_size, units = model.module_size, model.module_size, model.n_units
    else:
        core, per_head = _head_parameters(model)
        parameters = core + min(trained, model.heads.n_heads) * per_head
        size, module_size, units = int(cfg.units), -1, int(cfg.units)
    last = history[-1]
    epochs_run = int(last["epoch"])
    stop = str(rd.latest.meta.get("stop_reason", "")) if rd.latest_path.is_file() else ""
    target = stop == "target" or bool(last.get("solved") and max(last.get("Ns") or [0]) >= n_max)
    return {"run": str(rd.path), "architecture": arch, "size": int(size), "module_size": int(module_size),
            "units": int(units), "n_solved": n, "parameters": int(parameters),
            "model_parameters": model_parameters, "epochs_run": epochs_run, "stop_reason": stop,
            "complete": bool(epochs_run >= epochs or target), "capped": bool(target and epochs_run <= epochs),
            "n_start": n_start, "n_max": n_max, "seed": int(cfg.seed), "model": cfg.model}


def pareto_table(runs: Sequence[str | os.PathLike | RunDir], epochs: int = 60, *, strict: bool = False) -> xr.Dataset:
    """``N_solved`` after ``epochs`` epochs against the trainable parameters, per run (004 Fig. 2b).

    Each run is a finished ``trainers train`` run directory of a curriculum over N: growth runs of
    the modular network (004's modular architecture) and multi-head runs of any other network
    (the non-modular architecture; a ModularRNN of one module on ``multi-head`` counts as
    non-modular). ``N_solved`` is the largest N whose heads were solved (the curriculum's 98% rule)
    after an epoch ``<= epochs`` (``metrics.jsonl``: ``solved`` and ``Ns`` per epoch), or
    ``n_start - 1`` if none was.

    Parameters (``parameters``) are those trained up to solving ``N_solved``, counted on the
    network saved when it was solved (``RunDir(run).load(N_solved)``; the network as trained so
    far when nothing was solved, counted for ``n_start``):

    * modular: the modules for N = n_start..N_solved with their heads, each counted once, as
      trained while it was the newest (:func:`grown_parameters`; docs/modular.md: a module's W^R,
      W^FF, W^I, bias, tau and head train in the step that adds it, then freeze). The module in
      training at the epoch limit (for ``N_solved + 1``) is not counted. At 004's default this
      equals ``modular_parameters(module_size, N_solved)``.
    * non-modular: the whole recurrent core plus the heads that were active when N_solved was
      solved (multi-head: those of N = n_start..N_solved; the heads of later N exist in the
      network but were never in the loss). Equals ``baseline_parameters(units, N_solved)`` for a
      multi-head leaky run.

    ``model_parameters`` is every trainable entry of that saved network as it stands (for a
    non-modular run: all heads the curriculum built, the count 004 matched "at N = 30"; for a
    modular run: all entries of its modules, frozen ones included).

    A run that stopped before ``epochs`` epochs: if it stopped because it solved its last N
    (``stop_reason`` "target"), ``N_solved`` is ``n_max`` and ``capped`` is True (it could not
    have solved more; 004 notes the same saturation at its epoch limit); otherwise (max_epochs,
    time budget, killed) ``N_solved`` is what it reached, a lower bound, and ``complete`` is
    False (``strict=True`` refuses such runs).

    Parameters
    ----------
    runs : sequence of path-like or RunDir
        Run directories; a sweep directory (``trainers sweep``) stands for its runs.
    epochs : int, default 60
        004: 60 epochs.
    strict : bool, default False
        Raise if a run stopped before ``epochs`` epochs without finishing its curriculum.

    Returns
    -------
    xarray.Dataset
        Over ``run`` (the paths): ``architecture`` ("modular" / "non-modular"), ``size`` (module
        size for modular runs, units otherwise), ``module_size`` (-1 for non-modular), ``units``,
        ``n_solved``, ``parameters``, ``model_parameters``, ``epochs_run``, ``stop_reason``,
        ``complete``, ``capped``, ``n_start``, ``n_max``, ``seed``, ``model``; attrs ``epochs``.

    Examples
    --------
    >>> import tempfile, trainers
    >>> from trainers.pareto import pareto_table
    >>> d = tempfile.mkdtemp()
    >>> _ = trainers.train({"model": "modular", "curriculum": "growth", "module_size": 4, "units": 4,
    ...                     "n_max": 4, "batch": 8, "steps_per_epoch": 2, "eval_batches": 1,
    ...                     "max_epochs": 2, "device": "cpu", "seed": 0}, d, progress=False)
    >>> ds = pareto_table([d], epochs=2)
    >>> str(ds["architecture"].values[0]), int(ds["size"].values[0]), bool(ds["complete"].values[0])
    ('modular', 4, True)
    """
    from trainers.sweep import run_dirs

    epochs = check_positive_int("epochs", epochs)
    runs = run_dirs(list(runs))
    if not runs:
        raise ValueError("runs is empty; give the run directories of finished training runs.")
    rows = [run_point(r, epochs) for r in runs]
    paths = [r["run"] for r in rows]
    if len(set(paths)) != len(paths):
        raise ValueError(f"a run directory is given twice: {sorted({p for p in paths if paths.count(p) > 1})}.")
    if strict:
        short = [r["run"] for r in rows if not r["complete"]]
        if short:
            raise ValueError(f"runs {short} stopped before {epochs} epochs without finishing their curriculum; "
                             f"resume them (trainers resume RUN --max-epochs {epochs}) or pass strict=False.")
    keys = [k for k in rows[0] if k != "run"]
    data = {k: ("run", np.asarray([r[k] for r in rows])) for k in keys}
    ds = xr.Dataset(data, coords={"run": paths})
    ds.attrs.update(epochs=epochs, method="N_solved: largest N solved at or before the epoch limit (98% rule); "
                    "parameters: trained up to solving N_solved (trainers.pareto)")
    return ds


def _dominated(params: np.ndarray, solved: np.ndarray) -> np.ndarray:
    """Whether each point is dominated: another has no more parameters and no lower N_solved,
    and is strictly better in one."""
    p, s = params[:, None], solved[:, None]
    worse_or_equal = (params[None, :] <= p) & (solved[None, :] >= s)
    strictly = (params[None, :] < p) | (solved[None, :] > s)
    return (worse_or_equal & strictly).any(axis=1)


def pareto_front(ds: xr.Dataset) -> xr.Dataset:
    """The non-dominated runs of each architecture: no other run of the same architecture has at
    most as many ``parameters`` and at least the same ``n_solved``, better in one (004 Fig. 2b's
    frontier). Runs with equal points are all kept.

    Parameters
    ----------
    ds : xarray.Dataset
        From :func:`pareto_table` (``architecture``, ``parameters``, ``n_solved`` over ``run``).

    Returns
    -------
    xarray.Dataset
        The front's runs, by architecture, then by ``parameters``.

    Examples
    --------
    >>> import xarray as xr
    >>> from trainers.pareto import pareto_front
    >>> ds = xr.Dataset({"architecture": ("run", ["modular"] * 3), "parameters": ("run", [10, 20, 30]),
    ...                  "n_solved": ("run", [5, 4, 9])}, coords={"run": ["a", "b", "c"]})
    >>> pareto_front(ds)["run"].values.tolist()
    ['a', 'c']
    """
    for v in ("architecture", "parameters", "n_solved"):
        if v not in ds:
            raise ValueError(f"ds has no {v!r}; give the Dataset of trainers.pareto.pareto_table.")
    keep: list[int] = []
    arch = ds["architecture"].values.astype(str)
    params = ds["parameters"].values.astype(float)
    solved = ds["n_solved"].values.astype(float)
    for a in sorted(set(arch)):
        idx = np.flatnonzero(arch == a)
        front = idx[~_dominated(params[idx], solved[idx])]
        keep.extend(front[np.lexsort((solved[front], params[front]))].tolist())
    return ds.isel(run=keep)


def plot_pareto(ds: xr.Dataset, ax: Any = None, *, log: bool = True) -> Any:
    """004 Fig. 2b: ``N_solved`` after the epoch limit against trainable parameters, one colour per
    architecture, each run a point (hollow: stopped before the limit), the front of each
    architecture a line (:func:`pareto_front`).

    Parameters
    ----------
    ds : xarray.Dataset
        From :func:`pareto_table`.
    ax : matplotlib Axes, optional
        Draw there (default a new figure).
    log : bool, default True
        Logarithmic parameter axis.

    Returns
    -------
    matplotlib.axes.Axes
    """
    from dynatools.plot import PALETTE, _plt

    if ax is None:
        _, ax = _plt().subplots(figsize=(4.5, 3.5))
    arch = ds["architecture"].values.astype(str)
    front = pareto_front(ds)
    complete = ds["complete"].values.astype(bool) if "complete" in ds else np.ones(arch.size, bool)
    for i, a in enumerate(sorted(set(arch))):
        colour = PALETTE[i % len(PALETTE)]
        sel = arch == a
        for done, face in ((True, colour), (False, "none")):
            m = sel & (complete == done)
            if m.any():
                ax.scatter(ds["parameters"].values[m], ds["n_solved"].values[m], facecolors=face,
                           edgecolors=colour, s=28, zorder=3,
                           label=a if done else f"{a} (stopped early)")
        f = front.isel(run=front["architecture"].values.astype(str) == a)
        ax.step(f["parameters"].values, f["n_solved"].values, where="post", color=colour, lw=1.2)
    from matplotlib.ticker import MaxNLocator, NullFormatter

    if log:
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trainable parameters")
    ax.set_ylabel(f"N solved after {ds.attrs.get('epochs', '?')} epochs")
    ax.legend(frameon=False, fontsize=8)
    return ax


# ---------------------------------------------------------------------------- learning curves
def learning_curves(runs: Sequence[str | os.PathLike | RunDir], *, labels: Sequence[str] | None = None) -> xr.Dataset:
    """``N_solved`` after every epoch of each run: 004 Fig. 2a (learning curves of modular and
    non-modular networks).

    Parameters
    ----------
    runs : sequence of run directories
        Finished or interrupted training runs of a curriculum over N (growth, multi-head, ...); a
        sweep directory (``trainers sweep``) stands for its runs.
    labels : sequence of str, optional
        One label per run (default: the run folder's name).

    Returns
    -------
    xarray.Dataset
        ``n_solved`` (run, epoch): the largest N solved at or before each epoch
        (:func:`n_solved_after`; ``n_start - 1`` before the first, NaN after the run's last epoch),
        with coordinates ``label``, ``architecture``, ``size`` (module size or units), ``lr`` and
        ``seed`` on ``run``; ``epoch`` counts from 1.

    Examples
    --------
    >>> import tempfile, pathlib, trainers
    >>> from trainers.pareto import learning_curves
    >>> run = pathlib.Path(tempfile.mkdtemp()) / "growth"
    >>> cfg = {"task": "parity", "model": "modular", "curriculum": "growth", "units": 4, "module_size": 4,
    ...        "batch": 16, "steps_per_epoch": 5, "eval_batches": 1, "max_epochs": 2, "n_max": 4,
    ...        "seed": 0, "device": "cpu"}
    >>> _ = trainers.train(cfg, run, progress=False)
    >>> learning_curves([run])["n_solved"].dims
    ('run', 'epoch')
    """
    from trainers.sweep import run_dirs

    rds = [r if isinstance(r, RunDir) else RunDir(r) for r in run_dirs(list(runs))]
    if not rds:
        raise ValueError("learning_curves needs at least one run directory.")
    if labels is not None and len(labels) != len(rds):
        raise ValueError(f"give one label per run: {len(labels)} labels for {len(rds)} runs.")
    histories, rows = [], []
    for rd in rds:
        cfg = rd.config
        cur = cfg.curriculum_options
        if "n_start" not in cur:
            raise ValueError(f"{rd.path} was trained with curriculum {cfg.curriculum!r}, which has no task sizes N; "
                             f"learning curves over N (004 Fig. 2a) need a curriculum over N (growth, multi-head).")
        history = _history(rd)
        if not history:
            raise ValueError(f"{rd.path} has no completed epoch (metrics.jsonl is empty); train it first.")
        arch = _architecture(cfg)
        size = int(cfg.model_options.get("module_size") or cfg.units) if arch == MODULAR else int(cfg.units)
        histories.append((history, int(cur["n_start"])))
        rows.append((arch, size, float(cfg.lr), int(cfg.seed)))
    n_epochs = max(int(h[-1]["epoch"]) for h, _ in histories)
    curve = np.full((len(rds), n_epochs), np.nan)
    for i, (history, n_start) in enumerate(histories):
        last = int(history[-1]["epoch"])
        best = n_start - 1
        solved = {int(h["epoch"]): max(h["Ns"]) for h in history if h.get("solved") and h.get("Ns")}
        for e in range(1, last + 1):
            best = max(best, solved.get(e, best))
            curve[i, e - 1] = best
    names = list(labels) if labels is not None else [rd.path.name for rd in rds]
    arch, size, lr, seed = (np.asarray(v) for v in zip(*rows))
    ds = xr.Dataset({"n_solved": (("run", "epoch"), curve)},
                    coords={"run": [str(rd.path) for rd in rds], "epoch": np.arange(1, n_epochs + 1),
                            "label": ("run", names), "architecture": ("run", arch), "size": ("run", size),
                            "lr": ("run", lr), "seed": ("run", seed)})
    ds["n_solved"].attrs = {"long_name": "largest N solved", "description": "004 Fig. 2a"}
    return ds


def plot_learning_curves(ds: xr.Dataset, ax: Any = None) -> Any:
    """004 Fig. 2a: ``N_solved`` against epochs, one line per run, coloured by label (runs that
    share a label, e.g. several seeds, share a colour).

    Parameters
    ----------
    ds : xarray.Dataset
        From :func:`learning_curves`.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    from dynatools.plot import PALETTE, _plt

    if ax is None:
        _, ax = _plt().subplots(figsize=(4.5, 3.5))
    labels = ds["label"].values.astype(str)
    order = list(dict.fromkeys(labels))
    for i, lab in enumerate(order):
        colour = PALETTE[i % len(PALETTE)]
        for k, j in enumerate(np.flatnonzero(labels == lab)):
            ax.step(ds["epoch"].values, ds["n_solved"].values[j], where="post", color=colour, lw=1.3,
                    label=lab if k == 0 else None)
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("N solved")
    ax.legend(frameon=False, fontsize=8)
    return ax


__all__ = ["MODULAR", "NON_MODULAR", "grown_parameters", "n_solved_after", "run_point", "pareto_table",
           "pareto_front", "plot_pareto", "learning_curves", "plot_learning_curves"]
