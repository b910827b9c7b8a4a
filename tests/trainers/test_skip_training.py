"""The training methods of 002 Sec. 3-4 in the engine: saved in the run's config, logged per step
(theta, beta), resumed exactly, exact at their base values, CD's coarse steps, strategic skips of
the rule-reversal task, and the configuration checks."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import trainers
from trainers.ensemble import training_flops

TINY = {"device": "cpu", "seed": 1, "units": 8, "batch": 4, "steps_per_epoch": 2, "eval_batches": 1,
        "max_epochs": 3}


def _losses(run):
    return np.array([row for r in run.steps for row in r["loss"]])


def test_method_is_saved_logged_and_resumed_exactly(tmp_path):
    cfg = {**TINY, "task": "go", "members": 2, "method": "dasc", "skip": 8, "beta0": 0.5, "anneal_steps": 1,
           "anneal_span": 4}
    full = trainers.train(cfg, progress=False)
    trainers.train({**cfg, "max_epochs": 1}, tmp_path / "run", progress=False)
    resumed = trainers.resume(tmp_path / "run", max_epochs=3, progress=False)
    np.testing.assert_allclose(_losses(resumed), _losses(full), rtol=1e-6)
    steps = trainers.RunDir(tmp_path / "run").steps()
    assert [b for r in steps for b in r["beta"]] == [0.5, 0.5, 1.0, 1.0, 1.0, 1.0]
    assert {t for r in steps for t in r["theta"]} == {8}
    ds = trainers.RunDir(tmp_path / "run").metrics()
    assert ds["beta"].values.tolist() == [0.5, 0.5, 1.0, 1.0, 1.0, 1.0] and ds["theta"].dims == ("step",)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["method"] == "dasc" and saved["method_options"]["skip"] == 8


@pytest.mark.parametrize("method", ["sctt", "dasc", "cd"])
def test_methods_at_their_base_values_train_the_base_model(method):
    base = trainers.train({**TINY, "task": "go", "max_epochs": 1}, progress=False)
    extra = {"beta0": 1.0} if method != "cd" else {"skip": 1}
    same = trainers.train({**TINY, "task": "go", "max_epochs": 1, "method": method, **extra}, progress=False)
    np.testing.assert_allclose(_losses(same), _losses(base), rtol=1e-6)


def test_skip_connections_change_training_while_beta_is_below_one():
    base = trainers.train({**TINY, "task": "go", "max_epochs": 1}, progress=False)
    dasc = trainers.train({**TINY, "task": "go", "max_epochs": 1, "method": "dasc", "skip": 10}, progress=False)
    assert not np.allclose(_losses(dasc), _losses(base))


def test_cd_counts_the_flops_of_its_coarse_steps():
    cfg = {**TINY, "task": "rule-reversal", "max_epochs": 1, "steps_per_epoch": 2, "method": "cd", "skip": 40,
           "anneal_steps": 1, "anneal_span": 2}
    run = trainers.train(cfg, progress=False)
    rec = run.steps[0]
    assert rec["theta"] == [40, 1]                    # phase 0: theta0, then the base model
    task = run.config.make_task()
    segments = task.segments()
    coarse = sum(math.ceil((stop - start) / 40) for _, start, stop in segments)
    assert coarse == 5 + 20 * 3                       # settle: 200 / 40; each 100-step segment: 40 + 40 + 20
    length = segments[-1][2]
    assert rec["flops"][0] == [training_flops(run.model, 4, coarse)]
    assert rec["flops"][1] == [training_flops(run.model, 4, length)]


def test_rule_reversal_trains_with_strategic_skips_through_the_engine():
    cfg = {**TINY, "task": "rule-reversal", "members": 2, "max_epochs": 1}
    plain = trainers.train(cfg, progress=False)
    strategic = trainers.train({**cfg, "strategic": True, "beta0": 0.5}, progress=False)
    neutral = trainers.train({**cfg, "strategic": True, "beta0": 1.0}, progress=False)
    np.testing.assert_allclose(_losses(neutral), _losses(plain), rtol=1e-6)
    assert np.abs(_losses(strategic) - _losses(plain)).max() > 0
    assert all(math.isfinite(v) for v in _losses(strategic).ravel())
    assert strategic.steps[0]["beta"] == [0.5, 0.5]


@pytest.mark.parametrize("config, match", [
    ({"task": "parity", "method": "cd"}, "model 'leaky' has none"),
    ({"task": "go", "strategic": True}, "drop --strategic"),
    ({"task": "go", "method": "dasc", "beta0": 1.5}, r"beta0 must lie in \(0, 1\]"),
    ({"task": "go", "method": "skipper"}, "method"),
    ({"task": "go", "method": "dasc", "skip": 0}, "skip must be a positive integer"),
])
def test_bad_method_configurations_are_refused(config, match):
    with pytest.raises(ValueError, match=match):
        cfg = trainers.TrainConfig.from_dict(config).resolved()
        cfg.make_method()


class _Spy:
    """A closed-loop task whose rollout records what the engine hands it."""

    closed_loop = True

    def rollout(self, run, batch, h0, *, mix=None):
        import torch

        self.mix = mix
        H, Y = run(h0, 0, batch.inputs.shape[-2], batch.inputs)
        return H, Y, batch.inputs + 1


def test_closed_loop_tasks_get_the_strategic_mix_and_held_cd_states():
    import torch

    from trainers.ensemble import Ensemble, simulate_trials
    from trainers.models import RateRNN
    from trainers.skip import Simulation
    from trainers.tasks.trials import TrialBatch

    net = RateRNN(6, input_dim=2, generator=torch.Generator().manual_seed(0))
    ens = Ensemble([net])
    u = torch.randn(1, 3, 10, 2, generator=torch.Generator().manual_seed(1))
    batch = TrialBatch(u, torch.zeros(1, 3, 10, 2), torch.ones(1, 3, 10, 2), torch.zeros(1, 3, 10, dtype=torch.long))
    h0 = torch.zeros(1, 3, 6)
    spy = _Spy()
    Y, out = simulate_trials(ens, spy, batch, h0, simulation=Simulation("cd", theta=4), strategic=0.25)
    a, b = torch.ones(2), torch.zeros(2)
    torch.testing.assert_close(spy.mix(a, b), torch.full((2,), 0.25))    # beta h_end + (1 - beta) h_start
    assert Y.shape[-3] == 10 and torch.equal(out.inputs, u + 1)
    coarse = ens.run(u[..., :8, :], h0, simulation=Simulation("cd", theta=4))[1]   # 2 full coarse steps, held
    torch.testing.assert_close(Y[..., :8, :, :], coarse.repeat_interleave(4, dim=-3))
    simulate_trials(ens, spy, batch, h0)
    assert spy.mix is None


def test_the_docs_python_example_runs_and_prints_the_quoted_schedule(tmp_path, capsys):
    import re
    from pathlib import Path

    page = Path(__file__).resolve().parents[2] / "docs" / "skip-training.md"
    block = re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)[0]
    exec(compile(block, str(page), "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "[0.5, 1.0, 1.0]"
    assert "dasc" in "\n".join(printed) and "sctt" in "\n".join(printed)


def test_closed_loop_cd_shortens_the_last_coarse_step_of_each_segment():
    """Segments of 10 and 7 steps at theta 4: Euler steps of 4, 4, 2 dt and 4, 3 dt from the inputs
    at each step's start, each state held over the steps it covers (002 Eq. 7)."""
    import torch

    from trainers.ensemble import Ensemble, simulate_trials
    from trainers.models import RateRNN
    from trainers.skip import Simulation
    from trainers.tasks.trials import TrialBatch

    class TwoSegments:
        closed_loop = True

        def segments(self):
            return [("a", 0, 10), ("b", 10, 17)]

        def rollout(self, run, batch, h0, *, mix=None):
            H1, Y1 = run(h0, 0, 10, batch.inputs[..., 0:10, :])
            H2, Y2 = run(H1[..., -1, :], 10, 17, batch.inputs[..., 10:17, :])
            return torch.cat([H1, H2], -2), torch.cat([Y1, Y2], -3), batch.inputs

    net = RateRNN(5, input_dim=2, generator=torch.Generator().manual_seed(0)).double().eval()
    u = torch.randn(1, 3, 17, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    batch = TrialBatch(u, torch.zeros(1, 3, 17, 2), torch.ones(1, 3, 17, 2), torch.zeros(1, 3, 17, dtype=torch.long))
    h0 = torch.zeros(1, 3, 5, dtype=torch.float64)
    Y, _ = simulate_trials(Ensemble([net]), TwoSegments(), batch, h0, simulation=Simulation("cd", theta=4))
    W, Win, b, alpha = net.effective_W_rec(), net.effective_W_in(), net.b, net.alpha()
    r, held = h0[0], []
    for index, factor in ((0, 4), (4, 4), (8, 2), (10, 4), (14, 3)):
        r = r + factor * alpha * (torch.relu(r @ W.T + u[0, :, index] @ Win.T + b) - r)
        held += [r] * factor
    expected = net.readout(torch.stack(held, -2), heads=1)
    torch.testing.assert_close(Y[0], expected)


@pytest.mark.parametrize("method", ["cd", "sctt", "dasc"])
def test_methods_train_an_ensemble_on_each_device_as_its_single_runs(device, method):
    """Member k of an ensemble trained with a method == the single run with seed + k, on the device
    (the fixture: cpu, cuda if present)."""
    cfg = {**TINY, "task": "go", "device": device, "max_epochs": 1, "method": method, "skip": 4,
           "anneal_steps": 1, "anneal_span": 1}
    ens = trainers.train({**cfg, "members": 2}, progress=False)
    assert next(ens.model.parameters()).device.type == device
    one = trainers.train({**cfg, "seed": cfg["seed"] + 1}, progress=False)
    np.testing.assert_allclose(_losses(ens)[:, 1], _losses(one)[:, 0], rtol=1e-4)
    assert ens.steps[0]["theta"] == [4, 1 if method == "cd" else 4]
