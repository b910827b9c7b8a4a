"""Timescale analysis: dynatools against a straightforward baseline, same data, one process.

Data: float32 activity of 500 units x 10 trials x 1e5 steps (2 GB): half AR(1) units (one
timescale), half sums of two AR(1) processes (two timescales).

- ours: ``dynatools.autocorrelation(max_lag=200)`` + ``dynatools.fit_timescales(fit_lag=30)``
  (default mode: three starts for the double fit, safeguards).
- baseline: what a user writes following the paper and the authors' code: for each unit, an FFT
  of each trial zero-padded to 2T (numpy), |F|^2, inverse FFT, divide by T - k, mean over
  trials; then ``scipy.optimize.curve_fit`` of the single and the double exponential (bounds as
  the paper's, default start) and AIC.

Prints both times, the ratio, our extra peak memory (resident set size above the input), and how
far the two results agree.

Run: ``python benchmarks/bench_timescales.py [--units 500] [--trials 10] [--steps 100000]``
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time
import warnings

import numpy as np
from scipy.optimize import curve_fit
from scipy.signal import lfilter

import dynatools as dt


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_data(n_units: int, n_trials: int, n_time: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.empty((n_trials, n_time, n_units), dtype=np.float32)
    for u in range(n_units):
        taus = [rng.uniform(2, 10)] if u % 2 == 0 else [rng.uniform(1.5, 3), rng.uniform(15, 40)]
        series = np.zeros((n_trials, n_time))
        for tau in taus:
            phi = np.exp(-1 / tau)
            eps = rng.standard_normal((n_trials, n_time + 500)) * np.sqrt(1 - phi**2)
            series += lfilter([1.0], [1.0, -phi], eps, axis=1)[:, 500:]
        x[:, :, u] = series
    return x


def single_exp(t, a, tau):
    return a * np.exp(-t / tau)


def double_exp(t, a, t1, t2, c):
    return a * (c * np.exp(-t / t1) + (1 - c) * np.exp(-t / t2))


def baseline(x: np.ndarray, max_lag: int, fit_lag: int) -> np.ndarray:
    """Per-unit FFT padded to 2T and per-unit curve_fit, as a user would write it."""
    n_trials, T, n_units = x.shape
    lags = np.arange(fit_lag + 1, dtype=float)
    tau_net = np.full(n_units, np.nan)
    for u in range(n_units):
        data = x[:, :, u].astype(np.float64)
        data = data - data.mean(axis=1, keepdims=True)
        f = np.fft.fft(np.concatenate([data, np.zeros_like(data)], axis=1))
        ac = np.real(np.fft.ifft(np.abs(f) ** 2))[:, : max_lag + 1] / (T - np.arange(max_lag + 1))
        ac = ac.mean(axis=0)
        y = ac[: fit_lag + 1] / ac[0]
        aic = []
        taus = []
        for fun, lo, hi, k in ((single_exp, (0, 0), (1, 100), 2), (double_exp, (0, 0, 0, 0), (1, 100, 100, 1), 4)):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    p, _ = curve_fit(fun, lags, y, bounds=(lo, hi), maxfev=2000)
                rss = ((fun(lags, *p) - y) ** 2).sum()
                aic.append(2 * k + len(y) * np.log(rss / len(y)))
                taus.append(p[1] if k == 2 else max(p[1], p[2]))
            except RuntimeError:
                aic.append(np.inf)
                taus.append(np.nan)
        if aic[0] != aic[1]:
            tau_net[u] = taus[int(np.argmin(aic))]
    return tau_net


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--units", type=int, default=500)
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--max-lag", type=int, default=200)
    ap.add_argument("--fit-lag", type=int, default=30)
    args = ap.parse_args()

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}, numpy {np.__version__}")
    x = make_data(args.units, args.trials, args.steps)
    print(f"data: float32 (trial, time, unit) = {x.shape}, {x.nbytes / 2**30:.2f} GiB")
    base_rss = rss_mb()

    t0 = time.perf_counter()
    ac = dt.autocorrelation(x, max_lag=args.max_lag)
    t1 = time.perf_counter()
    res = dt.fit_timescales(ac, fit_lag=args.fit_lag)
    t2 = time.perf_counter()
    ours = t2 - t0
    extra = peak_rss_mb() - base_rss
    print(f"ours:     {ours:7.2f} s  (autocorrelation {t1 - t0:.2f} s, fits {t2 - t1:.2f} s); "
          f"peak memory above the input {max(extra, 0):.0f} MiB = {max(extra, 0) / (x.nbytes / 2**20):.2f} x input")

    t0 = time.perf_counter()
    tau_base = baseline(x, args.max_lag, args.fit_lag)
    base = time.perf_counter() - t0
    print(f"baseline: {base:7.2f} s  (per-unit FFT padded to 2T + per-unit curve_fit)")
    print(f"speed-up: {base / ours:.1f}x")
    single = (res.selected_model.values == "single") & np.isfinite(tau_base)
    print(f"agreement: median |tau_net ours / baseline - 1| on units where ours selects one timescale: "
          f"{np.nanmedian(np.abs(res.tau_net.values[single] / tau_base[single] - 1)):.2e}")


if __name__ == "__main__":
    main()
