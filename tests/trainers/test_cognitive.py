"""The 16 cognitive tasks of 002 (trainers/tasks/cognitive.py): every batch equals a slow per-trial
construction written here from the task definitions (002 Eq. 3-4, the authors' code), the
per-trial performance criterion, shapes/padding/timing, option errors, registration and the loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trainers.tasks import TASKS
from trainers.tasks.cognitive import COGNITIVE_TASKS, CognitiveTask
from trainers.tasks.trials import PAD, PERIODS, RESPONSE, pad_batch

NAMES = ["go", "rtgo", "dgo", "anti", "rtanti", "danti", "dm", "dmd", "msdm", "ddm", "ddmd", "msddm",
         "dms-cog", "dnms", "dmc", "dnmc"]
MATCH = ["dms-cog", "dnms", "dmc", "dnmc"]


def make(name: str, **options) -> CognitiveTask:
    return TASKS[name](**options)


def draw(name: str, batch: int = 5, seed: int = 0, **options):
    task = make(name, **options)
    return task, task.sample(batch, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------- slow reference
def cdist(a: float, b: float) -> float:
    d = (a - b) % (2 * math.pi)
    return min(d, 2 * math.pi - d)


def bump(direction: float, n: int) -> np.ndarray:
    """0.8 exp(-0.5 (8 d / pi)^2) per ring unit (002 Eq. 3 with gamma = 1, Eq. 4 without 0.05)."""
    return np.array([0.8 * math.exp(-0.5 * (8 * cdist(direction, 2 * math.pi * j / n) / math.pi) ** 2)
                     for j in range(n)])


def definition(name: str, info: dict, i: int):
    """The stimuli [(span name, ring, direction, strength)], target direction and whether a
    response is due for trial ``i``, from the drawn quantities, as the task descriptions say."""
    g = {k: v[i].item() for k, v in info.items() if v.ndim == 1}
    if name in ("go", "anti", "rtgo", "rtanti", "dgo", "danti"):
        span = "response" if name.startswith("rt") else "stimulus"
        direction = g["theta"] + (math.pi if "anti" in name else 0.0)
        return [(span, g["modality"], g["theta"], 1.0)], direction % (2 * math.pi), True
    if name in ("dm", "dmd", "ddm", "ddmd"):
        s1, s2 = ("stimulus1", "stimulus2") if name.startswith("dd") else ("stimulus", "stimulus")
        c, d, first = g["coherence"], g["delta"], g["first_stronger"]
        assert 0.8 <= c < 1.2 and 0.1 <= d < 0.2
        assert math.pi / 2 - 1e-5 <= cdist(g["theta1"], g["theta2"]) <= math.pi + 1e-5
        stimuli = [(s1, 0, g["theta1"], c + d if first else c - d), (s2, 0, g["theta2"], c - d if first else c + d)]
        if name.endswith("dmd"):
            oc, od, ofirst = g["distractor_coherence"], g["distractor_delta"], g["distractor_first_stronger"]
            stimuli += [(s1, 1, g["theta1"], oc + od if ofirst else oc - od),
                        (s2, 1, g["theta2"], oc - od if ofirst else oc + od)]
        return stimuli, g["theta1"] if first else g["theta2"], True
    if name in ("msdm", "msddm"):
        m, k, c, d = g["modality"], g["weight"], g["coherence"], g["delta"]
        assert 1.2 <= k < 1.4
        if name == "msdm":
            s1 = s2 = "stimulus"
        else:
            s1, s2 = ("stimulus1", "stimulus2") if g["theta1_first"] else ("stimulus2", "stimulus1")
        stimuli = [(s1, m, g["theta1"], k * (c + d)), (s2, m, g["theta2"], k * (c - d)),
                   (s1, 1 - m, g["theta1"], (2 - k) * (c + d)), (s2, 1 - m, g["theta2"], (2 - k) * (c - d))]
        return stimuli, g["theta1"], True
    assert name in MATCH
    t1, t2, match = g["theta1"], g["theta2"], g["match"]
    if name in ("dms-cog", "dnms"):
        assert (cdist(t1, t2) <= math.pi / 18 + 1e-5) if match else (cdist(t1, t2) >= math.pi / 2 - 1e-5)
    else:
        cats = [0 if 0 <= t < math.pi / 2 else 1 if math.pi <= t < 1.5 * math.pi else None for t in (t1, t2)]
        assert None not in cats and (cats[0] == cats[1]) == match
    respond = match if name in ("dms-cog", "dmc") else not match
    return [("stimulus1", g["modality1"], t1, 1.0), ("stimulus2", g["modality2"], t2, 1.0)], t2, respond


def slow_batch(task: CognitiveTask, batch):
    """Inputs, targets, mask and periods built trial by trial and step by step."""
    info = {k: v.cpu() for k, v in batch.info.items()}
    B, T, _ = batch.inputs.shape
    n, g = task.n_ring, int(round(task.grace_ms / task.dt))
    X, Y, M = np.zeros((B, T, 1 + 2 * n)), np.zeros((B, T, 1 + n)), np.zeros((B, T, 1 + n))
    P = np.full((B, T), PAD)
    for i in range(B):
        bounds, on = {}, 0
        for s, span in enumerate(task.timing):
            dur = int(info["durations"][i, s])
            bounds[span.name] = (on, on + dur)
            P[i, on:on + dur] = PERIODS.index(span.period)
            on += dur
        length = on
        stimuli, direction, respond = definition(task.name, info, i)
        assert bool(info["respond"][i]) == respond
        if respond:
            assert cdist(float(info["direction"][i]), direction) < 1e-5
        else:
            assert math.isnan(float(info["direction"][i]))
        r0 = bounds["response"][0]
        pre = [t for t in range(length) if P[i, t] != RESPONSE and t >= g]
        post = [t for t in range(length) if P[i, t] == RESPONSE and t >= r0 + g]
        for t in range(length):
            responding = P[i, t] == RESPONSE
            X[i, t, 0] = 1.0 if (not responding or task.name.startswith("rt")) else 0.0
            for span, ring, theta, strength in stimuli:
                a, b = bounds[span]
                if a <= t < b:
                    X[i, t, 1 + ring * n:1 + (ring + 1) * n] += strength * bump(theta, n)
            if responding and respond:
                Y[i, t, 0], Y[i, t, 1:] = 0.05, bump(direction, n) + 0.05
            else:
                Y[i, t, 0], Y[i, t, 1:] = 0.85, 0.05
            if t in pre:
                M[i, t] = length / (2 * len(pre))
            elif t in post:
                M[i, t] = length / (2 * len(post))
    return X, Y, M, P


@pytest.mark.parametrize("name", NAMES)
def test_batch_equals_slow_per_trial_construction(name):
    task, b = draw(name, batch=4, seed=3)
    X, Y, M, P = slow_batch(task, b)
    np.testing.assert_array_equal(b.periods.numpy(), P)
    np.testing.assert_allclose(b.inputs.numpy(), X, atol=1e-6, rtol=0)
    np.testing.assert_allclose(b.targets.numpy(), Y, atol=1e-6, rtol=0)
    np.testing.assert_allclose(b.mask.numpy(), M, atol=1e-6, rtol=0)


# ---------------------------------------------------------------------- performance
def _roll_ring(outputs: torch.Tensor, units: int) -> torch.Tensor:
    out = outputs.clone()
    out[..., 1:] = torch.roll(out[..., 1:], units, dims=-1)
    return out


@pytest.mark.parametrize("name", NAMES)
def test_performance_of_target_rotations_and_broken_fixation(name):
    task, b = draw(name, batch=12, seed=1)
    respond = b.info["respond"]
    assert task.performance(b.targets, b).tolist() == [1.0] * 12
    assert task.performance(b.targets[:, :, None], b).tolist() == [1.0] * 12     # head axis
    # one ring unit (2 pi / 32 < 0.2 pi) is within the default tolerance; five are not
    assert task.performance(_roll_ring(b.targets, 1), b).tolist() == [1.0] * 12
    rotated = task.performance(_roll_ring(b.targets, 5), b)
    assert rotated.tolist() == (~respond).float().tolist()
    # breaking fixation at one costed step before the response fails the trial
    broken = b.targets.clone()
    step = task.grace_steps + 3
    broken[:, step, 0] = 0.3
    assert task.performance(broken, b).tolist() == [0.0] * 12
    # the cost-free first steps are not checked (the network is still settling)
    early = b.targets.clone()
    early[:, 0, 0] = 0.3
    assert task.performance(early, b).tolist() == [1.0] * 12
    # keeping fixation at the end of a trial that needs a response fails it
    last = b.lengths - 1
    held = b.targets.clone()
    held[torch.arange(12), last, 0] = 0.85
    assert task.performance(held, b).tolist() == (~respond).float().tolist()


@pytest.mark.parametrize("name", MATCH)
def test_a_no_response_trial_answered_with_a_response_fails(name):
    task, b = draw(name, batch=16, seed=2)
    respond = b.info["respond"]
    assert respond.any() and (~respond).any()
    answered = b.targets.clone()
    last = b.lengths - 1
    idx = torch.arange(16)
    answered[idx, last, 0] = 0.05
    for i in range(16):                                     # a response toward the second stimulus
        answered[i, last[i], 1:] = torch.tensor(bump(float(b.info["theta2"][i]), 32) + 0.05)
    assert task.performance(answered, b).tolist() == respond.float().tolist()


def test_tolerance_option_sets_the_response_criterion():
    task, b = draw("go", batch=6, seed=0, tolerance=0.1)
    assert task.performance(_roll_ring(b.targets, 1), b).tolist() == [0.0] * 6     # 0.196 rad > 0.1
    assert make("go").tolerance == pytest.approx(0.2 * math.pi)


# ---------------------------------------------------------------------- shapes, padding, timing
@pytest.mark.parametrize("name", NAMES)
def test_shapes_padding_and_durations(name):
    task, b = draw(name, batch=8, seed=4)
    B, T, _ = b.inputs.shape
    assert (task.input_dim, task.output_dim) == (65, 33)
    assert b.inputs.shape == (8, T, 65) and b.targets.shape == b.mask.shape == (8, T, 33)
    assert b.inputs.dtype == b.targets.dtype == b.mask.dtype == torch.float32 and b.periods.dtype == torch.int64
    assert all(v.shape[0] == 8 for v in b.info.values())
    durations = b.info["durations"]
    assert b.lengths.tolist() == durations.sum(1).tolist() and T == int(b.lengths.max())
    for i, L in enumerate(b.lengths.tolist()):
        assert (b.periods[i, :L] != PAD).all() and (b.periods[i, L:] == PAD).all()
        for x in (b.inputs, b.targets, b.mask):
            assert (x[i, L:] == 0).all()
    for s, span in enumerate(task.timing):
        ms = durations[:, s].double() * task.dt
        if span.low_ms == span.high_ms:
            assert (ms == span.low_ms).all()
        else:
            assert (ms >= span.low_ms).all() and (ms < span.high_ms).all()
    assert task.timing[-1].period == "response"


def test_durations_cover_the_timing_range():
    task, b = draw("dgo", batch=400, seed=0)
    steps = b.info["durations"][:, 2]                      # delay: [900, 1100) ms = steps 180..219
    assert int(steps.min()) == 180 and int(steps.max()) == 219


@pytest.mark.parametrize("name", ["go", "ddmd", "dnmc"])
def test_a_different_dt_gives_the_same_trial_in_ms(name):
    t5, b5 = draw(name, batch=6, seed=7)
    t10, b10 = draw(name, batch=6, seed=7, dt=10.0)
    for key in b5.info:
        if key not in ("onsets", "durations"):
            torch.testing.assert_close(b5.info[key], b10.info[key], equal_nan=True)
    d5, d10 = b5.info["durations"] * 5.0, b10.info["durations"] * 10.0
    assert (d5 - d10).abs().max() <= 5.0                  # the same draw on a coarser step grid
    # inputs and targets in the middle of every span agree
    for i in range(6):
        for s in range(len(t5.timing)):
            mid_ms = float(b10.info["onsets"][i, s] * 10.0 + d10[i, s] / 2)
            k5 = int((mid_ms - float(b5.info["onsets"][i, s]) * 5.0) // 5.0 + b5.info["onsets"][i, s])
            k10 = int(mid_ms // 10.0)
            assert b5.periods[i, k5] == b10.periods[i, k10]
            torch.testing.assert_close(b5.inputs[i, k5], b10.inputs[i, k10])
            torch.testing.assert_close(b5.targets[i, k5], b10.targets[i, k10])


def test_sampling_follows_the_generator_and_device(device):      # device: cpu, cuda if present
    task = make("dmd")
    a = task.sample(3, generator=torch.Generator().manual_seed(5))
    b = task.sample(3, generator=torch.Generator().manual_seed(5), device="cpu")
    torch.testing.assert_close(a.inputs, b.inputs)
    assert a.inputs.device.type == "cpu" and task.sample(2).inputs.shape[0] == 2
    c = task.sample(3, generator=torch.Generator(device=device).manual_seed(5), device=device)
    assert all(x.device.type == device for x in (c.inputs, c.targets, c.mask, c.periods, *c.info.values()))
    assert c.inputs.shape[-1] == 65 and task.performance(c.targets, c).tolist() == [1.0] * 3


@pytest.mark.parametrize("options, message", [
    ({"n_ring": 1}, "n_ring must be >= 2"),
    ({"dt": 0.0}, "dt must be a positive number"),
    ({"dt": 1000.0}, "choose dt <= 400"),
    ({"tolerance": 4.0}, "tolerance must be at most pi"),
    ({"tolerance": -0.1}, "tolerance must be a positive number"),
    ({"grace_ms": 450.0}, "choose grace_ms below 400"),
    ({"coherence_low": 1.5}, "coherence_low <= coherence_high"),
    ({"weight_high": 2.5}, "choose weight_high below 2"),
    ({"spread": 1.0}, "unknown task option 'spread'"),
])
def test_bad_options_name_the_fix(options, message):
    with pytest.raises(ValueError, match=message):
        make("msdm", **options)


def test_every_task_is_registered_and_builds_from_its_options():
    assert [cls.name for cls in COGNITIVE_TASKS] == NAMES
    assert TASKS["dms"] is not TASKS["dms-cog"]           # "dms" stays the timescale paper's N-DMS
    for name in NAMES:
        cls = TASKS[name]
        assert issubclass(cls, CognitiveTask) and cls.name == name
        options = TASKS.resolve_options(name, {})
        task = cls.from_config({"task": name, **options})
        assert task.config() == {"task": name, **options} and task.dt == 5.0 and task.n_ring == 32
        assert {"dt", "n_ring", "tolerance", "grace_ms"} <= set(options)
        assert next(o for o in cls.options if o.name == "dt").shared
        assert cls.defaults["output_activation"] == "sigmoid" and cls.defaults["curriculum"] == "percentile"
    small = TASKS["dnmc"].from_config({"task": "dnmc", **TASKS.resolve_options("dnmc", {"n_ring": 8})})
    assert (small.input_dim, small.output_dim) == (17, 9)
    assert small.sample(2, generator=torch.Generator().manual_seed(0)).inputs.shape[-1] == 17


# ---------------------------------------------------------------------- loss
@pytest.mark.parametrize("name", ["go", "ddm", "dms-cog"])
def test_loss_is_zero_on_target_unchanged_by_padding_and_the_authors_cost(name):
    task, b = draw(name, batch=6, seed=8)
    assert float(task.loss(b.targets[:, :, None], b)) == 0.0
    y = torch.rand(b.targets.shape, generator=torch.Generator().manual_seed(0))
    loss = task.loss(y[:, :, None], b)
    padded = pad_batch(b, b.inputs.shape[1] + 17)
    y_pad = torch.cat([y, torch.rand(6, 17, 33)], 1)
    torch.testing.assert_close(task.loss(y_pad[:, :, None], padded), loss)
    assert task.performance(y_pad, padded).tolist() == task.performance(y, b).tolist()
    # per trial: (mean error before the response + mean error in it) / 2, weighted by length
    err = ((y - b.targets) ** 2).mean(-1)
    costed = b.mask[..., 0] > 0
    resp = b.periods == RESPONSE
    pre = (err * (costed & ~resp)).sum(1) / (costed & ~resp).sum(1)
    post = (err * (costed & resp)).sum(1) / (costed & resp).sum(1)
    L = b.lengths.double()
    expected = (L * (pre + post).double() / 2).sum() / L.sum()
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)


def test_no_option_clashes_with_the_engine_models_or_curricula_except_the_shared_dt():
    from trainers.config import ENGINE_OPTIONS
    from trainers.curricula import CURRICULA
    from trainers.models import MODELS

    engine = {o.name for o in ENGINE_OPTIONS}
    others = {o.name for reg in (MODELS, CURRICULA) for n in reg for o in reg[n].options}
    for cls in COGNITIVE_TASKS:
        names = {o.name for o in cls.options}
        assert not names & engine and names & others <= {"dt"}, cls.name


def test_a_large_batch_is_built_quickly():
    import time

    task = make("ddmd")
    start = time.perf_counter()
    b = task.sample(256, generator=torch.Generator().manual_seed(0))
    assert time.perf_counter() - start < 5.0 and b.inputs.shape[0] == 256


def test_performance_scores_the_first_head_of_several():
    task = TASKS["go"]()
    b = task.sample(4, generator=torch.Generator().manual_seed(0))
    wrong = torch.zeros_like(b.targets)
    outputs = torch.stack([b.targets, wrong], dim=-2)            # (batch, time, head=2, output)
    assert task.performance(outputs, b).tolist() == [1.0] * 4
