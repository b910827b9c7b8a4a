r"""Trained vs effective timescales per module of a growing network (004 Fig. 4).

Modular-growth paper (``shared/seeds/004_*``, Hamidi, Khajehabdollahi et al.), sections "Timescale
Estimation" and "Trained vs. Effective Timescales":

- the *trained* timescale of unit i is its parameter :math:`\tau_i` (Eq. 1; the dynamics use
  ``clamp(tau, min=1)``, which is what is reported here);
- its *effective* timescale :math:`\tau_{net,i}` comes from the lagged autocorrelation of its
  activity, recorded over :math:`10^5` steps, fitted by one or two exponentials with the better
  model chosen by AIC (:func:`dynatools.timescales`);
- "In the modular case, the average trained and effective timescales of neurons are reported
  separately per module solving N = N_solved. In the non-modular case, the average is taken over
  all neurons in the entire network at the time when it has just solved the N = N_solved task."

:func:`module_timescales` does that for every solved N of a run: the network saved when N was
solved (:meth:`trainers.RunDir.load`) is recorded and analysed by the per-checkpoint pipeline of
:func:`trainers.analyze.analyze_run` (the same recording protocol, p ~ U(0, 1) per trial, and the
same cache files), and the per-unit results are averaged over the units of the module whose head
answers N (the newest module when N was solved), or over all units of a non-modular network.
:func:`plot_module_timescales` draws Fig. 4a-b.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from dynatools.summary import reliable_tau_net
from trainers.analyze import INPUT_P, _analyze_checkpoint, _check_params, _load_checked, _Run

#: PCA threshold of the shared per-checkpoint analysis (``analyze_run``'s default): part of its
#: cache key, so the same recordings serve both. It does not change any timescale.
_THRESHOLD = 0.9
#: 004 Fig. 4 (Okabe-Ito colours, as dynatools.plot and trainers.modular_analysis).
_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")


def module_timescales(run_dir: str | os.PathLike, *, steps: int = 100_000, trials: int = 1, burn_in: int = 500,
                      fit_lag: int = 30, seed: int = 0, Ns: Sequence[int] | None = None, refresh: bool = False,
                      progress: bool = True) -> xr.Dataset:
    r"""Mean trained and effective timescale of the units that solve each N (004 Fig. 4).

    For every solved N (or those of ``Ns``), the network saved when N was solved is recorded with
    :func:`trainers.record` (``steps`` steps per trial after ``burn_in``, input bits with p ~ U(0,
    1) drawn per trial, as :func:`trainers.analyze.analyze_run`) and analysed with
    :func:`dynatools.analyze_recording` (:func:`dynatools.timescales`: autocorrelation of each
    unit, one or two exponentials, AIC selection). Averaged are:

    - modular network (a model with a ``module`` in its ``unit_coords()``, e.g.
      :class:`~trainers.models.ModularRNN`): the units of the module whose head answers N; under
      the growth curriculum that is the newest module when N was solved (head k reads module
      ``min(k, n_modules - 1)``);
    - any other network (e.g. a :class:`~trainers.models.LeakyRNN` multi-head run): all units.

    The effective mean counts the reliable fits only (:func:`dynatools.reliable_tau_net`: failed
    fits, fits at the upper bound and fits on too short trials are left out, as in
    ``analyze_run``'s statistics).

    Parameters
    ----------
    run_dir : path
        A ``trainers train`` run directory of a parity/DMS curriculum run (004: ``--model modular
        --curriculum growth``, or its non-modular baseline with ``--curriculum multi-head``).
    steps : int, default=100_000
        Recorded steps per trial (004: :math:`10^5`, to avoid estimation bias).
    trials : int, default=1
        Independent input sequences per network (each with its own p).
    burn_in : int, default=500
        Steps simulated and discarded first.
    fit_lag : int, default=30
        Lags fitted (:func:`dynatools.timescales`).
    seed : int, default=0
        Seed of the recordings (p per trial, bits, initial state).
    Ns : sequence of int, optional
        The solved Ns to analyse (default: all of :meth:`RunDir.solved`).
    refresh : bool, default=False
        Record and analyse again even where the cache is valid.
    progress : bool, default=True
        A progress bar over the checkpoints.

    Returns
    -------
    xarray.Dataset
        Over ``N``: ``tau_mean``, ``tau_std`` (trained timescale ``clamp(tau, 1)`` in steps, mean
        and std over the units), ``tau_net_mean``, ``tau_net_std``, ``tau_net_median`` (effective
        timescale in steps, reliable fits), ``n_units`` (units averaged), ``tau_net_excluded``
        (of those, fits left out), ``accuracy`` (per cent, when N was solved) and ``epoch``.
        Modular runs also have the coordinate ``solving_module`` on ``N`` (0-based, as the
        recordings' ``module``; 004 counts from 1) and, over ``(N, module)``, the same means for
        every module of the network at N: ``tau_mean_by_module`` and ``tau_net_mean_by_module``
        (NaN where the module did not exist yet). Attrs: ``units`` ("module solving N" or "all
        units"), ``modular`` (1/0), ``run_dir``, ``model``, ``curriculum``, ``task``, ``params``
        (JSON: steps, trials, burn_in, fit_lag, seed, threshold), ``input_p``, ``reference``.

    Raises
    ------
    FileNotFoundError
        Not a run directory, or nothing solved yet.
    ValueError
        An N of ``Ns`` that was not solved, or an invalid setting.

    Notes
    -----
    The recordings and per-unit fits are cached in the run's analysis folder under the same key
    as :func:`trainers.analyze.analyze_run` with the same ``steps, trials, burn_in, fit_lag,
    seed`` (and its default ``threshold``): ``analyze_run(run, steps=100_000, trials=1,
    parallel="dask")`` fills the cache in parallel, after which this function only reads it. Runs
    with other settings overwrite those per-N files (each holds one setting at a time).

    Examples
    --------
    >>> from trainers.modular_timescales import module_timescales, plot_module_timescales
    >>> fig4 = module_timescales("runs/modular15")                  # doctest: +SKIP
    >>> fig4.tau_mean.values, fig4.tau_net_mean.values              # doctest: +SKIP
    >>> plot_module_timescales({"modular": fig4,                    # doctest: +SKIP
    ...                         "non-modular": module_timescales("runs/baseline91")})
    """
    from tqdm.auto import tqdm

    params = _check_params(steps, trials, burn_in, _THRESHOLD, fit_lag, seed)
    run = _Run(run_dir)
    solved = run.solved()
    if Ns is None:
        todo = solved
    else:
        todo = sorted({int(n) for n in Ns})
        missing = [n for n in todo if n not in solved]
        if missing or not todo:
            what = f"N {missing} not solved" if missing else "no N given"
            raise ValueError(f"Ns={list(Ns)}: {what}; {run.path} has solved-N checkpoints for {solved}. Give "
                             f"some of those (or leave Ns unset for all).")
    rows = []
    for N in tqdm(todo, desc="module timescales", unit="network", disable=not progress):
        ck = run.checkpoint(N)                         # read first: the cache key is for these weights
        model = ck.model()
        if refresh:                                    # record and analyse again, valid cache or not
            _analyze_checkpoint(run, N, params, str(run.dir.analysis_path("", N)), None)
        res = _load_checked(run, N, params)            # recorded and analysed when not cached
        rows.append(_row(N, ck.Ns, model, res))
    modular = any(r["module"] is not None for r in rows)
    out = _assemble(rows, modular)
    cfg = ck.config
    out.attrs = {
        "units": "module solving N" if modular else "all units", "modular": int(modular),
        "run_dir": str(run.path), "model": str(cfg.model), "curriculum": str(cfg.curriculum),
        "task": str(cfg.task),
        "params": json.dumps(params, sort_keys=True), "input_p": INPUT_P,
        "tau_net_statistics": "over the reliable fits (dynatools.reliable_tau_net)",
        "reference": "004 (Hamidi, Khajehabdollahi et al.), Fig. 4, 'Timescale Estimation', "
                     "'Trained vs. Effective Timescales'",
    }
    return out


def _row(N: int, head_Ns: Sequence[int], model: Any, res: xr.Dataset) -> dict[str, Any]:
    """Per-unit timescales of the network saved at N, averaged over the units that answer N."""
    tau = np.asarray(res["tau"].values, dtype=np.float64)
    tau_net = np.asarray(res["tau_net"].values, dtype=np.float64)
    reliable = np.asarray(reliable_tau_net(res).values, dtype=np.float64)
    coords = model.unit_coords() if hasattr(model, "unit_coords") else {}
    module = coords.get("module")
    if module is not None:
        module = np.asarray(module)
        if module.shape != tau.shape:
            raise ValueError(f"the network saved at N={N} has {module.size} units but its analysis {tau.size}; "
                             f"the cached analysis is stale: pass refresh=True.")
        labels = np.unique(module)
        head = list(head_Ns).index(N) if N in head_Ns else len(head_Ns) - 1
        solving = labels[min(head, len(labels) - 1)]
        group = module == solving
    else:
        labels, solving, group = None, None, np.ones(tau.shape, dtype=bool)
    row = {"N": int(N), "module": solving, **_stats(tau[group], tau_net[group], reliable[group]),
           "accuracy": float(res["accuracy"]) if "accuracy" in res else np.nan,
           "epoch": int(res["epoch"]) if "epoch" in res else -1}
    if labels is not None:
        row["by_module"] = {int(lab): (_mean(tau[module == lab]), _mean(reliable[module == lab])) for lab in labels}
    return row


def _mean(values: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)          # all-NaN: NaN, no warning
        return float(np.nanmean(values)) if values.size else float("nan")


def _stats(tau: np.ndarray, tau_net: np.ndarray, reliable: np.ndarray) -> dict[str, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return {"tau_mean": _mean(tau), "tau_std": float(np.nanstd(tau)), "tau_net_mean": _mean(reliable),
                "tau_net_std": float(np.nanstd(reliable)), "tau_net_median": float(np.nanmedian(reliable)),
                "n_units": int(tau.size),
                "tau_net_excluded": int(np.isfinite(tau_net).sum() - np.isfinite(reliable).sum())}


_DESCRIPTIONS = {
    "tau_mean": "mean trained timescale clamp(tau, 1) of the units solving N (steps)",
    "tau_std": "std over those units of the trained timescale (steps)",
    "tau_net_mean": "mean effective timescale tau_net of the units solving N (reliable fits; steps)",
    "tau_net_std": "std over those units of tau_net (reliable fits; steps)",
    "tau_net_median": "median over those units of tau_net (reliable fits; steps)",
    "n_units": "units averaged",
    "tau_net_excluded": "units averaged whose tau_net fit was left out (dynatools.reliable_tau_net)",
    "accuracy": "training accuracy on N when it was solved (per cent)",
    "epoch": "epoch at which N was solved",
}


def _assemble(rows: list[dict[str, Any]], modular: bool) -> xr.Dataset:
    Ns = [r["N"] for r in rows]
    ds = xr.Dataset({name: ("N", np.asarray([r[name] for r in rows])) for name in _DESCRIPTIONS},
                    coords={"N": Ns})
    for name, text in _DESCRIPTIONS.items():
        ds[name].attrs["description"] = text
    if modular:
        ds = ds.assign_coords(solving_module=("N", np.asarray([r["module"] for r in rows], dtype=np.int64)))
        ds["solving_module"].attrs["description"] = "module whose head answers N (0-based; 004 counts from 1)"
        labels = sorted({lab for r in rows for lab in r.get("by_module", {})})
        trained = np.full((len(rows), len(labels)), np.nan)
        effective = np.full((len(rows), len(labels)), np.nan)
        for i, r in enumerate(rows):
            for lab, (t, e) in r.get("by_module", {}).items():
                trained[i, labels.index(lab)], effective[i, labels.index(lab)] = t, e
        ds = ds.assign_coords(module=labels)
        ds["tau_mean_by_module"] = (("N", "module"), trained)
        ds["tau_net_mean_by_module"] = (("N", "module"), effective)
        ds["tau_mean_by_module"].attrs["description"] = "mean trained timescale of each module's units at N"
        ds["tau_net_mean_by_module"].attrs["description"] = ("mean effective timescale of each module's units at N "
                                                             "(reliable fits)")
    return ds


# ---------------------------------------------------------------------------- figure
def _label(ds: xr.Dataset) -> str:
    return str(ds.attrs.get("label") or ("modular" if ds.attrs.get("modular") else "non-modular"))


def _as_runs(data: Any) -> dict[str, list[xr.Dataset]]:
    if isinstance(data, xr.Dataset):
        data = {_label(data): data}
    elif isinstance(data, Sequence) and not isinstance(data, (str, bytes)) and data \
            and all(isinstance(d, xr.Dataset) for d in data):
        runs: dict[str, list[xr.Dataset]] = {}
        for d in data:
            runs.setdefault(_label(d), []).append(d)
        data = runs
    if not isinstance(data, Mapping) or not data:
        raise TypeError("give a module_timescales Dataset, a list of them, or a dict {label: Dataset or list of "
                        "Datasets (networks averaged)}.")
    out = {}
    for label, value in data.items():
        items = [value] if isinstance(value, xr.Dataset) else list(value)
        for d in items:
            if not isinstance(d, xr.Dataset) or "tau_mean" not in d or "tau_net_mean" not in d:
                raise TypeError(f"{label!r}: expected module_timescales Datasets (tau_mean, tau_net_mean); found "
                                f"{type(d).__name__}.")
        out[str(label)] = items
    return out


def plot_module_timescales(data: Any, ax: Any = None) -> Any:
    """004 Fig. 4: mean trained (a) and effective (b) timescale of the units solving N, against N.

    Parameters
    ----------
    data : Dataset, list of Datasets, or dict of str to Dataset or list of Datasets
        :func:`module_timescales` results. One line per label (default label: the Dataset's
        ``label`` attr, else "modular" / "non-modular"); several networks under one label are
        averaged over the Ns they share, with a band of +- SEM over networks (004 averages 4).
    ax : sequence of two matplotlib Axes, optional
        Where to draw panels a and b (default: a new figure with two panels).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import xarray as xr
    >>> from trainers.modular_timescales import plot_module_timescales
    >>> ds = xr.Dataset({"tau_mean": ("N", [1.5, 1.5, 1.6]), "tau_net_mean": ("N", [2.0, 3.0, 4.5])},
    ...                 coords={"N": [2, 3, 4]}, attrs={"modular": 1})
    >>> fig = plot_module_timescales(ds)
    >>> [a.get_title() for a in fig.axes]
    ['(a) trained timescale', '(b) effective timescale']
    """
    import matplotlib.pyplot as plt

    runs = _as_runs(data)
    if ax is None:
        fig, axes = plt.subplots(1, 2, figsize=(7.2, 3.2), constrained_layout=True)
    else:
        axes = list(np.ravel(ax))
        if len(axes) != 2:
            raise ValueError(f"ax: give two Axes (panels a and b of Fig. 4); found {len(axes)}.")
        fig = axes[0].figure
    for i, (label, items) in enumerate(runs.items()):
        colour = _COLOURS[i % len(_COLOURS)]
        stacked = xr.concat([d[["tau_mean", "tau_net_mean"]].reset_coords(drop=True) for d in items],
                            dim="network", join="inner")
        n = stacked.sizes["network"]
        suffix = f" ({n} networks)" if n > 1 else ""
        for panel, var in zip(axes, ("tau_mean", "tau_net_mean")):
            mean = stacked[var].mean("network")
            panel.plot(stacked["N"].values, mean.values, marker="o", ms=3, color=colour, label=label + suffix)
            if n > 1:
                sem = stacked[var].std("network", ddof=1) / np.sqrt(n)
                panel.fill_between(stacked["N"].values, (mean - sem).values, (mean + sem).values, color=colour,
                                   alpha=0.2, lw=0)
    axes[0].set_title("(a) trained timescale")
    axes[0].set_ylabel(r"$\langle \tau_i \rangle$ (steps)")
    axes[1].set_title("(b) effective timescale")
    axes[1].set_ylabel(r"$\langle \tau_{\mathrm{net}} \rangle$ (steps)")
    for panel in axes:
        panel.set_xlabel(r"$N_{\mathrm{solved}}$")
        panel.grid(alpha=0.3)
    axes[0].set_ylim(bottom=0)
    axes[0].legend(fontsize=8)
    return fig


__all__ = ["module_timescales", "plot_module_timescales"]
