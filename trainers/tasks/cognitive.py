"""The 16 cognitive tasks of Soo, Goudar & Wang (NeurIPS 2023, "002"), adapted from Yang et al.
(2019, Nature Neuroscience 22:297): go, rtgo, dgo, anti, rtanti, danti, dm, dmd, msdm, ddm, ddmd,
msddm, dms, dnms, dmc, dnmc (002 Sec. 2.2, Fig. 1C).

Every task shares one input/output layout (002 Sec. 2.2): a fixation input unit and two rings of
``n_ring`` units, one per stimulus modality (``input_dim = 1 + 2 n_ring``); a fixation output and
one response ring (``output_dim = 1 + n_ring``). A stimulus of magnitude ``gamma`` and direction
``psi`` drives ring unit ``i`` (preferred direction ``psi_i = 2 pi i / n_ring``) with
``gamma * 0.8 exp(-0.5 (8 d(psi, psi_i) / pi)^2)`` (002 Eq. 3, ``d`` the distance on the circle);
the response target is ``0.8 exp(...) + 0.05`` (Eq. 4) and 0.05 when no response is due; the
fixation output's target is 0.85 while fixating and 0.05 in the response period (the authors' code).

A task is declared as data (DESIGN.md item 14): its timing table (:class:`Span` entries, durations
in ms drawn uniformly on the step grid, as in the authors' code) and a few lines of stimulus logic
(:meth:`CognitiveTask.trial`) that return the stimuli of a batch as tensors. One batched builder
(:meth:`CognitiveTask.build`) turns the per-trial onsets into inputs, targets, cost masks and
period codes with ``torch.arange(T)`` comparisons; no Python loop runs over trials. Trials differ
in length; shorter ones are padded (:data:`~trainers.tasks.trials.PAD`).

See docs/cognitive-tasks.md for each task's table, the cost mask, the performance criterion and
where this differs from Yang et al. and from the authors' code.

Examples
--------
>>> import torch
>>> from trainers.tasks import TASKS
>>> task = TASKS["dms-cog"]()   # delayed match-to-sample ("dms" is N-DMS)
>>> b = task.sample(4, generator=torch.Generator().manual_seed(0))
>>> b.inputs.shape[0], b.inputs.shape[2], b.targets.shape[2], task.input_dim, task.output_dim
(4, 65, 33, 65, 33)
>>> float(task.performance(b.targets, b).mean())      # the target itself is answered correctly
1.0
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch

from trainers.registry import Option
from trainers.tasks.trials import PAD, PERIODS, RESPONSE, TrialBatch, TrialTask

TWO_PI = 2.0 * math.pi
#: fixation output target while fixating / while responding (authors' code: 0.85 and 0.05)
FIX_HIGH, FIX_LOW = 0.85, 0.05
#: baseline of the response ring's target (002 Eq. 4)
RING_BASE = 0.05
#: registry name of the delayed match-to-sample task ("dms" is the timescale paper's N-DMS)
DMS_NAME = "dms-cog"


class Span(NamedTuple):
    """One entry of a task's timing table.

    Attributes
    ----------
    name : str
        Name the stimulus logic refers to (``"stimulus1"``, ``"delay"``, ...).
    period : str
        The period code of its steps, one of :data:`~trainers.tasks.trials.PERIODS`.
    low_ms, high_ms : float
        Duration range in ms: ``round(low_ms/dt) + floor(u (round(high_ms/dt) - round(low_ms/dt)))``
        steps with ``u ~ U[0, 1)``, i.e. uniform on the step grid of ``[low_ms, high_ms)`` (the
        authors' ``tf.random.uniform`` over integers); fixed when ``low_ms == high_ms``.
    """

    name: str
    period: str
    low_ms: float
    high_ms: float


class Stimulus(NamedTuple):
    """One stimulus of every trial of a batch (the stimulus logic returns a list of them).

    ``span``: ``(batch,)`` int64 index into the timing table (the span it is shown in);
    ``modality``: ``(batch,)`` int64, 0 or 1 (which input ring); ``direction``: ``(batch,)``
    radians; ``strength``: ``(batch,)`` the magnitude ``gamma`` of 002 Eq. 3 (0 shows nothing).
    """

    span: torch.Tensor
    modality: torch.Tensor
    direction: torch.Tensor
    strength: torch.Tensor


# The timing tables (ms), from the authors' code (wmws2/temporalskip, functions/func_standardtasks.py:
# T_short = 500 ms, T_long = 1000 ms, T_jitter = 100 ms, T_test = 500 ms): periods of
# [T - jitter, T + jitter) and a fixed 500 ms response.
_FIX = Span("fixation", "fixation", 400.0, 600.0)
_RESPONSE = Span("response", "response", 500.0, 500.0)
_DELAY = Span("delay", "delay", 900.0, 1100.0)
TIMING_REACT = (_FIX, Span("stimulus", "stimulus", 400.0, 600.0), _RESPONSE)
TIMING_RT = (_FIX, Span("hold", "fixation", 400.0, 600.0), _RESPONSE)
TIMING_DELAY = (_FIX, Span("stimulus", "stimulus", 400.0, 600.0), _DELAY, _RESPONSE)
TIMING_TWO = (_FIX, Span("stimulus1", "stimulus", 400.0, 600.0), _DELAY,
              Span("stimulus2", "stimulus", 400.0, 600.0), _RESPONSE)


def circular_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Distance on the circle, in [0, pi], between angles ``a`` and ``b`` (radians)."""
    d = torch.remainder(a - b, TWO_PI)
    return torch.minimum(d, TWO_PI - d)


def ring_profile(direction: torch.Tensor, n_ring: int) -> torch.Tensor:
    """``(..., n_ring)``: ``0.8 exp(-0.5 (8 d / pi)^2)`` of 002 Eq. 3-4 (no baseline, gamma 1)
    for the directions ``direction`` ``(...)``; preferred directions ``2 pi i / n_ring``."""
    pref = torch.arange(n_ring, device=direction.device, dtype=direction.dtype) * (TWO_PI / n_ring)
    d = circular_distance(direction[..., None], pref)
    return 0.8 * torch.exp(-0.5 * (8.0 * d / math.pi) ** 2)


def popvec(ring: torch.Tensor) -> torch.Tensor:
    """Population-vector direction in [0, 2 pi) of ring activities ``(..., n_ring)`` (Yang et al.'s
    ``popvec``; a uniform baseline does not move it)."""
    n = ring.shape[-1]
    pref = torch.arange(n, device=ring.device, dtype=ring.dtype) * (TWO_PI / n)
    return torch.remainder(torch.atan2((ring * torch.sin(pref)).sum(-1), (ring * torch.cos(pref)).sum(-1)),
                           TWO_PI)


def _uniform(generator: torch.Generator | None, n: int, device: torch.device, low: float = 0.0,
             high: float = 1.0) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator, device=device)


def _coin(generator: torch.Generator | None, n: int, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=generator, device=device) < 0.5


def _range_options(name: str, low: float, high: float, what: str) -> tuple[Option, Option]:
    return (Option(f"{name}_low", low, f"lower end of the {what} (002 code: {low:g})", float, positive=True),
            Option(f"{name}_high", high, f"upper end of the {what} (002 code: {high:g})", float, positive=True))


class CognitiveTask(TrialTask):
    """Base class of the 002 cognitive tasks: a timing table, stimulus logic, one batched builder.

    A subclass sets :attr:`timing` (a tuple of :class:`Span`) and implements :meth:`trial`.

    Parameters
    ----------
    dt : float, default=5.0
        Time step in ms (002 Sec. 2.2: 5 ms); shared with the rate model's ``dt``.
    n_ring : int, default=32
        Units per ring (002 Sec. 2.2: 32).
    tolerance : float, default=0.2*pi
        A response counts when its population-vector direction lies within ``tolerance``
        radians of the target (strictly below, as Yang et al.'s ``get_perf`` and the authors'
        code: ``0.2 pi``).
    grace_ms : float, default=200.0
        Steps without cost at the start of the trial and at the start of the response period
        (the authors' ``T_wait``). Must be shorter than the first period and the response.

    Notes
    -----
    Cost mask: 0 on padding and in both grace windows; else the same weight for the fixation
    output and every ring output, ``T_i / (2 n_pre)`` before the response and
    ``T_i / (2 n_resp)`` in it (``T_i`` the trial's steps, ``n_pre``/``n_resp`` its costed steps of
    each part), so the loss of a trial is the mean error before the response plus the mean error
    in it, halved, as the authors' cost (their two ``reduce_mean`` terms), and the mask averages 1
    over a trial.

    Performance (per trial, 0 or 1): the fixation output is above 0.5 at every costed step before
    the response period; at the trial's last step, if a response is due the fixation output is
    below 0.5 and the population vector of the response ring is within ``tolerance`` of the
    target direction, else the fixation output is still above 0.5.
    """

    name = ""
    #: the timing table: period entries in trial order
    timing: tuple[Span, ...] = ()
    #: the fixation input stays on in the response period (reaction-time tasks: the stimulus
    #: onset is the go cue)
    fixation_in_response = False
    options = (
        Option("dt", 5.0, "time step in ms (002: 5 ms); shared with the rate model", float, positive=True,
               shared=True),
        Option("n_ring", 32, "units per input/output ring (002: 32)", int, minimum=2),
        Option("tolerance", 0.2 * math.pi, "response counts within this many radians of the target "
               "(002 code and Yang et al.: 0.2 pi)", float, positive=True),
        Option("grace_ms", 200.0, "ms without cost at the trial start and the response onset (002 code: "
               "200)", float, minimum=0.0),
    )
    #: 002 Sec. 2.1-2.2 and the authors' code (main_standardtasks.py: N = 50 units;
    #: func_standardtasks.py: 20 trials per step, Adam with lr 1e-1/N = 2e-3; func_init.py: private
    #: Ornstein-Uhlenbeck noise 0.1 eta inside f with tau_n = tau = 100 ms); the percentile
    #: stopping rule checked every 100 steps on 10 x 20 fresh trials per network (the authors
    #: evaluate 200 trials every 10 steps); 40,000 steps at most; the authors' initialisation and
    #: populations (0.4 n input units, 0.4 n output units, the rest auxiliary).
    defaults = {"model": "rate", "curriculum": "percentile", "output_activation": "sigmoid", "units": 50,
                "batch": 20, "optimizer": "adam", "lr": 2e-3, "steps_per_epoch": 100, "eval_batches": 10,
                "max_epochs": 400, "noise": "ou", "sigma": 0.1, "noise_tau_ms": 100.0, "init": "002",
                "input_units": 0.4, "output_units": 0.4}
    minimal_performance = None

    def __init__(self, *, dt: float = 5.0, n_ring: int = 32, tolerance: float = 0.2 * math.pi,
                 grace_ms: float = 200.0, **ranges: float) -> None:
        declared = {o.name: o for o in self.options}
        owner = f"task {self.name!r}"
        given = {"dt": dt, "n_ring": n_ring, "tolerance": tolerance, "grace_ms": grace_ms, **ranges}
        for key in given:
            if key not in declared:
                raise ValueError(f"unknown task option {key!r} for {self.name!r}; its options: "
                                 f"{sorted(declared)}.")
        for opt in self.options:
            setattr(self, opt.name, opt.check(given.get(opt.name, opt.default), owner))
        if self.tolerance > math.pi:
            raise ValueError(f"tolerance must be at most pi (any direction is within pi); found "
                             f"{self.tolerance!r}; use e.g. 0.2*pi = {0.2 * math.pi:.4f}.")
        for opt in self.options:
            if opt.name.endswith("_low"):
                stem = opt.name[:-4]
                lo, hi = getattr(self, opt.name), getattr(self, stem + "_high")
                if lo > hi:
                    raise ValueError(f"{stem}_low={lo!r} is above {stem}_high={hi!r}; give a range "
                                     f"with {stem}_low <= {stem}_high.")
        shortest = min(s.low_ms for s in self.timing)
        if round(shortest / self.dt) < 1:
            raise ValueError(f"dt={self.dt!r} ms is too coarse: the shortest period ({shortest:g} ms) "
                             f"would last 0 steps; choose dt <= {shortest:g}.")
        self.grace_steps = int(round(self.grace_ms / self.dt))
        first = round(self.timing[0].low_ms / self.dt)
        resp = round(self.timing[-1].low_ms / self.dt)
        if self.grace_steps >= min(first, resp):
            limit = min(self.timing[0].low_ms, self.timing[-1].low_ms)
            raise ValueError(f"grace_ms={self.grace_ms!r} leaves no costed step in the first period or "
                             f"the response; choose grace_ms below {limit:g}.")
        self.input_dim = 1 + 2 * self.n_ring
        self.output_dim = 1 + self.n_ring
        #: (low, high) steps of every span
        self.span_steps = [(int(round(s.low_ms / self.dt)), int(round(s.high_ms / self.dt))) for s in self.timing]

    # ------------------------------------------------------------------ declared per task
    def trial(self, batch: int, generator: torch.Generator | None,
              device: torch.device) -> tuple[list[Stimulus], torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """The stimulus logic: ``(stimuli, direction, respond, info)`` of ``batch`` trials.

        ``direction`` ``(batch,)`` is the target response direction (ignored where ``respond``
        ``(batch,)`` bool is False); ``info`` the drawn quantities (each ``(batch,)``)."""
        raise NotImplementedError

    def span(self, name: str, batch: int, device: torch.device) -> torch.Tensor:
        """``(batch,)`` int64: the index of the timing-table entry ``name`` for every trial."""
        index = [s.name for s in self.timing].index(name)
        return torch.full((batch,), index, dtype=torch.int64, device=device)

    # ------------------------------------------------------------------ builder
    def durations(self, batch: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
        """``(batch, spans)`` int64: each trial's duration in steps of every timing-table entry."""
        u = torch.rand(batch, len(self.timing), generator=generator, device=device)
        lo = torch.tensor([a for a, _ in self.span_steps], device=device, dtype=torch.int64)
        width = torch.tensor([b - a for a, b in self.span_steps], device=device, dtype=torch.float32)
        return lo + torch.floor(u * width).to(torch.int64)

    def build(self, durations: torch.Tensor, stimuli: list[Stimulus], direction: torch.Tensor,
              respond: torch.Tensor, info: dict[str, torch.Tensor] | None = None) -> TrialBatch:
        """The batch of trials with these span ``durations`` ``(batch, spans)`` (steps), stimuli,
        target directions and response flags: inputs, targets, cost mask and period codes from
        ``torch.arange(T)`` comparisons (loops run over spans and stimuli, never over trials)."""
        device = durations.device
        B, S = durations.shape
        n = self.n_ring
        ends = durations.cumsum(1)                                       # (B, S)
        onsets = ends - durations
        lengths = ends[:, -1]
        T = int(lengths.max())
        t = torch.arange(T, device=device)[None, :]                     # (1, T)
        inside = (t >= onsets[:, :, None]) & (t < ends[:, :, None])     # (B, S, T)
        codes = torch.tensor([PERIODS.index(s.period) for s in self.timing], device=device)
        periods = torch.full((B, T), PAD, dtype=torch.int64, device=device)
        for s in range(S):
            periods = torch.where(inside[:, s], codes[s], periods)
        valid = periods != PAD
        responding = periods == RESPONSE
        before = valid & ~responding

        inputs = torch.zeros(B, T, self.input_dim, device=device)
        fixate = valid if self.fixation_in_response else before
        inputs[:, :, 0] = fixate.float()
        for stim in stimuli:
            on = onsets.gather(1, stim.span[:, None])                   # (B, 1)
            off = ends.gather(1, stim.span[:, None])
            shown = ((t >= on) & (t < off)).float()                      # (B, T)
            bump = stim.strength[:, None] * ring_profile(stim.direction.float(), n)   # (B, n)
            rings = torch.nn.functional.one_hot(stim.modality, 2).float()[:, :, None] * bump[:, None, :]
            inputs[:, :, 1:] += shown[:, :, None] * rings.reshape(B, 1, 2 * n)

        targets = torch.zeros(B, T, self.output_dim, device=device)
        resp = (responding & respond[:, None]).float()                   # (B, T)
        targets[:, :, 0] = torch.where(valid, FIX_HIGH - (FIX_HIGH - FIX_LOW) * resp, 0.0)
        safe = torch.where(respond, direction, torch.zeros_like(direction)).float()
        ring = ring_profile(safe, n)[:, None, :] * resp[:, :, None] + RING_BASE
        targets[:, :, 1:] = ring * valid[:, :, None]

        g = self.grace_steps
        resp_on = onsets[:, -1:]                                         # the response is the last span
        costed = valid & (t >= g) & ~((t >= resp_on) & (t < resp_on + g))
        n_pre = (costed & before).sum(1, keepdim=True).clamp(min=1)
        n_resp = (costed & responding).sum(1, keepdim=True).clamp(min=1)
        total = lengths[:, None].float()
        weight = torch.where(responding, total / (2 * n_resp), total / (2 * n_pre)) * costed
        mask = weight[:, :, None].expand(B, T, self.output_dim).contiguous()

        info = dict(info or {})
        info.update({
            "direction": torch.where(respond, direction.float(), torch.full_like(direction.float(), math.nan)),
            "respond": respond.clone(),
            "onsets": onsets, "durations": durations,
            "stim_span": torch.stack([s.span for s in stimuli], 1),
            "stim_modality": torch.stack([s.modality for s in stimuli], 1),
            "stim_direction": torch.stack([s.direction.float() for s in stimuli], 1),
            "stim_strength": torch.stack([s.strength.float() for s in stimuli], 1),
        })
        return TrialBatch(inputs, targets, mask, periods, info)

    # ------------------------------------------------------------------ TrialTask
    def sample(self, batch: int, *, generator: torch.Generator | None = None,
               device: torch.device | str | None = None) -> TrialBatch:
        """``batch`` fresh trials (durations first, then the stimuli, from ``generator``), built
        on ``device`` (default: the generator's)."""
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch must be a positive integer; found {batch!r}.")
        if device is None:
            device = generator.device if generator is not None else torch.device("cpu")
        device = torch.device(device)
        durations = self.durations(batch, generator, device)
        stimuli, direction, respond, info = self.trial(batch, generator, device)
        return self.build(durations, stimuli, direction, respond, info)

    def performance(self, outputs: torch.Tensor, batch: TrialBatch) -> torch.Tensor:
        """``(batch,)`` float 1/0 per trial (see the class notes); ``outputs`` is the readout
        ``(batch, time, output_dim)`` in [0, 1] (with a head axis, the first head is scored)."""
        if outputs.ndim == 4:
            outputs = outputs[..., 0, :]                 # the first (the trained) head
        fix = outputs[..., 0]
        must_fix = (batch.periods != PAD) & (batch.periods != RESPONSE) & (batch.mask[..., 0] > 0)
        held = ((fix > 0.5) | ~must_fix).all(1)
        last = (batch.lengths - 1).clamp(min=0)
        final = outputs[torch.arange(outputs.shape[0], device=outputs.device), last]   # (B, O)
        direction = batch.info["direction"]
        close = circular_distance(popvec(final[:, 1:]), torch.nan_to_num(direction)) < self.tolerance
        answered = torch.where(batch.info["respond"], (final[:, 0] < 0.5) & close, final[:, 0] > 0.5)
        return (held & answered).float()


# ====================================================================== go / anti (002 App. D)
class _GoFamily(CognitiveTask):
    """One stimulus, strength 1, in a random modality; respond toward it (go) or away (anti)."""

    anti = False

    def trial(self, batch, generator, device):
        modality = _coin(generator, batch, device).long()
        theta = _uniform(generator, batch, device, 0.0, TWO_PI)
        where = "response" if self.fixation_in_response else "stimulus"
        stim = Stimulus(self.span(where, batch, device), modality, theta, torch.ones(batch, device=device))
        direction = torch.remainder(theta + math.pi, TWO_PI) if self.anti else theta
        respond = torch.ones(batch, dtype=torch.bool, device=device)
        return [stim], direction, respond, {"modality": modality, "theta": theta}


class Go(_GoFamily):
    """Go (002 App. D; Yang et al. 2019 "Go"): a stimulus during fixation; after the fixation
    input goes off, respond toward it. Stimulus off in the response period (authors' code)."""

    name = "go"
    timing = TIMING_REACT


class Anti(_GoFamily):
    """Anti: as :class:`Go`, but respond in the opposite direction."""

    name = "anti"
    timing = TIMING_REACT
    anti = True


class RTGo(_GoFamily):
    """Reaction-time go: the fixation input stays on; the stimulus appears at the response onset
    and the network must respond toward it at once."""

    name = "rtgo"
    timing = TIMING_RT
    fixation_in_response = True


class RTAnti(_GoFamily):
    """Reaction-time anti: as :class:`RTGo`, opposite direction."""

    name = "rtanti"
    timing = TIMING_RT
    fixation_in_response = True
    anti = True


class DelayGo(_GoFamily):
    """Delayed go: a stimulus, a delay of about 1 s, then respond toward the remembered direction."""

    name = "dgo"
    timing = TIMING_DELAY


class DelayAnti(_GoFamily):
    """Delayed anti: as :class:`DelayGo`, opposite direction."""

    name = "danti"
    timing = TIMING_DELAY
    anti = True


# ====================================================================== decision making
_DM_OPTIONS = CognitiveTask.options + _range_options("coherence", 0.8, 1.2, "mean stimulus strength range") \
    + _range_options("delta", 0.1, 0.2, "strength-difference range (each stimulus +- delta)")


class _DMFamily(CognitiveTask):
    """Two stimuli in ring 1 at directions theta1 and theta2 = theta1 + U[pi/2, 3pi/2) with
    strengths c +- d (c ~ U[coherence], d ~ U[delta], the stronger one at random); respond toward
    the stronger. ``distractor``: ring 2 shows the same directions with independent strengths,
    to be ignored. ``two_spans``: the stimuli come one after the other with a delay between."""

    options = _DM_OPTIONS
    distractor = False
    two_spans = False

    def _pair(self, batch, generator, device):
        c = _uniform(generator, batch, device, self.coherence_low, self.coherence_high)
        d = _uniform(generator, batch, device, self.delta_low, self.delta_high)
        first = _coin(generator, batch, device)
        sign = torch.where(first, 1.0, -1.0)
        return c, d, first, c + sign * d, c - sign * d

    def trial(self, batch, generator, device):
        theta1 = _uniform(generator, batch, device, 0.0, TWO_PI)
        theta2 = torch.remainder(theta1 + math.pi / 2 + _uniform(generator, batch, device, 0.0, math.pi), TWO_PI)
        c, d, first, s1, s2 = self._pair(batch, generator, device)
        span1 = self.span("stimulus1" if self.two_spans else "stimulus", batch, device)
        span2 = self.span("stimulus2" if self.two_spans else "stimulus", batch, device)
        zero, one = torch.zeros(batch, dtype=torch.int64, device=device), torch.ones(batch, dtype=torch.int64,
                                                                                     device=device)
        stimuli = [Stimulus(span1, zero, theta1, s1), Stimulus(span2, zero, theta2, s2)]
        info = {"theta1": theta1, "theta2": theta2, "coherence": c, "delta": d, "first_stronger": first}
        if self.distractor:
            oc, od, ofirst, o1, o2 = self._pair(batch, generator, device)
            stimuli += [Stimulus(span1, one, theta1, o1), Stimulus(span2, one, theta2, o2)]
            info.update({"distractor_coherence": oc, "distractor_delta": od, "distractor_first_stronger": ofirst})
        direction = torch.where(first, theta1, theta2)
        return stimuli, direction, torch.ones(batch, dtype=torch.bool, device=device), info


class DM(_DMFamily):
    """Decision making (Yang et al. "DM 1"): respond toward the stronger of two simultaneous
    stimuli in ring 1."""

    name = "dm"
    timing = TIMING_REACT


class DMD(_DMFamily):
    """Decision making with distractor (Yang et al. "Ctx DM 1", the attended modality fixed):
    ring 2 shows the same two directions with independent strengths; only ring 1 counts."""

    name = "dmd"
    timing = TIMING_REACT
    distractor = True


class DDM(_DMFamily):
    """Delayed decision making ("Dly DM 1"): the two stimuli come one after the other, a delay
    between; respond toward the stronger."""

    name = "ddm"
    timing = TIMING_TWO
    two_spans = True


class DDMD(_DMFamily):
    """Delayed decision making with distractor ("Ctx Dly DM 1")."""

    name = "ddmd"
    timing = TIMING_TWO
    two_spans = True
    distractor = True


class _MSFamily(CognitiveTask):
    """Multi-sensory decision making (Yang et al. "MultSen DM", as in the authors' code): both
    rings show theta1 (strength c + d) and theta2 (c - d), one ring (random) weighted by
    k ~ U[weight], the other by 2 - k; respond toward theta1, the stronger in both rings.
    ``two_spans``: the theta1 pair and the theta2 pair come one after the other (random order)."""

    options = _DM_OPTIONS + _range_options("weight", 1.2, 1.4, "weight range of the stronger modality")
    two_spans = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.weight_high >= 2.0:
            raise ValueError(f"weight_high={self.weight_high!r} leaves the other modality a weight "
                             f"2 - k <= 0; choose weight_high below 2.")

    def trial(self, batch, generator, device):
        modality = _coin(generator, batch, device).long()
        theta1 = _uniform(generator, batch, device, 0.0, TWO_PI)
        theta2 = torch.remainder(theta1 + math.pi / 2 + _uniform(generator, batch, device, 0.0, math.pi), TWO_PI)
        c = _uniform(generator, batch, device, self.coherence_low, self.coherence_high)
        d = _uniform(generator, batch, device, self.delta_low, self.delta_high)
        k = _uniform(generator, batch, device, self.weight_low, self.weight_high)
        info = {"modality": modality, "theta1": theta1, "theta2": theta2, "coherence": c, "delta": d, "weight": k}
        if self.two_spans:
            first = _coin(generator, batch, device)
            s1, s2 = self.span("stimulus1", batch, device), self.span("stimulus2", batch, device)
            span1, span2 = torch.where(first, s1, s2), torch.where(first, s2, s1)
            info["theta1_first"] = first
        else:
            span1 = span2 = self.span("stimulus", batch, device)
        other = 1 - modality
        stimuli = [Stimulus(span1, modality, theta1, k * (c + d)), Stimulus(span2, modality, theta2, k * (c - d)),
                   Stimulus(span1, other, theta1, (2 - k) * (c + d)), Stimulus(span2, other, theta2, (2 - k) * (c - d))]
        return stimuli, theta1, torch.ones(batch, dtype=torch.bool, device=device), info


class MSDM(_MSFamily):
    """Multi-sensory decision making: both modalities at once."""

    name = "msdm"
    timing = TIMING_REACT


class MSDDM(_MSFamily):
    """Delayed multi-sensory decision making: the two directions one after the other."""

    name = "msddm"
    timing = TIMING_TWO
    two_spans = True


# ====================================================================== match tasks
class _MatchFamily(CognitiveTask):
    """Two stimuli (strength 1, each in a random modality) separated by a delay. ``category``
    False (dms/dnms): a match is theta2 = theta1 + U[-pi/18, pi/18), a non-match theta2 = theta1 +
    U[pi/2, 3pi/2). ``category`` True (dmc/dnmc): the categories are [0, pi/2) and [pi, 3pi/2)
    (authors' code); a match has both stimuli in one category. Respond toward theta2 on a match
    (``on_match``) or on a non-match (the "non-" tasks); fixate otherwise."""

    timing = TIMING_TWO
    category = False
    on_match = True

    def trial(self, batch, generator, device):
        modality1 = _coin(generator, batch, device).long()
        modality2 = _coin(generator, batch, device).long()
        match = _coin(generator, batch, device)
        if self.category:
            cat1 = _coin(generator, batch, device).long()
            cat2 = torch.where(match, cat1, 1 - cat1)
            theta1 = cat1 * math.pi + _uniform(generator, batch, device, 0.0, math.pi / 2)
            theta2 = cat2 * math.pi + _uniform(generator, batch, device, 0.0, math.pi / 2)
            info = {"category1": cat1, "category2": cat2}
        else:
            theta1 = _uniform(generator, batch, device, 0.0, TWO_PI)
            near = _uniform(generator, batch, device, -math.pi / 18, math.pi / 18)
            far = _uniform(generator, batch, device, math.pi / 2, 3 * math.pi / 2)
            theta2 = torch.remainder(theta1 + torch.where(match, near, far), TWO_PI)
            info = {"offset_match": near, "offset_nonmatch": far}
        one = torch.ones(batch, device=device)
        stimuli = [Stimulus(self.span("stimulus1", batch, device), modality1, theta1, one),
                   Stimulus(self.span("stimulus2", batch, device), modality2, theta2, one)]
        respond = match if self.on_match else ~match
        info.update({"modality1": modality1, "modality2": modality2, "theta1": theta1, "theta2": theta2,
                     "match": match})
        return stimuli, theta2, respond, info


class DMS(_MatchFamily):
    """Delayed match-to-sample: respond toward the second stimulus if it matches the first.

    Registered as ``"dms-cog"``: ``"dms"`` is the N-DMS task of the timescale paper
    (:class:`trainers.tasks.binary.DMS`)."""

    name = DMS_NAME


class DNMS(_MatchFamily):
    """Delayed non-match-to-sample: respond toward the second stimulus if it does not match."""

    name = "dnms"
    on_match = False


class DMC(_MatchFamily):
    """Delayed match-to-category: respond toward the second stimulus if both share a category."""

    name = "dmc"
    category = True


class DNMC(_MatchFamily):
    """Delayed non-match-to-category: respond toward the second stimulus if the categories differ."""

    name = "dnmc"
    category = True
    on_match = False


#: the 16 tasks of 002 Fig. 1C, in its order
COGNITIVE_TASKS = (Go, RTGo, DelayGo, Anti, RTAnti, DelayAnti, DM, DMD, MSDM, DDM, DDMD, MSDDM, DMS, DNMS, DMC,
                   DNMC)

__all__ = ["CognitiveTask", "Span", "Stimulus", "COGNITIVE_TASKS", "DMS_NAME", "Go", "RTGo", "DelayGo", "Anti",
           "RTAnti", "DelayAnti", "DM", "DMD", "MSDM", "DDM", "DDMD", "MSDDM", "DMS", "DNMS", "DMC", "DNMC",
           "ring_profile", "popvec", "circular_distance", "TIMING_REACT", "TIMING_RT", "TIMING_DELAY",
           "TIMING_TWO"]
