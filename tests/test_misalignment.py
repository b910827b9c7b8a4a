"""Dynamics misalignment (skip-connection paper Sec. 3.4, Fig. 3B-C) against hand computations."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import dynatools as dt
from dynatools.misalignment import activity_nmse


def _numpy_nmse(x, y, axes):
    """The definition, written out with numpy: sum (y - x)^2 / sum (x - mean x)^2 over ``axes``."""
    return ((y - x) ** 2).sum(axes) / ((x - x.mean(axes, keepdims=True)) ** 2).sum(axes)


@pytest.fixture
def pair():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 2, 12, 4))                       # (member, trial, time, unit)
    y = x + 0.3 * rng.standard_normal(x.shape)
    return x, y


def test_identical_recordings_give_exactly_zero(pair):
    x, _ = pair
    rec = dt.from_array(x)
    res = activity_nmse(rec, rec.copy(deep=True))
    assert res.dims == ("member",) and np.all(res.values == 0.0)
    assert res.name == "nmse" and "description" in res.attrs and "variance" in res.attrs["normalisation"]


def test_the_mean_of_true_gives_one(pair):
    x, _ = pair
    mean = np.broadcast_to(x.mean(axis=(1, 2, 3), keepdims=True), x.shape).copy()
    np.testing.assert_allclose(activity_nmse(dt.from_array(x), dt.from_array(mean)).values, 1.0, rtol=1e-12)


def test_hand_computation_keeps_the_member_dim(pair):
    x, y = pair
    res = activity_nmse(dt.from_array(x, member=[10, 20, 30]), dt.from_array(y, member=[10, 20, 30]))
    assert res.dims == ("member",) and res.member.values.tolist() == [10, 20, 30]
    np.testing.assert_allclose(res.values, _numpy_nmse(x, y, (1, 2, 3)), rtol=1e-12)
    # one member by hand, with plain loops for the sums
    m = 1
    num = sum((y[m, i, t, u] - x[m, i, t, u]) ** 2 for i in range(2) for t in range(12) for u in range(4))
    mu = x[m].sum() / x[m].size
    den = sum((x[m, i, t, u] - mu) ** 2 for i in range(2) for t in range(12) for u in range(4))
    assert float(res.sel(member=20)) == pytest.approx(num / den, rel=1e-12)


def test_dataarrays_and_other_dims(pair):
    x, y = pair
    a = xr.DataArray(x[0], dims=("trial", "time", "unit"))
    b = xr.DataArray(y[0].transpose(2, 0, 1), dims=("unit", "trial", "time"))     # another dim order
    assert float(activity_nmse(a, b)) == pytest.approx(float(_numpy_nmse(x[0], y[0], (0, 1, 2))), rel=1e-12)
    per_trial = activity_nmse(a, b, dims=("time", "unit"))          # trial kept as a batch dim
    assert per_trial.dims == ("trial",)
    np.testing.assert_allclose(per_trial.values, _numpy_nmse(x[0], y[0], (1, 2)), rtol=1e-12)


def test_coarse_times_are_compared_at_the_modified_steps(pair):
    x, y = pair
    theta = 3
    true = dt.from_array(x, dt=0.005, time_units="s")                # times 0, 0.005, ..., 0.055
    coarse = dt.from_array(y[:, :, ::theta], dt=theta * 0.005, time_units="s")
    res = activity_nmse(true, coarse)
    assert res.attrs["n_time"] == 4
    np.testing.assert_allclose(res.values, _numpy_nmse(x[:, :, ::theta], y[:, :, ::theta], (1, 2, 3)), rtol=1e-12)


@pytest.mark.parametrize("change, match", [
    (lambda x, y: (dt.from_array(x), dt.from_array(y[..., :3])), "4 unit.*3"),
    (lambda x, y: (dt.from_array(x), dt.from_array(y, unit=[0, 1, 2, 5])), "'unit' coordinates differ"),
    (lambda x, y: (dt.from_array(x), dt.from_array(y[0])), "same dims"),
    (lambda x, y: (dt.from_array(x), dt.from_array(y[:, :, :5], dt=2.5)),
     r"not a subset.*12 points from 0 to 11.*5 points from 0 to 10.*interpolate"),
    (lambda x, y: (dt.from_array(x), dt.from_array(y, dt=0.005, time_units="s")), "'step'.*'s'"),
    (lambda x, y: (dt.from_array(np.where(np.arange(4) == 2, np.nan, x)), dt.from_array(y)), "true activity.*NaN"),
    (lambda x, y: (dt.from_array(x), dt.from_array(np.where(np.arange(4) == 2, np.nan, y))),
     "modified activity.*NaN"),
    (lambda x, y: (dt.from_array(np.broadcast_to(np.linspace(0.1, 0.7, 3)[:, None, None, None], x.shape).copy()),
                   dt.from_array(y)), r"constant.*member=0.*zero variance"),
    (lambda x, y: (dt.from_array(x), dt.from_array(y)), "dims=.*'neuron'"),
])
def test_errors_name_the_problem_and_the_fix(pair, change, match):
    true, modified = change(*pair)
    kwargs = {"dims": ("trial", "time", "neuron")} if "neuron" in match else {}
    with pytest.raises(ValueError, match=match):
        activity_nmse(true, modified, **kwargs)


def test_nan_outside_the_compared_times_is_ignored(pair):
    x, y = pair
    x = x.copy()
    x[:, :, 1] = np.nan                                              # not one of the coarse times 0, 3, 6, 9
    res = activity_nmse(dt.from_array(x), dt.from_array(y[:, :, ::3], dt=3.0))
    np.testing.assert_allclose(res.values, _numpy_nmse(x[:, :, ::3], y[:, :, ::3], (1, 2, 3)), rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# the figure

plt = pytest.importorskip("matplotlib.pyplot")
from dynatools import plot  # noqa: E402


def _sweep(members: int | None, performance: bool, tau: int | None = 20) -> xr.Dataset:
    rng = np.random.default_rng(3)
    theta = [5, 10, 20, 30, 40]
    shape = (3, 5) + ((members,) if members else ())
    dims = ("simulation", "theta") + (("member",) if members else ())
    nmse = rng.uniform(0.01, 2.0, shape)
    nmse[0, 3:] = np.nan                                             # CD could not train at theta > tau
    data = {"nmse": (dims, nmse)}
    if performance:
        data["performance_difference"] = (dims, -rng.uniform(0, 0.2, shape))
    return xr.Dataset(data, coords={"simulation": ["cd", "sctt", "dasc"], "theta": theta},
                      attrs={"tau_steps": tau} if tau else {})


@pytest.mark.parametrize("members", [None, 1, 8])
@pytest.mark.parametrize("performance", [False, True])
def test_misalignment_figure_draws_one_line_per_method(members, performance):
    out = plot.misalignment(_sweep(members, performance))
    axes = out if performance else (out,)
    assert len(axes) == (2 if performance else 1)
    for ax in axes:
        assert len(ax.lines) == 3 and ax.get_xlabel().startswith("skip length")
        assert len(ax.collections) == (3 if members and members > 1 else 0)      # the 10-90 bands
    assert axes[0].get_legend_handles_labels()[1][:3] == ["CD", "SCTT", "DASC"]
    assert any("θ > τ" in label for label in axes[0].get_legend_handles_labels()[1])
    plt.close(axes[0].figure)


def test_misalignment_figure_on_given_axes_and_errors():
    fig, ax = plt.subplots()
    assert plot.misalignment(_sweep(4, True, tau=None), ax=ax) is ax            # one Axes: nmse only
    assert len(ax.lines) == 3 and len(ax.patches) == 0                        # no tau_steps: no shading
    fig2, (b, c) = plt.subplots(1, 2)
    assert plot.misalignment(_sweep(4, True), ax=[b, c]) == (b, c)
    with pytest.raises(ValueError, match="missing \\['nmse'\\]"):
        plot.misalignment(xr.Dataset({"x": ("theta", [1.0])}))
    with pytest.raises(ValueError, match="Select or average \\['seed'\\]"):
        plot.misalignment(_sweep(4, False).expand_dims(seed=2))
    with pytest.raises(TypeError, match="pass a Dataset"):
        plot.misalignment(_sweep(None, False).nmse)
    plt.close(fig)
    plt.close(fig2)
