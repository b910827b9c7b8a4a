"""Analyse a curriculum run: every solved-N checkpoint -> recording -> timescales, dimensionality,
weight balance -> one Dataset over N (the data behind Figs. 4b, 5b-d and 6 of the timescale paper).

:func:`analyze_recording` is pure dynatools (a recording in, a Dataset out). :func:`analyze_run`
loads the checkpoints of a ``trainers`` run directory and records each network, so it imports
``trainers`` when called (``import dynatools`` never does). Each checkpoint's result is cached as
``RUN_DIR/analysis/N{N:03d}.nc``; a cache entry is reused only if the checkpoint file and the
analysis parameters are unchanged. With dask installed, checkpoints are processed in parallel on a
pool of local worker processes (or on a running dask.distributed client).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
import xarray as xr

from dynatools._cache import cache_key, file_stamp, is_valid
from dynatools._validation import check_choice, check_positive_int

ANALYSIS_DIR = "analysis"
SUMMARY = "summary.nc"
#: Part of every cache key; raise it when the same checkpoint and parameters give other results
#: (2: weight balance reads W_rec by its dim names; status kept; checked loads).
ANALYSIS_METHOD = 2


def _key(stamp: Any, params: dict[str, Any]) -> str:
    return cache_key(checkpoint=stamp, method=ANALYSIS_METHOD, **params)


def _checkpoint_accuracy(acc: Any, N: int, Ns: list[int]) -> float:
    """The training accuracy (per cent) on N saved with a checkpoint: trainers saves
    ``{"N": accuracy}``; a list is read as one value per entry of ``Ns``."""
    if isinstance(acc, dict):
        value = acc.get(str(N), acc.get(N))
        return float(value) if value is not None else float("nan")
    if isinstance(acc, (list, tuple)) and N in Ns and len(acc) > Ns.index(N):
        return float(acc[Ns.index(N)])
    return float("nan")


def analyze_recording(rec: xr.Dataset, *, threshold: float = 0.9, fit_lag: int = 30,
                      max_lag: int | None = None) -> xr.Dataset:
    """Timescales, dimensionality and weight balance of one recording.

    Parameters
    ----------
    rec : xarray.Dataset
        A recording (schema v1). ``tau`` (unit coordinate) and ``W_rec`` are used when present.
    threshold : float, default=0.9
        PCA dimensionality threshold (Fig. 6b).
    fit_lag, max_lag : int
        Passed to :func:`dynatools.timescales`.

    Returns
    -------
    xarray.Dataset
        The :func:`dynatools.timescales` result (``tau_net``, fits and ``autocorrelation`` over
        ``unit`` and ``lag``), plus ``tau`` (trained timescale per unit, NaN if unknown), the
        :func:`dynatools.weight_balance` variables per unit (if ``W_rec`` is present), and the
        scalars ``dimensionality`` (mean over trials), ``dimensionality_std``,
        ``participation_ratio``.

    Examples
    --------
    >>> import dynatools as dt
    >>> from dynatools.runs import analyze_recording
    >>> res = analyze_recording(dt.open_recording(dt.demo_path()))
    >>> int(res.dimensionality) > 0, "tau_net" in res
    (True, True)
    """
    from dynatools.connectivity import weight_balance
    from dynatools.dimensionality import pca_dimensionality
    from dynatools.timescales import timescales

    res = timescales(rec, fit_lag=fit_lag, max_lag=max_lag)
    tau = rec["tau"].values if "tau" in rec.coords else np.full(rec.sizes["unit"], np.nan)
    res = res.drop_vars("tau", errors="ignore")          # the recording's coordinate -> a variable
    res["tau"] = ("unit", np.asarray(tau, dtype=float))
    dim = pca_dimensionality(rec, threshold)
    res["dimensionality"] = float(dim.dimensionality.mean())
    res["dimensionality_std"] = float(dim.dimensionality.std())
    res["participation_ratio"] = float(dim.participation_ratio.mean())
    if "W_rec" in rec.data_vars:
        wb = weight_balance(rec)
        for name in ("positive_sum", "negative_sum", "mean_incoming", "balance"):
            res[name] = ("unit", wb[name].values)
    res.attrs["dimensionality_threshold"] = float(threshold)
    return res


def _checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    ck = run_dir / "checkpoints"
    if not ck.is_dir():
        raise FileNotFoundError(f"{run_dir} is not a trainers run directory (no checkpoints/ folder); "
                                f"train one with 'trainers train --out {run_dir}'.")
    found = []
    for path in sorted(ck.glob("N*.pt")):
        try:
            found.append((int(path.stem[1:]), path))
        except ValueError:
            continue
    if not found:
        raise FileNotFoundError(f"{run_dir}/checkpoints holds no solved-N checkpoints (N*.pt): the run "
                                f"has not solved any N yet; train longer ('trainers resume {run_dir}').")
    return found


def _analyze_checkpoint(path: str, N: int, params: dict[str, Any], cache: str, threads: int | None) -> str:
    """Worker: record the network of one checkpoint, analyse it, write the cache file."""
    import torch

    from dynatools.recording import write_netcdf_atomic
    from trainers.checkpoint import load_model, read_checkpoint
    from trainers.config import TrainConfig
    from trainers.record import record

    if threads:
        torch.set_num_threads(threads)
    stamp = file_stamp(path)                     # before reading: a rewrite meanwhile invalidates it
    meta = read_checkpoint(path)["meta"]
    model = load_model(path)
    cfg = TrainConfig.from_dict(meta["config"])
    Ns = list(meta["Ns"])
    rec = record(model, cfg.make_task(), Ns=Ns, steps=params["steps"], trials=params["trials"],
                 burn_in=params["burn_in"], seed=params["seed"], outputs=False)
    res = analyze_recording(rec, threshold=params["threshold"], fit_lag=params["fit_lag"])
    res["accuracy"] = _checkpoint_accuracy(meta.get("accuracy"), int(N), Ns)
    res["epoch"] = int(meta.get("epoch") or 0)
    res.attrs.update(checkpoint=str(path), cache_key=_key(stamp, params), N=int(N),
                     params=json.dumps(params, sort_keys=True), curriculum=cfg.curriculum, task=cfg.task,
                     model=cfg.model)
    write_netcdf_atomic(res, cache)
    return cache


def analyze_run(run_dir: str | os.PathLike, *, steps: int = 20_000, trials: int = 4, burn_in: int = 500,
                threshold: float = 0.9, fit_lag: int = 30, seed: int = 0,
                parallel: Literal["auto", "dask", "serial"] = "auto", workers: int | None = None,
                refresh: bool = False, progress: bool = True) -> xr.Dataset:
    """Analyse every solved-N checkpoint of a trainers run; one Dataset over ``N``.

    For each ``RUN_DIR/checkpoints/N*.pt`` (the network saved when N was solved), the network is
    recorded on random bits (``trainers.record``) and analysed with :func:`analyze_recording`:
    trained tau, tau_net (timescale paper Sec. 2, Figs. 4b, 5), PCA dimensionality (Fig. 6b) and
    weight balance (Fig. 6a).

    Parameters
    ----------
    run_dir : path
        A ``trainers train`` run directory.
    steps, trials, burn_in : int, default 20000, 4, 500
        Recording length per trial, number of trials, discarded initial steps.
    threshold, fit_lag : see :func:`analyze_recording`.
    seed : int, default=0
        Seed of the recordings' input bits.
    parallel : {"auto", "dask", "serial"}, default="auto"
        ``"auto"``: dask when installed, there is more than one checkpoint to process and either
        ``workers`` is given, a ``distributed`` client is running or the machine has more than 2
        cores (on 2 cores the serial path, which already uses both, is nearly as fast:
        docs/benchmarks.md); else serial. Dask runs the checkpoints on a running ``distributed`` client if your session has
        one (e.g. on a cluster; its workers must see ``run_dir``), else on a pool of local worker
        processes (dask's multiprocessing scheduler).
    workers : int, optional
        Local worker processes (default: the number of CPU cores, at most the checkpoints to
        process); each computes with ``cores // workers`` threads, or fewer if ``OMP_NUM_THREADS``
        is set lower. Given explicitly, a local pool is used even if a client is running. The
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
        per cent, when the checkpoint was saved), and over ``N`` the statistics ``tau_mean``,
        ``tau_std``, ``tau_median``, ``tau_net_mean``, ``tau_net_std``, ``tau_net_median`` (over
        units; for tau_net only the reliable fits, see :func:`reliable_tau_net`) and
        ``tau_net_excluded`` (units left out of them); per-N autocorrelations stay in the cache files
        (:func:`load_checkpoint_analysis`). Also written to ``RUN_DIR/analysis/summary.nc``.

    Examples
    --------
    >>> from dynatools.runs import analyze_run
    >>> summary = analyze_run("runs/mh")          # doctest: +SKIP
    >>> summary.tau_net.mean("unit").plot()       # doctest: +SKIP
    """
    from tqdm.auto import tqdm

    run_dir = Path(run_dir)
    check_choice("parallel", parallel, ("auto", "dask", "serial"))
    params = {"steps": check_positive_int("steps", steps), "trials": check_positive_int("trials", trials),
              "burn_in": check_positive_int("burn_in", burn_in, minimum=0), "threshold": float(threshold),
              "fit_lag": check_positive_int("fit_lag", fit_lag), "seed": int(seed)}
    if workers is not None:
        check_positive_int("workers", workers)
    checkpoints = _checkpoints(run_dir)
    out_dir = run_dir / ANALYSIS_DIR
    out_dir.mkdir(exist_ok=True)
    todo = []
    for N, path in checkpoints:
        cache = out_dir / f"N{N:03d}.nc"
        if refresh or not is_valid(cache, _key(file_stamp(path), params)):
            todo.append((str(path), N, str(cache)))
    use_dask = parallel == "dask" or (parallel == "auto" and len(todo) > 1 and _has_dask()
                                      and (workers is not None or _client_running() or _cores() > 2))
    if todo and use_dask:
        _run_dask(todo, params, workers, progress)
    else:
        for path, N, cache in tqdm(todo, desc="analyse checkpoints", disable=not progress):
            _analyze_checkpoint(path, N, params, cache, None)
    per_N = [_load_checked(run_dir, N, path, params) for N, path in checkpoints]
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
    summary.attrs = {"run_dir": str(run_dir), "curriculum": first.get("curriculum", ""),
                     "task": first.get("task", ""), "model": first.get("model", ""),
                     "params": json.dumps(params, sort_keys=True),
                     "tau_net_statistics": "over the units with tau_net_reliable "
                                           "(dynatools.runs.reliable_tau_net)"}
    from dynatools.recording import write_netcdf_atomic

    write_netcdf_atomic(summary, out_dir / SUMMARY)
    return summary


def reliable_tau_net(result: xr.Dataset) -> xr.DataArray:
    """``tau_net`` where the fit says something, NaN elsewhere, for statistics over units.

    Left out: fits that failed (``failed``, ``single_failed``, ``constant``, ``tie``) and fits that
    ran into the *upper* bound ``tau_max`` (the timescale is longer than the fit window can say;
    a failed fit there, at about 100 steps, would dominate a mean). Kept: every status of
    ``RELIABLE`` (``from dynatools.timescales import RELIABLE``), and ``tau_at_bound`` at the *lower* bound, a timescale
    much shorter than one lag step, whose near-zero value is the right order of magnitude
    (in small networks that is often most units). A summary of :func:`analyze_run` carries the
    decision as ``tau_net_reliable``; without ``status``, ``tau_net`` is returned unchanged.

    Examples
    --------
    >>> import dynatools as dt
    >>> from dynatools.runs import reliable_tau_net
    >>> res = dt.timescales(dt.open_recording(dt.demo_path()))
    >>> bool(reliable_tau_net(res).notnull().sum() <= res.tau_net.notnull().sum())
    True
    """
    from dynatools.timescales import RELIABLE

    tau_net = result["tau_net"]
    if "tau_net_reliable" in result:
        return tau_net.where(result["tau_net_reliable"].astype(bool))
    if "status" not in result:
        return tau_net
    keep = result["status"].isin(list(RELIABLE))
    tau_max = result.attrs.get("tau_max")
    if tau_max is not None:
        keep = keep | ((result["status"] == "tau_at_bound") & (tau_net < 0.5 * float(tau_max)))
    return tau_net.where(keep)


def _load_checked(run_dir: Path, N: int, path: Path, params: dict[str, Any]) -> xr.Dataset:
    """The cached analysis of one checkpoint, checked to be for these parameters: another process
    may have rewritten the file with other parameters meanwhile; then it is computed again here."""
    cache = run_dir / ANALYSIS_DIR / f"N{N:03d}.nc"
    for _ in range(2):
        key = _key(file_stamp(path), params)
        ds = load_checkpoint_analysis(run_dir, N) if cache.is_file() else None
        if ds is not None and ds.attrs.get("cache_key") == key:
            return ds
        _analyze_checkpoint(str(path), N, params, str(cache), None)
    raise RuntimeError(f"{cache} keeps being rewritten with other parameters or from another checkpoint; "
                       f"is a second analyze_run or report running on {run_dir} with other settings?")


def load_checkpoint_analysis(run_dir: str | os.PathLike, N: int) -> xr.Dataset:
    """The cached :func:`analyze_recording` result of the network saved when N was solved
    (autocorrelations and fits included), loaded into memory."""
    path = Path(run_dir) / ANALYSIS_DIR / f"N{int(N):03d}.nc"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; run analyze_run({str(run_dir)!r}) first.")
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


def _run_dask(todo: list[tuple[str, int, str]], params: dict[str, Any], workers: int | None,
              progress: bool) -> None:
    """Analyse the checkpoints in parallel: on the running dask.distributed client if there is one
    (and ``workers`` is not given), else with dask's multiprocessing scheduler on a pool of
    ``workers`` local processes.

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
    user = os.environ.get("OMP_NUM_THREADS", "")        # a limit the user set (e.g. on a shared node)
    n, per = _local_pool(len(todo), workers, _cores(), int(user) if user.isdigit() and int(user) > 0 else None)
    tasks = [dask.delayed(_analyze_checkpoint)(path, N, params, cache, None if existing else per)
             for path, N, cache in todo]
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
                                    "DYNATOOLS_NUM_THREADS")}
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


__all__ = ["analyze_recording", "analyze_run", "load_checkpoint_analysis", "reliable_tau_net"]
