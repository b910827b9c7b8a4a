"""Autocorrelation: FFT result against a direct computation and statsmodels; labels; dask."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import dynatools as dt


def direct_acf(x: np.ndarray, max_lag: int) -> np.ndarray:
    """Eq. 3 by a double loop's worth of numpy: (trial, time, unit) -> (unit, lag), unnormalised."""
    n_trial, T, n_unit = x.shape
    out = np.zeros((n_unit, max_lag + 1))
    for tr in range(n_trial):
        xc = x[tr] - x[tr].mean(axis=0)
        for k in range(max_lag + 1):
            out[:, k] += (xc[: T - k] * xc[k:]).sum(axis=0) / (T - k)
    return out / n_trial


@pytest.mark.parametrize("n_trial, T, max_lag", [(1, 50, 0), (1, 64, 63), (3, 257, 40), (5, 1000, 200), (2, 4097, 1000)])
def test_fft_equals_direct_computation_float64(rng, n_trial, T, max_lag):
    x = rng.standard_normal((n_trial, T, 3)).cumsum(axis=1) + 5.0  # correlated, non-zero mean
    ac = dt.autocorrelation(x, max_lag=max_lag, normalize=False)
    expected = direct_acf(x, max_lag)
    np.testing.assert_allclose(ac.values, expected, rtol=0, atol=1e-10 * np.abs(expected).max())
    normalised = dt.autocorrelation(x, max_lag=max_lag)
    np.testing.assert_allclose(normalised.values, expected / expected[:, :1], rtol=0, atol=1e-10)


def test_one_series_equals_statsmodels_adjusted_acf(rng):
    from statsmodels.tsa.stattools import acf

    x = rng.standard_normal(3000).cumsum() * 0.01 + rng.standard_normal(3000)
    ours = dt.autocorrelation(x[None, :, None], max_lag=50).values[0]
    theirs = acf(x, adjusted=True, nlags=50, fft=False)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)


def test_float32_fft_is_close_to_float64(rng):
    x = rng.standard_normal((2, 5000, 4)).astype(np.float32)
    a32 = dt.autocorrelation(x, max_lag=30)
    a64 = dt.autocorrelation(x, max_lag=30, dtype="float64")
    assert a32.attrs["fft_dtype"] == "float32" and a64.attrs["fft_dtype"] == "float64"
    np.testing.assert_allclose(a32.values, a64.values, atol=1e-5)


def test_population_is_acf_of_summed_activity(rng):
    x = rng.standard_normal((3, 400, 5))
    pop = dt.autocorrelation(x, max_lag=20, population=True, normalize=False)
    assert pop.dims == ("lag",)
    expected = direct_acf(x.sum(axis=2, keepdims=True), 20)[0]
    np.testing.assert_allclose(pop.values, expected, atol=1e-10 * expected[0])


def test_labels_and_lag_units_follow_the_recording(rng):
    rec = dt.from_array(rng.standard_normal((2, 300, 3)), dt=0.01, time_units="s", unit=[10, 20, 30],
                        tau=[1.0, 2.0, 3.0])
    ac = rec.dyn.autocorrelation(max_lag=10)
    assert ac.dims == ("unit", "lag")
    np.testing.assert_array_equal(ac.unit.values, [10, 20, 30])
    np.testing.assert_allclose(ac.lag.values, np.arange(11) * 0.01)
    assert ac.lag.attrs["units"] == "s"
    assert "tau" in ac.coords  # per-unit coordinates are kept


def test_chunking_limits_memory_without_changing_results(rng, monkeypatch):
    from dynatools import _acf

    x = rng.standard_normal((2, 1000, 7))
    full = dt.autocorrelation(x, max_lag=15)
    monkeypatch.setattr(_acf, "CHUNK_BYTES", 1)  # one series per chunk
    np.testing.assert_allclose(dt.autocorrelation(x, max_lag=15).values, full.values, atol=1e-14)


@pytest.mark.parametrize("chunks", [{"unit": 2}, {"trial": 1}, {"unit": 3, "trial": 2}])
def test_dask_backed_equals_in_memory(rng, chunks):
    pytest.importorskip("dask")
    rec = dt.from_array(rng.standard_normal((3, 600, 5)))
    ref = dt.timescales(rec, max_lag=40)
    lazy = dt.timescales(rec.chunk(chunks), max_lag=40)
    assert lazy.autocorrelation.chunks is not None
    computed = lazy.compute()
    np.testing.assert_allclose(computed.autocorrelation.values, ref.autocorrelation.values, atol=1e-14)
    for name in ("tau_single", "tau_net", "criterion_single", "criterion_double"):
        np.testing.assert_allclose(computed[name].values, ref[name].values, rtol=1e-12)
    np.testing.assert_array_equal(computed.status.values, ref.status.values)


def test_dask_chunked_over_time_is_refused(rng):
    pytest.importorskip("dask")
    rec = dt.from_array(rng.standard_normal((2, 600, 3))).chunk({"time": 100})
    with pytest.raises(ValueError, match="chunked along 'time'.*Rechunk"):
        dt.autocorrelation(rec, max_lag=10)


BAD_INPUTS = [
    (lambda x: np.where(np.arange(x.size).reshape(x.shape) == 7, np.nan, x), ValueError, "NaN or inf.*unit \\[1\\], trial \\[0\\]"),
    (lambda x: np.where(np.arange(x.size).reshape(x.shape) == 5, np.inf, x), ValueError, "NaN or inf"),
    (lambda x: x.astype(np.int32), TypeError, "integer.*astype"),
    (lambda x: x[:, :0], ValueError, "empty"),
    (lambda x: x[:, :20], ValueError, "max_lag=30 needs more than 30 samples.*have 20"),
    (lambda x: xr.DataArray(x, dims=("trial", "t", "unit")), ValueError, "Dimension\\(s\\) \\['time'\\] not found.*rename"),
    (lambda x: x[0, 0], ValueError, "must have 3 axes"),
    (lambda x: "activity.nc", TypeError, "numpy array"),
]


@pytest.mark.parametrize("transform, exc, match", BAD_INPUTS)
def test_bad_input_gets_a_clear_error(rng, transform, exc, match):
    x = rng.standard_normal((2, 100, 3))
    with pytest.raises(exc, match=match):
        dt.autocorrelation(transform(x), max_lag=30, errors="raise")   # NaN/inf: strict on request


def test_constant_unit_gives_nan_and_warning_while_others_are_unaffected(rng):
    x = rng.standard_normal((2, 500, 3))
    ref = dt.autocorrelation(x, max_lag=10)
    x[:, :, 1] = 3.0
    with pytest.warns(RuntimeWarning, match="1 unit\\(s\\) \\(unit \\[1\\]\\) have zero variance"):
        ac = dt.autocorrelation(x, max_lag=10)
    assert np.isnan(ac.values[1]).all()
    np.testing.assert_array_equal(ac.values[[0, 2]], ref.values[[0, 2]])


def test_nonfinite_unit_gives_nan_and_warning_while_others_are_unaffected(rng):
    x = rng.standard_normal((2, 500, 3))
    ref = dt.autocorrelation(x, max_lag=10)
    x[1, 200, 2] = np.inf
    with pytest.warns(RuntimeWarning, match=r"NaN or inf values \(in unit \[2\], trial \[1\]\); their autocorrelation is NaN"):
        ac = dt.autocorrelation(x, max_lag=10)
    assert np.isnan(ac.values[2]).all()                 # trial 0 of unit 2 is finite: not averaged alone
    np.testing.assert_array_equal(ac.values[:2], ref.values[:2])


@settings(max_examples=40, deadline=None)
@given(
    x=arrays(np.float64, st.tuples(st.integers(1, 3), st.integers(2, 60), st.integers(1, 4)),
             elements=st.floats(-1e3, 1e3, allow_nan=False)),
    data=st.data(),
)
def test_property_fft_matches_direct_for_random_shapes_and_values(x, data):
    max_lag = data.draw(st.integers(0, x.shape[1] - 1))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # constant draws are allowed here
        ac = dt.autocorrelation(x, max_lag=max_lag, normalize=False)
    expected = direct_acf(x, max_lag)
    scale = max(1.0, float(np.abs(x).max()) ** 2)
    np.testing.assert_allclose(ac.values, expected, rtol=0, atol=1e-9 * scale)


def test_fft_threads_follow_dynatools_threads(monkeypatch):
    from dynatools._acf import n_workers

    monkeypatch.setenv("DYNATOOLS_THREADS", "1")
    assert n_workers() == 1
    monkeypatch.setenv("DYNATOOLS_THREADS", "nonsense")
    with pytest.raises(ValueError, match="DYNATOOLS_THREADS must be a whole number"):
        n_workers()


def test_float32_time_coordinates_are_evenly_spaced_enough():
    # arange(T) * 0.001 in float32 has steps that differ by about 1e-7: still a uniform sampling
    t = (np.arange(20000) * 0.001).astype("float32")
    assert not np.allclose(np.diff(t.astype(np.float64)), 0.001, rtol=1e-6, atol=0)
    rec = dt.from_array(np.random.default_rng(0).standard_normal((2, 20000, 2)), dt=0.001)
    rec = rec.assign_coords(time=("time", t, rec.time.attrs))
    dt.validate(rec)
    acf = dt.autocorrelation(rec, max_lag=5)
    np.testing.assert_allclose(np.diff(acf.lag.values), 0.001, rtol=1e-6)
    uneven = rec.assign_coords(time=("time", np.r_[t[:-1], t[-1] + 0.01].astype("float32"), rec.time.attrs))
    with pytest.raises(ValueError, match="not evenly spaced"):
        dt.autocorrelation(uneven.activity, max_lag=5)


@pytest.mark.parametrize("order", [("member", "trial", "t", "unit"), ("trial", "t", "member", "unit")])
def test_an_ensembles_member_dim_is_a_batch_dim(rng, order):
    x = rng.standard_normal((3, 2, 120, 4)).cumsum(axis=2)          # (member, trial, time, unit)
    da = xr.DataArray(x, dims=("member", "trial", "t", "unit"), coords={"member": [7, 8, 9]}).transpose(*order)
    ac = dt.autocorrelation(da, max_lag=12, time_dim="t", normalize=False)
    assert ac.dims == ("member", "unit", "lag") and list(ac.member.values) == [7, 8, 9]
    for m in range(3):                                               # each member: Eq. 3 by hand
        np.testing.assert_allclose(ac.isel(member=m), direct_acf(x[m], 12), rtol=1e-10)
    # random walks over 120 steps are 'short' for any timescale: the rule is not what is tested here
    res = dt.timescales(da, fit_lag=10, max_lag=12, time_dim="t", min_length_ratio=None)
    assert res.tau_net.dims == ("member", "unit")
    for m in range(3):
        alone = dt.timescales(da.isel(member=m), fit_lag=10, max_lag=12, time_dim="t", min_length_ratio=None)
        assert res.isel(member=m).identical(alone)
