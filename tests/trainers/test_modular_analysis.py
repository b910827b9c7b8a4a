"""trainers.modular_analysis (004): parameter-matched baselines, the Eq. 5 perturbation, tasks
solved per head (Fig. 3, 5a-b). Tiny networks; the task's evaluation is replaced where the test
needs known accuracies."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import trainers
from trainers.models import ModularRNN
from trainers.modular_analysis import (
    baseline_config,
    baseline_parameters,
    matched_baseline_units,
    matched_baselines,
    modular_parameters,
    perturb,
    perturbation_sweep,
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
    with pytest.raises(TypeError, match="ModularRNN.*dynatools.robustness.perturb"):
        perturb(trainers.LeakyRNN(8, generator=_gen(0)), "recurrent", 0.1)
    with pytest.raises(ValueError, match="target"):
        perturb(net, "W_in", 0.1)
    with pytest.raises(ValueError, match="eps must be a finite number >= 0"):
        perturb(net, "recurrent", -0.1)
    with pytest.raises(ValueError, match="no feed-forward"):
        perturb(_net(n_modules=1), "feedforward", 0.1)
    with pytest.raises(TypeError, match="ModularRNN"):
        perturbation_sweep(trainers.LeakyRNN(8, generator=_gen(0)), "parity", [0.1], ["recurrent"], 1, 0)
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
