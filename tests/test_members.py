"""Ensembles (a leading ``member`` dim), task periods, time in seconds and trials padded at the end,
through every dynatools analysis that reads recordings.

Ground truth comes from outside the package: AR(1) units with a known timescale per member
(``processes.ar1``: the autocorrelation is exactly exp(-k/tau)), statsmodels' unbiased ACF of a
trial's valid part, and direct numpy sums over the valid pairs of padded trials.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr
from processes import ar1

import dynatools as dt
from dynatools.cli import main
from dynatools.recording import PAD, RecordingError

DT = 0.005                                     # seconds per step (a rate network's Euler step)
TAUS = np.array([[2.0, 5.0, 9.0],              # steps, per member (rows) and unit (columns)
                 [3.0, 6.0, 12.0],
                 [1.5, 4.0, 7.0]])
LENGTHS = np.array([4000, 3400, 2600, 4000, 3000, 3900])
PERIODS = ("fixation", "stimulus", "delay", "response")


def _period_labels(lengths: np.ndarray, n_time: int) -> np.ndarray:
    """fixation 200 steps, stimulus 300, delay (trial-dependent), response 400; 'pad' after."""
    labels = np.full((len(lengths), n_time), PAD, dtype=object)
    for i, n in enumerate(lengths):
        bounds = [0, 200, 500, n - 400, n]
        for name, a, b in zip(PERIODS, bounds[:-1], bounds[1:]):
            labels[i, a:b] = name
    return labels.astype(str)


@pytest.fixture(scope="module")
def ensemble() -> xr.Dataset:
    rng = np.random.default_rng(2024)
    act = np.stack([ar1(rng, TAUS[m], len(LENGTHS), LENGTHS.max()) for m in range(len(TAUS))])
    return dt.from_array(act, dt=DT, time_units="s", tau=TAUS * DT, trial_length=LENGTHS,
                         period=_period_labels(LENGTHS, LENGTHS.max()),
                         population=["input", "output", "auxiliary"], sign=["E", "E", "I"],
                         W_rec=rng.standard_normal((len(TAUS), 3, 3)), model="ar1-ensemble")


@pytest.fixture(scope="module")
def result(ensemble) -> xr.Dataset:
    return dt.timescales(ensemble)


# -- 1. the schema: member dim, period, trial_length, sign, tau per member, seconds ----------------

def test_from_array_builds_a_valid_ensemble_recording(ensemble):
    assert ensemble.activity.dims == ("member", "trial", "time", "unit")
    assert ensemble["member"].values.tolist() == [0, 1, 2]
    assert ensemble["tau"].dims == ("member", "unit")
    assert ensemble["period"].dims == ("trial", "time")
    assert ensemble["time"].attrs["units"] == "s" and ensemble.attrs["dt"] == DT
    np.testing.assert_allclose(ensemble["time"].values[:3], [0.0, DT, 2 * DT])
    # padding: NaN activity and 'pad' labels from each trial's length on, nowhere before
    for i, n in enumerate(LENGTHS):
        assert np.isnan(ensemble.activity[:, i, n:].values).all()
        assert np.isfinite(ensemble.activity[:, i, :n].values).all()
        assert (ensemble.period[i, n:].values == PAD).all() and (ensemble.period[i, :n].values != PAD).all()
    assert dt.trial_lengths(ensemble).tolist() == LENGTHS.tolist()


def test_member_axis_anywhere_in_dims_is_moved_first():
    act = np.zeros((5, 2, 3, 4))                                   # (time, member, unit, trial)
    rec = dt.from_array(act, dims=("time", "member", "unit", "trial"), member=["a", "b"])
    assert rec.activity.dims == ("member", "trial", "time", "unit")
    assert rec["member"].values.tolist() == ["a", "b"]


def test_ensemble_round_trips_through_netcdf(ensemble, tmp_path):
    back = dt.open_recording(dt.save_recording(ensemble, tmp_path / "ens.nc")).load()
    xr.testing.assert_identical(back.drop_attrs(), ensemble.drop_attrs())
    assert back.attrs["model"] == "ar1-ensemble" and back.attrs["dt"] == DT
    assert back["period"].values.dtype.kind == "U" or back["period"].values.dtype == object
    assert back["sign"].values.tolist() == ["E", "E", "I"]


@pytest.mark.parametrize("build, match", [
    (lambda r: r.assign(activity=r.activity.transpose("trial", "member", "time", "unit")),
     r"'member' must lead: fix with ds\['activity'\] = ds\['activity'\].transpose\('member'"),
    (lambda r: r.drop_vars("period").assign_coords(period=("step", ["delay"] * 7)),
     r"coordinate 'period' has dims \('step'\).*expected \('time',\) = \(8,\)"),
    (lambda r: r.drop_vars("period").assign(period=("time", ["delay"] * 8)),
     r"make it a coordinate: ds = ds.set_coords\('period'\)"),
    (lambda r: r.assign_coords(trial_length=("trial", [8, 9])),
     r"'trial_length' must be in 1..8"),
    (lambda r: r.assign_coords(trial_length=("trial", [8, 5])),
     r"'period' has dims \('time',\) but the trials have different lengths"),
    (lambda r: r.drop_vars("period").assign_coords(period=(("trial", "time"), [["a"] * 8, ["a"] * 6 + ["pad"] * 2])),
     r"marks padded steps 'pad' but no trial is shorter.*trial_length"),
    (lambda r: r.assign_coords(tau=("member", [1.0, 2.0])),
     r"coordinate 'tau' has dims \('member'\); expected \('unit',\).*or \('member', 'unit'\)"),
])
def test_validate_names_the_fix_in_one_line(build, match):
    rec = dt.from_array(np.ones((2, 2, 8, 3)), period=["delay"] * 8)
    with pytest.raises(RecordingError, match=match) as info:
        dt.validate(build(rec))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("kwargs, match", [
    ({"period": ["delay"] * 7}, r"period has shape \(7,\); expected \(8,\), one label per time step, or \(2, 8\)"),
    ({"trial_length": [8]}, r"trial_length has shape \(1,\).*expected \(2,\) integers"),
    ({"tau": np.ones((3, 3))}, r"expected \(3,\), one value per unit, or \(2, 3\), one per member and unit"),
    ({"member": [0, 1, 2]}, r"coordinate 'member' has shape \(3,\); expected \(2,\)"),
])
def test_from_array_errors_name_the_expected_shape(kwargs, match):
    with pytest.raises(ValueError, match=match) as info:
        dt.from_array(np.ones((2, 2, 8, 3)), **kwargs)
    assert "\n" not in str(info.value)


# -- 2. timescales per member, in seconds, with padded trials ------------------------------------

def test_padded_autocorrelation_pools_the_valid_pairs(ensemble):
    """Oracle: products of the mean-removed valid samples, summed over trials, divided by the
    number of valid pairs at each lag (numpy, outside dynatools)."""
    ac = dt.autocorrelation(ensemble, max_lag=15)
    assert ac.dims == ("member", "unit", "lag")
    x = ensemble.activity.values.astype(np.float64)
    for m in range(x.shape[0]):
        num, den = np.zeros((3, 16)), np.zeros(16)
        for i, n in enumerate(LENGTHS):
            y = x[m, i, :n] - x[m, i, :n].mean(0)
            for k in range(16):
                num[:, k] += (y[:n - k] * y[k:n]).sum(0)
                den[k] += n - k
        ref = num / den
        np.testing.assert_allclose(ac.isel(member=m).values, ref / ref[:, :1], rtol=0, atol=1e-6)


def test_one_padded_trial_equals_statsmodels_on_its_valid_part():
    from statsmodels.tsa.stattools import acf

    x = ar1(np.random.default_rng(7), [4.0], 1, 900)[..., 0].astype(np.float64)      # (trial, time)
    rec = dt.from_array(x[..., None], trial_length=[700], dt=DT, time_units="s")
    ours = dt.autocorrelation(rec, max_lag=20, dtype="float64").values[0]
    np.testing.assert_allclose(ours, acf(x[0, :700], adjusted=True, nlags=20, fft=False), rtol=0, atol=1e-12)


def test_timescales_per_member_equal_each_member_alone_and_recover_tau_in_seconds(ensemble, result):
    assert result.tau_net.dims == ("member", "unit")
    assert result["member"].values.tolist() == [0, 1, 2]
    assert result.tau_net.attrs["units"] == "s" and result["lag"].attrs["units"] == "s"
    for m in range(len(TAUS)):
        alone = dt.timescales(ensemble.isel(member=m))
        for name in ("tau_net", "autocorrelation", "r2", "tau_single", "tau_fast", "tau_slow"):
            np.testing.assert_allclose(result[name].isel(member=m).values, alone[name].values, rtol=0, atol=1e-12)
        assert (result.status.isel(member=m).values == alone.status.values).all()
    # the known AR(1) timescale of every member and unit, in seconds
    np.testing.assert_allclose(result.tau_net.values, TAUS * DT, rtol=0.15)
    assert result.attrs["n_time"] == pytest.approx(LENGTHS.mean())


def test_accessor_dask_and_timescales_agree(ensemble, result, tmp_path):
    pytest.importorskip("dask")
    via_accessor = ensemble.dyn.timescales()
    xr.testing.assert_identical(via_accessor.tau_net, result.tau_net)
    path = dt.save_recording(ensemble, tmp_path / "ens.nc")
    lazy = dt.timescales(dt.open_recording(path, chunks={"member": 1, "unit": 2}))
    np.testing.assert_allclose(lazy.tau_net.values, result.tau_net.values, rtol=0, atol=1e-12)
    assert (lazy.status.values == result.status.values).all()


def test_select_period_analyses_one_period_of_each_trial(ensemble):
    delay = dt.select_period(ensemble, "delay")
    n_delay = LENGTHS - 900
    assert delay.trial_length.values.tolist() == n_delay.tolist()
    assert delay.sizes["time"] == n_delay.max() and delay.time.values[0] == 0.0
    assert set(np.unique(delay.period.values)) == {"delay", PAD}
    i = 2                                               # the segment itself, moved to time 0
    np.testing.assert_array_equal(delay.activity[:, i, :n_delay[i]].values,
                                  ensemble.activity[:, i, 500:500 + n_delay[i]].values)
    res = dt.timescales(delay)
    assert res.tau_net.dims == ("member", "unit")
    np.testing.assert_allclose(res.tau_net.values, TAUS * DT, rtol=0.25)
    with_weights = ensemble.assign(W_out=(("member", "head", "class", "unit"),
                                          np.zeros((ensemble.sizes["member"], 1, 2, ensemble.sizes["unit"]))))
    assert dt.select_period(with_weights, "delay")["W_out"].dims == ("member", "head", "class", "unit")
    with pytest.raises(RecordingError, match=r"no step labelled \['go'\]; the periods found are"):
        dt.select_period(ensemble, "go")
    with pytest.raises(RecordingError, match=r"not contiguous"):
        dt.select_period(ensemble, ["fixation", "delay"])


def test_max_lag_beyond_the_longest_trial_is_refused():
    rec = dt.from_array(np.random.default_rng(0).standard_normal((2, 50, 2)), trial_length=[20, 30])
    with pytest.raises(ValueError, match=r"max_lag=30 needs trials of more than 30 samples, but the longest"):
        dt.autocorrelation(rec, max_lag=30)
    with pytest.raises(ValueError, match=r"in its longest trial \(trial_length\)"):
        dt.timescales(rec, fit_lag=30)


# -- 3. dimensionality, summary, connectivity ----------------------------------------------------

def test_dimensionality_uses_each_trials_valid_part_per_member(ensemble):
    res = dt.pca_dimensionality(ensemble, 0.99)
    assert res.dimensionality.dims == ("member", "trial")
    for m in (0, 2):
        for i in (1, 2):
            x = ensemble.activity.values[m, i, :LENGTHS[i]].astype(np.float64)
            lam = np.sort(np.linalg.eigvalsh(np.cov(x.T)))[::-1]
            np.testing.assert_allclose(res.explained_variance_ratio[m, i].values, lam / lam.sum(), rtol=1e-9)
            expected = int(np.searchsorted(np.cumsum(lam) / lam.sum(), 0.99 - 1e-12) + 1)
            assert int(res.dimensionality[m, i]) == expected


def test_analyze_recording_per_member(ensemble, result):
    res = dt.analyze_recording(ensemble)
    assert res.tau_net.dims == ("member", "unit") and res.dimensionality.dims == ("member",)
    assert res.tau.dims == ("member", "unit") and res.balance.dims == ("member", "unit")
    xr.testing.assert_identical(res.tau_net, result.tau_net.drop_vars("tau"))
    for m in range(len(TAUS)):
        wb = dt.weight_balance(ensemble.W_rec.isel(member=m))
        np.testing.assert_array_equal(res.balance.isel(member=m).values, wb.balance.values)
    assert dt.reliable_tau_net(res).dims == ("member", "unit")


def test_weight_functions_refuse_a_member_stack_naming_the_fix(ensemble):
    for fn in (dt.weight_balance, dt.weight_spectrum):
        with pytest.raises(ValueError, match=r"W_rec.isel\(member=0\), and loop over \['member'\]"):
            fn(ensemble)
    assert dt.weight_spectrum(ensemble.W_rec.isel(member=1)).sizes["eigenvalue"] == 3


# -- 4. command line -----------------------------------------------------------------------------

def test_cli_timescales_of_an_ensemble_writes_member_labelled_results(ensemble, result, tmp_path, capsys):
    path = dt.save_recording(ensemble, tmp_path / "ens.nc")
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "ensemble of 3 member(s)" in out and "trial lengths 2600..4000" in out and "delay" in out
    assert main(["timescales", str(path), "-o", str(tmp_path / "ts.nc")]) == 0
    assert "3 member(s) x 3 unit(s)" in capsys.readouterr().out
    with xr.open_dataset(tmp_path / "ts.nc") as res:
        assert res.tau_net.dims == ("member", "unit") and res["member"].values.tolist() == [0, 1, 2]
        np.testing.assert_allclose(res.tau_net.values, result.tau_net.values, rtol=0, atol=1e-12)
    assert main(["timescales", str(path), "-q", "--period", "delay", "-o", str(tmp_path / "delay.nc")]) == 0
    with xr.open_dataset(tmp_path / "delay.nc") as res:
        assert res.attrs["selected_period"] == "delay" and res.tau_net.dims == ("member", "unit")


# -- 5. figures ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["autocorrelation_fits", "tau_net_histogram", "timescales_summary"])
def test_plots_pool_the_members(result, name):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import dynatools.plot as dplot

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                # matplotlib's own (glyph, layout) warnings
        fig = getattr(dplot, name)(result)
    assert isinstance(fig, matplotlib.figure.Figure)
    titles = " ".join(t.get_text() for ax in fig.axes for t in [ax.title, *(ax.get_legend().get_texts() if ax.get_legend() else [])])
    if name != "tau_net_histogram":
        assert "member" in titles
    plt.close(fig)


def test_nan_padding_without_trial_length_is_named_with_the_fix():
    x = np.random.default_rng(0).standard_normal((2, 100, 3))
    x[1, 80:] = np.nan                                           # padded, but not declared
    with pytest.raises(ValueError, match=r"trial \[1\]\).*give each trial's length as the coordinate 'trial_length'"):
        dt.timescales(x, fit_lag=10, errors="raise")
    fine = dt.timescales(dt.from_array(x, trial_length=[100, 80]), fit_lag=10, min_length_ratio=None)
    assert (fine.status != "nonfinite").all()


def test_recording_writer_streams_an_ensemble_with_padded_trials_like_from_array(tmp_path):
    rng = np.random.default_rng(3)
    act = rng.standard_normal((2, 3, 10, 4)).astype("float32")            # (member, trial, time, unit)
    inp = rng.standard_normal((3, 10, 1)).astype("float32")
    lengths = [10, 6, 8]
    labels = np.array([["fixation"] * 3 + ["delay"] * 7] * 3)
    common = dict(dt=0.01, time_units="s", trial_length=lengths, period=labels, tau=np.full((2, 4), 0.1),
                  W_rec=rng.standard_normal((2, 4, 4)), model="ens")
    with dt.RecordingWriter(tmp_path / "w.nc", n_members=2, n_trials=3, n_time=10, n_units=4,
                            streamed={"input": (("trial", "time", "input_dim"), "float32")},
                            sizes={"input_dim": 1}, **common) as w:
        for start in (0, 4, 7):
            stop = {0: 4, 4: 7, 7: 10}[start]
            w.write("activity", start, act[:, :, start:stop])
            w.write("input", start, inp[:, start:stop])
    streamed = dt.open_recording(tmp_path / "w.nc").load()
    expected = dt.from_array(act, input=inp, **common)
    xr.testing.assert_identical(streamed.drop_attrs().drop_vars("period"), expected.drop_attrs().drop_vars("period"))
    assert (streamed.period.values.astype(str) == expected.period.values).all()
    assert np.isnan(streamed.input[1, 6:].values).all()
