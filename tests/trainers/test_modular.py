"""ModularRNN (004 Eq. 1, 2, 4): the fused block recurrence against a per-module loop written from
the equations, the analytic Jacobian, growth by duplication, freezing, and training on parity."""

from __future__ import annotations

import pytest
import torch

import trainers
from trainers.models import MODELS, ModularRNN


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _net(n_modules: int, module_size: int = 4, seed: int = 0, **kw) -> ModularRNN:
    return ModularRNN(n_modules * module_size, n_modules=n_modules, n_heads=n_modules,
                      generator=_gen(seed), **kw).double()


def _per_module_loop(net: ModularRNN, u: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """004 Eq. 4 and Eq. 1 written per module, straight from the paper (inside placement, leaky
    ReLU): C^m = W^R_m r^m(t-1) (no self-connections) + W^FF_m r^{m-1}(t-1) + W^I_m S(t) + b_m,
    r^m(t) = (1 - 1/tau) r^m(t-1) + [C^m]_alpha / tau."""
    ms, M = net.module_size, net.n_modules
    r = list(h0.split(ms, dim=-1))
    out = []
    for t in range(u.shape[1]):
        new = []
        for m in range(M):
            W = net.W_rec[m] * (1 - torch.eye(ms, dtype=h0.dtype))
            C = r[m] @ W.T + u[:, t] @ net.W_in[m].T + net.bias[m]
            if m > 0:
                C = C + r[m - 1] @ net.W_ff[m - 1].T
            tau = net.tau[m].clamp(min=1.0)
            new.append((1 - 1 / tau) * r[m] + torch.nn.functional.leaky_relu(C, net.negative_slope) / tau)
        r = new
        out.append(torch.cat(r, dim=-1))
    return torch.stack(out, dim=1)


def _inputs(batch: int = 3, T: int = 9, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 2, (batch, T, 1), generator=_gen(seed)).double()


@pytest.mark.parametrize("n_modules", [1, 2, 3, 4])
@pytest.mark.parametrize("fused", [True, False])
def test_fused_forward_equals_the_per_module_equations(n_modules, fused):
    net = _net(n_modules, fused=fused)
    with torch.no_grad():                     # a nonzero diagonal must not act (no self-connections)
        for w in net.W_rec:
            w.diagonal().fill_(5.0)
    u = _inputs()
    h0 = net.initial_state(3, generator=_gen(2)).double()
    with torch.no_grad():
        torch.testing.assert_close(net(u, h0), _per_module_loop(net, u, h0), rtol=1e-6, atol=1e-6)


def test_block_structure_of_the_assembled_matrix():
    net = _net(3)
    W = net.effective_W_rec().detach()
    ms = net.module_size
    assert torch.all(W.diagonal() == 0)
    for i in range(3):
        for j in range(3):
            block = W[i * ms:(i + 1) * ms, j * ms:(j + 1) * ms]
            if i == j:
                assert torch.equal(block, net.W_rec[i].detach() * (1 - torch.eye(ms, dtype=W.dtype)))
            elif i == j + 1:
                assert torch.equal(block, net.W_ff[i - 1].detach())
            else:
                assert torch.all(block == 0)
    rec = net.recording_weights()
    assert rec["W_rec"].shape == (12, 12) and rec["W_in"].shape == (12, 1) and rec["bias"].shape == (12,)
    assert rec["W_out"].shape == (3, 2, 12)
    assert (rec["W_out"][1][:, :ms] == 0).all() and (rec["W_out"][1][:, 2 * ms:] == 0).all()
    coords = net.unit_coords()
    assert coords["module"].tolist() == [0] * 4 + [1] * 4 + [2] * 4 and coords["tau"].shape == (12,)


def test_feedforward_of_module_3_changes_only_modules_3_and_after():
    net = _net(4)
    u, h0 = _inputs(), net.initial_state(3, generator=_gen(2)).double()
    with torch.no_grad():
        before = net(u, h0)
        net.W_ff[2].add_(0.5 * torch.randn(4, 4, generator=_gen(3), dtype=torch.float64))  # module 3's W^FF
        after = net(u, h0)
    ms = net.module_size
    assert torch.equal(before[..., :3 * ms], after[..., :3 * ms])       # modules 0, 1, 2 untouched
    assert not torch.allclose(before[..., 3 * ms:], after[..., 3 * ms:])


def test_head_m_reads_only_module_m():
    net = _net(3)
    h = torch.rand(5, 12, generator=_gen(4), dtype=torch.float64)
    logits = net.readout(h)
    h2 = h.clone()
    h2[:, 4:8] += 1.0                                  # change module 1 only
    changed = (net.readout(h2) - logits).abs().sum((0, 2)) > 0
    assert changed.tolist() == [False, True, False]
    assert net.readout(h, heads=2).shape == (5, 2, 2)
    torch.testing.assert_close(logits, torch.einsum("bu,hcu->bhc", h, net.effective_W_out())
                               + torch.stack(list(net.heads.bias)))


@pytest.mark.parametrize("nonlinearity", ["inside", "outside"])
@pytest.mark.parametrize("activation", ["leaky_relu", "tanh"])
def test_analytic_jacobian_equals_autograd(nonlinearity, activation):
    net = _net(3, nonlinearity=nonlinearity, activation=activation)
    h = torch.rand(2, 12, generator=_gen(5), dtype=torch.float64) - 0.3
    u = torch.rand(2, 1, generator=_gen(6), dtype=torch.float64)
    J = net.jacobian(h, u)
    for b in range(2):
        auto = torch.autograd.functional.jacobian(lambda x: net.step(x[None], u[b:b + 1])[0], h[b])
        torch.testing.assert_close(J[b], auto, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("rec", [True, False])
@pytest.mark.parametrize("ff", [True, False])
@pytest.mark.parametrize("n_modules", [1, 3])
def test_add_module_duplicates_the_last_module_exactly(rec, ff, n_modules):
    net = _net(n_modules)
    parent_rec = net.W_rec[-1].detach().clone()
    parent_ff = net.W_ff[-1].detach().clone() if n_modules > 1 else None
    others = {k: v.clone() for k, v in net.state_dict().items()}
    net.add_module(duplicate_recurrent=rec, duplicate_feedforward=ff, generator=_gen(7))
    assert net.n_modules == n_modules + 1 and net.n_units == 4 * (n_modules + 1) and net.n_heads == n_modules + 1
    assert len(net.W_ff) == n_modules and net.W_rec[-1].dtype == torch.float64
    for k, v in others.items():                        # nothing of the parent network changes
        assert torch.equal(net.state_dict()[k], v)
    new_rec, new_ff = net.W_rec[-1].detach(), net.W_ff[-1].detach()
    assert torch.equal(new_rec, parent_rec) == rec     # bitwise copy, or fresh
    assert torch.all(new_rec.diagonal() == 0)
    if ff and parent_ff is not None:
        assert torch.equal(new_ff, parent_ff)
    else:                                              # fresh (from one module there is no W_ff)
        assert parent_ff is None or not torch.equal(new_ff, parent_ff)
        assert not torch.equal(new_ff, parent_rec)
    assert new_rec.data_ptr() != net.W_rec[-2].data_ptr()   # a copy, not shared storage
    H = net(_inputs())                                 # the grown network runs: 4 more units
    assert H.shape == (3, 9, 4 * (n_modules + 1))


def test_add_module_copies_from_the_last_module_not_the_one_before():
    net = _net(3)
    net.add_module(duplicate_recurrent=True, duplicate_feedforward=True)
    assert torch.equal(net.W_rec[3], net.W_rec[2]) and not torch.equal(net.W_rec[3], net.W_rec[1])
    assert torch.equal(net.W_ff[2], net.W_ff[1]) and not torch.equal(net.W_ff[2], net.W_ff[0])


def test_add_module_keeps_a_head_the_engine_built_beyond_the_modules():
    net = ModularRNN(4, n_modules=1, n_heads=3, generator=_gen(8))
    h = torch.rand(2, 4, generator=_gen(9))
    assert torch.equal(net.readout(h)[:, 1], h @ net.heads.weight[1].T + net.heads.bias[1])  # reads module 0
    head1 = net.heads.weight[1].detach().clone()
    net.add_module(duplicate_recurrent=True, duplicate_feedforward=False)
    assert net.n_heads == 3 and torch.equal(net.heads.weight[1], head1)
    h = torch.rand(2, 8, generator=_gen(9))
    torch.testing.assert_close(net.readout(h)[:, 1], h[:, 4:] @ head1.T + net.heads.bias[1])


@pytest.mark.parametrize("opt", ["adam", "sgd"])
def test_frozen_modules_are_bitwise_unchanged_by_training(opt):
    net = _net(3, seed=10)
    net.add_module(duplicate_recurrent=True, duplicate_feedforward=True)
    net.freeze_modules(3)
    frozen = [net.W_rec[m] for m in range(3)] + [net.W_in[m] for m in range(3)] + [net.bias[m] for m in range(3)] \
        + [net.tau[m] for m in range(3)] + list(net.W_ff[:2]) + [net.heads.weight[k] for k in range(3)] \
        + [net.heads.bias[k] for k in range(3)]
    assert not any(p.requires_grad for p in frozen)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    # the growth curriculum rebuilds its optimizer after growing and freezing; optimizers built over
    # all parameters skip those without gradients
    params = list(net.parameters())
    optimizer = (torch.optim.Adam(params, lr=1e-2, weight_decay=1e-3) if opt == "adam"
                 else torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=1e-3))
    for i in range(4):
        H = net(_inputs(seed=20 + i))
        loss = net.readout(H[:, -1]).logsumexp(-1).sum()     # through all heads
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = net.state_dict()
    trainable_names = {n for n, p in net.named_parameters() if p.requires_grad}
    for name, value in before.items():
        if name in trainable_names:
            assert not torch.equal(after[name], value), name
        else:
            assert torch.equal(after[name], value), name
    assert trainable_names == {"tau.3", "W_in.3", "bias.3", "W_rec.3", "W_ff.2", "heads.weight.3", "heads.bias.3"}
    assert net.n_trainable == 3 * 4 + 2 * 16 + 2 * 4 + 2
    assert net.config()["frozen_modules"] == 3
    net.freeze_modules(0)
    assert all(p.requires_grad for p in net.parameters())


def test_config_rebuilds_a_grown_and_frozen_network():
    from trainers.checkpoint import build_model

    net = _net(2)
    net.add_module(duplicate_recurrent=True, duplicate_feedforward=True)
    net.freeze_modules(2)
    rebuilt = build_model(net.config()).double()
    rebuilt.load_state_dict(net.state_dict())
    assert rebuilt.n_modules == 3 and rebuilt.n_trainable == net.n_trainable
    u = _inputs()
    h0 = net.initial_state(3, generator=_gen(2))
    torch.testing.assert_close(rebuilt(u, h0), net(u, h0))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"n_units": 15, "n_modules": 3, "module_size": 4}, ValueError, r"n_modules \* module_size = 3 \* 4 = 12"),
        ({"n_units": 10, "n_modules": 3}, ValueError, "not a multiple of n_modules=3"),
        ({"n_units": 4, "n_modules": 0}, ValueError, "n_modules"),
        ({"n_units": 4, "frozen_modules": 2}, ValueError, "exceeds n_modules=1"),
        ({"n_units": 4, "nonlinearity": "middle"}, ValueError, "nonlinearity"),
        ({"n_units": 4, "tau": -1.0}, ValueError, "positive"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    n = kwargs.pop("n_units")
    with pytest.raises(error, match=match):
        ModularRNN(n, **kwargs)


def test_add_module_refuses_non_bool_flags():
    with pytest.raises(TypeError, match="True or False"):
        ModularRNN(4).add_module(1, 0)


def test_registered_with_its_options():
    assert MODELS["modular"] is ModularRNN
    opts = MODELS.resolve_options("modular", {"n_modules": 3, "module_size": 5})
    assert opts["n_modules"] == 3 and opts["module_size"] == 5 and opts["nonlinearity"] == "inside"


def test_trains_one_epoch_on_parity_and_reloads(tmp_path):
    cfg = {"task": "parity", "model": "modular", "n_modules": 3, "module_size": 5, "units": 15,
           "n_max": 4, "batch": 16, "steps_per_epoch": 3, "eval_batches": 1, "max_epochs": 1, "seed": 0,
           "device": "cpu"}
    run = trainers.train(cfg, tmp_path / "run", progress=False)
    model = run.model
    assert isinstance(model, ModularRNN) and model.n_modules == 3 and model.n_heads == 3
    loaded = trainers.RunDir(tmp_path / "run").load()
    assert isinstance(loaded.model, ModularRNN) and loaded.model.config() == model.config()
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.model.state_dict().items()):
        assert k == k2 and torch.equal(a.cpu(), b.cpu())


# ---------------------------------------------------------------- the banded fused kernel
def _slow_loop(net: ModularRNN, u: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """004 Eq. 1, 2, 4 per module and per step with autograd, for both placements and every
    activation: C^m = W^R_m r^m (diagonal removed) + W^FF_m r^{m-1} + W^I_m S + b_m; inside
    r^m <- a r^m + f(C^m / tau), outside r^m <- f(a r^m + C^m / tau), a = 1 - 1/tau, tau
    clamped at 1."""
    ms, M = net.module_size, net.n_modules
    eye = torch.eye(ms, dtype=h0.dtype, device=h0.device)
    acts = {"leaky_relu": lambda x: torch.nn.functional.leaky_relu(x, net.negative_slope),
            "relu": torch.relu, "tanh": torch.tanh}
    f = acts[net.activation]
    r = list(h0.split(ms, dim=-1))
    out = []
    for t in range(u.shape[1]):
        new = []
        for m in range(M):
            C = r[m] @ (net.W_rec[m] * (1 - eye)).T + u[:, t] @ net.W_in[m].T + net.bias[m]
            if m > 0:
                C = C + r[m - 1] @ net.W_ff[m - 1].T
            tau = net.tau[m].clamp(min=1.0)
            a = 1 - 1 / tau
            new.append(a * r[m] + f(C / tau) if net.nonlinearity == "inside" else f(a * r[m] + C / tau))
        r = new
        out.append(torch.cat(r, dim=-1))
    return torch.stack(out, dim=1)


def _states_and_grads(net: ModularRNN, forward, u: torch.Tensor, h0: torch.Tensor):
    """States and the gradients of a loss on every step and every head with respect to every
    parameter (None where frozen), h0 and u."""
    u, h0 = u.clone().requires_grad_(True), h0.clone().requires_grad_(True)
    H = forward(u, h0)
    w = torch.linspace(0.5, 1.5, H.shape[1], dtype=H.dtype, device=H.device)[None, :, None]
    loss = (net.readout(H).logsumexp(-1) * w).sum() + (H ** 2).sum()
    params = [p for p in net.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params + [u, h0])
    return H.detach(), dict(zip([n for n, p in net.named_parameters() if p.requires_grad], grads[:-2])), grads[-2:]


def _check_against_loop(net: ModularRNN, u: torch.Tensor, h0: torch.Tensor, blocks: int | None) -> None:
    net.fused, net.block_modules = True, blocks
    Hf, gf, (duf, dhf) = _states_and_grads(net, net, u, h0)
    Hl, gl, (dul, dhl) = _states_and_grads(net, lambda u_, h_: _slow_loop(net, u_, h_), u, h0)
    torch.testing.assert_close(Hf, Hl, rtol=1e-10, atol=1e-12)
    assert gf.keys() == gl.keys()
    for name in gf:
        torch.testing.assert_close(gf[name], gl[name], rtol=1e-9, atol=1e-11, msg=name)
    torch.testing.assert_close(duf, dul, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(dhf, dhl, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("n_modules, blocks", [(1, None), (1, 1), (2, 1), (3, None), (3, 2), (5, 1), (5, 2),
                                               (5, 3), (5, 5), (5, 9), (6, 4)])
def test_banded_kernel_states_and_all_gradients_equal_the_per_module_loop(n_modules, blocks):
    # blocks 2 and 3 of 5 modules and 4 of 6 need zero padding modules in the last block
    net = _net(n_modules, module_size=3, seed=30 + n_modules, input_dim=2)
    with torch.no_grad():
        for w in net.W_rec:                    # the diagonal must not act, nor get a gradient
            w.diagonal().fill_(3.0)
        net.tau[0][0] = 0.5                    # clamped to 1: no gradient
    u = torch.rand(4, 7, 2, generator=_gen(31), dtype=torch.float64)
    h0 = net.initial_state(4, generator=_gen(32))
    _check_against_loop(net, u, h0, blocks)


@pytest.mark.parametrize("nonlinearity", ["inside", "outside"])
def test_banded_kernel_without_gradients_equals_the_loop(nonlinearity):
    net = _net(5, module_size=3, seed=43, nonlinearity=nonlinearity)
    u, h0 = _inputs(), net.initial_state(3, generator=_gen(44))
    with torch.no_grad():                      # nothing is kept for a backward pass
        expected = _slow_loop(net, u, h0)
        for blocks in (1, 2, 5):
            net.block_modules = blocks
            torch.testing.assert_close(net(u, h0), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("nonlinearity", ["inside", "outside"])
@pytest.mark.parametrize("activation", ["leaky_relu", "relu", "tanh"])
def test_banded_kernel_equals_the_loop_for_every_placement_and_activation(nonlinearity, activation):
    net = _net(4, module_size=3, seed=33, nonlinearity=nonlinearity, activation=activation)
    u = torch.rand(3, 6, 1, generator=_gen(34), dtype=torch.float64) - 0.5
    h0 = net.initial_state(3, generator=_gen(35)) - 0.05
    for blocks in (1, 3, 4):
        _check_against_loop(net, u, h0, blocks)


@pytest.mark.parametrize("freeze", ["modules", "recurrent", "feedforward", "all"])
def test_banded_kernel_gradients_with_frozen_modules_and_heads(freeze):
    net = _net(3, module_size=3, seed=36)
    net.add_module(duplicate_recurrent=True, duplicate_feedforward=True, generator=_gen(37))
    net.freeze_modules(4 if freeze == "all" else 2)
    if freeze == "recurrent":
        net.freeze_weights(recurrent=True)
    elif freeze == "feedforward":
        net.freeze_weights(feedforward=True)
    u = torch.rand(3, 6, 1, generator=_gen(38), dtype=torch.float64)
    h0 = net.initial_state(3, generator=_gen(39))
    for blocks in (1, 2, 3, None):
        _check_against_loop(net, u, h0, blocks)   # same trainable set, same gradients
    net.zero_grad(set_to_none=True)
    net.block_modules = 2
    net.readout(net(u, h0.requires_grad_(True))[:, -1]).logsumexp(-1).sum().backward()
    for p in net.parameters():                    # frozen parameters get no gradient at all
        assert (p.grad is not None) == p.requires_grad
    assert h0.grad is not None


def test_banded_and_dense_blocks_equal_the_loop_on_device(device):
    dev = torch.device(device)          # the device fixture (tests/conftest.py): cpu, and cuda if present
    net = _net(5, module_size=4, seed=40).to(dev)
    u = torch.rand(3, 8, 1, generator=_gen(41), dtype=torch.float64).to(dev)
    h0 = net.initial_state(3, generator=torch.Generator(device=dev).manual_seed(42))
    for blocks in (None, 1, 2, 5):
        _check_against_loop(net, u, h0, blocks)


def test_block_size_rule():
    def blocks(n_modules, module_size, **kw):
        return ModularRNN(n_modules * module_size, n_modules=n_modules, module_size=module_size, **kw)

    assert blocks(30, 10).blocks(256) == 5         # about 50 units per block on CPU
    assert blocks(30, 10).blocks() == 5
    assert blocks(30, 5).blocks(256) == 10 and blocks(30, 20).blocks(256) == 2 and blocks(30, 15).blocks(256) == 3
    assert blocks(7, 10).blocks(256) == 4          # 2 blocks of 4 (one padding module), not 5 + 2
    assert blocks(4, 10).blocks(256) == 4          # fewer modules than a block: one dense block
    assert blocks(30, 10).blocks(5) == 30 and blocks(30, 10).blocks(6) == 5   # small batch: dense
    assert blocks(30, 10).blocks(256, "cuda") == 30   # CUDA: one dense matmul per step
    assert blocks(30, 10, block_modules=3).blocks(1) == 3
    assert blocks(30, 10, block_modules=100).blocks(256) == 30
    with pytest.raises(ValueError, match="block_modules"):
        blocks(3, 4, block_modules=0)


def test_fused_modular_refuses_double_backward_with_a_message():
    net = _net(2)
    params = list(net.parameters())

    def hessian_vector(net):
        loss = net.readout(net(_inputs())[:, -1]).logsumexp(-1).sum()
        grads = torch.autograd.grad(loss, params, create_graph=True)
        return torch.autograd.grad(sum(g.sum() for g in grads), params, allow_unused=True)

    with pytest.raises(RuntimeError, match="fused = False"):
        hessian_vector(net)
    net.fused = False                                  # the step loop: double backward works
    assert any(h is not None and h.abs().sum() > 0 for h in hessian_vector(net))
