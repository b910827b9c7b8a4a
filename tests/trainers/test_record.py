"""record(): schema-valid recordings, streamed file equal to the in-memory one, inputs and labels
consistent with the task, weights and tau as the model holds them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dynatools as dt
import trainers
from trainers.tasks import DMS, Parity


def _net(kind="leaky", n=6, heads=3):
    return trainers.MODELS[kind](n, n_heads=heads, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("kind", ["leaky", "gru", "lstm"])
def test_recording_validates_and_carries_the_model(kind):
    net = _net(kind)
    rec = trainers.record(net, "parity", Ns=[2, 3], steps=40, trials=3, burn_in=8, seed=1)
    dt.validate(rec)
    assert rec.activity.shape == (3, 40, 6) and rec.activity.dtype == np.float32
    assert rec.N.values.tolist() == [2, 3] and rec.W_out.shape == (2, 2, 6)
    assert rec.attrs["model"] == kind and rec.attrs["N"] == [2, 3] and rec.attrs["seed"] == 1
    if kind == "leaky":
        np.testing.assert_array_equal(rec.tau.values, net.effective_tau().detach().numpy())
        np.testing.assert_array_equal(rec.W_rec.values, net.recording_weights()["W_rec"])


def test_activity_is_the_model_trajectory_after_burn_in():
    net = _net()
    rec = trainers.record(net, "parity", steps=30, trials=2, burn_in=5, seed=2, chunk=7)
    u = torch.as_tensor(rec.input.values)
    # rebuild the burn-in inputs from the same seed: record draws bits first, then the initial state
    gen = torch.Generator().manual_seed(2)
    bits = (torch.rand(2, 35, generator=gen) < 0.5).float()
    np.testing.assert_array_equal(bits[:, 5:].numpy(), u[..., 0].numpy())
    h0 = net.initial_state(2, generator=gen)
    with torch.no_grad():
        H = net(bits[:, :, None], h0)
    np.testing.assert_allclose(rec.activity.values, H[:, 5:].numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("task", [Parity(), DMS(), Parity(k=3), DMS(k=2, encoding="pm1")])
def test_targets_follow_the_inputs(task):
    rec = trainers.record(_net(), task, Ns=[2, 4], steps=60, trials=2, burn_in=20, seed=3)
    x = rec.input.values[..., 0]
    bits = (x > 0).astype(int) if task.encoding == "pm1" else x.astype(int)
    k = task.k
    checked = 0
    # direct check at the last step of every bit, from the recorded inputs alone
    for trial in range(2):
        steps = np.arange(60)
        for head, N in enumerate([2, 4]):
            for t in steps[(steps + 20 + 1) % k == 0]:
                last = bits[trial, : t + 1][::-1][::k][::-1]  # one sample per bit, ending at t
                if len(last) < N:
                    continue
                expected = last[-N:].sum() % 2 if task.name == "parity" else int(last[-1] == last[-N])
                assert rec.target.values[trial, t, head] == expected
                checked += 1
    assert checked > 20


def test_streamed_file_equals_the_in_memory_recording(tmp_path):
    net = _net()
    mem = trainers.record(net, "dms", Ns=[2, 3, 5], steps=100, trials=2, burn_in=10, seed=4)
    path = tmp_path / "rec.nc"
    disk = trainers.record(net, "dms", Ns=[2, 3, 5], steps=100, trials=2, burn_in=10, seed=4,
                           out=path, chunk=13)
    for name in ("activity", "input", "output", "target"):
        np.testing.assert_array_equal(disk[name].values, mem[name].values)
    assert dt.open_recording(path).attrs["N"] == [2, 3, 5]
    assert not list(tmp_path.glob("*.tmp"))


def test_a_failed_recording_leaves_no_file(tmp_path, monkeypatch):
    net = _net()
    calls = {"n": 0}
    original = type(net).forward

    def failing(self, u, h0=None):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("simulated crash")
        return original(self, u, h0)

    monkeypatch.setattr(type(net), "forward", failing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        trainers.record(net, "parity", steps=100, trials=1, burn_in=5, chunk=10, out=tmp_path / "r.nc", seed=0)
    assert list(tmp_path.iterdir()) == []


def test_trained_network_outputs_match_targets(tmp_path):
    run = trainers.train(dict(units=32, batch=32, steps_per_epoch=50, eval_batches=2, max_epochs=5,
                              n_max=3, device="cpu", seed=3), progress=False)
    assert run.solved
    rec = trainers.record(run.model, "parity", Ns=run.solved[0], steps=3000, trials=2, seed=5)
    accuracy = (rec.output == rec.target).mean().item()
    assert accuracy > 0.9   # evaluated at every step, not only at sequence ends


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"steps": 0}, "steps"),
        ({"trials": -1}, "trials"),
        ({"Ns": [1]}, "N >= 2"),
        ({"Ns": [2, 3, 4, 5]}, "only 3 readout heads"),
        ({"Ns": [20], "burn_in": 5}, "burn_in"),
        ({"task": "xor"}, "task="),
        ({"p": 1.5}, "probability"),
    ],
)
def test_bad_arguments(kwargs, match):
    kw = {"steps": 10, "trials": 1, "burn_in": 5, **kwargs}
    task = kw.pop("task", "parity")
    with pytest.raises(ValueError, match=match):
        trainers.record(_net(), task, **kw)


def test_a_short_burn_in_is_fine_without_outputs():
    # the labels of N = 20 need 20 bits of history; without outputs no label is computed
    rec = trainers.record(_net(), "parity", Ns=[20], steps=10, trials=1, burn_in=5, outputs=False, seed=0)
    assert "target" not in rec and rec.activity.shape == (1, 10, rec.sizes["unit"])
