"""Power spectra of recording variables (Welch's method) and their characteristic frequency.

Residual-network paper (Dubinin & Effenberger 2024, ``shared/seeds/003_*``), Sec. 4.2 and Figs. 4
and 6B: the *characteristic frequency* of a data set is "the maximal peak of the average power
spectra of the samples" (for sMNIST ``phi_c = 2 pi / 28 ~ 0.22`` rad per step, the row length of
the images), and rotational residuals whose angle per step matches it (or a harmonic) learn
fastest. :func:`power_spectrum` computes that quantity on labeled recordings: the power spectral
density of every unit (or input channel), averaged over trials, the average of those spectra over
units, the spectrum of the population-averaged signal, and the frequency of the highest peak of
each (the *peak*, as 003 defines it, not the spectral centroid).

The spectra are Welch estimates (``scipy.signal.welch``: windowed, overlapping segments whose
periodograms are averaged; Welch 1967). Frequencies are in cycles per step, or in Hz when the
recording's time is in seconds (``time`` units ``"s"``, ``dt`` in seconds); 003's angle per step is
``2 pi`` times the frequency in cycles per step.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import xarray as xr

from dynatools._batch import over_batch
from dynatools._validation import (
    as_activity,
    check_choice,
    check_core_dims,
    check_positive_int,
    spacing_tolerance,
    user_stacklevel,
)

__all__ = ["power_spectrum", "plot_power_spectrum", "DEFAULT_NPERSEG"]

#: Welch segment length when ``nperseg`` is not given (scipy's default), capped at the shortest trial.
DEFAULT_NPERSEG = 256
#: Values of one variable read at once (trial x time x units), 16 MB in float64; Welch's segments,
#: windows and FFTs take about 6 times that while a block is analysed.
_BLOCK_VALUES = 2**21
#: The definition implemented, stored in the result's attributes.
_DEFINITION = ("frequency > 0 of the highest value of the power spectrum (its maximal peak): the characteristic "
               "frequency of Dubinin & Effenberger 2024, Sec. 4.2 (peak of the average power spectrum of the "
               "samples); angle per step = 2 pi x frequency in cycles/step")


def _time_spacing(da: xr.DataArray, time_dim: str, dt_attr: Any) -> tuple[float, str | None]:
    """Sampling interval and the units of time: from the time coordinate (schema: evenly spaced,
    ``units`` "step" or "s"), else sample indices (1 step: a recording's ``dt`` attribute is in the
    time coordinate's units, which are unknown without it)."""
    if time_dim not in da.coords:
        return 1.0, "step"
    coord = da[time_dim]
    if not np.issubdtype(coord.dtype, np.number):
        raise ValueError(f"coordinate {time_dim!r} has dtype {coord.dtype}; a spectrum needs numeric times. Convert it "
                         f"to steps or seconds (da.assign_coords({time_dim}=np.arange(T) * dt)) and set its "
                         f"attrs['units'] to 'step' or 's'.")
    units = coord.attrs.get("units")
    if da.sizes[time_dim] < 2:
        return (float(dt_attr) if dt_attr is not None else 1.0), units
    raw = np.asarray(coord.values)
    t = raw.astype(np.float64)
    step = float((t[-1] - t[0]) / (t.size - 1))
    if not step > 0 or not np.allclose(np.diff(t), step, rtol=1e-6, atol=spacing_tolerance(raw)):
        raise ValueError(f"coordinate {time_dim!r} is not evenly spaced and increasing (first steps "
                         f"{np.diff(t)[:3].tolist()}); Welch spectra need uniformly sampled data. Resample it, or "
                         f"drop the coordinate with da.drop_vars({time_dim!r}) to use sample indices.")
    return step, units


def _frequency_units(time_units: str | None) -> str:
    if time_units == "s":
        return "Hz"
    if time_units in (None, "step", "steps"):
        return "cycles/step"
    return f"cycles/{time_units}"


def _channel_dim(da: xr.DataArray, var: str, time_dim: str, trial_dim: str, unit_dim: str) -> str:
    """The dim that labels the series: ``unit_dim``, or for another variable (``input``:
    ``input_dim``) its one dim besides time, trial and an ensemble's ``member``."""
    if unit_dim in da.dims:
        return unit_dim
    others = [str(d) for d in da.dims if d not in (time_dim, trial_dim, "member")]
    if var != "activity" and len(others) == 1:
        return others[0]
    raise ValueError(f"Dimension(s) [{unit_dim!r}] not found in the data's dimensions {tuple(map(str, da.dims))}. "
                     f"Pass the names your data uses (e.g. unit_dim='neuron'), or rename with "
                     f"da.rename({{'your_name': '{unit_dim}'}}).")


def _n_segments(length: int, nperseg: int, noverlap: int) -> int:
    """Segments scipy's Welch averages over a series of ``length`` samples (no boundary padding)."""
    return (length - noverlap) // (nperseg - noverlap)


def _welch_trials(values: np.ndarray, lengths: np.ndarray, opts: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies and the trial average of the Welch spectra of ``values`` (trial, time, channel):
    each trial's valid part (``lengths``), weighted by its number of segments, so that the result
    is the mean periodogram of all segments of all trials. Returns (frequency,), (channel, frequency)."""
    from scipy.signal import welch

    total, weight, freqs = None, 0, None
    for length in np.unique(lengths):
        idx = np.flatnonzero(lengths == length)
        freqs, p = welch(values[idx, :length, :], axis=1, **opts)      # (trials, frequency, channel)
        w = _n_segments(int(length), opts["nperseg"], opts["noverlap"])
        part = p.sum(axis=0) * w
        total = part if total is None else total + part
        weight += w * idx.size
    return freqs, (total / weight).T


def _peak(power: np.ndarray, freqs: np.ndarray) -> np.ndarray:
    """Frequency > 0 of the largest value along the last axis; NaN where the power is zero or not finite."""
    positive = freqs > 0
    p = power[..., positive]
    f = freqs[positive]
    out = f[np.argmax(np.where(np.isfinite(p), p, -np.inf), axis=-1)].astype(np.float64)
    bad = ~(np.isfinite(p).all(axis=-1) & (p.max(axis=-1, initial=0.0) > 0))
    return np.where(bad, np.nan, out)


def _labels(da: xr.DataArray, dim: str, positions: np.ndarray) -> list:
    values = da[dim].values if dim in da.coords else np.arange(da.sizes[dim])
    return [v.item() if hasattr(v, "item") else v for v in values[positions][:5]]


def power_spectrum(
    data: Any,
    *,
    var: str = "activity",
    nperseg: int | None = None,
    noverlap: int | None = None,
    window: str | tuple | Sequence[float] = "hann",
    detrend: Literal["constant", "linear", False] = "constant",
    scaling: Literal["density", "spectrum"] = "density",
    chunk: int | None = None,
    time_dim: str = "time",
    trial_dim: str = "trial",
    unit_dim: str = "unit",
) -> xr.Dataset:
    """Welch power spectra of a recording variable per unit and for the population, averaged over
    trials, with the characteristic frequency (the spectrum's maximal peak).

    Residual-network paper (Dubinin & Effenberger 2024), Sec. 4.2, Figs. 4 and 6B: the
    characteristic frequency of the data is "the maximal peak of the average power spectra of the
    samples"; this function reports that peak (not a spectral centroid) for each unit, for the
    unit-averaged spectrum and for the spectrum of the population-averaged signal. Spectra are
    Welch estimates computed by ``scipy.signal.welch`` (Welch 1967).

    Parameters
    ----------
    data : Dataset, DataArray or array
        A recording (its variable ``var`` is used) or a DataArray with dims ``(trial, time,
        unit)``; ``trial`` may be absent (one trial). A plain array is read as ``(trial, time,
        unit)`` or ``(time, unit)``. Any other dim (an ensemble's ``member``) is a batch dim:
        each entry is analysed on its own and the dim is kept, leading. Trials padded at the end
        (coordinate ``trial_length``, docs/recording-schema.md) use their valid part only.
        Lazily opened and dask-backed data are read a block of units at a time (all trials and
        steps of those units), never whole.
    var : str, default="activity"
        The recording variable: ``"activity"``, ``"input"`` (its channels are ``input_dim``), or
        any variable over ``(trial, time, X)``; a variable without ``unit_dim`` is analysed over
        its one other dim.
    nperseg : int, optional
        Samples per Welch segment; the frequency resolution is ``1 / (nperseg * dt)``. Default:
        256 (scipy's), or the shortest trial when shorter. A given ``nperseg`` longer than the
        shortest trial is an error.
    noverlap : int, optional
        Samples shared by consecutive segments, ``0 <= noverlap < nperseg``; default
        ``nperseg // 2``.
    window : str, tuple or array, default="hann"
        Window of each segment, as ``scipy.signal.get_window`` reads it.
    detrend : {"constant", "linear", False}, default="constant"
        What is removed from each segment before its periodogram (``"constant"``: its mean).
    scaling : {"density", "spectrum"}, default="density"
        Power spectral density (units of the variable squared per frequency unit; integrates to
        the variance over frequency) or power spectrum (squared units), as in scipy.
    chunk : int, optional
        Units (channels) read at once; default: as many as fit 2**21 values (16 MB in float64)
        of ``trial x time`` each. The working memory is about 6 times a block.
    time_dim, trial_dim, unit_dim : str
        Dimension names.

    Returns
    -------
    xarray.Dataset
        On a dim ``frequency`` (one-sided, ``0 .. fs/2``, in cycles/step, or Hz when the time
        coordinate is in seconds; attribute ``units``), batch dims first:

        - ``power`` ``(unit, frequency)``: each unit's spectrum, the mean over trials (over all
          Welch segments of all trials);
        - ``mean_power`` ``(frequency)``: ``power`` averaged over units (003's "average power
          spectrum");
        - ``population_power`` ``(frequency)``: the spectrum of the population-averaged signal
          (the mean over units at each step);
        - ``characteristic_frequency`` ``(unit)``: the frequency > 0 of each unit's highest
          spectral value; NaN (with a ``RuntimeWarning``) for a unit with zero power;
        - ``mean_characteristic_frequency``: the same of ``mean_power`` (003's definition);
        - ``population_characteristic_frequency``: the same of ``population_power``.

        Per-unit coordinates of the input (``tau``, ``population``, ...) are kept. Attributes:
        ``variable``, ``nperseg``, ``noverlap``, ``window``, ``detrend``, ``scaling``, ``fs``,
        ``frequency_resolution``, ``n_segments`` (per unit, over all trials), ``definition``.

    Raises
    ------
    ValueError
        Missing dims, NaN or inf in the data (outside a trial's padding), ``nperseg`` longer than
        a trial, ``noverlap >= nperseg``, an unknown window, an unevenly spaced time coordinate.

    Examples
    --------
    >>> import numpy as np
    >>> from dynatools.spectra import power_spectrum
    >>> t = np.arange(4096)
    >>> x = np.sin(2 * np.pi * 0.125 * t)[None, :, None] * np.ones((2, 1, 3))   # (trial, time, unit)
    >>> res = power_spectrum(x, nperseg=128)
    >>> float(res.mean_characteristic_frequency)     # cycles per step
    0.125
    """
    from scipy.signal import get_window

    if isinstance(data, xr.Dataset) and var not in data.data_vars:
        raise ValueError(f"the recording has no variable {var!r} (it has {sorted(map(str, data.data_vars))}); pass "
                         f"var= one of those.")
    da = as_activity(data, variable=var)
    dt_attr = data.attrs.get("dt") if isinstance(data, xr.Dataset) else None
    check_core_dims(da, [time_dim])
    channel = _channel_dim(da, var, time_dim, trial_dim, unit_dim)
    if trial_dim not in da.dims:
        da = da.expand_dims(trial_dim)
    batch = [str(d) for d in da.dims if d not in (time_dim, trial_dim, channel)]
    n_time = da.sizes[time_dim]
    from dynatools.recording import trial_lengths

    lengths = trial_lengths(da, trial_dim=trial_dim, time_dim=time_dim)
    shortest = n_time if lengths is None else int(lengths.min())
    if shortest < 2:
        raise ValueError(f"the shortest trial has {shortest} sample along {time_dim!r}; a spectrum needs at least 2 "
                         f"(a segment of nperseg >= 2 samples). Record longer or drop that trial.")
    if nperseg is None:
        nperseg = min(DEFAULT_NPERSEG, shortest)
    else:
        nperseg = check_positive_int("nperseg", nperseg, minimum=2)
        if nperseg > shortest:
            which = f"the trials have {n_time} samples" if lengths is None else \
                f"the shortest trial has {shortest} valid samples (trial_length)"
            raise ValueError(f"nperseg={nperseg} is longer than the data: {which} along {time_dim!r}. Lower nperseg "
                             f"(at most {shortest}; the resolution is 1/(nperseg*dt)) or record longer trials.")
    if noverlap is None:
        noverlap = nperseg // 2
    else:
        noverlap = check_positive_int("noverlap", noverlap, minimum=0)
        if noverlap >= nperseg:
            raise ValueError(f"noverlap={noverlap} must be below nperseg={nperseg} (consecutive segments would not "
                             f"advance); use e.g. noverlap={nperseg // 2}.")
    if detrend is not False:
        check_choice("detrend", detrend, ("constant", "linear", False))
    check_choice("scaling", scaling, ("density", "spectrum"))
    try:
        win = get_window(window, nperseg) if isinstance(window, (str, tuple)) else np.asarray(window, dtype=np.float64)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"window={window!r} is not a window scipy.signal.get_window knows ({exc}); use e.g. "
                         f"'hann', 'hamming', ('tukey', 0.25), or an array of nperseg={nperseg} weights.") from exc
    if win.shape != (nperseg,):
        raise ValueError(f"window has shape {win.shape}; an array window must have nperseg={nperseg} weights.")
    if chunk is not None:
        chunk = check_positive_int("chunk", chunk)
    spacing, time_units = _time_spacing(da, time_dim, dt_attr)
    fs = 1.0 / spacing
    opts = {"fs": fs, "window": win, "nperseg": nperseg, "noverlap": noverlap, "detrend": detrend,
            "scaling": scaling, "return_onesided": True}
    all_lengths = np.full(da.sizes[trial_dim], n_time) if lengths is None else lengths
    da = da.transpose(*batch, trial_dim, time_dim, channel)
    zero_power: list[str] = []

    def one(x: xr.DataArray, where: str) -> xr.Dataset:
        n_trial, n_ch = x.sizes[trial_dim], x.sizes[channel]
        block = chunk or max(1, _BLOCK_VALUES // max(1, n_trial * n_time))
        valid = np.arange(n_time)[None, :] < all_lengths[:, None]               # (trial, time)
        pop_sum = np.zeros((n_trial, n_time))
        power, freqs = None, None
        flat = np.zeros(n_ch, dtype=bool)          # constant within every trial (up to rounding)
        for start in range(0, n_ch, block):
            values = np.asarray(x.isel({channel: slice(start, start + block)}).values, dtype=np.float64)
            finite = np.isfinite(values) | ~valid[:, :, None]
            if not finite.all():
                trials, _, chans = np.nonzero(~finite)
                hint = (" Whole trials NaN look like padding: add the trial_length coordinate "
                        "(docs/recording-schema.md)." if lengths is None else "")
                raise ValueError(
                    f"{var} contains NaN or inf ({where}{channel} {_labels(x, channel, np.unique(chans) + start)}, "
                    f"{trial_dim} {_labels(x, trial_dim, np.unique(trials))}); interpolate them (e.g. "
                    f"da.interpolate_na('{time_dim}')) or drop those {channel}s or trials first.{hint}")
            masked = np.where(valid[:, :, None], values, np.nan)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)          # all-NaN trials of no length
                spread = np.nanmax(masked, axis=1) - np.nanmin(masked, axis=1)          # (trial, channel)
                size = np.nanmax(np.abs(masked), axis=(0, 1))
            # a constant whose mean removal leaves only rounding (0.1 in float64: power ~ 1e-32) has no
            # characteristic frequency: judged on the samples, not on the rounding noise's spectrum
            flat[start:start + values.shape[-1]] = np.all(
                ~(spread > 8 * np.finfo(np.float64).eps * size[None, :]), axis=0)
            values = np.where(valid[:, :, None], values, 0.0)
            pop_sum += values.sum(axis=-1)
            freqs, p = _welch_trials(values, all_lengths, opts)
            if power is None:
                power = np.empty((n_ch, freqs.size))
            power[start:start + values.shape[-1]] = p
        _, pop = _welch_trials((pop_sum / n_ch)[:, :, None], all_lengths, opts)
        pop = pop[0]
        mean = power.mean(axis=0)
        peaks = _peak(power, freqs)
        peaks[flat] = np.nan
        dead = np.flatnonzero(np.isnan(peaks))
        if dead.size:
            zero_power.append(f"{where}{channel} {_labels(x, channel, dead)}{' ...' if dead.size > 5 else ''}")
        coords = {"frequency": freqs}
        if channel in x.coords:
            coords[channel] = x[channel].values
        return xr.Dataset(
            {"power": ((channel, "frequency"), power),
             "mean_power": (("frequency",), mean),
             "population_power": (("frequency",), pop),
             "characteristic_frequency": ((channel,), peaks),
             "mean_characteristic_frequency": ((), _peak(mean, freqs)),
             "population_characteristic_frequency": ((), _peak(pop, freqs))},
            coords=coords)

    res = over_batch(da, batch, one)
    if zero_power:
        warnings.warn(f"{'; '.join(zero_power)} have zero power ({var} constant over each segment); their "
                      f"characteristic_frequency is NaN. The other {channel}s are unaffected.", RuntimeWarning,
                      stacklevel=user_stacklevel())
    keep = {str(k): v.variable for k, v in da.coords.items()
            if channel in v.dims and set(v.dims) <= set(batch) | {channel} and k != channel}
    res = res.assign_coords(keep)
    f_units = _frequency_units(time_units)
    res["frequency"].attrs = {"units": f_units, "long_name": "frequency"}
    per = f"/{f_units}" if scaling == "density" else ""
    res["power"].attrs = {"long_name": f"power of each {channel}'s {var}, mean over trials",
                          "units": f"({var} units)^2{per}"}
    res["mean_power"].attrs = {"long_name": f"power averaged over {channel}s", "units": res["power"].attrs["units"]}
    res["population_power"].attrs = {"long_name": f"power of the {channel}-averaged {var}",
                                      "units": res["power"].attrs["units"]}
    for name, of in (("characteristic_frequency", f"each {channel}'s spectrum"),
                     ("mean_characteristic_frequency", "the spectrum averaged over units"),
                     ("population_characteristic_frequency", "the population-averaged signal's spectrum")):
        res[name].attrs = {"units": f_units, "long_name": f"characteristic frequency (maximal peak) of {of}"}
    n_seg = int(sum(_n_segments(int(n), nperseg, noverlap) for n in all_lengths))
    res.attrs = {
        "variable": var, "method": "Welch (scipy.signal.welch), mean over all segments of all trials",
        "nperseg": int(nperseg), "noverlap": int(noverlap), "window": str(window) if isinstance(window, (str, tuple))
        else "array", "detrend": str(detrend), "scaling": scaling, "fs": float(fs),
        "frequency_resolution": float(fs / nperseg), "n_segments": n_seg, "definition": _DEFINITION,
        "reference": "Dubinin & Effenberger 2024, Neural Networks, Sec. 4.2 (characteristic frequency)",
    }
    return res


def plot_power_spectrum(spec: xr.Dataset, *, units: Sequence[Any] | None = None, ax: Any = None,
                        logy: bool = True, unit_dim: str = "unit") -> Any:
    """Draw a :func:`power_spectrum` result: the unit-averaged spectrum, the population signal's
    spectrum, a few units' spectra, and the characteristic frequency (003 Sec. 4.2) as a line.

    Parameters
    ----------
    spec : xarray.Dataset
        A :func:`power_spectrum` result. With batch dims (an ensemble's ``member``), the
        unit-averaged spectrum of every entry is drawn, one line each, and no single units.
    units : sequence, optional
        Labels of the units whose spectra are drawn thinly; default the first three; ``[]`` for none.
    ax : matplotlib Axes, optional
        Where to draw; a new figure by default.
    logy : bool, default=True
        Logarithmic power axis (frequency 0 is left out, as its power is ~0 after detrending).
    unit_dim : str, default="unit"
        The channel dim of ``spec`` (``input_dim`` for an input spectrum).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np
    >>> from dynatools.spectra import power_spectrum, plot_power_spectrum
    >>> x = np.random.default_rng(0).standard_normal((2, 1024, 4))
    >>> fig = plot_power_spectrum(power_spectrum(x, nperseg=128))
    """
    import matplotlib.pyplot as plt

    from dynatools.plot import PALETTE

    if "mean_power" not in spec or "frequency" not in spec.dims:
        raise ValueError("spec is not a power_spectrum result (no 'mean_power' over 'frequency'); pass "
                         "dynatools.spectra.power_spectrum(rec).")
    channel = unit_dim if unit_dim in spec["power"].dims else \
        next(d for d in spec["power"].dims if d != "frequency" and d not in spec["mean_power"].dims)
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.0, 4.0), layout="constrained")
    else:
        fig = ax.figure
    freq = spec["frequency"].values
    keep = freq > 0 if logy else np.ones(freq.size, bool)
    f_units = spec["frequency"].attrs.get("units", "")
    batch = [d for d in spec["mean_power"].dims if d != "frequency"]
    if batch:
        stacked = spec.stack(_entry=batch)
        for i in range(stacked.sizes["_entry"]):
            e = stacked.isel(_entry=i)
            label = ", ".join(f"{d} {e[d].item()}" for d in batch)
            color = PALETTE[i % len(PALETTE)]
            ax.plot(freq[keep], e["mean_power"].values[keep], color=color, lw=1.2, label=label)
            fc = float(e["mean_characteristic_frequency"])
            if np.isfinite(fc):
                ax.axvline(fc, color=color, ls=":", lw=1)
    else:
        chosen = list(spec[channel].values[:3]) if units is None else list(units)
        for i, u in enumerate(chosen):
            ax.plot(freq[keep], spec["power"].sel({channel: u}).values[keep], color=PALETTE[(i + 1) % len(PALETTE)],
                    lw=0.8, alpha=0.8, label=f"{channel} {u}")
        ax.plot(freq[keep], spec["population_power"].values[keep], color=PALETTE[7], lw=1.2, ls="--",
                label="population-averaged signal")
        ax.plot(freq[keep], spec["mean_power"].values[keep], color=PALETTE[0], lw=2.2,
                label=f"mean over {spec.sizes[channel]} {channel}s")
        fc = float(spec["mean_characteristic_frequency"])
        if np.isfinite(fc):
            ax.axvline(fc, color=PALETTE[1], ls=":", lw=1.5, label=f"characteristic frequency {fc:.4g} {f_units}")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(f"frequency ({f_units})")
    scaling = spec.attrs.get("scaling", "density")
    ax.set_ylabel("power spectral density" if scaling == "density" else "power")
    ax.set_title(f"Welch spectrum of {spec.attrs.get('variable', 'activity')} (nperseg {spec.attrs.get('nperseg')})",
                 fontsize=10)
    ax.legend(fontsize=8, frameon=False)
    return fig
