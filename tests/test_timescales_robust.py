"""Timescales on awkward data (issue 12, items 1-3), each against ground truth from outside our
code: AR(1) processes with known tau, a direct float64 time-domain sum, and the closed-form
expectation of the autocorrelation estimator on short trials.

1. results do not depend on the units of the data (float32 at 1e-30 .. 1e36);
2. a unit with NaN/inf gets status ``nonfinite`` and NaN results, the others are unchanged;
3. trials too short for the fitted timescale get status ``short``.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from processes import ar1
from scipy.optimize import curve_fit

import dynatools as dt
from dynatools import _expfit
from dynatools.timescales import RELIABLE, STATUS

FIT_VARS = ["tau_single", "amplitude_single", "tau_fast", "tau_slow", "weight_fast", "amplitude_double",
            "criterion_single", "criterion_double", "rss_single", "rss_double", "tau_net", "r2", "n_timescales"]


def direct_acov(x: np.ndarray, max_lag: int) -> np.ndarray:
    """Eq. 3 as a time-domain sum in float64: (trial, time, unit) -> (unit, lag), unnormalised."""
    x = np.asarray(x, dtype=np.float64)
    n_trial, T, _ = x.shape
    xc = x - x.mean(axis=1, keepdims=True)
    return np.stack([(xc[:, : T - k] * xc[:, k:]).sum(axis=1).mean(axis=0) / (T - k)
                     for k in range(max_lag + 1)], axis=-1)


@pytest.fixture(scope="module")
def units32():
    """float32 AR(1) units with tau 2, 5, 20, 8 (closed-form AC exp(-k/tau)), 4 x 20000 steps."""
    return ar1(np.random.default_rng(7), [2.0, 5.0, 20.0, 8.0], 4, 20_000)


# ---------------------------------------------------------------- 1. units of the data


@pytest.mark.parametrize("scale", [1e-30, 1e-26, 1e-25, 1e-20, 1.0, 1e18, 1e30, 1e36])
def test_float32_at_any_scale_gives_the_float64_timescales(units32, scale):
    # issue: x * 1e-25 gave tau_net up to 6.6x off with status ok, x * 1e-26 'zero variance' for
    # every unit, x * 1e18 'contains NaN or inf'
    reference = dt.timescales(units32.astype(np.float64))
    scaled = (units32 * np.float32(scale)).astype(np.float32)
    assert np.isfinite(scaled).all() and scaled.dtype == np.float32
    res = dt.timescales(scaled)
    np.testing.assert_array_equal(res.status, reference.status)
    np.testing.assert_allclose(res.tau_net, reference.tau_net, rtol=1e-4)
    np.testing.assert_allclose(res.tau_single, [2.0, 5.0, 20.0, 8.0], rtol=0.06)    # the true taus
    np.testing.assert_allclose(res.autocorrelation, reference.autocorrelation, atol=2e-6)


@pytest.mark.parametrize("scale", [1e-300, 1e-170, 1e160, 1e300])
def test_float64_at_extreme_scales_gives_the_same_timescales(units32, scale):
    """float64 too: at 1e160 the autocovariance (x squared) overflows float64 and at 1e-170 it
    underflows; the normalized autocorrelation and the fits must not notice (review of issue 12)."""
    x = units32.astype(np.float64)
    reference = dt.timescales(x)
    res = dt.timescales(x * scale)
    np.testing.assert_array_equal(res.status, reference.status)
    np.testing.assert_allclose(res.tau_net, reference.tau_net, rtol=1e-8)
    np.testing.assert_allclose(res.autocorrelation, reference.autocorrelation, atol=1e-12)


@pytest.mark.parametrize("scale", [1e-40, 1e-30, 1e-20, 1.0, 1e20, 1e36])
@pytest.mark.parametrize("dtype", [None, "float64"])
def test_float32_autocovariance_equals_a_direct_float64_sum_at_any_scale(rng, scale, dtype):
    x = (rng.standard_normal((2, 300, 3)).cumsum(axis=1) * scale).astype(np.float32)   # 1e-40: subnormal
    expected = direct_acov(x, 20)
    ac = dt.autocorrelation(x, max_lag=20, normalize=False, dtype=dtype)
    np.testing.assert_allclose(ac.values, expected, rtol=0, atol=2e-6 * np.abs(expected).max())
    assert np.isfinite(ac.values).all() and (ac.values[:, 0] > 0).all()


def test_zero_variance_is_judged_on_each_units_own_scale(rng):
    x = rng.standard_normal((2, 500, 5)).astype(np.float32)
    x[:, :, 0] *= np.float32(1e-26)                 # varying at 1e-26: not constant
    x[:, :, 1] = np.float32(3e-26)                  # constant at 1e-26
    x[:, :, 2] = np.float32(-2e30)                  # constant at 2e30
    y = np.repeat(rng.standard_normal((2, 500, 1)), 2, axis=2)
    y[:, :, 1] = 0.1                                # float64 constant whose mean is not exact
    with pytest.warns(RuntimeWarning, match=r"2 unit\(s\) \(unit \[1, 2\]\) have zero variance"):
        ac = dt.autocorrelation(x, max_lag=10)
    assert np.isfinite(ac.values[[0, 3, 4]]).all() and np.isnan(ac.values[[1, 2]]).all()
    np.testing.assert_allclose(ac.values[0], direct_acov(x[:, :, :1], 10)[0] / direct_acov(x[:, :, :1], 10)[0, 0],
                               atol=1e-6)
    with pytest.warns(RuntimeWarning, match=r"unit \[1\]\) have zero variance"):
        assert np.isnan(dt.autocorrelation(y, max_lag=10).values[1]).all()


def test_dask_backed_float32_at_extreme_scale_equals_in_memory(units32):
    pytest.importorskip("dask")
    rec = dt.from_array((units32 * np.float32(1e18)).astype(np.float32))
    lazy = dt.timescales(rec.chunk({"unit": 2}))
    xr.testing.assert_allclose(lazy.compute().tau_net, dt.timescales(rec).tau_net)


def test_in_range_data_give_bitwise_the_same_autocorrelation_as_before_rescaling(rng):
    # the rescaling is by powers of two, and only outside SAFE_RANGE: ordinary data are untouched,
    # and scaling them by 2**k changes the autocovariance by exactly 4**k
    x = rng.standard_normal((2, 1000, 3)).astype(np.float32)
    base = dt.autocorrelation(x, max_lag=20, normalize=False).values
    for k in (-60, 40):
        scaled = dt.autocorrelation(np.ldexp(x, k), max_lag=20, normalize=False).values
        np.testing.assert_array_equal(scaled, np.ldexp(base, 2 * k))


# ---------------------------------------------------------------- 2. non-finite units


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
def test_a_nonfinite_sample_flags_its_unit_and_leaves_the_others_unchanged(units32, bad_value):
    x = units32.copy()
    x[1, 777, 2] = bad_value
    others = dt.timescales(units32[:, :, [0, 1, 3]], min_length_ratio=None)   # the others, analysed alone
    with pytest.warns(RuntimeWarning, match=r"NaN or inf values \(in unit \[2\], trial \[1\]\).*'nonfinite'"):
        res = dt.timescales(x, min_length_ratio=None)
    assert res.status.values.tolist()[2] == "nonfinite" and str(res.selected_model[2].values) == "none"
    assert all(np.isnan(res[v].values[2]) for v in FIT_VARS) and np.isnan(res.autocorrelation[2]).all()
    kept = res.isel(unit=[0, 1, 3])
    for v in FIT_VARS + ["status", "autocorrelation"]:
        np.testing.assert_array_equal(kept[v].values, others[v].values)
    assert np.isnan(dt.reliable_tau_net(res).values[2])


def test_errors_raise_keeps_the_strict_behaviour(units32):
    x = units32.copy()
    x[0, 5, 3] = np.nan
    with pytest.raises(ValueError, match=r"NaN or inf values \(in unit \[3\], trial \[0\]\).*errors='ignore'"):
        dt.timescales(x, errors="raise")
    with pytest.raises(ValueError, match=r"errors='warn' is not a valid option; choose one of 'ignore', 'raise'"):
        dt.timescales(x, errors="warn")


def test_population_of_nonfinite_activity_is_flagged(units32):
    x = units32.copy()
    x[0, 5, 3] = np.nan
    with pytest.warns(RuntimeWarning, match=r"trial \[0\]"):
        res = dt.timescales(x, population=True)
    assert str(res.status.values) == "nonfinite" and np.isnan(res.tau_net.values)


def test_dask_backed_nonfinite_unit_is_named_and_flagged(units32):
    pytest.importorskip("dask")
    x = units32.copy()
    x[1, 100, 2] = np.nan
    rec = dt.from_array(x, unit=[10, 11, 12, 13]).chunk({"unit": 1})
    eager = dt.timescales(dt.from_array(units32, unit=[10, 11, 12, 13]), min_length_ratio=None)
    lazy = dt.timescales(rec, min_length_ratio=None)          # nothing computed, nothing reported yet
    with pytest.warns(RuntimeWarning, match=r"unit \[12\], trial \[1\]"):
        res = lazy.compute()
    assert res.status.sel(unit=12).item() == "nonfinite" and np.isnan(res.tau_net.sel(unit=12))
    xr.testing.assert_allclose(res.tau_net.drop_sel(unit=12), eager.tau_net.drop_sel(unit=12))
    with pytest.raises(ValueError, match=r"NaN or inf values \(in unit \[12\], trial \[1\]\)"):
        dt.timescales(rec, errors="raise").compute()


def test_status_codes_of_the_fits_keep_their_positions():
    n = len(_expfit.STATUS)
    assert STATUS[:n] == _expfit.STATUS and STATUS[n:] == ("nonfinite", "short")
    assert "nonfinite" not in RELIABLE and "short" not in RELIABLE


# ---------------------------------------------------------------- 3. short trials


def expected_normalised_acf(tau: float, T: int, max_lag: int) -> np.ndarray:
    """Closed-form expectation of Eq. 3's numerator (per-trial mean removed, lag k divided by
    T - k) for a unit-variance AR(1) process, divided by its lag-0 value (the large-trial-count
    limit of the trial average)."""
    phi = np.exp(-1.0 / tau)
    i = np.arange(T)
    cov = phi ** np.abs(i[:, None] - i[None, :])
    with_mean = cov.mean(axis=1)                      # Cov(x_t, mean)
    out = np.array([phi**k - (with_mean[: T - k].sum() + with_mean[k:].sum()) / (T - k) + cov.mean()
                    for k in range(max_lag + 1)])
    return out / out[0]


def closed_form_fitted_tau(tau: float, T: int, fit_lag: int) -> float:
    """tau of a single exponential fitted by scipy to the expected autocorrelation."""
    t = np.arange(fit_lag + 1.0)
    (a, s), _ = curve_fit(lambda t, a, s: a * np.exp(-t / s), t, expected_normalised_acf(tau, T, fit_lag),
                          p0=(1.0, tau), bounds=([0, 1e-6], [1, 100]))
    return s


@pytest.mark.parametrize("tau, ratio, low, high", [(2.0, 50, 0.87, 0.91), (10.0, 50, 0.89, 0.93),
                                                  (10.0, 20, 0.76, 0.80), (20.0, 10, 0.66, 0.70)])
def test_documented_bias_follows_from_the_closed_form(tau, ratio, low, high):
    # the numbers behind MIN_LENGTH_RATIO (docs/timescales.md, "Short trials")
    assert low <= closed_form_fitted_tau(tau, int(ratio * tau), 30) / tau <= high


def test_measured_tau_net_on_short_trials_matches_the_closed_form_bias():
    tau, T = 5.0, 100                                 # T = 20 tau: about 24% low
    x = ar1(np.random.default_rng(3), np.full(30, tau), 200, T)
    with pytest.warns(RuntimeWarning, match=r"30 unit\(s\).*1/50 of the trial length \(100 steps\)"):
        res = dt.timescales(x)
    assert set(res.status.values) == {"short"}
    expected = closed_form_fitted_tau(tau, T, 30)
    assert np.median(res.tau_net) == pytest.approx(expected, rel=0.04)
    assert np.median(res.tau_net) < 0.85 * tau        # biased low, as the status says


def test_the_issues_case_tau_20_in_36_steps_is_short(rng):
    x = ar1(rng, np.full(10, 20.0), 40, 36)
    with pytest.warns(RuntimeWarning, match=r"unit\(s\) \(unit \[0, .*status 'short'.*Record longer trials"):
        res = dt.timescales(x)
    assert (res.tau_net < 5).all()                                            # 3.4-3.9 in the issue
    # every fit that would count as credible says 'short' (a few single fits fail on such data:
    # 'single_failed', also left out of statistics)
    assert not res.status.isin(list(RELIABLE)).any() and int((res.status == "short").sum()) >= 7
    assert dt.reliable_tau_net(res).isnull().all()
    # the values are kept; the rule can be turned off
    off = dt.timescales(x, min_length_ratio=None)
    np.testing.assert_array_equal(off.tau_net, res.tau_net)
    assert "short" not in off.status.values and np.isnan(off.attrs["min_length_ratio"])


def test_long_enough_trials_are_not_short_and_the_rule_follows_the_time_units(rng):
    x = ar1(rng, [2.0, 5.0, 40.0], 4, 1500)           # T / tau = 750, 300, 37.5
    with pytest.warns(RuntimeWarning, match=r"1 unit\(s\) \(unit \[2\]\)"):
        res = dt.timescales(x)
    assert res.status.values[2] == "short" and res.status.values[0] in RELIABLE
    with pytest.warns(RuntimeWarning, match=r"1 unit\(s\) \(unit \[2\]\)"):
        ms = dt.timescales(dt.from_array(x, dt=0.001))              # tau_net in seconds
    np.testing.assert_array_equal(ms.status, res.status)
    np.testing.assert_allclose(ms.tau_net, res.tau_net * 0.001, rtol=1e-9)
    assert dt.timescales(x, min_length_ratio=30).status.values[2] != "short"


def test_short_rule_needs_the_trial_length(rng):
    acf = dt.autocorrelation(ar1(rng, [20.0], 20, 200), max_lag=40)
    with pytest.warns(RuntimeWarning, match="status 'short'"):
        assert dt.fit_timescales(acf).status.item() == "short"
    bare = acf.copy()
    bare.attrs = {}                                     # a user's own autocorrelation: T unknown
    assert dt.fit_timescales(bare).status.item() != "short"
    with pytest.raises(ValueError, match="min_length_ratio must be a positive number"):
        dt.fit_timescales(acf, min_length_ratio=0)
