"""dynatools.weight_conservation on a modular recording (004 Fig. 5c): the W^R and W^FF blocks are
cut out of W_rec by the ``module`` coordinate and compared against a direct computation written
here from 004's definition."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import dynatools as dt
from dynatools.connectivity import weight_conservation


def _modular_W(rng: np.random.Generator, n_modules: int, size: int, R=None, F=None) -> np.ndarray:
    """Block matrix of 004 Eq. 4: W^R_m on the diagonal (zero diagonal), W^FF_m in block (m, m-1)."""
    W = np.zeros((n_modules * size, n_modules * size))
    for m in range(n_modules):
        r = rng.normal(size=(size, size)) if R is None else R
        r = r.copy()
        np.fill_diagonal(r, 0.0)
        W[m * size:(m + 1) * size, m * size:(m + 1) * size] = r
        if m >= 1:
            W[m * size:(m + 1) * size, (m - 1) * size:m * size] = rng.normal(size=(size, size)) if F is None else F
    return W


def _recording(W: np.ndarray, module) -> xr.Dataset:
    n = W.shape[0]
    return dt.from_array(np.zeros((1, 3, n)), W_rec=W, module=np.asarray(module))


def _direct(blocks_prev: list[float], blocks_next: list[float]) -> float:
    """004: W_bar = (W - mean W) / std W per module; variance of W_bar^m - W_bar^(m-1) over the
    corresponding (i, j). Plain Python, population moments."""
    def norm(values):
        n = len(values)
        mean = sum(values) / n
        sd = (sum((v - mean) ** 2 for v in values) / n) ** 0.5
        return [(v - mean) / sd for v in values]

    a, b = norm(blocks_prev), norm(blocks_next)
    d = [y - x for x, y in zip(a, b)]
    mean = sum(d) / len(d)
    return sum((v - mean) ** 2 for v in d) / len(d)


def _entries(W, rows, cols, skip_diagonal):
    return [float(W[i, j]) for a, i in enumerate(rows) for b, j in enumerate(cols)
            if not (skip_diagonal and a == b)]


def test_recording_blocks_equal_the_direct_computation_from_004():
    rng = np.random.default_rng(0)
    n_mod, size = 4, 3
    W = _modular_W(rng, n_mod, size)
    res = weight_conservation(_recording(W, np.repeat(np.arange(n_mod), size)))
    units = [list(range(m * size, (m + 1) * size)) for m in range(n_mod)]
    want_R = [_direct(_entries(W, units[m - 1], units[m - 1], True), _entries(W, units[m], units[m], True))
              for m in range(1, n_mod)]
    want_FF = [_direct(_entries(W, units[m - 1], units[m - 2], False), _entries(W, units[m], units[m - 1], False))
               for m in range(2, n_mod)]
    assert list(res.module.values) == [1, 2, 3]
    np.testing.assert_allclose(res.W_R.values, want_R, rtol=1e-12)
    assert np.isnan(res.W_FF.values[0])
    np.testing.assert_allclose(res.W_FF.values[1:], want_FF, rtol=1e-12)
    assert res.attrs["mean_W_R"] == pytest.approx(np.mean(want_R))
    assert res.attrs["mean_W_FF"] == pytest.approx(np.mean(want_FF))
    assert res.attrs["module_size"] == size and res.attrs["exclude_self"] == 1
    # with the diagonal: the zero self-weights count as weights
    with_diag = weight_conservation(_recording(W, np.repeat(np.arange(n_mod), size)), exclude_self=False)
    want = [_direct(_entries(W, units[m - 1], units[m - 1], False), _entries(W, units[m], units[m], False))
            for m in range(1, n_mod)]
    np.testing.assert_allclose(with_diag.W_R.values, want, rtol=1e-12)


def test_exact_copies_are_perfectly_conserved():
    rng = np.random.default_rng(1)
    R, F = rng.normal(size=(4, 4)), rng.normal(size=(4, 4))
    W = _modular_W(rng, 5, 4, R=R, F=F)
    res = weight_conservation(_recording(W, np.repeat(np.arange(5), 4)))
    np.testing.assert_allclose(res.W_R.values, 0.0, atol=1e-24)
    np.testing.assert_allclose(res.W_FF.values[1:], 0.0, atol=1e-24)
    # an affine copy (scaled and shifted block) is conserved too: the normalisation removes it
    W2 = W.copy()
    W2[8:12, 8:12] = 3.0 * W[4:8, 4:8] + 0.5 * (1 - np.eye(4))
    assert weight_conservation(_recording(W2, np.repeat(np.arange(5), 4)), blocks=("W_R",)).W_R.values[1] \
        == pytest.approx(0.0, abs=1e-24)


def test_modules_are_found_by_their_labels_not_their_position():
    rng = np.random.default_rng(2)
    W = _modular_W(rng, 3, 3)
    base = weight_conservation(_recording(W, np.repeat(np.arange(3), 3)))
    # the same network with its modules stored in the order 2, 0, 1 (units within a module in order)
    order = np.concatenate([np.arange(6, 9), np.arange(0, 3), np.arange(3, 6)])
    shuffled = _recording(W[np.ix_(order, order)], np.repeat([2, 0, 1], 3))
    res = weight_conservation(shuffled)
    np.testing.assert_allclose(res.W_R.values, base.W_R.values, rtol=1e-12)
    np.testing.assert_allclose(res.W_FF.values, base.W_FF.values, rtol=1e-12, equal_nan=True)
    # labels need not start at 0: the later module's label labels each change
    relabelled = weight_conservation(_recording(W, np.repeat([5, 6, 7], 3)))
    assert list(relabelled.module.values) == [6, 7]


def test_blocks_option_and_two_modules():
    rng = np.random.default_rng(3)
    W = _modular_W(rng, 2, 3)
    res = weight_conservation(_recording(W, np.repeat([0, 1], 3)), blocks=("W_R",))
    assert list(res.data_vars) == ["W_R"] and res.sizes["module"] == 1
    assert "W_FF" not in weight_conservation(_recording(W, [0, 0, 0, 1, 1, 1]), blocks="W_R")


@pytest.mark.parametrize("make, match", [
    (lambda W: dt.from_array(np.zeros((1, 3, 6)), W_rec=W), "needs a 'module' coordinate"),
    (lambda W: _recording(W, [0, 0, 0, 0, 1, 1]), "unequal sizes"),
    (lambda W: _recording(W, [0] * 6), "1 module"),
    (lambda W: _recording(W, [0, 0, 0, 1, 1, 1]), r"W_FF needs at least 3.*blocks=\('W_R',\)"),
    (lambda W: dt.from_array(np.zeros((1, 3, 6)), module=[0, 0, 1, 1, 2, 2]), "no 'W_rec' variable"),
])
def test_refusals_name_the_problem(make, match):
    W = _modular_W(np.random.default_rng(4), 2, 3)
    with pytest.raises(ValueError, match=match):
        weight_conservation(make(W))


def test_unknown_block_name_is_refused():
    W = _modular_W(np.random.default_rng(5), 3, 2)
    with pytest.raises(ValueError, match="choose one or both"):
        weight_conservation(_recording(W, np.repeat([0, 1, 2], 2)), blocks=("W_in",))
