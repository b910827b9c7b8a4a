"""Property tests (hypothesis) for invariants of the analyses and of the recording format.

* timescales: ``tau_net`` does not change when the activity is multiplied by a positive factor,
  and it scales with the sampling interval ``dt`` (same samples, time in seconds);
* Lyapunov spectrum of a linear map ``h -> A h``: the exponents sum to ``log|det A|``;
* PCA dimensionality and participation ratio do not change when the units are rotated by an
  orthogonal matrix, and equal the eigenvalues of ``numpy.cov`` (closed-form oracle);
* a recording survives ``save_recording`` -> ``open_recording`` unchanged.

Every example draws its own seed (``st.integers``) and builds its own generator; there is no
global random state. Data are tiny so that the whole file runs in seconds.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.stats import ortho_group

import dynatools as dt
from dynatools.timescales import RELIABLE
from processes import ar1

SEEDS = st.integers(min_value=0, max_value=2**32 - 1)
#: Positive factors spread evenly in log scale over 1e-3 .. 1e3.
LOG_FACTORS = st.floats(min_value=-3.0, max_value=3.0).map(lambda e: 10.0**e)


# -- timescales ------------------------------------------------------------------------------------

def _ar1_activity(seed: int, n_units: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """(trial, time, unit) float64 AR(1) activity with known timescales (in steps) drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    tau = rng.uniform(2.0, 8.0, size=n_units)
    return ar1(rng, tau, n_trials=4, n_time=2000).astype(np.float64), tau


def _check_credible(res: xr.Dataset, tau_steps: np.ndarray, step: float) -> None:
    """The fits the invariances compare are real: reliable statuses, and single-exponential
    timescales near the true ones (closed form: the AR(1) autocorrelation is exp(-k / tau)).

    With 4 x 2000 samples and tau <= 8 steps, tau_single / tau stayed within 0.78..1.36 over 3000
    units (spread about 6 %); 50 % is far outside that. tau_net is not compared with the truth:
    for about 1 unit in 1000 the sample autocorrelation has a heavy tail and a double exponential
    with a slow component is (correctly) selected.
    """
    assert set(res.status.values.tolist()) <= set(RELIABLE), res.status.values
    np.testing.assert_allclose(res.tau_single.values, tau_steps * step, rtol=0.5)


@settings(max_examples=15, deadline=None)
@given(seed=SEEDS, factor=LOG_FACTORS)
def test_tau_net_unchanged_by_amplitude_scaling(seed, factor):
    # float64 and moderate factors: extreme float32 scales are a separate open issue
    x, tau = _ar1_activity(seed)
    ref = dt.timescales(dt.from_array(x, dims=("trial", "time", "unit")))
    scaled = dt.timescales(dt.from_array(x * factor, dims=("trial", "time", "unit")))
    _check_credible(ref, tau, 1.0)
    np.testing.assert_array_equal(scaled.status.values, ref.status.values)
    np.testing.assert_allclose(scaled.tau_net.values, ref.tau_net.values, rtol=1e-6)
    np.testing.assert_allclose(scaled.tau_single.values, ref.tau_single.values, rtol=1e-6)
    np.testing.assert_allclose(scaled.autocorrelation.values, ref.autocorrelation.values, rtol=1e-9, atol=1e-12)


@settings(max_examples=15, deadline=None)
@given(seed=SEEDS, step=st.floats(min_value=-3.0, max_value=2.0).map(lambda e: 10.0**e))
def test_tau_net_scales_with_dt(seed, step):
    x, tau = _ar1_activity(seed)
    in_steps = dt.timescales(dt.from_array(x, dims=("trial", "time", "unit"), dt=1.0))
    in_seconds = dt.timescales(dt.from_array(x, dims=("trial", "time", "unit"), dt=step, time_units="s"))
    _check_credible(in_steps, tau, 1.0)
    _check_credible(in_seconds, tau, step)
    assert in_seconds.tau_net.attrs["units"] == "s"
    np.testing.assert_allclose(in_seconds.tau_net.values, step * in_steps.tau_net.values, rtol=1e-6)
    np.testing.assert_allclose(in_seconds.tau_single.values, step * in_steps.tau_single.values, rtol=1e-6)
    np.testing.assert_allclose(in_seconds.lag.values, step * np.arange(in_steps.sizes["lag"]), rtol=1e-12)
    # the statuses are compared in the test below, for the example where they differ


def test_double_fit_and_status_scale_with_dt():
    """Found by hypothesis: the fit used to run in the lag's time unit, and rounding differences
    of t * dt (1e-10 after 19 iterations) decided whether a double fit escaped the degenerate
    edge weight_fast -> 0 (status double_negligible_weight at dt = 1, ok at dt = 10 s and 1e-3 s).
    The fit now runs in lag steps, so results scale exactly with dt."""
    x, _ = _ar1_activity(50600681)       # the minimal example hypothesis found
    in_steps = dt.timescales(dt.from_array(x, dims=("trial", "time", "unit")))
    for step in (10.0, 1e-3):
        in_seconds = dt.timescales(dt.from_array(x, dims=("trial", "time", "unit"), dt=step, time_units="s"))
        np.testing.assert_allclose(in_seconds.tau_net.values, step * in_steps.tau_net.values, rtol=1e-6)
        for name in ("tau_fast", "tau_slow"):
            np.testing.assert_allclose(in_seconds[name].values, step * in_steps[name].values, rtol=1e-6)
        np.testing.assert_allclose(in_seconds.rss_double.values, in_steps.rss_double.values, rtol=1e-6)
        np.testing.assert_array_equal(in_seconds.status.values, in_steps.status.values)


# -- Lyapunov spectrum of a linear map -------------------------------------------------------------

@settings(max_examples=20, deadline=None)
@given(
    seed=SEEDS,
    n=st.integers(min_value=2, max_value=6),
    n_traj=st.integers(min_value=1, max_value=3),
    steps=st.integers(min_value=5, max_value=150),
    reortho_every=st.integers(min_value=1, max_value=4),
    flip=st.booleans(),
)
def test_lyapunov_exponents_of_linear_map_sum_to_log_abs_det(seed, n, n_traj, steps, reortho_every, flip):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(seed)
    # A = U diag(s) V^T, singular values in [0.5, 2]: well conditioned, neither overflowing nor
    # underflowing over 150 steps; flip makes det A negative
    U = ortho_group.rvs(n, random_state=rng)
    V = ortho_group.rvs(n, random_state=rng)
    s = rng.uniform(0.5, 2.0, size=n)
    A = U @ np.diag(s) @ V.T
    if flip:
        A[0] *= -1.0
    _, logdet = np.linalg.slogdet(A)                 # closed form: sum(log s), up to rounding
    A_t = torch.as_tensor(A, dtype=torch.float64)

    def step(h, u):
        return h @ A_t.T

    def jacobian(h, u):          # the closed form (autograd's agreement is tested in test_lyapunov.py)
        return A_t.expand(h.shape[0], n, n)

    res = dt.lyapunov_spectrum(step, rng.standard_normal((n_traj, n)), steps=steps, reortho_every=reortho_every,
                               jacobian=jacobian, device="cpu", dtype=torch.float64, seed=seed)
    assert res.sizes["exponent"] == n and res.attrs["diverged"] == 0
    # |det(J Q)| = |det A| at every step, so the sum is exact up to rounding, at any step count
    np.testing.assert_allclose(res.lyapunov.sum().item(), logdet, rtol=0, atol=1e-9)
    np.testing.assert_allclose(res.per_trajectory.sum("exponent").values, logdet, rtol=0, atol=1e-9)
    assert (np.diff(res.lyapunov.values) <= 1e-12).all()          # largest first


# -- PCA dimensionality under a rotation of the units ----------------------------------------------

@settings(max_examples=20, deadline=None)
@given(
    seed=SEEDS,
    n_units=st.integers(min_value=2, max_value=8),
    n_time=st.integers(min_value=20, max_value=300),
    n_trials=st.integers(min_value=1, max_value=3),
    threshold=st.sampled_from([0.5, 0.8, 0.9, 0.95]),
    per=st.sampled_from(["trial", "pooled"]),
)
def test_pca_dimensionality_unchanged_by_orthogonal_rotation_of_units(seed, n_units, n_time, n_trials, threshold, per):
    rng = np.random.default_rng(seed)
    n_time = max(n_time, 2 * n_units)                 # more samples than units: full-rank covariances
    sd = rng.uniform(0.1, 3.0, size=n_units)          # anisotropic: several distinct eigenvalues
    offset = rng.uniform(-5.0, 5.0, size=n_units)
    x = rng.standard_normal((n_trials, n_time, n_units)) * sd + offset
    O = ortho_group.rvs(n_units, random_state=seed)
    rotated = x @ O
    kw = dict(threshold=threshold, per=per)
    ref = dt.pca_dimensionality(dt.from_array(x, dims=("trial", "time", "unit")), **kw)
    rot = dt.pca_dimensionality(dt.from_array(rotated, dims=("trial", "time", "unit")), **kw)
    pr = dt.participation_ratio(dt.from_array(rotated, dims=("trial", "time", "unit")), per=per)

    np.testing.assert_array_equal(rot.dimensionality.values, ref.dimensionality.values)
    np.testing.assert_allclose(rot.participation_ratio.values, ref.participation_ratio.values, rtol=1e-10)
    np.testing.assert_allclose(rot.explained_variance_ratio.values, ref.explained_variance_ratio.values,
                               rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(pr.values, ref.participation_ratio.values, rtol=1e-10)

    # closed-form oracle: eigenvalues of numpy's covariance of the unrotated data
    groups = [x[i] for i in range(n_trials)] if per == "trial" else [x.reshape(-1, n_units)]
    lam = np.stack([np.sort(np.linalg.eigvalsh(np.cov(g, rowvar=False)))[::-1] for g in groups])
    share = lam / lam.sum(1, keepdims=True)
    count = (np.cumsum(share, 1) < threshold - 1e-12).sum(1) + 1
    expected = (lambda v: v) if per == "trial" else (lambda v: v[0])
    np.testing.assert_allclose(rot.explained_variance_ratio.values, expected(share), rtol=1e-8, atol=1e-12)
    np.testing.assert_array_equal(rot.dimensionality.values, expected(count))
    np.testing.assert_allclose(pr.values, expected(lam.sum(1) ** 2 / (lam**2).sum(1)), rtol=1e-8)


# -- recordings: save -> open round trip -----------------------------------------------------------

#: Names from_array takes as arguments, schema names and attributes it sets itself (an attribute
#: named ``coordinates`` round-trips: it is stored escaped, test below).
_RESERVED = {"dt", "dims", "time_units", "coords", "activity", "trial", "time", "unit", "tau", "module",
             "population", "input", "target", "output", "W_rec", "W_in", "W_out", "bias", "schema", "created",
             "software"}
#: Attribute names netCDF accepts (names starting with "_" are reserved for netCDF itself).
_NAMES = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,11}", fullmatch=True).filter(lambda k: k not in _RESERVED)
_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
#: JSON-like values: nested lists and dicts with string keys (tuples would come back as lists).
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=8,
)
#: Values netCDF stores natively, or encoded as JSON (strings with NUL among them, test below).
_ATTR_VALUES = (
    st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
    | st.floats() | st.integers(-(2**63), 2**63 - 1)
    | st.integers(-(2**31), 2**31 - 1).map(np.int32) | st.floats(width=32).map(np.float32)
    | _JSON
)
_ATTRS = st.dictionaries(_NAMES, _ATTR_VALUES, max_size=4)


def _same(a, b) -> bool:
    """Equal, with NaN equal to NaN and the type kept (bool stays bool, np.float32 stays np.float32)."""
    kept = type(a) is type(b) or (type(a) in (int, float) and type(b) is np.dtype(type(a)).type)
    if isinstance(a, (float, np.floating)) and np.isnan(a):
        return kept and np.isnan(b)
    return kept and a == b


@st.composite
def _activities(draw):
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    shape = draw(st.tuples(st.integers(1, 3), st.integers(1, 20), st.integers(1, 5)))
    width = 32 if dtype is np.float32 else 64
    return draw(arrays(dtype, shape, elements=st.floats(width=width)))   # NaN, inf and -0.0 too


def _round_trip(rec: xr.Dataset) -> xr.Dataset:
    with tempfile.TemporaryDirectory() as folder:
        path = dt.save_recording(rec, os.path.join(folder, "rec.nc"))
        with dt.open_recording(path) as back:
            return back.load()


@settings(max_examples=25, deadline=None)
@given(activity=_activities(), attrs=_ATTRS,
       step=st.floats(min_value=1e-3, max_value=1e3),
       time_units=st.sampled_from(["step", "s"]))
def test_recording_survives_save_and_open(activity, attrs, step, time_units):
    rec = dt.from_array(activity, dims=("trial", "time", "unit"), dt=step, time_units=time_units, **attrs)
    back = _round_trip(rec)
    assert back.activity.dtype == activity.dtype
    assert back.activity.dims == ("trial", "time", "unit")
    np.testing.assert_array_equal(back.activity.values, activity)
    np.testing.assert_array_equal(np.signbit(back.activity.values), np.signbit(activity))
    for name in ("trial", "time", "unit"):
        np.testing.assert_array_equal(back[name].values, rec[name].values)
        assert back[name].dtype == rec[name].dtype
    assert back.time.attrs["units"] == time_units
    assert set(back.attrs) == set(rec.attrs)
    for key, value in rec.attrs.items():
        assert _same(value, back.attrs[key]), (key, value, back.attrs[key])
    xr.testing.assert_equal(back, rec)


def test_string_attribute_with_nul_survives_save_and_open():
    rec = dt.from_array(np.zeros((1, 3, 2)), note="a\x00b")
    assert _round_trip(rec).attrs["note"] == "a\x00b"


def test_attribute_named_coordinates_survives_save_and_open():
    rec = dt.from_array(np.zeros((1, 3, 2)), coordinates="x y")
    assert _round_trip(rec).attrs.get("coordinates") == "x y"
