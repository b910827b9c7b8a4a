"""Subsampled and noisy recordings: dynatools' lag-0 noise term against mrestimator (issue 20).

Ground truth is planted, not taken from either tool. Four kinds of units (``--units`` of each,
one trial of ``--steps`` steps):

- ``branching``: a branching process ``A_{t+1} ~ Poisson(m A_t + h)``, ``m = exp(-1/20)``
  (tau = 20 steps), ``h = 10``, of which 5% of the events are observed (``Bin(A_t, 0.05)``): one
  timescale; the noise fraction ``(1 - alpha) / (alpha / (1 - m^2) + 1 - alpha) = 0.644`` is the
  closed form (``Var A = E[A] / (1 - m^2)`` for Poisson offspring; thinning adds
  ``alpha (1 - alpha) E[A]`` at lag 0 only; cf. Wilting & Priesemann, Nat. Commun. 2018);
- ``ar1+noise``: AR(1), tau = 20, plus white measurement noise making half the variance;
- ``two``: a sum of two AR(1) processes with tau 2 and 40, equal variance (two timescales);
- ``ar1``: plain AR(1), tau = 20.

Methods, on the same data:

- **dynatools** (default, ``lag0="auto"``): ``dt.timescales(x)``, fit_lag 30;
- **dynatools, no lag-0 handling**: ``lag0="include", min_timescale=1e-6``: lag 0 is a data point
  and the rule that turns a sub-step component into lag-0 noise never fires (close to the
  behaviour before issue 20, whose numbers the issue reports);
- **mrestimator** (Spitzner et al., PLoS ONE 2021), if installed (``pip install mrestimator``;
  it is not a dependency of dynatools): per unit, ``mre.coefficients(method="ts", steps=(1,
  kmax))`` (multistep regression: lags from 1, lag 0 never used) and ``mre.fit`` with
  ``f_exponential`` (``b m^k``; the noise fraction is ``1 - b``), and on the two-timescale units
  also ``f_two_timescales`` and ``f_complex``; ``kmax = --mre-kmax`` (default 100 = 5 tau).

Printed: per kind and method, the fraction of units with one / two timescales, the median
relative error of the (slowest) timescale, the median noise fraction and the wall time. With
``--figure PATH`` it draws one branching unit's autocorrelation with both tools' fits.

Run: ``python benchmarks/bench_lag0.py [--units 50] [--steps 100000] [--figure docs/images/lag0_branching.png]``
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import platform
import time
import warnings

import numpy as np
from scipy.signal import lfilter

import dynatools as dt

TAU = 20.0
ALPHA = 0.05


def branching(rng: np.random.Generator, n_units: int, n_time: int, tau: float = TAU, h: float = 10.0,
              alpha: float = ALPHA) -> tuple[np.ndarray, float]:
    """Observed counts (time, unit) of binomially subsampled branching processes, and the
    closed-form noise fraction."""
    m = np.exp(-1.0 / tau)
    a = np.full(n_units, h / (1 - m))
    counts = np.empty((n_time, n_units), dtype=np.int64)
    for t in range(-int(10 * tau), n_time):
        a = rng.poisson(m * a + h)
        if t >= 0:
            counts[t] = a
    nu = (1 - alpha) / (alpha / (1 - m**2) + 1 - alpha)
    return rng.binomial(counts, alpha).astype(np.float64), nu


def ar1(rng: np.random.Generator, n_units: int, n_time: int, tau: float, noise_fraction: float = 0.0) -> np.ndarray:
    phi = np.exp(-1.0 / tau)
    eps = rng.standard_normal((n_time + 500, n_units)) * np.sqrt(1 - phi**2)
    x = lfilter([1.0], [1.0, -phi], eps, axis=0)[500:]
    if noise_fraction:
        x = x + np.sqrt(noise_fraction / (1 - noise_fraction)) * rng.standard_normal(x.shape)
    return x


def run_dynatools(x: np.ndarray, **kwargs) -> dict:
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = dt.timescales(x[None], **kwargs)
    wall = time.perf_counter() - t0
    return {"n": res.n_timescales.values, "tau": res.tau_net.values, "nu": res.noise_fraction.values,
            "wall": wall, "result": res}


def run_mrestimator(x: np.ndarray, kmax: int, fitfuncs: tuple[str, ...]) -> dict:
    """Per unit: coefficients from lag 1 and each fit; timescales in steps."""
    import mrestimator as mre

    mre.disable_progressbar()
    logging.getLogger("mrestimator").setLevel(logging.ERROR)
    out = {name: {"tau": [], "nu": [], "n": [], "popt": []} for name in fitfuncs}
    funcs = {"exponential": mre.f_exponential, "two_timescales": mre.f_two_timescales, "complex": mre.f_complex}
    t0 = time.perf_counter()
    walls = dict.fromkeys(fitfuncs, 0.0)
    for u in range(x.shape[1]):
        t1 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rk = mre.coefficients(x[:, u][None], method="ts", steps=(1, kmax), dt=1, dtunit="step", numboot=0)
            t_coef = time.perf_counter() - t1
            for name in fitfuncs:
                t2 = time.perf_counter()
                fit = mre.fit(rk, fitfunc=funcs[name], numboot=0)
                walls[name] += t_coef + time.perf_counter() - t2
                p = fit.popt
                if name == "exponential":
                    tau, nu, n = p[0], 1 - p[1], 1
                elif name == "two_timescales":
                    # mrestimator reports the timescale of the larger amplitude; we take the slower
                    # one, and count two timescales where both amplitudes are above 5% of the sum
                    tau1, a1, tau2, a2 = p[0], abs(p[1]), p[2], abs(p[3])
                    tau = max(tau1, tau2)
                    nu = 1 - (a1 + a2)
                    n = 2 if min(a1, a2) > 0.05 * (a1 + a2) else 1
                else:
                    tau, nu, n = fit.tau, np.nan, 1
                out[name]["tau"].append(tau)
                out[name]["nu"].append(nu)
                out[name]["n"].append(n)
                out[name]["popt"].append(p)
    for name in fitfuncs:
        out[name] = {k: np.asarray(v) for k, v in out[name].items()}
        out[name]["wall"] = walls[name]
    out["_total"] = time.perf_counter() - t0
    return out


def summary(label: str, method: str, n: np.ndarray, tau: np.ndarray, nu: np.ndarray, wall: float, true_tau: float,
            true_nu: float | None) -> None:
    err = np.nanmedian(np.abs(tau / true_tau - 1))
    nu_text = f"{np.nanmedian(nu):6.3f}" if np.isfinite(nu).any() else "     -"
    planted = f"{true_nu:.3f}" if true_nu is not None else "-"
    print(f"| {label} | {method} | {np.mean(n == 1):.0%} | {np.mean(n == 2):.0%} | {100 * err:.1f}% | "
          f"{nu_text} ({planted}) | {wall:.2f} s |")


def figure(path: str, x: np.ndarray, nu: float, kmax: int) -> None:
    """One branching unit: AC/AC[0], dynatools' fits (default and without lag-0 handling) and
    mrestimator's exponential (from lag 1)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    unit = x[:, :1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ours = dt.timescales(unit[None], max_lag=kmax).isel(unit=0)
        plain = dt.timescales(unit[None], max_lag=kmax, lag0="include", min_timescale=1e-6).isel(unit=0)
    ac = ours.autocorrelation.values
    lag = np.arange(ac.size)
    t = np.linspace(0, kmax, 1000)
    have_mre = True
    try:
        fits = run_mrestimator(unit, kmax, ("exponential",))
        tau_m, b_m = fits["exponential"]["popt"][0][:2]
    except ImportError:
        have_mre = False
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, log in zip(axes, (False, True)):
        ax.plot(lag, np.where(ac > 0, ac, np.nan) if log else ac, "o", ms=3, color="0.4", label="AC / AC[0] (data)")
        a, tau = float(ours.amplitude_single), float(ours.tau_single)
        ax.plot(t[t >= 1], a * np.exp(-t[t >= 1] / tau), "-", lw=2, color="#1f77b4",
                label=f"dynatools (default): τ = {tau:.1f}, lag-0 noise {float(ours.noise_fraction):.2f}")
        ax.plot([0], [1.0], "s", ms=7, mfc="none", color="#1f77b4")
        ap, t1, t2, c = (float(plain[k]) for k in ("amplitude_double", "tau_fast", "tau_slow", "weight_fast"))
        ax.plot(t, ap * (c * np.exp(-t / t1) + (1 - c) * np.exp(-t / t2)), "--", lw=1.3, color="#d62728",
                label=f"no lag-0 handling: 'double', a 'fast timescale' of {t1:.2f} steps\n(the lag-0 drop), τ_slow = {t2:.1f}")
        if have_mre:
            ax.plot(t[t >= 1], b_m * np.exp(-t[t >= 1] / tau_m), ":", lw=2, color="#2ca02c",
                    label=f"mrestimator (from lag 1): τ = {tau_m:.1f}, 1 - b = {1 - b_m:.2f}")
        ax.axvspan(0, 30, color="0.93", lw=0, zorder=0)
        ax.set_xlabel("lag (steps)")
        if log:
            ax.set_yscale("log")
            ax.set_ylim(max(1e-3, np.nanmin(np.where(ac > 0, ac, np.nan))), 1.3)
        else:
            ax.set_ylim(-0.05, 1.05)
    axes[0].set_ylabel("autocorrelation")
    axes[0].legend(fontsize=7.5, frameon=False, loc="upper right")
    fig.suptitle(f"Branching process, τ = {TAU:g} steps, {ALPHA:.0%} of events observed "
                 f"(true noise fraction {nu:.3f}); grey: lags dynatools fits (0-30). "
                 f"Square: lag 0, fitted exactly by the noise term", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"figure: {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--units", type=int, default=50)
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--mre-kmax", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--figure", default=None)
    args = ap.parse_args()
    print(f"python {platform.python_version()}, numpy {np.__version__}, {os.cpu_count()} CPUs, "
          f"{args.units} units x {args.steps} steps per kind")
    try:
        import mrestimator

        have_mre = True
        print(f"mrestimator {getattr(mrestimator, '__version__', '?')}")
    except ImportError:
        have_mre = False
        print("mrestimator is not installed (pip install mrestimator): its rows are skipped")
    rng = np.random.default_rng(args.seed)
    U, T = args.units, args.steps
    run_dynatools(ar1(rng, 4, 2000, 5.0))          # warm-up (imports, thread pool)
    xb, nu_b = branching(rng, U, T)
    kinds = [
        ("branching 5%", xb, TAU, nu_b, ("exponential",)),
        ("AR(1) + noise 0.5", ar1(rng, U, T, TAU, 0.5), TAU, 0.5, ("exponential",)),
        ("two (2, 40)", (ar1(rng, U, T, 2.0) + ar1(rng, U, T, 40.0)) / np.sqrt(2), 40.0, 0.0,
         ("exponential", "two_timescales", "complex")),
        ("AR(1)", ar1(rng, U, T, TAU), TAU, 0.0, ("exponential",)),
    ]
    print("| data | method | 1 timescale | 2 timescales | median error of τ (slowest) | median noise fraction (planted) | wall |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for label, x, tau, nu, mre_fits in kinds:
        r = run_dynatools(x)
        summary(label, "dynatools (default)", r["n"], r["tau"], r["nu"], r["wall"], tau, nu)
        status = r["result"].status.values
        lag0 = np.mean(status == "lag0_noise")
        r0 = run_dynatools(x, lag0="include", min_timescale=1e-6)
        sub = np.mean((r0["n"] == 2) & (r0["result"].tau_fast.values < 1))
        summary(label, "dynatools, no lag-0 handling", r0["n"], r0["tau"], r0["nu"], r0["wall"], tau, nu)
        if have_mre:
            m = run_mrestimator(x, args.mre_kmax, mre_fits)
            for name in mre_fits:
                summary(label, f"mrestimator {name}", m[name]["n"], m[name]["tau"], m[name]["nu"], m[name]["wall"],
                        tau, nu)
        print(f"|   | (status lag0_noise: {lag0:.0%}; without lag-0 handling, double with τ_fast < 1 step: {sub:.0%}) | | | | | |")
    if args.figure:
        figure(args.figure, xb, nu_b, args.mre_kmax)


if __name__ == "__main__":
    main()
