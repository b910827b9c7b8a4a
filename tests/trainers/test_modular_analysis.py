"""trainers.modular_analysis (004): parameter-matched baselines, the Eq. 5 perturbation, tasks
solved per head (Fig. 3, 5a-b). Tiny networks; the task's evaluation is replaced where the test
needs known accuracies."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import trainers
from trainers.models import GRU, LeakyRNN, ModularRNN
from trainers.modular_analysis import (
    baseline_config,
    baseline_parameters,
    matched_baseline_units,
    matched_baselines,
    modular_parameters,
    module_weight_conservation,
    perturb,
    perturbation_sweep,
    plot_module_accuracy,
    plot_tasks_solved,
    plot_weight_conservation,
    tasks_solved,
)


def _net(n_modules: int = 3, module_size: int = 4, seed: int = 0) -> ModularRNN:
    return ModularRNN(n_modules * module_size, n_modules=n_modules, n_heads=n_modules,
                      generator=torch.Generator().manual_seed(seed))


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _flat(params) -> torch.Tensor:
    return torch.cat([p.detach().double().flatten() for p in params])


class KnownAccuracies:
    """A stand-in task whose evaluation returns given per-head accuracies (per cent)."""

    name = "known"

    def __init__(self, percent):
        self.percent = np.asarray(percent, dtype=float)
        self.calls = []

    def evaluate(self, model, Ns, *, batch, batches, generator=None):
        self.calls.append(list(Ns))
        return self.percent[:len(Ns)]


# ------------------------------------------------------------------ parameter counts
@pytest.mark.parametrize("ms", [5, 10])
def test_modular_count_equals_the_count_by_hand_from_the_layer_shapes(ms):
    n = 29                                          # modules for N = 2..30
    per_module = ms * ms + ms * 1 + ms + ms + (2 * ms + 2)   # W_rec, W_in, bias, tau, head
    assert modular_parameters(ms, 30) == n * per_module + (n - 1) * ms * ms   # + W_ff of modules 1..28
    # without trainable tau, the tau entries are not counted
    assert modular_parameters(ms, 30, model_options={"train_tau": False}) == n * per_module + (n - 1) * ms * ms - n * ms


@pytest.mark.parametrize("M", [20, 54])
def test_baseline_count_equals_the_count_by_hand(M):
    heads = 29
    # LeakyRNN: tau, W_in (input 1), b_in, b_rec, W_rec, heads (2 classes, with bias)
    assert baseline_parameters(M, 30) == M * M + 4 * M + heads * (2 * M + 2)
    # one module of ModularRNN = 004 Eq. 3: one bias per unit
    assert baseline_parameters(M, 30, baseline_model="modular") == M * M + 3 * M + heads * (2 * M + 2)


def test_matched_units_are_the_closest_count():
    for ms in (5, 15):
        target = modular_parameters(ms, 30)
        M = matched_baseline_units(ms, 30)
        best = min(range(1, 200), key=lambda m: (abs(baseline_parameters(m, 30) - target), m))
        assert M == best
    ds = matched_baselines((5, 10, 15, 20))
    assert ds["units"].values.tolist() == [25, 59, 95, 132]
    assert ds["paper_units"].values.tolist() == [20, 54, 91, 128]
    assert ds["modular_parameters"].values.tolist() == [2208, 7208, 15058, 25758]


def test_baseline_config_is_a_trainable_matched_multi_head_run():
    modular = {"model": "modular", "curriculum": "growth", "units": 5, "module_size": 5, "n_max": 6,
               "seed": 7, "batch": 32, "steps_per_epoch": 3, "max_epochs": 2}
    original = {k: (dict(v) if isinstance(v, dict) else v) for k, v in modular.items()}
    base = baseline_config(modular)
    assert modular == original
    cfg = trainers.TrainConfig.from_dict(base).resolved()
    assert (cfg.model, cfg.curriculum, cfg.seed, cfg.batch, cfg.steps_per_epoch, cfg.max_epochs) == \
        ("leaky", "multi-head", 7, 32, 3, 2)
    assert cfg.units == matched_baseline_units(5, 6)
    assert cfg.model_options["nonlinearity"] == "inside"     # 004's neuron model, not leaky's default
    model = cfg.make_model()
    assert model.readout(model.initial_state(1)).shape[-2] == 5      # heads for N = 2..6
    with pytest.raises(ValueError, match="modular run"):
        baseline_config({"model": "leaky", "units": 8})


# ------------------------------------------------------------------ Eq. 5
@pytest.mark.parametrize("target", ["recurrent", "feedforward", "tau"])
def test_eps_zero_leaves_every_weight_bitwise_unchanged_and_the_accuracy(target):
    net = _net()
    out = perturb(net, target, 0.0, _gen(1))
    assert out is not net
    for (name, p), (name2, q) in zip(net.named_parameters(), out.named_parameters()):
        assert name == name2 and torch.equal(p, q) and p.requires_grad == q.requires_grad
    a = tasks_solved(net, "parity", batches=2, batch=32, generator=_gen(5))
    b = tasks_solved(out, "parity", batches=2, batch=32, generator=_gen(5))
    np.testing.assert_array_equal(a["accuracy"], b["accuracy"])


@pytest.mark.parametrize("target", ["recurrent", "feedforward", "tau"])
def test_perturbation_follows_eq5(target):
    """||W~ - W|| = eps ||W|| over the whole group; the change is isotropic Gaussian: entries of
    sqrt(n) (W~ - W) / (eps ||W||) have mean 0 and variance 1 (tau: |N(0, 1)|, mean sqrt(2/pi));
    the other groups are untouched; the same generator seed gives the same copy."""
    net = _net(n_modules=4, module_size=30)
    name = {"recurrent": "W_rec", "feedforward": "W_ff", "tau": "tau"}[target]
    eps = 0.3
    out = perturb(net, target, eps, _gen(11))
    W, W2 = _flat(getattr(net, name)), _flat(getattr(out, name))
    delta = W2 - W
    assert float(delta.norm() / W.norm()) == pytest.approx(eps, rel=1e-5)
    z = (delta / (eps * W.norm()) * np.sqrt(delta.numel())).numpy()
    if target == "tau":
        assert (z >= 0).all()
        assert z.mean() == pytest.approx(np.sqrt(2 / np.pi), abs=0.05)
        assert (z ** 2).mean() == pytest.approx(1.0, abs=0.01)
    else:
        assert z.mean() == pytest.approx(0.0, abs=0.03)
        assert z.var() == pytest.approx(1.0, abs=0.01)
    for other in {"W_rec", "W_ff", "tau", "W_in", "bias"} - {name}:
        assert torch.equal(_flat(getattr(net, other)), _flat(getattr(out, other)))
    assert torch.equal(_flat(getattr(perturb(net, target, eps, _gen(11)), name)), W2)
    assert not torch.equal(_flat(getattr(perturb(net, target, eps, _gen(12)), name)), W2)


def test_refusals_say_what_is_wrong():
    net = _net()
    with pytest.raises(TypeError, match="ModularRNN.*LeakyRNN.*dynatools.robustness.perturb"):
        perturb(GRU(8, generator=_gen(0)), "recurrent", 0.1)
    with pytest.raises(ValueError, match="target"):
        perturb(net, "W_in", 0.1)
    with pytest.raises(ValueError, match="eps must be a finite number >= 0"):
        perturb(net, "recurrent", -0.1)
    with pytest.raises(ValueError, match="no feed-forward"):
        perturb(_net(n_modules=1), "feedforward", 0.1)
    with pytest.raises(ValueError, match="non-modular.*no feed-forward"):
        perturb(trainers.LeakyRNN(8, generator=_gen(0)), "W_ff", 0.1)
    with pytest.raises(ValueError, match="non-modular"):
        perturbation_sweep(trainers.LeakyRNN(8, generator=_gen(0)), "parity", [0.1], ["feedforward"], 1, 0)
    with pytest.raises(ValueError, match="twice"):
        perturbation_sweep(net, "parity", [0.1], ["recurrent", "W_rec"], 1, 0)
    with pytest.raises(ValueError, match="threshold"):
        tasks_solved(net, KnownAccuracies([99, 99, 99]), threshold=90)


# ------------------------------------------------------------------ tasks solved
def test_tasks_solved_counts_heads_above_the_threshold():
    task = KnownAccuracies([99.0, 95.0, 80.0, 90.0, 91.0])
    net = _net(n_modules=5, module_size=3)
    ds = tasks_solved(net, task, batches=1, batch=8)
    assert task.calls == [[2, 3, 4, 5, 6]]                    # head m answers N = 2 + m
    assert ds["N"].values.tolist() == [2, 3, 4, 5, 6] and ds["head"].values.tolist() == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(ds["accuracy"], [0.99, 0.95, 0.80, 0.90, 0.91])
    assert ds["solved"].values.tolist() == [True, True, False, False, True]   # 0.90 is not > 0.9
    assert int(ds["tasks_solved"]) == 3 and ds.attrs["threshold"] == 0.9
    assert int(tasks_solved(net, task, threshold=0.5, batches=1, batch=8)["tasks_solved"]) == 5


def test_tasks_solved_on_a_hand_built_network():
    """Heads made constant by construction (zero weights, a bias that always picks one class):
    on the same batches, a head that always says 0 and one that always says 1 are right on
    complementary trials (accuracies add up to 1), and the count is the heads above threshold."""
    nets = [_net(n_modules=4, module_size=3) for _ in range(2)]
    for cls, net in enumerate(nets):
        with torch.no_grad():
            for k in range(4):
                net.heads.weight[k].zero_()
                net.heads.bias[k].copy_(torch.tensor([1.0, 0.0] if cls == 0 else [0.0, 1.0]))
    a, b = (tasks_solved(net, "parity", threshold=0.55, batches=4, batch=256, generator=_gen(0)) for net in nets)
    np.testing.assert_allclose(a["accuracy"] + b["accuracy"], 1.0)
    assert int(a["tasks_solved"]) + int(b["tasks_solved"]) == int((a["accuracy"] > 0.55).sum() +
                                                                   (b["accuracy"] > 0.55).sum())
    assert int(tasks_solved(nets[0], "parity", threshold=0.0, batches=4, batch=256, generator=_gen(0))
               ["tasks_solved"]) == 4
    assert int(tasks_solved(nets[0], "parity", threshold=0.99, batches=4, batch=256, generator=_gen(0))
               ["tasks_solved"]) == 0


def test_perturbation_sweep_dataset():
    net = _net(n_modules=3, module_size=4)
    ds = perturbation_sweep(net, "parity", [0.0, 0.5, 3.0], ["recurrent", "feedforward", "tau"], repeats=2,
                            seed=4, batches=1, batch=32)
    assert dict(ds.sizes) == {"target": 3, "epsilon": 3, "repeat": 2, "N": 3}
    assert ds["tasks_solved"].dims == ("target", "epsilon", "repeat")
    # eps = 0 is the unperturbed network, evaluated on the same batches
    for t in ds["target"].values:
        for r in range(2):
            np.testing.assert_array_equal(ds["accuracy"].sel(target=t, epsilon=0.0, repeat=r), ds["base_accuracy"])
    np.testing.assert_array_equal(ds["tasks_solved"], (ds["accuracy"] > 0.9).sum("N"))
    assert ds.attrs["seed"] == 4
    again = perturbation_sweep(net, "parity", [0.0, 0.5, 3.0], ["recurrent", "feedforward", "tau"], repeats=2,
                               seed=4, batches=1, batch=32)
    np.testing.assert_array_equal(ds["accuracy"], again["accuracy"])
    drawn = perturbation_sweep(net, KnownAccuracies([99, 99, 99]), [0.1], ["tau"], repeats=1, batches=1, batch=4)
    assert isinstance(drawn.attrs["seed"], int) and int(drawn["tasks_solved"].sum()) == 3


# ------------------------------------------------------------------ non-modular networks (Fig. 3)
def _leaky(n: int = 6, heads: int = 3, seed: int = 0) -> LeakyRNN:
    return LeakyRNN(n, n_heads=heads, generator=_gen(seed))


@pytest.mark.parametrize("target", ["recurrent", "W_rec", "tau"])
def test_leaky_eps_zero_is_a_bitwise_copy_with_the_same_accuracy(target):
    net = _leaky()
    out = perturb(net, target, 0.0, _gen(1))
    assert out is not net
    for (name, p), (name2, q) in zip(net.named_parameters(), out.named_parameters()):
        assert name == name2 and torch.equal(p, q)
    a = tasks_solved(net, "parity", batches=2, batch=32, generator=_gen(5))
    b = tasks_solved(out, "parity", batches=2, batch=32, generator=_gen(5))
    np.testing.assert_array_equal(a["accuracy"], b["accuracy"])
    ds = perturbation_sweep(net, "parity", [0.0, 0.7], [target], repeats=3, seed=2, batches=1, batch=32)
    for r in range(3):
        np.testing.assert_array_equal(ds["accuracy"].isel(target=0, repeat=r).sel(epsilon=0.0), ds["base_accuracy"])


def _frobenius(tensors) -> float:
    """Frobenius norm by hand: the square root of the sum of squared entries (numpy, float64)."""
    return float(np.sqrt(sum((np.asarray(t.detach(), dtype=np.float64) ** 2).sum() for t in tensors)))


@pytest.mark.parametrize("model, target, name", [
    ("leaky", "recurrent", "W_rec"), ("leaky", "tau", "tau"),
    ("modular", "recurrent", "W_rec"), ("modular", "W_ff", "W_ff"), ("modular", "tau", "tau")])
@pytest.mark.parametrize("eps", [0.05, 0.5, 2.0])
def test_the_perturbation_norm_is_eps_times_the_norm_of_the_group(model, target, name, eps):
    """Eq. 5 in float64: ||W~ - W||_F = eps ||W||_F over the whole group (every module's block
    together), computed entry by entry in the test."""
    net = (_leaky(9) if model == "leaky" else _net(n_modules=3, module_size=5)).double()
    out = perturb(net, target, eps, _gen(3))
    before, after = getattr(net, name), getattr(out, name)
    before = [before] if isinstance(before, torch.Tensor) else list(before)
    after = [after] if isinstance(after, torch.Tensor) else list(after)
    change = _frobenius([b - a for a, b in zip(before, after)])
    assert change == pytest.approx(eps * _frobenius(before), rel=1e-12)


@pytest.mark.parametrize("model", ["leaky", "modular"])
def test_tau_only_increases(model):
    """004: "we also only perturb tau_i in positive direction to avoid tau < 1": every unit's
    tau is at least what it was, for every seed and strength, and the dynamics' tau too."""
    net = _leaky(20) if model == "leaky" else _net(n_modules=4, module_size=5)
    tau = torch.cat([t.detach().flatten() for t in ([net.tau] if model == "leaky" else net.tau)])
    for seed in range(20):
        for eps in (0.01, 0.3, 3.0):
            out = perturb(net, "tau", eps, _gen(seed))
            new = torch.cat([t.detach().flatten() for t in ([out.tau] if model == "leaky" else out.tau)])
            assert (new >= tau).all() and (new > tau).any()
            assert (out.effective_tau() >= net.effective_tau()).all()


def test_sweep_of_a_non_modular_network_and_its_statistics():
    net = _leaky(8, heads=3)
    ds = perturbation_sweep(net, "parity", [0.0, 0.4, 2.0], repeats=4, seed=1, batches=1, batch=32)
    assert ds["target"].values.tolist() == ["recurrent", "tau"]          # no W_ff in a non-modular network
    assert "module" not in ds.coords and ds.attrs["model"] == "LeakyRNN" and ds.attrs["n_modules"] == 0
    assert ds["N"].values.tolist() == [2, 3, 4]                           # one per head
    solved = ds["tasks_solved"].values.astype(float)                      # (target, epsilon, repeat)
    np.testing.assert_allclose(ds["tasks_solved_mean"], solved.sum(2) / 4)
    dev = np.sqrt(((solved - solved.mean(2, keepdims=True)) ** 2).sum(2) / 3)
    np.testing.assert_allclose(ds["tasks_solved_std"], dev)
    np.testing.assert_allclose(ds["tasks_solved_sem"], dev / 2)
    np.testing.assert_allclose(ds["accuracy_mean"], ds["accuracy"].values.mean(2))
    one = perturbation_sweep(net, "parity", [0.4], ["tau"], repeats=1, seed=1, batches=1, batch=32)
    assert np.isnan(one["tasks_solved_sem"]).all()                        # no spread from one repeat


def test_a_target_draws_the_same_directions_whatever_else_is_swept():
    net = _net(n_modules=3, module_size=4)
    both = perturbation_sweep(net, "parity", [0.0, 0.8], ["recurrent", "tau"], repeats=2, seed=9, batches=1, batch=32)
    alone = perturbation_sweep(net, "parity", [0.0, 0.8], ["tau"], repeats=2, seed=9, batches=1, batch=32)
    np.testing.assert_array_equal(both["accuracy"].sel(target="tau"), alone["accuracy"].sel(target="tau"))
    assert both["module"].values.tolist() == [0, 1, 2] and both.attrs["n_modules"] == 3


# ------------------------------------------------------------------ hand-built networks
def _heads_for(net, vectors) -> None:
    """Head k says 1 when ``vectors[k] . h > 0.5`` (None: a constant head that always says 0)."""
    with torch.no_grad():
        for k, v in enumerate(vectors):
            w = torch.zeros_like(net.heads.weight[k])
            b = torch.zeros_like(net.heads.bias[k])
            if v is None:
                b[0] = 1.0
            else:
                w[1] = 10.0 * torch.as_tensor(v, dtype=w.dtype)
                b[1] = -5.0
            net.heads.weight[k].copy_(w)
            net.heads.bias[k].copy_(b)


def hand_built_leaky() -> LeakyRNN:
    """Six ReLU units with tau = 1 (r_t = relu(W r_{t-1} + W_in s_t + b)), wired as a delay line
    and threshold units: c = s_t, d = s_{t-1}, d2 = s_{t-2}, e = [s_t + s_{t-1} >= 2],
    g1 - g2 = [s_t + s_{t-1} + s_{t-2} >= 2]. Then 2-parity = c + d - 2e and 3-parity =
    c + d + d2 - 2 (g1 - g2) exactly: head 0 (N = 2) and head 1 (N = 3) are always right; head 2
    (N = 4) is constant."""
    net = LeakyRNN(6, n_heads=3, tau=1.0, train_tau=False, nonlinearity="inside", activation="relu",
                   generator=_gen(0))
    W = torch.zeros(6, 6)
    W[1, 0] = W[2, 1] = W[3, 0] = 1.0                 # d <- c, d2 <- d, e <- c
    W[4, 0] = W[4, 1] = W[5, 0] = W[5, 1] = 1.0       # g1, g2 <- c + d
    with torch.no_grad():
        net.W_rec.copy_(W)
        net.W_in.copy_(torch.tensor([[1.0], [0.0], [0.0], [1.0], [1.0], [1.0]]))
        net.b_in.copy_(torch.tensor([0.0, 0.0, 0.0, -1.0, -1.0, -2.0]))
        net.b_rec.zero_()
    _heads_for(net, [[1, 1, 0, -2, 0, 0], [1, 1, 1, 0, -2, 2], None])
    return net


def hand_built_modular() -> ModularRNN:
    """Three modules of 5 ReLU units, tau = 1. Module 0: c = s_t, d = s_{t-1}, e = [s_t + s_{t-1}
    >= 2] (2-parity = c + d - 2e); module 1, through W^FF from module 0's previous step: c' = s_t,
    d' = s_{t-1}, d2' = s_{t-2}, g1 - g2 = [s_t + s_{t-1} + s_{t-2} >= 2] (3-parity = c' + d' +
    d2' - 2 (g1 - g2)); module 2 silent with a constant head."""
    net = ModularRNN(15, n_modules=3, n_heads=3, tau=1.0, train_tau=False, activation="relu",
                     generator=_gen(0))
    with torch.no_grad():
        for p in [*net.W_rec, *net.W_ff, *net.W_in, *net.bias]:
            p.zero_()
        net.W_rec[0][1, 0] = net.W_rec[0][2, 0] = 1.0           # d <- c, e <- c
        net.W_in[0][[0, 2], 0] = 1.0
        net.bias[0][2] = -1.0
        net.W_ff[0][1, 0] = net.W_ff[0][2, 1] = 1.0             # d' <- c, d2' <- d (module 0)
        net.W_ff[0][3, 0] = net.W_ff[0][3, 1] = net.W_ff[0][4, 0] = net.W_ff[0][4, 1] = 1.0
        net.W_in[1][[0, 3, 4], 0] = 1.0
        net.bias[1][3], net.bias[1][4] = -1.0, -2.0
        net.W_ff[1][0, 0] = 1.0                                   # module 2 gets something to lose
    _heads_for(net, [[1, 1, -2, 0, 0], [1, 1, 1, -2, 2], None])
    return net


@pytest.mark.parametrize("build", [hand_built_leaky, hand_built_modular])
def test_tasks_solved_of_hand_built_parity_networks(build):
    net = build()
    ds = tasks_solved(net, "parity", batches=4, batch=128, generator=_gen(0))
    assert ds["N"].values.tolist() == [2, 3, 4]
    np.testing.assert_array_equal(ds["accuracy"].values[:2], [1.0, 1.0])       # exact by construction
    assert ds["accuracy"].values[2] < 0.9                                      # a constant answer to 4-parity
    assert int(ds["tasks_solved"]) == 2 and ds["solved"].values.tolist() == [True, True, False]
    sweep = perturbation_sweep(net, "parity", [0.0, 0.01], repeats=2, seed=0, batches=2, batch=64)
    assert int(sweep["base_tasks_solved"]) == 2
    assert (sweep["tasks_solved"].sel(epsilon=0.0) == 2).all()


def test_a_feedforward_perturbation_never_reaches_upstream_modules():
    """004 Fig. 5: "the effect of a perturbation is always downstream". W^FF feeds modules 1 and
    2 only, so module 0's accuracy on N = 2 is exactly the unperturbed one at every strength, while
    a strong perturbation breaks module 1's 3-parity."""
    net = hand_built_modular()
    ds = perturbation_sweep(net, "parity", [0.0, 0.5, 2.0, 8.0], ["feedforward"], repeats=3, seed=0, batches=2,
                            batch=64)
    assert ds["module"].values.tolist() == [0, 1, 2]
    np.testing.assert_array_equal(ds["accuracy"].sel(N=2), 1.0)
    assert float(ds["accuracy"].sel(N=3, epsilon=8.0).min()) < 1.0


# ------------------------------------------------------------------ weight conservation (Fig. 5c)
def test_module_weight_conservation_against_a_direct_computation():
    net = _net(n_modules=4, module_size=5, seed=2)
    with torch.no_grad():
        net.W_rec[2].copy_(3.0 * net.W_rec[1] + 0.5)        # an affine copy (the diagonal is left out)
    ds = module_weight_conservation(net)
    off = ~np.eye(5, dtype=bool)

    def direct(a, b):
        a, b = (np.asarray(x.detach(), dtype=np.float64) for x in (a, b))
        za, zb = ((x - x.mean()) / x.std() for x in (a, b))
        return ((zb - za) ** 2).mean() - (zb - za).mean() ** 2

    expected_rec = [direct(net.W_rec[m - 1][off], net.W_rec[m][off]) for m in (1, 2, 3)]
    np.testing.assert_allclose(ds["recurrent"], expected_rec, rtol=1e-10)
    assert ds["recurrent"].sel(module=2) == pytest.approx(0.0, abs=1e-12)
    assert np.isnan(ds["feedforward"].sel(module=1))
    np.testing.assert_allclose(ds["feedforward"].values[1:], [direct(net.W_ff[0], net.W_ff[1]),
                                                              direct(net.W_ff[1], net.W_ff[2])], rtol=1e-10)
    assert ds.attrs["recurrent_mean"] == pytest.approx(np.mean(expected_rec))
    with pytest.raises(ValueError, match="at least 2"):
        module_weight_conservation(_net(n_modules=1))
    with pytest.raises(TypeError, match="ModularRNN"):
        module_weight_conservation(_leaky())


def test_figures_draw_every_target():
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mod = perturbation_sweep(_net(n_modules=3, module_size=4), "parity", [0.0, 1.0], repeats=2, seed=0, batches=1,
                             batch=16)
    base = perturbation_sweep(_leaky(8), "parity", [0.0, 1.0], repeats=2, seed=0, batches=1, batch=16)
    fig = plot_tasks_solved({"modular": mod, "non-modular": base})
    assert [ax.get_title() for ax in fig.axes] == ["recurrent weights $W^R$", "feed-forward weights $W^{FF}$",
                                                   r"timescales $\tau$ (upward only)"]
    assert len(fig.axes[0].lines) == 2 and len(fig.axes[1].lines) == 1     # W^FF: the modular network only
    fig2 = plot_module_accuracy(mod)
    assert len(fig2.axes[0].lines) == 3 + 1                                # one line per N, and the threshold
    fig3 = plot_weight_conservation(module_weight_conservation(_net(n_modules=3, module_size=4)))
    with pytest.raises(TypeError, match="one perturbation_sweep"):
        plot_module_accuracy({"a": mod})
    for f in (fig, fig2, fig3):
        plt.close(f)


# ------------------------------------------------------------------ trainers modular (CLI)
#: A growth run that solves N = 2 (epoch 5) and N = 3 (epoch 13) and grows a third module, in seconds.
TINY_GROWTH = {"task": "parity", "model": "modular", "curriculum": "growth", "units": 10, "module_size": 10,
               "batch": 32, "steps_per_epoch": 50, "eval_batches": 2, "max_epochs": 14, "n_max": 4, "seed": 0,
               "device": "cpu"}


@pytest.fixture(scope="module")
def growth_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("runs") / "growth"
    trainers.train(dict(TINY_GROWTH), d, progress=False)
    rd = trainers.RunDir(d)
    assert 2 in rd.solved() and rd.latest.model().n_modules >= 2
    return d


@pytest.fixture(scope="module")
def leaky_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("runs") / "leaky"
    trainers.train({"units": 8, "batch": 16, "steps_per_epoch": 4, "eval_batches": 1, "max_epochs": 1, "n_max": 4,
                    "device": "cpu", "seed": 0}, d, progress=False)
    return d


def test_cli_baseline_prints_the_matched_size_and_both_counts(capsys):
    from trainers.cli import main

    assert main(["modular", "baseline", "--module-size", "10"]) == 0
    out = capsys.readouterr().out
    assert "29 modules of 10 units (N = 2..30), 7208 trainable parameters" in out   # the count by hand above
    assert "59 units with 29 heads, 7197 trainable parameters (-11)" in out
    assert "004's pair: 54 units, 6322" in out
    assert main(["modular", "baseline", "--module-size", "5", "--n-max", "6", "-q"]) == 0
    assert capsys.readouterr().out.strip() == str(matched_baseline_units(5, 6))


def test_cli_perturb_writes_a_labelled_file_and_figures(growth_run, tmp_path, capsys):
    import xarray as xr

    from trainers.cli import main

    pytest.importorskip("matplotlib")
    out, fig, mod = tmp_path / "p.nc", tmp_path / "fig.png", tmp_path / "modules.svg"
    argv = ["modular", "perturb", str(growth_run), "--N", "2", "--target", "W_rec", "tau", "--eps", "0", "0.3",
            "--repeats", "2", "--batches", "1", "--batch", "32", "--out", str(out), "--plot", str(fig),
            "--plot-modules", str(mod), "--threads", "1", "--device", "cpu"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "tasks solved, mean ± SEM over repeats" in printed and f"wrote {out}" in printed
    ds = xr.load_dataset(out)
    assert ds["target"].values.tolist() == ["recurrent", "tau"] and ds["epsilon"].values.tolist() == [0.0, 0.3]
    assert ds["accuracy"].dims == ("target", "epsilon", "repeat", "N") and ds["N"].values.tolist() == [2]
    assert ds["module"].values.tolist() == [0]
    assert ds.attrs["checkpoint"].endswith("N002.pt") and ds.attrs["model"] == "ModularRNN"
    assert ds.attrs["seed"] == 0 and ds.attrs["repeats"] == 2
    # the same sweep from Python on the same network: the file holds exactly its numbers
    model = trainers.RunDir(growth_run).checkpoint(2).model()
    direct = perturbation_sweep(model, "parity", [0.0, 0.3], ["W_rec", "tau"], repeats=2, seed=0, Ns=[2], batches=1,
                                batch=32)
    np.testing.assert_array_equal(ds["accuracy"], direct["accuracy"])
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "<svg" in mod.read_text()
    # the latest network, every target by default, quiet
    assert main(["modular", "perturb", str(growth_run), "--eps", "0", "0.3", "--repeats", "1", "--batches", "1",
                 "--batch", "16", "-o", str(tmp_path / "all.nc"), "-q", "--device", "cpu"]) == 0
    assert capsys.readouterr().out == ""
    assert xr.load_dataset(tmp_path / "all.nc")["target"].values.tolist() == ["recurrent", "feedforward", "tau"]


def test_cli_perturb_of_a_non_modular_run(leaky_run, tmp_path, capsys):
    import xarray as xr

    from trainers.cli import main

    assert main(["modular", "perturb", str(leaky_run), "--eps", "0", "0.5", "--repeats", "2", "--batches", "1",
                 "--batch", "16", "-o", str(tmp_path / "l.nc"), "--device", "cpu"]) == 0
    assert "LeakyRNN" in capsys.readouterr().out
    ds = xr.load_dataset(tmp_path / "l.nc")
    assert ds["target"].values.tolist() == ["recurrent", "tau"] and "module" not in ds.coords


@pytest.mark.parametrize("extra, message", [
    (["--target", "W_ff"], "non-modular"),
    (["--eps", "-0.1"], "eps must be a finite number >= 0"),
    (["--repeats", "0"], "--repeats must be an integer >= 1"),
    (["--plot", "{tmp}/fig.txt"], "the suffix sets the format"),
    (["-o", "{tmp}/missing/p.nc"], "does not exist; create it first"),
    (["--plot-modules", "{tmp}/m.png"], "non-modular LeakyRNN"),
    (["--N", "9"], "no checkpoint for N=9"),
])
def test_cli_perturb_errors_are_one_line_messages(leaky_run, tmp_path, capsys, extra, message):
    from trainers.cli import main

    argv = ["modular", "perturb", str(leaky_run), "--repeats", "1", "--batches", "1", "--batch", "8",
            "--device", "cpu", *[a.format(tmp=tmp_path) for a in extra]]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("trainers modular perturb: error: ") and message in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())                       # nothing written


def test_cli_usage_errors(tmp_path, capsys):
    from trainers.cli import main

    for argv, message in ((["modular"], "required: SUBCOMMAND"),
                          (["modular", "perturb", str(tmp_path), "--target", "W_in"], "invalid choice: 'W_in'"),
                          (["modular", "baseline"], "--module-size"),
                          (["modular", "perturb", str(tmp_path / "none"), "--device", "cpu"],
                           "not a trainers run directory")):
        try:
            code = main(argv)
        except SystemExit as exc:                             # argparse's usage errors
            code = exc.code
        assert code == 2
        assert message in capsys.readouterr().err


def test_module_weight_conservation_agrees_with_the_recording_route():
    """The model route equals dynatools' weight_conservation of a modular recording's assembled
    W_rec with its module coordinate (what trainers.record stores)."""
    import xarray as xr

    from dynatools.connectivity import weight_conservation

    net = _net(n_modules=4, module_size=5, seed=3)
    rec = xr.Dataset({"W_rec": (("unit", "unit_pre"), net.recording_weights()["W_rec"])},
                     coords={"unit": np.arange(20), "module": ("unit", net.unit_coords()["module"])})
    other = weight_conservation(rec)
    ours = module_weight_conservation(net)
    np.testing.assert_allclose(ours["recurrent"], other["W_R"], rtol=1e-6)
    np.testing.assert_allclose(ours["feedforward"], other["W_FF"], rtol=1e-6)
