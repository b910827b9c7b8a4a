"""Dynamics misalignment: how far a modified simulation's activity is from the true one.

Skip-connection paper (Soo, Goudar & Wang, NeurIPS 2023, ``shared/seeds/002_*``), Sec. 3.4 and
Fig. 3B: a rate network simulated without skip connections and at its base time step gives the
*true* dynamics; the same network simulated with a coarser step (CD) or with skip connections
(SCTT, DASC) gives *modified* dynamics. The misalignment is the normalised mean-squared error

    NMSE = sum_{trial, time, unit} (r_modified - r_true)^2 / sum_{trial, time, unit} (r_true - <r_true>)^2

i.e. the mean-squared error divided by the variance of the true activity over the same dims
(``<.>`` the mean over them). 0: identical activity; 1: no better than the true activity's mean.
The paper says "normalized mean-squared error" without its normalisation; dividing by the true
activity's variance is our choice (recorded in the result's ``normalisation`` attribute).

A coarse-step simulation recorded at every theta-th base step is compared at its own times: when
the modified recording's times are a subset of the true recording's, the true activity is taken
at those times.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from dynatools._validation import as_activity

#: Relative tolerance for matching the modified recording's times to the true recording's.
TIME_RTOL = 1e-9


def _grid(t: np.ndarray) -> str:
    """A short description of a time grid for error messages."""
    if t.size == 0:
        return "no points"
    if t.size == 1:
        return f"1 point ({t[0]:g})"
    steps = np.diff(t.astype(float))
    step = f"step {steps[0]:g}" if np.allclose(steps, steps[0]) else f"uneven steps {steps.min():g}..{steps.max():g}"
    return f"{t.size} points from {t[0]:g} to {t[-1]:g} ({step})"


def _time_indices(a: xr.DataArray, b: xr.DataArray, time_dim: str) -> np.ndarray | None:
    """Indices into ``a``'s time of ``b``'s times (None: the same grid), or a ValueError."""
    ta = np.asarray(a[time_dim].values) if time_dim in a.coords else None
    tb = np.asarray(b[time_dim].values) if time_dim in b.coords else None
    na, nb = a.sizes[time_dim], b.sizes[time_dim]
    if ta is None or tb is None:
        if na == nb:
            return None                                  # compared position by position
        raise ValueError(
            f"true has {na} time steps and modified has {nb}, and "
            f"{'neither has' if ta is None and tb is None else 'only one has'} a '{time_dim}' coordinate "
            f"to match them by; give both recordings their times (dynatools.from_array(..., dt=...))."
        )
    ua, ub = a[time_dim].attrs.get("units"), b[time_dim].attrs.get("units")
    if ua is not None and ub is not None and ua != ub:
        raise ValueError(f"true's times are in {ua!r} and modified's in {ub!r}; record both in the same units "
                         f"(dynatools.from_array(..., time_units=...)).")
    if ta.shape == tb.shape and np.array_equal(ta, tb):
        return None
    if not (np.issubdtype(ta.dtype, np.number) and np.issubdtype(tb.dtype, np.number)):
        raise ValueError(f"'{time_dim}' coordinates differ and are not numeric (true {ta.dtype}, modified "
                         f"{tb.dtype}); give both recordings numeric times.")
    ta, tb = ta.astype(float), tb.astype(float)
    order = np.argsort(ta, kind="stable")
    pos = np.clip(np.searchsorted(ta[order], tb), 1, max(na - 1, 1))
    left, right = order[pos - 1], order[np.minimum(pos, na - 1)]
    nearest = np.where(np.abs(ta[left] - tb) <= np.abs(ta[right] - tb), left, right)
    scale = max(float(np.abs(ta).max()), float(np.abs(tb).max()))
    ok = np.abs(ta[nearest] - tb) <= TIME_RTOL * (scale if scale > 0 else 1.0)
    if not ok.all():
        bad = tb[~ok]
        raise ValueError(
            f"the time grids differ and modified's times are not a subset of true's: true has "
            f"{_grid(ta)}, modified has {_grid(tb)}; {bad.size} modified time(s) (first {bad[0]:g}) match no "
            f"true time within a relative tolerance of {TIME_RTOL:g}. Record the true dynamics on a grid that "
            f"contains the modified one (the base step, with theta-step runs recorded every theta steps), or "
            f"interpolate one onto the other first (e.g. modified.interp(time=true.time))."
        )
    if np.unique(nearest).size != nearest.size:
        raise ValueError(f"modified's times map onto the same true time more than once (modified has "
                         f"{_grid(tb)}); drop its duplicate times first.")
    return nearest


def _check_same_layout(a: xr.DataArray, b: xr.DataArray, time_dim: str) -> None:
    """Same dims; same sizes and coordinate values on every dim but ``time_dim``."""
    if set(a.dims) != set(b.dims):
        raise ValueError(f"true has dims {tuple(map(str, a.dims))} and modified has {tuple(map(str, b.dims))}; "
                         f"both recordings need the same dims (select or average the extra ones first).")
    for d in a.dims:
        if d == time_dim:
            continue
        if a.sizes[d] != b.sizes[d]:
            raise ValueError(f"true has {a.sizes[d]} {d}(s) and modified has {b.sizes[d]}; compare recordings of "
                             f"the same {d}s (e.g. modified.sel({d}=true.{d})).")
        if d in a.coords and d in b.coords and not np.array_equal(a[d].values, b[d].values):
            raise ValueError(f"the '{d}' coordinates differ (true {a[d].values[:5].tolist()}..., modified "
                             f"{b[d].values[:5].tolist()}...); compare the same {d}s in the same order, "
                             f"e.g. modified.sel({d}=true.{d}).")


def _check_finite(x: np.ndarray, name: str) -> None:
    if not np.all(np.isfinite(x)):
        n = int(np.size(x) - np.isfinite(x).sum())
        raise ValueError(f"{name} activity contains {n} NaN or inf value(s) where the recordings are compared; "
                         f"NMSE needs finite activity. Select the finite part first (padded trials: "
                         f"dynatools.select_period or .isel(time=slice(0, trial_length))).")


def activity_nmse(true: Any, modified: Any, *, dims: Sequence[str] = ("trial", "time", "unit"),
                  time_dim: str = "time") -> xr.DataArray:
    """Normalised mean-squared error between true and modified activity (dynamics misalignment).

    Skip-connection paper (Soo, Goudar & Wang 2023), Sec. 3.4 and Fig. 3B::

        nmse = sum_dims (modified - true)^2 / sum_dims (true - mean_dims(true))^2

    the mean-squared error over ``dims`` divided by the variance of the true activity over the
    same dims. 0 for identical activity, 1 for ``modified`` equal to the mean of ``true``.

    Parameters
    ----------
    true, modified : Dataset or DataArray
        Recordings (their ``activity``) or activity DataArrays with the same dims, e.g.
        ``(trial, time, unit)`` with an optional leading ``member``, and the same sizes and
        coordinates on every dim but time. ``true``: the network without skip connections at its
        base step; ``modified``: the same network simulated with CD, SCTT or DASC.
    dims : sequence of str, default=("trial", "time", "unit")
        The dims summed over. Every other dim (an ensemble's ``member``, a condition, ...) is a
        batch dim: one NMSE per entry, each normalised by its own variance, and the dim is kept.
    time_dim : str, default="time"
        The time dim. If the two ``time`` coordinates differ but modified's times are a subset of
        true's (within a relative tolerance of 1e-9 of the largest time), true is taken at
        modified's times: a theta-step simulation recorded every theta base steps is compared at
        its own steps, and the variance is that of true at those times.

    Returns
    -------
    xarray.DataArray
        ``nmse`` (float64) with the batch dims (in ``true``'s order and coordinates), a scalar
        without them; attrs ``description``, ``normalisation``, ``dims`` (comma-separated),
        ``n_time`` (time points compared) and ``reference``.

    Raises
    ------
    ValueError
        Different dims, sizes or coordinates (other than time); time grids of which neither is
        a subset of the other as above; NaN or inf in either activity where they are compared;
        true activity that is constant over ``dims`` (zero variance: the NMSE is undefined, so an
        error rather than inf or NaN; the message names the batch entry).

    Examples
    --------
    >>> import numpy as np, dynatools as dt
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((2, 40, 3))
    >>> true = dt.from_array(x)                                   # every base step
    >>> coarse = dt.from_array(x[:, ::10] + 0.1, dt=10.0)         # every 10th step, offset by 0.1
    >>> float(dt.activity_nmse(true, true))
    0.0
    >>> round(float(dt.activity_nmse(true, coarse) / (0.01 / x[:, ::10].var())), 6)
    1.0
    """
    a = as_activity(true)
    b = as_activity(modified)
    dims = (dims,) if isinstance(dims, str) else tuple(dims)
    if not dims:
        raise ValueError("dims is empty; name the dims to sum over, e.g. dims=('trial', 'time', 'unit').")
    _check_same_layout(a, b, time_dim)
    missing = [d for d in dims if d not in a.dims]
    if missing:
        raise ValueError(f"dims={dims!r}: {missing} not found in the activity's dims {tuple(map(str, a.dims))}; "
                         f"pass the dims to sum over that the data has (e.g. dims=('time', 'unit') for one "
                         f"trial), or rename them.")
    if time_dim in a.dims:
        idx = _time_indices(a, b, time_dim)
        if idx is not None:
            a = a.isel({time_dim: idx})
    batch = [str(d) for d in a.dims if d not in dims]
    order = batch + list(dims)
    x = np.asarray(a.transpose(*order).values, dtype=np.float64)
    y = np.asarray(b.transpose(*order).values, dtype=np.float64)
    _check_finite(x, "true")
    _check_finite(y, "modified")
    axes = tuple(range(len(batch), len(order)))
    err = np.sum((y - x) ** 2, axis=axes)
    var = np.sum((x - x.mean(axis=axes, keepdims=True)) ** 2, axis=axes)
    count = int(np.prod([x.shape[i] for i in axes]))
    scale = np.abs(x).max(axis=axes)
    constant = var <= count * (1e-12 * scale) ** 2            # zero up to rounding of the mean
    if np.any(constant):
        where = ""
        if batch:
            first = np.unravel_index(int(np.argmax(constant)), constant.shape)
            where = " at " + ", ".join(f"{d}={a[d].values[i].item()!r}" if d in a.coords else f"{d} index {i}"
                                       for d, i in zip(batch, first))
        raise ValueError(f"true activity is constant over {dims}{where} (zero variance), so the NMSE is undefined; "
                         f"compare the raw mean-squared error instead, or check that the true network's "
                         f"activity did not die out or saturate.")
    coords = {name: c for name, c in a.coords.items() if set(c.dims) <= set(batch)}
    return xr.DataArray(
        err / var, dims=batch, coords=coords, name="nmse",
        attrs={"description": "normalised mean-squared error between modified and true activity "
                              "(dynamics misalignment; 0: identical, 1: no better than the true mean)",
               "normalisation": "sum over dims of (true - mean over dims of true)^2, i.e. the MSE divided by "
                                "the variance of the true activity over the same dims",
               "dims": ",".join(dims),
               "n_time": int(a.sizes[time_dim]) if time_dim in a.dims else 1,
               "reference": "Soo, Goudar & Wang (NeurIPS 2023), Sec. 3.4, Fig. 3B"},
    )


__all__ = ["activity_nmse", "TIME_RTOL"]
