"""Synthetic processes with known autocorrelations, shared by the tests (not a test module).

Import as ``from processes import ar1`` (importing from ``conftest`` depends on which conftest
pytest loaded last)."""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter


def ar1(rng: np.random.Generator, tau: np.ndarray, n_trials: int, n_time: int, burn_in: int = 500) -> np.ndarray:
    """Unit-variance stationary AR(1) units, phi = exp(-1/tau); returns (trial, time, unit) float32.

    The autocorrelation of each unit is exactly exp(-k / tau) (closed form).
    """
    tau = np.atleast_1d(np.asarray(tau, dtype=np.float64))
    out = np.empty((n_trials, n_time, tau.size), dtype=np.float32)
    for u, tu in enumerate(tau):
        phi = np.exp(-1.0 / tu)
        eps = rng.standard_normal((n_trials, n_time + burn_in)) * np.sqrt(1 - phi**2)
        out[:, :, u] = lfilter([1.0], [1.0, -phi], eps, axis=1)[:, burn_in:]
    return out
