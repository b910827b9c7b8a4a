"""Batched single/double exponential fits and model selection (no labels).

Works on a 2-D array ``y`` of normalised autocorrelations ``(batch, n_lags)`` over lag values
``t``; see :func:`dynatools.timescales.fit_timescales` for the public, labeled interface and the
documentation of every choice.
"""

from __future__ import annotations

import numpy as np

from dynatools._lsq import BatchedFit, least_squares_batched

#: Status codes -> names stored in the result's ``status`` variable.
STATUS = (
    "ok",  # selected model fitted, nothing to report
    "constant",  # zero-variance (or all-NaN) autocorrelation: no fit, NaN results
    "double_negligible_weight",  # criterion preferred the double model; one weight < min_weight
    "double_at_bound",  # criterion preferred the double model; a timescale sits at a bound
    "double_duplicate",  # criterion preferred the double model; tau_slow / tau_fast < min_ratio
    "double_within_noise",  # criterion preferred the double model; it differs from the single fit by < noise_z standard errors
    "double_failed",  # the double fit failed; single model kept
    "single_failed",  # the single fit failed; double model used
    "tau_at_bound",  # tau_net of the selected model sits at a bound of the fit
    "tie",  # reference mode: equal criteria, tau_net is NaN (as in the authors' code)
    "failed",  # both fits failed: NaN results
    "lag0_noise",  # the drop at lag 0 is observation noise: single model with a lag-0 noise term
)
FIELDS = (
    "tau_single",
    "amplitude_single",
    "tau_fast",
    "tau_slow",
    "weight_fast",
    "amplitude_double",
    "criterion_single",
    "criterion_double",
    "rss_single",
    "rss_double",
    "tau_net",
    "r2",
    "n_timescales",
    "noise_fraction",
    "noise_term",
    "status",
)
_CODE = {name: i for i, name in enumerate(STATUS)}
#: A timescale counts as at the upper bound above ``(1 - AT_BOUND_RTOL) * tau_max``, and at the
#: lower bound (effectively zero) below ``AT_BOUND_RTOL`` lag steps.
AT_BOUND_RTOL = 1e-3


def _at_bound(tau: np.ndarray, tau_max: float, spacing: float) -> np.ndarray:
    """True where a timescale sits at its lower (about 0) or upper (``tau_max``) bound."""
    return (tau <= AT_BOUND_RTOL * spacing) | (tau >= (1 - AT_BOUND_RTOL) * tau_max)


def single_exp(t: np.ndarray, a: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """``a * exp(-t / tau)``, broadcasting parameters of shape (batch,) over lags t."""
    return a[:, None] * np.exp(-t / tau[:, None])


def double_exp(t: np.ndarray, a, t1, t2, c) -> np.ndarray:
    """``a * (c * exp(-t / t1) + (1 - c) * exp(-t / t2))`` (the authors' parameterisation)."""
    return a[:, None] * (c[:, None] * np.exp(-t / t1[:, None]) + (1 - c[:, None]) * np.exp(-t / t2[:, None]))


def _single_residual(t: np.ndarray, y: np.ndarray):
    def fun(x: np.ndarray, idx: np.ndarray):
        a, tau = x[:, 0:1], x[:, 1:2]
        e = np.exp(-t / tau)
        J = np.empty(e.shape + (2,))
        J[..., 0] = e
        J[..., 1] = a * e * t / tau**2
        return a * e - y[idx], J

    return fun


def _double_residual(t: np.ndarray, y: np.ndarray):
    def fun(x: np.ndarray, idx: np.ndarray):
        a, t1, t2, c = x[:, 0:1], x[:, 1:2], x[:, 2:3], x[:, 3:4]
        e1 = np.exp(-t / t1)
        e2 = np.exp(-t / t2)
        ce1 = c * e1
        de2 = (1 - c) * e2
        mix = ce1 + de2
        J = np.empty(mix.shape + (4,))
        J[..., 0] = mix
        J[..., 1] = (a / t1**2) * ce1 * t
        J[..., 2] = (a / t2**2) * de2 * t
        J[..., 3] = a * (e1 - e2)
        return a * mix - y[idx], J

    return fun


def bartlett_se_ar1(t: np.ndarray, tau: np.ndarray, n_samples: float, spacing: float) -> np.ndarray:
    """Standard error of an autocorrelation estimate at lags ``t`` if the process is AR(1).

    Bartlett's formula for ``rho_k = phi^k`` (Box & Jenkins, Time Series Analysis, Eq. 2.1.13 and
    its AR(1) form): ``var r_k = [(1 + phi^2)(1 - phi^(2k)) / (1 - phi^2) - 2 k phi^(2k)] / N``,
    with ``phi = exp(-spacing / tau)`` and ``k = t / spacing``. Returns ``(batch, n_lags)``.
    """
    k = (t / spacing)[None, :]
    phi2 = np.exp(-2.0 * spacing / tau)[:, None]
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        p2k = phi2**k
        var = ((1 + phi2) * (1 - p2k) / (1 - phi2) - 2 * k * p2k) / n_samples
    return np.sqrt(np.maximum(var, 0.0))


def bartlett_se_noisy(t: np.ndarray, tau: np.ndarray, amplitude: np.ndarray, n_samples: float,
                      spacing: float) -> np.ndarray:
    """Standard error of an autocorrelation estimate at lags ``t >= spacing`` for an AR(1) process
    observed with white noise: ``rho_0 = 1``, ``rho_k = a phi^k`` for ``k >= 1`` (``a`` =
    ``amplitude``, ``1 - a`` the noise fraction).

    Bartlett's formula (Box & Jenkins, Eq. 2.1.13),
    ``N var r_k = sum_j (rho_j^2 + rho_{j+k} rho_{j-k} - 4 rho_k rho_j rho_{j+k} + 2 rho_j^2 rho_k^2)``,
    summed in closed form for this ``rho``; with ``a = 1`` it is :func:`bartlett_se_ar1`. Lag 0
    (where the estimate is exactly 1) gets 0. Returns ``(batch, n_lags)``.
    """
    k = (t / spacing)[None, :]
    a = np.asarray(amplitude, dtype=np.float64)[:, None]
    nu = 1.0 - a
    phi2 = np.exp(-2.0 * spacing / tau)[:, None]
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        pk = np.sqrt(phi2) ** k
        p2k = phi2**k
        geo = phi2 / (1 - phi2)                                  # sum_{j>=1} phi^2j
        s_sq = a**2 * (1 + 2 * geo) + 2 * nu * a + nu**2         # sum_j rho_j^2
        s_cross = a**2 * ((2 * k + 1) * p2k + 2 * p2k * geo) + 2 * nu * a * p2k   # sum_j rho_{j+k} rho_{j-k}
        s_lag = a**2 * pk * ((k + 1) + 2 * geo) + 2 * nu * a * pk                # sum_j rho_j rho_{j+k}
        rho_k = a * pk
        var = (s_sq + s_cross - 4 * rho_k * s_lag + 2 * rho_k**2 * s_sq) / n_samples
    var = np.where(k > 0, var, 0.0)
    return np.sqrt(np.maximum(var, 0.0))


def _loglinear_tau(t: np.ndarray, y: np.ndarray, tau_lo: float, tau_hi: float, thr: float = 0.05):
    """Timescale from the slope of log(y) over the first lags where y stays above ``thr``."""
    keep = np.cumprod(y > thr, axis=1).astype(bool)
    n = keep.sum(axis=1)
    ly = np.log(np.where(keep, y, 1.0))
    tm = np.where(keep, t, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mt = tm.sum(1) / n
        my = ly.sum(1) / n
        cov = (np.where(keep, (t - mt[:, None]) * (ly - my[:, None]), 0.0)).sum(1)
        var = (np.where(keep, (t - mt[:, None]) ** 2, 0.0)).sum(1)
        slope = cov / var
        tau = -1.0 / slope
    # fewer than two usable lags: from the drop to the first lag
    step = t[1] - t[0] if t.size > 1 else 1.0
    fallback = step / np.log(1.0 / np.clip(y[:, 1] if y.shape[1] > 1 else 0.5, 1e-6, 1 - 1e-6))
    tau = np.where((n >= 2) & np.isfinite(tau) & (tau > 0), tau, fallback)
    return np.clip(tau, tau_lo, tau_hi)


def single_starts(t: np.ndarray, y: np.ndarray, bounds, reference: bool) -> np.ndarray:
    """Starting points ``(batch, 2)`` for the single fit.

    Reference: the midpoint of the bounds, as ``curve_fit`` chooses without ``p0`` (the authors'
    call). Default: amplitude 1 (clipped) and tau from a log-linear regression.
    """
    lo, hi = bounds
    B = y.shape[0]
    if reference:
        return np.tile(0.5 * (lo[:2] + hi[:2]), (B, 1))
    tau = _loglinear_tau(t, y, lo[1], hi[1])
    return np.stack([np.full(B, np.clip(1.0, lo[0], hi[0])), tau], axis=1)


def double_starts(t: np.ndarray, y: np.ndarray, single_x: np.ndarray, bounds, reference: bool) -> list[np.ndarray]:
    """Starting points (list of ``(batch, 4)``) for the double fit; the best result is kept.

    Reference: the midpoint of the bounds ``(0.5, 50, 50, 0.5)`` as in the authors' ``curve_fit``
    call, with the two timescales moved apart by 1e-6 (relative) because the exact midpoint is a
    saddle where both components are identical: SciPy leaves it through round-off, we leave it
    deterministically. Default: three starts built from the fitted single timescale ``tau_s``:
    ``(tau_s/3, 3 tau_s)``, ``(tau_s/2, 2 tau_s)`` with equal weights, and a "peeled" start whose
    slow timescale comes from the log-linear slope of the second half of the lags.
    """
    lo, hi = bounds
    B = y.shape[0]
    tlo, thi = lo[1], hi[1]
    if reference:
        mid = 0.5 * (lo + hi)
        x = np.tile(mid, (B, 1))
        x[:, 1] *= 1 - 1e-6
        x[:, 2] *= 1 + 1e-6
        return [x]
    a = np.clip(single_x[:, 0], lo[0], hi[0])
    tau_s = np.clip(single_x[:, 1], tlo, thi)
    starts = []
    for f in (3.0, 2.0):
        starts.append(np.stack([a, np.clip(tau_s / f, tlo, thi), np.clip(tau_s * f, tlo, thi), np.full(B, 0.5)], 1))
    half = t.size // 2
    tail_tau = _loglinear_tau(t[half:] - t[half], y[:, half:] / np.maximum(y[:, half:half + 1], 1e-12), tlo, thi, thr=0.0)
    tail_tau = np.maximum(tail_tau, tau_s)
    amp_slow = np.clip(y[:, half] * np.exp(t[half] / tail_tau), 0.05, 0.95)
    fast = np.clip(tau_s / 2, tlo, thi)
    starts.append(np.stack([a, fast, np.clip(tail_tau, tlo, thi), 1 - amp_slow], 1))
    # keep the two timescales apart so the start is not on the symmetric saddle
    for s in starts:
        same = np.isclose(s[:, 1], s[:, 2], rtol=1e-3)
        s[same, 1] = np.clip(s[same, 1] / 2, tlo, thi)
        s[same, 2] = np.clip(s[same, 2] * 2, tlo, thi)
    return starts


#: Iterations of the batched solver per fit. Nearly every unit converges in well under 100; the
#: few that do not (a double fit along a narrow valley can need about 2000) are finished one by
#: one by SciPy from where the batched solver stopped (:func:`_finish`), which is much cheaper
#: than iterating the whole batch machinery for them.
MAX_ITER = 500


def _finish(residual, t, y, res: BatchedFit, lo, hi) -> BatchedFit:
    """Units the batched solver left unconverged (with a finite cost), finished by SciPy's trf
    from their last point; the rest unchanged."""
    todo = np.flatnonzero(~res.converged & np.isfinite(res.cost))
    if todo.size == 0:
        return res
    sub = curve_fit_rows(residual, t, y[todo], res.x[todo], lo, hi)
    better = sub.converged & (sub.cost <= res.cost[todo])
    x, cost, converged = res.x.copy(), res.cost.copy(), res.converged.copy()
    x[todo[better]], cost[todo[better]], converged[todo[better]] = sub.x[better], sub.cost[better], True
    return BatchedFit(x=x, cost=cost, converged=converged, n_iter=res.n_iter)


def curve_fit_rows(residual, t, y, x0, lo, hi) -> BatchedFit:
    """Fit every row with ``scipy.optimize.least_squares(method="trf")`` and its default
    tolerances: exactly what ``scipy.optimize.curve_fit`` does with bounds, as in the authors'
    code. One unit at a time (slow); used by ``reference=True``, where fidelity to their fits
    matters more than speed. A fit that raises or does not converge counts as failed."""
    import warnings

    from scipy.optimize import least_squares

    B, p = x0.shape
    x = np.full((B, p), np.nan)
    cost = np.full(B, np.nan)
    ok = np.zeros(B, dtype=bool)
    n_iter = np.zeros(B, dtype=np.int64)
    fun = residual(t, y)
    for i in range(B):
        idx = np.array([i])

        def r(v, idx=idx):
            return fun(v[None], idx)[0][0]

        def jac(v, idx=idx):
            return fun(v[None], idx)[1][0]

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                res = least_squares(r, np.clip(x0[i], lo, hi), jac=jac, bounds=(lo, hi), method="trf")
        except (ValueError, RuntimeError):
            continue
        x[i], cost[i], ok[i], n_iter[i] = res.x, res.cost, res.success, res.nfev
    return BatchedFit(x=x, cost=cost, converged=ok, n_iter=n_iter)


def fit_single(t, y, bounds, x0, reference: bool = False):
    lo, hi = bounds
    if reference:
        return curve_fit_rows(_single_residual, t, y, x0, lo[:2], hi[:2])
    res = least_squares_batched(_single_residual(t, y), x0, lo[:2], hi[:2], max_iter=MAX_ITER)
    return _finish(_single_residual, t, y, res, lo[:2], hi[:2])


def fit_double(t, y, bounds, starts, reference: bool = False):
    """Fit the double model from each start; keep, per unit, the converged result of lowest cost.

    Default: all starts in one batched solve (the problems are independent, so each row's result
    is what a solve of its start alone gives); rows it leaves unconverged are finished by SciPy.
    Reference: SciPy per unit and start. Returns ``(x, cost, ok)``; ``ok`` is False where no start
    converged.
    """
    lo, hi = bounds
    B = len(y)
    if reference:
        results = [curve_fit_rows(_double_residual, t, y, x0, lo, hi) for x0 in starts]
    else:
        y_all = np.concatenate([y] * len(starts))
        res = least_squares_batched(_double_residual(t, y_all), np.concatenate(starts), lo, hi,
                                    max_iter=MAX_ITER)
        res = _finish(_double_residual, t, y_all, res, lo, hi)
        results = [BatchedFit(*(v[k * B:(k + 1) * B] for v in (res.x, res.cost, res.converged, res.n_iter)))
                   for k in range(len(starts))]
    best_x = np.full(starts[0].shape, np.nan)
    best_cost = np.full(B, np.inf)
    for res in results:
        cost = np.where(res.converged & np.isfinite(res.cost), res.cost, np.inf)
        better = cost < best_cost
        best_x[better] = res.x[better]
        best_cost[better] = cost[better]
    return best_x, best_cost, np.isfinite(best_cost)


def _whole_steps(k: np.ndarray) -> np.ndarray:
    """``k`` with values within 1e-9 (relative) of a whole number replaced by that number: lags
    and bounds given in time units come back to exact lag steps after dividing by the spacing."""
    r = np.rint(k)
    return np.where(np.abs(k - r) <= 1e-9 * np.maximum(np.abs(r), 1.0), r, k)


def criterion_value(rss: np.ndarray, n: int, k: int, criterion: str) -> np.ndarray:
    """AIC = 2k + n ln(RSS/n) or BIC = k ln(n) + n ln(RSS/n) for Gaussian residuals."""
    with np.errstate(divide="ignore", invalid="ignore"):
        base = n * np.log(rss / n)
    return (2 * k if criterion == "aic" else k * np.log(n)) + base


#: Ways to treat lag 0, see :func:`dynatools.timescales.fit_timescales`.
LAG0 = ("auto", "include", "exclude")
#: In ``lag0="auto"``, a lag-0 noise term smaller than this fraction of the lag-0 autocovariance
#: never replaces the model without it (on noiseless data both fits are equally exact).
NOISE_MIN = 1e-3
#: Fewest fitted lags (from lag 1) for the double model with a lag-0 noise term (4 parameters).
_MIN_LAGS_DOUBLE_LAG1 = 6


def lag1_single_starts(t: np.ndarray, y: np.ndarray, bounds) -> np.ndarray:
    """Starting points ``(batch, 2)`` for the single fit on lags from 1 (``t``, ``y`` without lag
    0): tau from the log-linear slope of ``y / y[:, 0]``, amplitude ``y[:, 0] exp(t[0] / tau)``."""
    lo, hi = bounds
    first = y[:, :1]
    positive = first[:, 0] > 0
    yn = np.where(positive[:, None], y / np.where(positive[:, None], first, 1.0), y)
    tau = _loglinear_tau(t - t[0], yn, lo[1], hi[1])
    with np.errstate(over="ignore", invalid="ignore"):
        a = np.where(positive, first[:, 0] * np.exp(t[0] / tau), 0.5)
    return np.stack([np.clip(np.nan_to_num(a, nan=0.5), 0.01, hi[0]), tau], axis=1)


def _fit_family(t: np.ndarray, y: np.ndarray, bounds, reference: bool, lag1: bool,
                double_rows=None) -> dict:
    """Single and double fits of one family: from lag 0, or from lag 1 (= a free lag-0 noise term:
    the normalised lag 0 is then fitted exactly by ``a + noise``). ``double_rows`` (a function of
    the single fit's parameters, returning a boolean mask): fit the double model on those rows
    only (the others get a failed double fit)."""
    if lag1:
        tt, yy = t[1:], y[:, 1:]
        x0 = lag1_single_starts(tt, yy, bounds)
    else:
        tt, yy = t, y
        x0 = single_starts(tt, yy, bounds, reference)
    s = fit_single(tt, yy, bounds, x0, reference)
    s_ok = s.converged & np.isfinite(s.cost)
    rows, warm = (np.ones(len(y), dtype=bool), None) if double_rows is None else double_rows(s.x, s_ok)
    if lag1 and tt.size < _MIN_LAGS_DOUBLE_LAG1:
        rows[:] = False
    dx = np.full((len(y), 4), np.nan)
    d_cost = np.full(len(y), np.inf)
    d_ok = np.zeros(len(y), dtype=bool)
    # rows with a warm start (a credible double fit of the other family): that start alone
    warm_rows = rows & np.isfinite(warm).all(axis=1) if warm is not None else np.zeros(len(y), dtype=bool)
    cold_rows = rows & ~warm_rows
    if cold_rows.any():
        sub = slice(None) if cold_rows.all() else cold_rows
        dx[sub], d_cost[sub], d_ok[sub] = fit_double(tt, yy[sub], bounds,
                                                     double_starts(tt, yy[sub], s.x[sub], bounds, reference), reference)
    if warm_rows.any():
        lo, hi = bounds
        dx[warm_rows], d_cost[warm_rows], d_ok[warm_rows] = fit_double(
            tt, yy[warm_rows], bounds, [np.clip(warm[warm_rows], lo, hi)], reference)
    # order the components: fast first
    swap = dx[:, 1] > dx[:, 2]
    dx[swap] = dx[swap][:, [0, 2, 1, 3]]
    dx[swap, 3] = 1 - dx[swap, 3]
    return {"sx": s.x, "s_ok": s_ok, "rss1": np.where(s_ok, 2 * s.cost, np.nan),
            "dx": dx, "d_ok": d_ok, "rss2": np.where(d_ok, 2 * d_cost, np.nan)}


def _select(fam: dict, t: np.ndarray, n: int, lag1: bool, *, tau_max: float, criterion: str, reference: bool,
            min_weight: float, min_ratio: float, noise_z: float | None, n_samples: float | None,
            min_timescale: float) -> dict:
    """Model selection within one family (see :func:`fit_and_select`); adds ``use_double``,
    ``use_single``, ``st`` (status codes), ``c1``, ``c2`` (criteria) and ``subfast`` (the double
    model won but its fast component is faster than ``min_timescale``: lag-0 noise)."""
    sx, s_ok, dx, d_ok = fam["sx"], fam["s_ok"], fam["dx"], fam["d_ok"]
    k1, k2 = (3, 5) if lag1 else (2, 4)
    c1 = criterion_value(fam["rss1"], n, k1, criterion)
    c2 = criterion_value(fam["rss2"], n, k2, criterion)
    # the authors' code scores a failed fit as AIC = 1e5, i.e. it never wins
    c1s = np.where(s_ok, c1, np.inf)
    c2s = np.where(d_ok, c2, np.inf)
    prefer_double = c2s < c1s
    prefer_single = c1s < c2s
    st = np.zeros(len(sx), dtype=np.int64)
    use_double = prefer_double.copy()
    subfast = np.zeros(len(sx), dtype=bool)
    if not reference:
        lower = dx[:, 1:3] <= AT_BOUND_RTOL
        upper = dx[:, 1:3] >= (1 - AT_BOUND_RTOL) * tau_max
        negligible = np.minimum(dx[:, 3], 1 - dx[:, 3]) < min_weight
        duplicate = dx[:, 2] < min_ratio * dx[:, 1]
        reasons = [
            (negligible, "double_negligible_weight"),
            # the fast timescale at the lower bound is a component faster than one step: below
            (upper.any(axis=1) | lower[:, 1], "double_at_bound"),
            (duplicate, "double_duplicate"),
        ]
        if noise_z is not None and n_samples is not None and t.size > 1:
            # is the double model's curve further from the single model's than the estimation
            # noise of the autocorrelation (if the single model were true)?
            f1 = single_exp(t[1:], sx[:, 0], sx[:, 1])
            f2 = double_exp(t[1:], dx[:, 0], dx[:, 1], dx[:, 2], dx[:, 3])
            if lag1:
                se = bartlett_se_noisy(t[1:], sx[:, 1], sx[:, 0], n_samples, 1.0)
            else:
                se = bartlett_se_ar1(t[1:], sx[:, 1], n_samples, 1.0)
            with np.errstate(invalid="ignore", divide="ignore"):
                z = np.max(np.abs(f2 - f1) / se, axis=1)
            reasons.append((z < noise_z, "double_within_noise"))
        for mask, name in reasons:
            reject = use_double & mask & s_ok
            st[reject] = _CODE[name]
            use_double &= ~reject
        # a credible double model whose fast component has decayed within min_timescale: at the
        # sampled lags it only changes lag 0, which is what observation noise does
        subfast = use_double & s_ok & (dx[:, 1] < min_timescale)
        st[subfast] = _CODE["lag0_noise"]
        use_double &= ~subfast
    use_single = prefer_single if reference else (~use_double & s_ok)
    st[use_double & ~s_ok] = _CODE["single_failed"]
    st[~use_double & ~s_ok & ~d_ok] = _CODE["failed"]
    st[use_single & ~d_ok & (st == 0)] = _CODE["double_failed"]
    tie = ~use_double & ~use_single & (s_ok | d_ok)
    st[tie] = _CODE["tie"]
    return dict(fam, use_double=use_double, use_single=use_single, st=st, c1=c1, c2=c2, subfast=subfast)


def _needs_lag1_double(P: dict | None, lag0: str, t: np.ndarray, noise_z: float | None, n_samples: float | None):
    """Which units need the double fit with a lag-0 noise term (it costs as much as all the other
    fits together), from the single fit with the term (``sx``, ``s_ok``): in ``"exclude"`` mode
    all; else those whose double model without the term has a sub-step component (the rule), and
    in ``"auto"`` also those whose double model without the term was selected and those whose
    single fit with the term shows a lag-0 excess ``1 - a`` of at least half the noise test's
    threshold (``noise_z / 2`` standard errors at lag 0). Elsewhere the term cannot pass the
    noise test, so that fit could not be selected."""
    def rows(sx: np.ndarray, s_ok: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        if P is None:
            return np.ones(len(sx), dtype=bool), None
        need = P["subfast"].copy()
        # a selected double model without the term: its fit is the start of the one with it
        warm = np.where(P["use_double"][:, None], P["dx"], np.nan)
        if lag0 == "auto" and noise_z is not None and n_samples is not None and t.size > 2:
            se1 = bartlett_se_noisy(t[1:2], sx[:, 1], sx[:, 0], n_samples, 1.0)[:, 0]
            with np.errstate(over="ignore", invalid="ignore"):
                se0 = se1 * np.exp(np.minimum(1.0 / sx[:, 1], 700.0))
                excess = (1 - sx[:, 0] >= NOISE_MIN) & (1 - sx[:, 0] >= 0.5 * noise_z * se0)
            need |= P["use_double"] | excess | ~s_ok
        return need, warm
    return rows


def _curve(sel: dict, t: np.ndarray) -> np.ndarray:
    """The selected model's curve of each unit at ``t`` (NaN where none was selected)."""
    sx, dx = sel["sx"], sel["dx"]
    with np.errstate(invalid="ignore", over="ignore"):
        f1 = single_exp(t, sx[:, 0], sx[:, 1])
        f2 = double_exp(t, dx[:, 0], dx[:, 1], dx[:, 2], dx[:, 3])
    return np.where(sel["use_double"][:, None], f2, np.where(sel["use_single"][:, None], f1, np.nan))


def fit_and_select(
    y: np.ndarray,
    t: np.ndarray,
    *,
    tau_max: float,
    criterion: str = "aic",
    reference: bool = False,
    min_weight: float = 0.05,
    min_ratio: float = 1.5,
    noise_z: float | None = 5.0,
    n_samples: float | None = None,
    lag0: str = "auto",
    min_timescale: float | None = None,
) -> np.ndarray:
    """Fit both models to each row of ``y`` (already normalised so ``y[:, 0] == 1``) and select one.

    Two families of fits: from lag 0 (lag 0 an ordinary data point), and from lag 1 (a free
    observation-noise term at lag 0, ``noise_fraction = 1 - a``); ``lag0`` says which are
    candidates (:func:`dynatools.timescales.fit_timescales` documents the rules). ``min_timescale``
    (units of ``t``; default one lag step): a selected double model never has a faster component.

    Returns a float array ``(batch, len(FIELDS))``; ``n_timescales`` is 1, 2 or NaN and
    ``status`` holds an index into :data:`STATUS`.
    """
    y = np.asarray(y, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    B, n = y.shape
    # Fit in lag steps, whatever the time unit: the solver's path (starts, step-back, tolerances)
    # then depends on the autocorrelation alone, so every timescale scales exactly with dt
    # (rounding differences of t * dt could otherwise send a fit to another local minimum), and
    # reference mode fits lag indices as the authors' curve_fit does. Timescales are converted back
    # to the units of t at the end.
    spacing = t[1] - t[0] if n > 1 else 1.0
    t = _whole_steps(t / spacing)
    tau_max = float(_whole_steps(np.array(tau_max / spacing)))
    min_ts = 1.0 if min_timescale is None else float(_whole_steps(np.array(min_timescale / spacing)))
    out = np.full((B, len(FIELDS)), np.nan)
    col = {f: i for i, f in enumerate(FIELDS)}
    status = np.zeros(B, dtype=np.int64)
    constant = ~np.isfinite(y).all(axis=1)
    status[constant] = _CODE["constant"]
    good = np.flatnonzero(~constant)
    if good.size:
        yg = y[good]
        # tau bounds: the authors use [0, 100]; tau = 0 is excluded to keep exp(-t/tau) finite
        tiny = 1e-6
        lo = np.array([0.0, tiny, tiny, 0.0])
        hi = np.array([1.0, tau_max, tau_max, 1.0])
        bounds = (lo, hi)
        options = dict(tau_max=tau_max, criterion=criterion, reference=reference, min_weight=min_weight,
                       min_ratio=min_ratio, noise_z=noise_z, n_samples=n_samples, min_timescale=min_ts)
        if lag0 != "exclude" or reference:
            P = _select(_fit_family(t, yg, bounds, reference, lag1=False), t, n, False, **options)
        if reference:
            sel, from_n = P, np.zeros(good.size, dtype=bool)
        else:
            N = _select(_fit_family(t, yg, bounds, reference, lag1=True, double_rows=_needs_lag1_double(
                P if lag0 != "exclude" else None, lag0, t, noise_z, n_samples)), t, n, True, **options)
            if lag0 == "exclude":
                P, from_n = N, np.ones(good.size, dtype=bool)
            elif lag0 == "include":
                from_n = P["subfast"].copy()
            else:
                crit_p = np.where(P["use_double"], P["c2"], np.where(P["use_single"], P["c1"], np.inf))
                crit_n = np.where(N["use_double"], N["c2"], np.where(N["use_single"], N["c1"], np.inf))
                amp_n = np.where(N["use_double"], N["dx"][:, 0], N["sx"][:, 0])
                better = (crit_n < crit_p) & (1 - amp_n >= NOISE_MIN)
                if noise_z is None or n_samples is None or n < 3:
                    # the criterion alone counts correlated lags as independent and would add the
                    # term to clean data too: without the noise test only the sub-step rule adds it
                    better[:] = False
                else:
                    # the lag-0 term must change the fitted curve at lags >= 1 by more than the
                    # estimation noise (the errors expected if the noisy single model were true)
                    se = bartlett_se_noisy(t, N["sx"][:, 1], N["sx"][:, 0], n_samples, 1.0)
                    # lag 0: the noise term is 1 - a, and a = r_1 exp(1 / tau) extrapolates the
                    # estimate at lag 1, whose error it scales by exp(1 / tau)
                    with np.errstate(over="ignore"):
                        se[:, 0] = se[:, 1] * np.exp(np.minimum(1.0 / N["sx"][:, 1], 700.0))
                    with np.errstate(invalid="ignore", divide="ignore"):
                        z = np.max(np.abs(_curve(N, t) - _curve(P, t)) / se, axis=1)
                    better &= z >= noise_z
                from_n = P["subfast"] | better
            # a double model with a sub-step component, or a criterion that prefers the lag-0
            # term: the family with the term, whose model is credible (or the single one)
            from_n &= N["use_double"] | N["use_single"]
            sel = {key: (np.where(from_n.reshape((-1,) + (1,) * (np.ndim(P[key]) - 1)), N[key], P[key])
                         if key != "st" else None) for key in P}
            st = np.where(from_n, N["st"], P["st"])
            if lag0 != "exclude":
                # the single model with a lag-0 noise term: the drop at lag 0 is observation noise
                st[from_n & N["use_single"]] = _CODE["lag0_noise"]
            sel["st"] = st
        use_double, use_single, st = sel["use_double"], sel["use_single"], sel["st"]
        sx, dx, s_ok, d_ok = sel["sx"], sel["dx"], sel["s_ok"], sel["d_ok"]
        tau_net = np.where(use_double, dx[:, 2], np.where(use_single, sx[:, 1], np.nan))
        rss_sel = np.where(use_double, sel["rss2"], np.where(use_single, sel["rss1"], np.nan))
        amp_sel = np.where(use_double, dx[:, 0], np.where(use_single, sx[:, 0], np.nan))
        tss = ((yg - yg.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            r2 = 1 - rss_sel / tss
        sel_at_bound = (use_double | use_single) & _at_bound(tau_net, tau_max, 1.0)
        st[sel_at_bound & (st == 0)] = _CODE["tau_at_bound"]
        selected = use_double | use_single

        vals = {
            "tau_single": np.where(s_ok, sx[:, 1], np.nan),
            "amplitude_single": np.where(s_ok, sx[:, 0], np.nan),
            "tau_fast": np.where(d_ok, dx[:, 1], np.nan),
            "tau_slow": np.where(d_ok, dx[:, 2], np.nan),
            "weight_fast": np.where(d_ok, dx[:, 3], np.nan),
            "amplitude_double": np.where(d_ok, dx[:, 0], np.nan),
            "criterion_single": sel["c1"],
            "criterion_double": sel["c2"],
            "rss_single": sel["rss1"],
            "rss_double": sel["rss2"],
            "tau_net": tau_net,
            "r2": r2,
            "n_timescales": np.where(use_double, 2.0, np.where(use_single, 1.0, np.nan)),
            "noise_fraction": 1.0 - amp_sel,
            "noise_term": np.where(selected, from_n.astype(np.float64), np.nan),
        }
        for name, v in vals.items():
            out[good, col[name]] = v * spacing if name.startswith("tau") else v
        status[good] = st
    out[:, col["status"]] = status
    return out
