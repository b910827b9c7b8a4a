"""The two tasks of 001 (trainers/tasks/multitau.py): batches equal a slow per-trial construction
from the protocol, the correct answers are right, durations follow the options in ms, the
criterion and the loss behave."""

from __future__ import annotations

import pytest
import torch

from trainers.tasks.multitau import (
    FIXATION_FACTOR,
    HIGH,
    LOW,
    PRE_WEIGHT,
    RESPONSE_WEIGHT,
    IntegrationWM,
    MultiTimescaleWM,
    draw_steps,
    period_codes,
)
from trainers.tasks.trials import PAD, PERIODS, RESPONSE, STIMULUS, masked_mse, pad_batch, stack_batches

TASKS = [MultiTimescaleWM, IntegrationWM]
SHORT = dict(fixation_ms=50.0, integration_min_ms=100.0, integration_max_ms=300.0, delay_min_ms=0.0,
             delay_max_ms=200.0, response_ms=150.0, grace_ms=50.0)


def draw(cls, batch=16, seed=0, device="cpu", **options):
    task = cls(**{**SHORT, **options})
    gen = torch.Generator(device=device).manual_seed(seed)
    return task, task.sample(batch, generator=gen, device=device)


# ---------------------------------------------------------------------- slow reference
def slow_trial(task, b, info):
    """One trial built step by step from the protocol (docs/multitimescale-tasks.md) and the
    drawn quantities in ``info``: inputs, targets, mask, periods as nested lists, and the evidence
    channels' columns."""
    steps = [int(s) for s in info["steps"][b]]
    period_of = [k for k, n in enumerate(steps) for _ in range(n)]
    resp_on = sum(steps[:3])
    stim_on, stim_off = steps[0], steps[0] + steps[1]
    mtwm = isinstance(task, MultiTimescaleWM)
    n_ev = task.n_channels if mtwm else 1
    inputs, targets, mask = [], [], []
    for t, period in enumerate(period_of):
        x = [1.0 if period < RESPONSE else 0.0]
        for c in range(n_ev):
            x.append(float(info["mean"][b, c]) if stim_on <= t < stim_off else 0.0)
        if mtwm:
            cue_steps = round(task.cue_ms / task.dt)
            x += [1.0 if (c == int(info["cue"][b]) and resp_on <= t < resp_on + cue_steps) else 0.0
                  for c in range(task.n_channels)]
        else:
            on, k = int(info["item_onset"][b]), round(task.item_ms / task.dt)
            x += [1.0 if (i == int(info["item"][b]) and on <= t < on + k) else 0.0 for i in range(task.n_items)]
        y = [HIGH if period < RESPONSE else LOW]
        y += [HIGH if (period == RESPONSE and c == int(info["answer"][b])) else LOW for c in range(2)]
        if not mtwm:
            y += [HIGH if (period == RESPONSE and i == int(info["item"][b])) else LOW for i in range(task.n_items)]
        if period < RESPONSE:
            w = PRE_WEIGHT
        elif t >= resp_on + round(task.grace_ms / task.dt):
            w = RESPONSE_WEIGHT
        else:
            w = 0.0
        inputs.append(x)
        targets.append(y)
        mask.append([w * FIXATION_FACTOR] + [w] * (len(y) - 1))
    return inputs, targets, mask, period_of, list(range(1, 1 + n_ev))


def compare_with_slow(task, batch, *, exact_evidence):
    T = batch.inputs.shape[1]
    for b in range(batch.inputs.shape[0]):
        inputs, targets, mask, periods, ev = slow_trial(task, b, batch.info)
        n = len(periods)
        assert int(batch.info["length"][b]) == n
        assert batch.periods[b, :n].tolist() == periods and (batch.periods[b, n:] == PAD).all()
        got_in = batch.inputs[b, :n].double()
        want_in = torch.tensor(inputs, dtype=torch.float64)
        keep = [c for c in range(got_in.shape[1]) if exact_evidence or c not in ev]
        torch.testing.assert_close(got_in[:, keep], want_in[:, keep], atol=1e-6, rtol=0)
        torch.testing.assert_close(batch.targets[b, :n].double(), torch.tensor(targets, dtype=torch.float64),
                                   atol=1e-6, rtol=0)
        torch.testing.assert_close(batch.mask[b, :n].double(), torch.tensor(mask, dtype=torch.float64),
                                   atol=1e-6, rtol=0)
        for x in (batch.inputs, batch.targets, batch.mask):       # padding: zero input, target, cost
            assert (x[b, n:T] == 0).all()


@pytest.mark.parametrize("cls", TASKS)
def test_batch_equals_slow_construction_without_noise(cls):
    task, batch = draw(cls, evidence_noise=0.0)
    compare_with_slow(task, batch, exact_evidence=True)
    assert (batch.lengths < batch.inputs.shape[1]).any()        # trials of different lengths: padding tested


@pytest.mark.parametrize("cls", TASKS)
def test_batch_equals_slow_construction_with_noise(cls):
    """With noise, everything but the evidence equals the slow construction; the evidence is its
    mean plus white noise of std evidence_noise * sqrt(1000 / dt) on the stimulus steps and 0 elsewhere."""
    task, batch = draw(cls, batch=64, evidence_noise=0.1, dt=5.0)
    compare_with_slow(task, batch, exact_evidence=False)
    n_ev = task.n_channels if cls is MultiTimescaleWM else 1
    stim = batch.periods == STIMULUS
    ev = batch.inputs[:, :, 1:1 + n_ev]
    assert (ev[~stim] == 0).all()
    resid = (ev - batch.info["mean"][:, None, :])[stim]
    assert abs(float(resid.std()) - 0.1 * (1000 / 5.0) ** 0.5) < 0.05 * 1.414
    assert abs(float(resid.mean())) < 5 * float(resid.std()) / resid.numel() ** 0.5


# ---------------------------------------------------------------------- answers
@pytest.mark.parametrize("cls", TASKS)
def test_answer_is_the_sign_of_the_presented_evidence(cls):
    task, batch = draw(cls, batch=64, evidence_noise=0.2)
    n_ev = task.n_channels if cls is MultiTimescaleWM else 1
    for b in range(64):
        n = int(batch.info["length"][b])
        sums = [sum(float(batch.inputs[b, t, 1 + c]) for t in range(n)) * task.dt / 1000 for c in range(n_ev)]
        assert batch.info["evidence"][b].tolist() == pytest.approx(sums, abs=1e-5)
        if cls is MultiTimescaleWM:
            cue_in = batch.inputs[b, :, 1 + n_ev:]
            cued = int(cue_in.sum(0).argmax())
            assert cue_in.sum() > 0 and int(batch.info["cue"][b]) == cued
            # the cue is shown only in the response period
            assert (batch.periods[b][cue_in.sum(1) > 0] == RESPONSE).all()
        else:
            cued = 0
        assert int(batch.info["answer"][b]) == (0 if sums[cued] >= 0 else 1)
    # both answers occur
    assert set(batch.info["answer"].tolist()) == {0, 1}


def test_integration_wm_item_is_shown_inside_the_stimulus_and_is_the_answer():
    task, batch = draw(IntegrationWM, batch=64, n_items=3, item_ms=50.0)
    items = batch.inputs[:, :, 2:]
    for b in range(64):
        shown = items[b].sum(1) > 0
        assert int(shown.sum()) == 50 / task.dt
        assert (batch.periods[b][shown] == STIMULUS).all()              # remembered while integrating
        assert int(items[b].sum(0).argmax()) == int(batch.info["item"][b])
        assert int(shown.nonzero()[0]) == int(batch.info["item_onset"][b])
    assert set(batch.info["item"].tolist()) == {0, 1, 2}


# ---------------------------------------------------------------------- performance
@pytest.mark.parametrize("cls", TASKS)
def test_performance_of_target_and_of_wrong_outputs(cls):
    task, batch = draw(cls, batch=12)
    B = 12
    assert task.performance(batch.targets, batch).tolist() == [1.0] * B
    assert task.performance(batch.targets[:, :, None, :], batch).tolist() == [1.0] * B    # head axis

    wrong = batch.targets.clone()
    wrong[:, :, [1, 2]] = wrong[:, :, [2, 1]]                                # the other decision
    assert task.performance(wrong, batch).tolist() == [0.0] * B

    broken = batch.targets.clone()
    t_break = int(batch.info["onsets"][3, STIMULUS]) + 1
    broken[3, t_break, 0] = 0.3                                              # fixation broken once
    perf = task.performance(broken, batch)
    assert perf[3] == 0.0 and perf.sum() == B - 1

    late = batch.targets.clone()
    late[:, :, 0] = torch.where(batch.periods == RESPONSE, HIGH, late[:, :, 0])     # never released
    assert task.performance(late, batch).tolist() == [0.0] * B

    # the grace period is not scored: a wrong decision there does not matter
    grace = batch.targets.clone()
    t = torch.arange(grace.shape[1])
    in_grace = (batch.periods == RESPONSE) & (t < batch.info["onsets"][:, RESPONSE, None] + task.grace_ms / task.dt)
    grace[in_grace] = grace[in_grace][:, [0, 2, 1, *range(3, grace.shape[2])]]
    assert task.performance(grace, batch).tolist() == [1.0] * B


def test_integration_wm_needs_both_results():
    task, batch = draw(IntegrationWM, batch=12, n_items=2)
    wrong_item = batch.targets.clone()
    wrong_item[:, :, [3, 4]] = wrong_item[:, :, [4, 3]]
    assert task.performance(wrong_item, batch).tolist() == [0.0] * 12


# ---------------------------------------------------------------------- durations and options
@pytest.mark.parametrize("cls", TASKS)
@pytest.mark.parametrize("dt", [5.0, 10.0])
def test_durations_follow_the_options_in_ms(cls, dt):
    opts = dict(fixation_ms=100.0, integration_min_ms=200.0, integration_max_ms=400.0, delay_min_ms=300.0,
                delay_max_ms=600.0, response_ms=200.0, grace_ms=50.0 if dt == 5 else 100.0)
    task = cls(dt=dt, **opts)
    batch = task.sample(256, generator=torch.Generator().manual_seed(1))
    ms = batch.info["steps"].double() * dt
    counted = torch.stack([(batch.periods == k).sum(1) for k in range(len(PERIODS))], 1)
    assert torch.equal(counted, batch.info["steps"])                  # period codes = drawn durations
    assert (ms[:, 0] == 100).all() and (ms[:, 3] == 200).all()
    for k, (lo, hi) in ((1, (200, 400)), (2, (300, 600))):
        assert ms[:, k].min() == lo and ms[:, k].max() == hi            # the whole range, ends included
    assert ((ms[:, 1] / dt) % 1 == 0).all()
    assert torch.equal(batch.info["onsets"][:, 1:], batch.info["steps"].cumsum(1)[:, :-1])
    scored = (batch.mask[:, :, 1] == RESPONSE_WEIGHT).sum(1).double() * dt
    assert (scored == 200 - opts["grace_ms"]).all()


@pytest.mark.parametrize("cls, options, match", [
    (MultiTimescaleWM, dict(delay_min_ms=-5.0), "delay_min_ms must be >= 0"),
    (MultiTimescaleWM, dict(delay_min_ms=800.0, delay_max_ms=600.0), "delay_min_ms=800 exceeds delay_max_ms"),
    (MultiTimescaleWM, dict(integration_max_ms=1002.0), "integration_max_ms=1002 ms is not a multiple of dt=5"),
    (IntegrationWM, dict(dt=3.0), "fixation_ms=200 ms is not a multiple of dt=3"),
    (MultiTimescaleWM, dict(integration_min_ms=0.0, integration_max_ms=0.0), "integration_min_ms must be > 0"),
    (MultiTimescaleWM, dict(dt=0.0), "dt must be > 0"),
    (MultiTimescaleWM, dict(grace_ms=500.0), "give grace_ms < response_ms"),
    (MultiTimescaleWM, dict(cue_ms=600.0), "give cue_ms <= response_ms"),
    (MultiTimescaleWM, dict(n_channels=0), "n_channels"),
    (MultiTimescaleWM, dict(coherence=0.0), "coherence must be > 0"),
    (MultiTimescaleWM, dict(evidence_noise=-0.1), "evidence_noise must be >= 0"),
    (IntegrationWM, dict(n_items=1), "n_items must be >= 2"),
    (IntegrationWM, dict(item_ms=300.0), "give item_ms <= integration_min_ms"),
    (IntegrationWM, dict(item_ms=12.0), "item_ms=12 ms is not a multiple of dt=5"),
])
def test_bad_options_raise_one_line_naming_the_fix(cls, options, match):
    with pytest.raises(ValueError, match=match) as err:
        cls(**options)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("cls", TASKS)
def test_options_round_trip_and_declare_dt_shared(cls):
    task = cls(dt=10.0, delay_max_ms=2000.0)
    assert repr(cls.from_config(task.config())) == repr(task)
    assert set(task.config()) == {"task"} | {o.name for o in cls.options}
    dt = next(o for o in cls.options if o.name == "dt")
    assert dt.shared and dt.default == 5.0
    assert cls.defaults["model"] == "rate" and cls.defaults["output_activation"] == "sigmoid"


# ---------------------------------------------------------------------- loss, padding, devices
@pytest.mark.parametrize("cls", TASKS)
def test_loss_of_target_is_zero_and_padding_changes_nothing(cls):
    task, batch = draw(cls, batch=8, evidence_noise=0.1)
    assert float(task.loss(batch.targets, batch)) == 0.0
    out = torch.rand(batch.targets.shape, generator=torch.Generator().manual_seed(3))
    padded = pad_batch(batch, batch.inputs.shape[1] + 17)
    out_p = torch.cat([out, torch.rand(8, 17, out.shape[2])], 1)
    torch.testing.assert_close(task.loss(out_p, padded), task.loss(out, batch))
    torch.testing.assert_close(masked_mse(out_p[:, :, None], padded), task.loss(out, batch))
    assert torch.equal(task.performance(out_p, padded), task.performance(out, batch))
    wrong = batch.targets.clone()
    wrong[:, :, [1, 2]] = wrong[:, :, [2, 1]]
    assert float(task.loss(wrong, batch)) > 0


@pytest.mark.parametrize("cls", TASKS)
def test_ensembles_stack_and_the_criterion_reads_every_member(cls):
    task = cls(**SHORT)
    batches = [task.sample(4, generator=torch.Generator().manual_seed(s)) for s in (0, 1)]
    stacked = stack_batches(batches)
    assert task.performance(stacked.targets, stacked).tolist() == [[1.0] * 4] * 2


@pytest.mark.parametrize("cls", TASKS)
def test_same_generator_same_batch_on_the_device(cls, device):      # device: cpu, cuda if present
    _, a = draw(cls, device=device, seed=5, evidence_noise=0.1)
    _, b = draw(cls, device=device, seed=5, evidence_noise=0.1)
    assert a.inputs.device.type == device and all(v.device.type == device for v in a.info.values())
    for x, y in ((a.inputs, b.inputs), (a.targets, b.targets), (a.mask, b.mask), (a.periods, b.periods)):
        assert torch.equal(x, y)
    _, c = draw(cls, device=device, seed=6, evidence_noise=0.1)
    assert not torch.equal(a.info["mean"], c.info["mean"])
    task = cls(**SHORT)
    assert task.performance(a.targets, a).sum() == a.inputs.shape[0]


def test_builder_draws_nothing_for_fixed_periods():
    table = {"fixation": (3, 3), "stimulus": (2, 2), "delay": (0, 0), "response": (4, 4)}
    gen = torch.Generator().manual_seed(0)
    state = gen.get_state()
    steps = draw_steps(table, 5, generator=gen, device=torch.device("cpu"))
    assert torch.equal(gen.get_state(), state)
    bounds, periods = period_codes(steps)
    assert periods[0].tolist() == [0, 0, 0, 1, 1, 3, 3, 3, 3] and bounds[0].tolist() == [0, 3, 5, 5, 9]


@pytest.mark.parametrize("cls", TASKS)
def test_no_option_clashes_with_a_model_or_curriculum_option(cls):
    """A task option given at the top level of a configuration must have one owner (dt is shared)."""
    from trainers.curricula import CURRICULA
    from trainers.models import MODELS
    from trainers.registry import Registry

    others = {name for reg in (MODELS, CURRICULA) for n in reg for name in reg.options(n)}
    assert {o.name for o in cls.options} & others <= {"dt"}
    tasks = Registry("task")
    tasks.register(cls)
    resolved = tasks.resolve_options(cls.name, {"delay_max_ms": 3000, "dt": 10})
    assert repr(cls(**resolved)) == repr(cls(delay_max_ms=3000.0, dt=10.0))
