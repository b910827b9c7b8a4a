"""N solved after a fixed number of epochs against trainable parameters (004 Fig. 2b,
trainers.pareto): N_solved against a hand count of a run whose curriculum rule is scripted, the
parameter counts against direct counts on the saved networks and the layer shapes, the front
against a brute-force search."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

import trainers
from trainers.curricula import Growth, MultiHead
from trainers.modular_analysis import baseline_parameters, modular_parameters
from trainers.models import ModularRNN
from trainers.pareto import (grown_parameters, learning_curves, n_solved_after, pareto_front, pareto_table,
                             plot_learning_curves, plot_pareto)

COMMON = {"task": "parity", "batch": 16, "steps_per_epoch": 2, "eval_batches": 1, "device": "cpu", "seed": 0}
#: the rule's answer after epochs 1..7: N = 2 solved after epoch 2, N = 3 after 5, N = 4 after 6
SCRIPT = [False, True, False, False, True, True, False]


def _scripted(mp, cls):
    answers = iter(SCRIPT)
    mp.setattr(cls, "solved", lambda self, acc: next(answers))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pareto")
    out = {}
    for name, cls, cfg in [
        ("modular", Growth, {"model": "modular", "curriculum": "growth", "module_size": 3, "units": 3}),
        ("leaky", MultiHead, {"model": "leaky", "curriculum": "multi-head", "units": 6}),
    ]:
        with pytest.MonkeyPatch.context() as mp:
            _scripted(mp, cls)
            trainers.train({**COMMON, **cfg, "n_max": 9, "max_epochs": 7}, root / name, progress=False)
        out[name] = root / name
    with pytest.MonkeyPatch.context() as mp:                    # finishes its curriculum (N = 3) at epoch 5
        _scripted(mp, Growth)
        trainers.train({**COMMON, "model": "modular", "curriculum": "growth", "module_size": 2, "units": 2,
                        "n_max": 3, "max_epochs": 7}, root / "short", progress=False)
    out["short"] = root / "short"
    return out


# hand count from SCRIPT: epochs 1 -> nothing (n_start - 1 = 1), 2-4 -> 2, 5 -> 3, 6 and later -> 4
HAND = {1: 1, 2: 2, 3: 2, 4: 2, 5: 3, 6: 4, 7: 4, 60: 4}


@pytest.mark.parametrize("epochs", sorted(HAND))
def test_n_solved_after_epochs_is_the_hand_count(runs, epochs):
    ds = pareto_table([runs["modular"], runs["leaky"]], epochs=epochs)
    assert ds["n_solved"].values.tolist() == [HAND[epochs]] * 2
    assert ds["architecture"].values.tolist() == ["modular", "non-modular"]
    assert ds["size"].values.tolist() == [3, 6] and ds["module_size"].values.tolist() == [3, -1]
    assert ds["complete"].values.tolist() == [epochs <= 7] * 2 and not ds["capped"].values.any()
    assert ds["epochs_run"].values.tolist() == [7, 7] and ds.attrs["epochs"] == epochs


def test_parameters_equal_direct_counts_on_the_saved_networks(runs):
    ds = pareto_table([runs["modular"], runs["leaky"]], epochs=6)             # N_solved = 4
    net, _, _ = trainers.RunDir(runs["modular"]).load(4)
    assert net.n_modules == 3
    direct = sum(p.numel() for p in net.parameters())                          # every entry, frozen ones too
    assert int(ds["parameters"].values[0]) == direct == modular_parameters(3, 4)
    # by hand: 3 modules of W_rec 9, W_in 3, bias 3, tau 3, head 2 * 3 + 2; W_ff 9 for modules 1 and 2
    assert direct == 3 * (9 + 3 + 3 + 3 + 8) + 2 * 9
    assert int(ds["model_parameters"].values[0]) == direct
    leaky, _, _ = trainers.RunDir(runs["leaky"]).load(4)
    every = sum(p.numel() for p in leaky.parameters())                         # 8 heads (N = 2..9)
    per_head = 2 * 6 + 2
    assert leaky.heads.n_heads == 8 and int(ds["model_parameters"].values[1]) == every
    # trained up to N = 4: the core (W_rec 36, W_in, b_in, b_rec, tau 6 each) and the heads of N = 2, 3, 4
    assert int(ds["parameters"].values[1]) == every - 5 * per_head == 36 + 4 * 6 + 3 * per_head
    assert int(ds["parameters"].values[1]) == baseline_parameters(6, 4)


def test_nothing_solved_counts_the_starting_network(runs):
    ds = pareto_table([runs["modular"], runs["leaky"]], epochs=1)
    assert ds["n_solved"].values.tolist() == [1, 1]
    assert int(ds["parameters"].values[0]) == modular_parameters(3, 2)         # one module and its head
    assert int(ds["parameters"].values[1]) == baseline_parameters(6, 2)


def test_a_run_that_finished_its_curriculum_is_capped(runs):
    ds = pareto_table([runs["short"]], epochs=60)
    assert int(ds["n_solved"].item()) == 3 and ds["stop_reason"].item() == "target"
    assert ds["epochs_run"].item() == 5 and ds["complete"].item() and ds["capped"].item()
    early = pareto_table([runs["short"]], epochs=4)                            # before it finished
    assert int(early["n_solved"].item()) == 2 and not early["capped"].item()


def test_strict_refuses_runs_that_stopped_early(runs):
    pareto_table([runs["modular"]], epochs=7, strict=True)
    with pytest.raises(ValueError, match="stopped before 8 epochs"):
        pareto_table([runs["modular"], runs["short"]], epochs=8, strict=True)   # short is capped: fine
    with pytest.raises(ValueError, match="given twice"):
        pareto_table([runs["modular"], runs["modular"]], epochs=2)
    with pytest.raises(ValueError, match="runs is empty"):
        pareto_table([], epochs=2)


@pytest.mark.parametrize("freeze, untrained", [("earlier", 0), ("recurrent-after-2", 3 * 16),
                                               ("feedforward-after-3", 2 * 16)])
def test_grown_parameters_leave_out_what_a_freezing_variant_never_trains(freeze, untrained):
    net = ModularRNN(16, n_modules=4, n_heads=4, generator=torch.Generator().manual_seed(0))
    every = sum(p.numel() for p in net.parameters())
    assert grown_parameters(net, freeze=freeze) == every - untrained
    # the first two modules: W_rec, W_in, bias, tau 4 x 4, 4, 4, 4, heads 10 each; W_ff of module 1
    assert grown_parameters(net, 2) == 2 * (16 + 4 + 4 + 4 + 10) + 16 == modular_parameters(4, 3)
    no_tau = ModularRNN(16, n_modules=4, n_heads=4, train_tau=False)
    assert grown_parameters(no_tau) == every - 16


def _brute_front(params, solved):
    keep = []
    for i in range(len(params)):
        dominated = any(params[j] <= params[i] and solved[j] >= solved[i] and
                        (params[j] < params[i] or solved[j] > solved[i]) for j in range(len(params)))
        if not dominated:
            keep.append(i)
    return keep


def test_front_equals_a_brute_force_search():
    rng = np.random.default_rng(0)
    for trial in range(20):
        n = int(rng.integers(1, 12))
        arch = rng.choice(["modular", "non-modular"], n)
        params = rng.integers(1, 8, n)                   # small ranges: many ties
        solved = rng.integers(1, 6, n)
        ds = xr.Dataset({"architecture": ("run", arch), "parameters": ("run", params), "n_solved": ("run", solved)},
                        coords={"run": [f"r{i}" for i in range(n)]})
        front = pareto_front(ds)
        expected = set()
        for a in set(arch):
            idx = np.flatnonzero(arch == a)
            expected |= {f"r{idx[i]}" for i in _brute_front(params[idx], solved[idx])}
        assert set(front["run"].values.tolist()) == expected, trial
        for a in set(arch):                              # sorted by parameters within an architecture
            p = front["parameters"].values[front["architecture"].values == a]
            assert (np.diff(p) >= 0).all()


def test_n_solved_after_and_the_plot(runs):
    h = [{"epoch": e, "Ns": [2, 3][: 1 + (e > 2)], "solved": s} for e, s in zip(range(1, 5), [0, 1, 0, 1])]
    assert [n_solved_after(h, e, 2) for e in range(1, 6)] == [1, 2, 2, 3, 3]
    with pytest.raises(ValueError, match="epochs"):
        n_solved_after(h, 0)
    ds = pareto_table([runs["modular"], runs["leaky"], runs["short"]], epochs=8)
    ax = plot_pareto(ds)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "modular" in labels and "non-modular (stopped early)" in labels
    import matplotlib.pyplot as plt

    plt.close("all")


def test_learning_curves_are_the_hand_count_after_every_epoch(runs):
    ds = learning_curves([runs["modular"], runs["leaky"], runs["short"]], labels=["m", "l", "s"])
    assert ds["n_solved"].dims == ("run", "epoch") and ds["epoch"].values.tolist() == list(range(1, 8))
    for i in (0, 1):
        assert ds["n_solved"].values[i].tolist() == [HAND[e] for e in range(1, 8)]
    short = ds["n_solved"].values[2]               # finished N = 3 at epoch 5: NaN afterwards
    assert short[:5].tolist() == [1, 2, 2, 2, 3] and np.isnan(short[5:]).all()
    assert ds["architecture"].values.tolist() == ["modular", "non-modular", "modular"]
    assert ds["size"].values.tolist() == [3, 6, 2] and ds["label"].values.tolist() == ["m", "l", "s"]
    ax = plot_learning_curves(ds)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["m", "l", "s"]
    with pytest.raises(ValueError, match="one label per run"):
        learning_curves([runs["modular"]], labels=["a", "b"])
    import matplotlib.pyplot as plt

    plt.close("all")
