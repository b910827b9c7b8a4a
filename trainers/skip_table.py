"""The paper's tables of the training-time methods (002 Sec. 4, Table 1; Sec. 4.1, Table 2), at any
scale: train each configuration on each task as one ensemble, then report per configuration and
task the training steps to the 10-90 percentile 0.99 rule (or "failed" at the step limit), the
wall-clock time and the FLOPs up to then, and the proportion of members that learned the task.

Every (task, configuration) pair is one run directory ``OUT/<task>/<configuration>``: a runner
that is interrupted, or called again with a larger step limit, resumes each run from its latest
checkpoint, and runs that have finished are only read. ``members``, ``max_steps``, the annealing
span and the tasks are options, so the same command runs small on a CPU and at the paper's scale
(100 members, 40,000 steps, annealing over 20,000) on a GPU.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: Table 1's configurations (002 Sec. 4): the method and its skip length / discretization factor.
TABLE1: dict[str, dict[str, Any]] = {
    "control": {"method": "none"},
    "CD10": {"method": "cd", "skip": 10},
    "SCTT10": {"method": "sctt", "skip": 10},
    "SCTT40": {"method": "sctt", "skip": 40},
    "DASC10": {"method": "dasc", "skip": 10},
    "DASC40": {"method": "dasc", "skip": 40},
}
#: Table 2's configurations (002 Sec. 4.1), each without and with strategic skip connections.
TABLE2: dict[str, dict[str, Any]] = {
    **{name: TABLE1[name] for name in ("control", "CD10", "SCTT40", "DASC40")},
    **{f"{name}+SSC": {**TABLE1[name], "strategic": True} for name in ("control", "CD10", "SCTT40", "DASC40")},
}
#: The tasks of Table 1 (those with long-term dependencies), in its order.
LONG_DEPENDENCY_TASKS = ("dmc", "dnmc", "dnms", "dms-cog", "ddmd", "ddm", "msddm", "danti", "dgo")
#: Success of a member (002 Sec. 4.1: "more than 0.99 accuracy").
SUCCESS = 0.99


def _row(run_dir: Path, max_steps: int) -> dict[str, Any]:
    """Steps to the rule (NaN: failed or incomplete), wall-clock and FLOPs up to then (or up to the
    stop), the last 10-90 percentile score, the proportion of members above :data:`SUCCESS`, and
    the status: solved, failed (the step limit reached) or incomplete (stopped earlier)."""
    from trainers.rundir import RunDir

    ds = RunDir(run_dir).metrics()
    solved_at = int(ds.attrs.get("steps_to_threshold", -1))
    last = int(ds["step"][-1]) if ds.sizes["step"] else 0
    upto = solved_at if solved_at > 0 else last
    part = ds.sel(step=slice(1, upto))
    evals = ds["eval_performance"].isel(epoch=-1).values
    status = "solved" if solved_at > 0 else "failed" if last >= max_steps else "incomplete"
    return {"status": status, "steps": float(solved_at) if solved_at > 0 else math.nan,
            "steps_run": float(last),
            "wall_seconds": float(part["wall_seconds"].sum()),
            "flops": float(part["flops"].sum()),
            "score": float(ds["score"][-1]),
            "learned": float(np.mean(evals > SUCCESS)),
            "members": float(ds.sizes["member"])}


def skip_table(out: str | os.PathLike, tasks: Sequence[str], *, configurations: Mapping[str, Mapping[str, Any]]
               | Sequence[str] = tuple(TABLE1), members: int = 100, max_steps: int = 40000,
               anneal_span: int = 20000, anneal_steps: int = 5, beta0: float = 0.5, seed: int = 0,
               steps_per_epoch: int = 100, options: Mapping[str, Any] | None = None, train: bool = True,
               scheduler: Any = None, workers: int | None = None, progress: bool = True, name: str = "table"):
    """Train (or resume, or only read) every configuration on every task and tabulate 002 Table 1/2.

    Parameters
    ----------
    out : path
        Folder of the run directories (``OUT/<task>/<configuration>``) and the results
        (``OUT/<name>.nc``, ``.csv``, ``.png``).
    tasks : sequence of str
        Trial tasks (e.g. :data:`LONG_DEPENDENCY_TASKS`, or ``["rule-reversal"]`` for Table 2).
    configurations : sequence of names of :data:`TABLE1` / :data:`TABLE2`, or a mapping
        name -> training options (``method``, ``skip``, ``strategic``, ...).
    members : int, default=100
        Networks per ensemble (002: 100).
    max_steps : int, default=40000
        Step limit (002: 40,000), rounded up to whole epochs; a run that has not met the rule by
        then "failed". A run directory that exists with other settings (members, annealing,
        units, seed, ...) is refused; a larger limit continues its runs.
    anneal_span, anneal_steps, beta0 : default 20000, 5, 0.5
        The annealing of every method (002 Sec. 4; the paper picks the best per task from
        anneal_steps in {1, 5, 10} and beta0 in {0.2, 0.5, 0.8}).
    seed : int, default=0
        Seed of every run (member k: seed + k), the same for all configurations.
    steps_per_epoch : int, default=100
        Optimizer steps between two evaluations of the stopping rule.
    options : mapping, optional
        Further training options for every run (e.g. ``{"units": 50, "device": "cuda"}``).
    train : bool, default=True
        False: only read the run directories that exist (a table of what has been run).
    scheduler, workers : optional
        Where the runs train (:func:`trainers.sweep.run_sweep`: the grid of tasks x
        configurations is a sweep): ``scheduler``, a dask scheduler's address or cluster object;
        else ``workers`` processes of a local dask cluster; default (neither): in this process,
        one after another.
    name : str, default="table"
        Stem of the result files.

    Returns
    -------
    xarray.Dataset
        Over ``(task, configuration)``: ``status`` (solved, failed, incomplete, missing),
        ``steps`` (to the rule; NaN unless solved), ``steps_run``,
        ``wall_seconds`` and ``flops`` (all members, up to the rule or the stop), ``score`` (the
        last 10-90 percentile mean), ``learned`` (proportion of members above 0.99, Table 2).

    Examples
    --------
    >>> import tempfile
    >>> ds = skip_table(tempfile.mkdtemp(), ["go"], configurations=["control", "DASC10"], members=2,
    ...                 max_steps=4, steps_per_epoch=2, anneal_span=2, progress=False,
    ...                 options={"units": 8, "batch": 4, "eval_batches": 1, "device": "cpu"})
    >>> ds["steps_run"].sel(task="go").values.tolist()
    [4.0, 4.0]
    """
    import xarray as xr

    out = Path(out)
    if isinstance(configurations, Mapping):
        configs = {str(k): dict(v) for k, v in configurations.items()}
    else:
        known = {**TABLE1, **TABLE2}
        unknown = [c for c in configurations if c not in known]
        if unknown:
            raise ValueError(f"unknown configuration(s) {unknown}; choose among {list(known)} or pass a mapping "
                             f"name -> options.")
        configs = {c: dict(known[c]) for c in configurations}
    if not tasks:
        raise ValueError("give at least one task (e.g. dgo, dmc; rule-reversal for Table 2).")
    if max_steps < 1 or steps_per_epoch < 1 or members < 1:
        raise ValueError("members, max_steps and steps_per_epoch must be positive integers.")
    from trainers.rundir import RunDir

    max_epochs = -(-int(max_steps) // int(steps_per_epoch))
    limit = max_epochs * int(steps_per_epoch)          # whole epochs: the limit the runs really have
    from trainers.sweep import Sweep, run_sweep

    base = {"anneal_span": anneal_span, "anneal_steps": anneal_steps, "beta0": beta0, "members": members,
            "seed": seed, "steps_per_epoch": steps_per_epoch, "max_epochs": max_epochs, **(options or {})}
    sweep = Sweep(base, {"task": list(tasks), "configuration": configs}, names="{task}/{configuration}")
    if train:
        if workers is None and scheduler is None:
            workers = 0
        report = run_sweep(sweep, out, scheduler=scheduler, workers=workers, progress=progress)
        if report.failed:
            name_, error = next(iter(report.failed.items()))
            raise RuntimeError(f"{len(report.failed)} run(s) failed, e.g. {out / name_}: {error}")
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for task in tasks:
        for cname in configs:
            run_dir = out / task / cname
            if (run_dir / "config.json").is_file() and RunDir(run_dir).checkpoint_path().is_file():
                rows[task, cname] = _row(run_dir, limit)
    names = ("steps", "steps_run", "wall_seconds", "flops", "score", "learned", "members")
    data = {n: (("task", "configuration"), np.array([[rows.get((t, c), {}).get(n, math.nan) for c in configs]
                                                     for t in tasks])) for n in names}
    data["status"] = (("task", "configuration"), np.array([[rows.get((t, c), {}).get("status", "missing")
                                                            for c in configs] for t in tasks], dtype=str))
    ds = xr.Dataset(data, coords={"task": list(tasks), "configuration": list(configs)},
                    attrs={"max_steps": limit, "anneal_span": int(anneal_span),
                           "anneal_steps": int(anneal_steps), "beta0": float(beta0), "seed": int(seed),
                           "success": SUCCESS,
                           "reference": "Soo, Goudar & Wang (NeurIPS 2023) Table 1 (Sec. 4), Table 2 (Sec. 4.1)"})
    ds["steps"].attrs["description"] = ("training steps until the 10-90 percentile mean reached 0.99; NaN = not "
                                        "reached (see status)")
    ds["status"].attrs["description"] = ("solved; failed (the step limit reached without the rule); incomplete "
                                         "(stopped earlier: interrupted or still running); missing (no run)")
    ds["wall_seconds"].attrs.update(units="s", description="training-step wall clock of the ensemble until then")
    ds["flops"].attrs["description"] = "matrix-product FLOPs of all members' training steps until then"
    ds["learned"].attrs["description"] = "proportion of members above 0.99 at the last evaluation (Table 2)"
    out.mkdir(parents=True, exist_ok=True)
    from dynatools.utils import write_atomic, write_netcdf_atomic

    write_netcdf_atomic(ds, out / f"{name}.nc")
    write_atomic(out / f"{name}.csv", ds.to_dataframe().to_csv)
    fig = plot_skip_table(ds)
    write_atomic(out / f"{name}.png", lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    import matplotlib.pyplot as plt

    plt.close(fig)
    return ds


def plot_skip_table(ds):
    """A figure laid out like 002 Table 1: rows = tasks, columns = configurations, three blocks
    (training steps x10^4, wall-clock x10^4 s, FLOPs x10^13) with "failed" where the rule was not
    met and the best of each row in bold; plus the proportion of members that learned (Table 2).
    Returns the Figure."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    blocks = [("Training steps (x10^4)", "steps", 1e4, True), ("Wall-clock training time (x10^4 s)",
              "wall_seconds", 1e4, True), ("Floating point operations (x10^13)", "flops", 1e13, True),
              ("Proportion of members that learned (>0.99)", "learned", 1.0, False)]
    tasks = [str(t) for t in ds["task"].values]
    configs = [str(c) for c in ds["configuration"].values]
    cells, bold, labels = [], [], []
    for title, var, scale, failed_when_unsolved in blocks:
        cells.append([title] + [""] * len(configs))
        bold.append([False] * (len(configs) + 1))
        labels.append(True)
        for t in tasks:
            values = ds[var].sel(task=t).values.astype(float)
            statuses = ds["status"].sel(task=t).values if "status" in ds else \
                np.where(np.isfinite(ds["steps"].sel(task=t).values.astype(float)), "solved", "failed")
            solved = statuses == "solved"
            row, marks = [t], [False]
            shown = np.where(solved | (not failed_when_unsolved), values, np.nan)
            best = None
            if np.isfinite(shown).any():
                best = np.nanmin(shown) if failed_when_unsolved else np.nanmax(shown)
            for v, ok, status in zip(values, solved, statuses):
                if failed_when_unsolved and not ok:
                    row.append("failed" if status == "failed" else "-")
                    marks.append(False)
                elif not np.isfinite(v):
                    row.append("-")
                    marks.append(False)
                else:
                    row.append(f"{v / scale:.3f}" if failed_when_unsolved else f"{v:.2f}")
                    marks.append(best is not None and np.isfinite(best) and v == best)
            cells.append(row)
            bold.append(marks)
            labels.append(False)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 + 1.2 * len(configs)), 0.32 * len(cells) + 0.8))
    ax.axis("off")
    table = ax.table(cellText=cells, colLabels=["Task"] + configs, loc="center", cellLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    for (r, c), cell in table.get_celld().items():
        if r == 0:
            cell.set_text_props(weight="bold")
            continue
        if labels[r - 1]:
            cell.set_text_props(style="italic", ha="left")
            cell.visible_edges = "TB" if c else "TBL"
        elif bold[r - 1][c]:
            cell.set_text_props(weight="bold")
    members = int(np.nanmax(ds["members"].values)) if np.isfinite(ds["members"].values).any() else "?"
    ax.set_title(f"{members} members per ensemble, step limit {ds.attrs.get('max_steps', '?')}", fontsize=9)
    fig.tight_layout()
    return fig


__all__ = ["skip_table", "plot_skip_table", "TABLE1", "TABLE2", "LONG_DEPENDENCY_TASKS", "SUCCESS"]
