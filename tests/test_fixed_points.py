"""Fixed points and slow points (dynatools.fixed_points) against known answers: a linear map's one
fixed point (I - A)^-1 b with eig(A); a 2-D flow with a stable node, a saddle and an unstable focus
at known places with known Jacobians; a line attractor; the ghost of a saddle-node (a slow point
of known speed); continuous-time rate networks (-r + f(W r + b) = 0, flow eigenvalues from numpy);
a 3-bit flip-flop RNN trained here (Sussillo & Barak 2013, Fig. 2: 8 stable fixed points); the
batched optimisation against the per-point loop; ensembles; bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

import dynatools
from dynatools.fixed_points import _adam, _Map, fixed_points, plot_fixed_points

CPU = dict(device="cpu")


def linear(A: np.ndarray, b: np.ndarray):
    At, bt = torch.as_tensor(A), torch.as_tensor(b)
    return lambda h, u: h @ At.T + bt


def grid(lo, hi, n=9) -> np.ndarray:
    x, y = np.meshgrid(np.linspace(lo[0], hi[0], n), np.linspace(lo[1], hi[1], n))
    return np.stack([x.ravel(), y.ravel()], 1)


# ---------------------------------------------------------------------------- linear maps
@pytest.mark.parametrize("radius", [0.8, 1.6])          # a stable and an unstable fixed point
def test_a_linear_map_has_one_fixed_point_with_the_eigenvalues_of_A(radius):
    rng = np.random.default_rng(1)
    A = rng.normal(size=(4, 4))
    A *= radius / np.abs(np.linalg.eigvals(A)).max()
    b = rng.normal(size=4)
    fp = fixed_points(linear(A, b), rng.normal(size=(30, 4)) * 3, **CPU)
    assert fp.sizes["point"] == 1 and int(fp["count"][0]) == 30
    np.testing.assert_allclose(fp.state[0], np.linalg.solve(np.eye(4) - A, b), atol=1e-10)
    ev = fp.eigenvalue_real[0].values + 1j * fp.eigenvalue_imag[0].values
    expected = np.linalg.eigvals(A)
    np.testing.assert_allclose(np.sort_complex(ev), np.sort_complex(expected), atol=1e-10)
    np.testing.assert_allclose(np.abs(ev), np.sort(np.abs(expected))[::-1], atol=1e-10)   # least stable first
    np.testing.assert_allclose(fp.jacobian[0], A, atol=1e-12)
    n_out = int((np.abs(expected) > 1).sum())
    assert int(fp.n_unstable[0]) == n_out
    assert str(fp.stability[0].values) == ("stable" if radius < 1 else ("unstable" if n_out == 4 else "saddle"))
    assert float(fp.q[0]) < 1e-20 and str(fp.kind[0].values) == "fixed"
    # eigenvectors: A v = lambda v
    for m in range(4):
        v = fp.eigenvector_real[0, m].values + 1j * fp.eigenvector_imag[0, m].values
        np.testing.assert_allclose(A @ v, ev[m] * v, atol=1e-10)
    assert fp.state.dims == ("point", "unit") and fp.eigenvalue_real.dims == ("point", "mode")


def test_an_exact_fixed_point_far_from_the_states_is_no_outlier():
    """All states equal (no spread): the fixed point (10, 2, 1.25) lies 10 units away."""
    A = np.diag([0.9, 0.5, 0.2])
    fp = fixed_points(linear(A, np.ones(3)), np.zeros((3, 3)), **CPU)
    np.testing.assert_allclose(fp.state[0], [10.0, 2.0, 1.25], atol=1e-10)
    assert fp.attrs["n_outliers"] == 0


def test_polishing_alone_finds_the_fixed_point():
    A, b = np.array([[0.5, 0.2], [-0.1, 0.3]]), np.array([1.0, -1.0])
    fp = fixed_points(linear(A, b), np.random.default_rng(0).normal(size=(5, 2)), max_iter=0, **CPU)
    assert fp.attrs["iterations"] == 0 and fp.sizes["point"] == 1
    np.testing.assert_allclose(fp.state[0], np.linalg.solve(np.eye(2) - A, b), atol=1e-12)


def test_the_module_is_callable_as_dynatools_fixed_points():
    A, b = np.diag([0.5, 0.25]), np.array([1.0, 3.0])
    import dynatools.fixed_points as module

    res = module(linear(A, b), np.zeros((3, 2)), **CPU)
    np.testing.assert_allclose(res.state[0], [2.0, 4.0], atol=1e-12)
    assert dynatools.fixed_points(linear(A, b), np.ones((2, 2)), **CPU).sizes["point"] == 1
    import inspect

    params = inspect.signature(module).parameters              # the function's, for the convention checks
    assert params["device"].default is None and params["progress"].default is False
    assert params["unit_dim"].default == "unit" and "seed" not in params


# ---------------------------------------------------------------------------- a 2-D system with three classes
def g3(h: torch.Tensor) -> torch.Tensor:
    """x' = y, y' = -x (x - 1)(x - 2) - (3 - 2x) y: fixed points (0,0), (1,0), (2,0) with Jacobians
    [[0, 1], [-p'(x), -(3 - 2x)]], p'(x) = 3x^2 - 6x + 2: eigenvalues -1, -2 (stable node);
    (-1 +- sqrt 5)/2 (saddle); 1/2 +- i sqrt(7)/2 (unstable focus)."""
    x, y = h[:, 0], h[:, 1]
    return torch.stack([y, -x * (x - 1) * (x - 2) - (3 - 2 * x) * y], 1)


EXPECTED = {0.0: ("stable", [-1.0, -2.0]), 1.0: ("saddle", [(-1 + 5**0.5) / 2, (-1 - 5**0.5) / 2]),
            2.0: ("unstable", [0.5 + 1j * 7**0.5 / 2, 0.5 - 1j * 7**0.5 / 2])}


@pytest.mark.parametrize("dt", [0.05, 0.2])
def test_a_stable_node_a_saddle_and_an_unstable_focus_are_found_with_their_class(dt):
    step = lambda h, u: h + dt * g3(h)                          # noqa: E731
    fp = fixed_points(step, grid((-0.5, -1.0), (2.5, 1.0)), flow=True, dt=dt, **CPU)
    assert fp.sizes["point"] == 3
    assert fp.attrs["time"] == "continuous"
    for i in range(3):
        x = round(float(fp.state[i, 0]), 6)
        cls, lam = EXPECTED[x]
        np.testing.assert_allclose(fp.state[i], [x, 0.0], atol=1e-9)
        assert str(fp.stability[i].values) == cls
        ev = fp.eigenvalue_real[i].values + 1j * fp.eigenvalue_imag[i].values
        np.testing.assert_allclose(np.sort_complex(ev), np.sort_complex(np.array(lam, complex)), atol=1e-8)
    # as a discrete map at small dt the classes agree (|1 + dt lambda| vs 1)
    fmap = fixed_points(step, grid((-0.5, -1.0), (2.5, 1.0)), flow=False, **CPU)
    by_x = {round(float(s), 6): str(c) for s, c in zip(fmap.state[:, 0].values, fmap.stability.values)}
    assert by_x == {x: c for x, (c, _) in EXPECTED.items()}


def test_the_flow_is_classified_not_the_euler_map_at_large_dt():
    """At dt = 1.5 the stable node's Euler multipliers are 1 - 1.5 = -0.5 and 1 - 3 = -2: the map
    calls it a saddle, the flow (eigenvalues -1, -2) a stable node."""
    dt = 1.5
    step = lambda h, u: h + dt * g3(h)                          # noqa: E731
    states = np.array([[0.05, 0.02], [-0.03, 0.01]])
    flow = fixed_points(step, states, flow=True, dt=dt, **CPU)
    euler = fixed_points(step, states, flow=False, **CPU)
    np.testing.assert_allclose(flow.state[0], [0, 0], atol=1e-10)
    assert str(flow.stability[0].values) == "stable" and str(euler.stability[0].values) == "saddle"
    np.testing.assert_allclose(sorted(euler.eigenvalue_real[0].values), [-2.0, -0.5], atol=1e-10)


# ---------------------------------------------------------------------------- line attractor, slow points
def test_a_line_attractor_yields_points_along_the_line():
    v = np.array([1.0, 2.0, -2.0]) / 3.0
    A = np.outer(v, v) + 0.5 * (np.eye(3) - np.outer(v, v))      # eigenvalue 1 along v, 0.5 across
    states = np.random.default_rng(0).normal(size=(40, 3))
    fp = fixed_points(linear(A, np.zeros(3)), states, **CPU)
    X = fp.state.values
    assert fp.sizes["point"] >= 20                               # distinct points, not one
    np.testing.assert_allclose(X - np.outer(X @ v, v), 0.0, atol=1e-8)   # on the line
    s = X @ v
    assert s.max() - s.min() > 1.0                               # spread along it
    assert set(fp.stability.values.astype(str)) == {"marginal"}
    assert (fp.n_marginal.values == 1).all() and (fp.n_unstable.values == 0).all()
    np.testing.assert_allclose(fp.eigenvalue_real.values, np.tile([1.0, 0.5, 0.5], (len(X), 1)), atol=1e-10)


def test_the_ghost_of_a_saddle_node_is_a_slow_point_with_its_speed():
    """x' = x^2 + eps has no fixed point; q is smallest at x = 0, where the speed is eps."""
    eps, dt = 1e-3, 0.1
    step = lambda h, u: h + dt * (h**2 + eps)                   # noqa: E731
    states = np.linspace(-0.3, 0.3, 7)[:, None]
    assert fixed_points(step, states, flow=True, dt=dt, **CPU).sizes["point"] == 0
    fp = fixed_points(step, states, flow=True, dt=dt, slow_q=1e-6, **CPU)
    assert fp.sizes["point"] == 1 and str(fp.kind[0].values) == "slow"
    np.testing.assert_allclose(float(fp.state[0, 0]), 0.0, atol=1e-6)
    np.testing.assert_allclose(float(fp.speed[0]), eps, rtol=1e-6)
    np.testing.assert_allclose(float(fp.q[0]), 0.5 * (dt * eps) ** 2, rtol=1e-6)


# ---------------------------------------------------------------------------- continuous-time rate networks
class RateMap(torch.nn.Module):
    """tau dr/dt = -r + tanh(W r + b), Euler step dt (002 Eq. 1, 5), written here without trainers;
    no analytic Jacobian (autograd is used)."""

    def __init__(self, n: int = 6, gain: float = 1.8, seed: int = 0, tau: float = 100.0, dt: float = 20.0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.W = torch.nn.Parameter(gain * torch.randn(n, n, generator=g, dtype=torch.float64) / n**0.5)
        self.b = torch.nn.Parameter(0.1 * torch.randn(n, generator=g, dtype=torch.float64))
        self.dt, self.tau, self.state_size = dt, tau, n

    def alpha(self):
        return self.dt / self.tau

    def step(self, h, u):
        return h + self.alpha() * (-h + torch.tanh(h @ self.W.T + self.b))


def test_fixed_points_of_a_rate_network_solve_the_flow_equation_and_have_its_eigenvalues():
    """Gain 3, seed 4: scipy's fsolve from 200 starts finds 7 roots of -r + tanh(W r + b)."""
    from scipy.optimize import fsolve

    net = RateMap(gain=3.0, seed=4)
    W, b = net.W.detach().numpy(), net.b.detach().numpy()
    roots = []
    for s in np.random.default_rng(0).normal(size=(200, 6)) * 1.5:
        r = fsolve(lambda r: -r + np.tanh(W @ r + b), s, xtol=1e-13, full_output=True)[0]   # no warnings
        if np.abs(-r + np.tanh(W @ r + b)).max() < 1e-10 and not any(np.linalg.norm(r - x) < 1e-6 for x in roots):
            roots.append(r)
    states = torch.randn(100, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 1.5
    fp = fixed_points(net, states)
    assert fp.attrs["time"] == "continuous" and fp.attrs["dt"] == 20.0 and fp.attrs["jacobian"] == "autograd"
    assert fp.sizes["point"] >= 3
    for i in range(fp.sizes["point"]):
        r = fp.state[i].values
        assert np.abs(-r + np.tanh(W @ r + b)).max() < 1e-6
        assert min(np.linalg.norm(r - x) for x in roots) < 1e-6          # one of scipy's roots
        d = 1 - np.tanh(W @ r + b) ** 2                          # flow Jacobian (-I + diag(f') W) / tau
        expected = np.linalg.eigvals((-np.eye(6) + d[:, None] * W) / net.tau)
        ev = fp.eigenvalue_real[i].values + 1j * fp.eigenvalue_imag[i].values
        np.testing.assert_allclose(np.sort_complex(ev), np.sort_complex(expected), atol=1e-10)
        n_up = int((expected.real > 0).sum())
        assert int(fp.n_unstable[i]) == n_up
        assert str(fp.stability[i].values) == ("stable" if n_up == 0 else "unstable" if n_up == 6 else "saddle")


@pytest.mark.parametrize("form", ["rate", "current"])
def test_trainers_rate_networks_use_their_analytic_jacobian_and_solve_the_flow(form):
    from trainers.models import RateRNN

    net = RateRNN(12, activation="tanh", gain=2.0, form=form, tau_distribution="bimodal", dt=20.0,
                  generator=torch.Generator().manual_seed(3)).double()
    states = net(torch.zeros(4, 80, 1, dtype=torch.float64),
                 h0=torch.randn(4, 12, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    fp = fixed_points(net, states.reshape(-1, 12), n_init=200)
    assert fp.attrs["jacobian"] == "analytic" and fp.attrs["time"] == "continuous"
    assert fp.sizes["point"] >= 1
    W, b = net.effective_W_rec().detach().numpy(), net.b.detach().numpy()
    tau = net.effective_tau().detach().numpy()
    for i in range(fp.sizes["point"]):
        h = fp.state[i].values
        residual = -h + np.tanh(W @ h + b) if form == "rate" else -h + W @ np.tanh(h) + b
        assert np.abs(residual).max() < 1e-6
        d = 1 - np.tanh(W @ h + b) ** 2 if form == "rate" else None
        J = (-np.eye(12) + d[:, None] * W) if form == "rate" else (-np.eye(12) + W * (1 - np.tanh(h) ** 2))
        expected = np.linalg.eigvals(J / tau[:, None])
        ev = fp.eigenvalue_real[i].values + 1j * fp.eigenvalue_imag[i].values
        np.testing.assert_allclose(np.sort_complex(ev), np.sort_complex(expected), atol=1e-9)


def test_analytic_and_autograd_jacobians_agree():
    from trainers.models import LeakyRNN

    net = LeakyRNN(8, generator=torch.Generator().manual_seed(0)).double()
    states = torch.randn(20, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    a = fixed_points(net, states)
    b = fixed_points(net.step, states, jacobian="autograd")
    assert a.attrs["jacobian"] == "analytic" and b.attrs["jacobian"] == "autograd"
    assert a.attrs["time"] == "discrete"
    np.testing.assert_allclose(a.state, b.state, atol=1e-10)
    np.testing.assert_allclose(a.jacobian, b.jacobian, atol=1e-10)


# ---------------------------------------------------------------------------- batched = per-point loop
def test_batched_adam_follows_each_point_exactly_as_alone():
    net = _Map(RateMap(n=5, seed=2), None, None, None)
    h0 = torch.randn(6, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    kw = dict(tol=1e-30, max_iter=150, lr=0.01, lr_final=1e-2, progress=False)
    h, q, _ = _adam(net, h0, None, **kw)
    for i in range(6):
        hi, qi, _ = _adam(net, h0[i:i + 1], None, **kw)
        np.testing.assert_allclose(hi[0], h[i], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(qi[0], q[i], rtol=1e-9, atol=1e-30)


# ---------------------------------------------------------------------------- the flip-flop check
def _flip_flop_batch(B: int, T: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """3-bit flip-flop (Sussillo & Barak 2013, Sec. 3.1): sparse +-1 pulses on 3 channels; each
    output holds the sign of its channel's last pulse."""
    on = torch.rand(B, T, 3, generator=g) < 0.05
    sign = torch.where(torch.rand(B, T, 3, generator=g) < 0.5, -1.0, 1.0)
    u = on * sign
    u[:, 0] = torch.where(torch.rand(B, 3, generator=g) < 0.5, -1.0, 1.0)
    y, held = torch.zeros_like(u), u[:, 0]
    for t in range(T):
        held = torch.where(u[:, t] != 0, u[:, t], held)
        y[:, t] = held
    return u, y


def test_a_trained_3_bit_flip_flop_has_8_stable_fixed_points():
    """Trains a 16-unit tanh RNN (torch.nn.RNN, 200 Adam steps, a few seconds on one CPU core),
    then searches its autonomous map h -> tanh(W h + b) from states of its own trajectories.
    Expected (Sussillo & Barak 2013, Fig. 2): one stable fixed point per memory (8), whose readout
    signs are the 8 corners {-1, 1}^3, and saddles between them."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    rnn, readout = torch.nn.RNN(3, 16, batch_first=True), torch.nn.Linear(16, 3)
    opt = torch.optim.Adam([*rnn.parameters(), *readout.parameters()], lr=1e-2)
    for _ in range(200):
        u, y = _flip_flop_batch(32, 30, g)
        loss = ((readout(rnn(u)[0]) - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    W = rnn.weight_hh_l0.detach().double()
    b = (rnn.bias_hh_l0 + rnn.bias_ih_l0).detach().double()
    with torch.no_grad():
        u, y = _flip_flop_batch(16, 100, g)
        H = rnn(u)[0]
        assert ((readout(H).sign() == y).float().mean()) > 0.97          # it learned the task
    fp = fixed_points(lambda h, x: torch.tanh(h @ W.T + b), H.double().reshape(-1, 16), n_init=256, **CPU)
    stable = fp.state.values[fp.stability.values == "stable"]
    assert len(stable) == 8
    with torch.no_grad():
        corners = readout(torch.as_tensor(stable, dtype=torch.float32)).sign().numpy()
    assert len({tuple(c) for c in corners}) == 8
    assert "saddle" in fp.stability.values


# ---------------------------------------------------------------------------- ensembles
def test_an_ensemble_gets_a_member_dim_padded_to_the_most_points():
    maps = [linear(np.diag([0.5, 0.5]), np.array([1.0, 1.0])), lambda h, u: h + 0.05 * g3(h)]
    states = grid((-0.5, -1.0), (2.5, 1.0))
    fp = fixed_points(maps, states, flow=True, dt=0.05, **CPU)
    assert fp.sizes["member"] == 2 and fp.sizes["point"] == 3
    assert fp.state.dims == ("member", "point", "unit")
    assert list(fp["count"].values[0] > 0) == [True, False, False]
    np.testing.assert_allclose(fp.state[0, 0], [2.0, 2.0], atol=1e-10)
    assert list(fp.stability.values[0]) == ["stable", "", ""]
    assert sorted(fp.stability.values[1]) == ["saddle", "stable", "unstable"]
    assert list(fp.n_initial_per_member.values) == [len(states)] * 2
    one = fixed_points(maps[1], states, flow=True, dt=0.05, **CPU)
    np.testing.assert_allclose(np.sort(fp.state.values[1, :, 0]), np.sort(one.state.values[:, 0]), atol=1e-10)


def test_a_trainers_ensemble_and_member_states():
    from trainers.ensemble import Ensemble
    from trainers.models import RateRNN

    ens = Ensemble([RateRNN(6, activation="tanh", gain=1.5, generator=torch.Generator().manual_seed(k)).double()
                    for k in range(2)])
    states = xr.DataArray(np.random.default_rng(0).normal(size=(2, 3, 10, 6)) * 0.5,
                          dims=("member", "trial", "time", "unit"))
    fp = fixed_points(ens, states)
    assert fp.sizes["member"] == 2 and fp.attrs["time"] == "continuous"
    for k, m in enumerate(ens.members):
        W, b = m.W_rec.detach().numpy(), m.b.detach().numpy()
        ok = fp["count"].values[k] > 0
        for r in fp.state.values[k][ok]:
            assert np.abs(-r + np.tanh(W @ r + b)).max() < 1e-6


# ---------------------------------------------------------------------------- labelled input, plot
def test_a_recording_dataarray_is_flattened_and_padding_dropped():
    A, b = np.diag([0.5, 0.2, 0.1]), np.ones(3)
    act = np.random.default_rng(0).normal(size=(2, 5, 3))
    act[1, 3:] = np.nan                                          # a padded trial
    rec = xr.Dataset({"activity": (("trial", "time", "unit"), act)})
    fp = fixed_points(linear(A, b), rec, **CPU)
    assert fp.attrs["n_initial"] == 8 and int(fp["count"][0]) == 8
    np.testing.assert_allclose(fp.state[0], 1 / (1 - np.diag(A)), atol=1e-10)


def test_inputs_shift_the_fixed_point():
    A = np.diag([0.5, 0.5])
    step = lambda h, u: h @ torch.as_tensor(A).T + u             # noqa: E731
    fp = fixed_points(step, np.zeros((4, 2)), inputs=[1.0, -2.0], **CPU)
    np.testing.assert_allclose(fp.state[0], [2.0, -4.0], atol=1e-10)


def test_plot_shows_trajectories_points_and_unstable_directions():
    import matplotlib

    matplotlib.use("Agg")
    dt = 0.05
    step = lambda h, u: h + dt * g3(h)                          # noqa: E731
    fp = fixed_points(step, grid((-0.5, -1.0), (2.5, 1.0)), flow=True, dt=dt, **CPU)
    traj = [torch.tensor([[0.3, 0.5]], dtype=torch.float64), torch.tensor([[1.8, -0.2]], dtype=torch.float64)]
    runs = []
    for h in traj:
        rows = []
        for _ in range(60):
            h = step(h, None)
            rows.append(h[0].numpy())
        runs.append(rows)
    act = xr.DataArray(np.array(runs), dims=("trial", "time", "unit"))
    ax = plot_fixed_points(fp, act)
    assert len(ax.collections) == 3                             # stable, unstable, saddle
    assert len(ax.lines) == 2 + 1 + 2                            # trajectories, saddle's 1 and focus's 2 directions
    labels = sorted(t.get_text() for t in ax.get_legend().get_texts())
    assert labels == ["saddle (1)", "stable (1)", "unstable (1)"]
    import matplotlib.pyplot as plt

    plt.close("all")


# ---------------------------------------------------------------------------- bad input
class Sized(torch.nn.Module):
    state_size, input_dim = 3, 2

    def __init__(self):
        super().__init__()
        self.W = torch.nn.Parameter(0.5 * torch.eye(3, dtype=torch.float64))

    def step(self, h, u):
        return h @ self.W.T


@pytest.mark.parametrize("call, error, match", [
    (lambda: fixed_points(Sized(), np.zeros((4, 5))), ValueError, r"states have 5 units .* model's state has 3 .*pass states of shape \(point, 3\)"),
    (lambda: fixed_points(linear(np.eye(3) * 0.5, np.zeros(3)), np.zeros((4, 5)), **CPU), ValueError,
     r"step\(h, u\) failed on states of shape \(4, 5\).*pass states \(point, unit\) with the map's number of units"),
    (lambda: fixed_points(lambda h, u: h[:, :2], np.zeros((4, 3)), **CPU), ValueError, r"returned \(4, 2\).*pass states"),
    (lambda: fixed_points(lambda h, u: h * float("nan"), np.zeros((4, 3)), **CPU), ValueError,
     r"returned NaN or inf for 4 of 4 initial states.*fix the map"),
    (lambda: fixed_points(lambda h, u: torch.log(h), np.array([[1.0], [-1.0]]), **CPU), ValueError,
     r"NaN or inf for 1 of 2 .*first: point 1"),
    (lambda: fixed_points(linear(np.eye(2), np.zeros(2)), np.zeros((2, 2)), tol=0, **CPU), ValueError,
     r"tol must be a number > 0 .*e\.g\. 1e-12.*found 0"),
    (lambda: fixed_points(linear(np.eye(2), np.zeros(2)), np.zeros((2, 2)), tol=-1e-9, **CPU), ValueError, "tol must be"),
    (lambda: fixed_points(Sized(), np.zeros((4, 3)), inputs=[1.0]), ValueError, r"model takes 2 .*u\* of shape \(2,\)"),
    (lambda: fixed_points(lambda h, u: 0.5 * h + u, np.zeros((3, 1)), inputs=[[1.0], [3.0], [0.0]], device="cpu"),
     ValueError, r"inputs differ between points.*once per constant input"),
    (lambda: fixed_points(linear(np.eye(2), np.zeros(2)), np.zeros((2, 2)), slow_q=1e-14, **CPU), ValueError,
     "slow_q=1e-14 must exceed tol"),
    (lambda: fixed_points(lambda h, u: h, np.zeros((2, 2)), flow=True, **CPU), ValueError, "needs the Euler step: pass dt="),
    (lambda: fixed_points(lambda h, u: h, np.zeros((2, 2, 2)), **CPU), ValueError, r"expected \(point, unit\)"),
    (lambda: fixed_points(lambda h, u: h, xr.DataArray(np.zeros((2, 2)), dims=("time", "neuron")), **CPU),
     ValueError, "unit_dim="),
    (lambda: fixed_points(lambda h, u: h, np.full((2, 2), np.nan), **CPU), ValueError, "states contain NaN"),
    (lambda: fixed_points(42, np.zeros((2, 2))), TypeError, "step must be a callable"),
    (lambda: fixed_points(lambda h, u: h + torch.randn_like(h), np.zeros((4, 2)), **CPU), ValueError,
     r"different results .*call model\.eval\(\)"),
])
def test_bad_input_gets_a_one_line_error_naming_the_fix(call, error, match):
    with pytest.raises(error, match=match) as info:
        call()
    assert "\n" not in str(info.value)
