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


def test_autocorrelation_fits_draws_requested_units(result):
    fig = plot.autocorrelation_fits(result, units=[0, 30])
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert len(titles) == 2 and titles[0].startswith("unit 0") and titles[1].startswith("unit 30")
    plt.close(fig)


def test_autocorrelation_fits_needs_the_autocorrelation(result):
    with pytest.raises(ValueError, match="dynatools.timescales"):
        plot.autocorrelation_fits(result.drop_vars("autocorrelation"))
