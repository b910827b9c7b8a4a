"""The rule-reversal task of 002 Sec. 4.1 (``rule-reversal``): the drawn sequences against a
per-trial construction written out by hand, the closed loop (feedback from the network's own
answers, skip connections between trial starts, an ensemble axis), the loss and performance, a
feedback-tracking policy against one that ignores feedback, and a real rate network."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainers.tasks import TASKS
from trainers.tasks.rulereversal import FEEDBACK, PATTERNS, RuleReversal
from trainers.tasks.trials import DELAY, FIXATION, PERIODS, RESPONSE, STIMULUS, stack_batches

# a coarse time step keeps sequences short: settle 20 steps, periods 10, grace 2
SMALL = {"dt": 50.0}


def small(**kwargs) -> RuleReversal:
    return RuleReversal(**{**SMALL, **kwargs})


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def by_hand(task: RuleReversal, rule: list[int], stim: list[int], answers: list[int] | None = None):
    """One sequence built trial by trial, period by period: (inputs, targets, mask, periods)."""
    rows_u, rows_t, rows_m, rows_p = [], [], [], []

    def put(n, u, t, m, p):
        for _ in range(n):
            rows_u.append(list(u))
            rows_t.append(list(t))
            rows_m.append(list(m))
            rows_p.append(p)

    put(task.settle_steps, [0, 0, 0, 0], [0, 0], [0, 0], FIXATION)
    n = {k: int(round(getattr(task, f"{k}_ms") / task.dt)) for k in ("sample", "response", "feedback", "wait")}
    for i in range(5):
        put(n["sample"], [1 - stim[i], stim[i], 0, 0], [0, 0], [0, 0], STIMULUS)
        previous = rule[i - 1] if i > 0 else 0
        ideal = stim[i] if previous == 0 else 1 - stim[i]
        target = [1 - ideal, ideal]
        put(task.grace_steps, [0, 0, 0, 0], [0, 0], [0, 0], RESPONSE)
        put(n["response"] - task.grace_steps, [0, 0, 0, 0], target, [1, 1], RESPONSE)
        if answers is None:
            fb = [0, 0]
        else:
            correct = stim[i] if rule[i] == 0 else 1 - stim[i]
            fb = [1, 0] if answers[i] == correct else [0, 1]
        put(n["feedback"], [0, 0, *fb], [0, 0], [0, 0], FEEDBACK)
        put(n["wait"], [0, 0, 0, 0], [0, 0], [0, 0], DELAY)
    f = torch.tensor
    return f(rows_u, dtype=torch.float32), f(rows_t, dtype=torch.float32), f(rows_m, dtype=torch.float32), f(rows_p)


def trial_of(task: RuleReversal, start: int) -> int:
    """Index of the trial a segment starting at ``start`` belongs to (-1: settling)."""
    i = -1
    for kind, a, _ in task.segments():
        if kind == "sample":
            i += 1
        if a == start:
            return i
    raise AssertionError(start)


def scripted_run(task: RuleReversal, answers: torch.Tensor, units: int = 3):
    """A ``run`` that answers ``answers[..., b, trial]`` (probability 1) in every step of a trial."""

    def run(h, start, stop, u):
        i = max(trial_of(task, start), 0)
        y = torch.nn.functional.one_hot(answers[..., i], 2).float()          # (..., B, 2)
        Y = y[..., None, :].expand(*u.shape[:-1], 2)
        H = h[..., None, :].expand(*u.shape[:-1], units) + 0.0
        return H, Y

    return run


# ---------------------------------------------------------------------- layout and sampling
def test_registered_with_the_002_defaults():
    cls = TASKS["rule-reversal"]
    assert cls is RuleReversal and cls.closed_loop and (cls.input_dim, cls.output_dim) == (4, 2)
    options = TASKS.resolve_options("rule-reversal", {})
    task = cls.from_config({"task": "rule-reversal", **options})
    assert task.config() == {"task": "rule-reversal", **options}
    assert next(o for o in cls.options if o.name == "dt").shared
    d = cls.defaults
    assert (d["model"], d["output_activation"], d["units"], d["batch"], d["lr"]) == ("rate", "softmax", 50, 40, 2e-3)
    assert (d["input_units"], d["output_units"], d["curriculum"], d["noise"]) == (0, 0, "percentile", "ou")
    assert task.period_names[: len(PERIODS)] == PERIODS and task.period_names[FEEDBACK] == "feedback"


def test_no_option_clashes_with_the_engine_models_or_curricula_except_the_shared_dt():
    from trainers.config import ENGINE_OPTIONS
    from trainers.curricula import CURRICULA
    from trainers.models import MODELS

    engine = {o.name for o in ENGINE_OPTIONS}
    others = {o.name for reg in (MODELS, CURRICULA) for n in reg for o in reg[n].options}
    names = {o.name for o in RuleReversal.options}
    assert not names & engine and names & others <= {"dt"}


def test_segments_at_dt_5ms_follow_the_authors_timings():
    task = RuleReversal()
    seg = task.segments()
    assert seg[0] == ("settle", 0, 200) and len(seg) == 1 + 5 * 4
    assert [k for k, _, _ in seg[1:5]] == ["sample", "response", "feedback", "wait"]
    assert all(b - a == 100 for _, a, b in seg[1:]) and task.steps == 200 + 5 * 400 == seg[-1][2]
    assert all(seg[k][2] == seg[k + 1][1] for k in range(len(seg) - 1))
    assert task.grace_steps == 20


def test_a_sequence_equals_a_construction_by_hand():
    task = small()
    b = task.sample(16, generator=gen(3))
    T = task.steps
    assert b.inputs.shape == (16, T, 4) and b.targets.shape == (16, T, 2) and b.mask.shape == (16, T, 2)
    assert b.periods.shape == (16, T)
    for key in ("rule", "stimulus", "correct", "ideal"):
        assert b.info[key].shape == (16, 5) and b.info[key].dtype == torch.int64
    for j in range(16):
        rule, stim = b.info["rule"][j].tolist(), b.info["stimulus"][j].tolist()
        assert tuple(rule) in PATTERNS
        u, t, m, p = by_hand(task, rule, stim)
        assert torch.equal(b.inputs[j], u) and torch.equal(b.targets[j], t)
        assert torch.equal(b.mask[j], m) and torch.equal(b.periods[j], p)
        for i in range(5):
            assert b.info["correct"][j, i] == (stim[i] if rule[i] == 0 else 1 - stim[i])
            prev = rule[i - 1] if i else 0
            assert b.info["ideal"][j, i] == (stim[i] if prev == 0 else 1 - stim[i])


def test_sampling_is_reproducible_and_covers_every_pattern():
    task = small()
    a, b = task.sample(400, generator=gen(5)), task.sample(400, generator=gen(5))
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.info["rule"], b.info["rule"])
    counts = torch.bincount(a.info["pattern"], minlength=8)
    assert (counts > 25).all() and counts.sum() == 400
    assert 0.4 < a.info["stimulus"].float().mean() < 0.6


def test_the_realised_feedback_follows_the_scripted_answers():
    task = small()
    b = task.sample(12, generator=gen(7))
    answers = torch.randint(2, (12, 5), generator=gen(8))
    h0 = torch.zeros(12, 3)
    H, Y, inputs = task.rollout(scripted_run(task, answers), b, h0)
    assert H.shape == (12, task.steps, 3) and Y.shape == (12, task.steps, 2) and inputs.shape == (12, task.steps, 4)
    for j in range(12):
        u, *_ = by_hand(task, b.info["rule"][j].tolist(), b.info["stimulus"][j].tolist(), answers[j].tolist())
        assert torch.equal(inputs[j], u)
    assert torch.equal(inputs[..., :2], b.inputs[..., :2]) and b.inputs[..., 2:].abs().sum() == 0


# ---------------------------------------------------------------------- policies
def policy_run(task: RuleReversal, *, use_feedback: bool):
    """Keeps a belief about the rule, flipped on negative feedback (when ``use_feedback``), and
    answers the last stimulus mapped by it with probability ~1 during the response period."""
    state: dict[str, torch.Tensor] = {}
    kinds = {a: k for k, a, _ in task.segments()}

    def run(h, start, stop, u):
        kind = kinds[start]
        B = u.shape[-3]
        belief = state.setdefault("belief", torch.zeros(u.shape[:-2], dtype=torch.int64))
        Y = torch.full((*u.shape[:-1], 2), 0.5)
        if kind == "sample":
            state["stimulus"] = u[..., 0, :2].argmax(-1)
        elif kind == "response":
            answer = state["stimulus"] ^ belief
            p = torch.nn.functional.one_hot(answer, 2).float() * 0.998 + 0.001
            Y = p[..., None, :].expand(*u.shape[:-1], 2)
        elif kind == "feedback" and use_feedback:
            negative = u[..., 0, 3] > 0.5
            state["belief"] = torch.where(negative, 1 - belief, belief)
        assert u.shape[-3] == B
        return h[..., None, :].expand(*u.shape[:-1], h.shape[-1]), Y

    return run


def test_a_policy_that_tracks_feedback_succeeds_and_one_that_ignores_it_does_not():
    task = small()
    b = task.sample(64, generator=gen(11))
    _, Y, inputs = task.rollout(policy_run(task, use_feedback=True), b, torch.zeros(64, 2))
    perf = task.performance(Y, b)
    assert perf.shape == (64,) and float(perf.min()) > 0.99
    _, Y0, _ = task.rollout(policy_run(task, use_feedback=False), b, torch.zeros(64, 2))
    perf0 = task.performance(Y0, b)
    switches = (b.info["rule"][:, :4] == 1).any(1)       # the ideal answer leaves rule 1 at some trial
    assert switches.sum() > 10
    assert float(perf0[switches].max()) < 0.9 and float(perf0[~switches].min()) == 1.0
    assert float(perf0.mean()) < float(perf.mean())
    assert ((perf0 >= 0) & (perf0 <= 1)).all()


# ---------------------------------------------------------------------- skip connections, ensembles
def test_mix_is_called_at_each_trial_boundary_and_starts_the_next_trial():
    task = small()
    b = task.sample(4, generator=gen(13))
    starts = {a: k for k, a, _ in task.segments()}
    seen: list[torch.Tensor] = []
    calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def run(h, start, stop, u):
        if starts[start] == "sample":
            seen.append(h.clone())
        H = h[..., None, :] + torch.arange(1, stop - start + 1, dtype=h.dtype)[:, None]   # drifts up
        return H, torch.full((*u.shape[:-1], 2), 0.5)

    def mix(h_end, h_start):
        calls.append((h_end.clone(), h_start.clone()))
        return -100.0 * (len(calls)) + 0.0 * h_end

    H, Y, _ = task.rollout(run, b, torch.zeros(4, 3), mix=mix)
    assert len(calls) == 4 and len(seen) == 5
    for k, (h_end, h_start) in enumerate(calls):
        assert torch.equal(h_start, seen[k])                              # the state at trial k's start
        assert torch.equal(seen[k + 1], torch.full((4, 3), -100.0 * (k + 1)))
        trial_stop = task.segments()[1 + 4 * k + 3][2]
        assert torch.equal(h_end, H[:, trial_stop - 1])                   # the end of trial k's wait
    H2, _, _ = task.rollout(run, b, torch.zeros(4, 3))                    # without mix: no reset
    assert H2[:, -1].min() == task.steps


@pytest.mark.parametrize("stacked", [True, False])
def test_a_leading_member_axis(stacked):
    task = small()
    batches = [task.sample(5, generator=gen(20 + k)) for k in range(2)]
    b = stack_batches(batches) if stacked else batches[0]
    answers = torch.randint(2, (2, 5, 5), generator=gen(9))
    mixes = []
    H, Y, inputs = task.rollout(scripted_run(task, answers, units=6), b, torch.zeros(2, 5, 6),
                                mix=lambda he, hs: mixes.append(he.shape) or 0.5 * (he + hs))
    T = task.steps
    assert H.shape == (2, 5, T, 6) and Y.shape == (2, 5, T, 2) and inputs.shape == (2, 5, T, 4)
    assert mixes == [torch.Size([2, 5, 6])] * 4
    for k in range(2):
        bk = batches[k] if stacked else batches[0]
        for j in range(5):
            u, *_ = by_hand(task, bk.info["rule"][j].tolist(), bk.info["stimulus"][j].tolist(), answers[k, j].tolist())
            assert torch.equal(inputs[k, j], u)
    assert task.performance(Y, b).shape == (2, 5)


# ---------------------------------------------------------------------- loss, errors
def test_loss_is_the_cross_entropy_over_the_scored_steps():
    task = small()
    b = task.sample(6, generator=gen(30))
    p = torch.softmax(torch.randn(6, task.steps, 2, generator=gen(31)), -1)
    total, count = 0.0, 0
    for j in range(6):
        for t in range(task.steps):
            if b.mask[j, t, 0] > 0:
                total += -float(torch.log(p[j, t, int(b.targets[j, t].argmax())]))
                count += 1
    assert count == 6 * 5 * (task.segments()[2][2] - task.segments()[2][1] - task.grace_steps)
    assert float(task.loss(p, b)) == pytest.approx(total / count, rel=1e-5)
    assert float(task.loss(p[:, :, None], b)) == pytest.approx(total / count, rel=1e-5)   # head axis
    assert float(task.loss(b.targets, b)) == pytest.approx(0.0, abs=1e-6)
    assert float(task.performance(b.targets, b).min()) == 1.0
    assert torch.isfinite(task.loss(torch.zeros_like(p), b))                 # clipped at 1e-7


def test_bad_inputs_give_clear_errors():
    task = small()
    b = task.sample(3, generator=gen(40))
    with pytest.raises(ValueError, match="outputs have shape"):
        task.loss(torch.zeros(3, task.steps - 1, 2), b)
    with pytest.raises(ValueError, match="outputs have shape"):
        task.performance(torch.zeros(3, task.steps, 3), b)
    run = scripted_run(task, torch.zeros(3, 5, dtype=torch.int64))
    with pytest.raises(ValueError, match="h0 has shape"):
        task.rollout(run, b, torch.zeros(4, 3))
    with pytest.raises(ValueError, match="do not broadcast"):
        task.rollout(run, stack_batches([b, b, b]), torch.zeros(2, 3, 3))
    with pytest.raises(ValueError, match="batch.inputs has shape"):
        task.rollout(run, RuleReversal(dt=25.0).sample(3, generator=gen(1)), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="returned H"):
        task.rollout(lambda h, a, z, u: (h, u), b, torch.zeros(3, 3))
    with pytest.raises(ValueError, match="grace_ms"):
        RuleReversal(grace_ms=500.0)
    with pytest.raises(ValueError, match="too coarse"):
        RuleReversal(dt=1100.0)
    with pytest.raises(ValueError, match="batch must be"):
        task.sample(0)


# ---------------------------------------------------------------------- a real rate network
def rate_net(seed: int = 0):
    from trainers.models.rate import RateRNN

    return RateRNN(8, input_dim=4, n_classes=2, output_activation="softmax", dt=50.0, init="002",
                   generator=gen(seed))


def test_a_rate_network_evaluates_and_trains_through_the_closed_loop():
    task = small()
    net = rate_net()
    values = task.evaluate(net, batch=8, batches=2, generator=gen(50))
    assert values.shape == (1,) and 0.0 <= values[0] <= 1.0
    again = task.evaluate(net, batch=8, batches=2, generator=gen(50))
    assert np.array_equal(values, again) and net.training

    b = task.sample(4, generator=gen(51))

    def run(h, start, stop, u):
        H = net(u, h)
        return H, net.readout(H, heads=1).squeeze(-2)

    h0 = net.initial_state(4).requires_grad_(True)
    H, Y, inputs = task.rollout(run, b, h0)
    assert H.shape == (4, task.steps, 8) and torch.allclose(Y.sum(-1), torch.ones(()))
    settle = task.settle_steps
    params = [p for p in net.parameters() if p.requires_grad]
    settled = torch.autograd.grad(H[:, :settle].sum(), params, allow_unused=True, retain_graph=True)
    assert all(g is None or not g.any() for g in settled)     # the settling period carries no gradient
    loss = task.loss(Y, b)
    loss.backward()
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    assert h0.grad is None                       # the settling period runs without gradients
    assert (inputs[..., 2:].sum(-1) == (b.periods == FEEDBACK).float()).all()   # one feedback bit
