"""Ablation and perturbation (timescale paper Sec. 4.3, App. F, Eq. 4 and 6) and the App. F
accuracy, against direct computations and the authors' networks."""

from __future__ import annotations


import numpy as np
import pytest
import torch

import trainers
from dynatools.robustness import ablate, ablation_by_tau, perturb, relative_accuracy
from trainers.evaluation import accuracy_scorer, continuous_accuracy
from trainers.models import WCRNN, rotational

from reference_networks import REFERENCE, needs_reference


def _leaky(n=7, seed=0):
    net = trainers.LeakyRNN(n, n_heads=2, generator=torch.Generator().manual_seed(seed)).double()
    with torch.no_grad():
        net.tau.copy_(1.0 + 3.0 * torch.rand(n, generator=torch.Generator().manual_seed(seed + 1)))
    return net


@pytest.mark.parametrize("k, encoding", [(1, "01"), (3, "pm1")])
def test_continuous_accuracy_equals_a_step_by_step_computation(k, encoding):
    net, task = _leaky(), trainers.Parity(k=k, encoding=encoding)
    acc = continuous_accuracy(net, task, 3, head=1, burn_in=10, steps=40, trials=3, seed=5)
    # direct: same bits and initial state, model.step in a loop (each bit held k steps, read out on
    # its last step), parity of the last 3 bits in Python
    bits_seed, h0_seed = np.random.SeedSequence(5).generate_state(2)   # the documented streams
    gen = torch.Generator().manual_seed(int(bits_seed))
    bits = (torch.rand(3, 50, generator=gen) < 0.5).double()
    h = net.initial_state(3, generator=torch.Generator().manual_seed(int(h0_seed)))
    correct = np.zeros(3)
    with torch.no_grad():
        for t in range(50):
            x = bits[:, t:t + 1] if encoding == "01" else 2 * bits[:, t:t + 1] - 1
            for _ in range(k):
                h = net.step(h, x)
            if t >= 10:
                pred = net.readout(h)[:, 1].argmax(-1).numpy()
                label = bits[:, t - 2:t + 1].sum(1).numpy() % 2
                correct += pred == label
    np.testing.assert_array_equal(acc, correct / 40)


def _gated(cls):
    def make():
        net = cls(7, n_heads=2, generator=torch.Generator().manual_seed(4)).double()
        with torch.no_grad():                          # non-zero biases so that ablation matters
            net.b_hh.uniform_(-0.5, 0.5, generator=torch.Generator().manual_seed(5))
        return net
    return make


def _without_units(net, keep):
    """The same architecture with only the ``keep`` units: every weight sliced by hand."""
    n, k = net.n_units, len(keep)
    keep_t = torch.tensor(keep)
    sd = {}
    for name, value in net.state_dict().items():
        if isinstance(net, WCRNN):
            axes = {"R": (0, 1), "W": (0, 1), "W_in": (0,), "b": (0,), "heads.weight": (2,), "gamma": (0,)}.get(name, ())
            for ax in axes:
                value = value.index_select(ax, keep_t)
        elif isinstance(net, trainers.LeakyRNN):
            axes = {"W_rec": (0, 1), "W_in": (0,), "b_in": (0,), "b_rec": (0,), "heads.weight": (2,),
                    "tau": (0,)}.get(name, ())
            for ax in axes:
                value = value.index_select(ax, keep_t)
        else:                                          # gates stacked in blocks of n rows
            gates = net.n_gates
            rows = torch.cat([keep_t + g * n for g in range(gates)])
            if name in ("W_ih", "W_hh", "b_ih", "b_hh"):
                value = value.index_select(0, rows)
            if name == "W_hh":
                value = value.index_select(1, keep_t)
            if name == "heads.weight":
                value = value.index_select(2, keep_t)
        sd[name] = value
    if isinstance(net, WCRNN):
        ref = WCRNN(k, sd["R"], gamma=sd["gamma"].numpy(), n_classes=2)
    elif isinstance(net, trainers.LeakyRNN):
        ref = trainers.LeakyRNN(k, n_heads=2)
    else:
        ref = type(net)(k, n_heads=2)
    ref = ref.double()
    ref.load_state_dict(sd)
    return ref


@pytest.mark.parametrize("make", [_leaky, lambda: WCRNN(6, rotational(6, 0.4), gamma=0.3, n_classes=2,
                                                        generator=torch.Generator().manual_seed(2)).double(),
                                  _gated(trainers.GRU), _gated(trainers.LSTM)],
                         ids=["leaky", "wcrnn", "gru", "lstm"])
def test_ablated_network_equals_the_network_without_those_units(make):
    net = make()
    units, n = [1, 4], net.n_units
    keep = [i for i in range(n) if i not in units]
    ablated = ablate(net, units)
    u = torch.rand(3, 30, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    blocks = net.state_size // n                                 # the LSTM state is [h, c]
    h0 = torch.rand(3, net.state_size, dtype=torch.float64) + 0.5  # ablated units start non-zero
    H = ablated(u, h0)
    cols = [u_ + b * n for b in range(blocks) for u_ in units]
    kept_cols = [k + b * n for b in range(blocks) for k in keep]
    assert torch.all(H[..., cols] == 0)                          # activity exactly zero
    # influence exactly zero: a smaller network built from the kept rows and columns only
    ref = _without_units(net, keep)
    H_ref = ref(u, h0[:, kept_cols])
    torch.testing.assert_close(H[..., kept_cols], H_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ablated.readout(H), ref.readout(H_ref), rtol=1e-12, atol=1e-12)
    # the original is untouched; ablating twice accumulates
    assert not torch.all(net(u, h0)[..., cols] == 0)
    assert ablate(ablated, [0]).ablated_units == [0, 1, 4]


def test_perturbation_follows_eq4_and_is_reproducible():
    net = _leaky()
    W0, tau0 = net.W_rec.detach().clone(), net.tau.detach().clone()
    seen = []

    def score(m):
        seen.append((m.W_rec.detach().clone(), m.tau.detach().clone()))
        return [0.9, 0.8]

    res = perturb(net, [0.0, 0.3], score, target="W_rec", repeats=2, seed=1, progress=False)
    (Wa, _), (Wb, ta), (Wc, _) = seen[1], seen[2], seen[3]          # seen[0]: the unperturbed base
    torch.testing.assert_close(Wa, W0)                               # eps = 0: unchanged
    assert float(torch.linalg.norm(Wb - W0)) == pytest.approx(0.3 * float(torch.linalg.norm(W0)), rel=1e-12)
    torch.testing.assert_close(ta, tau0)                             # only the target moves
    assert not torch.allclose(Wc, Wb)                                # repeat 2: another direction
    np.testing.assert_allclose(res.relative_accuracy.mean("trial"), 1.0)  # constant score
    torch.testing.assert_close(net.W_rec, W0)                        # the model is not modified
    again = perturb(net, [0.0, 0.3], score, repeats=2, seed=1, progress=False)
    assert again.identical(res)


def test_tau_perturbation_never_lowers_a_tau():
    net = _leaky()
    tau0 = net.tau.detach().clone()

    def score(m):
        assert torch.all(m.tau >= tau0)
        return 0.9

    res = perturb(net, [0.0, 0.5, 2.0], score, target="tau", repeats=3, progress=False)
    assert res.attrs["positive"] == 1
    seen = []
    perturb(net, [0.5], lambda m: seen.append(m.tau.detach().clone()) or 0.9, target="tau", repeats=1,
            progress=False)
    assert float(torch.linalg.norm(seen[1] - tau0)) == pytest.approx(0.5 * float(torch.linalg.norm(tau0)), rel=1e-12)


def test_eps_zero_leaves_the_app_f_accuracy_unchanged():
    net, task = _leaky(12, seed=3), trainers.Parity()
    score = accuracy_scorer(task, 2, head=0, burn_in=5, steps=200, trials=4)
    base = score(net)
    shifted = lambda m: 0.5 + 0.5 * score(m)           # noqa: E731  (lift the untrained net above chance)
    res = perturb(net, [0.0], shifted, repeats=2, progress=False)
    np.testing.assert_array_equal(res.accuracy.isel(epsilon=0, repeat=1), 0.5 + 0.5 * base)
    assert float(res.relative_accuracy.mean()) == pytest.approx(1.0, rel=1e-12)
    abl = ablation_by_tau(net, lambda m: [0.9, 0.7], n=3, which="shortest", progress=False)
    np.testing.assert_array_equal(abl.tau.values, np.sort(net.effective_tau().detach().numpy())[:3])


@pytest.mark.parametrize("which", ["longest", "shortest"])
def test_ablation_by_tau_removes_the_right_units_and_scores_them(which):
    net = _leaky(9, seed=4)
    with torch.no_grad():                    # raw tau below 1 for units 6, 2, 7: all clamp to 1
        net.tau.copy_(torch.tensor([2.0, 5.0, 0.3, 1.5, 4.0, 3.0, -0.5, 0.8, 2.5], dtype=torch.float64))
    expected = {"longest": [1, 4, 5], "shortest": [6, 2, 7]}[which]   # ties broken by the raw tau
    task = trainers.Parity()
    score = accuracy_scorer(task, 2, head=0, burn_in=5, steps=120, trials=3)
    shifted = lambda m: 0.5 + 0.5 * score(m)           # noqa: E731  (lift the untrained net above chance)
    res = ablation_by_tau(net, shifted, n=3, which=which, progress=False)
    assert list(res.unit.values) == expected
    assert res.attrs["ties"].startswith("broken by the raw")
    for u in expected:     # each row: the App. F accuracy of the network rebuilt without that unit
        direct = 0.5 + 0.5 * continuous_accuracy(_without_units(net, [i for i in range(9) if i != u]),
                                                 task, 2, head=0, burn_in=5, steps=120, trials=3)
        np.testing.assert_allclose(res.accuracy.sel(unit=u), direct, rtol=0, atol=1e-12)
    base = 0.5 + 0.5 * np.mean(score(net))
    np.testing.assert_allclose(res.relative_accuracy, (res.accuracy - 0.5) / (base - 0.5))


def test_tau_of_an_ablated_model_is_perturbed_upward_only():
    net = ablate(_leaky(), [0])
    seen = []
    res = perturb(net, [1.0], lambda m: seen.append(m.model.tau.detach().clone()) or 0.9, target="model.tau",
                  repeats=2, progress=False)
    assert res.attrs["positive"] == 1
    assert all(torch.all(t >= seen[0]) for t in seen[1:])


def test_relative_accuracy_definition_and_errors():
    assert relative_accuracy(0.5, 0.9) == 0.0
    assert relative_accuracy(0.9, 0.9) == 1.0
    np.testing.assert_allclose(relative_accuracy([0.9, 0.7], 0.9), [1.0, 0.5])
    with pytest.raises(ValueError, match="chance"):
        relative_accuracy(0.7, 0.5)
    with pytest.raises(ValueError, match="per cent"):
        relative_accuracy(70.0, 0.9)
    with pytest.raises(ValueError, match="NaN"):
        relative_accuracy([0.9, np.nan], 0.9)


@pytest.mark.parametrize("call, exc, match", [
    (lambda net: ablate(net, [99]), ValueError, "do not exist"),
    (lambda net: ablate(torch.nn.Linear(3, 3), [0]), TypeError, "unit_axes"),
    (lambda net: perturb(net, [0.1], lambda m: 0.9, target="nope", progress=False), ValueError, "W_rec"),
    (lambda net: perturb(net, [-0.1], lambda m: 0.9, progress=False), ValueError, ">= 0"),
    (lambda net: ablation_by_tau(net, lambda m: 0.9, n=50, progress=False), ValueError, "exceeds"),
    (lambda net: ablation_by_tau(net, lambda m: 0.5, n=2, progress=False), ValueError, "chance"),
    (lambda net: ablation_by_tau(net, lambda m: [0.9, 0.8] if isinstance(m, trainers.LeakyRNN) else [0.9],
                                 n=2, progress=False), ValueError, "same trials"),
    (lambda net: ablation_by_tau(net, lambda m: 0.9, n=2, tau=np.full(7, np.nan), progress=False),
     ValueError, "NaN"),
    (lambda net: perturb(net, [0.1], lambda m: 0.45, progress=False), ValueError, "chance"),
    (lambda net: continuous_accuracy(net, trainers.Parity(), 5, head=0, burn_in=2), ValueError, "burn_in"),
    (lambda net: continuous_accuracy(net, trainers.Parity(), 2, head=7), ValueError, "head"),
])
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call(_leaky())


@needs_reference
def test_authors_cumulative_network_accuracy_and_perturbation():
    net = trainers.import_reference(REFERENCE / "cumulative_parity_network_1" / "rnn_N2_N11")
    score = accuracy_scorer(trainers.Parity(), 11, head=9)           # App. F: 100 + 1000 steps, 10 trials
    assert np.mean(score(net)) >= 0.98
    res = perturb(net, [0.0, 0.5, 1.0, 1.5], score, target="W_rec", repeats=4, seed=0, progress=False)
    curve = res.relative_accuracy.mean(("repeat", "trial")).values
    assert curve[0] == pytest.approx(1.0)
    assert np.all(np.diff(curve) < 0), curve


def test_ablation_by_tau_counts_units_not_state_entries_for_an_lstm():
    net = trainers.LSTM(4, n_heads=1, generator=torch.Generator().manual_seed(0))   # state [h, c]: 8
    res = ablation_by_tau(net, lambda m: [0.9], n=2, tau=np.array([1.0, 4.0, 2.0, 3.0]), progress=False)
    assert list(res.unit.values) == [1, 3]
    with pytest.raises(ValueError, match="exceeds the model's 4 units"):
        ablation_by_tau(net, lambda m: [0.9], n=5, tau=np.ones(4), progress=False)


def test_the_initial_state_is_not_drawn_from_the_bits_stream():
    net = trainers.LeakyRNN(6, n_heads=1, generator=torch.Generator().manual_seed(0))
    drawn = []
    original = net.initial_state

    def spy(batch, generator=None):
        h0 = original(batch, generator=generator)
        drawn.append(h0)
        return h0

    net.initial_state = spy
    continuous_accuracy(net, trainers.Parity(), 2, head=0, burn_in=3, steps=10, trials=4, seed=0)
    # the bits are the first uniforms of their stream; h0 drawn from the same seed would repeat them
    same_stream = net.h0_scale * torch.rand(4, 6, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(drawn[-1], same_stream)
    assert drawn[-1].shape == (4, 6) and torch.all((drawn[-1] >= 0) & (drawn[-1] <= net.h0_scale))
