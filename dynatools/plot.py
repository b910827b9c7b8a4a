"""Figures from analysis results (matplotlib; imported only when used).

Every function takes the labeled result of an analysis and returns a ``matplotlib.figure.Figure``.
Colours come from the Okabe-Ito palette, which stays distinguishable for colour-blind readers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

#: Okabe-Ito colour-blind-safe palette.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")

__all__ = ["PALETTE", "autocorrelation_fits", "tau_net_histogram", "timescales_summary", "timescales_vs_N",
           "tau_net_distributions", "weight_balance_vs_N", "dimensionality_vs_N", "ablation_bars",
           "perturbation_curves", "retraining_curves", "task_trial", "learning_curves", "misalignment"]


def _plt():
    import matplotlib.pyplot as plt  # falls back to the Agg backend without a display

    return plt


#: Colour of the text that marks a fit that is not a valid timescale.
FLAG_COLOR = "#A50026"


def _per(units: str) -> str:
    """How a value's unit reads after a number: ``"step"`` -> ``"steps"``, ``"s"`` -> ``"s"``."""
    return "steps" if units == "step" else units


def _lag_step(result: xr.Dataset) -> tuple[float, str]:
    """The lag spacing of a timescales result (one sampling step) and its units."""
    units = "step"
    if "lag" in result.coords:
        lag = result["lag"].values
        units = result["lag"].attrs.get("units", "step")
        if lag.size > 1:
            return float(lag[1] - lag[0]), units
    elif "tau_net" in result:
        units = result["tau_net"].attrs.get("units", "step")
    return 1.0, units


def _fit_flags(result: xr.Dataset) -> xr.DataArray:
    """Why each unit's ``tau_net`` is not a valid timescale, or ``""`` where it is.

    A figure that draws a unit's ``tau_net`` marks the units flagged here instead of drawing them
    like any other result:

    - ``"no τ_net"``: nothing was fitted (NaN);
    - ``"unreliable fit (STATUS)"``: left out by :func:`dynatools.reliable_tau_net` (failed fits, fits
      at the upper bound, and any status not in ``dynatools.timescales.RELIABLE``);
    - ``"τ_net < 1 step"``: shorter than one lag step, where the autocorrelation has already decayed
      between two samples and the value is not resolved;
    - ``"τ_fast ≈ τ_slow"``: the double model was selected but its slow timescale is less than
      ``min_ratio`` (the result's attribute, default 1.5) times the fast one, so the two components
      duplicate each other (possible with ``reference=True``, which has no safeguards).

    Parameters
    ----------
    result : xarray.Dataset
        A :func:`dynatools.timescales` result or a run summary (``tau_net``, optionally ``status``,
        ``selected_model``, ``tau_fast``, ``tau_slow``).

    Returns
    -------
    xarray.DataArray
        Strings with the dims of ``tau_net``.
    """
    from dynatools.summary import reliable_tau_net

    tau = result["tau_net"]
    step, units = _lag_step(result)
    one_step = "τ_net < 1 step" if units == "step" else f"τ_net < one lag step ({step:g} {units})"
    flags = np.full(tau.shape, "", dtype="<U80")
    if "status" in result:
        status = result["status"].broadcast_like(tau).values.astype(str)
        unreliable = np.isfinite(tau.values) & ~np.isfinite(reliable_tau_net(result).broadcast_like(tau).values)
        flags = np.where(unreliable, np.char.add(np.char.add("unreliable fit (", status), ")"), flags)
    if {"selected_model", "tau_fast", "tau_slow"} <= set(result.variables):
        ratio = float(result.attrs.get("min_ratio", 1.5))
        equal = ((result["selected_model"] == "double") & (result["tau_slow"] < ratio * result["tau_fast"]))
        flags[(flags == "") & equal.broadcast_like(tau).values] = "τ_fast ≈ τ_slow"
    with np.errstate(invalid="ignore"):
        flags[(flags == "") & (tau.values < step)] = one_step
    flags[~np.isfinite(tau.values)] = "no τ_net"
    return xr.DataArray(flags, dims=tau.dims, coords=tau.coords)


def _fit_curves(r: xr.Dataset, t: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The single and double exponential curves of one unit's fit at times ``t`` (None if absent)."""
    single = double = None
    if np.isfinite(r["tau_single"]):
        single = float(r["amplitude_single"]) * np.exp(-t / float(r["tau_single"]))
    if np.isfinite(r["tau_slow"]):
        a, c = float(r["amplitude_double"]), float(r["weight_fast"])
        double = a * (c * np.exp(-t / float(r["tau_fast"])) + (1 - c) * np.exp(-t / float(r["tau_slow"])))
    return single, double


def _fit_labels(r: xr.Dataset, units: str, step: float = 1.0) -> tuple[str, str]:
    """Legend labels of one unit's single and double fits: parameter names, values and units,
    and which model was selected. A fast component below one lag ``step`` (or the result's
    ``min_timescale``) is not labeled as a timescale: it only shapes lag 0, like observation
    noise (docs/timescales.md, "Subsampled and noisy data"); a lag-0 noise term is named."""
    u = _per(units)
    selected = str(r["selected_model"].values)
    single = f"single: τ = {float(r['tau_single']):.3g} {u}"
    term = "noise_term" in r and float(r["noise_term"]) == 1
    if term:
        single += f" + lag-0 noise {1 - float(r['amplitude_single']):.2f}"
    minimum = float(r.attrs.get("min_timescale", step)) if np.isfinite(r.attrs.get("min_timescale", step)) else step
    if float(r["tau_fast"]) < minimum:
        double = (f"double: τ_slow = {float(r['tau_slow']):.3g} {u}; its fast component (weight "
                  f"{float(r['weight_fast']):.2f})\n    decays within {minimum:g} {u}: lag-0 noise, not a timescale")
    else:
        double = (f"double: τ_fast = {float(r['tau_fast']):.3g}, τ_slow = {float(r['tau_slow']):.3g} {u},\n"
                  f"    weight_fast = {float(r['weight_fast']):.2f}")
    if term:
        double += f" + lag-0 noise {1 - float(r['amplitude_double']):.2f}"
    return (single + (" (selected)" if selected == "single" else ""),
            double + (" (selected)" if selected == "double" else ""))


def _fit_window(ax, result: xr.Dataset, lag: np.ndarray, legend: bool = True) -> None:
    """Shade the lags the exponentials were fitted to (``0 .. fit_lag``), labeled for the legend."""
    fit_lag = int(result.attrs.get("fit_lag", 30))
    end = lag[min(fit_lag, len(lag) - 1)]
    ax.axvspan(lag[0], end, color="0.92", lw=0, zorder=0,
               label=f"fitted lags (0 to {end:g})" if legend else None)


def _true_tau(r: xr.Dataset) -> float | None:
    """The known ``tau_net`` of a synthetic unit (coordinate ``true_tau_net``, as in the demo)."""
    return float(r["true_tau_net"]) if "true_tau_net" in r.coords or "true_tau_net" in r else None


def _pool_batch(result: xr.Dataset, unit_dim: str = "unit") -> xr.Dataset:
    """A timescales result whose ``tau_net`` has dims besides ``unit_dim`` (an ensemble's
    ``member``, ...) with those dims pooled into ``unit_dim``, labelled ``"member 1, unit 3"``;
    unchanged without such dims. Variables without ``unit_dim`` are left out."""
    if "tau_net" not in result or unit_dim not in result["tau_net"].dims:
        return result
    batch = [str(d) for d in result["tau_net"].dims if d != unit_dim]
    if not batch:
        return result
    keep = [str(v) for v in result.data_vars if unit_dim in result[v].dims]
    pooled = result[keep].stack(_pooled=(*batch, unit_dim))
    labels = [", ".join(f"{d} {v}" for d, v in zip(batch + [unit_dim], tup)) for tup in pooled["_pooled"].values]
    pooled = pooled.drop_vars(["_pooled", *batch, unit_dim]).rename({"_pooled": unit_dim})
    pooled = pooled.assign_coords({unit_dim: np.array(labels, dtype=object)})
    pooled.attrs = dict(result.attrs)
    return pooled


def _unit_title(label) -> str:
    """``"unit 3"``, or a pooled label (``"member 1, unit 3"``) as it is."""
    if isinstance(label, np.ndarray) and label.ndim == 0:
        label = label.item()
    return label if isinstance(label, str) else f"unit {label}"


def _pick_units(result: xr.Dataset, units: Sequence[int] | int | None, unit_dim: str) -> list[int]:
    if unit_dim not in result.dims:
        raise ValueError(
            f"the result has no {unit_dim!r} dim (dims: {tuple(map(str, result.dims))}); this figure "
            f"shows single units. A population result has one autocorrelation: plot "
            f"result.autocorrelation directly."
        )
    n = result.sizes[unit_dim]
    if units is None or isinstance(units, (int, np.integer)):
        k = min(n, 6 if units is None else int(units))
        sel = result["n_timescales"].values
        singles = [i for i in range(n) if sel[i] == 1]
        doubles = [i for i in range(n) if sel[i] == 2]
        picked = doubles[: k // 2] + singles[: k - min(len(doubles), k // 2)]
        picked += [i for i in range(n) if i not in picked][: k - len(picked)]
        return sorted(picked)[:k]
    labels = list(result[unit_dim].values) if unit_dim in result.coords else list(range(n))
    missing = [u for u in units if u not in labels]
    if missing:
        raise ValueError(
            f"unit(s) {missing} not found; the result's {unit_dim!r} labels are "
            f"{labels[:10]}{' ...' if len(labels) > 10 else ''}."
        )
    return [labels.index(u) for u in units]


def autocorrelation_fits(
    result: xr.Dataset,
    units: Sequence[int] | int | None = None,
    *,
    unit_dim: str = "unit",
    max_lag: int | None = None,
    log: bool = True,
):
    """Autocorrelations of a few units with their single and double exponential fits.

    As Fig. 1b / S10 of Khajehabdollahi, Zeraati et al. (ICLR 2024): data as dots, the single fit
    dashed, the double fit solid (the selected one drawn thicker, and named in the legend with its
    parameters and units), the fitted lags shaded. A unit whose ``tau_net`` is not a valid
    timescale (:func:`_fit_flags`: below one lag step, two equal timescales, an unreliable fit) says
    so in red under its title. A synthetic recording's known ``true_tau_net`` (unit coordinate) is
    shown in the title.

    Parameters
    ----------
    result : xarray.Dataset
        Output of :func:`dynatools.timescales` (needs ``autocorrelation`` and the fit variables).
    units : int or sequence of unit labels, optional
        How many units (picked to show both models when possible) or which ones. Default 6.
        A result with more dims than ``unit`` (an ensemble's ``member``) has them pooled into
        the units, labelled ``"member 0, unit 3"`` (pass such labels to pick units); select one
        network first (``result.sel(member=0)``) to see it alone.
    max_lag : int, optional
        Largest lag index drawn; default ``2 * fit_lag``.
    log : bool, default=True
        Logarithmic y axis, where one exponential is a straight line.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import dynatools as dt, dynatools.plot as dplot
    >>> fig = dplot.autocorrelation_fits(dt.timescales(dt.open_recording(dt.demo_path())))
    """
    plt = _plt()
    if "autocorrelation" not in result:
        raise ValueError("result has no 'autocorrelation' variable; pass the output of dynatools.timescales.")
    result = _pool_batch(result, unit_dim)
    idx = _pick_units(result, units, unit_dim)
    fit_lag = int(result.attrs.get("fit_lag", 30))
    ac = result["autocorrelation"]
    lag = ac["lag"].values
    n_show = min(len(lag), (max_lag if max_lag is not None else 2 * fit_lag) + 1)
    lag = lag[:n_show]
    units_label = ac["lag"].attrs.get("units", "step")
    flags = _fit_flags(result)
    ncol = min(3, len(idx))
    nrow = int(np.ceil(len(idx) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 4.0 * nrow), squeeze=False, sharey=True)
    for ax in axes.ravel()[len(idx):]:
        ax.set_visible(False)
    lowest = 1.0
    for ax, i in zip(axes.ravel(), idx):
        r = result.isel({unit_dim: i})
        y = r["autocorrelation"].values[:n_show]
        y = y / y[0]
        if (y[1:] > 0).any():
            lowest = min(lowest, float(np.nanmin(np.where(y > 0, y, np.nan))))
        t = np.linspace(0, lag[-1], 200)
        _fit_window(ax, result, lag, legend=False)
        ax.plot(lag, y, "o", ms=3, color="0.35", label="data")
        single, double = _fit_curves(r, t)
        selected = str(r["selected_model"].values)
        single_label, double_label = _fit_labels(r, units_label, _lag_step(result)[0])
        if single is not None:
            ax.plot(t, single, "--", color=PALETTE[0], lw=2.2 if selected == "single" else 1.1, label=single_label)
        if double is not None:
            ax.plot(t, double, "-", color=PALETTE[1], lw=2.2 if selected == "double" else 1.1, label=double_label)
        label = r[unit_dim].values if unit_dim in r.coords else i
        true = _true_tau(r)
        title = f"{_unit_title(label)}: τ_net = {float(r['tau_net']):.3g} {_per(units_label)}"
        if true is not None:
            title += f" (true {true:.3g})"
        flag = str(flags.isel({unit_dim: i}).values)
        if flag:
            title += f"\nnot a valid timescale: {flag}"
        ax.set_title(title, fontsize=9, color=FLAG_COLOR if flag else "black")
        ax.set_xlabel(f"lag ({units_label})")
        ax.legend(fontsize=7, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.2))
    import textwrap

    criterion = str(result.attrs.get("criterion", "aic")).upper()
    note = (f"dots: AC / AC[0] of the data{' (values ≤ 0 not drawn on the log axis)' if log else ''}; dashed: "
            f"single, solid: double exponential fit (thick: the model selected by {criterion}); grey band: the "
            f"lags fitted (0 to {lag[min(fit_lag, n_show - 1)]:g})")
    fig.suptitle(textwrap.fill(note, 60 * ncol), fontsize=9)
    if log:
        for ax in axes.ravel():
            ax.set_yscale("log")
        axes[0, 0].set_ylim(max(1e-3, lowest / 2), 2.5)     # shared: every panel's data in view
    for row in axes:
        row[0].set_ylabel("AC / AC[0]")
    fig.tight_layout()
    return fig


def _tau_net_hist(ax, result: xr.Dataset, bins: int | np.ndarray, by_model: bool = True) -> int:
    """Stacked histogram of ``tau_net`` on ``ax``: units with a valid timescale by selected model,
    flagged units (:func:`_fit_flags`) hatched apart; returns the number of units drawn."""
    tau = result["tau_net"].values.ravel()
    model = result["selected_model"].values.ravel() if "selected_model" in result else np.full(tau.shape, "")
    flagged = (_fit_flags(result).values.ravel() != "")
    ok = np.isfinite(tau)
    units = result["tau_net"].attrs.get("units", _lag_step(result)[1])
    if not ok.any():
        ax.text(0.5, 0.5, "no finite τ_net", ha="center", transform=ax.transAxes)
        return 0
    edges = np.histogram_bin_edges(tau[ok], bins=bins)
    if by_model:
        groups = [(tau[ok & ~flagged & (model == "single")], "single exponential", PALETTE[0], None),
                  (tau[ok & ~flagged & (model == "double")], "double exponential", PALETTE[1], None),
                  (tau[ok & flagged], "not a valid timescale\n(τ_net < 1 step, τ_fast ≈ τ_slow\nor unreliable fit)",
                   "0.75", "////")]
        groups = [g for g in groups if g[0].size]
        _, _, patches = ax.hist([g[0] for g in groups], bins=edges, stacked=True, color=[g[2] for g in groups],
                                label=[f"{g[1]} ({g[0].size} units)" for g in groups])
        for g, bars in zip(groups, patches if len(groups) > 1 else [patches]):
            if g[3]:
                for bar in bars:
                    bar.set_hatch(g[3])
                    bar.set_edgecolor("0.35")
    else:
        ax.hist(tau[ok], bins=edges, color=PALETTE[0], label=f"{int(ok.sum())} units")
    missing = int((~ok).sum())
    title = "selected model" if by_model else None
    if missing:
        title = (title + "; " if title else "") + f"{missing} unit(s) without τ_net not drawn"
    ax.legend(frameon=False, fontsize=7, title=title, title_fontsize=7)
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel(f"τ_net ({units})")
    ax.set_ylabel("units")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))        # counts
    return int(ok.sum())


def tau_net_histogram(result: xr.Dataset, *, bins: int = 30, by_model: bool = True):
    """Histogram of ``tau_net`` (Fig. 5b of the timescale paper), split by selected model.

    Units whose ``tau_net`` is not a valid timescale (:func:`_fit_flags`) are stacked apart,
    hatched grey; units without a ``tau_net`` (failed fits) are counted in the legend's title.

    Parameters
    ----------
    result : xarray.Dataset
        Output of :func:`dynatools.timescales` or :func:`dynatools.fit_timescales`.
    bins : int, default=30
    by_model : bool, default=True
        Stack units whose single or double model was selected in two colours.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import dynatools as dt, dynatools.plot as dplot
    >>> fig = dplot.tau_net_histogram(dt.timescales(dt.open_recording(dt.demo_path())))

    An ensemble's result (``member`` dim) counts the units of every member together.
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    _tau_net_hist(ax, result, bins, by_model)
    fig.tight_layout()
    return fig


def timescales_summary(result: xr.Dataset, units: Sequence[int] | int | None = 4):
    """One figure: a few autocorrelations with their fits and the histogram of ``tau_net``.

    When the units carry their known timescale (coordinate ``true_tau_net``, as the shipped demo
    recording does), the legend gives it beside each fitted value and a third panel plots the
    fitted ``tau_net`` of every unit against it, with the median relative error.

    A result with more dims than ``unit`` (an ensemble's ``member``) has them pooled: the
    histogram counts every member's units, the panels are labelled ``"member 0, unit 3"``.

    Parameters
    ----------
    result : xarray.Dataset
        Output of :func:`dynatools.timescales` (or :func:`dynatools.analyze_recording`).
    units : int or sequence of unit labels, default=4
        As in :func:`autocorrelation_fits`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = _plt()
    if "autocorrelation" not in result:
        raise ValueError("result has no 'autocorrelation' variable; pass the output of dynatools.timescales.")
    result = _pool_batch(result, "unit")
    idx = _pick_units(result, units, "unit")
    fit_lag = int(result.attrs.get("fit_lag", 30))
    ac = result["autocorrelation"]
    n_show = min(ac.sizes["lag"], 2 * fit_lag + 1)
    lag = ac["lag"].values[:n_show]
    units_label = ac["lag"].attrs.get("units", "step")
    u = _per(units_label)
    known = "true_tau_net" in result.coords or "true_tau_net" in result
    flags = _fit_flags(result)
    fig, axes = plt.subplots(1, 3 if known else 2, figsize=(15 if known else 10.5, 5),
                             gridspec_kw={"width_ratios": [1.4, 1, 1] if known else [1.4, 1]})
    ax1, ax2 = axes[:2]
    t = np.linspace(0, lag[-1], 200)
    _fit_window(ax1, result, lag)
    for color, i in zip([st["color"] for st in _styles(len(idx))], idx):
        r = result.isel(unit=i)
        y = r["autocorrelation"].values[:n_show]
        y = y / y[0]
        ax1.plot(lag, np.where(y > 0, y, np.nan), "o", ms=2.5, color=color)
        single, double = _fit_curves(r, t)
        if single is not None:
            ax1.plot(t, single, "--", lw=1, color=color)
        if double is not None:
            ax1.plot(t, double, "-", lw=1, color=color)
        label = r["unit"].values if "unit" in r.coords else i
        text = f"{_unit_title(label)}: {str(r['selected_model'].values)}, τ_net = {float(r['tau_net']):.3g} {u}"
        if "noise_term" in r and float(r["noise_term"]) == 1:
            text += f", lag-0 noise {float(r['noise_fraction']):.2f}"
        true = _true_tau(r)
        if true is not None:
            text += f" (true {true:.3g})"
        flag = str(flags.isel(unit=i).values)
        if flag:
            text += f"\n  not a valid timescale: {flag}"
        ax1.plot([], [], "o-", color=color, label=text)
    ax1.set_yscale("log")
    ax1.set_ylim(1e-3, 1.5)
    ax1.set_xlabel(f"lag ({units_label})")
    ax1.set_ylabel("AC / AC[0]")
    ax1.set_title("autocorrelations: dots data, dashed single fit, solid double fit", fontsize=9)
    legend = ax1.legend(fontsize=7, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2)
    for text in legend.get_texts():
        if "not a valid" in text.get_text():
            text.set_color(FLAG_COLOR)
    n = _tau_net_hist(ax2, result, 20)
    ax2.set_title(f"network-mediated timescales ({n} units)", fontsize=9)
    if known:
        ax3 = axes[2]
        fitted, true = result["tau_net"].values.ravel(), result["true_tau_net"].values.ravel()
        model = result["selected_model"].values.ravel()
        for name, color, marker in (("single", PALETTE[0], "o"), ("double", PALETTE[1], "s")):
            sel = model == name
            ax3.plot(true[sel], fitted[sel], marker, ms=4, ls="none", color=color, label=f"{name} selected")
        both = np.concatenate([true[np.isfinite(true)], fitted[np.isfinite(fitted)]])
        lim = [both.min() / 1.3, both.max() * 1.3]
        ax3.plot(lim, lim, "-", color="0.5", lw=0.8, label="fitted = true")
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

        ax3.set_xscale("log")
        ax3.set_yscale("log")
        ax3.set_xlim(lim)
        ax3.set_ylim(lim)
        for axis in (ax3.xaxis, ax3.yaxis):          # 1, 2, 5, 10, 20, ... written out, no minor labels
            axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            axis.set_minor_formatter(NullFormatter())
        with np.errstate(invalid="ignore", divide="ignore"):
            err = np.abs(fitted / true - 1)
        ax3.set_title(f"fitted vs true τ_net: median relative error {np.nanmedian(err):.1%}", fontsize=9)
        ax3.set_xlabel(f"true τ_net ({units_label})")
        ax3.set_ylabel(f"fitted τ_net ({units_label})")
        ax3.legend(frameon=False, fontsize=7)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------
# Figures over N for one or several runs (timescale paper Figs. 4-8)


def _as_runs(runs, what: str = "result") -> dict[str, xr.Dataset]:
    """``{label: Dataset}`` from a Dataset, a sequence of Datasets or a mapping."""
    if isinstance(runs, xr.Dataset):
        return {str(runs.attrs.get("curriculum") or runs.attrs.get("label") or "run"): runs}
    if isinstance(runs, dict):
        return {str(k): v for k, v in runs.items()}
    out: dict[str, xr.Dataset] = {}
    for i, ds in enumerate(runs):
        label = str(ds.attrs.get("label") or ds.attrs.get("curriculum") or f"run {i + 1}")
        out[label if label not in out else f"{label} ({i + 1})"] = ds
    if not out:
        raise ValueError(f"no {what} to plot.")
    return out


def _need(ds: xr.Dataset, names: Sequence[str], label: str, producer: str) -> None:
    missing = [n for n in names if n not in ds]
    if missing:
        raise ValueError(f"{label}: missing {missing}; pass the output of {producer}.")


def _integer_N(*axes) -> None:
    from matplotlib.ticker import MaxNLocator

    for ax in axes:
        lo, hi = ax.get_xlim()
        if hi - lo < 2:                      # one N only: an axis less than one N wide has no integer ticks
            centre = round((lo + hi) / 2)
            ax.set_xlim(centre - 1, centre + 1)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _styles(n: int) -> list[dict[str, str]]:
    """Colour and marker of each of ``n`` runs: the palette's 8 colours, then again with other
    markers, so no run is dropped."""
    markers = ("o", "s", "^", "D", "v", "P")
    return [{"color": PALETTE[i % len(PALETTE)], "marker": markers[(i // len(PALETTE)) % len(markers)]}
            for i in range(n)]


def _quartiles(da: xr.DataArray, keep: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """First quartile, median and third quartile of ``da`` over every dim but ``keep``, NaNs
    ignored (NaN where ``keep`` has no finite value, without a warning). Unlike mean ± std, the
    band stays inside the data: never below the smallest value, never above the largest."""
    v = da.transpose(keep, ...).values.astype(float).reshape(da.sizes[keep], -1)
    q = np.full((3, v.shape[0]), np.nan)
    has = np.isfinite(v).any(1)
    if has.any():
        q[:, has] = np.nanquantile(v[has], [0.25, 0.5, 0.75], axis=1)
    return q[0], q[1], q[2]


def timescales_vs_N(summaries, *, log: bool = False):
    """Trained τ and network τ_net against N: the median over units (line) and the interquartile
    range (band), one line per run (timescale paper Figs. 4b and 5c-d). τ_net counts only reliable
    fits (:func:`dynatools.summary.reliable_tau_net`); a dotted line marks one time step, below
    which a τ_net is not resolved by the recording.

    The median and the quartiles, unlike mean ± std, stay within the values drawn (a band never
    goes below 0 for timescales), and one long τ_net does not move them.

    Parameters
    ----------
    summaries : Dataset, sequence of Datasets or {label: Dataset}
        Outputs of :func:`trainers.analyze.analyze_run`.
    log : bool, default=False
        Logarithmic y axes.

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = _plt()
    runs = _as_runs(summaries, "run summaries")
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.8), sharex=True)
    from dynatools.summary import reliable_tau_net

    for style, (label, ds) in zip(_styles(len(runs)), runs.items()):
        _need(ds, ["tau", "tau_net"], label, "trainers.analyze.analyze_run")
        N = ds["N"].values
        for ax, values in zip(axes, (ds["tau"], reliable_tau_net(ds))):
            lo, median, hi = _quartiles(values, "N")
            ax.plot(N, median, "-", ms=3, label=label, **style)
            ax.fill_between(N, lo, hi, color=style["color"], alpha=0.2, lw=0)
    axes[1].axhline(1, color="0.4", lw=0.9, ls=":", label="1 step: shorter τ_net\nnot resolved")
    axes[0].set_ylabel("trained τ (steps)")
    axes[1].set_ylabel("τ_net (steps), reliable fits")
    axes[0].set_title("single-neuron timescales", fontsize=10)
    axes[1].set_title("network-mediated timescales", fontsize=10)
    for ax in axes:
        ax.set_xlabel("N")
        if log:
            ax.set_yscale("log")
    axes[0].legend(frameon=False, fontsize=8, title="line: median, band:\ninterquartile range over units",
                   title_fontsize=7)
    axes[1].legend(handles=[ln for ln in axes[1].get_lines() if ln.get_label().startswith("1 step")],
                   frameon=False, fontsize=7)
    _integer_N(*axes)
    fig.tight_layout()
    return fig


def tau_net_distributions(summary: xr.Dataset, Ns: Sequence[int] | None = None, *, bins: int = 30):
    """Distributions of τ_net across units for several N of one run (Fig. 5b); reliable fits
    only (:func:`dynatools.summary.reliable_tau_net`), the number left out is in the legend.

    The legend's title says which solved N are not drawn (by default four N spread over the run,
    so that the outlines stay legible), and an N without any reliable fit says so. The shaded
    range below one step marks the τ_net the recording cannot resolve.

    Parameters
    ----------
    summary : xarray.Dataset
        Output of :func:`trainers.analyze.analyze_run`.
    Ns : sequence of int, optional
        Default: up to four N spread over the run.

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = _plt()
    _need(summary, ["tau_net"], "summary", "trainers.analyze.analyze_run")
    allN = [int(n) for n in summary["N"].values]
    default = Ns is None
    if Ns is None:
        Ns = [allN[i] for i in sorted(set(np.linspace(0, len(allN) - 1, min(4, len(allN))).round().astype(int)))]
    missing = [n for n in Ns if n not in allN]
    if missing:
        raise ValueError(f"N {missing} not in the summary (has {allN}).")
    fig, ax = plt.subplots(figsize=(5.6, 3.6))
    from dynatools.summary import reliable_tau_net

    values = reliable_tau_net(summary).sel(N=list(Ns)).transpose("N", ...).values.reshape(len(Ns), -1)
    dropped = (np.isfinite(summary["tau_net"].sel(N=list(Ns)).transpose("N", ...).values.reshape(len(Ns), -1))
               & ~np.isfinite(values)).sum(-1)
    finite = values[np.isfinite(values)]
    edges = np.histogram_bin_edges(finite if finite.size else [0, 1], bins=bins)
    if finite.size and finite.min() < 1:
        ax.axvspan(min(edges[0], 0), 1, color="0.92", lw=0, zorder=0, label="τ_net < 1 step (not resolved)")
    for style, N, row, n_out in zip(_styles(len(Ns)), Ns, values, dropped):
        ok = np.isfinite(row)
        note = f" ({n_out} unreliable fits left out)" if n_out else ""
        if not ok.any():
            # an empty histogram draws nothing: the legend says why the N has no outline
            ax.plot([], [], "-", lw=1.6, color=style["color"], label=f"N = {N}: no reliable fit, nothing drawn{note}")
            continue
        ax.hist(row[ok], bins=edges, histtype="step", lw=1.6, color=style["color"], label=f"N = {N}{note}")
    left_out = [n for n in allN if n not in Ns]
    title = None
    if left_out:
        shown = f"{len(Ns)} of the {len(allN)} solved N shown"
        title = (f"{shown} (spread over the run);\nnot drawn: N = {_ranges(left_out)}" if default
                 else f"{shown};\nnot drawn: N = {_ranges(left_out)}")
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("τ_net (steps)")
    ax.set_ylabel("units")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))        # counts
    ax.legend(frameon=False, fontsize=7, title=title, title_fontsize=7)
    ax.set_title(str(summary.attrs.get("curriculum", "")), fontsize=10)
    fig.tight_layout()
    return fig


def _ranges(values: Sequence[int]) -> str:
    """``[3, 4, 5, 7]`` -> ``"3-5, 7"``: integers, consecutive runs of three or more joined."""
    runs: list[list[int]] = []
    for v in values:
        if runs and v == runs[-1][-1] + 1:
            runs[-1].append(v)
        else:
            runs.append([v])
    return ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 2 else ", ".join(map(str, r)) for r in runs)


def weight_balance_vs_N(summaries):
    """Total incoming positive and negative weight per unit against N (Fig. 6a): the median over
    units with the interquartile range as error bars, one colour per run (solid line and filled
    markers: positive; dashed and open: negative).

    Returns
    -------
    matplotlib.figure.Figure
    """
    runs, fig, ax = _runs_and_axes(summaries, "run summaries")
    for run_style, (label, ds) in zip(_styles(len(runs)), runs.items()):
        _need(ds, ["positive_sum", "negative_sum"], label,
              "trainers.analyze.analyze_run on recordings with W_rec")
        N = ds["N"].values
        for var, style, name in (("positive_sum", "-", "positive"), ("negative_sum", "--", "negative")):
            lo, median, hi = _quartiles(ds[var], "N")
            ax.errorbar(N, median, yerr=[median - lo, hi - median], fmt=run_style["marker"] + style, ms=4,
                        capsize=2, color=run_style["color"],
                        label=f"{label}: {name}",        # open markers for the negative sums
                        mfc=run_style["color"] if name == "positive" else "white")
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set_xlabel("N")
    ax.set_ylabel("summed incoming weight per unit")
    ax.legend(frameon=False, fontsize=7, title="median, error bars:\ninterquartile range\nover units",
              title_fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.set_size_inches(6.4, 3.6)
    _integer_N(ax)
    fig.tight_layout()
    return fig


def _line_text(slope: float, intercept: float) -> str:
    """``"1.80 N - 1.00"``: the fitted line with the sign of its intercept."""
    b = f"{abs(intercept):.2f}"
    return f"{slope:.2f} N {'-' if intercept < 0 and b != '0.00' else '+'} {b}"


def dimensionality_vs_N(summaries, *, fit_up_to: int | None = 30):
    """PCA dimensionality against N with a least-squares line fitted up to ``fit_up_to`` (Fig. 6b);
    dots: the mean over the recorded trials, error bars: their standard deviation.

    Returns
    -------
    matplotlib.figure.Figure
    """
    runs, fig, ax = _runs_and_axes(summaries, "run summaries")
    upto = f"N ≤ {fit_up_to}" if fit_up_to is not None else "every N"
    for style, (label, ds) in zip(_styles(len(runs)), runs.items()):
        color = style["color"]
        _need(ds, ["dimensionality"], label, "trainers.analyze.analyze_run")
        N = ds["N"].values.astype(float)
        d = ds["dimensionality"].values
        err = ds["dimensionality_std"].values if "dimensionality_std" in ds else None
        ax.errorbar(N, d, yerr=err, fmt=style["marker"], ms=4, capsize=2, color=color, label=label)
        sel = N <= (fit_up_to if fit_up_to is not None else np.inf)
        if sel.sum() >= 2:
            slope, icpt = np.polyfit(N[sel], d[sel], 1)
            x = np.linspace(N.min(), N.max(), 50)
            ax.plot(x, slope * x + icpt, "--", color=color, lw=1, label=f"fit ({upto}): {_line_text(slope, icpt)}")
    import json

    params = next(iter(runs.values())).attrs.get("params")
    threshold = json.loads(params).get("threshold", 0.9) if params else 0.9
    ax.set_xlabel("N")
    ax.set_ylabel(f"PCs for {100 * threshold:g}% of the variance")
    ax.legend(frameon=False, fontsize=7, title="mean ± std over trials;\ndashed: least-squares line",
              title_fontsize=7)
    _integer_N(ax)
    fig.tight_layout()
    return fig


def ablation_bars(results):
    """Relative accuracy after ablating long- and short-τ units, one bar pair per run (Fig. 7):
    bar the median over the ablated units (each ablated alone), whiskers the interquartile range,
    dots one per unit.

    Parameters
    ----------
    results : {label: {"longest": Dataset, "shortest": Dataset}} or {label: Dataset}
        Outputs of :func:`dynatools.robustness.ablation_by_tau`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = _plt()
    if not results:
        raise ValueError("no ablation results to plot.")
    fig, ax = plt.subplots(figsize=(3.6 + 1.6 * len(results), 3.4))
    width = 0.38
    for i, (label, res) in enumerate(results.items()):
        parts = res if isinstance(res, dict) else {res.attrs.get("which", "ablated"): res}
        for j, (which, ds) in enumerate(sorted(parts.items())):
            _need(ds, ["relative_accuracy"], f"{label} ({which})", "dynatools.robustness.ablation_by_tau")
            per_unit = ds["relative_accuracy"].mean("trial").values.ravel()
            lo, median, hi = np.nanquantile(per_unit, [0.25, 0.5, 0.75])
            x = i + (j - (len(parts) - 1) / 2) * width
            color = PALETTE[1] if which == "longest" else PALETTE[0]
            ax.bar(x, median, width * 0.9, yerr=[[median - lo], [hi - median]], capsize=3, color=color,
                   alpha=0.8, label=f"{which} τ" if i == 0 else None)
            ax.plot(np.full(per_unit.size, x), per_unit, ".", color="0.2", ms=3)
    ax.set_xticks(range(len(results)), list(results))
    ax.set_xlabel("network")
    ax.set_ylabel("relative accuracy\n(1: intact network, 0: chance)")
    ax.axhline(1, color="0.6", lw=0.8)
    ax.axhline(0, color="0.6", lw=0.8)
    ax.legend(frameon=False, fontsize=8, title="bar: median,\nwhiskers: interquartile\nrange, dots: units\n\n"
              "ablated units\n(one at a time):", title_fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig


def _relative_accuracy_curves(ax, runs: dict[str, xr.Dataset], x: str, producer: str, samples) -> None:
    """One line (median) with a band (interquartile range) of ``relative_accuracy`` against ``x``
    per run; ``samples(relative_accuracy)`` gives the values the quartiles are taken over (all
    its dims but ``x``)."""
    for style, (label, ds) in zip(_styles(len(runs)), runs.items()):
        _need(ds, ["relative_accuracy"], label, producer)
        lo, median, hi = _quartiles(samples(ds["relative_accuracy"]), x)
        xs = ds[x].values
        ax.plot(xs, median, "-", ms=3, label=label, **style)
        ax.fill_between(xs, lo, hi, color=style["color"], alpha=0.2, lw=0)


def perturbation_curves(results, *, title: str | None = None):
    """Relative accuracy against perturbation strength ε (Fig. 8a-b): the median over repeats
    (each the mean over trials) and the interquartile range as a band, which stays within the
    measured values (a relative accuracy band never rises above the largest repeat).

    Parameters
    ----------
    results : Dataset, sequence or {label: Dataset}
        Outputs of :func:`dynatools.robustness.perturb`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    runs = _as_runs(results, "perturbation results")
    target = next((ds.attrs["target"] for ds in runs.values() if "target" in ds.attrs), None)
    fig, ax = _relative_accuracy_figure(runs, "epsilon", "dynatools.robustness.perturb",
                                        lambda ra: ra.mean("trial"), "perturbation strength ε",
                                        "line: median, band: interquartile\nrange over repeats")
    ax.set_title(title or f"perturbation of {target}", fontsize=10)
    fig.tight_layout()
    return fig


def retraining_curves(results):
    """Relative accuracy after re-training on a new N without curriculum, against N (Fig. 8c),
    median and interquartile range over trials, for the outputs of
    :func:`trainers.retrain.retrain_sweep` (a Dataset, a sequence of them or ``{label: Dataset}``,
    one line each); returns the Figure."""
    fig, ax = _relative_accuracy_figure(_as_runs(results, "re-training results"), "N",
                                        "trainers.retrain.retrain_sweep", lambda ra: ra,
                                        "new N (re-trained without curriculum)",
                                        "line: median, band: interquartile\nrange over trials")
    _integer_N(ax)
    fig.tight_layout()
    return fig


def _runs_and_axes(results, what: str):
    """``(runs, fig, ax)``: the results by label (:func:`_as_runs`) and one 5 x 3.6 in axes."""
    runs = _as_runs(results, what)
    fig, ax = _plt().subplots(figsize=(5, 3.6))
    return runs, fig, ax


def _relative_accuracy_figure(runs: dict[str, xr.Dataset], x: str, producer: str, samples, xlabel: str,
                              statistic: str):
    """A figure of :func:`_relative_accuracy_curves` with its axis labels, the lines of the intact
    network (1) and of chance (0), and a legend titled with the ``statistic`` drawn."""
    fig, ax = _plt().subplots(figsize=(5, 3.6))
    _relative_accuracy_curves(ax, runs, x, producer, samples)
    ax.axhline(1, color="0.6", lw=0.8)
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("relative accuracy\n(1: unchanged network, 0: chance)")
    ax.legend(frameon=False, fontsize=8, title=statistic, title_fontsize=7)
    return fig, ax


# ---------------------------------------------------------------------------------------------
# Trial tasks: one trial's inputs, targets and outputs; an ensemble's learning curves


#: Shading of the usual task periods (others take the next palette colours).
_PERIOD_COLORS = {"fixation": PALETTE[5], "stimulus": PALETTE[4], "delay": PALETTE[2], "response": PALETTE[3]}


def _stacked_axes(ax, n: int, height_ratios: Sequence[float], figsize: tuple[float, float]):
    """``(fig, axes)``: ``n`` panels stacked over one shared time axis. ``ax`` None: a new
    figure; one Axes: its area split into ``n`` panels (the Axes itself is removed); a sequence
    of ``n`` Axes: those."""
    plt = _plt()
    if ax is None:
        fig, axes = plt.subplots(n, 1, figsize=figsize, sharex=True, squeeze=False,
                                 gridspec_kw={"height_ratios": list(height_ratios)})
        return fig, list(axes[:, 0])
    if isinstance(ax, (list, tuple, np.ndarray)):
        axes = list(np.ravel(ax))
        if len(axes) != n:
            raise ValueError(f"ax: {len(axes)} axes given but this figure draws {n} panels; pass {n} axes, "
                             f"one Axes (split into {n} panels) or None.")
        return axes[0].figure, axes
    fig = ax.figure
    if n == 1:
        return fig, [ax]
    spec = ax.get_subplotspec()
    if spec is None:
        raise ValueError(f"ax is not a subplot and cannot be split into {n} panels; make it with "
                         f"plt.subplots / fig.add_subplot, or pass a list of {n} axes.")
    grid = spec.subgridspec(n, 1, height_ratios=list(height_ratios), hspace=0.06)
    ax.remove()
    axes: list = []
    for i in range(n):
        axes.append(fig.add_subplot(grid[i], sharex=axes[0] if axes else None))
    return fig, axes


def _as_trials(recording) -> xr.Dataset:
    """A Dataset of trials from a Dataset, or from a mapping of arrays: ``input`` (trial, time,
    input_dim), ``target`` / ``output`` (trial, time, head), ``period`` (trial, time) or (time,)
    strings, ``dt`` and ``time_units``; arrays without the trial axis are one trial."""
    if isinstance(recording, xr.Dataset):
        return recording
    if not hasattr(recording, "keys"):
        raise TypeError(f"expected an xarray.Dataset or a mapping of arrays; found {type(recording).__name__}. "
                        f"Pass a recording (dynatools.open_recording) or {{'input': array, 'target': array}}.")
    names = {"input": "input_dim", "target": "head", "output": "head"}
    data, coords = {}, {}
    for name, channel in names.items():
        if name in recording and recording[name] is not None:
            a = np.asarray(recording[name], dtype=float)
            if a.ndim == 2:
                a = a[None]
            if a.ndim != 3:
                raise ValueError(f"{name!r} has shape {a.shape}; expected (trial, time, {channel}) or "
                                 f"(time, {channel}).")
            data[name] = (("trial", "time", channel), a)
    ds = xr.Dataset(data)
    if "period" in recording and recording["period"] is not None:
        p = np.asarray(recording["period"]).astype(str)
        coords["period"] = (("time",) if p.ndim == 1 else ("trial", "time"), p)
    dt = float(recording.get("dt", 1.0))
    if "time" in ds.dims:
        coords["time"] = ("time", np.arange(ds.sizes["time"]) * dt, {"units": recording.get("time_units", "step")})
    ds = ds.assign_coords(coords)
    ds.attrs["dt"] = dt
    return ds


def _period_runs(labels: np.ndarray) -> list[tuple[str, int, int]]:
    """``(label, first, end)`` of each run of equal labels (``end`` exclusive)."""
    runs = []
    start = 0
    for i in range(1, len(labels) + 1):
        if i == len(labels) or labels[i] != labels[start]:
            runs.append((str(labels[start]), start, i))
            start = i
    return runs


def _valid_length(ds: xr.Dataset, n_time: int) -> int:
    """The number of valid samples of the (selected) trial: ``trial_length``, else the steps up to
    the last one whose ``period`` is not ``"pad"``, else all."""
    if "trial_length" in ds.coords or "trial_length" in ds:
        return int(np.clip(int(ds["trial_length"].values), 1, n_time))
    if "period" in ds.coords or "period" in ds:
        valid = np.flatnonzero(np.asarray(ds["period"].values).astype(str) != "pad")
        return int(valid[-1]) + 1 if valid.size else n_time
    return n_time


def _channels(da: xr.DataArray, length: int) -> np.ndarray:
    """``(time, channel)`` values of one trial's variable, cut to ``length`` steps (extra dims
    such as ``class`` flattened into the channels)."""
    v = da.transpose("time", ...).values.astype(float)
    return v.reshape(v.shape[0], -1)[:length]


def task_trial(recording, trial: int = 0, *, member=None, fixation: int | None = None, ax=None):
    """One trial of a trial task: its periods, inputs, targets and (if recorded) outputs over time.

    Stacked panels over one time axis: a strip of the task periods (from the ``period``
    coordinate, labelled, with dotted lines at their boundaries on every panel), then ``input``,
    ``target`` and ``output`` as images (channels x time; target and output on one colour scale),
    or as lines where a variable has at most 4 channels. Padding after the trial's end
    (``trial_length``, or ``period == "pad"``) is cut off: the time axis ends at the trial's
    length, in the units of the ``time`` coordinate.

    Parameters
    ----------
    recording : xarray.Dataset or mapping
        A recording-like Dataset with ``input`` ``(trial, time, input_dim)`` and optionally
        ``target`` and ``output`` ``(trial, time, head)`` (an ensemble's ``output`` may lead with
        ``member``; extra dims such as ``class`` are drawn as more channels; without a
        time-resolved ``target``, ``task_target`` as :func:`trainers.record` writes it is drawn),
        ``period``, ``trial_length``, attribute ``dt``; or a mapping of arrays
        ``{"input": ..., "target": ..., "output": ..., "period": ..., "dt": ..., "time_units": ...}``.
    trial : int, default=0
        Position of the trial.
    member : optional
        The ensemble member (a ``member`` label) whose variables are drawn; default the first.
    fixation : int, optional
        A channel (position, as in cognitive tasks' 0) drawn as lines in a panel of its own for
        every variable, and left out of the images.
    ax : matplotlib Axes, sequence of Axes, optional
        One Axes (a subplot) is split into the panels, e.g. one cell of a grid of trials; a
        sequence gives one Axes per panel. Default: a new figure.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np, dynatools.plot as dplot
    >>> period = ["fixation"] * 20 + ["stimulus"] * 30 + ["response"] * 10 + ["pad"] * 5
    >>> trial = {"input": np.random.rand(65, 3), "target": np.random.rand(65, 2),
    ...          "period": period, "dt": 0.005, "time_units": "s"}
    >>> fig = dplot.task_trial(trial)
    >>> round(float(fig.axes[-1].get_xlim()[1]), 6)      # the padding cut: 60 valid steps of 5 ms
    0.3
    """
    ds = _as_trials(recording)
    if "input" not in ds:
        raise ValueError(f"the recording has no 'input' variable (variables: {sorted(map(str, ds.data_vars))}); "
                         f"pass a trial-task recording with input (trial, time, input_dim).")
    if not {"trial", "time"} <= set(ds["input"].dims):
        raise ValueError(f"'input' has dims {ds['input'].dims}; expected (trial, time, input_dim): add the "
                         f"missing dim with ds.expand_dims('trial').")
    shown_member = member
    if "member" in ds.dims:
        if member is None:
            shown_member = ds["member"].values[0] if "member" in ds.coords else 0
            ds = ds.isel(member=0)
        else:
            labels = list(ds["member"].values) if "member" in ds.coords else list(range(ds.sizes["member"]))
            if member not in labels:
                raise ValueError(f"member {member!r} not found; the recording's members are "
                                 f"{labels[:10]}{' ...' if len(labels) > 10 else ''}: pass one of them.")
            ds = ds.isel(member=labels.index(member))
    elif member is not None:
        raise ValueError("member given but the recording has no 'member' dim; leave member=None.")
    n_trials = ds.sizes["trial"]
    if not isinstance(trial, (int, np.integer)) or not 0 <= trial < n_trials:
        raise ValueError(f"trial {trial!r} is out of range: the recording has {n_trials} trial(s); pass "
                         f"trial=0..{n_trials - 1}.")
    label = ds["trial"].values[trial] if "trial" in ds.coords else trial
    one = ds.isel(trial=trial)
    n_time = one.sizes["time"]
    length = _valid_length(one, n_time)
    time = one["time"].values.astype(float) if "time" in one.coords else np.arange(n_time, dtype=float)
    units = one["time"].attrs.get("units", "step") if "time" in one.coords else "step"
    dt = float(ds.attrs.get("dt", time[1] - time[0] if n_time > 1 else 1.0))
    t0, t1 = float(time[0]), float(time[length - 1] + dt)

    source = {"input": "input", "target": "target", "output": "output"}
    if ("target" not in one or "time" not in one["target"].dims) and "task_target" in one:
        source["target"] = "task_target"           # trainers.record: the task's target with its class dim
    variables = [(v, _channels(one[name], length)) for v, name in source.items()
                 if name in one and "time" in one[name].dims]
    skipped = [v for v in ("target", "output") if source[v] in one and "time" not in one[source[v]].dims]
    fix = []
    if fixation is not None:
        if not all(0 <= fixation < a.shape[1] for _, a in variables):
            raise ValueError(f"fixation={fixation} is not a channel of every variable "
                             f"({', '.join(f'{v}: {a.shape[1]}' for v, a in variables)}); pass a smaller one or None.")
        fix = [(v, a[:, fixation]) for v, a in variables]
        variables = [(v, np.delete(a, fixation, axis=1)) for v, a in variables]
    periods = None
    if "period" in one.coords or "period" in one:
        periods = _period_runs(np.asarray(one["period"].values).astype(str)[:length])
    panels = (["period"] if periods else []) + [v for v, a in variables if a.shape[1]] + (["fixation"] if fix else [])
    heights = [0.35 if p == "period" else 1.0 if p == "fixation" else 1.6 for p in panels]
    compact = ax is not None
    fig, axes = _stacked_axes(ax, len(panels), heights, (7.5, 1.0 + 1.3 * len(panels)))
    by_name = dict(zip(panels, axes))
    font = 6 if compact else 8

    if periods:
        pax = by_name["period"]
        others = [p for p in dict.fromkeys(p for p, _, _ in periods) if p not in _PERIOD_COLORS]
        for name, start, end in periods:
            a, b = time[start], time[end - 1] + dt
            color = _PERIOD_COLORS.get(name) or PALETTE[(others.index(name) + 5) % len(PALETTE)]
            pax.axvspan(a, b, color=color, alpha=0.3, lw=0)
            inches = (b - a) / (t1 - t0) * pax.get_position().width * fig.get_figwidth()
            char = 0.6 * font / 72                  # a character's width (in), roughly
            text = name if inches > char * (len(name) + 1) else name[:4] if inches > 5 * char else name[:1]
            pax.text((a + b) / 2, 0.5, text, ha="center", va="center", fontsize=font, clip_on=True)
        pax.set_yticks([])
        pax.set_ylim(0, 1)
        bounds = [time[start] for _, start, _ in periods[1:]]
        for a in axes[1:]:
            for x in bounds:
                a.axvline(x, color="0.75", lw=0.7, ls=":")
    scale = [a for v, a in variables if v in ("target", "output") and a.size]
    lo = min((np.nanmin(a) for a in scale), default=0.0)
    hi = max((np.nanmax(a) for a in scale), default=1.0)
    styles = {"input": dict(color="0.35"), "target": dict(color="black", ls="--"),
              "output": dict(color=PALETTE[1])}
    for v, a in variables:
        if not a.shape[1]:
            continue
        vax = by_name[v]
        if a.shape[1] <= 4:
            for c in range(a.shape[1]):
                vax.plot(time[:length], a[:, c], lw=1, color=PALETTE[c % len(PALETTE)], label=f"channel {c}")
            if a.shape[1] > 1 and not compact:
                vax.legend(fontsize=6, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        else:
            kw = {"vmin": lo, "vmax": hi} if v in ("target", "output") else {}
            vax.imshow(a.T, aspect="auto", interpolation="nearest", origin="upper", cmap="viridis",
                       extent=(t0, t1, a.shape[1] - 0.5, -0.5), **kw)
        vax.set_ylabel(v if compact or a.shape[1] <= 4 else f"{v}\nchannel", fontsize=font)
        vax.tick_params(labelsize=font)
    if fix:
        fax = by_name["fixation"]
        for v, f in fix:
            fax.plot(time[:length], f, lw=1, label=v, **styles[v])
        lo_f = min(0.0, min(float(np.nanmin(f)) for _, f in fix))
        hi_f = max(1.0, max(float(np.nanmax(f)) for _, f in fix))
        fax.set_ylim(lo_f - 0.12 * (hi_f - lo_f), hi_f + 0.12 * (hi_f - lo_f))
        fax.set_ylabel("fixation" if compact else f"fixation\n(channel {fixation})", fontsize=font)
        fax.tick_params(labelsize=font)
        if not compact:
            fax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    for a in axes[:-1]:
        a.tick_params(labelbottom=False)
    axes[-1].set_xlabel(f"time ({units})", fontsize=font)
    axes[-1].set_xlim(t0, t1)
    title = f"trial {label}" + (f", member {shown_member}" if shown_member is not None else "")
    if ds.attrs.get("task"):
        title = f"{ds.attrs['task']}: {title}"
    if skipped:
        title += f" ({', '.join(skipped)}: no time dim, not drawn)"
    axes[0].set_title(title, fontsize=font + 1)
    if not compact:
        fig.tight_layout()
    return fig


def _threshold_of(metrics: xr.Dataset) -> float | None:
    """The stopping threshold a metrics Dataset records: attribute ``threshold``, else the first
    ``threshold`` of its JSON ``config`` (``curriculum_options``), else None."""
    import json

    if "threshold" in metrics.attrs:
        return float(metrics.attrs["threshold"])
    config = metrics.attrs.get("config")
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except ValueError:
            return None
    stack = [config]
    while stack:
        item = stack.pop(0)
        if isinstance(item, dict):
            if isinstance(item.get("threshold"), (int, float)):
                return float(item["threshold"])
            stack.extend(item.values())
    return None


def _running_mean(values: np.ndarray, window: int) -> np.ndarray:
    """The trailing running mean of each row over the last ``window`` columns (fewer at the
    start), NaNs ignored."""
    if window <= 1:
        return values
    v = np.where(np.isfinite(values), values, 0.0)
    n = np.isfinite(values).astype(float)
    cv = np.cumsum(np.pad(v, ((0, 0), (1, 0))), axis=1)
    cn = np.cumsum(np.pad(n, ((0, 0), (1, 0))), axis=1)
    i = np.arange(1, values.shape[1] + 1)
    j = np.maximum(i - window, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (cv[:, i] - cv[:, j]) / (cn[:, i] - cn[:, j])


def _member_curves(ax, da: xr.DataArray, steps: np.ndarray, band: tuple[float, float], window: int,
                   color: str, what: str) -> np.ndarray:
    """Thin per-member lines, the median and the ``band`` percentiles over members of ``da``
    ``(member, step)`` smoothed by a trailing mean of ``window`` steps; returns the smoothed
    values."""
    v = da.transpose("member", "step").values.astype(float) if "member" in da.dims else da.values[None].astype(float)
    sm = _running_mean(v, window)
    k = sm.shape[0]
    smooth = f", running mean of {window} steps" if window > 1 else ""
    if k == 1:
        ax.plot(steps, sm[0], color=color, lw=1.5, label=f"{what}{smooth}")
        return sm
    for i, row in enumerate(sm):
        ax.plot(steps, row, color=color, lw=0.6, alpha=0.35, label=f"members{smooth}" if i == 0 else None)
    import warnings

    with warnings.catch_warnings():             # steps where every member is NaN stay gaps
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanpercentile(sm, band, axis=0)
        median = np.nanmedian(sm, axis=0)
    ax.fill_between(steps, lo, hi, color=color, alpha=0.2, lw=0,
                    label=f"{band[0]:g}-{band[1]:g}th percentile over {k} members")
    ax.plot(steps, median, color=color, lw=1.8, label=f"median over {k} members")
    return sm


def learning_curves(metrics: xr.Dataset, *, ax=None, band: tuple[float, float] = (10, 90),
                    threshold: float | None = None, smooth: int | None = None, loss: bool = False):
    """Learning curves of an ensemble trained on a trial task, with its stopping rule.

    Training performance of each member over steps (thin lines, a trailing running mean), their
    median (thick) and the band between the ``band`` percentiles over members (a 10-90 band holds
    the members the percentile stopping rule averages); the evaluated ``score`` (fresh trials, the
    rule's 10-90 percentile mean) at ``epoch_step``; the threshold (dashed) and, when it was met,
    the step (``steps_to_threshold`` >= 0, solid vertical line). One member: its line, no band.

    Parameters
    ----------
    metrics : xarray.Dataset
        :func:`trainers.ensemble.ensemble_metrics` (``run.metrics()`` of a trial-task run):
        ``performance`` (and ``loss``) over ``(member, step)``, optionally ``score`` and
        ``epoch_step`` over ``epoch``, attributes ``steps_to_threshold`` and ``stop_reason``.
    ax : matplotlib Axes or sequence of Axes, optional
        Where to draw (one Axes is split in two with ``loss=True``); default a new figure.
    band : (float, float), default=(10, 90)
        Percentiles over members bounding the band.
    threshold : float, optional
        Default: the metrics' attribute ``threshold``, else the ``threshold`` of its ``config``
        (``curriculum_options``), else 0.99.
    smooth : int, optional
        Window (steps) of the running mean; default ``max(1, steps // 50)``; 1: raw values.
    loss : bool, default=False
        A second panel with the training loss (median and band, log scale).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np, xarray as xr, dynatools.plot as dplot
    >>> perf = np.clip(np.linspace(0, 1.2, 200) + 0.1 * np.random.rand(8, 200), 0, 1)
    >>> metrics = xr.Dataset({"performance": (("member", "step"), perf)},
    ...                      coords={"step": np.arange(1, 201)}, attrs={"steps_to_threshold": 180})
    >>> fig = dplot.learning_curves(metrics)
    """
    if not isinstance(metrics, xr.Dataset):
        raise TypeError(f"metrics is a {type(metrics).__name__}; pass the Dataset of run.metrics() "
                        f"(trainers.ensemble.ensemble_metrics).")
    _need(metrics, ["performance"], "metrics", "trainers.ensemble.ensemble_metrics (a trial-task run's .metrics())")
    if "step" not in metrics["performance"].dims:
        raise ValueError(f"'performance' has dims {metrics['performance'].dims}, not 'step': this figure needs "
                         f"per-step metrics of a trial-task run (trainers.ensemble.ensemble_metrics).")
    if loss:
        _need(metrics, ["loss"], "metrics", "trainers.ensemble.ensemble_metrics, or use loss=False")
    if not 0 <= band[0] < band[1] <= 100:
        raise ValueError(f"band={band}: pass two percentiles 0 <= low < high <= 100, e.g. (10, 90).")
    steps = metrics["step"].values if "step" in metrics.coords else np.arange(1, metrics.sizes["step"] + 1)
    window = max(1, len(steps) // 50) if smooth is None else int(smooth)
    if window < 1:
        raise ValueError(f"smooth={smooth}: pass a window of at least 1 step (1: no smoothing).")
    if threshold is None:
        threshold = _threshold_of(metrics)
    threshold = 0.99 if threshold is None else float(threshold)
    fig, axes = _stacked_axes(ax, 2 if loss else 1, [1.6, 1.0] if loss else [1.0],
                              (8.5, 6.0 if loss else 3.8))
    pax = axes[0]
    _member_curves(pax, metrics["performance"], steps, band, window, PALETTE[0], "training performance")
    if "score" in metrics and "epoch_step" in metrics:
        pax.plot(metrics["epoch_step"].values, metrics["score"].values, "o-", color=PALETTE[1], ms=4, lw=1.2,
                 label="evaluated score (10-90 percentile mean)")
    pax.axhline(threshold, color="0.3", ls="--", lw=1, label=f"threshold {threshold:g}")
    reached = int(metrics.attrs.get("steps_to_threshold", -1))
    title = None
    if reached >= 0:
        for a in axes:
            a.axvline(reached, color=PALETTE[2], lw=1.2,
                      label=f"threshold reached at step {reached}" if a is pax else None)
    elif metrics.attrs.get("stop_reason"):
        title = f"threshold not reached (stopped: {metrics.attrs['stop_reason']})"
    pax.set_ylim(-0.03, 1.03)
    pax.set_ylabel("performance\n(fraction correct)")
    pax.legend(fontsize=7, frameon=False, title=title, title_fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    if loss:
        lax = axes[1]
        sm = _member_curves(lax, metrics["loss"], steps, band, window, PALETTE[3], "training loss")
        if np.isfinite(sm).any() and np.nanmin(sm) > 0:
            lax.set_yscale("log")
        lax.set_ylabel("training loss")
        pax.tick_params(labelbottom=False)
    axes[-1].set_xlabel("training step")
    if ax is None:
        fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------
# Dynamics misalignment of skip-connection training (skip-connection paper, Fig. 3B-C)


#: Colours of the skip-connection paper's methods (CD red as in its Fig. 3); others take the palette.
_METHOD_COLORS = {"cd": PALETTE[1], "sctt": PALETTE[2], "dasc": PALETTE[0]}


def _method_lines(ax, da: xr.DataArray, band: tuple[float, float]) -> None:
    """One line per method of ``da`` ``(simulation, theta[, member])`` against theta: the mean over
    members (NaNs ignored) and, with members, the ``band`` percentiles over them as a shaded band."""
    import warnings

    theta = np.asarray(da["theta"].values, dtype=float)
    others = [c for c in PALETTE if c not in _METHOD_COLORS.values()]
    for i, method in enumerate(da["simulation"].values):
        key = str(method)
        color = _METHOD_COLORS.get(key.lower(), others[i % len(others)])
        v = da.isel(simulation=i)
        v = v.transpose("theta", "member").values.astype(float) if "member" in v.dims else \
            v.transpose("theta").values.astype(float)[:, None]
        with warnings.catch_warnings():             # a theta with no finite member stays a gap
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(v, axis=1)
            if v.shape[1] > 1:
                lo, hi = np.nanpercentile(v, band, axis=1)
                ax.fill_between(theta, lo, hi, color=color, alpha=0.2, lw=0)
        ax.plot(theta, mean, "o-", color=color, ms=4, lw=1.5, label=key.upper())


def misalignment(ds: xr.Dataset, ax=None):
    """Dynamics misalignment against skip length θ, one line per method (Fig. 3B-C of Soo,
    Goudar & Wang 2023).

    Layout: panel B draws ``nmse`` (:func:`dynatools.activity_nmse` of the modified against the
    true dynamics) against θ; panel C, when ``ds`` has ``performance_difference``, draws it
    against θ. In each panel a line with markers per method (the mean over ``member``, NaNs
    ignored, so a θ a method could not train at is a gap) and, when there is a ``member`` dim, a
    band between the 10th and 90th percentiles over members. When ``ds.attrs["tau_steps"]`` is
    set (the single-unit time constant in base steps; 20 in the paper), θ > tau_steps is shaded
    grey: a skip longer than the time constant. The y axis is logarithmic when the panel's
    finite values are all positive and span more than two decades.

    Parameters
    ----------
    ds : xarray.Dataset
        ``nmse`` with dims ``(simulation, theta[, member])`` and optionally ``performance_difference``
        (true minus modified performance: the performance the method's dynamics lose) with the same dims; coordinates ``simulation`` (strings such
        as ``"cd"``, ``"sctt"``, ``"dasc"``) and ``theta`` (skip lengths, in base steps).
    ax : matplotlib Axes or sequence of two Axes, optional
        None: a new figure, with two panels (B, C) side by side when ``performance_difference``
        is present, else one. One Axes: ``nmse`` only, drawn there. Two Axes: ``nmse`` and
        ``performance_difference`` drawn there.

    Returns
    -------
    matplotlib.axes.Axes or (Axes, Axes)
        The ``nmse`` Axes; ``(nmse Axes, performance difference Axes)`` when two panels are drawn.
        Unlike this module's other functions, the Axes (``ax.figure`` is the Figure), so that the
        panels can be placed in a larger figure. Each Axes has one line per method (``ax.lines``).

    Examples
    --------
    >>> import numpy as np, xarray as xr, dynatools.plot as dplot
    >>> theta = [5, 10, 20, 30, 40]
    >>> nmse = np.array([[0.02, 0.1, 0.5, np.nan, np.nan], [0.3, 0.4, 0.5, 0.6, 0.7], [0.01, 0.02, 0.05, 0.08, 0.1]])
    >>> ds = xr.Dataset({"nmse": (("simulation", "theta"), nmse), "performance_difference": (("simulation", "theta"), -nmse)},
    ...                 coords={"simulation": ["cd", "sctt", "dasc"], "theta": theta}, attrs={"tau_steps": 20})
    >>> ax_b, ax_c = dplot.misalignment(ds)
    >>> len(ax_b.lines)
    3
    """
    if not isinstance(ds, xr.Dataset):
        raise TypeError(f"ds is a {type(ds).__name__}; pass a Dataset with 'nmse' (simulation, theta[, member]), "
                        f"e.g. xr.Dataset({{'nmse': nmse}}).")
    _need(ds, ["nmse"], "misalignment", "dynatools.activity_nmse, stacked over simulation and theta")
    names = ["nmse"] + (["performance_difference"] if "performance_difference" in ds else [])
    for name in names:
        extra = [str(d) for d in ds[name].dims if d not in ("simulation", "theta", "member")]
        if {"simulation", "theta"} - set(ds[name].dims) or extra:
            raise ValueError(f"'{name}' has dims {tuple(map(str, ds[name].dims))}; expected (simulation, theta) with an "
                             f"optional member. " + (f"Select or average {extra} first, e.g. .mean({extra[0]!r})."
                                                     if extra else "Stack the results over simulation and theta."))
    plt = _plt()
    if ax is None:
        fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.4), squeeze=False)
        axes = list(axes[0])
    elif isinstance(ax, (list, tuple, np.ndarray)):
        axes = list(np.ravel(ax))
        if len(axes) != 2 or len(names) != 2:
            raise ValueError(f"ax: {len(axes)} axes given; pass two axes for 'nmse' and 'performance_difference' "
                             f"(the Dataset has {names}), one Axes for 'nmse' only, or None.")
        fig = axes[0].figure
    else:
        axes, names, fig = [ax], ["nmse"], ax.figure
    theta = np.asarray(ds["theta"].values, dtype=float)
    tau = ds.attrs.get("tau_steps")
    members = ds.sizes.get("member", 1)
    labels = {"nmse": ("activity NMSE\n(modified vs true dynamics)", "B"),
              "performance_difference": ("performance lost\n(true − modified)", "C")}
    for a, name in zip(axes, names):
        _method_lines(a, ds[name], (10, 90))
        pad = 0.05 * (theta.max() - theta.min()) if theta.size > 1 else 1.0
        a.set_xlim(theta.min() - pad, theta.max() + pad)
        if tau is not None and float(tau) < theta.max() + pad:
            a.axvspan(float(tau), theta.max() + pad, color="0.88", lw=0, zorder=0,
                      label=f"θ > τ ({float(tau):g} steps)")
        finite = ds[name].values[np.isfinite(ds[name].values)]
        if finite.size and finite.min() > 0 and finite.max() / finite.min() > 100:
            a.set_yscale("log")
        a.set_xticks(theta)
        a.set_xlabel("skip length θ (steps)")
        a.set_ylabel(labels[name][0])
        if len(names) > 1:
            a.set_title(labels[name][1], loc="left", fontweight="bold")
    axes[0].legend(frameon=False, fontsize=8, title_fontsize=7,
                   title=f"mean, band 10-90th percentile\nover {members} networks" if members > 1 else None)
    if ax is None:
        fig.tight_layout()
    return tuple(axes) if len(axes) > 1 else axes[0]
