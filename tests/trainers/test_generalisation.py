"""Generalisation to N + K (004 Fig. 2c, trainers.generalisation): the untrained accuracy against a
direct computation written here, which parameters re-train (bitwise), early stopping, the
non-modular re-training equal to trainers.retrain, determinism and refusals.

The runs are tiny and their curriculum rule is patched (N = 2, 3, 4 "solved" after epochs 1, 2,
3), so that solved checkpoints exist after a second of training; the re-training uses the real
rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

import trainers
from trainers.curricula import Growth, MultiHead
from trainers.generalisation import generalisation, generalisation_runs, plot_generalisation
from trainers.retrain import refit_readout, retrain

COMMON = {"task": "parity", "batch": 32, "steps_per_epoch": 5, "eval_batches": 1, "max_epochs": 4, "n_max": 8,
          "device": "cpu", "seed": 1}
RETRAIN = {"steps_per_epoch": 3, "batch": 16, "eval_batches": 2, "device": "cpu"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A growth run (modules of 4) and a multi-head leaky run (8 units) that "solved" N = 2, 3, 4."""
    root = tmp_path_factory.mktemp("gen")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Growth, "solved", lambda self, acc: len(acc) < 4)
        mp.setattr(MultiHead, "solved", lambda self, acc: len(acc) < 4)
        trainers.train({**COMMON, "model": "modular", "curriculum": "growth", "module_size": 4, "units": 4},
                       root / "modular", progress=False)
        trainers.train({**COMMON, "model": "leaky", "curriculum": "multi-head", "units": 8}, root / "leaky",
                       progress=False)
    return {"modular": root / "modular", "leaky": root / "leaky"}


def _direct_accuracy(model, Ns, head_module, head, *, batch, batches, seed):
    """Per cent of correct trials of one head, computed here: the same sequences as the task's
    evaluation (task.sample from a generator seeded with ``seed``), the head's logits from the
    last state of its module by hand, the parity label as the sum of the last N bits mod 2."""
    task = trainers.Parity()
    g = torch.Generator().manual_seed(seed)
    ms = model.module_size
    correct = 0
    with torch.no_grad():
        for _ in range(batches):
            b = task.sample(Ns, batch, generator=g)
            H = model(b.inputs, model.initial_state(batch, generator=g))
            h = H[:, -1, head_module * ms:(head_module + 1) * ms]
            logits = h @ model.heads.weight[head].T + model.heads.bias[head]
            label = b.bits[:, -Ns[-1]:].sum(1).long() % 2
            correct += int((logits.argmax(-1) == label).sum())
    return 100.0 * correct / (batch * batches)


def test_epochs_zero_is_the_untrained_module_on_n_plus_k(runs):
    net, _, head = trainers.RunDir(runs["modular"]).load(4)
    assert net.n_modules == 3 and head == 2
    ds = generalisation(runs["modular"], 4, [1, 3], epochs=0, seed=5, test_batches=3, **RETRAIN)
    assert ds["N_new"].values.tolist() == [5, 7] and ds.sizes["epoch"] == 0
    for K in (1, 3):
        Ns = [4 + K - 2, 4 + K - 1, 4 + K]              # the module's head is the last of three
        direct = _direct_accuracy(net, Ns, 2, 2, batch=16, batches=3, seed=5)
        assert float(ds["accuracy"].sel(K=K)) == pytest.approx(direct, abs=1e-4)   # float32 per cent
        assert float(ds["initial_accuracy"].sel(K=K)) == pytest.approx(direct, abs=1e-4)
    assert ds["epochs_trained"].values.tolist() == [0, 0]
    # one module and its head: W_rec 16, W_ff 16, W_in 4, bias 4, tau 4, head 2 * 4 + 2
    assert ds.attrs["trainable_parameters"] == 16 + 16 + 4 + 4 + 4 + 10
    assert ds.attrs["architecture"] == "modular" and ds.attrs["train"] == "module" and ds.attrs["N"] == 4


def _module(net, m):
    out = {"W_rec": net.W_rec[m], "W_in": net.W_in[m], "bias": net.bias[m], "tau": net.tau[m],
           "head_w": net.heads.weight[m], "head_b": net.heads.bias[m]}
    if m >= 1:
        out["W_ff"] = net.W_ff[m - 1]
    return out


def test_only_the_last_module_and_its_head_retrain(runs, tmp_path):
    before, _, _ = trainers.RunDir(runs["modular"]).load(4)
    ds = generalisation(runs["modular"], 4, [2], epochs=2, threshold=99.99, run_dir=tmp_path, **RETRAIN)
    assert int(ds["epochs_trained"].sel(K=2)) == 2 and np.isfinite(ds["train_accuracy"]).all()
    after, _, head = trainers.RunDir(tmp_path / "K002").load()
    assert after.n_modules == 3 and head == 2
    for m in (0, 1):                                          # frozen: bitwise unchanged
        for k, v in _module(before, m).items():
            assert torch.equal(_module(after, m)[k], v), (m, k)
    for k, v in _module(before, 2).items():                   # the module that solved N re-trains
        assert not torch.equal(_module(after, 2)[k], v), k
    # the final accuracy is that of the re-trained network, evaluated here
    direct = _direct_accuracy(after, [4, 5, 6], 2, 2, batch=16, batches=2, seed=0)
    assert float(ds["accuracy"].sel(K=2)) == pytest.approx(direct, abs=1e-4)  # float32 per cent; one trial is >= 2%


def test_fresh_head_starts_the_module_with_a_new_head(runs, tmp_path):
    before, _, _ = trainers.RunDir(runs["modular"]).load(4)
    generalisation(runs["modular"], 4, [1], epochs=1, threshold=99.99, fresh_head=True, run_dir=tmp_path, **RETRAIN)
    after, _, _ = trainers.RunDir(tmp_path / "K001").load()
    assert torch.equal(after.W_rec[0], before.W_rec[0])
    assert not torch.equal(after.heads.weight[2], before.heads.weight[2])


def test_deterministic_with_a_seed(runs):
    a, b = (generalisation(runs["modular"], 3, [1, 2], epochs=2, threshold=99.99, seed=7, **RETRAIN)
            for _ in range(2))
    xr.testing.assert_identical(a, b)
    c = generalisation(runs["modular"], 3, [1, 2], epochs=2, threshold=99.99, seed=8, **RETRAIN)
    assert not np.array_equal(a["train_accuracy"].values, c["train_accuracy"].values)


def test_stops_once_the_head_exceeds_the_threshold(runs):
    full = generalisation(runs["modular"], 4, [1], epochs=4, threshold=99.99, seed=0, **RETRAIN)
    curve, before = full["train_accuracy"].sel(K=1).values, full["initial_accuracy"].item()
    assert full["epochs_trained"].item() == 4 and not full["solved"].item()
    # a threshold above the untrained and first-epoch accuracy, below a later epoch's
    threshold = max(before, curve[0])
    stop = int(np.argmax(curve > threshold)) + 1
    assert curve[stop - 1] > threshold and 2 <= stop < 4          # seed 0: 43.75, then 56.25, 71.9, ...
    early = generalisation(runs["modular"], 4, [1], epochs=4, threshold=threshold, seed=0, **RETRAIN)
    assert early["epochs_trained"].item() == stop and early["solved"].item()
    np.testing.assert_array_equal(early["train_accuracy"].sel(K=1).values[:stop], curve[:stop])
    assert np.isnan(early["train_accuracy"].sel(K=1).values[stop:]).all()
    same = generalisation(runs["modular"], 4, [1], epochs=stop, threshold=99.99, seed=0, **RETRAIN)
    assert early["accuracy"].item() == same["accuracy"].item()    # the network after `stop` epochs
    # a head already above the threshold: no training at all
    zero = generalisation(runs["modular"], 4, [1], epochs=3, threshold=0.0, seed=0, **RETRAIN)
    assert zero["epochs_trained"].item() == 0 and zero["solved"].item()
    assert zero["accuracy"].item() == zero["initial_accuracy"].item() == before


def test_non_modular_retrains_the_network_with_a_new_head_as_retrain(runs, tmp_path):
    net, task, _ = trainers.RunDir(runs["leaky"]).load(4)
    ds = generalisation(runs["leaky"], 4, [1], epochs=2, threshold=99.99, seed=3, run_dir=tmp_path, **RETRAIN)
    assert ds.attrs["architecture"] == "non-modular" and ds.attrs["train"] == "network"
    after, _, _ = trainers.RunDir(tmp_path / "K001").load()
    assert after.heads.n_heads == 1 and not torch.equal(after.W_rec, net.W_rec)
    assert ds.attrs["trainable_parameters"] == sum(p.numel() for p in after.parameters())
    cfg = trainers.RunDir(runs["leaky"]).config
    ref = retrain(net, 5, epochs=2, task=task, seed=3, progress=False, optimizer=cfg.optimizer, lr=cfg.lr,
                  momentum=cfg.momentum, nesterov=cfg.nesterov, clip=cfg.clip, **RETRAIN)
    for (k, v), w in zip(ref.model.state_dict().items(), after.state_dict().values()):
        assert torch.equal(v, w), k
    np.testing.assert_array_equal(ds["train_accuracy"].sel(K=1).values, [h["accuracy"]["5"] for h in ref.history])
    g = torch.Generator().manual_seed(3)            # eval_seed defaults to seed
    direct = trainers.evaluate(ref.model.eval(), task, [5], batches=2, batch=16, generator=g)[0]
    assert ds["accuracy"].item() == pytest.approx(float(direct), abs=1e-4)  # float32 per cent; one trial is >= 2%


def test_readout_only_is_refit_readout_and_leaves_the_network(runs):
    net, task, _ = trainers.RunDir(runs["leaky"]).load(3)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    ds = generalisation(runs["leaky"], 3, [1, 2], train="readout", seed=4, **RETRAIN)
    fit = refit_readout(net, [4], task=task, batch=32, seed=4)
    assert ds["accuracy"].sel(K=1).item() == pytest.approx(100 * fit["test_accuracy"].item())
    assert ds["epochs_trained"].values.tolist() == [0, 0] and np.isnan(ds["initial_accuracy"]).all()
    assert ds.attrs["trainable_parameters"] == 2 * 8 + 2
    for k, v in trainers.RunDir(runs["leaky"]).load(3).model.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_several_runs_and_the_plot(runs):
    ds = generalisation_runs([runs["modular"], runs["leaky"]], 3, [1, 2], epochs=1, threshold=99.99, **RETRAIN)
    assert dict(ds["accuracy"].sizes) == {"run": 2, "K": 2}
    assert ds["architecture"].values.tolist() == ["modular", "non-modular"]
    assert ds["train"].values.tolist() == ["module", "network"] and ds.attrs["N"] == 3
    ax = plot_generalisation(ds)
    assert len(ax.get_legend().get_texts()) == 2
    plot_generalisation(generalisation(runs["modular"], 3, [1], epochs=0, **RETRAIN))
    import matplotlib.pyplot as plt

    plt.close("all")


def test_refusals(runs, tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint for N=6"):
        generalisation(runs["modular"], 6, [1], epochs=0, **RETRAIN)
    with pytest.raises(ValueError, match="train"):
        generalisation(runs["leaky"], 3, [1], train="module", **RETRAIN)
    with pytest.raises(ValueError, match="fresh_head is for modular runs"):
        generalisation(runs["leaky"], 3, [1], fresh_head=True, **RETRAIN)
    with pytest.raises(ValueError, match="distinct positive"):
        generalisation(runs["modular"], 3, [1, 1], **RETRAIN)
    with pytest.raises(ValueError, match="K must"):
        generalisation(runs["modular"], 3, [0], **RETRAIN)
    with pytest.raises(ValueError, match="threshold"):
        generalisation(runs["modular"], 3, [1], threshold=0.98 * 1e3, **RETRAIN)
    with pytest.raises(ValueError, match="set by generalisation"):
        generalisation(runs["modular"], 3, [1], max_epochs=3, **RETRAIN)
    generalisation(runs["modular"], 3, [1], epochs=1, threshold=99.99, run_dir=tmp_path / "kept", **RETRAIN)
    with pytest.raises(FileExistsError, match="already holds re-training runs"):
        generalisation(runs["modular"], 3, [1], epochs=1, run_dir=tmp_path / "kept", **RETRAIN)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Growth, "solved", lambda self, acc: len(acc) < 3)
        trainers.train({**COMMON, "max_epochs": 2, "model": "modular", "curriculum": "growth", "module_size": 4,
                        "units": 4, "freeze": "recurrent-after-2"}, tmp_path / "frozen", progress=False)
    with pytest.raises(ValueError, match="freezing variant"):
        generalisation(tmp_path / "frozen", 3, [1], **RETRAIN)
