"""Dimensionality of population activity: PCA component counts and the participation ratio.

Timescale paper (Khajehabdollahi et al., ``shared/seeds/000_*``), Sec. 4.2 and Fig. 6b: the
dimensionality of a network's activity is the number of principal components needed to explain
90% of its variance. The authors' analysis code reports that number minus one; it is available
under the honestly named option ``report="n_components_minus_one"``. The participation ratio
``(sum_i lambda_i)^2 / sum_i lambda_i^2`` of the covariance eigenvalues (Gao et al. 2017) is the
threshold-free companion measure.

The covariance is accumulated in float64 over chunks of time, so 1e5-step recordings, lazily
opened netCDF files and dask-backed data are read one chunk at a time and never held whole. The
data are divided by a power of two (exactly) before the products, so the measures, which are
scale-invariant, come out the same for activity of any magnitude, 1e-300 or 1e300 included.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import xarray as xr

from dynatools._batch import over_batch
from dynatools._validation import as_activity, check_choice, check_core_dims, check_positive_int

#: What :func:`pca_dimensionality` reports.
REPORTS = ("n_components", "n_components_minus_one")


class _Moments:
    """Running sum and sum of outer products over time of ``x / 2**exponent - shift``.

    The data are scaled by a power of two (exact) chosen from the first non-zero block, so that
    1e200 or 1e-200 activity neither overflows nor underflows in the products; a later block far
    larger than that rescales the sums already taken (again by a power of two). ``shift`` (the
    first block's mean, in scaled units) keeps the sums well conditioned when the mean is large
    compared with the fluctuations. Covariances and magnitudes are reported in scaled units: the
    measures built on them (counts, ratios) are scale-invariant."""

    def __init__(self, n: int) -> None:
        self.s1, self.s2, self.count = np.zeros(n), np.zeros((n, n)), 0
        self.shift: np.ndarray | None = None
        self.exponent: int | None = None

    def add(self, block: np.ndarray) -> None:
        peak = float(np.abs(block).max()) if block.size else 0.0
        if peak > 0:
            e = int(np.frexp(peak)[1])                 # peak / 2**e in [0.5, 1)
            if self.exponent is None:
                self.exponent = e
            elif e > self.exponent + 64:               # far larger than what was summed so far
                d = self.exponent - e
                self.s1, self.s2 = np.ldexp(self.s1, d), np.ldexp(self.s2, 2 * d)
                if self.shift is not None:
                    self.shift = np.ldexp(self.shift, d)
                self.exponent = e
        block = np.ldexp(block, -(self.exponent or 0))  # a new array: never the caller's
        if self.shift is None:
            self.shift = block.mean(0)
        block -= self.shift
        self.s1 += block.sum(0)
        self.s2 += block.T @ block
        self.count += len(block)

    def covariance(self) -> np.ndarray:
        mean = self.s1 / self.count
        return (self.s2 - self.count * np.outer(mean, mean)) / max(self.count - 1, 1)

    def magnitude(self) -> float:
        """Largest absolute mean (scaled units), for the zero-variance test."""
        return float(np.abs(self.shift + self.s1 / self.count).max())


def _moments(x: xr.DataArray, time_dim: str, unit_dim: str, chunk: int, acc: _Moments | None = None,
             tick: Callable[[], Any] | None = None) -> _Moments:
    """Accumulate the moments over ``time_dim`` of ``x`` ((time, unit) DataArray) into ``acc``
    (a new one by default), read by chunks."""
    acc = _Moments(x.sizes[unit_dim]) if acc is None else acc
    T = x.sizes[time_dim]
    for start in range(0, T, chunk):
        block = np.asarray(x.isel({time_dim: slice(start, start + chunk)}).transpose(time_dim, unit_dim).values,
                           dtype=np.float64)
        if not np.all(np.isfinite(block)):
            raise ValueError(f"activity contains NaN or inf (in {time_dim} {start}..{start + len(block) - 1}); "
                             f"drop or interpolate those samples first, e.g. activity.dropna('{time_dim}').")
        acc.add(block)
        if tick is not None:
            tick()
    return acc


def _count(eigenvalues: np.ndarray, threshold: float) -> int:
    """Fewest leading eigenvalues whose share of the total reaches ``threshold`` (with a 1e-12
    tolerance, so that e.g. 3 of 4 equal eigenvalues reach 0.75)."""
    lam = np.clip(np.sort(eigenvalues)[::-1], 0.0, None)
    share = np.cumsum(lam) / lam.sum()
    return int(np.searchsorted(share, threshold - 1e-12) + 1)


def _participation_ratio(cov: np.ndarray) -> float:
    """``tr(C)^2 / tr(C^2)`` = ``(sum lambda)^2 / sum lambda^2`` without an eigendecomposition."""
    return float(np.trace(cov) ** 2 / np.sum(cov * cov))


def _prepare(activity: Any, dims: dict[str, str], per: str = "trial") -> tuple[xr.DataArray, list[str]]:
    """Activity as a DataArray with a trial dim (a missing one is added) and the names of its
    batch dims (any dim besides trial, time and unit, e.g. an ensemble's ``member``); warns when
    there are fewer samples per covariance than units (a transposed array looks like that)."""
    da = as_activity(activity)
    time_dim, unit_dim, trial_dim = dims["time"], dims["unit"], dims["trial"]
    check_core_dims(da, [time_dim, unit_dim])
    batch = [str(d) for d in da.dims if d not in (time_dim, unit_dim, trial_dim)]
    if trial_dim not in da.dims:
        da = da.expand_dims(trial_dim)
    if da.sizes[time_dim] < 2:
        raise ValueError(f"activity has {da.sizes[time_dim]} time step(s); a covariance needs at least 2.")
    from dynatools.recording import trial_lengths

    lengths = trial_lengths(da, trial_dim=trial_dim, time_dim=time_dim)     # padded trials: valid steps
    if lengths is None:
        samples = da.sizes[time_dim] * (da.sizes[trial_dim] if per == "pooled" else 1)
    else:
        samples = int(lengths.sum()) if per == "pooled" else int(lengths.min())
        if per == "trial" and samples < 2:
            raise ValueError(f"a trial has {samples} valid time step (trial_length); a covariance needs at least 2. "
                             f"Drop the shortest trials, e.g. activity.isel(trial=activity.trial_length >= 2).")
    if samples <= da.sizes[unit_dim]:
        warnings.warn(f"{samples} samples per covariance for {da.sizes[unit_dim]} units: the covariance has "
                      f"rank < {samples}, so at most {samples - 1} components carry variance. Record longer "
                      f"(or, if the array is (unit, time), pass dims in the right order).", stacklevel=3)
    return da, batch


def _covariances(da: xr.DataArray, per: str, dims: dict[str, str], chunk: int,
                 tick: Callable[[], Any] | None = None):
    """Yield (trial index or None, covariance, mean magnitude) per trial (``per="trial"``) or once
    (``"pooled"``), both in the units of the data divided by a power of two (see :class:`_Moments`)."""
    time_dim, unit_dim, trial_dim = dims["time"], dims["unit"], dims["trial"]
    from dynatools.recording import trial_lengths

    lengths = trial_lengths(da, trial_dim=trial_dim, time_dim=time_dim)   # padded trials: valid part only
    trials = [da.isel({trial_dim: i} if lengths is None else {trial_dim: i, time_dim: slice(0, int(lengths[i]))})
              for i in range(da.sizes[trial_dim])]
    if per == "trial":
        for i, x in enumerate(trials):
            acc = _moments(x, time_dim, unit_dim, chunk, tick=tick)
            yield i, acc.covariance(), acc.magnitude()
    else:
        acc = None
        for x in trials:
            acc = _moments(x, time_dim, unit_dim, chunk, acc, tick=tick)
        yield None, acc.covariance(), acc.magnitude()


def _progress_bar(progress: bool, da: xr.DataArray, dims: dict[str, str], chunk: int, desc: str):
    """A tqdm bar over the time chunks read (all trials and batch entries), or None."""
    if not progress:
        return None
    from tqdm.auto import tqdm

    n_chunks = -(-da.sizes[dims["time"]] // chunk)
    others = int(np.prod([n for d, n in da.sizes.items() if d not in (dims["time"], dims["unit"])]))
    return tqdm(total=n_chunks * others, desc=desc, unit="chunk")


def _trial_coords(da: xr.DataArray, per: str, trial_dim: str) -> dict[str, Any]:
    return {trial_dim: da[trial_dim].values} if per == "trial" and trial_dim in da.coords else {}


def _check_variance(cov: np.ndarray, scale: float, where: str) -> None:
    """Refuse activity whose variance is zero up to rounding relative to its mean ``scale``
    (both in the scaled units of :class:`_Moments`, where the data's peak is about 1)."""
    if not np.trace(cov) > cov.shape[0] * (1e-10 * max(1.0, scale)) ** 2:
        raise ValueError(f"activity has zero variance {where}; dimensionality is undefined for a "
                         f"constant recording (did the network's activity die out or saturate?).")


def pca_dimensionality(activity: Any, threshold: float = 0.9, *, per: Literal["trial", "pooled"] = "trial",
                       report: Literal["n_components", "n_components_minus_one"] = "n_components",
                       time_dim: str = "time", unit_dim: str = "unit", trial_dim: str = "trial",
                       chunk: int = 20_000, progress: bool = False) -> xr.Dataset:
    """Number of principal components needed to explain ``threshold`` of the variance.

    Timescale paper, Sec. 4.2 and Fig. 6b (dimensionality of the activity vs N).

    Parameters
    ----------
    activity : Dataset, DataArray or array
        A recording (its ``activity``) or activity with dims ``(trial, time, unit)``; ``trial`` may
        be absent. Any other dim (e.g. ``member`` of an ensemble) is a batch dim: each of its
        entries is analysed on its own and the dim is kept, leading, in the result. Lazily
        loaded and dask-backed data are read chunk by chunk. Trials padded at the end
        (coordinate ``trial_length``, docs/recording-schema.md) use their valid samples only.
    threshold : float, default=0.9
        Fraction of the total variance to explain, in (0, 1].
    per : {"trial", "pooled"}, default="trial"
        ``"trial"``: one covariance (and count) per trial, each about its own mean. ``"pooled"``:
        one covariance of all trials' samples together, about the grand mean.
    report : {"n_components", "n_components_minus_one"}, default="n_components"
        ``"n_components_minus_one"`` reproduces the authors' analysis code, which reports the
        count minus one.
    time_dim, unit_dim, trial_dim : str
        Dimension names.
    chunk : int, default=20000
        Time steps read at once.
    progress : bool, default=False
        Show a progress bar over the chunks read.

    Returns
    -------
    xarray.Dataset
        ``dimensionality`` (int; dim ``trial`` when ``per="trial"``), ``participation_ratio``
        and ``explained_variance_ratio`` (dims ``[trial,] component``, sorted, summing to 1),
        each with the batch dims first; attrs ``threshold``, ``per``, ``report``.

    Examples
    --------
    >>> import numpy as np
    >>> from dynatools.dimensionality import pca_dimensionality
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((2, 5000, 10)) @ np.diag([1.0] * 4 + [0.0] * 6)  # 4-D data in 10 units
    >>> pca_dimensionality(x).dimensionality.values
    array([4, 4])
    """
    if isinstance(threshold, bool) or not (isinstance(threshold, numbers.Real) and 0 < threshold <= 1):
        raise ValueError(f"threshold must be a fraction in (0, 1]; found {threshold!r}.")
    check_choice("per", per, ("trial", "pooled"))
    check_choice("report", report, REPORTS)
    chunk = check_positive_int("chunk", chunk)
    dims = {"time": time_dim, "unit": unit_dim, "trial": trial_dim}
    da, batch = _prepare(activity, dims, per)
    bar = _progress_bar(progress, da, dims, chunk, "pca_dimensionality")

    def one(x: xr.DataArray, where: str) -> xr.Dataset:
        counts, prs, ratios = [], [], []
        for label, cov, scale in _covariances(x, per, dims, chunk, bar.update if bar else None):
            _check_variance(cov, scale, f"in {where}{trial_dim} {label}" if label is not None
                            else (f"in {where[:-2]}" if where else ""))
            lam = np.clip(np.linalg.eigvalsh(cov)[::-1], 0.0, None)
            counts.append(_count(lam, float(threshold)) - (report == "n_components_minus_one"))
            prs.append(_participation_ratio(cov))
            ratios.append(lam / lam.sum())
        lead = [trial_dim] if per == "trial" else []
        pick = (lambda v: np.asarray(v)) if per == "trial" else (lambda v: np.asarray(v)[0])
        return xr.Dataset(
            {"dimensionality": (lead, pick(counts)),
             "participation_ratio": (lead, pick(prs)),
             "explained_variance_ratio": (lead + ["component"], pick(ratios))},
            coords={"component": np.arange(1, len(ratios[0]) + 1), **_trial_coords(x, per, trial_dim)},
            attrs={"threshold": float(threshold), "per": per, "report": report,
                   "method": "eigenvalues of the float64 covariance over time (Fig. 6b of the timescale paper)"},
        )

    try:
        return over_batch(da, batch, one)
    finally:
        if bar is not None:
            bar.close()


def participation_ratio(activity: Any, *, per: Literal["trial", "pooled"] = "trial", time_dim: str = "time",
                        unit_dim: str = "unit", trial_dim: str = "trial", chunk: int = 20_000,
                        progress: bool = False) -> xr.DataArray:
    """Participation ratio ``(sum_i lambda_i)^2 / sum_i lambda_i^2`` of the covariance eigenvalues.

    Equals d for activity spread evenly over d dimensions and 1 for one dimension; computed as
    ``tr(C)^2 / ||C||_F^2`` (no eigendecomposition).

    Parameters
    ----------
    activity, per, time_dim, unit_dim, trial_dim, chunk, progress
        As in :func:`pca_dimensionality` (other dims are batch dims, kept).

    Returns
    -------
    xarray.DataArray
        ``participation_ratio``, dim ``trial`` when ``per="trial"``, batch dims first.

    Examples
    --------
    >>> import numpy as np
    >>> from dynatools.dimensionality import participation_ratio
    >>> x = np.kron(np.ones((50, 1)), np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]], float))
    >>> float(participation_ratio(x, per="pooled"))   # covariance proportional to I_2
    2.0
    """
    check_choice("per", per, ("trial", "pooled"))
    chunk = check_positive_int("chunk", chunk)
    dims = {"time": time_dim, "unit": unit_dim, "trial": trial_dim}
    da, batch = _prepare(activity, dims, per)
    bar = _progress_bar(progress, da, dims, chunk, "participation_ratio")

    def one(x: xr.DataArray, where: str) -> xr.DataArray:
        values = []
        for label, cov, scale in _covariances(x, per, dims, chunk, bar.update if bar else None):
            _check_variance(cov, scale, f"in {where}{trial_dim} {label}" if label is not None
                            else (f"in {where[:-2]}" if where else ""))
            values.append(_participation_ratio(cov))
        if per == "trial":
            return xr.DataArray(np.asarray(values), dims=[trial_dim], name="participation_ratio",
                                coords=_trial_coords(x, per, trial_dim))
        return xr.DataArray(values[0], name="participation_ratio")

    try:
        return over_batch(da, batch, one)
    finally:
        if bar is not None:
            bar.close()


__all__ = ["pca_dimensionality", "participation_ratio", "REPORTS"]
