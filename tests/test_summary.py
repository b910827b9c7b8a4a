"""dynatools.summary: one recording's timescales, dimensionality and weight balance; the units
whose tau_net enters statistics over units."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import dynatools as dt
from dynatools.summary import analyze_recording, reliable_tau_net


def test_analyze_recording_equals_its_parts():
    rng = np.random.default_rng(0)
    x = np.zeros((2, 400, 4))
    for t in range(1, 400):                                  # AR(1) units with known decay
        x[:, t] = 0.8 * x[:, t - 1] + rng.standard_normal((2, 4))
    W = rng.standard_normal((4, 4))
    rec = dt.from_array(x, W_rec=W, tau=np.array([1.0, 2.0, 3.0, 4.0]))
    res = analyze_recording(rec, threshold=0.8, fit_lag=10)
    direct = dt.timescales(rec, fit_lag=10)
    np.testing.assert_allclose(res.tau_net, direct.tau_net)
    np.testing.assert_allclose(res.tau, [1.0, 2.0, 3.0, 4.0])
    dim = dt.pca_dimensionality(rec, 0.8)
    assert float(res.dimensionality) == float(dim.dimensionality.mean())
    assert float(res.participation_ratio) == float(dim.participation_ratio.mean())
    np.testing.assert_allclose(res.balance, dt.weight_balance(rec).balance)
    assert res.attrs["dimensionality_threshold"] == 0.8
    # without tau and W_rec: tau is NaN, no weight balance
    bare = analyze_recording(dt.from_array(x), fit_lag=10)
    assert np.isnan(bare.tau).all() and "balance" not in bare


def test_tau_net_statistics_leave_out_failed_and_at_bound_fits():
    res = xr.Dataset({"tau_net": ("unit", [1.0, 2.0, 99.5, 1e-4, np.nan, 3.0]),
                      "status": ("unit", ["ok", "double_within_noise", "single_failed", "tau_at_bound",
                                          "failed", "ok"])})
    np.testing.assert_array_equal(reliable_tau_net(res), [1.0, 2.0, np.nan, np.nan, np.nan, 3.0])
    assert reliable_tau_net(res.drop_vars("status")).identical(res.tau_net)     # nothing to go by
    # with the fit's bound known: at the lower bound (far below one step) kept, at the upper left out
    res = res.assign(tau_net=("unit", [1.0, 2.0, 99.5, 1e-4, np.nan, 100.0]),
                     status=("unit", ["ok", "ok", "single_failed", "tau_at_bound", "failed", "tau_at_bound"]))
    res.attrs["tau_max"] = 100.0
    np.testing.assert_array_equal(reliable_tau_net(res), [1.0, 2.0, np.nan, 1e-4, np.nan, np.nan])
    # a run summary's decision is used as it is
    decided = res.assign(tau_net_reliable=("unit", [True, False, False, True, False, True]))
    np.testing.assert_array_equal(reliable_tau_net(decided), [1.0, np.nan, np.nan, 1e-4, np.nan, 100.0])


def test_analyze_recording_keeps_an_ensembles_member_dim():
    rng = np.random.default_rng(3)
    members = []
    for m, phi in enumerate((0.5, 0.9)):
        x = np.zeros((2, 1000, 4))          # T >= 50 tau_net (tau 9.5): not short
        for t in range(1, 1000):
            x[:, t] = phi * x[:, t - 1] + rng.standard_normal((2, 4))
        members.append(dt.from_array(x, W_rec=rng.standard_normal((4, 4)), tau=np.arange(1.0, 5.0) * (m + 1)))
    ens = xr.concat(members, dim="member", coords="different", compat="equals", combine_attrs="override")
    res = analyze_recording(ens, fit_lag=10)
    assert res.tau_net.dims == ("member", "unit") and res.dimensionality.dims == ("member",)
    for m in range(2):
        xr.testing.assert_identical(res.isel(member=m, drop=True), analyze_recording(members[m], fit_lag=10))


def test_a_nonfinite_unit_is_flagged_and_left_out_of_the_dimensionality():
    """Issue 12.2 through analyze_recording: a NaN sample in one unit gives that unit status
    'nonfinite' and keeps it out of the PCA; everything else equals the analysis without it."""
    from processes import ar1

    x = ar1(np.random.default_rng(0), [2.0, 3.0, 5.0, 4.0], 2, 4000).astype(np.float64)
    clean = dt.from_array(x)
    x[1, 100, 2] = np.nan
    with pytest.warns(RuntimeWarning, match="nonfinite|NaN"):
        res = analyze_recording(dt.from_array(x))
    assert res.status.sel(unit=2).item() == "nonfinite" and np.isnan(res.tau_net.sel(unit=2))
    alone = analyze_recording(clean.isel(unit=[0, 1, 3]))
    for name in ("dimensionality", "participation_ratio"):
        np.testing.assert_allclose(res[name], alone[name])
    np.testing.assert_allclose(res.tau_net.sel(unit=[0, 1, 3]), alone.tau_net)
    assert res.attrs["dimensionality_units_excluded"] == [2]
    with pytest.raises(ValueError, match="unit"):
        analyze_recording(dt.from_array(x), errors="raise")
