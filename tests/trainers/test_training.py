"""Training loop: determinism, checkpoints, exact resume after SIGKILL, errors before training,
and (slow) the curriculum comparison of the timescale paper on a small CPU network."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

import dynatools as dt
import trainers
from trainers.checkpoint import CheckpointError, read_checkpoint, save_checkpoint

TINY = dict(units=16, batch=16, steps_per_epoch=5, eval_batches=2, max_epochs=3, n_max=5,
            device="cpu", seed=3)


def test_same_seed_gives_an_identical_loss_trace():
    a = trainers.train(TINY, progress=False)
    b = trainers.train(TINY, progress=False)
    c = trainers.train({**TINY, "seed": 4}, progress=False)
    assert a.losses == b.losses
    assert a.losses != c.losses
    for (k, va), vb in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(va, vb), k


def test_run_directory_contents(tmp_path):
    run = trainers.train({**TINY, "max_epochs": 2}, tmp_path / "run", progress=False)
    d = tmp_path / "run"
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["seed"] == 3 and cfg["optimizer"] == "sgd" and cfg["n_heads"] == 4
    lines = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2]
    for key in ("loss", "accuracy", "Ns", "tau_mean", "tau_std", "wall_seconds", "sequences_per_s"):
        assert key in lines[0]
    assert lines[0]["loss"] == pytest.approx(run.losses[0])
    payload = read_checkpoint(d / "checkpoints" / "latest.pt")   # weights_only=True inside
    assert payload["meta"]["epoch"] == 2 and set(payload) >= {"state_dict", "optimizer", "rng"}
    loaded = trainers.load_model(d / "checkpoints" / "latest.pt")
    for k, v in run.model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    ds = run.metrics()
    assert ds.accuracy.dims == ("epoch", "N") and ds.sizes["epoch"] == 2


def test_solved_heads_get_their_own_checkpoint(tmp_path):
    run = trainers.train({**TINY, "max_epochs": 5, "units": 32, "batch": 32, "steps_per_epoch": 50},
                         tmp_path / "r", progress=False)
    assert run.solved, "N=2 should be solved by a 32-unit network in 5 short epochs"
    for Ns in run.solved:
        meta = read_checkpoint(tmp_path / "r" / "checkpoints" / f"N{max(Ns):03d}.pt")["meta"]
        assert meta["Ns"] == Ns and meta["accuracy"][str(max(Ns))] > 98
    # after solving the multi-head curriculum adds the head for the next N
    assert run.solved[0] == [2] and run.Ns == run.solved[-1] + [max(run.solved[-1]) + 1]


def test_a_finished_curriculum_stops_with_reason_target():
    run = trainers.train({**TINY, "curriculum": "none", "n_max": 2, "units": 32, "batch": 32,
                          "steps_per_epoch": 50, "max_epochs": 10}, progress=False)
    assert run.stop_reason == "target" and run.max_solved_N == 2 and len(run.history) < 10


def test_time_budget_stops_the_run():
    run = trainers.train({**TINY, "max_epochs": 1000, "time_budget": 1e-9}, progress=False)
    assert run.stop_reason == "time_budget" and len(run.history) == 1


_KILLER = """
import json, os, signal, sys
import torch, trainers
from trainers.tasks import binary

cfg, out, where = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
calls = {"sample": 0}
kill_at = cfg["steps_per_epoch"] + cfg["eval_batches"] + cfg["steps_per_epoch"] // 2
original_sample, original_save = binary.BinaryTask.sample, torch.save

def sample(self, *args, **kwargs):
    calls["sample"] += 1
    if where == "mid-epoch" and calls["sample"] == kill_at:     # halfway through epoch 2
        os.kill(os.getpid(), signal.SIGKILL)
    return original_sample(self, *args, **kwargs)

def save(obj, fh, *args, **kwargs):
    meta = json.loads(obj.get("meta", "{}")) if isinstance(obj, dict) else {}
    if where == "checkpoint-write" and meta.get("kind") == "latest" and meta.get("epoch") == 2:
        fh.write(b"half a checkpoint")                           # a partial temporary file
        fh.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    return original_save(obj, fh, *args, **kwargs)

binary.BinaryTask.sample = sample
torch.save = save
trainers.train(cfg, out, progress=False)
"""


@pytest.mark.parametrize("where", ["mid-epoch", "checkpoint-write"])
def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path, where):
    cfg = dict(units=16, batch=16, steps_per_epoch=20, eval_batches=2, max_epochs=4, n_max=6,
               device="cpu", seed=11)
    out = tmp_path / "killed"
    proc = subprocess.run([sys.executable, "-c", _KILLER, json.dumps(cfg), str(out), where],
                          capture_output=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1   # only epoch 1 completed
    # every file under its final name is complete: the latest checkpoint is epoch 1's
    assert read_checkpoint(out / "checkpoints" / "latest.pt")["meta"]["epoch"] == 1
    if where == "checkpoint-write":
        assert list(out.rglob(".*.tmp")), "the kill should have left a temporary file"
    resumed = trainers.resume(out, progress=False)
    reference = trainers.train(cfg, progress=False)
    assert resumed.losses == reference.losses
    assert resumed.config == reference.config
    assert [h["accuracy"] for h in resumed.history] == [h["accuracy"] for h in reference.history]
    for k, v in reference.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[k], v), k
    assert not list(out.rglob("*.tmp")), "a partial file was left behind"
    assert len((out / "metrics.jsonl").read_text().splitlines()) == cfg["max_epochs"]


def test_resume_can_extend_a_run(tmp_path):
    trainers.train({**TINY, "max_epochs": 2}, tmp_path / "r", progress=False)
    run = trainers.resume(tmp_path / "r", max_epochs=3, progress=False)
    full = trainers.train({**TINY, "max_epochs": 3}, progress=False)
    assert run.losses == full.losses


@pytest.mark.parametrize(
    "change, match",
    [
        ({"curriculum": "zigzag"}, "curriculum="),
        ({"task": "xor"}, "task="),
        ({"model": "transformer"}, "model="),
        ({"n_start": 1}, "n_start must be >= 2"),
        ({"units": 0}, "units must be a positive integer"),
        ({"batch": -3}, "batch must be a positive integer"),
        ({"lr": -1.0}, "lr must be a positive number"),
        ({"n_max": 1}, "n_max=1 is below n_start"),
        ({"model": "wcrnn", "residual": "rotational", "units": 7}, "even number of units"),  # refused by the model
    ],
)
def test_bad_configuration_fails_before_training(tmp_path, change, match):
    with pytest.raises(ValueError, match=match):
        trainers.train({**TINY, **change}, tmp_path / "r", progress=False)
    assert not (tmp_path / "r").exists(), "nothing may be written for a rejected configuration"


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output_directory(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(PermissionError, match="not writable"):
            trainers.train(TINY, locked / "run", progress=False)
    finally:
        locked.chmod(0o700)


def test_output_path_that_is_a_file_is_refused(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(PermissionError, match="not writable"):
        trainers.train(TINY, blocker / "run", progress=False)


def test_existing_run_is_not_overwritten(tmp_path):
    trainers.train({**TINY, "max_epochs": 1}, tmp_path / "r", progress=False)
    with pytest.raises(FileExistsError, match="resume"):
        trainers.train(TINY, tmp_path / "r", progress=False)


def test_resume_of_a_missing_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="no run to resume"):
        trainers.resume(tmp_path / "nothing", progress=False)


def test_checkpoint_from_another_model(tmp_path):
    trainers.train({**TINY, "max_epochs": 1}, tmp_path / "r", progress=False)
    path = tmp_path / "r" / "checkpoints" / "latest.pt"
    with pytest.raises(CheckpointError, match="another model.*n_units"):
        trainers.load_model(path, model=trainers.LeakyRNN(17, n_heads=4))
    with pytest.raises(CheckpointError, match="another model.*model"):
        trainers.load_model(path, model=trainers.GRU(16, n_heads=4))
    # a run directory whose config names another model than its checkpoint
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    cfg["model"] = "gru"
    (tmp_path / "r" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="another model"):
        trainers.resume(tmp_path / "r", progress=False)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", None])
def test_corrupted_checkpoint_is_a_clear_error(tmp_path, content):
    path = tmp_path / "bad.pt"
    if content is None:  # a valid torch file that is not ours
        torch.save({"weights": torch.zeros(2)}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match="trainers checkpoint"):
        trainers.load_model(path)


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    model = trainers.LeakyRNN(4)
    path = tmp_path / "c.pt"
    save_checkpoint(path, model, {"x": 1})
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, model, {"x": 2})
    assert path.read_bytes() == before and not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("model", ["gru", "lstm"])
def test_gated_models_train_with_adam_and_pm1_inputs(model):
    run = trainers.train({**TINY, "model": model, "max_epochs": 1}, progress=False)
    assert run.config.optimizer == "adam" and run.config.task_options["encoding"] == "pm1"
    assert np.isfinite(run.losses[0]) and "tau_mean" not in run.history[0]


def test_fixed_tau_run_keeps_tau():
    run = trainers.train({**TINY, "train_tau": False, "tau": 2.0, "max_epochs": 1}, progress=False)
    assert torch.all(run.model.tau == 2.0)


@pytest.mark.cuda
def test_cuda_curriculum_smoke_and_recording(tmp_path):        # skipped without CUDA (tests/conftest.py)
    run = trainers.train({**TINY, "device": "cuda", "units": 64, "steps_per_epoch": 50,
                          "max_epochs": 6}, tmp_path / "r", progress=False)
    assert next(run.model.parameters()).is_cuda and run.max_solved_N is not None
    rec = trainers.record(run.model, "parity", Ns=run.solved[-1], steps=2000, trials=2, seed=0,
                          out=tmp_path / "rec.nc")
    dt.validate(rec)
    assert rec.activity.shape == (2, 2000, 64)


@pytest.mark.slow
def test_multi_head_beats_single_head_on_a_small_cpu_network(tmp_path):
    """Sec. 4.1 / Fig. 3b in miniature: same budget, the multi-head curriculum reaches N >= 6 and
    the single-head curriculum no larger N."""
    base = dict(units=64, batch=64, steps_per_epoch=100, eval_batches=10, max_epochs=60, n_max=30,
                device="cpu", seed=0)
    multi = trainers.train({**base, "curriculum": "multi-head"}, tmp_path / "multi", progress=False)
    single = trainers.train({**base, "curriculum": "single-head"}, progress=False)
    assert multi.max_solved_N >= 6
    assert (single.max_solved_N or 0) <= multi.max_solved_N
    rec = trainers.record(multi.model, "parity", Ns=multi.solved[-1], steps=5000, trials=2, seed=1,
                          out=tmp_path / "rec.nc")
    dt.validate(rec)
    assert rec.attrs["N"] == multi.solved[-1]


def test_evaluate_rejects_more_Ns_than_heads_and_empty_batches():
    net = trainers.LeakyRNN(8, n_heads=1)
    with pytest.raises(ValueError, match="has 1 head"):
        trainers.evaluate(net, trainers.Parity(), [2, 3, 4], batches=1, batch=4)
    with pytest.raises(ValueError, match="batches"):
        trainers.evaluate(net, trainers.Parity(), [2], batches=0)


def test_resume_after_a_spent_time_budget_trains_nothing_more(tmp_path):
    trainers.train({**TINY, "max_epochs": 100, "time_budget": 1e-9}, tmp_path / "r", progress=False)
    for _ in range(2):
        run = trainers.resume(tmp_path / "r", progress=False)
        assert run.stop_reason == "time_budget" and len(run.history) == 1
    run = trainers.resume(tmp_path / "r", time_budget=1e9, max_epochs=2, progress=False)
    assert len(run.history) == 2


def test_resume_on_another_device_type_is_refused_with_the_fix(tmp_path):
    trainers.train({**TINY, "max_epochs": 1}, tmp_path / "r", progress=False)
    path = tmp_path / "r" / "checkpoints" / "latest.pt"
    payload = torch.load(path, weights_only=True)
    payload["rng"]["device_type"] = torch.tensor(list(b"cuda"), dtype=torch.uint8)
    torch.save(payload, path)
    with pytest.raises(ValueError, match="trained on cuda.*--device cuda"):
        trainers.resume(tmp_path / "r", max_epochs=2, progress=False)
    assert json.loads((tmp_path / "r" / "config.json").read_text())["max_epochs"] == 1


def test_failed_resume_leaves_the_configuration_alone(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)     # as on a machine without CUDA
    trainers.train({**TINY, "max_epochs": 1}, tmp_path / "r", progress=False)
    before = (tmp_path / "r" / "config.json").read_text()
    with pytest.raises(ValueError, match="no CUDA device"):
        trainers.resume(tmp_path / "r", device="cuda", max_epochs=5, progress=False)
    assert (tmp_path / "r" / "config.json").read_text() == before


def test_resume_keeps_other_temporary_files(tmp_path):
    trainers.train({**TINY, "max_epochs": 1}, tmp_path / "r", progress=False)
    recording_in_progress = tmp_path / "r" / ".rec.nc.x1.tmp"
    recording_in_progress.write_text("someone else's write")
    trainers.resume(tmp_path / "r", max_epochs=2, progress=False)
    assert recording_in_progress.exists()


def test_weights_broken_without_a_broken_loss_stop_training_before_the_checkpoint(tmp_path):
    init = trainers.LeakyRNN(16, n_heads=4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        init.heads.weight[3] = float("nan")         # a head the first curriculum step does not use
    with pytest.raises(FloatingPointError, match=r"parameters \['heads.weight'\] became NaN"):
        trainers.train({**TINY, "max_epochs": 2}, tmp_path / "r", init=init, progress=False)
    assert not (tmp_path / "r" / "checkpoints" / "latest.pt").exists()   # no broken state was saved


def _legacy_sequence_run(root):
    """A run directory as trainers 0.1's ``train-sequence`` wrote it: WCRNN config with ``kind`` and
    ``n_outputs``, a single readout ``W_out``/``b_out``, meta kind "sequence"."""
    from trainers.checkpoint import FORMAT, atomic_write_bytes

    gen = torch.Generator().manual_seed(0)
    state = {"R": torch.eye(4), "gamma": torch.full((4,), 0.05), "W": torch.randn(4, 4, generator=gen),
             "W_in": torch.randn(4, 2, generator=gen), "b": torch.randn(4, generator=gen),
             "W_out": torch.randn(1, 4, generator=gen), "b_out": torch.randn(1, generator=gen)}
    meta = {"model_config": {"model": "wcrnn", "n_units": 4, "kind": "linear", "input_dim": 2, "n_outputs": 1},
            "kind": "sequence", "task": {"name": "adding", "length": 6, "data": None, "seed": 0},
            "settings": {"epochs": 1, "batch": 4, "lr": 0.01, "momentum": 0.9, "optimizer": "sgd", "clip": None,
                         "lr_milestones": [], "lr_factor": 0.3, "steps_per_epoch": 2, "test_size": 8, "seed": 0},
            "history": [{"test_metric": 0.7, "train_loss": 0.8, "iteration": 2}], "epoch": 1}
    (root / "checkpoints").mkdir(parents=True)
    payload = {"format": FORMAT, "state_dict": state, "meta": json.dumps(meta)}
    atomic_write_bytes(root / "checkpoints" / "latest.pt", lambda fh: torch.save(payload, fh))
    return state


def test_a_trainers_0_1_sequence_run_loads_and_names_why_it_cannot_resume(tmp_path):
    state = _legacy_sequence_run(tmp_path / "seq")
    with pytest.raises(ValueError, match="train-sequence.*cannot continue.*RunDir"):
        trainers.resume(tmp_path / "seq", progress=False)
    model, task, head = trainers.RunDir(tmp_path / "seq").load()
    assert (task.name, task.length, head, model.form) == ("adding", 6, 0, "linear")
    h = torch.randn(3, 4)
    expected = h @ state["W_out"].T + state["b_out"]           # the 0.1 readout, by hand
    torch.testing.assert_close(model.readout(h)[:, 0], expected)
    ds = trainers.RunDir(tmp_path / "seq").metrics()
    assert ds.attrs["metric"] == "rms" and float(ds.rms[0]) == 0.7


@pytest.mark.parametrize("content", ["{truncated", "[]", "null"])
def test_resume_names_what_is_wrong_with_the_run(tmp_path, content):
    trainers.train({**TINY, "max_epochs": 1}, tmp_path / "r", progress=False)
    (tmp_path / "r" / "config.json").write_text(content)
    with pytest.raises(CheckpointError, match="config.json is damaged"):
        trainers.resume(tmp_path / "r", max_epochs=2, progress=False)
    with pytest.raises(CheckpointError, match="config.json is damaged"):
        trainers.RunDir(tmp_path / "r").config


SEQ = {"units": 6, "batch": 8, "steps_per_epoch": 3, "max_epochs": 3, "device": "cpu", "seed": 2}


@pytest.mark.parametrize("task, extra", [("adding", {"length": 12, "test_size": 16}),
                                         ("pdigits", {"model": "leaky", "lr_milestones": [20]}),
                                         ("digits", {"optimizer": "adam"})])
def test_sequence_task_runs_resume_exactly(tmp_path, task, extra):
    """The same engine runs the fading-memory tasks: an interrupted run continued with resume
    equals an uninterrupted one (weights, losses, test metric)."""
    cfg = {**SEQ, "task": task, **extra}
    straight = trainers.train(cfg, progress=False)
    trainers.train({**cfg, "max_epochs": 1}, tmp_path / "r", progress=False)
    resumed = trainers.resume(tmp_path / "r", max_epochs=3, progress=False)
    assert resumed.losses == straight.losses
    metric = straight.history[0]["metric"]
    assert [h[metric] for h in resumed.history] == [h[metric] for h in straight.history]
    for k, v in straight.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[k], v), k
    ds = trainers.RunDir(tmp_path / "r").metrics()
    assert ds.attrs["metric"] == metric and ds.sizes["epoch"] == 3 and "iterations_to_mp" in ds.attrs
    assert ds.iteration.values[-1] == straight.history[-1]["iteration"]


def test_metrics_survive_a_deleted_latest_checkpoint(tmp_path):
    trainers.train({**TINY, "max_epochs": 2}, tmp_path / "r", progress=False)
    (tmp_path / "r" / "checkpoints" / "latest.pt").unlink()
    ds = trainers.RunDir(tmp_path / "r").metrics()
    assert ds.sizes["epoch"] == 2 and ds.accuracy.dims == ("epoch", "N")


def test_lr_milestones_lower_the_learning_rate_at_the_given_iterations():
    run = trainers.train({**SEQ, "task": "adding", "length": 8, "max_epochs": 2, "lr_milestones": [4],
                          "lr_factor": 0.5, "optimizer": "adam"}, progress=False)
    assert [h["iteration"] for h in run.history] == [3, 6]
    # the learning rate is set before each step from the iterations done: 0.001 until 4 are done
    import trainers.engine as engine

    opt = engine.make_optimizer(run.config, run.model)
    assert opt.param_groups[0]["lr"] == 1e-3


@pytest.mark.parametrize("model", ["leaky", "gru", "lstm", "wcrnn"])
@pytest.mark.parametrize("task", ["parity", "adding"])
def test_every_registered_model_trains_on_every_task_kind(model, task):
    cfg = {**SEQ, "model": model, "task": task, "max_epochs": 1}
    if task == "parity":
        cfg.update(n_max=3, eval_batches=1)
    else:
        cfg.update(length=8, test_size=8)
    run = trainers.train(cfg, progress=False)
    assert np.isfinite(run.losses[0]) and run.model.name == model
    assert run.model.readout(torch.zeros(2, run.model.n_units)).shape[-1] == (2 if task == "parity" else 1)
