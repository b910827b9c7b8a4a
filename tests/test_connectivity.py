"""Connectivity statistics on hand-made matrices with exact answers (timescale paper Fig. 6a;
modular-growth paper Fig. 5c; multi-tau poster)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import dynatools as dt
from dynatools.connectivity import weight_balance, weight_change, weight_conservation, weight_spectrum

W = np.array([[9.0, 2.0, -1.0, 0.5],
              [1.0, 9.0, -1.0, -1.0],
              [-3.0, -1.0, 9.0, 0.0],
              [0.0, 0.0, 0.0, 9.0]])   # diagonal 9: excluded by default


def test_weight_balance_exact_values():
    b = weight_balance(W)
    np.testing.assert_allclose(b.positive_sum, [2.5, 1.0, 0.0, 0.0])
    np.testing.assert_allclose(b.negative_sum, [-1.0, -2.0, -4.0, 0.0])
    np.testing.assert_allclose(b.positive_mean, [1.25, 1.0, np.nan, np.nan])
    np.testing.assert_allclose(b.negative_mean, [-1.0, -1.0, -2.0, np.nan])
    np.testing.assert_allclose(b.mean_incoming, [1.5 / 3, -1.0 / 3, -4.0 / 3, 0.0])
    np.testing.assert_allclose(b.net, [1.5, -1.0, -4.0, 0.0])
    np.testing.assert_allclose(b.balance, [1.5 / 3.5, -1.0 / 3.0, -1.0, np.nan])   # unit 3: no input
    assert b.attrs["mean_negative_sum"] == pytest.approx(-7.0 / 4)
    with_self = weight_balance(W, exclude_self=False)
    np.testing.assert_allclose(with_self.positive_sum, [11.5, 10.0, 9.0, 9.0])
    np.testing.assert_allclose(with_self.mean_incoming, W.mean(1))


def test_weights_from_recordings_and_models():
    torch = pytest.importorskip("torch")
    import trainers

    net = trainers.LeakyRNN(6, generator=torch.Generator().manual_seed(0))
    from_model = weight_balance(net)
    Wr = net.recording_weights()["W_rec"]
    rec = dt.from_array(np.zeros((1, 5, 6)))
    rec["W_rec"] = (("unit", "unit_pre"), Wr)
    xr.testing.assert_allclose(weight_balance(rec), from_model)
    # stored the other way round, ("unit_pre", "unit"): still read with rows = receiving units
    flipped = rec.transpose("unit_pre", "unit", ...)
    assert flipped.W_rec.dims == ("unit_pre", "unit")
    xr.testing.assert_allclose(weight_balance(flipped), from_model)
    np.testing.assert_allclose(from_model.positive_sum, np.where(Wr > 0, Wr, 0).sum(1), rtol=1e-6)


def test_weight_change_exact():
    after = W.copy()
    after[0, 1] += 3.0
    after[2, 0] -= 4.0
    c = weight_change(W, after)
    assert c.attrs["frobenius"] == pytest.approx(5.0)
    assert c.attrs["relative"] == pytest.approx(5.0 / np.linalg.norm(W))
    assert c.attrs["mean_abs"] == pytest.approx(7.0 / 16)
    assert c.attrs["max_abs"] == pytest.approx(4.0)
    np.testing.assert_allclose(c.incoming_change, [3.0, 0.0, 4.0, 0.0])


def test_weight_conservation_exact():
    A = np.array([[1.0, -1.0], [1.0, -1.0]])       # normalised: itself (mean 0, std 1)
    B = np.array([[-1.0, 1.0], [1.0, -1.0]])       # normalised: itself
    v = weight_conservation([A, A * 5 + 2, B])
    # module 1 is an affine copy of module 0 (variance 0); B - A = [[-2, 2], [0, 0]] -> var 2
    np.testing.assert_allclose(v.values, [0.0, 2.0])
    assert list(v.module.values) == [1, 2] and v.attrs["mean"] == pytest.approx(1.0)
    stacked = xr.DataArray(np.stack([A, B]), dims=("module", "i", "j"), coords={"module": [4, 5]})
    np.testing.assert_allclose(weight_conservation(stacked).values, [2.0])
    assert list(weight_conservation(stacked).module.values) == [5]


def test_weight_spectrum_of_a_rotation_and_a_triangle():
    s = weight_spectrum(np.array([[0.0, -2.0], [2.0, 0.0]]))
    np.testing.assert_allclose(np.sort(s.imag_part.values), [-2.0, 2.0])
    np.testing.assert_allclose(s.modulus.values, 2.0)
    t = weight_spectrum(np.array([[0.5, 7.0, 1.0], [0.0, -3.0, 2.0], [0.0, 0.0, 1.0]]))
    np.testing.assert_allclose(t.real_part.values, [-3.0, 1.0, 0.5])
    assert t.attrs["spectral_radius"] == pytest.approx(3.0)


@pytest.mark.parametrize("call, match", [
    (lambda: weight_balance(dt.from_array(np.zeros((1, 5, 3)))), "no 'W_rec'"),
    (lambda: weight_balance(np.ones((3, 4))), "square"),
    (lambda: weight_balance(xr.DataArray(np.eye(3), dims=("unit", "source"))), "unit_pre"),
    (lambda: weight_balance(np.array([[0.0, np.nan], [1.0, 0.0]])), "NaN"),
    (lambda: weight_change(np.eye(3), np.eye(4)), "same network"),
    (lambda: weight_conservation([np.eye(2)]), "at least 2"),
    (lambda: weight_conservation([np.eye(2), np.eye(3)]), "different shapes"),
    (lambda: weight_conservation([np.ones((2, 2)), np.eye(2)]), "all equal"),
    # empty matrices: no 'Mean of empty slice' RuntimeWarnings, the argument and the fix instead
    (lambda: weight_balance(np.zeros((0, 0))), r"W_rec is empty \(shape \(0, 0\)\); expected a square .* at least one unit"),
    (lambda: weight_balance(xr.DataArray(np.zeros((0, 0)), dims=("unit", "unit_pre"))), r"W_rec is empty"),
    (lambda: weight_change(np.zeros((0, 0)), np.zeros((0, 0))), r"W_rec is empty"),
    (lambda: weight_spectrum(np.zeros((0, 0)), name="W"), r"W is empty \(shape \(0, 0\)\)"),
    (lambda: weight_conservation([np.zeros((0, 3)), np.zeros((0, 3))]), r"shape \(0, 3\); expected at least 2 weights"),
])
def test_bad_input(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


def test_a_stacked_ensemble_of_matrices_is_refused_with_the_fix():
    W = xr.DataArray(np.ones((2, 3, 3)), dims=("member", "unit", "unit_pre"))
    with pytest.raises(ValueError, match=r"without batch dims.*W_rec.isel\(member=0\)"):
        weight_balance(W)
    assert weight_balance(W.isel(member=0)).sizes["unit"] == 3
