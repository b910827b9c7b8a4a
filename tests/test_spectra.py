"""Power spectra (dynatools.spectra) against known answers: sums of sines, the AR(1) spectrum in
closed form, Welch's estimator written out by hand, Hz vs cycles per step, padded trials,
ensembles, dask, the characteristic frequency of 003 Sec. 4.2, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scipy.signal import find_peaks, lfilter

import dynatools as dt
from dynatools.spectra import plot_power_spectrum, power_spectrum


def _sines(freqs, amps, n_trials=4, n_time=4096, noise=0.1, seed=0):
    """(trial, time, unit=2) sums of sines with random phases, plus white noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_time)
    x = np.zeros((n_trials, n_time, 2))
    for f, a in zip(freqs, amps):
        phase = rng.uniform(0, 2 * np.pi, (n_trials, 1, 2))
        x += a * np.sin(2 * np.pi * f * t[None, :, None] + phase)
    return x + noise * rng.standard_normal(x.shape)


def _hann(n):
    """The periodic Hann window (the one Welch spectra use), written out."""
    return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)


def _direct_welch(series_list, nperseg, noverlap, fs):
    """Welch's estimate written out: mean over every segment of every series of the one-sided
    periodogram of the mean-removed, Hann-windowed segment, 2 |X_k|^2 / (fs sum w^2), the bins
    at 0 and at the Nyquist frequency not doubled."""
    w = _hann(nperseg)
    acc, count = 0.0, 0
    for s in series_list:
        for start in range(0, len(s) - nperseg + 1, nperseg - noverlap):
            seg = s[start:start + nperseg]
            X = np.fft.rfft((seg - seg.mean()) * w)
            p = np.abs(X) ** 2 / (fs * np.sum(w**2))
            p[1:] *= 2
            if nperseg % 2 == 0:
                p[-1] /= 2
            acc, count = acc + p, count + 1
    return acc / count


def test_sum_of_sines_recovers_each_frequency_within_one_bin():
    freqs, amps = [0.0523, 0.1731, 0.31], [1.0, 0.7, 0.5]
    res = power_spectrum(_sines(freqs, amps), nperseg=256)
    df = res.attrs["frequency_resolution"]
    assert df == 1 / 256 and res.frequency.attrs["units"] == "cycles/step"
    for spectrum in (res.mean_power.values, res.power.values[0], res.power.values[1]):
        peaks, _ = find_peaks(spectrum)
        top = np.sort(res.frequency.values[peaks[np.argsort(spectrum[peaks])[-3:]]])
        assert np.all(np.abs(top - freqs) <= df), top
    # the largest sine is the characteristic frequency (nearest bin, so within half a bin)
    assert abs(float(res.mean_characteristic_frequency) - 0.0523) <= df / 2
    np.testing.assert_array_less(np.abs(res.characteristic_frequency.values - 0.0523), df / 2 + 1e-12)


@pytest.mark.parametrize("phi", [0.6, -0.7])
def test_ar1_matches_the_analytic_spectrum_within_sampling_error(phi):
    """x_t = phi x_{t-1} + e_t, var(e) = sigma^2: two-sided S(f) = sigma^2 / |1 - phi e^{-2 pi i f}|^2
    (f in cycles/step); the one-sided density is 2 S(f) for 0 < f < 1/2 and S(f) at 0 and 1/2."""
    rng = np.random.default_rng(1)
    sigma, n_trials, n_time, nperseg = 1.5, 24, 4096, 128
    e = sigma * rng.standard_normal((n_trials, n_time + 500, 1))
    x = lfilter([1.0], [1.0, -phi], e, axis=1)[:, 500:]
    res = power_spectrum(x, nperseg=nperseg)
    f = res.frequency.values
    analytic = sigma**2 / np.abs(1 - phi * np.exp(-2j * np.pi * f)) ** 2
    analytic[(f > 0) & (f < 0.5)] *= 2
    ratio = res.power.values[0] / analytic
    bins = slice(2, None)        # bins 0 and 1 carry the per-segment mean removal (detrend)
    segments = res.attrs["n_segments"]
    assert segments == n_trials * ((n_time - 64) // 64)
    # each bin averages ~segments periodograms (halved for the 50% overlap): relative error ~ 1/sqrt
    sd = 1 / np.sqrt(segments / 2)
    assert np.max(np.abs(ratio[bins] - 1)) < 5 * sd, np.max(np.abs(ratio[bins] - 1))
    assert abs(np.mean(ratio[bins]) - 1) < 0.01
    # without the mean removal, the density integrates to the variance sigma^2 / (1 - phi^2)
    raw = power_spectrum(x, nperseg=nperseg, detrend=False)
    df = raw.attrs["frequency_resolution"]
    assert np.sum(raw.power.values[0]) * df == pytest.approx(sigma**2 / (1 - phi**2), rel=0.03)


def test_power_equals_welchs_estimator_written_out():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 700, 2)).cumsum(axis=1) * 0.1 + rng.standard_normal((3, 700, 2))
    res = power_spectrum(x, nperseg=100, noverlap=30)
    for u in range(2):
        np.testing.assert_allclose(res.power.values[u], _direct_welch(list(x[:, :, u]), 100, 30, 1.0), rtol=1e-10)
    np.testing.assert_allclose(res.mean_power.values, res.power.values.mean(0), rtol=1e-12)
    np.testing.assert_allclose(res.population_power.values, _direct_welch(list(x.mean(-1)), 100, 30, 1.0),
                               rtol=1e-10)


def test_characteristic_frequency_of_a_pure_sine_is_its_frequency():
    t = np.arange(2048)
    f0 = np.array([1 / 16, 0.1, 3 / 8, 0.25])   # cycles per step; on-bin for nperseg=128 except 0.1
    x = np.sin(2 * np.pi * f0[None, :] * t[:, None])[None]
    res = power_spectrum(x, nperseg=128)
    on = [0, 2, 3]
    np.testing.assert_array_equal(res.characteristic_frequency.values[on], f0[on])
    assert abs(res.characteristic_frequency.values[1] - 0.1) <= 0.5 / 128
    one = power_spectrum(x[..., :1], nperseg=128)
    assert float(one.mean_characteristic_frequency) == float(one.population_characteristic_frequency) == 1 / 16
    # 003's angle per step: sMNIST's phi_c = 2 pi / 28 is a sine of period 28 steps
    rows = np.sin(2 * np.pi * np.arange(28 * 64) / 28)[None, :, None]
    f = float(power_spectrum(rows, nperseg=28 * 8).mean_characteristic_frequency)
    assert 2 * np.pi * f == pytest.approx(2 * np.pi / 28)


def test_hz_and_cycles_per_step_differ_by_dt():
    x = _sines([0.05, 0.2], [1.0, 0.5], n_trials=2, n_time=2048).astype(np.float32)
    steps = power_spectrum(dt.from_array(x), nperseg=200)
    secs = power_spectrum(dt.from_array(x, dt=0.004, time_units="s"), nperseg=200)
    assert steps.frequency.attrs["units"] == "cycles/step" and secs.frequency.attrs["units"] == "Hz"
    np.testing.assert_allclose(secs.frequency.values, steps.frequency.values / 0.004)
    np.testing.assert_allclose(secs.power.values, steps.power.values * 0.004, rtol=1e-10)   # density per Hz
    assert float(secs.mean_characteristic_frequency) == pytest.approx(0.05 / 0.004, abs=250 / 200 / 2)
    assert float(secs.mean_characteristic_frequency) == pytest.approx(float(steps.mean_characteristic_frequency) / 0.004)
    assert secs.attrs["fs"] == pytest.approx(250.0)
    # scaling="spectrum" does not depend on dt
    a = power_spectrum(dt.from_array(x), nperseg=200, scaling="spectrum")
    b = power_spectrum(dt.from_array(x, dt=0.004, time_units="s"), nperseg=200, scaling="spectrum")
    np.testing.assert_allclose(a.power.values, b.power.values, rtol=1e-10)


def test_padded_trials_use_their_valid_part_weighted_by_segments():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 600, 2))
    lengths = [600, 350, 257]
    rec = dt.from_array(x, trial_length=lengths)           # NaN after each trial's end
    res = power_spectrum(rec, nperseg=64)
    for u in range(2):
        series = [x[i, :n, u] for i, n in enumerate(lengths)]
        np.testing.assert_allclose(res.power.values[u], _direct_welch(series, 64, 32, 1.0), rtol=1e-10)
    pop = [x[i, :n].mean(-1) for i, n in enumerate(lengths)]
    np.testing.assert_allclose(res.population_power.values, _direct_welch(pop, 64, 32, 1.0), rtol=1e-10)
    with pytest.raises(ValueError, match=r"nperseg=300 is longer than the data: the shortest trial has 257 valid"):
        power_spectrum(rec, nperseg=300)


def test_ensemble_members_are_analysed_alone_and_unit_coords_kept():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 2, 512, 4))
    tau = np.arange(12.0).reshape(3, 4)
    ens = dt.from_array(x, dims=("member", "trial", "time", "unit"), tau=tau)
    res = power_spectrum(ens, nperseg=64)
    assert res.power.dims == ("member", "unit", "frequency") and res.mean_characteristic_frequency.dims == ("member",)
    np.testing.assert_array_equal(res.tau.values, tau)
    for k in range(3):
        alone = power_spectrum(ens.isel(member=k), nperseg=64)
        xr.testing.assert_allclose(res.isel(member=k).drop_vars("member").reset_coords(drop=True),
                                   alone.reset_coords(drop=True))


def test_input_spectrum_is_over_input_dim():
    t = np.arange(1024)
    u = np.stack([np.sin(2 * np.pi * 0.125 * t), np.cos(2 * np.pi * 0.25 * t)], -1)[None].repeat(2, 0)
    rec = dt.from_array(np.zeros((2, 1024, 3)) + np.random.default_rng(5).standard_normal((2, 1024, 3)))
    rec["input"] = (("trial", "time", "input_dim"), u)
    res = power_spectrum(rec, var="input", nperseg=128)
    assert res.power.dims == ("input_dim", "frequency") and res.attrs["variable"] == "input"
    np.testing.assert_array_equal(res.characteristic_frequency.values, [0.125, 0.25])


def test_blocks_and_dask_give_the_same_result(tmp_path):
    pytest.importorskip("dask")
    x = _sines([0.05, 0.2], [1.0, 0.5], n_trials=3, n_time=1024)
    x = np.concatenate([x, x[..., ::-1] * 0.5, x * 2], axis=-1)             # 6 units
    rec = dt.from_array(x)
    ref = power_spectrum(rec, nperseg=128)
    xr.testing.assert_allclose(power_spectrum(rec, nperseg=128, chunk=1), ref)
    path = dt.save_recording(rec, tmp_path / "r.nc")
    lazy = dt.open_recording(path, chunks={"unit": 2, "time": 256})
    assert type(lazy.activity.data).__module__.startswith("dask")
    from dask.callbacks import Callback

    class Largest(Callback):          # the largest array any dask task produced
        nbytes = 0

        def _posttask(self, key, result, dsk, state, worker_id):
            Largest.nbytes = max(Largest.nbytes, getattr(result, "nbytes", 0))

    with Largest():
        xr.testing.assert_allclose(power_spectrum(lazy, nperseg=128, chunk=2), ref)
    assert 0 < Largest.nbytes <= lazy.activity.nbytes / 3          # two of six units at a time, never all


@pytest.mark.parametrize("value", [4.0, 0.1, 1e6, -3.3])          # 0.1: mean removal leaves rounding only
def test_constant_unit_has_no_characteristic_frequency(value):
    x = np.random.default_rng(6).standard_normal((2, 512, 3))
    x[:, :, 1] = value
    x[1, :, 1] = 2 * value                                            # constant within each trial
    with pytest.warns(RuntimeWarning, match=r"unit \[1\] have zero power"):
        res = power_spectrum(dt.from_array(x), nperseg=64)
    assert np.isnan(res.characteristic_frequency.values[1]) and np.isfinite(res.characteristic_frequency.values[[0, 2]]).all()


def test_without_a_time_coordinate_frequencies_are_per_sample():
    """A Dataset's dt is in its time coordinate's units; without the coordinate the spectrum is in
    cycles per sample (a 10 Hz sine sampled at 200 Hz peaks at 0.05 cycles/step)."""
    t = np.arange(2048) * 0.005
    x = np.sin(2 * np.pi * 10 * t)[None, :, None] * np.ones((1, 1, 2))
    rec = dt.from_array(x, dt=0.005, time_units="s")
    hz = power_spectrum(rec, nperseg=256)
    steps = power_spectrum(rec.drop_vars("time"), nperseg=256)
    assert hz.frequency.attrs["units"] == "Hz" and steps.frequency.attrs["units"] == "cycles/step"
    np.testing.assert_allclose(float(hz.mean_characteristic_frequency), 10.0, atol=200 / 256)
    np.testing.assert_allclose(float(steps.mean_characteristic_frequency), 0.05, atol=1 / 256)


@pytest.mark.parametrize("kwargs, data, message", [
    ({}, "wrong_dims", r"Dimension\(s\) \['unit'\] not found"),
    ({}, "nan", r"activity contains NaN or inf \(unit \[2\], trial \[1\]\); interpolate them"),
    ({"nperseg": 600}, "ok", r"nperseg=600 is longer than the data: the trials have 500 samples along 'time'"),
    ({"nperseg": 1}, "ok", r"nperseg must be an integer >= 2"),
    ({"nperseg": 64, "noverlap": 64}, "ok", r"noverlap=64 must be below nperseg=64"),
    ({"window": "nosuch"}, "ok", r"window='nosuch' is not a window"),
    ({"detrend": "quadratic"}, "ok", r"detrend='quadratic' is not a valid option"),
    ({"scaling": "db"}, "ok", r"scaling='db' is not a valid option"),
    ({"var": "input"}, "ok", r"the recording has no variable 'input'"),
    ({}, "int", r"integer/boolean dtype"),
    ({}, "uneven", r"coordinate 'time' is not evenly spaced"),
])
def test_bad_input_gets_a_one_line_error(kwargs, data, message):
    x = np.random.default_rng(7).standard_normal((2, 500, 3))
    if data == "wrong_dims":
        arg = xr.DataArray(x, dims=("trial", "time", "neuron"))
    elif data == "nan":
        x[1, 40, 2] = np.nan
        arg = dt.from_array(x)
    elif data == "int":
        arg = xr.DataArray(np.ones((2, 500, 3), dtype=int), dims=("trial", "time", "unit"))
    elif data == "uneven":
        arg = xr.DataArray(x, dims=("trial", "time", "unit"), coords={"time": np.arange(500) ** 1.5})
    else:
        arg = dt.from_array(x)
    with pytest.raises((ValueError, TypeError), match=message) as exc:
        power_spectrum(arg, **kwargs)
    assert "\n" not in str(exc.value)


def test_plot_draws_the_spectrum_and_the_characteristic_frequency(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    res = power_spectrum(_sines([0.05], [1.0], n_trials=2, n_time=1024), nperseg=128)
    fig = plot_power_spectrum(res)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "frequency (cycles/step)" and ax.get_yscale() == "log"
    assert any("characteristic frequency 0.04688 cycles/step" in t.get_text() for t in ax.get_legend().get_texts())
    fig.savefig(tmp_path / "s.png")
    ens = dt.from_array(np.random.default_rng(8).standard_normal((2, 2, 256, 3)), dims=("member", "trial", "time", "unit"))
    fig = plot_power_spectrum(power_spectrum(ens, nperseg=64))
    assert len(fig.axes[0].get_lines()) >= 2
    with pytest.raises(ValueError, match="not a power_spectrum result"):
        plot_power_spectrum(xr.Dataset())
