"""Figures of trial tasks: one trial (periods, inputs, targets, outputs; padding cut) and the
learning curves of an ensemble (members, percentile band, evaluated score, threshold)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

plt = pytest.importorskip("matplotlib.pyplot")
import matplotlib  # noqa: E402

matplotlib.use("Agg")
from matplotlib.collections import PolyCollection  # noqa: E402

from dynatools import plot  # noqa: E402

DT = 0.005


def _trials(lengths=(40, 30, 25), channels=(5, 6), member=None, seed=0) -> xr.Dataset:
    """Padded trials in seconds: fixation 10 steps, stimulus 10, delay until 5 before the end,
    response 5; ``"pad"`` after each trial's end (where input is NaN)."""
    rng = np.random.default_rng(seed)
    n, T = len(lengths), max(lengths)
    period = np.full((n, T), "pad", dtype="<U8")
    for i, L in enumerate(lengths):
        period[i, :10], period[i, 10:20], period[i, 20:L - 5], period[i, L - 5:L] = (
            "fixation", "stimulus", "delay", "response")
    pad = period == "pad"
    x = rng.random((n, T, channels[0]))
    x[pad] = np.nan
    out_shape = (member, n, T, channels[1]) if member else (n, T, channels[1])
    out_dims = ("member", "trial", "time", "head") if member else ("trial", "time", "head")
    return xr.Dataset(
        {"input": (("trial", "time", "input_dim"), x),
         "target": (("trial", "time", "head"), rng.random((n, T, channels[1]))),
         "output": (out_dims, rng.random(out_shape))},
        coords={"trial": np.arange(n), "time": ("time", np.arange(T) * DT, {"units": "s"}),
                "period": (("trial", "time"), period), "trial_length": ("trial", np.array(lengths))},
        attrs={"dt": DT, "task": "toy"})


def _images(fig):
    return [im for ax in fig.axes for im in ax.get_images()]


def test_task_trial_draws_periods_inputs_targets_outputs():
    fig = plot.task_trial(_trials(), 0)
    assert len(fig.axes) == 4                                # periods, input, target, output
    labels = {t.get_text() for t in fig.axes[0].texts}
    assert {"fixation", "stimulus", "delay", "response"} <= labels and "pad" not in labels
    assert [ax.get_ylabel().split("\n")[0] for ax in fig.axes[1:]] == ["input", "target", "output"]
    assert fig.axes[-1].get_xlabel() == "time (s)"
    assert len(_images(fig)) == 3                            # 5 and 6 channels: images
    plt.close(fig)


@pytest.mark.parametrize("trial", [0, 1, 2])
def test_task_trial_cuts_the_padding(trial):
    ds = _trials()
    L = int(ds.trial_length[trial])
    fig = plot.task_trial(ds, trial)
    for ax in fig.axes:
        assert ax.get_xlim() == pytest.approx((0.0, L * DT))  # ends at the trial's length in seconds
    for im in _images(fig):
        assert im.get_array().shape[1] == L and np.isfinite(im.get_array()).all()
        assert im.get_extent()[1] == pytest.approx(L * DT)
    plt.close(fig)


def test_task_trial_without_trial_length_reads_the_pad_period():
    ds = _trials().drop_vars("trial_length")
    fig = plot.task_trial(ds, 2)
    assert fig.axes[-1].get_xlim()[1] == pytest.approx(25 * DT)
    plt.close(fig)


def test_task_trial_fixation_channel_as_lines_and_few_channels_as_lines():
    ds = _trials(channels=(6, 4))
    fig = plot.task_trial(ds, 1, fixation=0)
    assert len(fig.axes) == 5 and fig.axes[-1].get_ylabel().startswith("fixation")
    lines = [ln for ln in fig.axes[-1].get_lines() if not ln.get_label().startswith("_")]   # not the period bounds
    np.testing.assert_allclose(lines[0].get_ydata(), ds.input.values[1, :30, 0])
    assert [ln.get_label() for ln in lines] == ["input", "target", "output"]
    assert [im.get_array().shape[0] for im in _images(fig)] == [5]   # input without its fixation channel
    drawn = [ln for ln in fig.axes[2].get_lines() if not ln.get_label().startswith("_")]
    assert [ln.get_label() for ln in drawn] == ["channel 0", "channel 1", "channel 2"]   # 3 left: lines
    plt.close(fig)


def test_task_trial_ensemble_member_and_an_axes_of_a_grid():
    ds = _trials(member=3)
    fig, grid = plt.subplots(1, 2)
    out = plot.task_trial(ds, 1, member=2, ax=grid[1])
    assert out is fig and len(fig.axes) == 1 + 4            # grid[1] split into 4 panels
    output = _images(fig)[-1].get_array()
    np.testing.assert_allclose(output, ds.output.values[2, 1, :30].T)       # member label 2, trial 1
    assert "member 2" in fig.axes[1].get_title()
    plt.close(fig)
    fig = plot.task_trial(ds.assign_coords(member=[5, 6, 7]))               # default: the first member
    assert "member 5" in fig.axes[0].get_title()
    np.testing.assert_allclose(_images(fig)[-1].get_array(), ds.output.values[0, 0, :40].T)
    plt.close(fig)
    with pytest.raises(ValueError, match="member 7 not found"):
        plot.task_trial(ds, member=7)


def test_task_trial_takes_a_mapping_of_arrays():
    period = ["fixation"] * 20 + ["response"] * 10 + ["pad"] * 4
    fig = plot.task_trial({"input": np.ones((34, 2)), "target": np.zeros((34, 9)), "period": period, "dt": 0.01,
                           "time_units": "s"})
    assert fig.axes[-1].get_xlim()[1] == pytest.approx(0.3)
    assert {"fixation", "response"} <= {t.get_text() for t in fig.axes[0].texts}
    plt.close(fig)


def test_task_trial_of_a_trainers_recording():
    torch = pytest.importorskip("torch")
    import trainers

    net = trainers.RateRNN(8, input_dim=65, n_classes=33, generator=torch.Generator().manual_seed(0))
    rec = trainers.record(net, "dmc", trials=2, seed=0)
    fig = plot.task_trial(rec, 1, fixation=0)
    assert [ax.get_ylabel().split("\n")[0] for ax in fig.axes] == ["", "input", "target", "output", "fixation"]
    assert fig.axes[-1].get_xlim()[1] == pytest.approx(int(rec.trial_length[1]) * rec.attrs["dt"])
    assert _images(fig)[1].get_array().shape[0] == 32       # task_target: the ring without fixation
    plt.close(fig)


@pytest.mark.parametrize("bad, message", [
    (lambda ds: ds.drop_vars("input"), "no 'input' variable.*pass a trial-task recording"),
    (lambda ds: ds, "trial 5 is out of range.*3 trial\\(s\\); pass trial=0..2"),
])
def test_task_trial_bad_input_gives_a_one_line_error(bad, message):
    with pytest.raises(ValueError, match=message) as err:
        plot.task_trial(bad(_trials()), 5)
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------------------------------------
# learning curves


def _metrics(K=10, S=60, reached=45, config=None, seed=0) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    perf = np.clip(np.linspace(0, 1.1, S)[None] + 0.3 * rng.standard_normal((K, S)), 0, 1)
    ds = xr.Dataset(
        {"performance": (("member", "step"), perf), "loss": (("member", "step"), 0.2 * (1.01 - perf) + 0.01),
         "score": ("epoch", np.array([0.1, 0.5, 0.995])), "epoch_step": ("epoch", np.array([20, 40, 60]))},
        coords={"member": np.arange(K), "step": np.arange(1, S + 1), "epoch": [1, 2, 3]},
        attrs={"steps_to_threshold": reached, "stop_reason": "solved" if reached >= 0 else "max_epochs",
               "metric": "performance"})
    if config is not None:
        ds.attrs["config"] = json.dumps(config)
    return ds


def _band(ax) -> np.ndarray:
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(bands) == 1
    return bands[0].get_paths()[0].vertices


def _ys_at(vertices: np.ndarray, x: float) -> np.ndarray:
    return vertices[np.isclose(vertices[:, 0], x), 1]


@pytest.mark.parametrize("band", [(10, 90), (25, 75)])
def test_learning_curves_band_is_the_percentiles_of_the_members(band):
    ds = _metrics()
    fig = plot.learning_curves(ds, band=band, smooth=1)
    vertices = _band(fig.axes[0])
    lo, hi = np.percentile(ds.performance.values, band, axis=0)
    for s, a, b in zip(ds.step.values, lo, hi):
        ys = _ys_at(vertices, s)
        assert np.isclose(ys, a).any() and np.isclose(ys, b).any()
    assert f"{band[0]}-{band[1]}th percentile over 10 members" in [c.get_label() for c in fig.axes[0].collections]
    plt.close(fig)


def test_learning_curves_smooths_with_a_trailing_running_mean():
    ds = _metrics()
    fig = plot.learning_curves(ds, smooth=4)
    v = ds.performance.values
    smooth = np.stack([v[:, max(0, i - 3):i + 1].mean(1) for i in range(v.shape[1])], axis=1)
    lo = np.percentile(smooth, 10, axis=0)
    vertices = _band(fig.axes[0])
    assert all(np.isclose(_ys_at(vertices, s), a).any() for s, a in zip(ds.step.values, lo))
    median = [ln for ln in fig.axes[0].get_lines() if ln.get_label().startswith("median")][0]
    np.testing.assert_allclose(median.get_ydata(), np.median(smooth, axis=0))
    plt.close(fig)


def test_learning_curves_threshold_score_and_the_step_it_was_reached():
    ds = _metrics(config={"curriculum_options": {"threshold": 0.9, "low": 10.0}})
    fig = plot.learning_curves(ds)
    ax = fig.axes[0]
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert list(lines["threshold 0.9"].get_ydata()) == [0.9, 0.9]          # from the config
    assert list(lines["threshold reached at step 45"].get_xdata()) == [45, 45]
    np.testing.assert_array_equal(lines["evaluated score (10-90 percentile mean)"].get_xdata(), [20, 40, 60])
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "threshold 0.9" in legend and "threshold reached at step 45" in legend
    plt.close(fig)
    fig = plot.learning_curves(_metrics(reached=-1), threshold=0.8)        # keyword; never reached
    labels = [ln.get_label() for ln in fig.axes[0].get_lines()]
    assert "threshold 0.8" in labels and not any("reached at" in lb for lb in labels)
    assert "not reached" in fig.axes[0].get_legend().get_title().get_text()
    plt.close(fig)
    fig = plot.learning_curves(_metrics())                                 # default 0.99
    assert "threshold 0.99" in [ln.get_label() for ln in fig.axes[0].get_lines()]
    plt.close(fig)


def test_learning_curves_one_member_has_no_band_and_loss_panel():
    ds = _metrics(K=1)
    fig = plot.learning_curves(ds, loss=True, smooth=1)
    assert len(fig.axes) == 2
    assert not [c for ax in fig.axes for c in ax.collections if isinstance(c, PolyCollection)]
    perf = [ln for ln in fig.axes[0].get_lines() if ln.get_label().startswith("training performance")]
    np.testing.assert_allclose(perf[0].get_ydata(), ds.performance.values[0])
    assert fig.axes[1].get_yscale() == "log" and fig.axes[1].get_ylabel() == "training loss"
    assert fig.axes[1].get_xlabel() == "training step"
    plt.close(fig)


def test_learning_curves_steps_without_any_value_are_gaps():
    ds = _metrics()
    ds["performance"][:, 10] = np.nan
    fig = plot.learning_curves(ds, smooth=1)
    median = [ln for ln in fig.axes[0].get_lines() if ln.get_label().startswith("median")][0]
    assert np.isnan(median.get_ydata()[10]) and np.isfinite(median.get_ydata()[11])
    plt.close(fig)


def test_learning_curves_of_ensemble_metrics():
    pytest.importorskip("torch")
    from trainers.ensemble import ensemble_metrics

    rng = np.random.default_rng(1)
    history = [{"steps": {"loss": rng.random((5, 4)).tolist(), "performance": rng.random((5, 4)).tolist(),
                          "flops": np.ones((5, 4)).tolist(), "wall_seconds": [0.1] * 5},
                "members_performance": rng.random(4).tolist(), "iteration": 5 * (e + 1),
                "mean_performance": 0.5, "solved": e == 1} for e in range(3)]
    ds = ensemble_metrics(history, "solved")
    fig = plot.learning_curves(ds, loss=True, smooth=1)
    lo, hi = np.percentile(ds.performance.values, [10, 90], axis=0)
    vertices = _band(fig.axes[0])
    assert all(np.isclose(_ys_at(vertices, s), b).any() for s, b in zip(ds.step.values, hi))
    assert "threshold reached at step 10" in [ln.get_label() for ln in fig.axes[0].get_lines()]
    plt.close(fig)


@pytest.mark.parametrize("bad, kwargs, message", [
    (lambda ds: ds.drop_vars("performance"), {}, "missing \\['performance'\\].*ensemble_metrics"),
    (lambda ds: ds.isel(step=0), {}, "not 'step'.*ensemble_metrics"),
    (lambda ds: ds, {"band": (90, 10)}, "pass two percentiles"),
    (lambda ds: ds.drop_vars("loss"), {"loss": True}, "loss=False"),
])
def test_learning_curves_bad_input_gives_a_one_line_error(bad, kwargs, message):
    with pytest.raises(ValueError, match=message) as err:
        plot.learning_curves(bad(_metrics()), **kwargs)
    assert "\n" not in str(err.value)
