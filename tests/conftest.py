"""Shared fixtures: synthetic processes with known autocorrelations."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
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


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


def pytest_collection_modifyitems(config, items):
    """``long`` tests (tens of minutes on a CPU) run only with DYNATOOLS_LONG_TESTS=1."""
    if os.environ.get("DYNATOOLS_LONG_TESTS") == "1":
        return
    skip = pytest.mark.skip(reason="long test: set DYNATOOLS_LONG_TESTS=1 to run it")
    for item in items:
        if "long" in item.keywords:
            item.add_marker(skip)


class Tiny(torch.nn.Module):
    """A 3-unit linear RNN with the model protocol of DESIGN.md, written without trainers (used by
    the convention and layering tests; its source is also run where trainers cannot be imported)."""

    n_units = 3

    def __init__(self):
        super().__init__()
        self.W_rec = torch.nn.Parameter(torch.tensor([[0.5, 0.2, 0.0], [-0.3, 0.4, 0.1], [0.2, 0.0, 0.6]],
                                                     dtype=torch.float64))
        self.tau = torch.nn.Parameter(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))

    def unit_axes(self):
        return {"W_rec": (0, 1), "tau": (0,)}

    def effective_tau(self):
        return self.tau.clamp(min=1.0)

    def initial_state(self, batch, generator=None):
        return torch.ones(batch, 3, dtype=torch.float64)

    def step(self, h, u):
        return h @ self.W_rec.T + (0.0 if u is None else u)

    def forward(self, u, h0=None):
        h = self.initial_state(u.shape[0]) if h0 is None else h0
        out = []
        for t in range(u.shape[1]):
            h = self.step(h, u[:, t])
            out.append(h)
        return torch.stack(out, 1)

    def readout(self, h, heads=None):
        return h.sum(-1, keepdim=True)
