"""The two tasks of 001 (Higgs, Siddiqui & Langdon, "Recurrent neural networks with diverse
intrinsic timescales"): multi-timescale working memory and simultaneous integration + working
memory.

The poster describes the tasks in one line each:

* **Multi-timescale working memory** (:class:`MultiTimescaleWM`, ``"mtwm"``): "Integrate a
  pattern of inputs, maintain the result then output the signaled decision";
* **Simultaneous integration and working memory** (:class:`IntegrationWM`, ``"intwm"``):
  "Simultaneously integrate and remember inputs and output the result after a delay".

It gives no protocol; the one implemented here (periods, durations, inputs, targets, cost mask,
performance criterion) is ours, written down with every parameter in
``docs/multitimescale-tasks.md``. Its conventions follow the cognitive tasks of Yang et al.
(2019, Nat. Neurosci.; 002 Sec. 2.1): a fixation input that turns off at the response (the go
signal), a fixation output, sigmoid outputs with targets 0.05 (low) and 0.85 (high), a cost mask
of 1 before the response, 0 in the first ``grace_ms`` of the response and 5 after, the fixation
output's cost doubled.

Time is in ms. Each trial is the four periods of :data:`trainers.tasks.trials.PERIODS` in order,
fixation -> stimulus -> delay -> response, their durations declared as a timing table (period ->
range in ms, :meth:`MultiTauTask.timing`) and drawn per trial in whole steps of ``dt`` by one
builder (:func:`draw_steps`, :func:`period_codes`); every batch is built on the device in a few
tensor operations, from the ``generator`` given (no loop over trials).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from dynatools.utils import check_positive_int
from trainers.registry import Option
from trainers.tasks.trials import PAD, PERIODS, RESPONSE, TrialBatch, TrialTask

#: Target levels of the sigmoid outputs (Yang et al. 2019): off and on.
LOW, HIGH = 0.05, 0.85
#: Cost weights (Yang et al. 2019): before the response, in the scored response (after the grace
#: period), and the factor of the fixation output (column 0) at every step.
PRE_WEIGHT, RESPONSE_WEIGHT, FIXATION_FACTOR = 1.0, 5.0, 2.0
#: Decision codes of a signed integral: 0 = positive (sum >= 0), 1 = negative.
POSITIVE, NEGATIVE = 0, 1


# ---------------------------------------------------------------------- the declarative builder
def ms_to_steps(name: str, ms: float, dt: float) -> int:
    """``ms / dt`` as an integer number of steps; a ValueError naming ``name`` when ``ms`` is not
    a whole number of steps of ``dt``.

    Examples
    --------
    >>> ms_to_steps("delay_min_ms", 500.0, 5.0)
    100
    >>> ms_to_steps("delay_min_ms", 502.0, 5.0)
    Traceback (most recent call last):
    ...
    ValueError: delay_min_ms=502 ms is not a multiple of dt=5 ms; give a multiple of dt (e.g. 500 or 505).
    """
    steps = ms / dt
    n = round(steps)
    if abs(steps - n) > 1e-6 * max(1.0, abs(steps)):
        lo, hi = math.floor(steps) * dt, math.ceil(steps) * dt
        raise ValueError(f"{name}={ms:g} ms is not a multiple of dt={dt:g} ms; give a multiple of dt "
                         f"(e.g. {lo:g} or {hi:g}).")
    return int(n)


def draw_steps(table: dict[str, tuple[int, int]], batch: int, *, generator: torch.Generator | None,
               device: torch.device) -> torch.Tensor:
    """Per-trial durations in steps of the periods of ``table`` (period -> inclusive range of
    steps ``(lo, hi)``, in the order of :data:`PERIODS`): ``(batch, len(PERIODS))`` int64,
    uniform over the integers of each range; a fixed duration (``lo == hi``) draws nothing.

    Examples
    --------
    >>> import torch
    >>> table = {"fixation": (2, 2), "stimulus": (3, 5), "delay": (0, 1), "response": (2, 2)}
    >>> s = draw_steps(table, 3, generator=torch.Generator().manual_seed(0), device=torch.device("cpu"))
    >>> s.shape, bool((s[:, 0] == 2).all()), bool(((s[:, 1] >= 3) & (s[:, 1] <= 5)).all())
    (torch.Size([3, 4]), True, True)
    """
    cols = []
    for period in PERIODS:
        lo, hi = table[period]
        if lo == hi:
            cols.append(torch.full((batch,), lo, dtype=torch.int64, device=device))
        else:
            cols.append(torch.randint(lo, hi + 1, (batch,), generator=generator, device=device))
    return torch.stack(cols, 1)


def period_codes(steps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Onsets and period codes of trials with per-period durations ``steps`` (``(batch, P)``).

    Returns
    -------
    bounds : torch.Tensor
        ``(batch, P + 1)`` int64: ``bounds[:, k]`` is the first step of period ``k`` and
        ``bounds[:, P]`` the trial's length.
    periods : torch.Tensor
        ``(batch, T)`` int64 codes into :data:`PERIODS` (``T`` the longest trial), :data:`PAD`
        after each trial's end. A period of length 0 takes no step.

    Examples
    --------
    >>> import torch
    >>> bounds, periods = period_codes(torch.tensor([[1, 2, 0, 1], [1, 1, 1, 1]]))
    >>> bounds.tolist()
    [[0, 1, 3, 3, 4], [0, 1, 2, 3, 4]]
    >>> periods.tolist()
    [[0, 1, 1, 3], [0, 1, 2, 3]]
    >>> period_codes(torch.tensor([[1, 1, 0, 1], [1, 2, 1, 1]]))[1].tolist()
    [[0, 1, 3, -1, -1], [0, 1, 1, 2, 3]]
    """
    bounds = torch.nn.functional.pad(steps.cumsum(1), (1, 0))
    T = int(bounds[:, -1].max())
    t = torch.arange(T, device=steps.device)
    code = (t[None, :, None] >= bounds[:, None, 1:]).sum(-1)          # periods passed
    return bounds, torch.where(code >= steps.shape[1], torch.full_like(code, PAD), code)


# ---------------------------------------------------------------------- shared options and logic
def _duration(name: str, default: float, help: str, minimum: float = 0.0) -> Option:
    return Option(name, default, help, float, minimum=minimum)


_COMMON = (
    Option("dt", 5.0, "time step in ms (shared with the rate model); every duration must be a multiple",
           float, positive=True, shared=True),
    _duration("fixation_ms", 200.0, "fixation period before the stimulus, ms"),
    _duration("integration_min_ms", 200.0, "shortest stimulus (integration) period, ms (drawn per trial)"),
    _duration("integration_max_ms", 1000.0, "longest stimulus (integration) period, ms"),
    _duration("delay_min_ms", 500.0, "shortest delay, ms (drawn per trial)"),
    _duration("delay_max_ms", 1500.0, "longest delay, ms"),
    _duration("response_ms", 500.0, "response period, ms"),
    _duration("grace_ms", 100.0, "unscored start of the response period, ms (Yang et al.: 100)"),
    Option("coherence", 0.4, "largest mean of the evidence; means drawn uniformly in [-coherence, coherence]",
           float, positive=True),
    Option("evidence_noise", 0.05, "noise of the evidence: std of its integral over 1 s (per-step std "
           "evidence_noise*sqrt(1000/dt))", float, minimum=0.0),
)


class MultiTauTask(TrialTask):
    """Shared protocol of the tasks of 001: the timing table, checks, targets, mask, criterion.

    A subclass sets ``name``, adds its options, and implements :meth:`_stimulus` (its input
    channels, the correct answers, and which output groups report them).
    """

    options: tuple = _COMMON
    #: 001: rate networks ("vanilla" tau = 1 s, the current form of its equation); 100 units (our
    #: choice, 001 states none); Adam at 1e-3; sigmoid outputs for the 0.05 / 0.85 targets.
    defaults = {"model": "rate", "curriculum": "percentile", "output_activation": "sigmoid", "units": 100,
                "batch": 64, "optimizer": "adam", "lr": 1e-3, "steps_per_epoch": 100, "eval_batches": 4,
                "max_epochs": 400, "tau_distribution": "vanilla", "tau_ms": 1000.0, "form": "current"}

    def __init__(self, *, dt: float = 5.0, fixation_ms: float = 200.0, integration_min_ms: float = 200.0,
                 integration_max_ms: float = 1000.0, delay_min_ms: float = 500.0, delay_max_ms: float = 1500.0,
                 response_ms: float = 500.0, grace_ms: float = 100.0, coherence: float = 0.4,
                 evidence_noise: float = 0.05) -> None:
        self.dt = _number("dt", dt, positive=True)
        for name, value in (("fixation_ms", fixation_ms), ("integration_min_ms", integration_min_ms),
                            ("integration_max_ms", integration_max_ms), ("delay_min_ms", delay_min_ms),
                            ("delay_max_ms", delay_max_ms), ("response_ms", response_ms),
                            ("grace_ms", grace_ms), ("evidence_noise", evidence_noise)):
            setattr(self, name, _number(name, value))
        self.coherence = _number("coherence", coherence, positive=True)
        if self.integration_min_ms <= 0:
            raise ValueError(f"integration_min_ms must be > 0 (at least one step of evidence); "
                             f"found {integration_min_ms!r}.")
        for lo, hi in (("integration_min_ms", "integration_max_ms"), ("delay_min_ms", "delay_max_ms")):
            if getattr(self, lo) > getattr(self, hi):
                raise ValueError(f"{lo}={getattr(self, lo):g} exceeds {hi}={getattr(self, hi):g}; "
                                 f"give {lo} <= {hi} (equal for a fixed duration).")
        if self.grace_ms >= self.response_ms:
            raise ValueError(f"grace_ms={self.grace_ms:g} leaves no scored step of response_ms="
                             f"{self.response_ms:g}; give grace_ms < response_ms.")
        self._steps = {name: ms_to_steps(name, getattr(self, name), self.dt)
                       for name in ("fixation_ms", "integration_min_ms", "integration_max_ms", "delay_min_ms",
                                    "delay_max_ms", "response_ms", "grace_ms")}

    # ------------------------------------------------------------------ the timing table
    def timing(self) -> dict[str, tuple[float, float]]:
        """The declarative trial structure: period -> (shortest, longest) duration in ms, drawn
        uniformly per trial over the multiples of ``dt`` in the range."""
        return {"fixation": (self.fixation_ms, self.fixation_ms),
                "stimulus": (self.integration_min_ms, self.integration_max_ms),
                "delay": (self.delay_min_ms, self.delay_max_ms),
                "response": (self.response_ms, self.response_ms)}

    def timing_steps(self) -> dict[str, tuple[int, int]]:
        """:meth:`timing` in steps of ``dt``."""
        return {p: (round(lo / self.dt), round(hi / self.dt)) for p, (lo, hi) in self.timing().items()}

    @property
    def grace_steps(self) -> int:
        return self._steps["grace_ms"]

    def noise_std(self) -> float:
        """Per-step standard deviation of the evidence noise: ``evidence_noise * sqrt(1000 / dt)``, so that
        the noise of the evidence integrated over ``S`` seconds (``sum(u) * dt / 1000``) has
        standard deviation ``evidence_noise * sqrt(S)`` whatever ``dt``."""
        return self.evidence_noise * math.sqrt(1000.0 / self.dt)

    # ------------------------------------------------------------------ to implement
    #: (output columns, info key of the correct answer) of each decision reported at the response
    decisions: tuple[tuple[slice, str], ...] = ()

    def _stimulus(self, B: int, t: torch.Tensor, bounds: torch.Tensor, evidence: torch.Tensor,
                  generator: torch.Generator | None, device: torch.device) -> tuple[torch.Tensor, dict]:
        """Extra input channels ``(B, T, k)`` and info (with the correct answers)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ sampling
    def _evidence(self, B: int, n: int, stim: torch.Tensor, generator, device) -> tuple[torch.Tensor, dict]:
        """``n`` evidence channels ``(B, T, n)``: mean ``mu ~ U(-coherence, coherence)`` per trial and
        channel plus white noise, on the stimulus steps ``stim`` (``(B, T)`` bool) only; the
        integral, and the sign decision of each channel."""
        mu = (2.0 * torch.rand(B, n, generator=generator, device=device) - 1.0) * self.coherence
        T = stim.shape[1]
        eps = torch.randn(B, T, n, generator=generator, device=device) * self.noise_std()
        u = (mu[:, None, :] + eps) * stim[:, :, None]
        integral = u.double().sum(1) * (self.dt / 1000.0)
        decision = torch.where(integral >= 0, POSITIVE, NEGATIVE).long()
        return u, {"mean": mu, "evidence": integral.float(), "decision": decision}

    def sample(self, batch: int, *, generator: torch.Generator | None = None,
               device: torch.device | str | None = None) -> TrialBatch:
        """``batch`` fresh trials drawn from ``generator`` on ``device`` (default: the
        generator's device, else the CPU). See the class docstring for the protocol."""
        B = check_positive_int("batch", batch)
        if device is None:
            device = generator.device if generator is not None else torch.device("cpu")
        device = torch.device(device)
        steps = draw_steps(self.timing_steps(), B, generator=generator, device=device)
        bounds, periods = period_codes(steps)
        T = periods.shape[1]
        t = torch.arange(T, device=device)[None, :]
        valid = periods != PAD
        pre = valid & (periods < RESPONSE)
        fixation_in = pre.float()[:, :, None]
        extra, info = self._stimulus(B, t, bounds, periods == PERIODS.index("stimulus"), generator, device)
        inputs = torch.cat([fixation_in, extra], -1)

        response = periods == RESPONSE
        scored = response & (t >= bounds[:, RESPONSE, None] + self.grace_steps)
        targets = torch.full((B, T, self.output_dim), LOW, device=device)
        targets[:, :, 0] = torch.where(pre, HIGH, LOW)
        for cols, key in self.decisions:
            hot = torch.nn.functional.one_hot(info[key], cols.stop - cols.start).bool()     # (B, k)
            targets[:, :, cols] = torch.where(response[:, :, None] & hot[:, None, :], HIGH, LOW)
        targets = targets * valid[:, :, None]
        weight = torch.where(pre, PRE_WEIGHT, 0.0) + torch.where(scored, RESPONSE_WEIGHT, 0.0)
        mask = weight[:, :, None].repeat(1, 1, self.output_dim)
        mask[:, :, 0] *= FIXATION_FACTOR
        info = {**info, "steps": steps, "onsets": bounds[:, :-1], "length": bounds[:, -1]}
        return TrialBatch(inputs, targets, mask, periods, info)

    # ------------------------------------------------------------------ criterion
    def performance(self, outputs: torch.Tensor, batch: TrialBatch) -> torch.Tensor:
        """``(batch,)`` float: 1.0 for a correct trial, else 0.0 (``outputs`` ``(..., batch, time,
        output_dim)``, a head axis of length 1 accepted). A trial is correct when

        * the fixation output is above 0.5 at every step before the response period (held);
        * its mean over the scored response steps (after ``grace_ms``) is below 0.5 (released);
        * for every reported decision, the output of the correct choice has the largest mean over
          the scored response steps.
        """
        y = outputs.squeeze(-2) if outputs.ndim == batch.targets.ndim + 1 else outputs
        p = batch.periods
        t = torch.arange(p.shape[-1], device=p.device)
        pre = (p != PAD) & (p < RESPONSE)
        held = ((y[..., 0] > 0.5) | ~pre).all(-1)
        scored = (p == RESPONSE) & (t >= batch.info["onsets"][..., RESPONSE, None] + self.grace_steps)
        mean = (y * scored[..., None]).sum(-2) / scored.sum(-1, keepdim=True).clamp(min=1)
        ok = held & (mean[..., 0] < 0.5)
        for cols, key in self.decisions:
            ok = ok & (mean[..., cols].argmax(-1) == batch.info[key])
        return ok.float()


def _number(name: str, value: Any, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number; found {value!r}.")
    value = float(value)
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0; found {value:g}.")
    if value < 0:
        raise ValueError(f"{name} must be >= 0; found {value:g}.")
    return value


# ---------------------------------------------------------------------- the two tasks
class MultiTimescaleWM(MultiTauTask):
    """Multi-timescale working memory (001): integrate a pattern of inputs, maintain the result
    over a delay, then output the signaled decision.

    Trial: fixation (``fixation_ms``) -> stimulus (integration length drawn per trial, uniform in
    ``[integration_min_ms, integration_max_ms]``) -> delay (uniform in ``[delay_min_ms,
    delay_max_ms]``) -> response (``response_ms``).

    * Inputs (``1 + 2 * n_channels``): a fixation input (1 before the response, 0 from its onset:
      the go signal); ``n_channels`` evidence channels, each with its own mean ``mu ~ U(-coherence,
      coherence)`` plus white noise (per-step std ``evidence_noise * sqrt(1000 / dt)``) during the stimulus
      only; ``n_channels`` cue channels, the cued channel's (drawn uniformly per trial) at 1 for
      the first ``cue_ms`` of the response period.
    * Outputs (3): fixation (0.85 before the response, 0.05 in it), "positive" and "negative"
      (0.05, and 0.85 on the correct one in the response period). The correct decision is the
      sign of the cued channel's integrated evidence as presented (``info["evidence"]``), so an
      ideal integrator with memory is always right; ``info["decision"]`` holds the decision of
      every channel, the network must keep all of them over the delay.
    * Cost mask: 1 before the response, 0 in the first ``grace_ms`` of it, 5 after; x2 on the
      fixation output; 0 on padding.

    Parameters
    ----------
    dt : float, default=5.0
        Time step in ms; every duration must be a multiple of it.
    fixation_ms, response_ms, grace_ms : float, default=200.0, 500.0, 100.0
    integration_min_ms, integration_max_ms : float, default=200.0, 1000.0
    delay_min_ms, delay_max_ms : float, default=500.0, 1500.0
    coherence : float, default=0.4
        Largest mean evidence per step.
    evidence_noise : float, default=0.05
        Standard deviation of the noise of the evidence integrated over 1 s.
    n_channels : int, default=2
        Evidence channels integrated in parallel (the cue picks one to report).
    cue_ms : float, default=100.0
        Cue duration at the start of the response period (at most ``response_ms``).

    ``info``: ``mean`` ``(B, n_channels)``, ``evidence`` ``(B, n_channels)`` (integral, input x s),
    ``decision`` ``(B, n_channels)`` (0 positive / 1 negative), ``cue`` ``(B,)``, ``answer`` ``(B,)``
    (``decision`` of the cued channel), ``steps`` ``(B, 4)``, ``onsets`` ``(B, 4)``, ``length``
    ``(B,)`` (steps).

    Examples
    --------
    >>> import torch
    >>> task = MultiTimescaleWM(delay_min_ms=1000.0, delay_max_ms=2000.0)
    >>> b = task.sample(8, generator=torch.Generator().manual_seed(0))
    >>> b.inputs.shape[2], b.targets.shape[2], task.input_dim, task.output_dim
    (5, 3, 5, 3)
    >>> bool((b.info["steps"][:, 2] >= 200).all())          # delays of 1-2 s at dt = 5 ms
    True
    >>> task.performance(b.targets, b).tolist() == [1.0] * 8  # the target is always correct
    True
    """

    name = "mtwm"
    options = _COMMON + (
        Option("n_channels", 2, "evidence channels integrated in parallel; a cue picks the one to report",
               int, minimum=1),
        _duration("cue_ms", 100.0, "cue at the start of the response period, ms"),
    )
    decisions = ((slice(1, 3), "answer"),)
    output_dim = 3

    def __init__(self, *, n_channels: int = 2, cue_ms: float = 100.0, **common: Any) -> None:
        super().__init__(**common)
        self.n_channels = check_positive_int("n_channels", n_channels)
        self.cue_ms = _number("cue_ms", cue_ms, positive=True)
        if self.cue_ms > self.response_ms:
            raise ValueError(f"cue_ms={self.cue_ms:g} is longer than response_ms={self.response_ms:g}; "
                             f"give cue_ms <= response_ms.")
        self._steps["cue_ms"] = ms_to_steps("cue_ms", self.cue_ms, self.dt)
        self.input_dim = 1 + 2 * self.n_channels

    def _stimulus(self, B, t, bounds, stim, generator, device):
        u, info = self._evidence(B, self.n_channels, stim, generator, device)
        cue = torch.randint(0, self.n_channels, (B,), generator=generator, device=device)
        on = bounds[:, RESPONSE, None]
        window = (t >= on) & (t < on + self._steps["cue_ms"])                         # (B, T)
        hot = torch.nn.functional.one_hot(cue, self.n_channels).float()
        cues = window[:, :, None].float() * hot[:, None, :]
        answer = info["decision"].gather(1, cue[:, None])[:, 0]
        return torch.cat([u, cues], -1), {**info, "cue": cue, "answer": answer}


class IntegrationWM(MultiTauTask):
    """Simultaneous integration and working memory (001): integrate one input and remember
    another at the same time, and output both results after a delay.

    Trial: as :class:`MultiTimescaleWM` (fixation -> stimulus of drawn length -> drawn delay ->
    response). During the stimulus, one evidence channel carries mean ``mu ~ U(-coherence,
    coherence)`` plus noise (to be integrated), and at a random time inside it (onset uniform over
    the steps where it fits) one of ``n_items`` item channels, drawn uniformly, is 1 for
    ``item_ms`` (to be remembered while integrating).

    * Inputs (``2 + n_items``): fixation (go signal at the response onset), evidence, items.
    * Outputs (``3 + n_items``): fixation; "positive" / "negative" (sign of the integrated
      evidence); one per item. In the response period the correct choice of both groups is 0.85,
      every other output 0.05. Cost mask as :class:`MultiTimescaleWM`.

    Parameters
    ----------
    dt, fixation_ms, integration_min_ms, integration_max_ms, delay_min_ms, delay_max_ms, response_ms
        As :class:`MultiTimescaleWM`.
    grace_ms, coherence, evidence_noise
        As :class:`MultiTimescaleWM`.
    n_items : int, default=2
        Items to remember (one shown per trial).
    item_ms : float, default=100.0
        Item duration; at most ``integration_min_ms`` (it lies inside the stimulus).

    ``info``: ``mean`` ``(B, 1)``, ``evidence`` ``(B, 1)``, ``decision`` ``(B, 1)``, ``answer``
    ``(B,)`` (the integration decision), ``item`` ``(B,)``, ``item_onset`` ``(B,)`` (step),
    ``steps``, ``onsets``, ``length``.

    Examples
    --------
    >>> import torch
    >>> task = IntegrationWM(n_items=3)
    >>> b = task.sample(8, generator=torch.Generator().manual_seed(0))
    >>> b.inputs.shape[2], b.targets.shape[2]
    (5, 6)
    >>> wrong = b.targets.clone(); wrong[:, :, 3:] = wrong[:, :, 3:].roll(1, dims=2)
    >>> task.performance(wrong, b).tolist() == [0.0] * 8     # a wrong item fails every trial
    True
    """

    name = "intwm"
    options = _COMMON + (
        Option("n_items", 2, "items to remember (one shown per trial)", int, minimum=2),
        _duration("item_ms", 100.0, "item duration inside the stimulus period, ms"),
    )
    decisions = ((slice(1, 3), "answer"),)

    def __init__(self, *, n_items: int = 2, item_ms: float = 100.0, **common: Any) -> None:
        super().__init__(**common)
        self.n_items = check_positive_int("n_items", n_items)
        if self.n_items < 2:
            raise ValueError(f"n_items must be >= 2 (one item needs no memory); found {n_items!r}.")
        self.item_ms = _number("item_ms", item_ms, positive=True)
        if self.item_ms > self.integration_min_ms:
            raise ValueError(f"item_ms={self.item_ms:g} is longer than integration_min_ms="
                             f"{self.integration_min_ms:g}; give item_ms <= integration_min_ms.")
        self._steps["item_ms"] = ms_to_steps("item_ms", self.item_ms, self.dt)
        self.input_dim = 2 + self.n_items
        self.output_dim = 3 + self.n_items
        self.decisions = ((slice(1, 3), "answer"), (slice(3, 3 + self.n_items), "item"))

    def _stimulus(self, B, t, bounds, stim, generator, device):
        u, info = self._evidence(B, 1, stim, generator, device)
        item = torch.randint(0, self.n_items, (B,), generator=generator, device=device)
        k = self._steps["item_ms"]
        room = bounds[:, 2] - bounds[:, 1] - k + 1                                       # onsets that fit
        r = torch.rand(B, generator=generator, device=device)
        onset = bounds[:, 1] + (r * room).long().clamp(max=room - 1)
        window = (t >= onset[:, None]) & (t < onset[:, None] + k)
        hot = torch.nn.functional.one_hot(item, self.n_items).float()
        items = window[:, :, None].float() * hot[:, None, :]
        return torch.cat([u, items], -1), {**info, "answer": info["decision"][:, 0], "item": item,
                                           "item_onset": onset}


__all__ = ["MultiTauTask", "MultiTimescaleWM", "IntegrationWM", "draw_steps", "period_codes", "ms_to_steps",
           "LOW", "HIGH", "PRE_WEIGHT", "RESPONSE_WEIGHT", "FIXATION_FACTOR", "POSITIVE", "NEGATIVE"]
