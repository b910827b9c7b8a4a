"""Ensembles trained in parallel on trial tasks (issue 13, item 4): the trial loop of the engine,
002's percentile stopping rule, FLOP counts, exact resume, and member k == a single run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import trainers
from trainers.curricula import Percentile, percentile_mean
from trainers.ensemble import Ensemble, training_flops
from trainers.models import RateRNN
from trainers.registry import Option
from trainers.tasks import TASKS
from trainers.tasks.trials import DELAY, FIXATION, PAD, RESPONSE, STIMULUS, TrialBatch, TrialTask


class ToySign(TrialTask):
    """Report the sign of a pulse after a delay: fixation 2-4 steps, pulse 2 steps, delay, response
    3 steps; trials differ in length (so ensembles pad)."""

    name = "toy-sign"
    options = (Option("dt", 5.0, "time step in ms", float, positive=True, shared=True),
               Option("delay_steps", 3, "delay in steps", int, minimum=0))
    defaults = {"model": "rate", "curriculum": "percentile", "units": 12, "batch": 8,
                "steps_per_epoch": 3, "eval_batches": 1, "max_epochs": 2, "optimizer": "adam", "lr": 1e-2}
    input_dim = 2
    output_dim = 1

    def __init__(self, dt: float = 5.0, delay_steps: int = 3) -> None:
        self.dt, self.delay_steps = dt, delay_steps

    def sample(self, batch, *, generator=None, device=None):
        dev = torch.device("cpu") if device is None else torch.device(device)
        fix = torch.randint(2, 5, (batch,), generator=generator, device=dev)
        sign = torch.randint(0, 2, (batch,), generator=generator, device=dev).float() * 2 - 1
        stim_end = fix + 2
        resp = stim_end + self.delay_steps
        length = resp + 3
        T = int(length.max())
        t = torch.arange(T, device=dev)[None]
        periods = torch.full((batch, T), PAD, dtype=torch.long, device=dev)
        periods[t < length[:, None]] = RESPONSE
        periods[t < resp[:, None]] = DELAY
        periods[t < stim_end[:, None]] = STIMULUS
        periods[t < fix[:, None]] = FIXATION
        inputs = torch.zeros(batch, T, 2, device=dev)
        inputs[..., 0] = ((periods != RESPONSE) & (periods != PAD)).float()
        inputs[..., 1] = (periods == STIMULUS).float() * sign[:, None]
        targets = ((periods == RESPONSE).float() * sign[:, None])[..., None]
        mask = (periods != PAD).float()[..., None] * (1 + 4 * (periods == RESPONSE).float()[..., None])
        return TrialBatch(inputs, targets, mask, periods, {"sign": sign})

    def performance(self, outputs, batch):
        if outputs.ndim == 4:
            outputs = outputs[..., 0, :]
        last = batch.lengths - 1
        y = outputs[torch.arange(outputs.shape[0], device=outputs.device), last, 0]
        return (torch.sign(y) == batch.info["sign"]).float()


@pytest.fixture(autouse=True)
def toy_task():
    TASKS.register(ToySign)
    yield
    TASKS.unregister(ToySign.name)


def _cfg(**kw):
    return {"task": "toy-sign", "device": "cpu", "seed": 3, **kw}


@pytest.mark.parametrize("n", [1, 2, 9, 10, 11, 100, 101])
def test_percentile_mean_is_the_10_percent_trimmed_mean(n):
    from scipy.stats import trim_mean

    v = np.random.default_rng(n).uniform(size=n)
    assert percentile_mean(v) == pytest.approx(trim_mean(v, 0.1))
    if n == 100:                         # 002's 100 networks: the 80 between the 10th and 90th
        assert percentile_mean(v) == pytest.approx(np.sort(v)[10:90].mean())


def test_the_stopping_rule():
    rule = Percentile()
    assert rule.solved([0.0] + [1.0] * 19) and not rule.solved([0.98] * 20)


def test_ensemble_run_equals_each_member_alone():
    members = [RateRNN(6, input_dim=2, generator=torch.Generator().manual_seed(k)) for k in range(3)]
    ens = Ensemble(members)
    u = torch.randn(3, 4, 7, 2, generator=torch.Generator().manual_seed(1))
    H, Y = ens.run(u)
    for k, m in enumerate(members):
        Hk = m(u[k])
        torch.testing.assert_close(H[k], Hk, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(Y[k], m.readout(Hk, heads=1), atol=1e-6, rtol=1e-6)


def test_an_ensemble_refuses_members_of_different_architectures():
    with pytest.raises(ValueError, match="another architecture"):
        Ensemble([RateRNN(6), RateRNN(7)])


@pytest.mark.parametrize("noise", [{}, {"sigma": 0.3, "noise": "white"}, {"sigma": 0.3, "noise": "ou"}])
def test_ensemble_of_4_equals_4_single_runs_with_the_same_seeds(noise):
    ens = trainers.train(_cfg(members=4, **noise), progress=False)
    assert isinstance(ens.model, Ensemble) and ens.model.size == 4
    steps_ens = ens.metrics()["loss"].values.T                                 # (step, member)
    for k in range(4):
        single = trainers.train(_cfg(seed=3 + k, **noise), progress=False)
        assert not isinstance(single.model, Ensemble)
        steps_one = single.metrics()["loss"].values[0]
        np.testing.assert_allclose(steps_ens[:, k], steps_one, rtol=1e-5, atol=1e-6)
        for name, p in single.model.named_parameters():
            torch.testing.assert_close(dict(ens.model.members[k].named_parameters())[name], p,
                                       rtol=1e-4, atol=1e-5)


def test_vectorised_loss_performance_and_clipping_equal_member_by_member():
    from trainers.ensemble import clip_per_member, draw_step, member_batch, member_losses, member_performance

    task = ToySign()
    members = [RateRNN(5, input_dim=2, n_classes=1, generator=torch.Generator().manual_seed(k)) for k in range(3)]
    ens = Ensemble(members)
    gens = [torch.Generator().manual_seed(9 + k) for k in range(3)]      # lengths 11, 12, 10
    sb, lengths, _ = draw_step(ens, task, 2, gens, torch.device("cpu"), torch.float32, noise=False)
    assert len(set(lengths)) > 1                           # the members' batches were padded
    _, Y = ens.run(sb.inputs)
    losses = member_losses(task, Y, sb)
    perf = member_performance(task, Y.detach(), sb)
    for k in range(3):
        own = task.sample(2, generator=torch.Generator().manual_seed(9 + k))    # unpadded
        Yk = members[k].readout(members[k](own.inputs), heads=1)
        torch.testing.assert_close(losses[k], masked_mse_of(Yk, own))
        torch.testing.assert_close(perf[k], task.performance(Yk, own))
        torch.testing.assert_close(member_batch(sb, k).info["sign"], own.info["sign"])
    (1e3 * losses.sum()).backward()                        # large gradients: clipping acts
    expected = []
    for m in members:
        copies = [p.grad.clone() for p in m.parameters() if p.grad is not None]
        total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in copies]))
        expected.append([g * min(1.0, 0.5 / (float(total) + 1e-6)) for g in copies])
    clip_per_member(ens, 0.5)
    for m, exp in zip(members, expected):
        for p, e in zip([p for p in m.parameters() if p.grad is not None], exp):
            torch.testing.assert_close(p.grad, e)


def masked_mse_of(y, batch):
    """The masked MSE written out: sum of mask * squared error over the valid entries."""
    valid = (batch.periods != PAD).sum() * batch.targets.shape[-1]
    return (batch.mask * (y[..., 0, :] - batch.targets) ** 2).sum() / valid


def test_training_flops_equal_the_flop_counter_of_one_training_step():
    torch.manual_seed(0)
    for n, inputs, outputs, B, T in [(7, 2, 3, 4, 5), (16, 65, 33, 2, 9)]:
        net = RateRNN(n, input_dim=inputs, n_classes=outputs)
        u = torch.randn(B, T, inputs)
        with FlopCounterMode(display=False) as counter:
            H = net(u)
            net.readout(H, heads=1).square().sum().backward()
        assert counter.get_total_flops() == training_flops(net, B, T)


def test_stop_at_the_percentile_rule_or_the_step_limit():
    run = trainers.train(_cfg(members=3, max_epochs=200, steps_per_epoch=10, threshold=0.9), progress=False)
    ds = run.metrics()
    assert run.stop_reason == "target"
    assert ds["score"].values[-1] >= 0.9 and (ds["score"].values[:-1] < 0.9).all()
    assert ds.attrs["steps_to_threshold"] == ds["epoch_step"].values[-1]
    np.testing.assert_allclose(ds["score"], [percentile_mean(v) for v in ds["eval_performance"].values.T])
    limited = trainers.train(_cfg(max_epochs=1, steps_per_epoch=2, threshold=1.0), progress=False)
    assert limited.stop_reason == "max_epochs" and limited.metrics().sizes["step"] == 2


def test_metrics_have_member_and_step_dims_with_flops_and_wall_clock():
    run = trainers.train(_cfg(members=2), progress=False)
    ds = run.metrics()
    assert ds["loss"].dims == ("member", "step") and ds.sizes == {"member": 2, "step": 6, "epoch": 2}
    assert (ds["flops"] > 0).all() and (ds["wall_seconds"] > 0).all()
    assert set(np.unique(ds["performance"])) <= {v / 8 for v in range(9)}


def test_resume_continues_exactly(tmp_path):
    full = trainers.train(_cfg(members=2, max_epochs=3), progress=False)
    trainers.train(_cfg(members=2, max_epochs=1), tmp_path / "run", progress=False)
    rd = trainers.RunDir(tmp_path / "run")
    rd.append_steps(2, {"loss": [[9.0, 9.0]], "performance": [[0, 0]], "flops": [[1, 1]],
                        "wall_seconds": [1.0]})   # killed after the steps line, before the checkpoint
    resumed = trainers.resume(tmp_path / "run", max_epochs=3, progress=False)
    a = np.array([r["loss"] for r in full.steps])
    b = np.array([r["loss"] for r in resumed.steps])
    np.testing.assert_allclose(a, b, rtol=1e-6)
    ds = trainers.RunDir(tmp_path / "run").metrics()
    assert ds.sizes["step"] == 9
    np.testing.assert_allclose(ds["loss"].values.T, a.reshape(-1, 2), rtol=1e-6)
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[-1])["members_performance"]
    assert "steps" not in json.loads(lines[-1])              # per-step records live in steps.jsonl only
    assert [r["epoch"] for r in rd.steps()] == [1, 2, 3]


def test_run_directory_loads_an_ensemble_or_one_network(tmp_path):
    trainers.train(_cfg(members=2, max_epochs=1), tmp_path / "k2", progress=False)
    trainers.train(_cfg(max_epochs=1), tmp_path / "k1", progress=False)
    assert isinstance(trainers.RunDir(tmp_path / "k2").load().model, Ensemble)
    assert isinstance(trainers.RunDir(tmp_path / "k1").load().model, RateRNN)


@pytest.mark.parametrize("config, match", [
    ({"task": "parity", "members": 2}, "ensembles are trained on trial tasks"),
    ({"task": "dms", "model": "rate", "members": 2}, "delayed match-to-sample is --task dms-cog"),
    ({"task": "go", "dale": True, "e_fraction": 1.2}, r"e_fraction must lie in \(0, 1\) \(excitatory fraction"),
    ({"task": "go", "units": 30, "input_units": 20, "output_units": 20}, "exceeds n_units=30; give smaller"),
    ({"task": "go", "dt": 150.0}, r"dt=150 ms must be smaller than every tau"),
    ({"task": "gogo"}, r"task='gogo' is not a valid option; choose one of 'parity'"),
    ({"task": "parity", "curriculum": "percentile"}, "needs a trial task"),
    (_cfg(model_options={"dt": 5.0}, task_options={"dt": 10.0}), "dt differs between sections"),
    (_cfg(members=0), "members must be a positive integer"),
    (_cfg(threshold=1.5), "threshold is a performance"),
])
def test_bad_configurations_are_refused(config, match):
    with pytest.raises(ValueError, match=match) as err:
        cfg = trainers.TrainConfig.from_dict(config).resolved()
        cfg.make_curriculum()
        cfg.make_model()
    assert "\n" not in str(err.value)                     # one line


def test_dt_given_once_reaches_the_model_and_the_task():
    cfg = trainers.TrainConfig.from_dict(_cfg(dt=2.0)).resolved()
    assert cfg.model_options["dt"] == 2.0 and cfg.task_options["dt"] == 2.0
    cfg = trainers.TrainConfig.from_dict(_cfg(task_options={"dt": 2.5})).resolved()
    assert cfg.model_options["dt"] == 2.5


def test_cli_trains_and_evaluates_an_ensemble(tmp_path, capsys):
    from trainers.cli import main

    run = tmp_path / "run"
    assert main(["train", "--task", "toy-sign", "--members", "3", "--steps-per-epoch", "2", "--max-epochs", "1",
                 "--seed", "0", "--device", "cpu", "--out", str(run), "-q"]) == 0
    assert "stopped (max_epochs) after 2 steps of toy-sign (3 networks)" in capsys.readouterr().out
    assert main(["evaluate", str(run), "--json", "--batches", "2", "--batch", "8", "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)["performance"]
    members = [result[f"member {k}"] for k in range(3)]
    assert result["10-90 %"] == pytest.approx(percentile_mean(members), abs=1e-4)
    ens = trainers.RunDir(run).load().model
    from trainers.ensemble import evaluate_members
    gens = [torch.Generator().manual_seed(0) for _ in range(3)]         # the CLI's default seed
    direct = evaluate_members(ens, ToySign(), batch=8, batches=2, generators=gens, device=torch.device("cpu"))
    np.testing.assert_allclose(members, direct, atol=1e-4)


@pytest.mark.parametrize("model", ["leaky", "gru"])
def test_other_models_train_as_ensembles_and_equal_their_single_runs(model):
    """The fused leaky recurrence has no vmap rule: the ensemble runs its unfused twin."""
    ens = trainers.train(_cfg(model=model, members=2, max_epochs=1, optimizer="adam", lr=1e-2), progress=False)
    one = trainers.train(_cfg(model=model, seed=4, max_epochs=1, optimizer="adam", lr=1e-2), progress=False)
    a = ens.metrics()["loss"].values[1]
    b = one.metrics()["loss"].values[0]
    np.testing.assert_allclose(a, b, rtol=1e-5)


def test_training_flops_count_the_one_trained_head():
    net = RateRNN(7, input_dim=2, n_heads=3, n_classes=4)
    u = torch.randn(2, 5, 2)
    with FlopCounterMode(display=False) as counter:
        net.readout(net(u), heads=1).square().sum().backward()
    assert counter.get_total_flops() == training_flops(net, 2, 5)


def test_an_ensemble_in_training_mode_draws_each_members_noise():
    members = [RateRNN(5, sigma=0.5, generator=torch.Generator().manual_seed(k)) for k in range(2)]
    for k, m in enumerate(members):
        m.noise_generator = torch.Generator().manual_seed(10 + k)
    H, _ = Ensemble(members).train().run(torch.ones(2, 3, 6, 1))
    for k, m in enumerate(members):
        m.noise_generator = torch.Generator().manual_seed(10 + k)
        torch.testing.assert_close(H[k], m.train()(torch.ones(3, 6, 1)), atol=1e-6, rtol=1e-6)


def test_init_seeds_every_member_and_keeps_fresh_readouts_when_asked():
    src = trainers.train(_cfg(members=2, max_epochs=1), progress=False).model
    run = trainers.train(_cfg(members=2, max_epochs=1, steps_per_epoch=1, lr=1e-9), init=src, init_readout=False,
                         progress=False)
    fresh = trainers.train(_cfg(members=2, max_epochs=1, steps_per_epoch=1, lr=1e-9), progress=False)
    for k in range(2):
        new, old, init = run.model.members[k], src.members[k], fresh.model.members[k]
        torch.testing.assert_close(new.W_rec, old.W_rec, atol=1e-6, rtol=0)
        torch.testing.assert_close(new.heads.weight, init.heads.weight, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="init is an ensemble of 2 networks but members=3"):
        trainers.train(_cfg(members=3, max_epochs=1), init=src, progress=False)


def test_equal_numbers_in_two_sections_agree_and_percentiles_must_be_ordered():
    cfg = trainers.TrainConfig.from_dict(_cfg(model_options={"dt": 5}, task_options={"dt": 5.0})).resolved()
    assert cfg.model_options["dt"] == cfg.task_options["dt"] == 5.0
    with pytest.raises(ValueError, match="0 <= low < high <= 100"):
        Percentile(low=50, high=50)


def test_cognitive_ensemble_on_each_device_equals_its_single_runs(device, tmp_path):
    """A cognitive task with 002's noise on the device (the fixture: cpu, cuda if present):
    member k == the run with seed + k, checkpointed and resumed on the same device."""
    cfg = {"task": "go", "units": 12, "batch": 4, "steps_per_epoch": 2, "max_epochs": 1, "eval_batches": 1,
           "device": device, "seed": 0}
    ens = trainers.train({**cfg, "members": 3}, tmp_path / "ens", progress=False)
    assert next(ens.model.parameters()).device.type == device
    for k in (0, 2):
        one = trainers.train({**cfg, "seed": k}, progress=False)
        np.testing.assert_allclose(ens.metrics()["loss"].values[k], one.metrics()["loss"].values[0], rtol=1e-4)
    resumed = trainers.resume(tmp_path / "ens", max_epochs=2, progress=False)
    assert resumed.metrics().sizes["step"] == 4
