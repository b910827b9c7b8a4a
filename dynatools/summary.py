"""Summaries of one recording: timescales, trained tau, dimensionality and weight balance in one
Dataset, and the units whose tau_net enters statistics over units.

These are the per-network quantities of the timescale paper's Figs. 4b, 5, 6 (trained tau,
tau_net, PCA dimensionality, summed incoming weights). They take a recording (or a result
Dataset) and nothing else; analysing every checkpoint of a training run is
``trainers.analyze.analyze_run``, built on :func:`analyze_recording`.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import xarray as xr

from dynatools.timescales import MIN_LENGTH_RATIO


def analyze_recording(rec: xr.Dataset, *, threshold: float = 0.9, fit_lag: int = 30,
                      max_lag: int | None = None, time_dim: str = "time", trial_dim: str = "trial",
                      unit_dim: str = "unit", errors: Literal["ignore", "raise"] = "ignore",
                      min_length_ratio: float | None = MIN_LENGTH_RATIO,
                      progress: bool = False) -> xr.Dataset:
    """Timescales, dimensionality and weight balance of one recording.

    Parameters
    ----------
    rec : xarray.Dataset
        A recording (schema v1). ``tau`` (unit coordinate) and ``W_rec`` are used when present.
        Dims besides trial, time and unit (e.g. ``member`` of an ensemble, also on ``tau`` and
        ``W_rec``) are batch dims: each entry is analysed on its own and the dims are kept.
        Trials padded at the end (coordinate ``trial_length``) use their valid samples only;
        to summarise one task period, pass ``dynatools.select_period(rec, "delay")``.
    threshold : float, default=0.9
        PCA dimensionality threshold (timescale paper Fig. 6b).
    fit_lag, max_lag : int
        Passed to :func:`dynatools.timescales`.
    time_dim, trial_dim, unit_dim : str
        Names of the activity's dims (the schema's by default). ``W_rec`` keeps the schema's
        ``(unit, unit_pre)``.
    errors : {"ignore", "raise"}, default="ignore"
        Units with NaN or inf activity: ``"ignore"`` gives them status ``nonfinite`` and NaN
        timescales, and leaves them out of the dimensionality (attr
        ``dimensionality_units_excluded``); ``"raise"`` stops with an error naming them.
    min_length_ratio : float or None, default=50
        Passed to :func:`dynatools.timescales` (status ``short``).
    progress : bool, default=False
        Show progress bars (autocorrelations, covariances).

    Returns
    -------
    xarray.Dataset
        The :func:`dynatools.timescales` result (``tau_net``, fits and ``autocorrelation`` over
        ``unit`` and ``lag``), plus ``tau`` (trained timescale per unit, NaN if unknown), the
        :func:`dynatools.weight_balance` variables per unit (``positive_sum``, ``negative_sum``,
        ``mean_incoming``, ``balance``; if ``W_rec`` is present), and ``dimensionality`` (mean
        over trials), ``dimensionality_std``, ``participation_ratio`` (scalars, or over the batch
        dims). Attrs: those of the timescales result, plus ``dimensionality_threshold``.

    Examples
    --------
    >>> import dynatools as dt
    >>> res = dt.analyze_recording(dt.open_recording(dt.demo_path()))
    >>> int(res.dimensionality) > 0, "tau_net" in res
    (True, True)
    """
    from dynatools._batch import batch_dims, over_batch
    from dynatools.connectivity import weight_balance
    from dynatools.dimensionality import pca_dimensionality
    from dynatools.timescales import timescales

    dims = dict(time_dim=time_dim, trial_dim=trial_dim, unit_dim=unit_dim)
    res = timescales(rec, fit_lag=fit_lag, max_lag=max_lag, progress=progress, errors=errors,
                     min_length_ratio=min_length_ratio, **dims)
    res = res.drop_vars("tau", errors="ignore")          # the recording's coordinate -> a variable
    if "tau" in rec.coords:
        res["tau"] = rec["tau"].variable.astype(float)
    else:
        res["tau"] = (unit_dim, np.full(rec.sizes[unit_dim], np.nan))
    # units with NaN/inf anywhere (timescales named them, status 'nonfinite') stay out of the PCA
    nonfinite = (res["status"] == "nonfinite").any([d for d in res["status"].dims if d != unit_dim])
    excluded = [v.item() for v in rec[unit_dim][nonfinite.values]] if bool(nonfinite.any()) else []
    pca_rec = rec.isel({unit_dim: ~nonfinite.values}) if excluded else rec
    if excluded and pca_rec.sizes[unit_dim] < 2:
        raise ValueError(f"only {pca_rec.sizes[unit_dim]} unit(s) have finite activity; the "
                         f"dimensionality needs at least 2. Remove the NaN/inf samples of units {excluded}.")
    dim = pca_dimensionality(pca_rec, threshold, progress=progress, **dims)
    res["dimensionality"] = dim.dimensionality.mean(trial_dim).astype(float)
    res["dimensionality_std"] = dim.dimensionality.std(trial_dim).astype(float)
    res["participation_ratio"] = dim.participation_ratio.mean(trial_dim)
    if "W_rec" in rec.data_vars:
        names = ["positive_sum", "negative_sum", "mean_incoming", "balance"]
        W = rec["W_rec"]
        wb = over_batch(W, batch_dims(W, ("unit", "unit_pre")), lambda w, where: weight_balance(w)[names])
        for name in names:
            res[name] = wb[name].variable
    res.attrs["dimensionality_threshold"] = float(threshold)
    if excluded:
        res.attrs["dimensionality_units_excluded"] = excluded
    return res


def reliable_tau_net(result: xr.Dataset) -> xr.DataArray:
    """``tau_net`` where the fit says something, NaN elsewhere, for statistics over units.

    Left out: fits that failed or could not be made (``failed``, ``single_failed``, ``constant``,
    ``nonfinite``, ``tie``), fits biased by trials too short for their timescale (``short``, see
    :func:`dynatools.fit_timescales`'s ``min_length_ratio``) and fits that ran into the *upper*
    bound ``tau_max`` (the timescale is longer than the fit window can say; a failed fit there, at
    about 100 steps, would dominate a mean). Kept: every status of
    ``RELIABLE`` (``from dynatools.timescales import RELIABLE``), and ``tau_at_bound`` at the
    *lower* bound, a timescale much shorter than one lag step, whose near-zero value is the right
    order of magnitude (in small networks that is often most units). A run summary
    (``trainers.analyze.analyze_run``) carries the decision as ``tau_net_reliable``, which is
    used when present; without ``status``, ``tau_net`` is returned unchanged.

    Parameters
    ----------
    result : xarray.Dataset
        A :func:`dynatools.timescales` or :func:`analyze_recording` result (``tau_net``, and
        ``status`` with attr ``tau_max`` where known), or a run summary with ``tau_net_reliable``.

    Returns
    -------
    xarray.DataArray
        ``tau_net`` with the same dims, NaN where the fit is left out.

    Examples
    --------
    >>> import dynatools as dt
    >>> res = dt.timescales(dt.open_recording(dt.demo_path()))
    >>> bool(dt.reliable_tau_net(res).notnull().sum() <= res.tau_net.notnull().sum())
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


__all__ = ["analyze_recording", "reliable_tau_net"]
