"""Batched bound-constrained nonlinear least squares (projected Levenberg-Marquardt).

Solves many small independent problems ``min_x 0.5 * ||r_b(x_b)||^2`` subject to
``lower <= x_b <= upper`` at once, with numpy arrays of shape ``(batch, ...)``: every iteration is a
handful of vectorised operations on all problems together, so fitting thousands of units costs
about as much as fitting a few.

Algorithm (for each problem independently):

1. Gradient ``g = J^T r`` and Gauss-Newton matrix ``H = J^T J`` at the current point.
2. Variables at a bound whose gradient points out of the box are held fixed this iteration (the
   active set); the others take the Levenberg-Marquardt step
   ``(H + lam * diag(H)) dx = -g`` (Marquardt's scaling makes it invariant to parameter units).
3. A variable whose step would leave the box stops at 99.5% of the way to its bound (as the
   step-back of SciPy's trust-region-reflective method), and is snapped onto the bound once
   within 1e-10 of its range, so it can become active. Stepping straight onto a bound, as plain
   projection does, can trap a parameter where the model is flat (tau -> 0 in exp(-t/tau)). It is accepted if the cost decreases; then ``lam`` shrinks,
   else it grows and the step is retried next iteration.
4. A problem stops when the actual change and the predicted decrease of the cost are both below
   ``ftol`` (relative) for a nearly undamped step, accepted or not (MINPACK's test: the cost
   cannot be lowered further in floating point), or an accepted step is below ``xtol``, or the
   projected gradient vanishes, or ``lam`` explodes (no descent possible).

All problems iterate in one loop; per iteration the work is a few batched matrix products
(``J^T J`` and ``J^T r`` as ``matmul``) and one stacked ``p x p`` solve over the problems still
running.

The result is a Karush-Kuhn-Tucker point of the bounded problem, as for SciPy's ``trf`` method used
by :func:`scipy.optimize.curve_fit` with bounds; from the same start the two agree to the solver
tolerance on well-posed problems (tested).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

ResidualFn = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class BatchedFit:
    """Result of :func:`least_squares_batched`; arrays are over the batch."""

    x: np.ndarray  #: (batch, p) solution
    cost: np.ndarray  #: (batch,) 0.5 * sum of squared residuals at x
    converged: np.ndarray  #: (batch,) bool
    n_iter: np.ndarray  #: (batch,) iterations used


def least_squares_batched(
    fun: ResidualFn,
    x0: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    *,
    max_iter: int = 500,
    ftol: float = 1e-12,
    xtol: float = 1e-10,
    gtol: float = 1e-14,
) -> BatchedFit:
    """Minimise ``0.5 * ||r(x)||^2`` within bounds for a batch of problems.

    Parameters
    ----------
    fun : callable
        ``fun(x, idx) -> (r, J)`` for the problems ``idx`` (an index array into the batch) at
        points ``x`` of shape ``(len(idx), p)``: residuals ``r`` of shape ``(len(idx), n)`` and
        Jacobian ``J = dr/dx`` of shape ``(len(idx), n, p)``.
    x0 : ndarray, shape (batch, p)
        Starting points (projected onto the bounds).
    lower, upper : ndarray, broadcastable to (batch, p)
        Bounds; ``lower < upper``.
    max_iter : int, default=500
        Iterations per problem.
    ftol, xtol, gtol : float
        Stop when both the actual and the predicted relative decrease of the cost are below
        ``ftol`` (MINPACK's test: the cost cannot be lowered further in floating point), or an
        accepted step changes every variable by less than ``xtol`` (relative), or the largest
        scaled projected gradient is below ``gtol``.

    Returns
    -------
    BatchedFit
    """
    x = np.array(x0, dtype=np.float64)
    batch, p = x.shape
    lower = np.broadcast_to(np.asarray(lower, dtype=np.float64), x.shape)
    upper = np.broadcast_to(np.asarray(upper, dtype=np.float64), x.shape)
    x = np.clip(x, lower, upper)
    r, J = fun(x, np.arange(batch))
    cost = 0.5 * _rowdot(r, r)
    lam = np.full(batch, 0.1, dtype=np.float64)
    running = np.isfinite(cost)
    converged = np.zeros(batch, dtype=bool)
    n_iter = np.zeros(batch, dtype=np.int64)
    diag = np.arange(p)
    span = np.maximum(upper - lower, 1e-300)

    for _ in range(max_iter):
        idx = np.flatnonzero(running)
        if idx.size == 0:
            break
        xi, ri, Ji, lami, ci = x[idx], r[idx], J[idx], lam[idx], cost[idx]
        lo, hi = lower[idx], upper[idx]
        Jt = Ji.transpose(0, 2, 1)
        g = (Jt @ ri[:, :, None])[..., 0]
        H = Jt @ Ji
        tol_b = 1e-10 * span[idx]
        fixed = ((xi <= lo + tol_b) & (g > 0)) | ((xi >= hi - tol_b) & (g < 0))
        pg = np.where(fixed, 0.0, g)
        dH = H[:, diag, diag]
        d = np.maximum(dH, 1e-12 * (1.0 + np.abs(dH).max(axis=1, keepdims=True)))
        # converged by projected gradient (scaled by the curvature of each variable)
        small_grad = np.max(np.abs(pg) / np.sqrt(d), axis=1) <= gtol * np.sqrt(np.maximum(2 * ci, 1e-300))
        free = ~fixed
        A = H * (free[:, :, None] & free[:, None, :])
        A[:, diag, diag] = np.where(fixed, 1.0, dH + lami[:, None] * d)
        try:
            step = np.linalg.solve(A, -pg[..., None])[..., 0]
        except np.linalg.LinAlgError:  # pragma: no cover - singular only with lam ~ 0
            step = np.stack([np.linalg.lstsq(a, -b, rcond=None)[0] for a, b in zip(A, pg)])
        x_new, limited = _step_back(xi, xi + step, lo, hi, tol_b)
        r_new, J_new = fun(x_new, idx)
        cost_new = 0.5 * _rowdot(r_new, r_new)
        ok = np.isfinite(cost_new) & (cost_new <= ci)
        dx = np.abs(x_new - xi)
        # a step cut short by a bound is not a sign of convergence: the variable is still
        # on its way to the bound, where it becomes active
        small_step = np.all(dx <= xtol * (xtol + np.abs(xi)), axis=1) & ~limited
        pred = -_rowdot(pg, step) - 0.5 * _rowdot(step, (H @ step[:, :, None])[..., 0])
        # MINPACK's test, only trusted for nearly undamped steps (a damped step predicts too
        # little progress); whether or not the step was accepted: a rejected step whose actual
        # and predicted changes are at the rounding level of the cost means no progress is left
        small_df = (np.abs(ci - cost_new) <= ftol * ci) & (pred <= ftol * ci) & (lami <= 1e-3)
        n_iter[idx] += 1

        acc = idx[ok]
        x[acc], r[acc], J[acc] = x_new[ok], r_new[ok], J_new[ok]
        cost[acc] = cost_new[ok]
        lam[idx] = np.where(ok, np.maximum(lami / 3.0, 1e-15), np.minimum(lami * 4.0, 1e16))

        done = (ok & small_step) | small_df | small_grad | (cost_new == 0)
        stuck = ~ok & (lami >= 1e15)
        converged[idx[done | stuck]] = True
        running[idx[done | stuck]] = False
    return BatchedFit(x=x, cost=cost, converged=converged, n_iter=n_iter)


def _rowdot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise dot products of two (batch, n) arrays."""
    return (a[:, None, :] @ b[:, :, None])[:, 0, 0]


def _step_back(x: np.ndarray, x_new: np.ndarray, lo: np.ndarray, hi: np.ndarray, tol: np.ndarray):
    """Keep ``x_new`` in the box: crossing variables go 99.5% of the way to the bound.

    Returns the new point and, per problem, whether any variable was cut short.
    """
    below = x_new < lo
    above = x_new > hi
    x_new = np.where(below, x + 0.995 * (lo - x), x_new)
    x_new = np.where(above, x + 0.995 * (hi - x), x_new)
    x_new = np.where(x_new - lo <= tol, lo, x_new)
    x_new = np.where(hi - x_new <= tol, hi, x_new)
    return x_new, (below | above).any(axis=1)
