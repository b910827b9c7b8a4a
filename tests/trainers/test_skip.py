"""Training-time methods of 002 Sec. 3 (CD, SCTT, DASC): the simulation against a slow loop
written here from Eq. 5-9, exactness at the base values, the fused backward against autograd,
and the annealing schedules of Sec. 4."""

import math

import pytest
import torch

from trainers.models.rate import RateRNN
from trainers.skip import METHODS, Simulation, anneal


def _net(form="rate", activation="relu", sigma=0.0, seed=0, **kw):
    g = torch.Generator().manual_seed(seed)
    m = RateRNN(12, input_dim=3, dt=5.0, tau_ms=100.0, form=form, activation=activation, sigma=sigma,
                init="002", generator=g, **kw).double()
    return m


def _reference(m, u, h0, method, theta, beta, xi=None):
    """002 Eq. 5-9 step by step: r <- r + dr/dt dt with dr/dt dt = alpha (f(W r + W_in u + b) - r)."""
    W, Win, b = m.effective_W_rec(), m.effective_W_in(), m.b
    alpha = m.alpha()
    f = torch.relu

    def d(r, t, factor=1):
        drive = u[:, t] @ Win.T + b
        if xi is not None:
            drive = drive + torch.sqrt(2.0 / (factor * alpha)) * m.sigma * xi[:, t]
        return factor * alpha * (f(r @ W.T + drive) - r)

    T = u.shape[1]
    r, out = h0, []
    if method == "cd":
        for k in range(math.ceil(T / theta)):
            r = r + d(r, k * theta, theta)                       # Eq. 7
            out.append(r)
        return torch.stack(out, 1)
    for s in range(0, T, theta):
        r_s = r
        for j in range(min(theta, T - s)):
            r = r + d(r, s + j)                                  # Eq. 5 / 6
            out.append(r)
        if s + theta <= T:
            if method == "sctt":
                estimate = r_s                                   # Eq. 8
            else:
                estimate = r_s + theta * d(r_s, s)               # Eq. 9 with Eq. 7's step
            r = (1 - beta) * estimate + beta * r
            out[-1] = r
    return torch.stack(out, 1)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("method,theta,beta", [("sctt", 5, 0.5), ("dasc", 5, 0.5), ("dasc", 4, 0.2),
                                               ("sctt", 1, 0.7), ("cd", 4, 1.0), ("cd", 3, 1.0)])
def test_forward_matches_eq_7_to_9(method, theta, beta, fused):
    m = _net()
    m.fused = fused
    g = torch.Generator().manual_seed(1)
    u = torch.randn(4, 23, 3, generator=g, dtype=torch.float64)
    h0 = torch.rand(4, 12, generator=g, dtype=torch.float64)
    with torch.enable_grad():
        m.W_rec.requires_grad_(True)
        H = m(u, h0, simulation=Simulation(method, theta=theta, beta=beta))
    expected = _reference(m, u, h0, method, theta, beta)
    assert H.shape == expected.shape
    torch.testing.assert_close(H, expected, rtol=1e-10, atol=1e-12)


def test_cd_noise_is_that_of_steps_of_theta_dt():
    m = _net(sigma=0.3)
    m.train()
    g = torch.Generator().manual_seed(2)
    u = torch.randn(3, 12, 3, generator=g, dtype=torch.float64)
    xi = torch.randn(3, 12, 12, generator=g, dtype=torch.float64)
    h0 = torch.zeros(3, 12, dtype=torch.float64)
    H = m(u, h0, noise=xi, simulation=Simulation("cd", theta=4))
    torch.testing.assert_close(H, _reference(m, u, h0, "cd", 4, 1.0, xi=xi), rtol=1e-10, atol=1e-12)


def _loss_and_grads(m, u, h0, sim):
    m.zero_grad()
    H = m(u, h0, simulation=sim)
    loss = (m.readout(H) ** 2).mean() + H.pow(2).mean()
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("sim", [Simulation("cd", theta=1), Simulation("sctt", theta=10, beta=1.0),
                                 Simulation("dasc", theta=10, beta=1.0), Simulation("dasc", theta=1, beta=0.3)])
def test_base_values_are_exactly_the_base_model(sim):
    m = _net(train_tau=True)
    g = torch.Generator().manual_seed(3)
    u = torch.randn(4, 30, 3, generator=g, dtype=torch.float64)
    h0 = torch.rand(4, 12, generator=g, dtype=torch.float64)
    base_loss, base = _loss_and_grads(m, u, h0, None)
    loss, grads = _loss_and_grads(m, u, h0, sim)
    assert abs(float(loss - base_loss)) <= 1e-6 * max(1.0, abs(float(base_loss)))
    for n in base:
        torch.testing.assert_close(grads[n], base[n], rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("form,act", [("rate", "relu"), ("rate", "tanh"), ("current", "softplus")])
@pytest.mark.parametrize("sim", [Simulation("sctt", theta=4, beta=0.4), Simulation("dasc", theta=4, beta=0.4),
                                 Simulation("dasc", theta=7, beta=0.8), Simulation("sctt", theta=1, beta=0.5)])
def test_fused_backward_equals_autograd_through_the_loop(form, act, sim):
    g = torch.Generator().manual_seed(4)
    u = torch.randn(3, 25, 3, generator=g, dtype=torch.float64)
    h0 = torch.rand(3, 12, generator=g, dtype=torch.float64).requires_grad_(True)
    out = {}
    for fused in (True, False):
        m = _net(form=form, activation=act, train_tau=True, dale=True)
        m.fused = fused
        h0.grad = None
        loss, grads = _loss_and_grads(m, u, h0, sim)
        out[fused] = loss, grads, h0.grad.clone()
    torch.testing.assert_close(out[True][0], out[False][0])
    for n in out[False][1]:
        torch.testing.assert_close(out[True][1][n], out[False][1][n], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(out[True][2], out[False][2], rtol=1e-9, atol=1e-12)


def test_fused_skip_runs_under_vmap():
    m = _net()
    g = torch.Generator().manual_seed(5)
    u = torch.randn(2, 3, 16, 3, generator=g, dtype=torch.float64)
    h0 = torch.zeros(2, 3, 12, dtype=torch.float64)
    params = {k: torch.stack([v, v * 0.9]) for k, v in m.named_parameters()}
    sim = Simulation("dasc", theta=4, beta=0.5)

    def one(p, u_k, h_k):
        return torch.func.functional_call(m, p, (u_k, h_k), {"simulation": sim})
    H = torch.func.vmap(one)(params, u, h0)
    for k in range(2):
        with torch.no_grad():
            for name, p in m.named_parameters():
                p.copy_(params[name][k])
        torch.testing.assert_close(H[k], _reference(m, u[k], h0[k], "dasc", 4, 0.5), rtol=1e-9, atol=1e-12)
        H[k].sum().backward(retain_graph=True)


def test_annealing_worked_example_of_sec_4():
    dasc = METHODS["dasc"](skip=40, beta0=0.5, anneal_steps=5, anneal_span=20000)
    phase = 20000 / 6
    betas = [dasc.simulation(int(k * phase) + 1).beta for k in range(6)]
    assert betas == pytest.approx([0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    assert dasc.simulation(0).beta == 0.5 and dasc.simulation(25000).is_base
    assert {dasc.simulation(s).theta for s in range(0, 30000, 997)} == {40}


@pytest.mark.parametrize("n,expected", [(1, [10, 1]), (5, [10, 8, 6, 4, 2, 1]), (10, [10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 1])])
def test_cd_schedule_is_the_authors(n, expected):
    cd = METHODS["cd"](skip=10, anneal_steps=n, anneal_span=1100)
    starts = [math.ceil(k * 1100 / (n + 1)) for k in range(n + 1)]
    assert [cd.simulation(s).theta for s in starts] == expected
    assert cd.simulation(1100).theta == 1


def test_anneal_edges():
    assert anneal(0.2, 1.0, 1, 0, 100) == 0.2 and anneal(0.2, 1.0, 1, 50, 100) == 1.0
    assert anneal(0.2, 1.0, 10, 10**6, 100) == 1.0


@pytest.mark.parametrize("bad", [dict(method="xx"), dict(theta=0), dict(theta=2.5), dict(beta=0.0), dict(beta=1.5)])
def test_simulation_refuses_bad_values(bad):
    with pytest.raises(ValueError):
        Simulation(**bad)
