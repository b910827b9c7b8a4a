"""Figures: built from results, labeled axes, saved as PNG."""

from __future__ import annotations

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
