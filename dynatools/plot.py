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
           "perturbation_curves", "retraining_curves"]


def _plt():
    import matplotlib.pyplot as plt  # falls back to the Agg backend without a display

    return plt


def _fit_curves(r: xr.Dataset, t: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The single and double exponential curves of one unit's fit at times ``t`` (None if absent)."""
    single = double = None
    if np.isfinite(r["tau_single"]):
        single = float(r["amplitude_single"]) * np.exp(-t / float(r["tau_single"]))
    if np.isfinite(r["tau_slow"]):
        a, c = float(r["amplitude_double"]), float(r["weight_fast"])
        double = a * (c * np.exp(-t / float(r["tau_fast"])) + (1 - c) * np.exp(-t / float(r["tau_slow"])))
    return single, double


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
    dashed, the double fit solid, the selected model in the legend.

    Parameters
    ----------
    result : xarray.Dataset
        Output of :func:`dynatools.timescales` (needs ``autocorrelation`` and the fit variables).
    units : int or sequence of unit labels, optional
        How many units (picked to show both models when possible) or which ones. Default 6.
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
    idx = _pick_units(result, units, unit_dim)
    fit_lag = int(result.attrs.get("fit_lag", 30))
    ac = result["autocorrelation"]
    lag = ac["lag"].values
    n_show = min(len(lag), (max_lag if max_lag is not None else 2 * fit_lag) + 1)
    lag = lag[:n_show]
    units_label = ac["lag"].attrs.get("units", "step")
    ncol = min(3, len(idx))
    nrow = int(np.ceil(len(idx) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol, 2.9 * nrow), squeeze=False, sharey=True)
    for ax in axes.ravel()[len(idx):]:
        ax.set_visible(False)
    for ax, i in zip(axes.ravel(), idx):
        r = result.isel({unit_dim: i})
        y = r["autocorrelation"].values[:n_show]
        y = y / y[0]
        t = np.linspace(0, lag[-1], 200)
        ax.plot(lag, y, "o", ms=3, color="0.35", label="data")
        single, double = _fit_curves(r, t)
        if single is not None:
            ax.plot(t, single, "--", color=PALETTE[0], label=f"single: τ={float(r['tau_single']):.3g}")
        if double is not None:
            ax.plot(t, double, "-", color=PALETTE[1], label=f"double: {float(r['tau_fast']):.3g}, {float(r['tau_slow']):.3g}")
        ax.axvline(lag[min(fit_lag, n_show - 1)], color="0.8", lw=0.8, zorder=0)
        if log:
            ax.set_yscale("log")
            ax.set_ylim(max(1e-3, np.nanmin(np.where(y > 0, y, np.nan)) / 2), 1.5)
        label = r[unit_dim].values if unit_dim in r.coords else i
        ax.set_title(f"unit {label}: {str(r['selected_model'].values)} (τ_net={float(r['tau_net']):.3g})", fontsize=9)
        ax.set_xlabel(f"lag ({units_label})")
        ax.legend(fontsize=7, frameon=False)
    for row in axes:
        row[0].set_ylabel("AC / AC[0]")
    fig.tight_layout()
    return fig


def tau_net_histogram(result: xr.Dataset, *, bins: int = 30, by_model: bool = True):
    """Histogram of ``tau_net`` (Fig. 5b of the timescale paper), split by selected model.

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
    """
    plt = _plt()
    tau = result["tau_net"].values.ravel()
    model = result["selected_model"].values.ravel()
    ok = np.isfinite(tau)
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    if not ok.any():
        ax.text(0.5, 0.5, "no finite tau_net", ha="center", transform=ax.transAxes)
        return fig
    edges = np.histogram_bin_edges(tau[ok], bins=bins)
    if by_model:
        data = [tau[ok & (model == "single")], tau[ok & (model == "double")]]
        ax.hist(data, bins=edges, stacked=True, color=[PALETTE[0], PALETTE[1]],
                label=[f"single ({len(data[0])})", f"double ({len(data[1])})"])
        ax.legend(frameon=False, fontsize=8)
    else:
        ax.hist(tau[ok], bins=edges, color=PALETTE[0])
    ax.set_xlabel(f"τ_net ({result['tau_net'].attrs.get('units', 'step')})")
    ax.set_ylabel("units")
    fig.tight_layout()
    return fig


def timescales_summary(result: xr.Dataset, units: Sequence[int] | int | None = 4):
    """One figure: a few autocorrelations with their fits and the histogram of ``tau_net``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = _plt()
    if "autocorrelation" not in result:
        raise ValueError("result has no 'autocorrelation' variable; pass the output of dynatools.timescales.")
    idx = _pick_units(result, units, "unit")
    fit_lag = int(result.attrs.get("fit_lag", 30))
    ac = result["autocorrelation"]
    n_show = min(ac.sizes["lag"], 2 * fit_lag + 1)
    lag = ac["lag"].values[:n_show]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    t = np.linspace(0, lag[-1], 200)
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
        ax1.plot([], [], "o-", color=color, label=f"unit {label}: {str(r['selected_model'].values)}, τ_net={float(r['tau_net']):.3g}")
    ax1.set_yscale("log")
    ax1.set_ylim(1e-3, 1.5)
    ax1.set_xlabel(f"lag ({ac['lag'].attrs.get('units', 'step')})")
    ax1.set_ylabel("AC / AC[0]")
    ax1.set_title("autocorrelations: dots data, dashed single fit, solid double fit", fontsize=9)
    ax1.legend(fontsize=7, frameon=False)
    tau = result["tau_net"].values
    model = result["selected_model"].values
    ok = np.isfinite(tau)
    if ok.any():
        edges = np.histogram_bin_edges(tau[ok], bins=20)
        ax2.hist([tau[ok & (model == "single")], tau[ok & (model == "double")]], bins=edges, stacked=True,
                 color=[PALETTE[0], PALETTE[1]], label=["single", "double"])
        ax2.legend(frameon=False, fontsize=8, title="selected model", title_fontsize=8)
    ax2.set_xlabel(f"τ_net ({result['tau_net'].attrs.get('units', 'step')})")
    ax2.set_ylabel("units")
    ax2.set_title(f"network-mediated timescales ({int(ok.sum())} units)", fontsize=9)
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


def _mean_std_over_units(da: xr.DataArray) -> tuple[np.ndarray, np.ndarray]:
    return da.mean("unit", skipna=True).values, da.std("unit", skipna=True).values


def timescales_vs_N(summaries, *, log: bool = False):
    """Trained τ and network τ_net (mean ± std over units) against N, one line per run
    (timescale paper Figs. 4b and 5c-d). τ_net counts only reliable fits
    (:func:`dynatools.summary.reliable_tau_net`).

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
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.6), sharex=True)
    from dynatools.summary import reliable_tau_net

    for style, (label, ds) in zip(_styles(len(runs)), runs.items()):
        _need(ds, ["tau", "tau_net"], label, "trainers.analyze.analyze_run")
        N = ds["N"].values
        for ax, values in zip(axes, (ds["tau"], reliable_tau_net(ds))):
            m, s = _mean_std_over_units(values)
            ax.plot(N, m, "-", ms=3, label=label, **style)
            ax.fill_between(N, m - s, m + s, color=style["color"], alpha=0.2, lw=0)
    axes[0].set_ylabel("trained τ (steps)")
    axes[1].set_ylabel("τ_net (steps)")
    axes[0].set_title("single-neuron timescales", fontsize=10)
    axes[1].set_title("network-mediated timescales", fontsize=10)
    for ax in axes:
        ax.set_xlabel("N")
        if log:
            ax.set_yscale("log")
    axes[0].legend(frameon=False, fontsize=8)
    _integer_N(*axes)
    fig.tight_layout()
    return fig


def tau_net_distributions(summary: xr.Dataset, Ns: Sequence[int] | None = None, *, bins: int = 30):
    """Distributions of τ_net across units for several N of one run (Fig. 5b); reliable fits
    only (:func:`dynatools.summary.reliable_tau_net`), the number left out is in the legend.

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
    allN = list(summary["N"].values)
    if Ns is None:
        Ns = [allN[i] for i in sorted(set(np.linspace(0, len(allN) - 1, min(4, len(allN))).round().astype(int)))]
    missing = [n for n in Ns if n not in allN]
    if missing:
        raise ValueError(f"N {missing} not in the summary (has {allN}).")
    fig, ax = plt.subplots(figsize=(5, 3.4))
    from dynatools.summary import reliable_tau_net

    values = reliable_tau_net(summary).sel(N=list(Ns)).values
    dropped = (np.isfinite(summary["tau_net"].sel(N=list(Ns)).values) & ~np.isfinite(values)).sum(-1)
    finite = values[np.isfinite(values)]
    edges = np.histogram_bin_edges(finite if finite.size else [0, 1], bins=bins)
    for style, N, row, n_out in zip(_styles(len(Ns)), Ns, values, dropped):
        note = f" ({n_out} unreliable fits left out)" if n_out else ""
        ax.hist(row[np.isfinite(row)], bins=edges, histtype="step", lw=1.6, color=style["color"],
                label=f"N = {N}{note}")
    ax.set_xlabel("τ_net (steps)")
    ax.set_ylabel("units")
    ax.legend(frameon=False, fontsize=8)
    ax.set_title(str(summary.attrs.get("curriculum", "")), fontsize=10)
    fig.tight_layout()
    return fig


def weight_balance_vs_N(summaries):
    """Mean total incoming positive and negative weight per unit against N (Fig. 6a), ± std over
    units, one colour per run (solid line and filled markers: positive; dashed and open: negative).

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
            m, s = _mean_std_over_units(ds[var])
            ax.errorbar(N, m, yerr=s, fmt=run_style["marker"] + style, ms=4, capsize=2, color=run_style["color"],
                        label=f"{label}: {name}",        # open markers for the negative sums
                        mfc=run_style["color"] if name == "positive" else "white")
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set_xlabel("N")
    ax.set_ylabel("summed incoming weight per unit")
    ax.legend(frameon=False, fontsize=7)
    _integer_N(ax)
    fig.tight_layout()
    return fig


def dimensionality_vs_N(summaries, *, fit_up_to: int | None = 30):
    """PCA dimensionality against N with a least-squares line fitted up to ``fit_up_to`` (Fig. 6b).

    Returns
    -------
    matplotlib.figure.Figure
    """
    runs, fig, ax = _runs_and_axes(summaries, "run summaries")
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
            ax.plot(x, slope * x + icpt, "--", color=color, lw=1, label=f"fit: {slope:.2f} N + {icpt:.2f}")
    import json

    params = next(iter(runs.values())).attrs.get("params")
    threshold = json.loads(params).get("threshold", 0.9) if params else 0.9
    ax.set_xlabel("N")
    ax.set_ylabel(f"PCs for {100 * threshold:g}% of the variance")
    ax.legend(frameon=False, fontsize=7)
    _integer_N(ax)
    fig.tight_layout()
    return fig


def ablation_bars(results):
    """Relative accuracy after ablating long- and short-τ units, one bar pair per run (Fig. 7).

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
    fig, ax = plt.subplots(figsize=(3.2 + 1.6 * len(results), 3.4))
    width = 0.38
    for i, (label, res) in enumerate(results.items()):
        parts = res if isinstance(res, dict) else {res.attrs.get("which", "ablated"): res}
        for j, (which, ds) in enumerate(sorted(parts.items())):
            _need(ds, ["relative_accuracy"], f"{label} ({which})", "dynatools.robustness.ablation_by_tau")
            per_unit = ds["relative_accuracy"].mean("trial").values
            x = i + (j - (len(parts) - 1) / 2) * width
            color = PALETTE[1] if which == "longest" else PALETTE[0]
            ax.bar(x, per_unit.mean(), width * 0.9, yerr=per_unit.std(), capsize=3, color=color,
                   alpha=0.8, label=f"{which} τ" if i == 0 else None)
            ax.plot(np.full(per_unit.size, x), per_unit, ".", color="0.2", ms=3)
    ax.set_xticks(range(len(results)), list(results))
    ax.set_xlabel("network")
    ax.set_ylabel("relative accuracy")
    ax.axhline(1, color="0.6", lw=0.8)
    ax.legend(frameon=False, fontsize=8, title="ablated units\n(one at a time)", title_fontsize=8,
              loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig


def _relative_accuracy_curves(ax, runs: dict[str, xr.Dataset], x: str, producer: str, stats) -> None:
    """One line (mean) with a band (spread) of ``relative_accuracy`` against ``x`` per run;
    ``stats(relative_accuracy) -> (mean, spread)`` over the other dims."""
    for style, (label, ds) in zip(_styles(len(runs)), runs.items()):
        _need(ds, ["relative_accuracy"], label, producer)
        m, s = (np.asarray(v) for v in stats(ds["relative_accuracy"]))
        xs = ds[x].values
        ax.plot(xs, m, "-", ms=3, label=label, **style)
        ax.fill_between(xs, m - s, m + s, color=style["color"], alpha=0.2, lw=0)


def perturbation_curves(results, *, title: str | None = None):
    """Relative accuracy against perturbation strength ε, mean ± std over repeats (Fig. 8a-b).

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
                                        lambda ra: (ra.mean("trial").mean("repeat"), ra.mean("trial").std("repeat")),
                                        "perturbation strength ε")
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set_title(title or f"perturbation of {target}", fontsize=10)
    fig.tight_layout()
    return fig


def retraining_curves(results):
    """Relative accuracy after re-training on a new N without curriculum, against N (Fig. 8c),
    mean ± std over trials, for the outputs of :func:`trainers.retrain.retrain_sweep` (a Dataset,
    a sequence of them or ``{label: Dataset}``, one line each); returns the Figure."""
    fig, ax = _relative_accuracy_figure(_as_runs(results, "re-training results"), "N",
                                        "trainers.retrain.retrain_sweep", lambda ra: (ra.mean("trial"), ra.std("trial")),
                                        "new N (re-trained without curriculum)")
    _integer_N(ax)
    fig.tight_layout()
    return fig


def _runs_and_axes(results, what: str):
    """``(runs, fig, ax)``: the results by label (:func:`_as_runs`) and one 5 x 3.6 in axes."""
    runs = _as_runs(results, what)
    fig, ax = _plt().subplots(figsize=(5, 3.6))
    return runs, fig, ax


def _relative_accuracy_figure(runs: dict[str, xr.Dataset], x: str, producer: str, stats, xlabel: str):
    """A figure of :func:`_relative_accuracy_curves` with its axis labels and legend."""
    fig, ax = _plt().subplots(figsize=(5, 3.6))
    _relative_accuracy_curves(ax, runs, x, producer, stats)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("relative accuracy")
    ax.legend(frameon=False, fontsize=8)
    return fig, ax
