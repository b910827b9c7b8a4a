"""Autocorrelation timescales of single units and populations, with AIC model selection.

Implements the timescale analysis of Khajehabdollahi, Zeraati et al. (ICLR 2024, "Emergent
mechanisms for long timescales depend on training curriculum...", Sec. 2, Eq. 3; used again in
Hamidi et al., "Modular Growth of Hierarchical Networks", section "Timescale Estimation"):

1. the unbiased autocorrelation of each unit, per-trial mean removed, lag k divided by T - k,
   averaged over trials (:func:`autocorrelation`);
2. a single exponential ``a exp(-t/tau)`` and a double exponential
   ``a (c exp(-t/tau_1) + (1-c) exp(-t/tau_2))`` fitted to AC/AC[0] on lags 0..fit_lag, one
   model selected by AIC (or BIC), and the network-mediated timescale ``tau_net`` taken as the
   slowest timescale of the selected model (:func:`fit_timescales`); each model also with a
   lag-0 observation-noise term (fitted from lag 1), for subsampled and noisy recordings.

``docs/timescales.md`` gives the equations, the defaults and every difference from the authors'
code.
"""

from __future__ import annotations

import inspect
import json
import math
import warnings
from typing import Any, Literal

import numpy as np
import xarray as xr

from dynatools import _acf, _expfit
from dynatools.recording import trial_lengths
from dynatools._validation import (
    as_activity,
    check_choice,
    check_core_dims,
    check_positive_int,
    is_dask,
    spacing_tolerance,
    user_stacklevel,
)

__all__ = ["autocorrelation", "fit_timescales", "timescales", "STATUS", "RELIABLE"]

#: Names of the per-unit ``status`` values of :func:`fit_timescales` and :func:`timescales`: those
#: of the fits, then ``nonfinite`` (the unit's activity holds NaN or inf: NaN results) and
#: ``short`` (fitted, but the trials are too short for that timescale: ``tau_net`` is biased low).
#: Results store the names, not their positions.
STATUS = _expfit.STATUS + ("nonfinite", "short")
#: The statuses whose ``tau_net`` is a credible fitted value: the selected model was fitted and
#: its slowest timescale is inside the bounds (``"double_*"``: the single model was kept for the
#: reason named; ``"lag0_noise"``: the single model with a lag-0 observation-noise term). Not listed: ``constant``, ``nonfinite``, ``failed``, ``tie`` (NaN),
#: ``single_failed`` (the single fit failed, so AIC had nothing to compare), ``short`` (biased by
#: the trial length) and ``tau_at_bound``, which :func:`dynatools.summary.reliable_tau_net` keeps
#: at the lower bound only.
RELIABLE = ("ok", "double_negligible_weight", "double_at_bound", "double_duplicate", "double_within_noise",
            "double_failed", "lag0_noise")
#: Default upper bound of every timescale, in steps of the lag coordinate (the authors' bound).
TAU_MAX_STEPS = 100.0
#: Default ``min_length_ratio``: a fit is ``short`` when the trial length T is below this many
#: ``tau_net``. On AR(1) units (docs/timescales.md, "Short trials") the per-trial mean removal
#: biases ``tau_net`` low by 5-11% at T = 50 tau and 13-22% at T = 20 tau.
MIN_LENGTH_RATIO = 50.0
#: Default ``lag0`` of :func:`fit_timescales` (docs/timescales.md, "Subsampled and noisy data").
LAG0_DEFAULT = "auto"
_CODE = {name: i for i, name in enumerate(STATUS)}
_FIELD = {name: i for i, name in enumerate(_expfit.FIELDS)}


def _lag_spacing(da: xr.DataArray, dim: str) -> tuple[float, str | None]:
    """Sampling interval along ``dim`` from its coordinate and its units.

    Without a coordinate the interval is 1 and the units ``"step"``; a coordinate without a
    ``units`` attribute gives ``None`` (results are then labeled as in coordinate units).
    """
    if dim not in da.coords:
        return 1.0, "step"
    if not np.issubdtype(da[dim].dtype, np.number):
        raise ValueError(
            f"coordinate {dim!r} has dtype {da[dim].dtype}; timescales need numeric times. "
            f"Convert it to steps or seconds, e.g. da.assign_coords({dim}=np.arange(da.sizes[{dim!r}]) "
            f"* dt), and set its attrs['units']."
        )
    units = da[dim].attrs.get("units")
    if da.sizes[dim] < 2:
        return 1.0, units
    raw = np.asarray(da[dim].values)
    coord = raw.astype(np.float64)
    diffs = np.diff(coord)
    step = float((coord[-1] - coord[0]) / (coord.size - 1))   # robust to float32 rounding
    if step <= 0 or not np.allclose(diffs, step, rtol=1e-6, atol=spacing_tolerance(raw)):
        raise ValueError(
            f"coordinate {dim!r} is not evenly spaced and increasing (first steps: "
            f"{diffs[:3].tolist()}); autocorrelations need uniformly sampled data. Resample it, "
            f"or drop the coordinate with da.drop_vars({dim!r}) to use sample indices."
        )
    return step, units


def autocorrelation(
    activity: Any,
    *,
    max_lag: int,
    time_dim: str = "time",
    trial_dim: str = "trial",
    unit_dim: str = "unit",
    population: bool = False,
    normalize: bool = True,
    dtype: Literal["float32", "float64"] | None = None,
    errors: Literal["ignore", "raise"] = "ignore",
    progress: bool = False,
) -> xr.DataArray:
    r"""Unbiased autocorrelation of each unit (or of the summed population), averaged over trials.

    For each trial, the trial's mean is removed and, for lag :math:`k = 0..\mathrm{max\_lag}`,

    .. math:: C(k) = \frac{1}{T - k} \sum_{t=0}^{T-1-k} (r_t - \hat\mu)(r_{t+k} - \hat\mu)

    (Eq. 3 of Khajehabdollahi, Zeraati et al., ICLR 2024). :math:`C` is averaged over trials and,
    with ``normalize=True``, divided by its value at lag 0.

    Computed by one real FFT per series, zero-padded only to the next even fast length
    >= ``T + max_lag``, and a type-I DCT of the power spectrum (its inverse FFT), over chunks of
    units run in parallel threads, so the extra memory stays about 0.1 GB whatever the
    recording's size.

    Parameters
    ----------
    activity : xarray.Dataset, xarray.DataArray or ndarray
        A recording (its ``activity`` is used), or activity with dims ``(trial, time, unit)``; a
        plain array is taken to have those dims (2-D: ``(time, unit)``). Other dims (e.g. an
        ensemble's ``member``) are batch dims, kept: each entry's result equals that of its
        sub-recording alone. Dask-backed data must not be chunked along ``time_dim``.
        Trials padded at the end (coordinate ``trial_length``, docs/recording-schema.md) use
        their valid samples only: each trial's mean is removed over its valid part, the products
        at lag k are summed over the trials' valid pairs and divided by their number
        (``sum_i max(L_i - k, 0)``), which is the estimator above when every trial has length T.
    max_lag : int
        Largest lag, in samples; must be < T.
    time_dim, trial_dim, unit_dim : str
        Names of the time, trial and unit dims. ``trial_dim`` may be absent (one trial).
    population : bool, default=False
        If True, the autocorrelation of the activity summed over ``unit_dim``.
    normalize : bool, default=True
        Divide by the lag-0 value (after averaging over trials), so ``AC[0] = 1``. Units with zero
        variance then give NaN (with a warning).
    dtype : {"float32", "float64"}, optional
        Precision of the FFT. Default: that of the data. Means and the trial average are always
        accumulated in float64; the result is float64. The result does not depend on the units
        of the data in either precision: each series whose range is far from 1 is rescaled by an
        exact power of two before the FFT, so float32 activity at 1e-30 or 1e30 gives the float64
        result to float32 round-off (about 1e-7 of lag 0). Constant series (range within two
        units in the last place of their largest value, at any scale) give exactly 0.
    errors : {"ignore", "raise"}, default="ignore"
        A series holding NaN or inf: with "ignore" its unit gets NaN at every lag (all trials),
        with a ``RuntimeWarning`` naming the units and trials, and the other units are
        unaffected; with "raise" a ``ValueError`` naming them. Dask-backed data report them when
        computed.
    progress : bool, default=False
        Show a progress bar over units (in-memory data only).

    Returns
    -------
    xarray.DataArray
        Named ``"autocorrelation"``, with dim ``lag`` in place of ``time_dim`` and ``trial_dim``
        (``(unit, lag)`` for a recording; ``(lag,)`` with ``population=True``); any other dim
        (e.g. ``member`` of an ensemble) is kept as a batch dim, leading. The ``lag``
        coordinate is in the units of the time coordinate (``k * dt``). Attributes record the
        parameters.

    Raises
    ------
    ValueError
        Missing dims, ``max_lag >= T``, chunks along ``time_dim``; NaN or inf in the data with
        ``errors="raise"``.
    TypeError
        Integer, boolean or complex data.

    Notes
    -----
    With one series and ``normalize=True`` this equals
    ``statsmodels.tsa.stattools.acf(x, adjusted=True, nlags=max_lag)`` (tested). The authors' code
    divides lag ``k`` by ``T - 1 - k`` instead of ``T - k``; the difference is a factor
    ``(T-k)/(T-1-k)``, below 3e-4 for T = 1e5 and k <= 30 (see ``docs/timescales.md``).

    Examples
    --------
    >>> import numpy as np, dynatools as dt
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((2, 1000, 3))          # (trial, time, unit): white noise
    >>> ac = dt.autocorrelation(x, max_lag=5)
    >>> ac.dims, float(ac.sel(lag=0)[0])
    (('unit', 'lag'), 1.0)
    """
    ac, _ = _autocorrelation(
        activity, max_lag=max_lag, time_dim=time_dim, trial_dim=trial_dim, unit_dim=unit_dim,
        population=population, normalize=normalize, dtype=dtype, errors=errors, progress=progress,
        consequence="their autocorrelation is NaN",
    )
    return ac


#: float64 series whose largest magnitude is outside 2**-400..2**400 are rescaled before a
#: normalized autocorrelation: their squares (the autocovariance) would overflow or underflow.
_SAFE_EXPONENT = 400


def _rescale_extreme(da: xr.DataArray, over: list[str]) -> xr.DataArray:
    """``da`` times a power of two per series group (all of ``over``, e.g. time and trial, share
    one factor, so trial averages are unchanged) where its largest magnitude would make the
    autocovariance overflow or underflow float64; exact, and cancelled by the normalisation."""
    with np.errstate(invalid="ignore"):
        amp = np.abs(da).max(over, skipna=False).values
        _, exponent = np.frexp(np.where(np.isfinite(amp) & (amp > 0), amp, 1.0))
    exponent = np.where(np.abs(exponent) > _SAFE_EXPONENT, exponent, 0)
    if not exponent.any():
        return da
    factor = xr.DataArray(np.ldexp(1.0, -exponent), dims=[d for d in da.dims if d not in over])
    return da * factor


def _autocorrelation(
    activity: Any,
    *,
    max_lag: int,
    time_dim: str,
    trial_dim: str,
    unit_dim: str,
    population: bool,
    normalize: bool,
    dtype: str | None,
    errors: str,
    progress: bool,
    consequence: str,
) -> tuple[xr.DataArray, xr.DataArray]:
    """:func:`autocorrelation`, and where it is NaN because the activity is not finite: a boolean
    DataArray over the result's dims other than ``lag`` (lazy for dask-backed data)."""
    da = as_activity(activity)
    check_core_dims(da, [time_dim, unit_dim] if population else [time_dim])
    max_lag = check_positive_int("max_lag", max_lag, minimum=0)
    if dtype is not None:
        check_choice("dtype", dtype, ("float32", "float64"))
    check_choice("errors", errors, ("ignore", "raise"))
    n_time = da.sizes[time_dim]
    if n_time <= max_lag:
        raise ValueError(
            f"max_lag={max_lag} needs more than {max_lag} samples along {time_dim!r}, but the data "
            f"have {n_time}. Lower max_lag or record longer (for unbiased timescales, T should "
            f"be many times the longest timescale)."
        )
    if n_time < 2:
        raise ValueError(f"the data have {n_time} sample along {time_dim!r}; need at least 2.")
    dask_backed = is_dask(da)
    if dask_backed:
        chunks = dict(zip(da.dims, da.chunks))
        if len(chunks[time_dim]) > 1:
            raise ValueError(
                f"the data are chunked along {time_dim!r} ({len(chunks[time_dim])} chunks); an "
                f"autocorrelation needs whole series. Rechunk over units or trials instead: "
                f"da.chunk({{{time_dim!r}: -1, {unit_dim!r}: 100}})."
            )
    spacing, units = _lag_spacing(da, time_dim)
    work = np.dtype(dtype) if dtype is not None else (np.dtype(np.float32) if da.dtype == np.float32 else np.dtype(np.float64))

    if population:
        # skipna=False: a NaN unit makes the population NaN (reported below), not silently left out
        da = (da.sum(unit_dim, dtype=np.float64, skipna=False) if not dask_backed
              else da.astype(np.float64).sum(unit_dim, skipna=False))
        work = np.dtype(np.float64) if dtype is None else work

    lengths = trial_lengths(da, trial_dim=trial_dim, time_dim=time_dim)
    if lengths is not None:
        if max_lag >= lengths.max():
            raise ValueError(
                f"max_lag={max_lag} needs trials of more than {max_lag} samples, but the longest trial has "
                f"{lengths.max()} (coordinate 'trial_length'). Lower max_lag or select longer trials.")
        da = _fill_padding(da, lengths, trial_dim, time_dim)

    if normalize and not dask_backed and da.dtype == np.float64:
        da = _rescale_extreme(da, [d for d in (time_dim, trial_dim) if d in da.dims])

    bar = None
    if progress and not dask_backed:
        from tqdm.auto import tqdm

        n_series = int(np.prod([s for d, s in da.sizes.items() if d != time_dim]))
        bar = tqdm(total=n_series, desc="autocorrelation", unit="series")

    # dask: each block is checked when computed, so the kernel gets the positions of its series
    # along the unit and trial dims to name them
    named = [d for d in (unit_dim, trial_dim) if d in da.dims] if dask_backed else []
    labels = {d: (da[d].values if d in da.coords else np.arange(da.sizes[d])) for d in named}

    def kernel(x: np.ndarray, *positions: np.ndarray) -> np.ndarray:
        out = _acf.acf_last_axis(x, max_lag, work_dtype=work, progress=bar.update if bar else None)
        if dask_backed:
            bad = ~np.isfinite(out).all(axis=-1)
            if bad.any():
                where = []
                for d, pos in zip(named, positions):
                    hit = np.unique(np.broadcast_to(pos, bad.shape)[bad])
                    where.append(f"{d} {labels[d][hit][:5].tolist()}{' ...' if hit.size > 5 else ''}")
                _report_nonfinite(", ".join(where), errors, consequence)
        return out

    body = da.drop_vars([c for c in da.coords if time_dim in da[c].dims])
    extra = [xr.DataArray(np.arange(da.sizes[d]), dims=(d,)) for d in named]
    try:
        per_trial = _along_last(kernel, body, extra, time_dim, "lag", max_lag + 1)
    finally:
        if bar is not None:
            bar.close()
    bad = ~np.isfinite(per_trial.isel(lag=0))   # NaN/inf in a series: NaN at every lag of it
    if not dask_backed and bool(bad.any()):
        where = [_labels_where(bad, d) for d in (unit_dim, trial_dim) if d in bad.dims]
        # every unit of some trial not finite: likely padding without a trial_length coordinate
        padded = (lengths is None and unit_dim in bad.dims and trial_dim in bad.dims and bad.sizes[unit_dim] > 1
                  and bool(bad.all(unit_dim).any()))
        _report_nonfinite(", ".join(where), errors, consequence, padded)
    if lengths is not None:
        # padded trials: per-trial sums over the valid pairs (the padding is zero after the mean
        # removal), pooled over trials and divided by the number of valid pairs at each lag
        bad = bad.any(trial_dim)
        k = np.arange(max_lag + 1)
        pairs = xr.DataArray(np.clip(lengths[:, None] - k[None, :], 0, None).astype(np.float64),
                             dims=(trial_dim, "lag"))
        sums = per_trial.where(pairs > 0, 0.0) * xr.DataArray((n_time - k).astype(np.float64), dims=("lag",))
        ac = sums.sum(trial_dim, skipna=False) / pairs.sum(trial_dim)
    elif trial_dim in per_trial.dims:
        bad = bad.any(trial_dim)
        # one non-finite trial makes the unit's result NaN (not an average over the others)
        ac = per_trial.mean(trial_dim, skipna=False)
    else:
        ac = per_trial
    ac = ac.assign_coords(lag=np.arange(max_lag + 1) * spacing)
    if units is not None:
        ac["lag"].attrs["units"] = units
    if normalize:
        ac0 = ac.isel(lag=0)
        # division by a safe denominator: no 0/0 at compute time, also under dask
        ac = (ac / ac0.where(ac0 > 0, 1.0)).where(ac0 > 0)
        if not dask_backed:   # lag 0 is exactly 0 for constant series; NaN ones were reported above
            _warn_constant(ac0 <= 0, unit_dim, "its normalised autocorrelation is NaN")
    ac.name = "autocorrelation"
    ac.attrs = {
        "long_name": "population autocorrelation" if population else "autocorrelation",
        "estimator": ("unbiased: lag k divided by T - k; per-trial mean removed; mean over trials"
                      if lengths is None else
                      "unbiased over padded trials: each trial's valid part (trial_length) with its mean "
                      "removed; products summed over trials and divided by the number of valid pairs at lag k"),
        "normalized": int(normalize),
        "population": int(population),
        "max_lag": max_lag,
        "n_time": n_time if lengths is None else float(lengths.mean()),
        "n_trials": int(da.sizes.get(trial_dim, 1)),
        "fft_dtype": str(work),
        "reference": "Khajehabdollahi, Zeraati et al., ICLR 2024, Eq. 3",
    }
    return ac, bad.drop_vars([c for c in bad.coords if c not in ac.coords])


def _fill_padding(da: xr.DataArray, lengths: np.ndarray, trial_dim: str, time_dim: str) -> xr.DataArray:
    """``da`` with each trial's padded steps set to the mean of its valid samples (so they are zero
    once the kernel removes the trial's mean); NaN in the valid part stays NaN (reported)."""
    valid = xr.DataArray(np.arange(da.sizes[time_dim])[None, :] < lengths[:, None], dims=(trial_dim, time_dim))
    n = xr.DataArray(lengths.astype(np.float64), dims=(trial_dim,))
    mean = da.where(valid, 0.0).sum(time_dim, dtype=np.float64, skipna=False) / n
    return da.where(valid, mean.astype(da.dtype)).transpose(*da.dims)


def _labels_where(mask: xr.DataArray, dim: str) -> str:
    """'dim [labels]' of the entries along ``dim`` where ``mask`` is true for any other index."""
    hit = mask.any([d for d in mask.dims if d != dim]) if mask.ndim > 1 else mask
    values = np.asarray(hit.values, dtype=bool)
    labels = mask[dim].values[values] if dim in mask.coords else np.flatnonzero(values)
    more = " ..." if labels.size > 5 else ""
    return f"{dim} {labels[:5].tolist()}{more}"


def _report_nonfinite(where: str, errors: str, consequence: str, padded: bool = False) -> None:
    """Raise (``errors="raise"``) or warn that the activity holds NaN or inf ``where``; with
    ``padded`` (whole trials of every unit), say how padded trials are declared."""
    text = "the activity contains NaN or inf values" + (f" (in {where})" if where else "")
    hint = (" If these trials are padded at the end, give each trial's length as the coordinate "
            "'trial_length' (docs/recording-schema.md): only the valid part is then used." if padded else "")
    if errors == "raise":
        raise ValueError(
            text + "; remove or interpolate them (e.g. da.interpolate_na('time')) or drop those units "
            "before computing autocorrelations, or pass errors='ignore' to get NaN for those units." + hint
        )
    _warn(f"{text}; {consequence} for those units, the other units are unaffected. Remove or "
          f"interpolate them (e.g. da.interpolate_na('time')) to analyse them." + hint)


def _along_last(kernel, da: xr.DataArray, extra: list, core_dim: str, out_dim: str, size: int) -> xr.DataArray:
    """``kernel`` over ``core_dim`` of ``da`` (replaced by ``out_dim`` of ``size``), with ``extra``
    broadcast arguments without core dims; lazy for dask-backed data."""
    return xr.apply_ufunc(
        kernel, da, *extra,
        input_core_dims=[[core_dim]] + [[] for _ in extra],
        output_core_dims=[[out_dim]],
        dask="parallelized",
        output_dtypes=[np.float64],
        dask_gufunc_kwargs={"output_sizes": {out_dim: size}},
        keep_attrs=False,
    )


def _warn(text: str) -> None:
    """A RuntimeWarning about the data, pointing at the caller's line."""
    warnings.warn(text, RuntimeWarning, stacklevel=user_stacklevel())


def _warn_constant(const: xr.DataArray, unit_dim: str, consequence: str) -> None:
    """Warn, naming the units, where ``const`` (a boolean DataArray) is true."""
    if bool(const.any()):
        _warn(f"{_units_text(const, unit_dim, 'the series')} have zero variance (constant activity); "
              f"{consequence}. The other units are unaffected.")


def _units_text(mask: xr.DataArray, unit_dim: str, otherwise: str) -> str:
    """'n unit(s) (unit [labels])' where the boolean ``mask`` is true for any other index."""
    if unit_dim not in mask.dims:
        return otherwise
    n = int(mask.any([d for d in mask.dims if d != unit_dim]).sum()) if mask.ndim > 1 else int(mask.sum())
    return f"{n} unit(s) ({_labels_where(mask, unit_dim)})"


def fit_timescales(
    acf: xr.DataArray,
    *,
    fit_lag: int = 30,
    criterion: Literal["aic", "bic"] = "aic",
    reference: bool = False,
    lag_dim: str = "lag",
    tau_max: float | None = None,
    min_weight: float = 0.05,
    min_ratio: float = 1.5,
    noise_z: float | None = 5.0,
    n_samples: float | None = None,
    min_length_ratio: float | None = MIN_LENGTH_RATIO,
    errors: Literal["ignore", "raise"] = "ignore",
    lag0: Literal["auto", "include", "exclude"] | None = None,
    min_timescale: float | None = None,
) -> xr.Dataset:
    r"""Fit single and double exponentials to autocorrelations and select a model per unit.

    On lags ``0..fit_lag`` of ``y = AC / AC[0]`` every unit is fitted with

    * single: :math:`a\,e^{-t/\tau}`, with :math:`a \in [0, 1]`, :math:`\tau \in (0, \tau_{max}]`;
    * double: :math:`a\,(c\,e^{-t/\tau_1} + (1-c)\,e^{-t/\tau_2})`, with :math:`a, c \in [0, 1]`,
      :math:`\tau_{1,2} \in (0, \tau_{max}]`;

    by bounded least squares, all units at once (a batched projected Levenberg-Marquardt solver,
    not a loop over ``curve_fit``). The model with the lower criterion,
    ``AIC = 2k + n ln(RSS/n)`` or ``BIC = k ln n + n ln(RSS/n)`` (k = 2 or 4 parameters, n lags),
    is selected, and ``tau_net`` is its slowest timescale (Khajehabdollahi, Zeraati et al., ICLR
    2024, Sec. 2).

    ``reference=True`` reproduces the authors' procedure: starts at the midpoint of the bounds
    (what ``curve_fit`` does without ``p0``), no safeguards, a tie gives NaN.

    The default is safer, because that procedure picks the double model for about a third of the
    units of pure one-timescale data (AIC treats the strongly correlated errors of an
    autocorrelation estimate as independent): starts come from log-linear slopes (three starts
    for the double model, the best kept), and the single model is kept, with a status saying why,
    when the double model's smaller weight is below ``min_weight``, a timescale sits at a bound,
    ``tau_slow < min_ratio * tau_fast`` (the components duplicate each other), or the two fitted
    curves differ by less than ``noise_z`` standard errors of the estimate.

    Parameters
    ----------
    acf : xarray.DataArray
        Autocorrelations with dim ``lag_dim`` (lag 0 first), e.g. from :func:`autocorrelation`;
        normalised or not (it is divided by lag 0 here). Other dims (``unit``, ...) are kept.
    fit_lag : int, default=30
        Largest lag index used in the fit (the authors' value); at least 4.
    criterion : {"aic", "bic"}, default="aic"
    reference : bool, default=False
        Reproduce the authors' procedure exactly (AIC only).
    lag_dim : str, default="lag"
    tau_max : float, optional
        Upper bound of every timescale, in the units of the lag coordinate. Default: 100 lag
        steps (the authors' bound). Results at the bound are flagged.
    min_weight : float, default=0.05
        Default mode: smallest weight ``min(c, 1-c)`` of a credible second component.
    min_ratio : float, default=1.5
        Default mode: smallest ``tau_slow / tau_fast`` of two distinct components.
    noise_z : float or None, default=5.0
        Default mode: keep the single model when the double model's curve differs from it by
        less than ``noise_z`` standard errors of the autocorrelation estimate at every fitted
        lag, the errors being those expected if the single model were true (Bartlett's formula
        for an AR(1) process with the fitted timescale and ``n_samples`` samples). None disables
        this test.
    n_samples : float, optional
        Number of samples behind each autocorrelation (trials x time steps). Default: from the
        attributes ``n_trials`` and ``n_time`` that :func:`autocorrelation` stores; without them
        the noise test is skipped.
    min_length_ratio : float or None, default=50
        Shortest trial length, in multiples of the fitted ``tau_net``, for an estimate without a
        large bias. Removing each trial's mean biases the autocorrelation, and so ``tau_net``, low
        as T / tau shrinks (Zeraati et al., Nat. Comput. Sci. 2022, cited in Hamidi et al.): on
        AR(1) units ``tau_net`` is 5-11% low at T = 50 tau, 13-22% at T = 20 tau and 35-40% at
        T = 10 tau (``docs/timescales.md``). A credible fit (status in :data:`RELIABLE`) with
        ``T * dt < min_length_ratio * tau_net`` gets status ``"short"``, with a ``RuntimeWarning``;
        its values are kept. T is the attribute ``n_time`` that :func:`autocorrelation` stores
        (without it the rule is skipped). None disables the rule.
    errors : {"ignore", "raise"}, default="ignore"
        With "raise", a unit whose fits both fail raises; with "ignore" it gets NaN and
        ``status = "failed"``.
    lag0 : {"auto", "include", "exclude"}, optional
        How the drop at lag 0 that observation noise causes (subsampled spikes, measurement
        noise: variance at lag 0 only) is modelled. Each model is also fitted with a free
        lag-0 noise term, which is the same as fitting it to lags ``1..fit_lag`` only; the
        noise fraction is then ``1 - a`` (Spitzner et al., PLoS ONE 2021, and Wilting &
        Priesemann, Nat. Commun. 2018, fit from lag 1 for subsampled data; Zeraati et al. 2022
        discuss the bias of lag 0). Default (None): ``"auto"``, or the authors' fit with
        ``reference=True``.

        - ``"auto"``: the term is used where the criterion prefers it *and* the fitted curve
          with it differs from the one without by at least ``noise_z`` standard errors
          (Bartlett's formula for AR(1) plus noise; at lag 0 the error of ``r_1`` times
          ``exp(1/tau)``, the extrapolation); without ``n_samples`` only the rule below adds it.
        - ``"include"``: lag 0 is a data point (the behaviour before), but for the rule below.
        - ``"exclude"``: always fit from lag 1 (every model has the term).

        In every mode but ``reference=True``, a double model whose fast timescale is below
        ``min_timescale`` is not reported: that component has decayed before lag 1, which is
        what lag-0 noise does, and the unit gets the single model with the term, status
        ``"lag0_noise"``.
    min_timescale : float, optional
        Shortest timescale a selected double model may report, in the units of the lag
        coordinate; default one lag step.

    Returns
    -------
    xarray.Dataset
        Over the non-lag dims of ``acf`` (usually ``unit``):

        - ``tau_single``, ``amplitude_single``: single-exponential fit;
        - ``tau_fast``, ``tau_slow``, ``weight_fast``, ``amplitude_double``: double fit (fast
          component first; ``weight_fast`` is its weight c);
        - ``criterion_single``, ``criterion_double``, ``rss_single``, ``rss_double``;
        - ``selected_model``: ``"single"``, ``"double"`` or ``"none"``; ``n_timescales``: 1, 2 or
          NaN;
        - ``tau_net``: slowest timescale of the selected model; ``r2``: its coefficient of
          determination on the fitted lags;
        - ``noise_fraction``: ``1 - a`` of the selected model, the fraction of the lag-0
          autocovariance outside its exponentials (observation noise; about 0 on clean data);
          ``noise_term``: 1 where the selected model has the lag-0 noise term, else 0 (the
          single and double fit variables above are those of the family selected: with the
          term, fitted from lag 1);
        - ``status``: one of :data:`STATUS` (``"ok"`` when nothing needs saying; ``"short"``
          when the trials are too short for the fitted timescale, see ``min_length_ratio``;
          ``"lag0_noise"``: the single model with a lag-0 noise term, the drop at lag 0 being
          observation noise, not a second timescale).

        Timescales are in the units of the lag coordinate. Attributes record the parameters.

    Examples
    --------
    >>> import numpy as np, xarray as xr, dynatools as dt
    >>> lag = np.arange(31.0)
    >>> acf = xr.DataArray(np.exp(-lag / 4.0)[None], dims=("unit", "lag"), coords={"lag": lag})
    >>> res = dt.fit_timescales(acf)
    >>> round(float(res.tau_net[0]), 6), str(res.selected_model[0].values)
    (4.0, 'single')

    A drop at lag 0 (here 40% of the variance is noise) is not a second timescale:

    >>> noisy = acf.where(acf.lag == 0, 0.6 * acf)
    >>> res = dt.fit_timescales(noisy)
    >>> round(float(res.tau_net[0]), 6), round(float(res.noise_fraction[0]), 6), str(res.status[0].values)
    (4.0, 0.4, 'lag0_noise')
    """
    return _fit_timescales(
        acf, None, fit_lag=fit_lag, criterion=criterion, reference=reference, lag_dim=lag_dim,
        tau_max=tau_max, min_weight=min_weight, min_ratio=min_ratio, noise_z=noise_z,
        n_samples=n_samples, min_length_ratio=min_length_ratio, errors=errors, lag0=lag0,
        min_timescale=min_timescale,
    )


def _fit_timescales(
    acf: xr.DataArray,
    nonfinite: xr.DataArray | None,
    *,
    fit_lag: int,
    criterion: str,
    reference: bool,
    lag_dim: str,
    tau_max: float | None,
    min_weight: float,
    min_ratio: float,
    noise_z: float | None,
    n_samples: float | None,
    min_length_ratio: float | None,
    errors: str,
    lag0: str | None = None,
    min_timescale: float | None = None,
) -> xr.Dataset:
    """:func:`fit_timescales`; ``nonfinite`` (boolean, over the non-lag dims of ``acf``) marks the
    units whose activity was not finite: status ``nonfinite`` instead of ``constant``."""
    if not isinstance(acf, xr.DataArray):
        raise TypeError(
            f"acf must be an xarray.DataArray with a {lag_dim!r} dim (e.g. from "
            f"dynatools.autocorrelation); found {type(acf).__name__}."
        )
    check_core_dims(acf, [lag_dim])
    fit_lag = check_positive_int("fit_lag", fit_lag, minimum=4)
    check_choice("criterion", criterion, ("aic", "bic"))
    check_choice("errors", errors, ("ignore", "raise"))
    if reference and criterion != "aic":
        raise ValueError("reference=True reproduces the authors' AIC selection; use criterion='aic'.")
    if lag0 is not None:
        check_choice("lag0", lag0, _expfit.LAG0)
        if reference:
            raise ValueError(f"reference=True fits lag 0 as the authors do (no lag-0 noise term); leave lag0 "
                             f"unset, or pass reference=False to use lag0={lag0!r}.")
    lag0 = LAG0_DEFAULT if lag0 is None else lag0
    if acf.sizes[lag_dim] < fit_lag + 1:
        raise ValueError(
            f"fit_lag={fit_lag} needs lags 0..{fit_lag}, but acf has {acf.sizes[lag_dim]} lags. "
            f"Compute the autocorrelation with max_lag >= {fit_lag} or lower fit_lag."
        )
    if not (0 <= min_weight < 0.5):
        raise ValueError(f"min_weight must be in [0, 0.5); found {min_weight}.")
    if not min_ratio >= 1:
        raise ValueError(f"min_ratio must be >= 1; found {min_ratio}.")
    spacing, units = _lag_spacing(acf, lag_dim)
    if lag_dim in acf.coords and float(acf[lag_dim][0]) != 0:
        raise ValueError(f"the first {lag_dim!r} must be 0 (AC[0] normalises the fit); found {float(acf[lag_dim][0])}.")
    if tau_max is None:
        tau_max = TAU_MAX_STEPS * spacing
    tau_max = float(tau_max)
    if not (math.isfinite(tau_max) and tau_max > spacing * 1e-6):
        raise ValueError(f"tau_max must be a positive finite number; found {tau_max}.")
    min_timescale = spacing if min_timescale is None else min_timescale
    if not (isinstance(min_timescale, (int, float, np.number)) and math.isfinite(min_timescale)
            and 0 < min_timescale < tau_max):
        raise ValueError(f"min_timescale must be a positive number below tau_max ({tau_max:g}), in the units of "
                         f"the {lag_dim!r} coordinate (default: one lag step, {spacing:g}); found {min_timescale!r}.")
    min_timescale = float(min_timescale)
    lazy = is_dask(acf)
    if n_samples is not None and not (np.isfinite(n_samples) and n_samples > 0):
        raise ValueError(f"n_samples must be a positive number (trials x time steps); found {n_samples}.")
    if noise_z is not None and not noise_z > 0:
        raise ValueError(f"noise_z must be a positive number or None; found {noise_z}.")
    if min_length_ratio is not None and not (math.isfinite(min_length_ratio) and min_length_ratio > 0):
        raise ValueError(f"min_length_ratio must be a positive number (trial length / tau_net) or None; "
                         f"found {min_length_ratio}.")
    if n_samples is None and "n_time" in acf.attrs and "n_trials" in acf.attrs:
        n_samples = float(acf.attrs["n_time"]) * float(acf.attrs["n_trials"])
    # trial length in the units of the lag coordinate, for the rule on short trials
    duration = float(acf.attrs["n_time"]) * spacing if "n_time" in acf.attrs else None
    short_rule = min_length_ratio is not None and duration is not None
    t = np.arange(fit_lag + 1) * spacing
    acf_fit = acf.isel({lag_dim: slice(0, fit_lag + 1)})
    acf_fit = acf_fit.drop_vars([c for c in acf_fit.coords if lag_dim in acf_fit[c].dims])

    def kernel(y: np.ndarray, *mask: np.ndarray) -> np.ndarray:
        lead = y.shape[:-1]
        y2 = np.asarray(y, dtype=np.float64).reshape(-1, y.shape[-1])
        with np.errstate(invalid="ignore", divide="ignore"):
            y0 = y2[:, :1]
            yn = np.where(y0 > 0, y2 / y0, np.nan)
        partial = np.isfinite(y2).any(axis=1) & ~np.isfinite(yn).all(axis=1) & (y0[:, 0] > 0)
        if partial.any():
            raise ValueError(
                f"{int(partial.sum())} autocorrelation(s) contain NaN or inf at some lags; "
                f"compute them from finite activity."
            )
        res = _expfit.fit_and_select(
            yn, t, tau_max=tau_max, criterion=criterion, reference=reference,
            min_weight=min_weight, min_ratio=min_ratio, noise_z=noise_z, n_samples=n_samples,
            lag0=lag0, min_timescale=min_timescale,
        )
        status = res[:, -1].astype(np.int64)
        if mask:
            status[np.broadcast_to(mask[0], lead).reshape(-1)] = _CODE["nonfinite"]
        if short_rule:
            credible = np.isin(status, [_CODE[name] for name in RELIABLE])
            with np.errstate(invalid="ignore"):
                status[credible & (duration < min_length_ratio * res[:, _FIELD["tau_net"]])] = _CODE["short"]
        res[:, -1] = status
        n_failed = int(np.sum(status == _CODE["failed"]))
        if errors == "raise" and n_failed:
            raise RuntimeError(
                f"{n_failed} unit(s) could not be fitted by either model; pass errors='ignore' "
                f"to get NaN and status 'failed' for them instead."
            )
        n_const = int(np.sum(status == _CODE["constant"]))
        if lazy and n_const:
            _warn(f"{n_const} unit(s) have zero variance (constant activity); their fits are NaN "
                  f"with status 'constant'.")
        n_short = int(np.sum(status == _CODE["short"]))
        if lazy and n_short:
            _warn_short(f"{n_short} unit(s)", duration, min_length_ratio, spacing)
        return res.reshape(lead + (len(_expfit.FIELDS),))

    extra = [] if nonfinite is None else [nonfinite]
    packed = _along_last(kernel, acf_fit, extra, lag_dim, "_field", len(_expfit.FIELDS))
    out = xr.Dataset({name: packed.isel(_field=i, drop=True) for i, name in enumerate(_expfit.FIELDS)})
    code = out["status"]
    names = np.array(STATUS)
    out["status"] = xr.apply_ufunc(
        lambda c: names[c.astype(np.int64)], code, dask="parallelized", output_dtypes=[names.dtype]
    )
    out["selected_model"] = xr.apply_ufunc(
        lambda n: np.where(n == 2, "double", np.where(n == 1, "single", "none")),
        out["n_timescales"],
        dask="parallelized",
        output_dtypes=[np.dtype("<U6")],
    )
    for name in ("tau_single", "tau_fast", "tau_slow", "tau_net"):
        out[name].attrs["units"] = units if units is not None else f"units of the {lag_dim!r} coordinate"
    out["tau_net"].attrs["long_name"] = "network-mediated timescale (slowest of the selected model)"
    out["weight_fast"].attrs["long_name"] = "weight c of the fast component"
    out["noise_fraction"].attrs["long_name"] = ("fraction of the lag-0 autocovariance outside the selected model's "
                                                "exponentials (1 - amplitude): observation noise")
    out["noise_term"].attrs["long_name"] = ("1 where the selected model has a lag-0 noise term (fitted from lag 1), "
                                            "0 where lag 0 was fitted as a data point")
    out["status"].attrs["values"] = ", ".join(STATUS)
    out.attrs = {
        "fit_lag": fit_lag,
        "criterion": criterion,
        "reference": int(reference),
        "tau_max": tau_max,
        "min_weight": min_weight if not reference else np.nan,
        "min_ratio": min_ratio if not reference else np.nan,
        "noise_z": noise_z if (noise_z is not None and n_samples is not None and not reference) else np.nan,
        "n_samples": n_samples if n_samples is not None else np.nan,
        "min_length_ratio": min_length_ratio if short_rule else np.nan,
        "lag0": lag0 if not reference else "include (reference)",
        "min_timescale": min_timescale if not reference else np.nan,
        "reference_paper": "Khajehabdollahi, Zeraati et al., ICLR 2024, Sec. 2",
    }
    if not is_dask(code):
        _warn_constant(out["status"] == "constant", "unit", "their fits are NaN with status 'constant'")
        short = out["status"] == "short"
        if bool(short.any()):
            _warn_short(_units_text(short, "unit", f"{int(short.sum())} fit(s)"), duration, min_length_ratio, spacing)
    return out


def _warn_short(what: str, duration: float, ratio: float, spacing: float) -> None:
    """Warn that ``what`` have a tau_net too long for trials of ``duration`` (lag units)."""
    _warn(f"{what} have tau_net > 1/{ratio:g} of the trial length ({duration / spacing:g} steps): "
          f"removing each trial's mean biases such timescales low (status 'short'; Zeraati et al. "
          f"2022). Record longer trials (T >= {ratio:g} x tau_net; more trials reduce the noise, "
          f"not this bias), or pass min_length_ratio=None to keep status 'ok'.")


def timescales(
    recording: Any,
    *,
    max_lag: int | None = None,
    fit_lag: int = 30,
    criterion: Literal["aic", "bic"] = "aic",
    reference: bool = False,
    population: bool = False,
    time_dim: str = "time",
    trial_dim: str = "trial",
    unit_dim: str = "unit",
    dtype: Literal["float32", "float64"] | None = None,
    min_length_ratio: float | None = MIN_LENGTH_RATIO,
    errors: Literal["ignore", "raise"] = "ignore",
    progress: bool = False,
    **fit_kwargs: Any,
) -> xr.Dataset:
    """Autocorrelations and fitted timescales in one call.

    Runs :func:`autocorrelation` then :func:`fit_timescales`; the result holds both (variable
    ``autocorrelation`` with dims ``(unit, lag)``) and the recording's per-unit coordinates (e.g.
    the trained ``tau``), so ``tau_net`` can be compared with them directly.

    One bad unit never stops the analysis (with the default ``errors="ignore"``): a unit whose
    activity holds NaN or inf gets NaN results and status ``"nonfinite"``, a constant unit status
    ``"constant"``, a unit whose timescale is too long for the trials status ``"short"``, each
    with a ``RuntimeWarning`` naming the units; the other units are unaffected. The results do
    not depend on the units of the activity (float32 at 1e-30 or 1e30 included).

    Parameters
    ----------
    recording : xarray.Dataset, xarray.DataArray or ndarray
        See :func:`autocorrelation`.
    max_lag : int, optional
        Lags to compute and store; default ``max(fit_lag, 200)`` capped at T - 1.
    fit_lag, criterion, reference : see :func:`fit_timescales`.
    population, time_dim, trial_dim, unit_dim, progress : see :func:`autocorrelation`.
    dtype : {"float32", "float64"}, optional
        Precision of the autocorrelation's FFT (see :func:`autocorrelation`); default that of
        the data. Not needed for data at extreme scales, which are rescaled exactly.
    min_length_ratio : float or None, default=50
        Status ``"short"`` where the trial length is below this many ``tau_net`` (see
        :func:`fit_timescales`; Zeraati et al. 2022). None disables the rule.
    errors : {"ignore", "raise"}, default="ignore"
        With "raise", NaN or inf in the activity raises a ``ValueError`` naming the units and
        trials, and a unit that neither model fits a ``RuntimeError``; with "ignore" they get NaN
        results and status ``"nonfinite"`` or ``"failed"``.
    **fit_kwargs
        More options of :func:`fit_timescales` (``tau_max``, ``min_weight``, ``min_ratio``,
        ``noise_z``, ``n_samples``, ``lag0``, ``min_timescale``).

    Returns
    -------
    xarray.Dataset
        The :func:`fit_timescales` result, with ``status`` one of :data:`STATUS`, plus the
        variable ``autocorrelation``.

    Examples
    --------
    >>> import dynatools as dt
    >>> rec = dt.open_recording(dt.demo_path())
    >>> res = dt.timescales(rec)
    >>> sorted(res.data_vars)[:3]
    ['amplitude_double', 'amplitude_single', 'autocorrelation']

    A unit with a NaN sample gets status ``"nonfinite"``; the others are analysed as before:

    >>> import numpy as np, warnings
    >>> act = rec.activity.copy()
    >>> act[0, 5, 3] = np.nan
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     bad = dt.timescales(act)
    >>> str(bad.status.sel(unit=3).values), bool(bad.tau_net.drop_sel(unit=3).equals(res.tau_net.drop_sel(unit=3)))
    ('nonfinite', True)
    """
    da = as_activity(recording)
    check_choice("errors", errors, ("ignore", "raise"))
    lengths = trial_lengths(da, trial_dim=trial_dim, time_dim=time_dim)
    n_valid = int(lengths.max()) if lengths is not None else da.sizes.get(time_dim, 0)
    if time_dim in da.dims and n_valid <= fit_lag:
        raise ValueError(
            f"the recording has {n_valid} samples along {time_dim!r}"
            + (" in its longest trial (trial_length)" if lengths is not None else "")
            + f", but fit_lag={fit_lag} needs at least {fit_lag + 1}. Lower fit_lag or record longer (for "
            f"unbiased timescales, many times the longest timescale)."
        )
    if time_dim in da.dims and max_lag is None:
        max_lag = min(max(fit_lag, 200), n_valid - 1)
    elif max_lag is None:
        max_lag = fit_lag
    ac, nonfinite = _autocorrelation(
        da, max_lag=max_lag, time_dim=time_dim, trial_dim=trial_dim, unit_dim=unit_dim,
        population=population, normalize=True, dtype=dtype, errors=errors, progress=progress,
        consequence="their timescales are NaN with status 'nonfinite'",
    )
    # fit_timescales' own defaults for the options not given here
    options = {k: v.default for k, v in inspect.signature(fit_timescales).parameters.items() if k != "acf"}
    explicit = dict(fit_lag=fit_lag, criterion=criterion, reference=reference, lag_dim="lag",
                    min_length_ratio=min_length_ratio, errors=errors)
    unknown = sorted(set(fit_kwargs) - (set(options) - set(explicit)))
    if unknown:
        raise TypeError(f"timescales() got unexpected keyword argument(s) {unknown}; the options of "
                        f"fit_timescales it passes on are {sorted(set(options) - set(explicit))}.")
    options.update(fit_kwargs, **explicit)
    with warnings.catch_warnings():
        # autocorrelation already warned about constant units
        warnings.filterwarnings("ignore", message=".*zero variance.*", category=RuntimeWarning)
        fit = _fit_timescales(ac, nonfinite, **options)
    out = fit.assign(autocorrelation=ac)
    out.attrs.update({"max_lag": max_lag, "population": int(population), "n_time": ac.attrs["n_time"], "n_trials": ac.attrs["n_trials"]})
    if isinstance(recording, xr.Dataset):
        for key in ("model", "task", "curriculum", "N", "seed"):
            if key in recording.attrs:
                value = recording.attrs[key]
                if isinstance(value, np.generic):
                    value = value.item()
                out.attrs[f"recording_{key}"] = value if isinstance(value, (str, int, float)) and not isinstance(value, bool) else json.dumps(value)
    return out
