"""WCRNN (fading-memory paper, Eq. 11, 16-19): residual builders, analytic Jacobians, and the
Lyapunov exponents log r of a weakly coupled network with R = r I (Eq. 13)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dynatools.lyapunov import jacobian_from_step, lyapunov_spectrum
from trainers.models import WCRNN, critical, elman, heterogeneous, orthonormal, rotational


@pytest.mark.parametrize("r", [0.95, 1.0])
def test_weakly_coupled_critical_network_has_exponents_log_r(r):
    net = WCRNN(20, critical(20, r), gamma=0.01, generator=torch.Generator().manual_seed(0)).double()
    u = torch.rand(2, 1500, 1, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    res = lyapunov_spectrum(net.step, net.initial_state(2), u, warmup=100, device="cpu")
    assert res.attrs["jacobian"] == "analytic"
    np.testing.assert_allclose(res.lyapunov.values, np.log(r), atol=0.01)


@pytest.mark.parametrize("kind", ["linear", "A", "B"])
def test_analytic_jacobian_equals_autograd(kind):
    R = orthonormal(6, seed=0) @ heterogeneous(6, 0.95, 0.05, generator=torch.Generator().manual_seed(1))
    net = WCRNN(6, R, gamma=np.linspace(0.01, 0.05, 6), form=kind, generator=torch.Generator().manual_seed(2)).double()
    h = torch.randn(3, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    for u in (torch.rand(3, 1, dtype=torch.float64), None):
        torch.testing.assert_close(net.jacobian(h, u), jacobian_from_step(net.step)(h, u), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", ["linear", "A", "B"])
def test_equations_and_forward(kind):
    net = WCRNN(4, rotational(4, 0.3), gamma=0.1, form=kind, generator=torch.Generator().manual_seed(4)).double()
    h = torch.randn(2, 4, dtype=torch.float64)
    u = torch.rand(2, 1, dtype=torch.float64)
    R, W, Win, b, g = (x.detach().numpy() for x in (net.R, net.W, net.W_in, net.b, net.gamma))
    hn, un = h.numpy(), u.numpy()
    d = hn @ W.T + un @ Win.T + b
    expected = {"linear": hn @ R.T + g * np.tanh(d), "A": np.tanh(hn @ R.T) + g * np.tanh(d),
                "B": np.tanh(hn @ R.T + g * d)}[kind]
    np.testing.assert_allclose(net.step(h, u).detach().numpy(), expected, rtol=1e-12)
    seq = torch.rand(2, 5, 1, dtype=torch.float64)
    H = net(seq, h)
    torch.testing.assert_close(H[:, 0], net.step(h, seq[:, 0]))
    assert net.readout(H[:, -1]).shape == (2, 1, 10)


def test_fused_recurrence_equals_step_by_step_autograd():
    from trainers.models.wcrnn import _LinearRecurrence

    g = torch.Generator().manual_seed(5)
    R = (orthonormal(7, seed=1) @ heterogeneous(7, 0.9, 0.2, generator=g)).double().requires_grad_()
    W = (0.3 * torch.randn(7, 7, generator=g, dtype=torch.float64)).requires_grad_()
    gamma = torch.linspace(0.01, 0.2, 7, dtype=torch.float64).requires_grad_()
    c = torch.randn(9, 3, 7, generator=g, dtype=torch.float64, requires_grad=True)   # (time, batch, unit)
    h0 = torch.randn(3, 7, generator=g, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(9, 3, 7, generator=g, dtype=torch.float64)

    def by_steps():
        h, hs = h0, []
        for t in range(9):
            h = h @ R.T + gamma * torch.tanh(h @ W.T + c[t])
            hs.append(h)
        return torch.stack(hs)

    results = []
    for fn in (by_steps, lambda: _LinearRecurrence.apply(c, h0, W, R, gamma)):
        H = fn()
        results.append((H, torch.autograd.grad((weights * H).sum() + (H**2).sum(), [c, h0, W, R, gamma])))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-12, atol=1e-12)
    for a, b in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_fused_model_matches_unfused_and_refuses_double_backward():
    nets = [WCRNN(5, critical(5, 1.0), gamma=0.05, input_dim=2, n_classes=1, fused=f,
                  generator=torch.Generator().manual_seed(6)).double() for f in (True, False)]
    u = torch.rand(4, 12, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    grads = [torch.autograd.grad(net.readout(net(u)[:, -1]).square().sum(), list(net.parameters()))
             for net in nets]
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    loss = nets[0].readout(nets[0](u)[:, -1]).square().sum()
    with pytest.raises(RuntimeError, match="fused = False"):
        torch.autograd.grad(loss, [nets[0].W], create_graph=True)


def test_residual_builders():
    np.testing.assert_allclose(np.abs(np.linalg.eigvals(rotational(6, [0.1, 0.2, 0.3]).numpy())), 1, atol=1e-6)
    np.testing.assert_allclose(np.sort(np.angle(np.linalg.eigvals(rotational(2, 0.4).numpy()))), [-0.4, 0.4], atol=1e-6)
    Q = orthonormal(5, seed=1).numpy()
    np.testing.assert_allclose(Q @ Q.T, np.eye(5), atol=1e-6)
    d = torch.diagonal(heterogeneous(1000, 0.96, 0.04, generator=torch.Generator().manual_seed(0))).numpy()
    assert d.min() >= 0.94 and d.max() <= 0.98 and abs(d.mean() - 0.96) < 0.002
    assert torch.equal(critical(3, 0.9), 0.9 * torch.eye(3))
    e = elman(3)
    assert torch.equal(e.R, torch.eye(3)) and torch.all(e.gamma == 1.0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n_units=3, residual=np.eye(4)), "residual has shape"),
        (dict(n_units=3, residual=np.eye(3), gamma=[0.1, 0.2]), "gamma"),
        (dict(n_units=3, residual=np.eye(3), form="C"), "form="),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        WCRNN(**kwargs)


def test_rotational_needs_even_units():
    with pytest.raises(ValueError, match="even"):
        rotational(5, 0.1)


@pytest.mark.parametrize("h0, match", [
    (torch.zeros(2, 5), "expected \\(3, 4\\)"),                     # wrong state size
    (torch.zeros(2, 4), "expected \\(3, 4\\)"),                     # wrong batch
    (torch.zeros(3, 4, dtype=torch.float64), "float64"),            # would be cast silently
])
def test_a_wrong_initial_state_is_named(h0, match):
    net = WCRNN(4, critical(4), gamma=0.05, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=match):
        net(torch.zeros(3, 7, 1), h0)
