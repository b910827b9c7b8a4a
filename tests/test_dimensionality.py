"""PCA dimensionality and participation ratio against closed forms (timescale paper Fig. 6b)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr

import dynatools as dt
from dynatools.dimensionality import pca_dimensionality, participation_ratio


def _embedded(d, n_units=100, T=40_000, trials=2, seed=0):
    """Isotropic Gaussian data of dimension d, rotated into n_units units."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((n_units, d)))
    return rng.standard_normal((trials, T, d)) @ basis.T


@pytest.mark.parametrize("d", [3, 10, 25])
def test_isotropic_data_of_dimension_d(d):
    res = pca_dimensionality(_embedded(d))
    assert np.all(np.abs(res.dimensionality.values - math.ceil(0.9 * d)) <= 1)
    np.testing.assert_allclose(res.participation_ratio.values, d, rtol=0.05)
    np.testing.assert_allclose(res.explained_variance_ratio.sum("component"), 1.0)
    assert res.explained_variance_ratio.isel(component=slice(d, None)).max() < 1e-12


def _hadamard_data(eigenvalues):
    """Data whose covariance is exactly diag(eigenvalues) (rows of a Hadamard matrix as samples)."""
    from scipy.linalg import hadamard

    n = len(eigenvalues)
    H = hadamard(8)[:, 1:n + 1].astype(float)          # columns orthogonal, mean zero, entries +-1
    x = H * np.sqrt(np.asarray(eigenvalues) * 7 / 8)   # sample covariance (divide by T - 1) = diag
    return x


@pytest.mark.parametrize("eigenvalues, pr, n90", [([1, 1, 1, 1], 4.0, 4), ([1, 0, 0], 1.0, 1),
                                                   ([4, 1, 1, 0], 36 / 18, 3), ([1, 1, 1, 1, 1, 1, 1], 7.0, 7)])
def test_exact_spectra(eigenvalues, pr, n90):
    x = _hadamard_data(eigenvalues)
    np.testing.assert_allclose(np.cov(x.T), np.diag(eigenvalues), atol=1e-12)
    assert float(participation_ratio(x, per="pooled")) == pytest.approx(pr, rel=1e-12)
    res = pca_dimensionality(x, per="pooled")
    assert int(res.dimensionality) == n90
    assert int(pca_dimensionality(x, per="pooled", report="n_components_minus_one").dimensionality) == n90 - 1
    # three of four equal eigenvalues explain exactly 75%: the threshold is reached, not missed by rounding
    if eigenvalues == [1, 1, 1, 1]:
        assert int(pca_dimensionality(x, 0.75, per="pooled").dimensionality) == 3


def test_chunked_and_dask_data_equal_in_memory(tmp_path):
    x = _embedded(5, n_units=12, T=3001, trials=3)
    rec = dt.from_array(x.astype("float64"))
    whole = pca_dimensionality(rec, chunk=10_000)
    chunked = pca_dimensionality(rec, chunk=7)
    xr.testing.assert_allclose(whole, chunked)
    path = tmp_path / "r.nc"
    dt.save_recording(rec, path)
    lazy = dt.open_recording(path, chunks={"time": 500})
    xr.testing.assert_allclose(pca_dimensionality(lazy), whole)
    xr.testing.assert_allclose(participation_ratio(lazy, per="pooled"),
                               participation_ratio(x, per="pooled"))


def test_large_offsets_do_not_cost_precision():
    # a 10-dimensional signal of std 1e-5 on a mean of 1e3 (raw sums would lose it to rounding)
    x = 1e3 + 1e-5 * _embedded(10, n_units=30, T=20_000, trials=1)
    res = pca_dimensionality(x)
    assert int(res.dimensionality[0]) == 9
    np.testing.assert_allclose(res.participation_ratio, 10, rtol=0.05)
    with pytest.raises(ValueError, match="zero variance"):      # a fixed point: constant, non-zero
        pca_dimensionality(np.tile(np.linspace(0.1, 3.0, 8), (2, 500, 1)))


@pytest.mark.parametrize("per", ["trial", "pooled"])
@pytest.mark.parametrize("scale", [1e200, 1e-200, 1e300, 1e-300, 1e-310, 2.0 ** 1000])
def test_measures_do_not_change_when_the_data_are_rescaled(scale, per):
    # the covariance of 1e200 data overflows float64 and that of 1e-200 data underflows: the data
    # are scaled by a power of two first, so the measures (ratios) are those of the unscaled data
    x = 5.0 + _embedded(4, n_units=7, T=300, trials=2) @ np.diag([3.0, 2, 1, 0.5, 0.2, 0.1, 0.05])
    ref, res = pca_dimensionality(x, 0.95, per=per), pca_dimensionality(x * scale, 0.95, per=per)
    np.testing.assert_array_equal(res.dimensionality, ref.dimensionality)
    rtol = 1e-6 if scale < 1e-300 else 1e-12             # a subnormal 1e-310 keeps ~9 digits
    np.testing.assert_allclose(res.participation_ratio, ref.participation_ratio, rtol=rtol)
    np.testing.assert_allclose(res.explained_variance_ratio, ref.explained_variance_ratio, rtol=rtol, atol=1e-15)
    np.testing.assert_allclose(participation_ratio(x * scale, per=per), ref.participation_ratio, rtol=rtol)


def test_a_block_far_larger_than_the_first_rescales_the_sums():
    x = _embedded(3, n_units=5, T=400, trials=1)
    y = x.copy()
    y[:, :100] *= 1e-250                                  # first chunk tiny, the rest of order 1
    ref = participation_ratio(np.concatenate([np.zeros((1, 100, 5)), x[:, 100:]], 1), per="pooled")
    got = participation_ratio(y, per="pooled", chunk=100)
    np.testing.assert_allclose(got, ref, rtol=1e-12)
    with pytest.raises(ValueError, match="zero variance"):   # a constant 1e-200 recording is still constant
        pca_dimensionality(np.full((1, 50, 3), 1e-200))


def test_the_input_is_not_modified():
    x = _embedded(3, n_units=6, T=500, trials=2)
    copy = x.copy()
    pca_dimensionality(x, per="pooled", chunk=100)
    participation_ratio(x)
    np.testing.assert_array_equal(x, copy)


def test_pooled_versus_per_trial():
    rng = np.random.default_rng(1)
    # trial 0 lives in unit 0, trial 1 in unit 1: each trial is 1-D, the pooled data 2-D
    x = np.zeros((2, 5000, 3))
    x[0, :, 0] = rng.standard_normal(5000)
    x[1, :, 1] = rng.standard_normal(5000)
    assert list(pca_dimensionality(x).dimensionality.values) == [1, 1]
    assert int(pca_dimensionality(x, per="pooled").dimensionality) == 2
    np.testing.assert_allclose(float(participation_ratio(x, per="pooled")), 2.0, rtol=0.05)


@pytest.mark.parametrize("kwargs, data, match", [
    ({}, np.full((2, 100, 3), 2.0), "zero variance"),
    ({}, np.r_[np.zeros(99), np.nan].reshape(1, 100, 1) + np.arange(100.0)[None, :, None], "NaN"),
    ({}, np.zeros((1, 1, 3)), "at least 2"),
    ({"threshold": 1.5}, np.ones((1, 10, 2)), "threshold"),
    ({"threshold": True}, np.ones((1, 10, 2)), "threshold"),
    ({"per": "unit"}, np.ones((1, 10, 2)), "per"),
    ({"report": "minus_one"}, np.ones((1, 10, 2)), "n_components_minus_one"),
])
def test_bad_input(kwargs, data, match):
    with pytest.raises((ValueError, TypeError), match=match):
        pca_dimensionality(data, **kwargs)


def test_wrong_dims_name_the_fix():
    da = xr.DataArray(np.ones((10, 3)), dims=("t", "unit"))
    with pytest.raises(ValueError, match="rename"):
        participation_ratio(da)
    assert float(participation_ratio(da + np.arange(3.0) * np.arange(10.0)[:, None], time_dim="t", per="pooled")) == pytest.approx(1.0)


def test_fewer_samples_than_units_warns():
    x = np.random.default_rng(0).standard_normal((2, 30, 50))            # 30 steps, 50 units
    with pytest.warns(UserWarning, match="30 samples per covariance for 50 units"):
        res = pca_dimensionality(x, 0.99)
    assert int(res.dimensionality.max()) <= 29                           # rank <= T - 1 after centring
    with pytest.warns(UserWarning, match="60 samples"):
        participation_ratio(np.random.default_rng(1).standard_normal((2, 30, 80)), per="pooled")


@pytest.mark.parametrize("per", ["trial", "pooled"])
def test_an_ensembles_member_dim_is_a_batch_dim(per):
    # member m has d = m + 1 isotropic dimensions: each member's count is its own
    x = np.stack([_embedded(m + 1, n_units=6, T=400, trials=2, seed=m) for m in range(3)], axis=1)
    da = xr.DataArray(x, dims=("trial", "member", "time", "unit"), coords={"member": ["a", "b", "c"]})
    res, pr = pca_dimensionality(da, 0.99, per=per), participation_ratio(da, per=per)
    assert res.dimensionality.dims[0] == "member" and pr.dims[0] == "member"
    assert list(res.member.values) == ["a", "b", "c"]
    for m in range(3):
        assert res.isel(member=m, drop=True).identical(pca_dimensionality(da.isel(member=m), 0.99, per=per))
        assert pr.isel(member=m, drop=True).identical(participation_ratio(da.isel(member=m), per=per))
        lam = np.linalg.eigvalsh(np.cov(x[:, m].reshape(-1, 6).T) if per == "pooled" else np.cov(x[0, m].T))[::-1]
        count = res.dimensionality.isel(member=m).values.flat[0]
        assert count == np.searchsorted(np.cumsum(lam) / lam.sum(), 0.99 - 1e-12) + 1 == m + 1
    bad = da.copy()
    bad[1, 2] = 1.0                                        # member c, trial 1 is constant
    with pytest.raises(ValueError, match="zero variance in member c, trial 1"):
        pca_dimensionality(bad)
