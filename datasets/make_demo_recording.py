"""Regenerate ``dynatools/data/demo_timescales.nc`` (shipped in the package): synthetic units with known autocorrelation timescales.

Run from the repository root::

    python datasets/make_demo_recording.py

Units 0..23 are AR(1) processes ``x_t = phi x_{t-1} + sqrt(1 - phi^2) eps_t`` with
``phi = exp(-1/tau)``, whose autocorrelation is exactly ``exp(-k/tau)`` (one timescale).
Units 24..47 are sums of two independent AR(1) processes with timescales ``tau_fast`` and
``tau_slow`` and variances ``w`` and ``1 - w``, whose autocorrelation is exactly
``w exp(-k/tau_fast) + (1 - w) exp(-k/tau_slow)`` (two timescales). The true parameters are stored
as per-unit coordinates (``true_tau_fast``, ``true_tau_slow``, ``true_weight_fast``,
``true_n_timescales``, ``true_tau_net``) and the generator's settings as attributes.
Activity is stored as float32 with 3 decimal digits kept (netCDF quantisation + zlib) so the file
stays under 5 MB.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.signal import lfilter

import dynatools as dt

SEED = 20241123
N_TRIALS, N_TIME, BURN_IN = 4, 10_000, 1_000
N_SINGLE, N_DOUBLE = 24, 24


def ar1(rng: np.random.Generator, tau: float, shape: tuple[int, int]) -> np.ndarray:
    """Stationary unit-variance AR(1) series along the last axis (after a burn-in)."""
    phi = np.exp(-1.0 / tau)
    eps = rng.standard_normal((shape[0], shape[1] + BURN_IN)) * np.sqrt(1 - phi**2)
    return lfilter([1.0], [1.0, -phi], eps, axis=-1)[:, BURN_IN:]


def make(seed: int = SEED) -> "xr.Dataset":  # noqa: F821
    rng = np.random.default_rng(seed)
    n_units = N_SINGLE + N_DOUBLE
    activity = np.empty((N_TRIALS, N_TIME, n_units))
    tau_fast = np.empty(n_units)
    tau_slow = np.full(n_units, np.nan)
    weight = np.ones(n_units)
    for u in range(N_SINGLE):
        tau_fast[u] = rng.uniform(2.0, 15.0)
        activity[:, :, u] = ar1(rng, tau_fast[u], (N_TRIALS, N_TIME))
    for u in range(N_SINGLE, n_units):
        tau_fast[u] = rng.uniform(1.5, 3.0)
        tau_slow[u] = rng.uniform(15.0, 40.0)
        weight[u] = rng.uniform(0.3, 0.7)
        activity[:, :, u] = np.sqrt(weight[u]) * ar1(rng, tau_fast[u], (N_TRIALS, N_TIME)) + np.sqrt(
            1 - weight[u]
        ) * ar1(rng, tau_slow[u], (N_TRIALS, N_TIME))
    n_ts = np.where(np.isnan(tau_slow), 1, 2)
    rec = dt.from_array(
        activity.astype(np.float32),
        dt=1.0,
        model="synthetic AR(1) and sums of two AR(1) processes",
        task="none",
        seed=seed,
        generator="datasets/make_demo_recording.py",
        description=(
            "Units 0-23: one timescale, AC = exp(-k/true_tau_fast). Units 24-47: two timescales, "
            "AC = w exp(-k/true_tau_fast) + (1-w) exp(-k/true_tau_slow), w = true_weight_fast."
        ),
    )
    return rec.assign_coords(
        true_tau_fast=("unit", tau_fast),
        true_tau_slow=("unit", tau_slow),
        true_weight_fast=("unit", weight),
        true_n_timescales=("unit", n_ts),
        true_tau_net=("unit", np.where(n_ts == 2, tau_slow, tau_fast)),
    )


if __name__ == "__main__":
    out = Path(__file__).resolve().parent.parent / "dynatools" / "data" / "demo_timescales.nc"
    rec = make()
    dt.save_recording(
        rec, out, encoding={"activity": {"zlib": True, "complevel": 9, "least_significant_digit": 3}}
    )
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")
