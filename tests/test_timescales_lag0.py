"""Lag-0 observation noise (issue 20): subsampled and noisy recordings.

Ground truth from closed forms written here, not from dynatools: a branching process
``A_{t+1} ~ Poisson(m A_t + h)`` observed through binomial subsampling ``Bin(A_t, alpha)`` has the
autocorrelation ``rho_k = (1 - nu) m^k`` for ``k >= 1`` with the noise fraction
``nu = (1 - alpha) / (alpha / (1 - m^2) + 1 - alpha)``: with Poisson offspring
``Var A = E[A] + m^2 Var A``, so ``Var A = E[A] / (1 - m^2)`` and ``Cov(A_t, A_t+k) = m^k Var A``;
thinning multiplies the covariances by ``alpha^2`` and adds ``alpha (1 - alpha) E[A]`` at lag 0
only (the subsampling bias of Wilting & Priesemann, Nat. Commun. 2018); an AR(1) process plus white noise of variance ``s`` has ``nu = s / (1 + s)``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr
from scipy.signal import lfilter

import dynatools as dt
from dynatools import _expfit
from dynatools.timescales import RELIABLE, STATUS


def branching(rng: np.random.Generator, n_units: int, n_time: int, tau: float, *, h: float = 10.0,
              alpha: float = 0.05, n_observers: int = 1) -> tuple[np.ndarray, float]:
    """Independent branching processes (one per unit), each seen by ``n_observers`` binomial
    subsamplings; returns observed counts ``(time, unit, observer)`` and the closed-form noise
    fraction of one observer (of the sum over observers: see :func:`branching_nu`)."""
    m = np.exp(-1.0 / tau)
    a = np.full(n_units, h / (1 - m))
    counts = np.empty((n_time, n_units), dtype=np.int64)
    for t in range(-int(10 * tau), n_time):
        a = rng.poisson(m * a + h)
        if t >= 0:
            counts[t] = a
    obs = rng.binomial(counts[..., None], alpha, size=counts.shape + (n_observers,)).astype(np.float64)
    return obs, branching_nu(tau, alpha, 1)


def branching_nu(tau: float, alpha: float, n_observers: int) -> float:
    """Noise fraction of the sum of ``n_observers`` independent Bin(A, alpha) samplings of a
    branching process: ``n alpha (1 - alpha) E[A]`` over ``n^2 alpha^2 E[A] / (1 - m^2)`` plus that."""
    m2 = np.exp(-2.0 / tau)
    return (1 - alpha) / (n_observers * alpha / (1 - m2) + 1 - alpha)


def ar1(rng: np.random.Generator, n_units: int, n_time: int, tau: float, noise_fraction: float = 0.0) -> np.ndarray:
    """Unit-variance AR(1) units (time, unit), plus white noise making ``noise_fraction`` of the variance."""
    phi = np.exp(-1.0 / tau)
    eps = rng.standard_normal((n_time + 500, n_units)) * np.sqrt(1 - phi**2)
    x = lfilter([1.0], [1.0, -phi], eps, axis=0)[500:]
    if noise_fraction:
        x = x + np.sqrt(noise_fraction / (1 - noise_fraction)) * rng.standard_normal(x.shape)
    return x


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(*args, **kwargs)


def _no_substep_timescale(res: xr.Dataset, step: float = 1.0) -> None:
    """No reported timescale below one step: tau_net, and tau_fast of every selected double model."""
    double = res.selected_model.values == "double"
    assert np.all(res.tau_fast.values[double] >= step)
    assert np.all(res.tau_slow.values[double] >= step)


def test_subsampled_branching_process_is_one_timescale_with_noise():
    """Issue 20's case, test-sized: tau = 20 steps, 5% of events observed, 50 units x 3e4 steps
    (at 1e4 steps the median tau_net is within 2.5% for seeds 0-5, but only 97-100% of the
    units' noise fractions are within 0.05: too close to the 95% asked)."""
    rng = np.random.default_rng(20)
    obs, nu = branching(rng, 50, 30_000, 20.0)
    res = dt.timescales(obs[None, :, :, 0])
    assert np.mean(res.selected_model.values == "single") >= 0.95
    assert abs(np.median(res.tau_net.values) / 20.0 - 1) < 0.05
    assert np.mean(np.abs(res.noise_fraction.values - nu) < 0.05) >= 0.95
    assert np.mean(res.status.values == "lag0_noise") >= 0.95
    assert np.all(res.noise_term.values[res.status.values == "lag0_noise"] == 1)
    _no_substep_timescale(res)
    # the model without a noise term (the behaviour before issue 20) calls most of them double,
    # with a sub-step "timescale": the rule now rejects that component in every mode
    inc = dt.timescales(obs[None, :, :, 0], lag0="include")
    np.testing.assert_array_equal(inc.tau_net.values, res.tau_net.values)
    _no_substep_timescale(inc)


@pytest.mark.parametrize("tau, nu", [(10.0, 0.5), (3.0, 0.3)])
def test_ar1_with_white_measurement_noise(tau, nu):
    rng = np.random.default_rng(int(tau * 10))
    # 3e4 steps: the spread of one unit's noise fraction is then about 0.015 (0.03 at 1e4 steps)
    x = ar1(rng, 60, 30_000, tau, nu)
    res = dt.timescales(x[None])
    assert np.mean(res.selected_model.values == "single") >= 0.95
    assert abs(np.median(res.tau_net.values) / tau - 1) < 0.05
    assert np.mean(np.abs(res.noise_fraction.values - nu) < 0.05) >= 0.95
    _no_substep_timescale(res)


def test_two_timescale_units_still_resolve_both():
    """tau 2 and 40, equal weights: both timescales, no noise term, at most a small noise fraction."""
    rng = np.random.default_rng(2)
    x = (ar1(rng, 60, 10_000, 2.0) + ar1(rng, 60, 10_000, 40.0)) / np.sqrt(2)
    res = dt.timescales(x[None])
    double = res.selected_model.values == "double"
    assert np.mean(double) >= 0.95
    assert abs(np.median(res.tau_slow.values[double]) / 40 - 1) < 0.1
    assert abs(np.median(res.tau_fast.values[double]) / 2 - 1) < 0.1
    assert abs(np.median(res.weight_fast.values[double]) - 0.5) < 0.05
    assert np.all(np.abs(res.noise_fraction.values) < 0.05)
    _no_substep_timescale(res)


@pytest.mark.parametrize("tau", [2.0, 20.0])
def test_plain_ar1_stays_single_without_noise(tau):
    rng = np.random.default_rng(int(tau))
    x = ar1(rng, 60, 10_000, tau)
    res = dt.timescales(x[None])
    assert np.mean(res.selected_model.values == "single") >= 0.95
    assert abs(np.median(res.tau_net.values) / tau - 1) < 0.05
    assert np.mean(np.abs(res.noise_fraction.values) < 0.05) >= 0.95
    # the noise term is rarely added to clean data (measured: 0-2% of units)
    assert np.mean(res.noise_term.values == 1) <= 0.05


def test_exact_lag0_drop_is_noise_in_every_mode():
    """A closed-form curve: 1 at lag 0, 0.6 exp(-k/10) after. The double model fits it with a
    sub-step component; every mode reports one timescale of 10 and a noise fraction of 0.4."""
    lag = np.arange(31.0)
    y = np.where(lag == 0, 1.0, 0.6 * np.exp(-lag / 10.0))
    acf = xr.DataArray(y[None], dims=("unit", "lag"), coords={"lag": lag})
    for lag0 in ("auto", "include", "exclude"):
        res = dt.fit_timescales(acf, lag0=lag0)
        assert str(res.selected_model.values[0]) == "single"
        np.testing.assert_allclose(res.tau_net.item(), 10.0, rtol=1e-6)
        np.testing.assert_allclose(res.noise_fraction.item(), 0.4, atol=1e-6)
        assert res.noise_term.item() == 1
        assert res.attrs["lag0"] == lag0
    # the authors' procedure has no noise term: the fast component stays (a documented difference)
    ref = dt.fit_timescales(acf, reference=True)
    assert ref.noise_term.item() == 0


def test_min_timescale_sets_the_fastest_component():
    """Two exact components 1.5 and 20 steps: resolved by default (min one step); with
    min_timescale = 2 the 1.5-step component counts as lag-0 noise, and only then."""
    lag = np.arange(31.0)
    y = 0.5 * np.exp(-lag / 1.5) + 0.5 * np.exp(-lag / 20.0)
    acf = xr.DataArray(y[None], dims=("unit", "lag"), coords={"lag": lag})
    res = dt.fit_timescales(acf)
    assert str(res.selected_model.values[0]) == "double"
    np.testing.assert_allclose([res.tau_fast.item(), res.tau_slow.item()], [1.5, 20.0], rtol=1e-5)
    strict = dt.fit_timescales(acf, min_timescale=2.0)
    assert str(strict.status.values[0]) == "lag0_noise"
    assert str(strict.selected_model.values[0]) == "single"
    assert strict.attrs["min_timescale"] == 2.0
    # in seconds: the minimum is in the units of the lag coordinate (default one lag step)
    sec = acf.assign_coords(lag=lag * 0.01)
    np.testing.assert_allclose(dt.fit_timescales(sec).tau_fast.item(), 0.015, rtol=1e-5)
    assert str(dt.fit_timescales(sec, min_timescale=0.02).status.values[0]) == "lag0_noise"


def test_population_autocorrelation_of_a_subsampled_process():
    """Population: 8 observers of each branching process summed; the noise fraction of the sum."""
    rng = np.random.default_rng(8)
    obs, _ = branching(rng, 30, 10_000, 20.0, alpha=0.02, n_observers=8)
    # (member, trial, time, unit): one process per member, its observers as the units
    da = xr.DataArray(obs.transpose(1, 0, 2)[:, None], dims=("member", "trial", "time", "unit"))
    res = dt.timescales(da, population=True)
    nu = branching_nu(20.0, 0.02, 8)
    assert res.tau_net.dims == ("member",)
    assert np.mean(res.selected_model.values == "single") >= 0.95
    assert abs(np.median(res.tau_net.values) / 20 - 1) < 0.05
    assert np.mean(np.abs(res.noise_fraction.values - nu) < 0.05) >= 0.95
    _no_substep_timescale(res)


def test_dask_backed_data_give_the_in_memory_result():
    pytest.importorskip("dask")
    rng = np.random.default_rng(5)
    x = xr.DataArray(ar1(rng, 12, 5_000, 5.0, 0.4)[None], dims=("trial", "time", "unit"))
    eager = dt.timescales(x)
    lazy = dt.timescales(x.chunk({"unit": 4}))
    assert lazy.noise_fraction.chunks is not None
    lazy = lazy.compute()
    for name in ("tau_net", "noise_fraction", "noise_term"):
        np.testing.assert_allclose(lazy[name].values, eager[name].values, rtol=1e-10)
    np.testing.assert_array_equal(lazy.status.values, eager.status.values)
    assert np.mean(eager.status.values == "lag0_noise") >= 0.9


def test_bartlett_standard_error_with_noise_matches_the_direct_sum():
    """Closed form against Bartlett's formula summed term by term (Box & Jenkins Eq. 2.1.13)."""
    for a, tau in [(1.0, 3.0), (0.4, 5.0), (0.05, 20.0)]:
        phi = np.exp(-1.0 / tau)
        j = np.arange(-4000, 4001)

        def rho(j):
            j = np.abs(j)
            return np.where(j == 0, 1.0, a * phi**j)

        for k in (1, 2, 7, 30):
            direct = np.sum(rho(j) ** 2 + rho(j + k) * rho(j - k) - 4 * rho(k) * rho(j) * rho(j + k)
                            + 2 * rho(j) ** 2 * rho(k) ** 2) / 1e4
            se = _expfit.bartlett_se_noisy(np.array([float(k)]), np.array([tau]), np.array([a]), 1e4, 1.0)
            np.testing.assert_allclose(se[0, 0] ** 2, direct, rtol=1e-9)
        if a == 1.0:
            t = np.arange(31.0)
            np.testing.assert_allclose(_expfit.bartlett_se_noisy(t[1:], np.array([tau]), np.ones(1), 1e4, 1.0),
                                       _expfit.bartlett_se_ar1(t[1:], np.array([tau]), 1e4, 1.0), rtol=1e-12)


def test_status_and_options_are_validated():
    assert "lag0_noise" in STATUS and "lag0_noise" in RELIABLE
    acf = xr.DataArray(np.exp(-np.arange(31.0) / 4)[None], dims=("unit", "lag"))
    with pytest.raises(ValueError, match="lag0"):
        dt.fit_timescales(acf, lag0="drop")
    with pytest.raises(ValueError, match="reference=True"):
        dt.fit_timescales(acf, reference=True, lag0="exclude")
    with pytest.raises(ValueError, match="min_timescale"):
        dt.fit_timescales(acf, min_timescale=0)
    with pytest.raises(ValueError, match="min_timescale"):
        dt.fit_timescales(acf, min_timescale=500.0)
    # timescales() passes the options on
    rng = np.random.default_rng(0)
    res = dt.timescales(ar1(rng, 3, 2_000, 3.0)[None], lag0="exclude")
    assert res.attrs["lag0"] == "exclude" and np.all(res.noise_term.values == 1)


def test_plots_do_not_label_a_substep_component_as_a_timescale():
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import dynatools.plot as dplot

    rng = np.random.default_rng(21)
    obs, _ = branching(rng, 3, 5_000, 10.0)
    # the authors' procedure keeps the double fit with its sub-step fast component ...
    ref = dt.timescales(obs[None, :, :, 0], reference=True)
    assert np.all(ref.tau_fast.values < 1) and np.all(ref.selected_model.values == "double")

    def labels(fig):
        return [t.get_text() for ax in fig.axes for t in (ax.get_legend().get_texts() if ax.get_legend() else [])]

    fig = dplot.autocorrelation_fits(ref)
    text = labels(fig)
    plt.close(fig)
    # ... which the plot does not label as a timescale
    assert text and not any("τ_fast =" in t for t in text)
    assert any("lag-0 noise, not a timescale" in t for t in text)
    res = dt.timescales(obs[None, :, :, 0])
    assert np.all(res.status.values == "lag0_noise")
    fig = dplot.autocorrelation_fits(res)
    assert any("+ lag-0 noise" in t for t in labels(fig))
    plt.close(fig)
    fig = dplot.timescales_summary(res, units=2)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts] + [t.get_text() for t in fig.texts]
    plt.close(fig)
    assert not any("τ_fast" in text for text in texts)
