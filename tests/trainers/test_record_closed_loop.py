"""record() on a closed-loop task (rule-reversal): the recording holds the inputs the network
actually received, its feedback included, and the activity of that closed loop. Ground truth: the
network re-simulated open loop on the recorded inputs reproduces the recorded activity and
outputs, and the feedback of every trial is what the network's own answer earned."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dynatools as dt
import trainers
from trainers.models import RateRNN
from trainers.registry import build
from trainers.tasks import TASKS
from trainers.tasks.rulereversal import PERIOD_NAMES, TRIALS
from trainers.tasks.trials import PAD

#: short periods (5 ms steps): 10 settling steps, then 5 trials of 4 x 10 steps = 210 steps
SHORT = {"settle_ms": 50.0, "sample_ms": 50.0, "response_ms": 50.0, "feedback_ms": 50.0, "wait_ms": 50.0,
         "grace_ms": 10.0}
TRIALS_RECORDED = 4
SEED = 3


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Tiny trained rule-reversal runs: one network and an ensemble of 2 (one step each)."""
    root = tmp_path_factory.mktemp("rr")
    cfg = {"task": "rule-reversal", "device": "cpu", "seed": 0, "units": 8, "batch": 4, "steps_per_epoch": 1,
           "eval_batches": 1, "max_epochs": 1, **SHORT}
    out = {}
    for k in (1, 2):
        trainers.train({**cfg, "members": k}, root / f"k{k}", progress=False)
        ck = trainers.RunDir(root / f"k{k}").checkpoint()
        out[k] = (ck.model("cpu"), ck.config.make_task(), root / f"k{k}")
    return out


def _sampled(task, seed=SEED, trials=TRIALS_RECORDED):
    """The sequences record draws (feedback channels still zero)."""
    return task.recording_stream(trials, None, generator=torch.Generator().manual_seed(seed))


def _open_loop(net, u):
    """The network open loop on given inputs: (rates, softmax outputs (trial, time, class))."""
    with torch.no_grad():
        H = net(torch.as_tensor(u, dtype=torch.float32))
        return net.rates(H).numpy(), net.readout(H, heads=1)[..., 0, :].numpy()


def _check_member(rec_activity, rec_output, rec_input, net, task, batch):
    """Every check on one network's part of a recording."""
    # the key ground truth: open loop on the recorded (realised) inputs gives the recorded activity
    rates, Y = _open_loop(net, rec_input)
    np.testing.assert_allclose(rec_activity, rates, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rec_output[:, :, 0], Y, rtol=1e-5, atol=1e-6)
    # the stimulus channels are the sampled ones; the feedback channels were zero there
    sampled = batch.inputs.numpy()
    np.testing.assert_array_equal(rec_input[..., :2], sampled[..., :2])
    assert not sampled[..., 2:].any()
    # feedback: in the feedback periods only, one channel at a time, held over the period
    is_fb = np.asarray(PERIOD_NAMES)[batch.periods.numpy()] == "feedback"
    fb = rec_input[..., 2:]
    assert not fb[~is_fb].any()
    np.testing.assert_array_equal(fb[is_fb].sum(-1), 1.0)
    assert set(np.unique(fb)) <= {0.0, 1.0}
    # ... and it is what the network's answer at the last response step earned
    correct = batch.info["correct"].numpy()
    feedback = [(start, stop) for kind, start, stop in task.segments() if kind == "feedback"]
    assert len(feedback) == TRIALS
    for i, (start, stop) in enumerate(feedback):
        answer = rec_output[:, start - 1, 0].argmax(-1)
        positive = (answer == correct[:, i]).astype(float)
        np.testing.assert_array_equal(fb[:, start:stop, 0], np.repeat(positive[:, None], stop - start, 1))
        np.testing.assert_array_equal(fb[:, start:stop, 1], 1.0 - fb[:, start:stop, 0])
    # the old (open-loop, feedback-free) simulation differs: the feedback reaches the network
    blind, _ = _open_loop(net, sampled)
    assert np.abs(blind - rec_activity).max() > 1e-4


@pytest.mark.parametrize("members", [1, 2])
def test_a_closed_loop_recording_is_the_network_on_its_own_feedback(runs, members):
    model, task, _ = runs[members]
    rec = trainers.record(model, task, trials=TRIALS_RECORDED, seed=SEED)
    dt.validate(rec)
    u, batch = _sampled(task)
    T = task.steps
    assert rec.sizes["time"] == T and (rec.trial_length.values == T).all()
    assert "feedback" in set(rec.period.values.ravel())
    np.testing.assert_array_equal(rec.period.values, np.asarray(PERIOD_NAMES)[batch.periods.numpy()])
    np.testing.assert_array_equal(rec.task_target.values[:, :, 0], batch.targets.numpy())
    np.testing.assert_array_equal(rec.task_mask.values[:, :, 0], batch.mask.numpy())
    np.testing.assert_array_equal(rec.info_pattern.values, batch.info["pattern"].numpy())
    if members == 1:
        assert rec.activity.dims == ("trial", "time", "unit") and rec.input.dims == ("trial", "time", "input_dim")
        _check_member(rec.activity.values, rec.output.values, rec.input.values, model, task, batch)
        return
    # an ensemble: each member's input holds the feedback on its own answers
    assert rec.activity.dims[0] == "member" and rec.input.dims == ("member", "trial", "time", "input_dim")
    for k, net in enumerate(model.members):
        _check_member(rec.activity.values[k], rec.output.values[k], rec.input.values[k], net, task, batch)
        alone = trainers.record(net, task, trials=TRIALS_RECORDED, seed=SEED)
        np.testing.assert_allclose(rec.activity.values[k], alone.activity.values, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(rec.input.values[k], alone.input.values)


def test_steps_cut_or_pad_the_closed_loop_sequences(runs):
    model, task, _ = runs[1]
    full = trainers.record(model, task, trials=2, seed=SEED)
    T = task.steps
    cut = trainers.record(model, task, trials=2, seed=SEED, steps=T - 25)
    for var in ("activity", "input", "output", "task_target"):
        np.testing.assert_array_equal(cut[var].values, full[var].values[:, : T - 25])
    np.testing.assert_array_equal(cut.period.values, full.period.values[:, : T - 25])
    padded = trainers.record(model, task, trials=2, seed=SEED, steps=T + 5)
    dt.validate(padded)
    assert (padded.trial_length.values == T).all() and (padded.period.values[:, T:] == "pad").all()
    np.testing.assert_array_equal(padded.activity.values[:, :T], full.activity.values)
    assert np.isnan(padded.activity.values[:, T:]).all() and np.isnan(padded.input.values[:, T:]).all()


def test_the_default_task_and_the_cli(runs, tmp_path, capsys):
    """The paper's periods (2200 steps) with an untrained network, and `trainers record RUN_DIR`."""
    from trainers.cli import main

    task = build(TASKS, "rule-reversal", TASKS.resolve_options("rule-reversal", {}))
    net = RateRNN(6, input_dim=4, n_classes=2, output_activation="softmax",
                  generator=torch.Generator().manual_seed(1))
    rec = trainers.record(net, task, trials=2, seed=0)
    _, batch = _sampled(task, seed=0, trials=2)
    assert (batch.periods.numpy() != PAD).all()
    _check_member(rec.activity.values, rec.output.values, rec.input.values, net, task, batch)

    model, short, run_dir = runs[2]
    out = tmp_path / "rr.nc"
    assert main(["record", str(run_dir), "--trials", "2", "--seed", "0", "-q", "-o", str(out), "--device", "cpu"]) == 0
    back = dt.open_recording(out)
    dt.validate(back)
    direct = trainers.record(model, short, trials=2, seed=0)
    np.testing.assert_array_equal(back.activity.values, direct.activity.values)
    np.testing.assert_array_equal(back.input.values, direct.input.values)
    assert back.input.dims == ("member", "trial", "time", "input_dim")
    assert "feedback" in set(back.period.values.ravel())
    assert back.input.values[..., 2:].sum() > 0
