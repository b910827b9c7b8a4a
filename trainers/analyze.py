"""Analyse a curriculum run: every solved-N checkpoint -> recording -> timescales, dimensionality,
weight balance -> one Dataset over N (the data behind Figs. 4b, 5b-d and 6 of the timescale paper).

Each network is recorded with :func:`trainers.record` on input bits whose probability p is drawn
per trial from U(0, 1) (``p="uniform"``, the authors' timescale protocol; see
:mod:`trainers.record`), then analysed with :func:`dynatools.analyze_recording`. Every path and
checkpoint read goes through :class:`trainers.RunDir`. Each checkpoint's result is cached in the
run's analysis folder (``RunDir.analysis_path("", N)``) and reused only while the
checkpoint file, the analysis parameters and :data:`ANALYSIS_METHOD` are unchanged. With dask
installed, the checkpoints are processed in parallel on a pool of local worker processes (or on a
running dask.distributed client).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

import xarray as xr

from dynatools.summary import analyze_recording, reliable_tau_net
from dynatools.threads import omp_limit, requested_threads, step_work, torch_threads
from dynatools.utils import cache_key, check_choice, check_positive_int, file_stamp, is_cached, write_netcdf_atomic
from trainers.rundir import Checkpoint, RunDir

SUMMARY = "summary"   #: RunDir.analysis_path(SUMMARY): the result over N
#: Part of every cache key; raise it when the same checkpoint and parameters give other results
#: (2: weight balance reads W_rec by its dim names; status kept; checked loads. 3: recorded with
#: p ~ U(0, 1) per trial, the authors' protocol, instead of p = 0.5. 4: statuses 'short' and
#: 'nonfinite', a per-unit constant test relative to the unit's scale).
ANALYSIS_METHOD = 4
#: How the recordings are driven (``record(p=INPUT_P_OPTION)``), and how the results say so.
INPUT_P_OPTION = "uniform"
INPUT_P = "uniform (per-trial U(0,1), the authors' protocol)"


def _key(stamp: Any, params: dict[str, Any]) -> str:
    return cache_key(checkpoint=stamp, method=ANALYSIS_METHOD, **params)


class _Run:
    """A run directory whose checkpoints are each read at most once (through one :class:`RunDir`),
    with the file stamp taken just before that read, so that a cache key always describes the
    weights that were analysed, even if the file is rewritten meanwhile."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.dir = RunDir(os.fspath(path))          # a fresh RunDir: nothing read before the stamps
        self._stamps: dict[int, str] = {}

    @property
    def path(self) -> Path:
        return self.dir.path

    def stamp(self, N: int) -> str:
        """The stamp of the weights read for N (before they are read: of the file now)."""
        return self._stamps.get(N) or file_stamp(self.dir.checkpoint_path(N))

    def checkpoint(self, N: int) -> Checkpoint:
        if N not in self._stamps:
            stamp = file_stamp(self.dir.checkpoint_path(N))
            ck = self.dir.checkpoint(N)
            self._stamps[N] = stamp
            return ck
        return self.dir.checkpoint(N)

    def solved(self) -> list[int]:
        """The solved Ns; an error that says what to do when there are none."""
        Ns = self.dir.solved()                      # raises for a directory that is not a run
        if not Ns:
            try:
                uses_N = self.dir.config.classes()[0].uses_N
                task = self.dir.config.task
            except (OSError, ValueError, KeyError):
                uses_N, task = True, ""
            if not uses_N:
                raise ValueError(f"{self.path} is a {task} run: it has no per-N networks to analyse (analyze and "
                                 f"report are for parity/DMS curriculum runs); its test metric per epoch is in "
                                 f"trainers.RunDir({str(self.path)!r}).metrics().")
            raise FileNotFoundError(f"{self.path} holds no solved-N checkpoints: the run has not solved any N "
                                    f"yet; train longer ('trainers resume {self.path}').")
        return Ns


def _checkpoint_accuracy(ck: Checkpoint, N: int) -> float:
    """The training accuracy (per cent) on N when the checkpoint was saved: trainers saves
    ``{"N": accuracy}``; a list is read as one value per entry of the checkpoint's Ns."""
    raw = ck.meta.get("accuracy")
    Ns = ck.Ns
    if isinstance(raw, (list, tuple)):
        return float(raw[Ns.index(N)]) if N in Ns and len(raw) > Ns.index(N) else float("nan")
    value = ck.accuracy.get(str(N)) if isinstance(raw, dict) else None
    return float(value) if value is not None else float("nan")


def _analyze_checkpoint(source: _Run | str, N: int, params: dict[str, Any], cache: str,
                        threads: int | None) -> str:
    """Worker: record the network of one checkpoint, analyse it, write the cache file.
    ``source`` is the run (serial) or its path (a worker process reads the checkpoint itself)."""
    import torch

    from trainers.record import record

    if threads:
        torch.set_num_threads(threads)
    run = source if isinstance(source, _Run) else _Run(source)
    ck = run.checkpoint(N)
    cfg = ck.config
    model = ck.model()
    # the recording is a loop of small steps (one thread, dynatools.threads); a pool worker keeps
    # the threads it was given
    with torch_threads(threads, work=step_work(model, params["trials"])):
        rec = record(model, cfg.make_task(), Ns=ck.Ns, steps=params["steps"], trials=params["trials"],
                     burn_in=params["burn_in"], seed=params["seed"], outputs=False, p=INPUT_P_OPTION)
    res = analyze_recording(rec, threshold=params["threshold"], fit_lag=params["fit_lag"])
    res["accuracy"] = _checkpoint_accuracy(ck, int(N))
    res["epoch"] = ck.epoch
    res.attrs.update(checkpoint=str(ck.path), cache_key=_key(run.stamp(N), params), N=int(N),
                     params=json.dumps(params, sort_keys=True), curriculum=cfg.curriculum, task=cfg.task,
                     model=cfg.model, input_p=INPUT_P)
    write_netcdf_atomic(res, cache)
    return cache


def _check_params(steps: int, trials: int, burn_in: int, threshold: float, fit_lag: int,
                  seed: int) -> dict[str, Any]:
    return {"steps": check_positive_int("steps", steps), "trials": check_positive_int("trials", trials),
            "burn_in": check_positive_int("burn_in", burn_in, minimum=0), "threshold": float(threshold),
            "fit_lag": check_positive_int("fit_lag", fit_lag), "seed": int(seed)}


def analyze_run(run_dir: str | os.PathLike, *, steps: int = 20_000, trials: int = 4, burn_in: int = 500,
                threshold: float = 0.9, fit_lag: int = 30, seed: int = 0,
                parallel: Literal["auto", "dask", "serial"] = "auto", workers: int | None = None,
                refresh: bool = False, progress: bool = True) -> xr.Dataset:
    """Analyse every solved-N checkpoint of a trainers run; one Dataset over ``N``.

    For each solved N (:meth:`RunDir.solved`; the network saved when N was solved), the network
    is recorded with :func:`trainers.record` on input bits with p ~ U(0, 1) drawn per trial (the
    authors' timescale protocol, ``p="uniform"``) and analysed with
    :func:`dynatools.analyze_recording`: trained tau, tau_net (timescale paper Sec. 2, Figs. 4b,
    5), PCA dimensionality (Fig. 6b) and weight balance (Fig. 6a).

    Parameters
    ----------
    run_dir : path
        A ``trainers train`` run directory of a parity/DMS curriculum run.
    steps, trials, burn_in : int, default 20000, 4, 500
        Recording length per trial, number of trials, discarded initial steps.
    threshold, fit_lag : see :func:`dynatools.analyze_recording`.
    seed : int, default=0
        Seed of the recordings' p per trial, input bits and initial states.
    parallel : {"auto", "dask", "serial"}, default="auto"
        ``"auto"``: dask when installed, there is more than one checkpoint to process and either
        ``workers`` is given, a ``distributed`` client is running or at least 3 cores are free
        (the cores minus the one-minute load average: on 2 cores, or beside other work, the
        pool's start-up and the shared cores cost more than it gains; docs/benchmarks.md);
        else serial. Dask runs the checkpoints on a running ``distributed``
        client if your session has one (e.g. on a cluster; its workers must see ``run_dir``), else
        on a pool of local worker processes (dask's multiprocessing scheduler).
    workers : int, optional
        Local worker processes (default: the number of CPU cores, at most the checkpoints to
        process); each computes with ``cores // workers`` threads, or fewer if ``OMP_NUM_THREADS``
        is set lower, or ``DYNATOOLS_THREADS`` (``--threads``) threads if set. Given explicitly, a local pool is used even if a client is running. The
        workers are started with ``spawn`` and import the calling script again: in a script, call
        ``analyze_run`` under ``if __name__ == "__main__":``.
    refresh : bool, default=False
        Recompute even where the cache is valid.
    progress : bool, default=True

    Returns
    -------
    xarray.Dataset
        Over ``N`` (and ``unit``): ``tau``, ``tau_net``, ``n_timescales``, ``status`` (of the
        fit), ``tau_net_reliable``, the weight-balance variables, ``dimensionality``,
        ``dimensionality_std``, ``participation_ratio``, ``accuracy`` (training accuracy on N in
        per cent, when the checkpoint was saved), ``epoch``, and over ``N`` the statistics
        ``tau_mean``, ``tau_std``, ``tau_median``, ``tau_net_mean``, ``tau_net_std``,
        ``tau_net_median`` (over units; for tau_net only the reliable fits, see
        :func:`dynatools.reliable_tau_net`) and ``tau_net_excluded`` (units left out of them);
        per-N autocorrelations stay in the cache files (:func:`load_checkpoint_analysis`). Attrs:
        ``run_dir``, ``curriculum``, ``task``, ``model``, ``params`` (JSON), ``input_p``. Also
        written to ``summary.nc`` in the run's analysis folder.

    Raises
    ------
    FileNotFoundError
        Not a run directory, or no N solved yet.
    ValueError
        A run of a task without N (e.g. the adding problem), or an invalid option.

    Examples
    --------
    >>> from trainers.analyze import analyze_run
    >>> summary = analyze_run("runs/mh")          # doctest: +SKIP
    >>> summary.tau_net.mean("unit").plot()       # doctest: +SKIP
    """
    check_choice("parallel", parallel, ("auto", "dask", "serial"))
    params = _check_params(steps, trials, burn_in, threshold, fit_lag, seed)
    if workers is not None:
        check_positive_int("workers", workers)
    return _analyze(_Run(run_dir), params, parallel, workers, refresh, progress)


def _analyze(run: _Run, params: dict[str, Any], parallel: str, workers: int | None, refresh: bool,
             progress: bool) -> xr.Dataset:
    from tqdm.auto import tqdm

    Ns = run.solved()
    todo = []
    for N in Ns:
        cache = run.dir.analysis_path("", N)
        if refresh or not is_cached(cache, _key(run.stamp(N), params)):
            todo.append((N, str(cache)))
    use_dask = parallel == "dask" or (parallel == "auto" and len(todo) > 1 and _has_dask()
                                      and (workers is not None or _client_running() or _free_cores() >= 3))
    if todo and use_dask:
        _run_dask(str(run.path), todo, params, workers, progress)
    else:
        for N, cache in tqdm(todo, desc="analyse checkpoints", disable=not progress):
            _analyze_checkpoint(run, N, params, cache, None)
    per_N = [_load_checked(run, N, params) for N in Ns]
    for ds in per_N:                                     # decided where the fit's tau_max is known
        ds["tau_net_reliable"] = reliable_tau_net(ds).notnull()
    keep = ["tau", "tau_net", "n_timescales", "status", "tau_net_reliable", "positive_sum", "negative_sum",
            "mean_incoming", "balance", "dimensionality", "dimensionality_std", "participation_ratio",
            "accuracy", "epoch"]
    parts = [ds[[v for v in keep if v in ds]].expand_dims(N=[int(ds.attrs["N"])]) for ds in per_N]
    summary = xr.concat(parts, dim="N", coords="minimal", compat="override", join="outer")
    # drop the encodings read from the per-N files: the first file's fixed string width would
    # truncate longer ``status`` values of the others on writing
    for variable in summary.variables.values():
        variable.encoding = {}
    summary["tau_net_reliable"].attrs["description"] = "tau_net counted in the tau_net statistics"
    for var, values in (("tau", summary["tau"]), ("tau_net", reliable_tau_net(summary))):
        summary[f"{var}_mean"] = values.mean("unit", skipna=True)
        summary[f"{var}_std"] = values.std("unit", skipna=True)
        summary[f"{var}_median"] = values.median("unit", skipna=True)
    summary["tau_net_excluded"] = (summary["tau_net"].notnull().sum("unit")
                                   - summary["tau_net_reliable"].sum("unit"))
    first = per_N[0].attrs
    summary.attrs = {"run_dir": str(run.path), "curriculum": first.get("curriculum", ""),
                     "task": first.get("task", ""), "model": first.get("model", ""),
                     "params": json.dumps(params, sort_keys=True), "input_p": INPUT_P,
                     "tau_net_statistics": "over the units with tau_net_reliable "
                                           "(dynatools.reliable_tau_net)"}
    write_netcdf_atomic(summary, run.dir.analysis_path(SUMMARY))
    return summary


def _load_checked(run: _Run, N: int, params: dict[str, Any]) -> xr.Dataset:
    """The cached analysis of one checkpoint, checked to be for these parameters and these
    weights: another process may have rewritten the file with other parameters meanwhile; then it
    is computed again here."""
    cache = run.dir.analysis_path("", N)
    for _ in range(2):
        key = _key(run.stamp(N), params)
        ds = xr.load_dataset(cache) if cache.is_file() else None
        if ds is not None and ds.attrs.get("cache_key") == key:
            return ds
        _analyze_checkpoint(run, N, params, str(cache), None)
    raise RuntimeError(f"{cache} keeps being rewritten with other parameters or from another checkpoint; "
                       f"is a second analyze or report running on {run.path} with other settings?")


def load_checkpoint_analysis(run_dir: str | os.PathLike, N: int) -> xr.Dataset:
    """The cached :func:`dynatools.analyze_recording` result of the network saved when N was
    solved (autocorrelations and fits included), loaded into memory.

    Examples
    --------
    >>> from trainers.analyze import load_checkpoint_analysis
    >>> res = load_checkpoint_analysis("runs/mh", 8)     # doctest: +SKIP
    >>> res.autocorrelation.dims                         # doctest: +SKIP
    ('unit', 'lag')
    """
    rd = RunDir(os.fspath(run_dir))
    rd.solved()                                        # a clear error for a directory that is not a run
    path = rd.analysis_path("", N)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; run analyze_run({str(run_dir)!r}) "
                                f"('trainers analyze {run_dir}') first.")
    return xr.load_dataset(path)


def _client_running() -> bool:
    try:
        from distributed import get_client

        get_client()
    except (ImportError, ValueError):
        return False
    return True


def _has_dask() -> bool:
    try:
        import dask  # noqa: F401
    except ImportError:
        return False
    return True


def _cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:                               # macOS, Windows
        return os.cpu_count() or 1


def _free_cores() -> float:
    """Cores not busy with other work: the cores this process may use minus the one-minute load
    average (the run queue of the whole machine, this idle process not included)."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):                    # not available: assume an idle machine
        load = 0.0
    return _cores() - load


def _local_pool(n_tasks: int, workers: int | None, cores: int, limit: int | None = None) -> tuple[int, int]:
    """(worker processes, threads per worker) of the local pool: ``workers`` processes (default:
    one per core, at most one per task) sharing the cores, ``cores // workers`` threads each, at
    most ``limit``."""
    n = check_positive_int("workers", workers if workers is not None else max(1, min(n_tasks, cores)))
    per = max(1, cores // n)
    return n, min(per, limit) if limit else per


def _init_worker(threads: int) -> None:
    """Each worker process computes with ``threads`` torch threads (the workers share the cores)."""
    import torch

    torch.set_num_threads(threads)


def _run_dask(run_dir: str, todo: list[tuple[int, str]], params: dict[str, Any], workers: int | None,
              progress: bool) -> None:
    """Analyse the checkpoints in parallel: on the running dask.distributed client if there is one
    (and ``workers`` is not given), else with dask's multiprocessing scheduler on a pool of
    ``workers`` local processes. Each worker reads its checkpoint itself.

    The local pool is used rather than a ``distributed.LocalCluster``: measured on the 2-core
    development machine, a distributed worker ran the same checkpoint analysis 1.4-2x slower than
    a plain process (its task runs beside the worker's event loop and profiler), which cancelled
    the gain of the second core. The workers are spawned, not forked: a forked child that runs
    OpenMP with more than one thread after the parent has used OpenMP hangs (GNU libgomp).
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    import dask

    try:
        from distributed import get_client

        existing = get_client()
    except (ImportError, ValueError):
        existing = None
    n, per = _local_pool(len(todo), workers, _cores(), omp_limit())   # OMP_NUM_THREADS: the user's limit
    per = requested_threads() or per                   # DYNATOOLS_THREADS / --threads: per worker, as given
    tasks = [dask.delayed(_analyze_checkpoint)(run_dir, N, params, cache, None if existing else per)
             for N, cache in todo]
    if existing is not None and workers is None:       # e.g. a cluster the user started
        from distributed import progress as dask_progress

        futures = existing.compute(tasks)
        if progress:
            dask_progress(futures)
        existing.gather(futures)
        return
    # cores // workers threads per worker for BLAS, OpenMP (torch) and the FFT thread pool: the
    # workers share the cores. Spawned children read these at start-up; the parent is not affected.
    single = {k: str(per) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                    "DYNATOOLS_THREADS")}
    saved = {k: os.environ.get(k) for k in single}
    os.environ.update(single)
    try:
        with ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_init_worker, initargs=(per,)) as pool:
            if progress:
                from dask.diagnostics import ProgressBar

                with ProgressBar():
                    dask.compute(*tasks, scheduler="processes", pool=pool)
            else:
                dask.compute(*tasks, scheduler="processes", pool=pool)
    except BrokenProcessPool as exc:
        raise RuntimeError(
            "the worker processes of analyze_run stopped before finishing. In a script, call it under "
            "'if __name__ == \"__main__\":' (the workers are spawned and import the script again); if "
            "memory ran out, pass fewer workers= ; or pass parallel='serial'.") from exc
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


__all__ = ["analyze_run", "load_checkpoint_analysis", "ANALYSIS_METHOD", "INPUT_P"]
