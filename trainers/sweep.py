"""Sweeps: a grid of training configurations run as resumable tasks on ``dask.distributed``.

A sweep file (TOML) holds a base training configuration and a grid::

    # sweep.toml
    [base]                     # any `trainers train` key; sections as tables ([base.model_options])
    task = "parity"
    units = 16
    n_max = 4
    max_epochs = 20
    device = "cpu"

    [grid]                     # one dimension per key: the values it takes
    lr = [0.01, 0.05]
    curriculum = ["single-head", "multi-head"]
    seed = [0, 1]

    [grid.method]              # a dimension of named settings (several keys that go together)
    control = {method = "none"}
    CD10 = {method = "cd", skip = 10}

:func:`expand` turns it into runs, one per grid point, each a normal run directory
``SWEEP_DIR/<name>`` named from its parameters (``lr=0.01_curriculum=single-head_seed=0``);
``SWEEP_DIR/sweep.json`` holds the grid and the runs. :func:`run_sweep` trains them as tasks of a
dask cluster (a ``LocalCluster`` sized to the machine, or any scheduler address), one task per run
(an ensemble of members is one run); :func:`sweep_results` gathers their metrics into one
:class:`xarray.Dataset` with a dimension per grid key.

Faults
    A run is claimed with an exclusive lock on ``RUN_DIR/sweep.lock`` (``flock``), which the
    operating system releases when its holder dies; a second task for the same run waits for the
    lock, so a run directory is never trained by two workers at once. A task that finds its run
    finished does nothing; one that finds it interrupted continues it from its latest checkpoint
    (:func:`trainers.resume`: the same weights as an uninterrupted run). A worker that dies loses
    at most the epoch it was training; the scheduler gives its task to another worker (dask
    reschedules tasks of lost workers, up to ``distributed.scheduler.allowed-failures`` times), and
    ``retries`` re-runs tasks that raised. Every claim is logged in ``RUN_DIR/sweep.log``.

The seeds' sweeps: 002 Table S3 (methods x skip lengths x initial ratios x step counts x tasks),
004 Sec. 3 (module sizes and baselines over seeds), the timescale paper Sec. 3 (every curriculum
on both tasks). docs/sweeps.md has a laptop and a cluster example.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import re
import socket
import sys
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SWEEP_JSON = "sweep.json"
RESULTS = "results.nc"
LOCK = "sweep.lock"
LOG = "sweep.log"
#: Settings that may differ between a run directory and the sweep that asks for it again: raising
#: a limit continues a finished run (e.g. max_epochs in the sweep file raised from 20 to 40).
_LIMITS = ("max_epochs", "time_budget")
#: How a run ended, as its latest checkpoint says (``running``: interrupted).
_FINISHED = ("target", "max_epochs", "time_budget")
_FORMAT = 1


# ---------------------------------------------------------------------- the grid
@dataclass(frozen=True)
class SweepRun:
    """One grid point of a sweep.

    Attributes
    ----------
    name : str
        Its run directory's name under the sweep directory.
    params : dict
        Its coordinate on each grid dimension (a value, or the label of a named setting).
    config : dict
        The training configuration: the base with the grid point's keys set.
    """

    name: str
    params: dict[str, Any]
    config: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class Sweep:
    """A base training configuration and a grid (see the module docstring).

    Parameters
    ----------
    base : dict
        Training configuration shared by every run (:class:`trainers.TrainConfig` keys, sections
        as nested dicts).
    grid : dict
        One entry per dimension, in order: a list of values of the configuration key of that name,
        or a dict of named settings ``{label: {key: value, ...}}`` (the dimension's name is then
        free).
    names : str, optional
        A template for the run directories' names (relative paths) with a ``{dim}`` field per
        grid dimension, e.g. ``"{task}/{configuration}"``; default :func:`run_name`'s
        ``key=value_key=value``.

    Examples
    --------
    >>> from trainers.sweep import Sweep
    >>> sweep = Sweep({"units": 8, "n_max": 3, "device": "cpu"}, {"lr": [0.01, 0.05], "seed": [0, 1]})
    >>> [run.name for run in sweep.runs()]
    ['lr=0.01_seed=0', 'lr=0.01_seed=1', 'lr=0.05_seed=0', 'lr=0.05_seed=1']
    >>> sweep.runs()[1].config["lr"], sweep.runs()[1].config["seed"]
    (0.01, 1)
    """

    base: dict[str, Any]
    grid: dict[str, Any]
    names: str | None = None

    def __post_init__(self) -> None:
        """Check the grid's shape (the configurations are checked by :meth:`runs`)."""
        if not isinstance(self.base, Mapping):
            raise ValueError(f"base is a table of training options; found {self.base!r}.")
        if not isinstance(self.grid, Mapping) or not self.grid:
            raise ValueError("the grid is empty; add a [grid] table with a list of values per key, e.g. "
                             "lr = [0.01, 0.05] and seed = [0, 1].")
        for dim, values in self.grid.items():
            if dim in RESERVED:
                raise ValueError(f"grid dimension {dim!r} has the name of a dimension or variable of the results "
                                 f"({', '.join(sorted(RESERVED))}); name it otherwise.")
            if isinstance(values, Mapping):
                bad = [label for label, setting in values.items() if not isinstance(setting, Mapping)]
                if not values or bad:
                    raise ValueError(f"grid dimension {dim!r} of named settings needs tables of keys, e.g. "
                                     f"[grid.{dim}] control = {{method = \"none\"}}; found {dict(values)!r}.")
                continue
            if not isinstance(values, list) or not values:
                raise ValueError(f"grid key {dim!r} needs a non-empty list of values, e.g. {dim} = [..., ...]; "
                                 f"found {values!r}.")
            if len({json.dumps(v, sort_keys=True) for v in values}) < len(values):
                raise ValueError(f"grid key {dim!r} lists a value twice ({values!r}); list each once.")
        if self.names is not None and not isinstance(self.names, str):
            raise ValueError(f"names is a template string such as \"{{task}}/{{seed}}\"; found {self.names!r}.")

    @property
    def dims(self) -> list[str]:
        """The grid's dimensions, in order."""
        return list(self.grid)

    def coords(self) -> dict[str, list[Any]]:
        """The values (or labels) along each dimension."""
        return {d: list(v) for d, v in self.grid.items()}

    @classmethod
    def from_toml(cls, path: str | os.PathLike) -> "Sweep":
        """Read a sweep file: a ``[base]`` table and a ``[grid]`` table (module docstring)."""
        import tomllib

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"sweep file {str(path)!r} does not exist; write one with a [base] and a "
                                    f"[grid] table (docs/sweeps.md).")
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path}: not valid TOML ({exc}).") from exc
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "the sweep") -> "Sweep":
        """Build from ``{"base": {...}, "grid": {...}, "names": "..."}`` (keys may use dashes)."""
        extra = sorted(set(data) - {"base", "grid", "names"})
        if extra:
            raise ValueError(f"{source}: unknown tables {extra}; a sweep file has [base] (the training "
                             f"configuration), [grid] (lists of values) and optionally names = \"...\".")
        grid = data.get("grid")

        def clean(table: Any) -> Any:
            return {str(k).replace("-", "_"): v for k, v in table.items()} if isinstance(table, Mapping) else table

        if isinstance(grid, Mapping):
            grid = {k: ({str(label): clean(s) for label, s in v.items()} if isinstance(v, Mapping) else v)
                    for k, v in clean(grid).items()}
        try:
            return cls(clean(data.get("base") or {}), grid, data.get("names"))
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}") from None

    def runs(self) -> list[SweepRun]:
        """Every grid point, in grid order (the last dimension varies fastest), with its checked
        configuration. Raises ValueError naming the grid key (or ``[base]``) and the problem when
        a configuration is invalid (an unknown key, a value out of range, sizes the model
        refuses), before anything is trained."""
        from trainers.config import SECTIONS, TrainConfig

        dims = self.dims
        set_by: dict[str, str] = {}
        for dim, values in self.grid.items():
            keys = {k for s in values.values() for k in s} if isinstance(values, dict) else {dim}
            for k in keys:
                if k in set_by and set_by[k] != dim:
                    raise ValueError(f"key {k!r} is set by two grid dimensions ({set_by[k]!r} and {dim!r}); "
                                     f"set it in one.")
                set_by[k] = dim
        if "seed" not in set_by and self.base.get("seed") is None:
            raise ValueError("the sweep gives no seed: add seed = [0, 1, ...] to [grid] or seed = 0 to [base] "
                             "(every run of a sweep is reproducible and resumable).")
        runs, names, built, kinds = [], {}, set(), {}
        for point in itertools.product(*(list(self.grid[d]) for d in dims)):
            params = dict(zip(dims, point))
            setting: dict[str, Any] = {}
            for dim, value in params.items():
                setting.update(self.grid[dim][value] if isinstance(self.grid[dim], dict) else {dim: value})
            config = {**_without(self.base, setting, SECTIONS), **setting}   # a named setting keeps the rest
            name = run_name(params, self.names)
            if name in names:
                raise ValueError(f"runs {names[name]} and {params} get the same directory name {name!r}; "
                                 f"give values that differ in their text.")
            names[name] = params
            try:
                cfg = TrainConfig.from_dict(config).resolved()
                arch = json.dumps([cfg.task, cfg.task_options, cfg.model, cfg.units, cfg.n_heads, cfg.model_options],
                                  sort_keys=True, default=str)
                if arch not in built:                  # the model's own checks (sizes that must agree)
                    cfg.make_model()
                    built.add(arch)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{_culprit(str(exc), set_by, setting)} of the sweep (run {name}): {exc}") from None
            kinds.setdefault(bool(getattr(cfg.classes()[0], "time_resolved", False)), name)
            if len(kinds) > 1:
                raise ValueError(f"the sweep mixes trial tasks (run {kinds[True]}: ensembles recorded per member "
                                 f"and step) with tasks trained per epoch (run {kinds[False]}); their metrics "
                                 f"do not share dimensions: make two sweeps.")
            runs.append(SweepRun(name, params, config))
        return runs

    def to_dict(self) -> dict[str, Any]:
        return {"base": self.base, "grid": self.grid, **({"names": self.names} if self.names else {})}


def _culprit(message: str, set_by: Mapping[str, str], setting: Mapping[str, Any]) -> str:
    """Where an invalid configuration's problem lies: the grid key (or named setting) whose key the
    message names first, else ``[base]``. The list of valid keys that some messages end with is
    not searched."""
    head = message.split("; valid keys")[0]
    found = sorted((m.start(), k) for k in setting for m in [re.search(rf"(?<![\w-]){re.escape(k)}(?![\w-])", head)] if m)
    if not found:
        return "[base]"
    key = found[0][1]
    dim = set_by.get(key, key)
    return f"grid key {key!r}" if dim == key else f"grid dimension {dim!r} (its key {key!r})"


#: Names a grid dimension may not take: the results' own dimensions and variables (also refused by
#: :func:`sweep_results` when a run's metrics have a variable of a dimension's name).
RESERVED = frozenset({"run", "epoch", "N", "member", "step", "status", "config", "stop_reason", "iteration",
                      "loss", "accuracy", "rms", "performance", "metric", "best", "score", "flops",
                      "wall_seconds"})


def _without(base: Mapping[str, Any], keys: Mapping[str, Any], sections: Mapping[str, str]) -> dict[str, Any]:
    """A deep copy of ``base`` without ``keys`` (those a grid point sets), also inside its sections."""
    out = json.loads(json.dumps(dict(base)))
    for k in keys:
        out.pop(k, None)
        for s in sections:
            if isinstance(out.get(s), dict):
                out[s].pop(k, None)
    return out


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "-".join(_text(v) for v in value) or "none"
    return str(value)


def run_name(params: Mapping[str, Any], template: str | None = None) -> str:
    """The run directory's name of a grid point: ``key=value`` joined by ``_``, in grid order, or
    ``template`` filled with the values; in values, characters other than letters, digits and
    ``.+-`` are replaced by ``-``.

    Examples
    --------
    >>> run_name({"lr": 0.001, "n_max": 4, "seed": 0})
    'lr=0.001_n_max=4_seed=0'
    >>> run_name({"task": "dgo", "configuration": "CD10"}, "{task}/{configuration}")
    'dgo/CD10'
    """
    safe = {k: re.sub(r"[^A-Za-z0-9.+-]", "-", _text(v)) for k, v in params.items()}
    if template is None:
        return "_".join(f"{k}={v}" for k, v in safe.items())
    try:
        name = template.format(**safe)
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"names template {template!r} does not fit the grid dimensions {list(params)} "
                         f"({type(exc).__name__}: {exc}); use fields such as {{{next(iter(params))}}}.") from None
    parts = Path(name).parts
    if not name or Path(name).is_absolute() or ".." in parts:
        raise ValueError(f"names template {template!r} gives {name!r}; run names are relative paths inside the "
                         f"sweep directory.")
    return name


# ---------------------------------------------------------------------- one run, claimed
@contextlib.contextmanager
def claim(run_dir: str | os.PathLike, *, timeout: float | None = None, poll: float = 0.5) -> Iterator[Path]:
    """Hold the run directory's lock (``RUN_DIR/sweep.lock``, an exclusive ``flock``) for the block.

    The lock belongs to the open file: it is released when the block ends or its process dies
    (SIGKILL included), so a killed worker never leaves a run locked. Another holder makes this
    wait (polling every ``poll`` seconds) until it lets go.

    Parameters
    ----------
    run_dir : path-like
        The run directory (created if needed).
    timeout : float, optional
        Give up after this many seconds (TimeoutError); default wait for as long as it takes.

    Examples
    --------
    >>> import tempfile
    >>> with claim(tempfile.mkdtemp()) as lock:
    ...     lock.name
    'sweep.lock'
    """
    import fcntl

    path = Path(run_dir) / LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        t0 = time.monotonic()
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if timeout is not None and time.monotonic() - t0 >= timeout:
                    holder = path.read_text().strip() or "another process"
                    raise TimeoutError(f"{path.parent} is being trained by {holder} (it holds {path}); "
                                       f"waited {timeout:g} s.") from None
                time.sleep(poll)
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        yield path
    finally:
        os.close(fd)                          # releases the lock


def run_status(run_dir: str | os.PathLike, config: Mapping[str, Any] | None = None) -> str:
    """Where a sweep's run stands: ``"missing"`` (no checkpoint yet), ``"partial"`` (it can train
    further: interrupted, or ``config`` raised its ``max_epochs`` or ``time_budget`` beyond what
    it has used) or ``"done"`` (it solved its curriculum, or has reached every limit).

    The limits that apply are those :func:`trainers.resume` would continue with: ``config``'s
    ``max_epochs`` and ``time_budget`` where given, else the run's own (a budget is never removed).

    Raises
    ------
    trainers.checkpoint.CheckpointError
        The run directory holds a run with other settings than ``config``.
    """
    from trainers.config import TrainConfig
    from trainers.rundir import RunDir

    rd = RunDir(run_dir)
    if not rd.latest_path.is_file():
        return "missing"
    latest = rd.latest
    saved = latest.config
    if config is not None:
        _check_same(rd, saved, config)
    stop = latest.meta.get("stop_reason")
    if stop == "target":
        return "done"
    if config is None and stop not in _FINISHED:
        return "partial"
    wanted = TrainConfig.from_dict(config) if config is not None else saved
    max_epochs = wanted.max_epochs if wanted.max_epochs is not None else saved.max_epochs
    budget = wanted.time_budget if wanted.time_budget is not None else saved.time_budget
    wall = float(latest.meta.get("wall_seconds") or 0.0)
    more = latest.epoch < max_epochs and (budget is None or wall < budget)
    return "partial" if more else "done"


def _check_same(rd, saved, config: Mapping[str, Any]) -> None:
    from trainers.checkpoint import CheckpointError
    from trainers.config import TrainConfig

    wanted = TrainConfig.from_dict({**config, "seed": config.get("seed", saved.seed)}).resolved().to_dict()
    have = saved.to_dict()
    differ = sorted(k for k in wanted if k not in _LIMITS + ("device",) and wanted[k] != have.get(k))
    if differ:
        shown = ", ".join(f"{k}: run {have.get(k)!r} vs asked {wanted[k]!r}" for k in differ[:4])
        raise CheckpointError(f"{rd.path} holds a run with other settings ({shown}); move that run directory "
                              f"away, use another output folder, or ask for its settings.")


def train_run(run_dir: str | os.PathLike, config: Mapping[str, Any], *, threads: int | None = None,
              lock_timeout: float | None = None, progress: bool = False) -> dict[str, Any]:
    """Bring one run of a sweep to its end: train it, continue it, or leave it if finished.

    The run directory is claimed first (:func:`claim`), so two calls for the same run never
    train at once: the second waits and then finds the run finished. This is the task that
    :func:`run_sweep` submits to the cluster; it can also be called directly.

    Parameters
    ----------
    run_dir : path-like
    config : dict
        The run's training configuration (:attr:`SweepRun.config`).
    threads : int, optional
        Cap on torch threads for the run (a small network still steps on one thread,
        :mod:`dynatools.threads`), unless ``DYNATOOLS_THREADS`` fixes them; :func:`run_sweep`
        passes each task its share of its machine's cores. None: the thread policy as it is.
    lock_timeout : float, optional
        Passed to :func:`claim`.
    progress : bool, default=False
        The training's progress bars.

    Returns
    -------
    dict
        ``{"run": path, "action": "trained" | "resumed" | "skipped", "stop_reason", "epochs",
        "seconds", "pid", "host"}``.

    Examples
    --------
    >>> import tempfile
    >>> config = {"units": 8, "batch": 8, "steps_per_epoch": 2, "eval_batches": 1, "max_epochs": 1,
    ...           "n_max": 3, "device": "cpu", "seed": 0}
    >>> run_dir = tempfile.mkdtemp()
    >>> train_run(run_dir, config)["action"], train_run(run_dir, config)["action"]
    ('trained', 'skipped')
    """
    from trainers.engine import resume, train
    from trainers.rundir import RunDir

    t0 = time.perf_counter()
    rd = RunDir(run_dir)
    with claim(rd.path, timeout=lock_timeout):
        status = run_status(rd.path, config)
        action = {"missing": "trained", "partial": "resumed", "done": "skipped"}[status]
        _log(rd.path, "start", action)
        ended, error = "error", None
        try:
            if status != "done":
                with _thread_cap(threads):
                    if status == "missing":
                        for leftover in (rd.metrics_path, rd.steps_path):   # an attempt killed in its first epoch
                            leftover.unlink(missing_ok=True)
                        run = train(dict(config), rd.path, progress=progress)
                    else:
                        from trainers.config import TrainConfig

                        asked = TrainConfig.from_dict(config)      # the limits as run_status read them
                        limits = {k: getattr(asked, k) for k in _LIMITS if getattr(asked, k) is not None}
                        run = resume(rd.path, progress=progress, **limits)
                stop, epochs = run.stop_reason, len(run.history)
            else:
                latest = RunDir(rd.path).latest
                stop, epochs = latest.meta.get("stop_reason", ""), latest.epoch
            ended = "end"
        except BaseException as exc:
            error = _one_line(exc)
            raise
        finally:
            _log(rd.path, ended, action, error)
    return {"run": str(rd.path), "action": action, "stop_reason": stop, "epochs": epochs,
            "seconds": time.perf_counter() - t0, "pid": os.getpid(), "host": socket.gethostname()}


def _log(path: Path, event: str, action: str, error: str | None = None) -> None:
    """Append a claim event to ``RUN_DIR/sweep.log`` (one JSON line, fsynced)."""
    line = json.dumps({"event": event, "action": action, "pid": os.getpid(), "host": socket.gethostname(),
                       "time": time.time(), **({"error": error} if error else {})})
    with open(path / LOG, "a") as fh:
        fh.write(line + "\n")
        fh.flush()
        os.fsync(fh.fileno())


@contextlib.contextmanager
def _thread_cap(threads: int | None) -> Iterator[None]:
    """Give the block ``threads`` threads at most: the thread policy (dynatools.threads: one thread
    for a small network, up to the cap for a large one) reads the cap from ``OMP_NUM_THREADS``,
    and torch's own count is raised to it (a dask worker starts with ``OMP_NUM_THREADS=1``, its
    ``distributed.nanny.pre-spawn-environ``). Nothing changes when ``threads`` is None or
    ``DYNATOOLS_THREADS`` (``--threads``) fixes the threads. Both settings are restored after."""
    import torch

    from dynatools.threads import ENV_VAR

    if threads is None or os.environ.get(ENV_VAR):
        yield
        return
    before_env, before_torch = os.environ.get("OMP_NUM_THREADS"), torch.get_num_threads()
    os.environ["OMP_NUM_THREADS"] = str(max(1, int(threads)))
    torch.set_num_threads(max(1, int(threads)))
    try:
        yield
    finally:
        torch.set_num_threads(before_torch)
        if before_env is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = before_env


def _task(run_dir: str, config: dict[str, Any]) -> dict[str, Any]:
    """The cluster task: :func:`train_run` with this worker's share of its machine's cores (the
    cores divided by the tasks that run at once on that host, as the scheduler sees it now)."""
    from dynatools.threads import available_cores

    threads = None
    try:
        from distributed import get_client, get_worker

        host = _host(get_worker().address)
        shares = _shares(get_client())
        threads = max(1, available_cores() // max(1, shares.get(host, 1)))
    except (ImportError, ValueError):     # called outside a worker
        pass
    return train_run(run_dir, config, threads=threads)


def _host(address: str) -> str:
    return address.split("://")[-1].rsplit(":", 1)[0]


# ---------------------------------------------------------------------- the sweep
def prepare(sweep: Sweep, out: str | os.PathLike, *, write: bool = True) -> tuple[list[SweepRun], dict[str, str]]:
    """Check every run's configuration, and every run directory that exists against it, then write
    ``OUT/sweep.json`` (the grid and its runs). Returns the runs and their :func:`run_status`.

    A sweep directory holds the latest sweep started in it: a grid extended with more values
    (more seeds) trains only the new runs; runs of earlier grids that the new one lacks stay on
    disk, unread. A run directory whose settings differ from what the sweep asks for is an error
    before anything is written. ``write=False`` only checks."""
    runs = sweep.runs()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out} is a file; the sweep directory (-o) must be a folder.")
    states = {run.name: run_status(out / run.name, run.config) for run in runs}   # refuses other settings
    if write:
        _write_sweep(sweep, runs, out)
    return runs, states


def _write_sweep(sweep: Sweep, runs: Sequence[SweepRun], out: Path) -> None:
    from dynatools.utils import write_atomic

    record = {"format": _FORMAT, **sweep.to_dict(), "dims": sweep.dims,
              "runs": [{"name": r.name, "params": r.params} for r in runs]}
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / SWEEP_JSON, lambda tmp: Path(tmp).write_text(json.dumps(record, indent=2)))


def load(sweep_dir: str | os.PathLike) -> tuple[Sweep, list[SweepRun]]:
    """The sweep a sweep directory holds (``sweep.json``) and its runs."""
    path = Path(sweep_dir) / SWEEP_JSON
    if not path.is_file():
        raise FileNotFoundError(f"{sweep_dir} is not a sweep directory ({SWEEP_JSON} is missing); start one "
                                f"with 'trainers sweep SWEEP.toml -o {sweep_dir}'.")
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise ValueError(f"{path} is damaged ({exc}); run 'trainers sweep SWEEP.toml -o {sweep_dir}' with "
                         f"its sweep file to write it again (finished runs are kept).") from None
    sweep = Sweep(data["base"], data["grid"], data.get("names"))
    return sweep, sweep.runs()


def status(sweep_dir: str | os.PathLike) -> dict[str, str]:
    """``{run name: "missing" | "partial" | "done"}`` for every run of a sweep directory."""
    sweep_dir = Path(sweep_dir)
    _, runs = load(sweep_dir)
    return {r.name: run_status(sweep_dir / r.name, r.config) for r in runs}


def run_dirs(paths: Sequence[Any]) -> list[Any]:
    """``paths`` with each sweep directory replaced by its runs that have a checkpoint, in grid
    order (the readers of many runs, e.g. :func:`trainers.pareto.pareto_table`, take sweeps so).

    Examples
    --------
    >>> import tempfile
    >>> run_dirs([tempfile.gettempdir()]) == [tempfile.gettempdir()]      # not a sweep: unchanged
    True
    """
    out: list[Any] = []
    for p in paths:
        if isinstance(p, (str, os.PathLike)) and (Path(p) / SWEEP_JSON).is_file():
            _, runs = load(p)
            out.extend(Path(p) / r.name for r in runs if (Path(p) / r.name / "checkpoints" / "latest.pt").is_file())
        else:
            out.append(p)
    return out


@dataclass
class SweepReport:
    """What :func:`run_sweep` did: the runs by action, and the errors of those that failed."""

    trained: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        parts = [f"{len(v)} {k}" for k, v in (("trained", self.trained), ("resumed", self.resumed),
                                                ("skipped (finished)", self.skipped), ("failed", self.failed)) if v]
        return ", ".join(parts) or "no runs"


def _client(scheduler: Any, workers: int | None, connect_timeout: float):
    """``(client, to_close)`` for a scheduler address, a cluster object, a Client, or None (a
    LocalCluster of ``workers`` one-thread processes: default one per core). ``to_close``: what
    :func:`run_sweep` made and closes at the end (the local cluster, or the client it opened);
    None for the caller's own client."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:    # pragma: no cover - dask is an optional dependency
        raise ImportError("sweeps run on dask.distributed: pip install 'dynatools[dask]'.") from exc
    from dynatools.threads import available_cores

    if isinstance(scheduler, Client):
        return scheduler, None                     # the caller's: left open
    if scheduler is None:
        import logging

        n = available_cores() if workers is None else int(workers)
        if n < 1:
            raise ValueError(f"--workers must be >= 0 (0: in this process, one run after another); found {workers}.")
        import dask

        env = {"OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
        try:
            # dask's MALLOC_TRIM_THRESHOLD_=65536 for its workers is left out: it made small-network
            # training 30% slower (docs/benchmarks.md, "Sweeps"); OMP_NUM_THREADS=1 & co. stay, and each
            # task raises torch's threads to its share (_thread_cap)
            with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
                cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0",
                                       silence_logs=logging.CRITICAL, env=env)   # ":0": any free port
        except RuntimeError as exc:
            raise RuntimeError(f"the local cluster's {n} worker process(es) failed to start ({exc}). In a script, "
                               f"call run_sweep under 'if __name__ == \"__main__\":' (each worker imports the "
                               f"script again), or train in this process with workers=0.") from None
        return Client(cluster), cluster
    if isinstance(scheduler, str):
        try:
            client = Client(scheduler, timeout=f"{connect_timeout}s", set_as_default=False)
            return client, client
        except (OSError, TimeoutError, ValueError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ConnectionError(f"cannot reach the dask scheduler at {scheduler!r} within {connect_timeout:g} s "
                                  f"({reason[:160]}); check the address (e.g. tcp://HOST:8786) and that "
                                  f"'dask scheduler' runs there, or leave --scheduler out for a local "
                                  f"cluster.") from None
    client = Client(scheduler, set_as_default=False)   # a cluster object (dask-jobqueue, dask-kubernetes)
    return client, client


def _shares(client) -> dict[str, int]:
    """Tasks that run at once on each host: the sum of its workers' threads."""
    shares: dict[str, int] = {}
    for address, info in client.scheduler_info(n_workers=-1)["workers"].items():
        host = info.get("host") or _host(address)
        shares[host] = shares.get(host, 0) + int(info["nthreads"])
    return shares


def run_sweep(sweep: Sweep | str | os.PathLike, out: str | os.PathLike, *, scheduler: Any = None,
              workers: int | None = None, resources: Mapping[str, float] | None = None, retries: int = 1,
              connect_timeout: float = 10.0, progress: bool = True) -> SweepReport:
    """Train every run of a sweep on a dask cluster; finished runs are skipped, interrupted ones
    continue from their latest checkpoint.

    Parameters
    ----------
    sweep : Sweep or path-like
        The sweep, or its TOML file.
    out : path-like
        The sweep directory: ``sweep.json`` and one run directory per grid point.
    scheduler : str, distributed.Client or cluster object, optional
        A scheduler address (``tcp://HOST:8786``), a client, or a cluster object
        (``dask_jobqueue.SLURMCluster``, ``dask_kubernetes`` clusters). Default: a ``LocalCluster``
        of ``workers`` processes with one task each, closed at the end.
    workers : int, optional
        Worker processes of the local cluster (default: one per core this process may use). 0:
        no cluster; the runs are trained in this process, one after another (no dask needed).
    resources : dict, optional
        Resources each run needs, e.g. ``{"GPU": 1}``: runs go only to workers started with them
        (``dask worker ADDRESS --resources GPU=1``).
    retries : int, default=1
        Times a run that raised is tried again (a dead worker's task is rescheduled anyway).
    connect_timeout : float, default=10
        Seconds to wait for the scheduler.
    progress : bool, default=True
        A progress bar over runs.

    Returns
    -------
    SweepReport

    Examples
    --------
    >>> import tempfile
    >>> from trainers.sweep import Sweep, run_sweep, sweep_results
    >>> sweep = Sweep({"units": 8, "batch": 8, "steps_per_epoch": 2, "eval_batches": 1, "max_epochs": 2,
    ...                "n_max": 3, "device": "cpu"}, {"lr": [0.01, 0.05], "seed": [0, 1]})
    >>> out = tempfile.mkdtemp()
    >>> run_sweep(sweep, out, workers=2, progress=False).summary()     # doctest: +SKIP
    '4 trained'
    >>> sweep_results(out)["accuracy"].dims                            # doctest: +SKIP
    ('lr', 'seed', 'epoch', 'N')
    """
    from tqdm.auto import tqdm

    if not isinstance(sweep, Sweep):
        sweep = Sweep.from_toml(sweep)
    if resources is not None and scheduler is None:
        raise ValueError(f"resources={dict(resources)} send runs to workers that declare them (dask worker ... "
                         f"--resources GPU=1); the local cluster's workers declare none: give --scheduler, or "
                         f"leave --resources out.")
    if retries < 0:
        raise ValueError(f"retries must be >= 0; found {retries}.")
    if workers is not None and workers < 0:
        raise ValueError(f"workers must be >= 0 (0: in this process, one run after another); found {workers}.")
    if workers is not None and scheduler is not None:
        raise ValueError("workers sizes the local cluster; with a scheduler the cluster's own workers train the "
                         "runs: give one of --workers and --scheduler.")
    out = Path(out)
    runs, states = prepare(sweep, out, write=False)
    report = SweepReport(skipped=[r.name for r in runs if states[r.name] == "done"])
    todo = [r for r in runs if states[r.name] != "done"]      # finished runs need no worker at all
    if not todo:
        _write_sweep(sweep, runs, out)
        return report
    if scheduler is None and workers == 0:
        _write_sweep(sweep, runs, out)
        for run in tqdm(todo, desc="sweep", unit="run", disable=not progress or len(todo) < 2, dynamic_ncols=True):
            for attempt in range(retries + 1):
                try:
                    result = train_run(out / run.name, run.config, progress=progress)
                except Exception as exc:             # noqa: BLE001 - reported per run, as on a cluster
                    if attempt == retries:
                        report.failed[run.name] = _one_line(exc)
                    continue
                getattr(report, result["action"]).append(run.name)
                break
        return report
    environ = dict(os.environ)          # distributed sets OMP_NUM_THREADS=1 & co. here for its workers
    to_close = None
    try:
        client, to_close = _client(scheduler, workers, connect_timeout)   # reachable: now write sweep.json
        from uuid import uuid4

        from distributed import as_completed

        _write_sweep(sweep, runs, out)
        if resources:
            declared = [w.get("resources") or {} for w in client.scheduler_info(n_workers=-1)["workers"].values()]
            if not any(all(w.get(k, 0) >= v for k, v in resources.items()) for w in declared):
                warnings.warn(f"no worker of the cluster declares {dict(resources)} (yet); the runs wait until "
                              f"one that does joins (dask worker ADDRESS --resources "
                              f"{' '.join(f'{k}={v:g}' for k, v in resources.items())}).", stacklevel=2)
        token = uuid4().hex[:8]
        futures = {client.submit(_task, str(out / run.name), run.config, key=f"sweep-{token}-{run.name}",
                                 pure=False, retries=retries, resources=dict(resources) if resources else None): run
                   for run in todo}
        with tqdm(total=len(runs), initial=len(report.skipped), desc="sweep", unit="run", disable=not progress,
                  dynamic_ncols=True) as bar:
            for future in as_completed(futures, loop=client.loop):   # this client, not a default one
                name = futures[future].name
                if future.status == "finished":
                    getattr(report, future.result()["action"]).append(name)
                elif future.status == "error":
                    report.failed[name] = _one_line(future.exception())
                else:                                   # cancelled or lost with its worker
                    report.failed[name] = f"the task was {future.status}"
                bar.update(1)
                bar.set_postfix_str(name, refresh=False)
    finally:
        if to_close is not None:
            client.close()
            if to_close is not client:
                to_close.close()
        _restore_environ(environ)
    return report


def _restore_environ(environ: Mapping[str, str]) -> None:
    """Put ``os.environ`` back as it was: starting a local cluster sets ``OMP_NUM_THREADS=1``,
    ``MKL_NUM_THREADS``, ``PYTHONHASHSEED``, ... in this process (for the workers it spawns), which
    would otherwise cap every later computation of the caller at one thread."""
    for key in [k for k in os.environ if k not in environ]:
        del os.environ[key]
    for key, value in environ.items():
        if os.environ.get(key) != value:
            os.environ[key] = value


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


# ---------------------------------------------------------------------- results
def _coord(value: Any) -> Any:
    """A grid value as a coordinate netCDF can hold: bools and lists as text."""
    if isinstance(value, bool) or isinstance(value, (list, tuple, dict)) or value is None:
        return _text(value) if not isinstance(value, dict) else json.dumps(value, sort_keys=True)
    return value


#: Attributes of the runs' metrics that describe the task, not the run: kept as the results'
#: attributes when every run has the same (else a variable per run, as every other attribute).
_SHARED_ATTRS = ("metric",)


def sweep_results(sweep_dir: str | os.PathLike, *, save: bool = True) -> "xr.Dataset":  # noqa: F821
    """Every run's metrics in one Dataset, with one dimension per grid key.

    Each run's :meth:`trainers.RunDir.metrics` (``loss``, the task's metric over ``epoch`` and
    ``N``, or an ensemble's per-``member`` and per-``step`` records) is placed at its grid point;
    runs of different lengths are padded with NaN. Per run: ``status`` (done, partial, missing),
    ``stop_reason``, ``config`` (the resolved configuration as JSON) and the scalar results
    (``best``, ``iterations_to_mp``, ``steps_to_threshold``, ...) where the runs have them.

    Parameters
    ----------
    sweep_dir : path-like
    save : bool, default=True
        Also write ``SWEEP_DIR/results.nc`` (atomically).

    Returns
    -------
    xarray.Dataset
    """
    import numpy as np
    import pandas as pd
    import xarray as xr

    from trainers.rundir import RunDir

    sweep_dir = Path(sweep_dir)
    sweep, runs = load(sweep_dir)
    dims = sweep.dims
    per_run, statuses = [], []
    for run in runs:
        rd = RunDir(sweep_dir / run.name)
        state = run_status(rd.path, run.config)
        statuses.append(state)
        per_run.append(None if state == "missing" else rd.metrics().reset_coords())
    have = [d for d in per_run if d is not None]
    if not have:
        raise FileNotFoundError(f"no run of {sweep_dir} has a checkpoint yet; train them with "
                                f"'trainers sweep SWEEP.toml -o {sweep_dir}'.")
    common = {k: have[0].attrs[k] for k in _SHARED_ATTRS
              if k in have[0].attrs and all(d.attrs.get(k) == have[0].attrs[k] for d in have)}
    for d in have:                       # per-run results (stop_reason, best, config, ...) become variables
        for k, v in d.attrs.items():
            if k not in common:
                d[k] = xr.DataArray(v if isinstance(v, str) else float(v))
        d.attrs = {}
    kinds = {}
    for d in have:
        for v in d.data_vars:
            kinds.setdefault(v, d[v])
    clash = sorted(set(dims) & (set(kinds) | {k for d in have for k in d.dims}))
    if clash:
        raise ValueError(f"grid dimension(s) {clash} have the name of a variable or dimension of the runs' metrics; "
                         f"rename the dimension in the sweep file (named settings: [grid.NAME]).")
    filled = []
    for d in per_run:
        if d is None:                    # a missing run: every variable empty or NaN, nothing of another run
            d = xr.Dataset(coords={k: have[0][k].values[:0] for k in have[0].dims if k in have[0].coords})
        for v, kind in kinds.items():
            if v not in d:
                text = kind.dtype.kind in "OUS"
                d[v] = xr.DataArray("") if text else \
                    xr.full_like(kind, np.nan, dtype=float) if kind.ndim else xr.DataArray(np.nan)
        filled.append(d)
    filled = list(xr.align(*filled, join="outer", fill_value=np.nan))
    fixed = []
    for d in filled:
        for v in kinds:
            if d[v].dtype.kind in "iub":
                d[v] = d[v].astype(float)
        fixed.append(d)
    index = pd.MultiIndex.from_tuples([tuple(_coord(r.params[k]) for k in dims) for r in runs], names=dims)
    stacked = xr.concat(fixed, dim="run", join="outer", fill_value=np.nan, coords="minimal", compat="override")
    stacked = stacked.assign_coords(xr.Coordinates.from_pandas_multiindex(index, "run"))
    stacked["status"] = ("run", np.array(statuses, dtype=str))
    out = stacked.unstack("run")
    out = out.reindex({d: [_coord(v) for v in sweep.grid[d]] for d in dims}).transpose(*dims, ...)
    out.attrs = {**common, "sweep": json.dumps(sweep.to_dict(), sort_keys=True),
                 "sweep_dir": str(sweep_dir.resolve()), "dims": " ".join(dims)}
    for d in dims:
        if isinstance(sweep.grid[d], dict):
            out[d].attrs["settings"] = json.dumps(sweep.grid[d], sort_keys=True)
    if save:
        from dynatools.utils import write_netcdf_atomic

        write_netcdf_atomic(out, sweep_dir / RESULTS)
    return out


def plot_sweep(ds: "xr.Dataset", variable: str | None = None, ax: Any = None) -> Any:  # noqa: F821
    """Learning curves of a sweep: ``variable`` against epochs (or steps), one line per grid
    point, the mean over seeds with their range shaded when ``seed`` is a grid key.

    Parameters
    ----------
    ds : xarray.Dataset
        From :func:`sweep_results`.
    variable : str, optional
        A variable over ``epoch`` or ``step`` (averaged over ``N`` and ``member`` where it has
        them). Default: the task's metric (``accuracy``, ``rms``), or ``score`` for trial tasks.
    ax : matplotlib Axes, optional
        Draw there (default a new figure).

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> ax = plot_sweep(sweep_results("runs/sweep"))                        # doctest: +SKIP
    >>> ax.figure.savefig("curves.png")                                     # doctest: +SKIP
    """
    import numpy as np

    from dynatools.plot import PALETTE, _plt

    dims = ds.attrs["dims"].split()
    if variable is None:
        metric = ds.attrs.get("metric")
        variable = "score" if "score" in ds else metric if metric in ds else "loss"
    if variable not in ds:
        raise ValueError(f"variable {variable!r} is not in the sweep's results; choose one of "
                         f"{sorted(v for v in ds.data_vars if set(ds[v].dims) & {'epoch', 'step'})}.")
    da = ds[variable]
    x = next((d for d in ("epoch", "step") if d in da.dims), None)
    if x is None:
        raise ValueError(f"variable {variable!r} has no epoch or step dimension to draw against.")
    da = da.mean([d for d in ("N", "member") if d in da.dims])
    seeds = "seed" in dims and ds.sizes["seed"] > 1
    points = [d for d in dims if d != "seed" and ds.sizes[d] > 1] or [d for d in dims if d != "seed"][:1]
    if ax is None:
        _, ax = _plt().subplots(figsize=(5.5, 3.6))
    rest = [d for d in dims if d not in points and d != "seed"]
    if rest:                                          # grid keys of one value: nothing to tell apart
        da = da.isel({d: 0 for d in rest})
    stacked = da.stack(point=points) if points else da.expand_dims(point=[0])
    for i in range(stacked.sizes["point"]):
        line = stacked.isel(point=i)
        label = ", ".join(f"{d}={line[d].item()}" for d in points)
        colour = PALETTE[i % len(PALETTE)]
        if seeds:
            ax.fill_between(line[x].values, line.min("seed").values, line.max("seed").values, color=colour,
                            alpha=0.2, linewidth=0)
            line = line.mean("seed")
        elif "seed" in line.dims:
            line = line.isel(seed=0)
        ax.plot(line[x].values, np.asarray(line.values, float), color=colour, label=label)
    ax.set_xlabel(x)
    ax.set_ylabel(variable + (f" ({da.attrs['units']})" if da.attrs.get("units") else ""))
    if points:
        ax.legend(fontsize="small", frameon=False)
    if seeds:
        ax.set_title(f"mean over {ds.sizes['seed']} seeds (shaded: their range)", fontsize="small")
    return ax


__all__ = ["Sweep", "SweepRun", "SweepReport", "run_sweep", "sweep_results", "plot_sweep", "train_run", "claim", "run_status",
           "run_name", "run_dirs", "prepare", "load", "status"]
