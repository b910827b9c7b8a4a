"""Models: the leaky RNN's equations (Eq. 1, 5), fused BPTT against autograd, GRU/LSTM against
PyTorch's modules, double backward, the step/forward/readout protocol, parameter counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainers.models import GRU, LSTM, MODELS, LeakyRNN

def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _build(name: str, n_units: int, n_heads: int = 1, seed: int = 0) -> torch.nn.Module:
    """A registered model with its default options, as the engine builds it."""
    options = MODELS.resolve_options(name, {})
    return MODELS[name].from_config({**options, "n_units": n_units, "input_dim": 1, "n_heads": n_heads,
                                     "n_classes": 2}, generator=_gen(seed))


@pytest.mark.parametrize("placement", ["outside", "inside"])
@pytest.mark.parametrize("activation", ["leaky_relu", "relu", "tanh"])
def test_step_matches_the_paper_equations_in_numpy(placement, activation):
    net = LeakyRNN(5, n_heads=2, nonlinearity=placement, activation=activation, negative_slope=0.1,
                   generator=_gen(1)).double()
    with torch.no_grad():
        net.tau[:2] = torch.tensor([0.5, 0.9], dtype=torch.float64)  # below 1: clamped to 1
    h = np.random.default_rng(0).random((3, 5))
    u = np.random.default_rng(1).random((3, 1))
    W = net.W_rec.detach().numpy().copy()
    np.fill_diagonal(W, 0.0)
    tau = np.maximum(net.tau.detach().numpy(), 1.0)
    drive = h @ W.T + u @ net.W_in.detach().numpy().T + net.b_in.detach().numpy() + net.b_rec.detach().numpy()
    f = {"leaky_relu": lambda z: np.where(z >= 0, z, 0.1 * z), "relu": lambda z: np.maximum(z, 0),
         "tanh": np.tanh}[activation]
    a = 1 - 1 / tau
    expected = f(a * h + drive / tau) if placement == "outside" else a * h + f(drive / tau)
    got = net.step(torch.tensor(h), torch.tensor(u)).detach().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("placement", ["outside", "inside"])
@pytest.mark.parametrize("activation", ["leaky_relu", "relu", "tanh"])
def test_fused_forward_and_backward_equal_step_by_step_autograd(device, placement, activation):
    dev = torch.device(device)          # the device fixture (tests/conftest.py): cpu, and cuda if present
    net = LeakyRNN(9, n_heads=3, nonlinearity=placement, activation=activation, generator=_gen(2)).double().to(dev)
    u = torch.rand(4, 13, 1, generator=_gen(3), dtype=torch.float64).to(dev)
    h0 = net.initial_state(4, generator=torch.Generator(device=dev).manual_seed(4)).double()
    params = [net.tau, net.W_rec, net.W_in, net.b_in, net.b_rec, net.heads.weight]
    results = []
    for fused in (True, False):
        net.fused = fused
        h0_ = h0.clone().requires_grad_(True)
        H = net(u, h0_)
        loss = (H**2).sum() + net.readout(H[:, -1], heads=2).logsumexp(-1).sum()
        results.append((H.detach(), torch.autograd.grad(loss, params + [h0_])))
    (Hf, gf), (Ha, ga) = results
    torch.testing.assert_close(Hf, Ha, rtol=1e-12, atol=1e-12)
    for a, b in zip(gf, ga):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_forward_equals_repeated_step():
    net = LeakyRNN(6, generator=_gen(5))
    u = torch.rand(2, 7, 1, generator=_gen(6))
    h = h0 = net.initial_state(2, generator=_gen(7))
    for t in range(7):
        h = net.step(h, u[:, t])
    torch.testing.assert_close(net(u, h0)[:, -1], h)


def test_self_connections_stay_zero_and_get_no_gradient():
    net = LeakyRNN(6, generator=_gen(8))
    with torch.no_grad():
        net.W_rec.fill_diagonal_(5.0)  # masked in the dynamics whatever is stored
    u = torch.rand(2, 5, 1, generator=_gen(9))
    h0 = net.initial_state(2, generator=_gen(10))
    ref = LeakyRNN(6, generator=_gen(8))
    ref.load_state_dict(net.state_dict())
    with torch.no_grad():
        ref.W_rec.fill_diagonal_(0.0)
    torch.testing.assert_close(net(u, h0), ref(u, h0))
    net(u, h0).sum().backward()
    assert torch.all(net.W_rec.grad.diagonal() == 0)
    assert np.all(np.diag(net.recording_weights()["W_rec"]) == 0)


@pytest.mark.parametrize("tau, expected", [(None, None), (3.0, 3.0), (np.arange(1, 5) + 0.5, np.arange(1, 5) + 0.5)])
def test_tau_initialisation(tau, expected):
    net = LeakyRNN(4, tau=tau, generator=_gen(11))
    if expected is None:  # the authors' 1 + U(0, 1)
        many = LeakyRNN(2000, generator=_gen(12)).tau.detach().numpy()
        assert many.min() >= 1 and many.max() < 2 and abs(many.mean() - 1.5) < 0.02
    else:
        np.testing.assert_allclose(net.tau.detach().numpy(), np.broadcast_to(expected, (4,)))


def test_fixed_tau_is_not_trained_and_not_counted():
    trained, fixed = LeakyRNN(10, n_heads=2), LeakyRNN(10, n_heads=2, train_tau=False, tau=1.0)
    # tau 10 + W_in 10 + b_in 10 + W_rec 100 + b_rec 10 + heads 2*(2*10+2)
    assert trained.n_trainable == 10 + 10 + 10 + 100 + 10 + 44
    assert fixed.n_trainable == trained.n_trainable - 10
    fixed(torch.ones(1, 3, 1)).sum().backward()
    assert fixed.tau.grad is None


def test_tau_is_clamped_at_one_in_the_dynamics():
    a, b = LeakyRNN(4, tau=0.3, generator=_gen(13)), LeakyRNN(4, tau=1.0, generator=_gen(13))
    u, h0 = torch.rand(1, 6, 1, generator=_gen(14)), torch.rand(1, 4, generator=_gen(15))
    torch.testing.assert_close(a(u, h0), b(u, h0))


def test_readout_is_one_linear_per_head():
    net = LeakyRNN(7, n_heads=4, n_classes=3, generator=_gen(16))
    h = torch.randn(5, 7, generator=_gen(17))
    logits = net.readout(h)
    assert logits.shape == (5, 4, 3)
    for i in range(4):
        torch.testing.assert_close(logits[:, i], h @ net.heads.weight[i].T + net.heads.bias[i])
    torch.testing.assert_close(net.readout(h, heads=2), logits[:, :2])


def _copy_to_torch(ours, ref):
    with torch.no_grad():
        ref.weight_ih_l0.copy_(ours.W_ih)
        ref.weight_hh_l0.copy_(ours.W_hh)
        ref.bias_ih_l0.copy_(ours.b_ih)
        ref.bias_hh_l0.copy_(ours.b_hh)


def test_gru_equals_torch_gru():
    ours, ref = GRU(6, generator=_gen(18)).double(), torch.nn.GRU(1, 6, batch_first=True).double()
    _copy_to_torch(ours, ref)
    u = torch.rand(3, 9, 1, dtype=torch.float64, generator=_gen(19))
    h0 = torch.rand(3, 6, dtype=torch.float64, generator=_gen(20))
    torch.testing.assert_close(ours(u, h0), ref(u, h0[None])[0], rtol=1e-12, atol=1e-12)


def test_lstm_equals_torch_lstm_and_state_is_h_then_c():
    ours, ref = LSTM(6, generator=_gen(21)).double(), torch.nn.LSTM(1, 6, batch_first=True).double()
    _copy_to_torch(ours, ref)
    u = torch.rand(3, 9, 1, dtype=torch.float64, generator=_gen(22))
    out, (hT, cT) = ref(u)
    states = ours(u)
    torch.testing.assert_close(states[..., :6], out, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(states[:, -1, 6:], cT[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ours.readout(states[:, -1]), ours.readout(hT[0]))


def _hessian_vector_product(model, u):
    params = [p for p in model.parameters() if p.requires_grad]
    loss = model.readout(model(u)[:, -1]).pow(2).sum()
    grads = torch.autograd.grad(loss, params, create_graph=True)
    v = [torch.ones_like(p) for p in params]
    return torch.autograd.grad(sum((g * w).sum() for g, w in zip(grads, v)), params)


@pytest.mark.parametrize("name", ["gru", "lstm", "leaky"])
def test_double_backward(name):
    kw = {"fused": False} if name == "leaky" else {}
    model = MODELS[name](5, n_heads=2, generator=_gen(23), **kw).double()
    hv = _hessian_vector_product(model, torch.rand(2, 6, 1, dtype=torch.float64, generator=_gen(24)))
    assert all(torch.isfinite(h).all() for h in hv) and any(h.abs().sum() > 0 for h in hv)


def test_fused_leaky_refuses_double_backward_with_a_message():
    model = LeakyRNN(5, generator=_gen(25))
    with pytest.raises(RuntimeError, match="fused = False"):
        _hessian_vector_product(model, torch.rand(2, 6, 1, generator=_gen(26)))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_protocol(name):
    """Every registered model follows the written protocol (trainers.protocols.Network)."""
    from trainers.checkpoint import build_model
    from trainers.protocols import OPTIONAL_NETWORK_METHODS, Network

    model = _build(name, 8, n_heads=3, seed=27)
    assert isinstance(model, Network) and model.name == name and model.n_heads == 3
    assert model.n_units == 8 and model.input_dim == 1
    h0 = model.initial_state(4)
    assert h0.shape == (4, model.state_size)
    u = torch.rand(4, 5, 1, generator=_gen(28))
    H = model(u, h0)
    assert H.shape == (4, 5, model.state_size)
    torch.testing.assert_close(model.step(h0, u[:, 0]), H[:, 0])
    assert model.step(h0, None).shape == h0.shape          # autonomous map
    assert model.readout(H).shape == (4, 5, 3, 2)
    assert model.readout(H[:, -1], heads=2).shape == (4, 2, 2)
    assert model.n_trainable == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert model.config()["model"] == name
    rebuilt = build_model(model.config())                 # the architecture rebuilds from config()
    rebuilt.load_state_dict(model.state_dict())
    torch.testing.assert_close(rebuilt(u, h0), H)
    if hasattr(model, "jacobian"):                         # the analytic Jacobian is d step / d h
        h = H[:, -1].detach().double()
        net = model.double()
        auto = torch.func.vmap(torch.func.jacrev(lambda x, v: net.step(x[None], v[None])[0]))(h, u[:, -1].double())
        torch.testing.assert_close(net.jacobian(h, u[:, -1].double()), auto)
    assert set(OPTIONAL_NETWORK_METHODS) >= {m for m in OPTIONAL_NETWORK_METHODS if hasattr(model, m)}


def _tasks_without_files():
    from trainers.tasks import TASKS

    return [n for n in TASKS if "data" not in TASKS.options(n)]


@pytest.mark.parametrize("name", _tasks_without_files())
def test_task_protocol(name):
    """Every registered task that needs no local files follows trainers.protocols.Task."""
    from trainers.protocols import Task
    from trainers.tasks import TASKS

    task = TASKS[name].from_config(TASKS.resolve_options(name, {"length": 12} if name == "adding" else {}))
    assert isinstance(task, Task) and task.config()["task"] == name
    model = _build("leaky", 6, n_heads=2, seed=1)
    if task.input_dim != 1 or task.n_classes != 2:
        model = MODELS["leaky"].from_config({**MODELS.resolve_options("leaky", {}), "n_units": 6,
                                             "input_dim": task.input_dim, "n_heads": 1,
                                             "n_classes": task.n_classes}, generator=_gen(1))
    Ns = [2, 3] if task.uses_N else []
    heads = len(Ns) or 1
    b = next(iter(task.train_batches(Ns, batch=4, steps=1, generator=_gen(2), length_generator=_gen(3),
                                     device=torch.device("cpu"))))
    assert b.inputs.ndim == 3 and b.inputs.shape[0] == 4 and b.inputs.shape[-1] == task.input_dim
    H = model(b.inputs)
    every_step = getattr(task, "time_resolved", False)       # trial tasks: read out at every step
    loss = task.loss(model.readout(H if every_step else H[:, -1], heads=heads), b)
    assert loss.ndim == 0 and torch.isfinite(loss)
    values = task.evaluate(model, Ns, batch=4, batches=1, generator=_gen(4), length_generator=_gen(5))
    assert values.shape == (heads,) and np.isfinite(values).all()
    fixed = task.fixed_batch(Ns, 3, generator=_gen(6), device=torch.device("cpu"))
    again = task.fixed_batch(Ns, 3, generator=_gen(6), device=torch.device("cpu"))
    assert torch.equal(fixed.inputs, again.inputs)
    p = 0.5 if getattr(task, "bit_inputs", False) else None
    stream, labels = task.recording_stream(2, 30, p=p, generator=_gen(7))
    assert stream.shape == (2, 30, task.input_dim)
    if every_step:
        assert labels.periods.shape == (2, 30)            # the trials' period labels
    elif labels is not None:
        assert labels(Ns, torch.arange(30)).shape == (2, 30, len(Ns))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_units": 0}, "n_units"),
        ({"n_units": 4, "nonlinearity": "middle"}, "nonlinearity"),
        ({"n_units": 4, "activation": "gelu"}, "activation"),
        ({"n_units": 4, "negative_slope": -0.1}, "negative_slope"),
        ({"n_units": 4, "tau": [1.0, 2.0]}, "tau has shape"),
        ({"n_units": 2, "tau": [1.0, -2.0]}, "positive"),
        ({"n_units": 4, "n_heads": 0}, "n_heads"),
    ],
)
def test_bad_arguments(kwargs, match):
    n = kwargs.pop("n_units")
    with pytest.raises(ValueError, match=match):
        LeakyRNN(n, **kwargs)


def test_wrong_input_shape_is_a_clear_error():
    with pytest.raises(ValueError, match=r"expected \(batch, time, 1\)"):
        LeakyRNN(4)(torch.zeros(3, 5))


def test_same_generator_gives_the_same_network():
    a, b = LeakyRNN(5, generator=_gen(29)), LeakyRNN(5, generator=_gen(29))
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
def test_fused_inside_derivative_is_exact_for_values_lost_to_rounding(activation):
    """f(z) = 2e-8 vanishes when added to a*h = 0.5 in float32; f'(z) must still be 1."""
    grads = []
    for fused in (True, False):
        net = LeakyRNN(1, nonlinearity="inside", activation=activation, tau=2.0, fused=fused)
        with torch.no_grad():
            net.W_in.fill_(4e-8)
            net.b_in.zero_()
            net.b_rec.zero_()
        net(torch.ones(1, 1, 1), torch.ones(1, 1)).sum().backward()
        grads.append(net.W_in.grad.item())
    assert grads[0] == grads[1] == pytest.approx(0.5)


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("fused", [True, False])
def test_bad_initial_state_is_a_clear_error(name, fused):
    model = _build(name, 4, seed=30)
    if name == "leaky":
        model.fused = fused
    u = torch.zeros(3, 5, 1)
    with pytest.raises(ValueError, match=r"h0 has shape \(1, \d+\); expected \(3, \d+\)"):
        model(u, torch.zeros(1, model.state_size))
    with pytest.raises(ValueError, match="float64"):
        model(u, torch.zeros(3, model.state_size, dtype=torch.float64))


@pytest.mark.parametrize("heads", [0, -1, 4])
def test_readout_rejects_heads_out_of_range(heads):
    with pytest.raises(ValueError, match="has 3 head"):
        LeakyRNN(4, n_heads=3).readout(torch.zeros(2, 4), heads=heads)
