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
    assert "fit: 1.00 N + 1.00" in labels          # dimensionality = N + 1 exactly; N = 40 excluded
    plt.close(fig)
    fig = plot.dimensionality_vs_N(ds, fit_up_to=None)                    # every N: another line
    slope, icpt = np.polyfit([2, 3, 4, 5, 40], [3, 4, 5, 6, 10], 1)
    assert f"fit: {slope:.2f} N + {icpt:.2f}" in [ln.get_label() for ln in fig.axes[0].get_lines()]
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
