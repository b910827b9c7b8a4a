"""Figures: built from results, labeled axes, saved as PNG."""

from __future__ import annotations

import numpy as np
import pytest

import dynatools as dt

plt = pytest.importorskip("matplotlib.pyplot")
from dynatools import plot  # noqa: E402


@pytest.fixture(scope="module")
def result():
    return dt.timescales(dt.open_recording(dt.demo_path()))


@pytest.mark.parametrize("fn", [plot.autocorrelation_fits, plot.tau_net_histogram, plot.timescales_summary])
def test_figures_have_labeled_axes_and_save(fn, result, tmp_path):
    fig = fn(result)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert visible and all(ax.get_xlabel() for ax in visible)
    path = tmp_path / "fig.png"
    fig.savefig(path)
    assert path.read_bytes()[:4] == b"\x89PNG"
    plt.close(fig)


def test_autocorrelation_fits_draws_requested_units_by_label(result):
    relabeled = result.assign_coords(unit=result.unit.values + 100)
    fig = plot.autocorrelation_fits(relabeled, units=[100, 130])
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert len(titles) == 2 and titles[0].startswith("unit 100") and titles[1].startswith("unit 130")
    # the panel of label 130 shows unit index 30's tau_net
    assert f"{float(result.tau_net[30]):.3g}" in titles[1]
    plt.close(fig)
    with pytest.raises(ValueError, match="unit\\(s\\) \\[5\\] not found"):
        plot.autocorrelation_fits(relabeled, units=[5])


def test_population_results_get_a_clear_error():
    pop = dt.timescales(dt.open_recording(dt.demo_path()), population=True)
    with pytest.raises(ValueError, match="no 'unit' dim"):
        plot.autocorrelation_fits(pop)


def test_autocorrelation_fits_needs_the_autocorrelation(result):
    with pytest.raises(ValueError, match="dynatools.timescales"):
        plot.autocorrelation_fits(result.drop_vars("autocorrelation"))


def _summary(label, seed=0, Ns=(2, 3, 4, 5), units=6):
    import numpy as np
    import xarray as xr

    rng = np.random.default_rng(seed)
    shape = (len(Ns), units)
    ds = xr.Dataset(
        {"tau": (("N", "unit"), 1 + rng.random(shape)), "tau_net": (("N", "unit"), 2 + 3 * rng.random(shape)),
         "positive_sum": (("N", "unit"), rng.random(shape)), "negative_sum": (("N", "unit"), -rng.random(shape)),
         "dimensionality": ("N", np.array(Ns, float) + 1), "dimensionality_std": ("N", np.zeros(len(Ns)))},
        coords={"N": list(Ns), "unit": range(units)}, attrs={"curriculum": label})
    return ds


def _robust(kind, seed=0):
    import numpy as np
    import xarray as xr

    rng = np.random.default_rng(seed)
    if kind == "perturb":
        return xr.Dataset({"relative_accuracy": (("epsilon", "repeat", "trial"), rng.random((3, 2, 4)))},
                          coords={"epsilon": [0.0, 0.5, 1.0]}, attrs={"target": "W_rec"})
    if kind == "retrain":
        return xr.Dataset({"relative_accuracy": (("N", "trial"), rng.random((3, 4)))}, coords={"N": [17, 18, 20]})
    return xr.Dataset({"relative_accuracy": (("unit", "trial"), rng.random((5, 4)))}, attrs={"which": kind})


@pytest.mark.parametrize("make", [
    lambda: plot.timescales_vs_N([_summary("single-head"), _summary("multi-head", 1)]),
    lambda: plot.tau_net_distributions(_summary("multi-head")),
    lambda: plot.weight_balance_vs_N({"a": _summary("a"), "b": _summary("b", 2)}),
    lambda: plot.dimensionality_vs_N(_summary("multi-head"), fit_up_to=4),
    lambda: plot.ablation_bars({"a": {"longest": _robust("longest"), "shortest": _robust("shortest")}}),
    lambda: plot.perturbation_curves({"a": _robust("perturb"), "b": _robust("perturb", 1)}),
    lambda: plot.retraining_curves(_robust("retrain")),
])
def test_figures_over_N_have_labeled_axes_and_one_line_per_run(make, tmp_path):
    fig = make()
    ax = fig.axes[0]
    assert ax.get_xlabel() and ax.get_ylabel()
    fig.savefig(tmp_path / "f.png")
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"
    plt.close(fig)


def test_overlaid_runs_get_distinct_colours_and_a_legend():
    fig = plot.timescales_vs_N([_summary("single-head"), _summary("multi-head", 1)])
    lines = [ln for ln in fig.axes[0].get_lines() if ln.get_label() in ("single-head", "multi-head")]
    assert len(lines) == 2 and lines[0].get_color() != lines[1].get_color()
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["single-head", "multi-head"]
    plt.close(fig)


def test_dimensionality_fit_line_is_the_least_squares_line():
    ds = _summary("x", Ns=(2, 3, 4, 5, 40))
    ds["dimensionality"] = ds.dimensionality.where(ds.N != 40, 10.0)      # far off the line N + 1
    fig = plot.dimensionality_vs_N(ds, fit_up_to=30)
    labels = [ln.get_label() for ln in fig.axes[0].get_lines()]
    assert "fit (N ≤ 30): 1.00 N + 1.00" in labels          # dimensionality = N + 1 exactly; N = 40 excluded
    plt.close(fig)
    fig = plot.dimensionality_vs_N(ds, fit_up_to=None)                    # every N: another line
    slope, icpt = np.polyfit([2, 3, 4, 5, 40], [3, 4, 5, 6, 10], 1)
    assert f"fit (every N): {slope:.2f} N + {icpt:.2f}" in [ln.get_label() for ln in fig.axes[0].get_lines()]
    plt.close(fig)


@pytest.mark.parametrize("slope, intercept, text", [
    (1.8, -1.0, "1.80 N - 1.00"),
    (1.8, 1.0, "1.80 N + 1.00"),
    (0.5, -0.001, "0.50 N + 0.00"),            # rounds to zero: no "- 0.00"
])
def test_the_fitted_line_is_written_with_the_sign_of_its_intercept(slope, intercept, text):
    ds = _summary("x", Ns=(2, 3, 4, 5))
    ds["dimensionality"] = ("N", slope * ds.N.values + intercept)
    fig = plot.dimensionality_vs_N(ds)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert f"fit (N ≤ 30): {text}" in labels and not any("+ -" in lb for lb in labels)
    plt.close(fig)


def test_more_runs_than_colours_are_all_drawn():
    runs = {f"net {i}": _summary(f"net {i}", seed=i) for i in range(11)}
    for fig in (plot.timescales_vs_N(runs), plot.dimensionality_vs_N(runs),
                plot.perturbation_curves({k: _robust("perturb", i) for i, k in enumerate(runs)})):
        legend = {t.get_text() for t in fig.axes[0].get_legend().get_texts()}
        assert set(runs) <= legend                      # every run, not only the first 8
        plt.close(fig)
    fig = plot.timescales_vs_N(runs)
    styles = {(ln.get_color(), ln.get_marker()) for ln in fig.axes[0].get_lines() if ln.get_label() in runs}
    assert len(styles) == 11                            # and each one can be told apart
    plt.close(fig)


def test_tau_net_over_N_counts_reliable_fits_only():
    ds = _summary("x", Ns=(2, 3), units=4)
    ds["tau_net"] = (("N", "unit"), np.array([[1.0, 2.0, 3.0, 99.0], [2.0, 2.0, 2.0, 2.0]]))
    ds["status"] = (("N", "unit"), np.array([["ok", "ok", "ok", "single_failed"], ["ok"] * 4]))
    fig = plot.timescales_vs_N(ds)
    line = next(ln for ln in fig.axes[1].get_lines() if ln.get_label() == "x")
    np.testing.assert_allclose(line.get_ydata(), [2.0, 2.0])              # the failed 99 left out
    plt.close(fig)
    fig = plot.tau_net_distributions(ds)
    assert any("1 unreliable" in t.get_text() for t in fig.axes[0].get_legend().get_texts())
    plt.close(fig)


def test_figures_over_N_name_the_missing_variable():
    with pytest.raises(ValueError, match="tau_net"):
        plot.timescales_vs_N(_summary("x").drop_vars("tau_net"))
    with pytest.raises(ValueError, match=r"N \[9\]"):
        plot.tau_net_distributions(_summary("x"), Ns=[9])


def test_a_single_N_still_gets_integer_ticks():
    import xarray as xr

    ds = xr.Dataset({"relative_accuracy": (("N", "trial"), np.full((1, 4), 0.8))}, coords={"N": [7]})
    fig = plot.retraining_curves(ds)
    fig.canvas.draw()
    ticks = fig.axes[0].get_xticks()
    lo, hi = fig.axes[0].get_xlim()
    shown = [t for t in ticks if lo <= t <= hi]
    assert 7 in shown and all(float(t).is_integer() for t in shown)
    plt.close(fig)


# --- what a reader needs to trust a figure (issue 12, item 11) -----------------------------------


def _band(ax, i=0):
    """The y values of the i-th filled band of an axes."""
    return np.concatenate([p.vertices[:, 1] for p in ax.collections[i].get_paths()])


def test_timescales_over_N_draw_the_median_and_the_interquartile_range():
    ds = _summary("x", Ns=(2, 3), units=5)
    # skewed: mean - std of [0.1, 0.1, 0.2, 0.3, 6] is below 0, which a timescale never is
    ds["tau_net"] = (("N", "unit"), np.array([[0.1, 0.1, 0.2, 0.3, 6.0], [1.0, 2.0, 3.0, 4.0, 5.0]]))
    ds["tau"] = ds["tau_net"] + 1
    fig = plot.timescales_vs_N(ds)
    for ax, values in zip(fig.axes, (ds["tau"].values, ds["tau_net"].values)):
        line = next(ln for ln in ax.get_lines() if ln.get_label() == "x")
        np.testing.assert_allclose(line.get_ydata(), np.median(values, axis=1))
        band = _band(ax)
        np.testing.assert_allclose([band.min(), band.max()], [np.quantile(values, 0.25, axis=1).min(),
                                                              np.quantile(values, 0.75, axis=1).max()])
        assert band.min() >= values.min() > 0 and band.max() <= values.max()
    assert "median" in fig.axes[0].get_legend().get_title().get_text()
    assert "interquartile" in fig.axes[0].get_legend().get_title().get_text()
    # the one-step line is drawn and explained
    assert any(ln.get_label().startswith("1 step") for ln in fig.axes[1].get_lines())
    plt.close(fig)


def test_an_N_without_any_fit_draws_no_band_and_no_warning():
    ds = _summary("x", Ns=(2, 3), units=3)
    ds["tau_net"] = (("N", "unit"), np.array([[np.nan] * 3, [1.0, 2.0, 3.0]]))
    fig = plot.timescales_vs_N(ds)
    line = next(ln for ln in fig.axes[1].get_lines() if ln.get_label() == "x")
    assert np.isnan(line.get_ydata()[0]) and line.get_ydata()[1] == 2.0
    plt.close(fig)


def test_fit_legends_name_the_parameters_and_their_units(result):
    fig = plot.autocorrelation_fits(result, units=[0, 24])
    for ax in (a for a in fig.axes if a.get_visible()):
        texts = [t.get_text() for t in ax.get_legend().get_texts()]
        single = next(t for t in texts if t.startswith("single"))
        double = next(t for t in texts if t.startswith("double"))
        assert "τ = " in single and single.split("(")[0].strip().endswith("steps")
        assert all(f"{name} = " in double for name in ("τ_fast", "τ_slow", "weight_fast")) and "steps" in double
        assert sum("(selected)" in t for t in texts) == 1        # the selected model is named
    plt.close(fig)
    seconds = result.assign_coords(lag=result.lag * 0.01)
    seconds["lag"].attrs["units"] = "s"
    fig = plot.autocorrelation_fits(seconds, units=[24])
    texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any(t.startswith("double") and " s," in t for t in texts)
    plt.close(fig)


def test_the_grey_fit_window_is_explained(result):
    fig = plot.autocorrelation_fits(result, units=[0])
    assert "grey band: the lags fitted (0 to 30)" in " ".join(fig._suptitle.get_text().split())
    spans = [p for p in fig.axes[0].patches if p.get_facecolor()[:3] == pytest.approx((0.92,) * 3)]
    assert len(spans) == 1
    plt.close(fig)
    fig = plot.timescales_summary(result)
    assert "fitted lags (0 to 30)" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    plt.close(fig)


@pytest.fixture
def degenerate(result):
    """The demo result with three units whose tau_net is not a valid timescale: tau_net below one
    step (0), two equal taus selected (1), and a status the plotting code does not know (2)."""
    r = result.copy(deep=True)
    r["tau_single"][0] = r["tau_net"][0] = 0.0004
    r["selected_model"][0] = "single"
    r["selected_model"][1] = "double"
    r["tau_fast"][1] = r["tau_slow"][1] = r["tau_net"][1] = 5.0
    r["status"] = r["status"].astype("<U24")
    r["status"][2] = "some_new_status"
    return r


def test_degenerate_fits_are_marked(degenerate):
    flags = plot._fit_flags(degenerate).values
    assert flags[0] == "τ_net < 1 step" and flags[1] == "τ_fast ≈ τ_slow"
    assert flags[2] == "unreliable fit (some_new_status)" and not flags[3:].any()
    fig = plot.autocorrelation_fits(degenerate, units=[0, 1, 2, 3])
    titles = {ax.get_title().split(":")[0]: ax.title for ax in fig.axes if ax.get_visible()}
    for unit, why in ((0, "τ_net < 1 step"), (1, "τ_fast ≈ τ_slow"), (2, "unreliable fit (some_new_status)")):
        assert f"not a valid timescale: {why}" in titles[f"unit {unit}"].get_text()
        assert titles[f"unit {unit}"].get_color() == plot.FLAG_COLOR
    assert "not a valid" not in titles["unit 3"].get_text() and titles["unit 3"].get_color() == "black"
    plt.close(fig)

    fig = plot.tau_net_histogram(degenerate)
    legend = fig.axes[0].get_legend()
    labels = [t.get_text() for t in legend.get_texts()]
    flagged = next(lb for lb in labels if lb.startswith("not a valid timescale"))
    assert "(3 units)" in flagged
    # units 0-23 of the demo select the single model, 24-47 the double: 0-2 are counted apart
    assert "single exponential (21 units)" in labels and "double exponential (24 units)" in labels
    assert any(p.get_hatch() for p in fig.axes[0].patches)            # drawn apart, hatched
    plt.close(fig)

    fig = plot.timescales_summary(degenerate, units=[0, 3])
    texts = fig.axes[0].get_legend().get_texts()
    marked = [t for t in texts if "not a valid timescale" in t.get_text()]
    assert len(marked) == 1 and marked[0].get_text().startswith("unit 0") and marked[0].get_color() == plot.FLAG_COLOR
    plt.close(fig)


def test_units_without_tau_net_are_counted_not_dropped_silently(result):
    r = result.copy(deep=True)
    r["tau_net"][:3] = np.nan
    fig = plot.tau_net_histogram(r)
    assert "3 unit(s) without τ_net not drawn" in fig.axes[0].get_legend().get_title().get_text()
    plt.close(fig)


def test_the_tau_net_distribution_says_why_an_N_is_missing():
    ds = _summary("x", Ns=(2, 3, 4, 5, 6, 7, 8), units=4)
    fig = plot.tau_net_distributions(ds)                        # default: 4 of the 7 N
    legend = fig.axes[0].get_legend()
    assert "4 of the 7 solved N shown" in legend.get_title().get_text()
    assert "not drawn: N = 3, 5, 7" in legend.get_title().get_text()
    assert [t.get_text() for t in legend.get_texts()][-4:] == ["N = 2", "N = 4", "N = 6", "N = 8"]
    plt.close(fig)
    fig = plot.tau_net_distributions(ds, Ns=[2, 8])
    assert "not drawn: N = 3-7" in fig.axes[0].get_legend().get_title().get_text()
    plt.close(fig)
    # an N whose every fit is unreliable has no outline: the legend says so instead of showing an empty entry
    ds["status"] = (("N", "unit"), np.array([["ok"] * 4] * 6 + [["failed"] * 4]))
    fig = plot.tau_net_distributions(ds, Ns=[2, 8])
    texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "N = 8: no reliable fit, nothing drawn (4 unreliable fits left out)" in texts
    plt.close(fig)


@pytest.mark.parametrize("make, samples", [
    (lambda ds: plot.perturbation_curves(ds), lambda ds: ds.relative_accuracy.mean("trial").values),
    (lambda ds: plot.retraining_curves(ds.isel(repeat=0).rename(epsilon="N")),
     lambda ds: ds.relative_accuracy.isel(repeat=0).values),
])
def test_relative_accuracy_bands_stay_within_the_measured_values(make, samples):
    import xarray as xr

    rng = np.random.default_rng(3)
    ra = np.clip(rng.normal(0.9, 0.2, (4, 10, 6)), 0, 1)     # near 1: mean + std would pass 1
    ra[0] = 1.0
    ds = xr.Dataset({"relative_accuracy": (("epsilon", "repeat", "trial"), ra)},
                    coords={"epsilon": [0.0, 0.5, 1.0, 1.5]}, attrs={"target": "W_rec"})
    fig = make(ds)
    ax = fig.axes[0]
    values = samples(ds)
    band = _band(ax)
    assert 0 <= band.min() and band.max() <= 1
    assert values.min() <= band.min() and band.max() <= values.max()
    line = next(ln for ln in ax.get_lines() if ln.get_label() == "W_rec" or ln.get_marker() == "o")
    np.testing.assert_allclose(line.get_ydata(), np.median(values.reshape(len(values), -1), axis=1))
    assert "interquartile" in ax.get_legend().get_title().get_text()
    plt.close(fig)


def test_ablation_whiskers_stay_within_the_units():
    fig = plot.ablation_bars({"a": {"longest": _robust("longest"), "shortest": _robust("shortest")}})
    ax = fig.axes[0]
    for which, bar in zip(("longest", "shortest"), ax.patches):
        per_unit = _robust(which).relative_accuracy.mean("trial").values
        assert bar.get_height() == pytest.approx(np.median(per_unit))
    whiskers = np.concatenate([seg[:, 1] for c in ax.collections for seg in c.get_segments()])
    assert 0 <= whiskers.min() and whiskers.max() <= 1
    plt.close(fig)


def test_the_demo_figure_shows_the_true_timescales(result):
    fig = plot.timescales_summary(result, units=[0, 24])          # what `dynatools demo` draws
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    true0, true24 = (float(result.true_tau_net.sel(unit=u)) for u in (0, 24))
    assert any(t.startswith("unit 0") and f"(true {true0:.3g})" in t for t in legend)
    assert any(t.startswith("unit 24") and f"(true {true24:.3g})" in t for t in legend)
    ax = fig.axes[2]                                           # fitted against true, every unit
    assert ax.get_xlabel().startswith("true τ_net") and ax.get_ylabel().startswith("fitted τ_net")
    points = [ln for ln in ax.get_lines() if ln.get_linestyle() == "None"]
    assert sum(len(ln.get_xdata()) for ln in points) == result.sizes["unit"]
    err = np.nanmedian(np.abs(result.tau_net / result.true_tau_net - 1))
    assert f"median relative error {err:.1%}" in ax.get_title()      # the number the demo prints
    plt.close(fig)
    fig = plot.timescales_summary(result.drop_vars([c for c in result.coords if c.startswith("true_")]))
    assert len(fig.axes) == 2                                  # no truth, no third panel
    plt.close(fig)
