"""Batched bounded least squares against SciPy on problems with known solutions."""

from __future__ import annotations

import numpy as np
from scipy.optimize import least_squares, lsq_linear

from dynatools._lsq import least_squares_batched


def test_bounded_linear_problems_match_lsq_linear():
    rng = np.random.default_rng(0)
    B, n, p = 50, 12, 4
    A = rng.standard_normal((B, n, p))
    b = rng.standard_normal((B, n)) * 3
    lo, hi = -0.5 * np.ones(p), 0.5 * np.ones(p)  # many solutions have active bounds

    def fun(x, idx):
        return np.einsum("bnp,bp->bn", A[idx], x) - b[idx], A[idx]

    res = least_squares_batched(fun, np.zeros((B, p)), lo, hi)
    assert res.converged.all()
    for i in range(B):
        expected = lsq_linear(A[i], b[i], bounds=(lo, hi), tol=1e-14).x
        np.testing.assert_allclose(res.x[i], expected, atol=1e-7)


def test_rosenbrock_residuals_reach_the_known_minimum_and_a_bound():
    # r = (10 (y - x^2), 1 - x): unconstrained minimum (1, 1); with x <= 0.5 the minimum is (0.5, 0.25)
    def fun(z, idx):
        x, y = z[:, 0], z[:, 1]
        r = np.stack([10 * (y - x**2), 1 - x], axis=1)
        J = np.zeros((z.shape[0], 2, 2))
        J[:, 0, 0], J[:, 0, 1], J[:, 1, 0] = -20 * x, 10.0, -1.0
        return r, J

    x0 = np.array([[-1.2, 1.0], [-1.2, 1.0]])
    lo = np.array([[-5.0, -5.0], [-5.0, -5.0]])
    hi = np.array([[5.0, 5.0], [0.5, 5.0]])
    res = least_squares_batched(fun, x0, lo, hi)
    np.testing.assert_allclose(res.x[0], [1.0, 1.0], atol=1e-8)
    np.testing.assert_allclose(res.x[1], [0.5, 0.25], atol=1e-8)
    scipy_res = least_squares(lambda z: [10 * (z[1] - z[0] ** 2), 1 - z[0]], [-1.2, 1.0], bounds=([-5, -5], [0.5, 5]), xtol=1e-15)
    np.testing.assert_allclose(res.x[1], scipy_res.x, atol=1e-7)
