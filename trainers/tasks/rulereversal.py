"""Rule-based visuomotor association with uncued rule reversals (002 Sec. 4.1, Fig. 4; Asaad,
Rainer & Miller 1998): a sequence of 5 consecutive trials in which the network must track a hidden
rule from the feedback it receives.

One sequence is a settling period with zero input (1000 ms), then 5 trials of four periods each
(002 Sec. 4.1 and the authors' code, ``wmws2/temporalskip``, ``functions/func_rulereversaltask.py``):

========  ======  ==============================================================================
period    ms      input
========  ======  ==============================================================================
sample    500     one-hot stimulus on channel 0 or 1
response  500     none; the network's answer is read out (the first 100 ms are not scored)
feedback  500     channel 2 (positive) if the answer was *correct* under the current rule, else 3
wait      500     none
========  ======  ==============================================================================

Rule 1 maps stimulus ``s`` to response ``s``; rule 2 reverses it. The rules of the 5 trials follow
one of the authors' 8 patterns (:data:`PATTERNS`), drawn uniformly per sequence; switches are not
cued. The *correct* answer of trial ``i`` (which decides the feedback) is the mapping under its
own rule; the *ideal* answer (the training target and the performance reference) is the mapping
under the rule of trial ``i - 1`` (rule 1 for the first trial): what a network that tracks the rule
from feedback answers, since a switch can only be detected from the feedback that follows it.

The task is closed loop (``closed_loop = True``): the feedback input depends on the network's own
answer (the argmax of its softmax readout at the last response step), so :meth:`RuleReversal.sample`
leaves the feedback channels zero and :meth:`RuleReversal.rollout` simulates the sequence segment
by segment with an engine-supplied ``run`` and fills them in.

Departure from the authors' training code: every period has a fixed length (their training jitters
each by +-100 ms; their evaluation does not), so that all members of an ensemble share the segment
boundaries (:meth:`RuleReversal.segments`). Their code also labels the two response classes the
other way round (rule 1 answers stimulus 0 with class 1); that is a relabelling of the outputs.
See docs/cognitive-tasks.md, "Rule reversal (002 Sec. 4.1)".

Examples
--------
>>> import torch
>>> from trainers.tasks import TASKS
>>> task = TASKS["rule-reversal"]()
>>> b = task.sample(3, generator=torch.Generator().manual_seed(0))
>>> tuple(b.inputs.shape), tuple(b.targets.shape), task.steps
((3, 2200, 4), (3, 2200, 2), 2200)
>>> [s for s in task.segments()[:3]]
[('settle', 0, 200), ('sample', 200, 300), ('response', 300, 400)]
>>> float(task.performance(b.targets, b).mean())       # the ideal answer scores 1
1.0
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from dynatools.utils import check_positive_int
from trainers.registry import Option
from trainers.tasks.trials import DELAY, FIXATION, PERIODS, RESPONSE, STIMULUS, TrialBatch, TrialTask

#: trials per sequence (002 Sec. 4.1: 5 consecutive trials)
TRIALS = 5
#: the authors' 8 rule patterns (0 = rule 1, 1 = rule 2), one row per pattern, one column per trial
PATTERNS = ((0, 0, 0, 0, 0), (0, 1, 1, 0, 0), (0, 0, 0, 1, 1), (0, 1, 1, 1, 1),
            (1, 0, 0, 0, 0), (1, 1, 1, 0, 0), (1, 0, 0, 1, 1), (1, 1, 1, 1, 1))
#: period code of the feedback steps (appended to :data:`~trainers.tasks.trials.PERIODS` in
#: :attr:`RuleReversal.period_names`)
FEEDBACK = len(PERIODS)
#: names of this task's period codes (recordings label the steps with them)
PERIOD_NAMES = PERIODS + ("feedback",)
#: segment kind -> period code: settling is "fixation", the wait period "delay"
SEGMENT_PERIODS = {"settle": FIXATION, "sample": STIMULUS, "response": RESPONSE, "feedback": FEEDBACK,
                   "wait": DELAY}
#: the order of the segments of one trial
TRIAL_SEGMENTS = ("sample", "response", "feedback", "wait")
#: probabilities are clipped here before the log (as Keras' cross-entropy in the authors' code)
EPS = 1e-7

#: run(h, start, stop, u_seg) -> (H_seg, Y_seg), supplied by the engine
RunFn = Callable[[torch.Tensor, int, int, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
#: mix(h_end, h_trial_start) -> h, the strategic skip connection between trial starts (002 Fig. 4D)
MixFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class RuleReversal(TrialTask):
    """Rule-based visuomotor association with uncued rule reversals (002 Sec. 4.1, Fig. 4).

    Parameters
    ----------
    dt : float, default=5.0
        Time step in ms (002: 5 ms); shared with the rate model's ``dt``.
    settle_ms : float, default=1000.0
        Settling period with zero input before the first trial (simulated without gradients).
    sample_ms, response_ms, feedback_ms, wait_ms : float, default=500.0
        The four periods of every trial (fixed; the authors' training jitters them by +-100 ms).
    grace_ms : float, default=100.0
        Unscored steps at the start of each response period (the authors' ``T_wait``).

    Notes
    -----
    Inputs ``(batch, T, 4)``: stimulus 0, stimulus 1, positive and negative feedback (the last two
    are filled by :meth:`rollout`). Outputs: 2 softmax probabilities. Loss: ``-log p[ideal]``
    averaged over the scored steps (the response period after ``grace_ms``) of all trials.
    Performance of a sequence (in [0, 1]): the fraction of scored steps whose argmax is the ideal
    answer, averaged over the 5 trials; a network succeeds above 0.99 (002 Table 2).
    """

    name = "rule-reversal"
    closed_loop = True
    input_dim = 4
    output_dim = 2
    period_names = PERIOD_NAMES
    options = (
        Option("dt", 5.0, "time step in ms (002: 5 ms); shared with the rate model", float, positive=True,
               shared=True),
        Option("settle_ms", 1000.0, "settling period with zero input before the first trial (002 code: 1000)",
               float, minimum=0.0),
        Option("sample_ms", 500.0, "stimulus period of each trial (002 code: 500, no jitter here)", float,
               positive=True),
        Option("response_ms", 500.0, "response period of each trial (002 code: 500)", float, positive=True),
        Option("feedback_ms", 500.0, "feedback period of each trial (002 code: 500)", float, positive=True),
        Option("wait_ms", 500.0, "wait period after the feedback (002 code: 500)", float, positive=True),
        Option("grace_ms", 100.0, "unscored ms at the start of each response period (002 code: 100)", float,
               minimum=0.0),
    )
    #: 002 Sec. 4.1 and the authors' code (func_rulereversaltask.py: 40 sequences per step, Adam with
    #: lr 1e-1/N = 2e-3, a softmax readout of all units); the other engine defaults as the
    #: cognitive tasks (:class:`trainers.tasks.cognitive.CognitiveTask`).
    defaults = {"model": "rate", "curriculum": "percentile", "output_activation": "softmax", "units": 50,
                "batch": 40, "optimizer": "adam", "lr": 2e-3, "steps_per_epoch": 100, "eval_batches": 10,
                "max_epochs": 400, "noise": "ou", "sigma": 0.1, "noise_tau_ms": 100.0, "init": "002",
                "input_units": 0, "output_units": 0}
    minimal_performance = None

    def __init__(self, *, dt: float = 5.0, settle_ms: float = 1000.0, sample_ms: float = 500.0,
                 response_ms: float = 500.0, feedback_ms: float = 500.0, wait_ms: float = 500.0,
                 grace_ms: float = 100.0) -> None:
        given = {"dt": dt, "settle_ms": settle_ms, "sample_ms": sample_ms, "response_ms": response_ms,
                 "feedback_ms": feedback_ms, "wait_ms": wait_ms, "grace_ms": grace_ms}
        owner = f"task {self.name!r}"
        for opt in self.options:
            setattr(self, opt.name, opt.check(given[opt.name], owner))
        steps = {kind: int(round(getattr(self, f"{kind}_ms") / self.dt)) for kind in TRIAL_SEGMENTS}
        for kind, n in steps.items():
            if n < 1:
                raise ValueError(f"dt={self.dt!r} ms is too coarse: the {kind} period "
                                 f"({getattr(self, kind + '_ms'):g} ms) would last 0 steps; choose "
                                 f"dt <= {getattr(self, kind + '_ms'):g}.")
        self.grace_steps = int(round(self.grace_ms / self.dt))
        if self.grace_steps >= steps["response"]:
            raise ValueError(f"grace_ms={self.grace_ms!r} leaves no scored step in the response period "
                             f"({self.response_ms:g} ms); choose grace_ms below {self.response_ms:g}.")
        self.settle_steps = int(round(self.settle_ms / self.dt))
        self._segments: list[tuple[str, int, int]] = []
        t = 0
        if self.settle_steps > 0:
            self._segments.append(("settle", 0, self.settle_steps))
            t = self.settle_steps
        for _ in range(TRIALS):
            for kind in TRIAL_SEGMENTS:
                self._segments.append((kind, t, t + steps[kind]))
                t += steps[kind]
        #: steps of a whole sequence
        self.steps = t

    # ------------------------------------------------------------------ layout
    def segments(self) -> list[tuple[str, int, int]]:
        """The segments of every sequence in order, ``(kind, start, stop)`` in steps (``stop``
        exclusive): ``"settle"`` (absent when ``settle_ms`` is 0), then ``"sample"``,
        ``"response"``, ``"feedback"``, ``"wait"`` for each of the 5 trials. The same for every
        batch (no jitter)."""
        return list(self._segments)

    def _step_layout(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per step ``(T,)``: trial index (-1 while settling), period code, sample flag, scored flag."""
        trial = torch.full((self.steps,), -1, dtype=torch.int64)
        period = torch.empty(self.steps, dtype=torch.int64)
        sample = torch.zeros(self.steps, dtype=torch.bool)
        scored = torch.zeros(self.steps, dtype=torch.bool)
        i = -1
        for kind, start, stop in self._segments:
            if kind == "sample":
                i += 1
                sample[start:stop] = True
            if kind == "response":
                scored[start + self.grace_steps:stop] = True
            trial[start:stop] = i
            period[start:stop] = SEGMENT_PERIODS[kind]
        return trial.to(device), period.to(device), sample.to(device), scored.to(device)

    # ------------------------------------------------------------------ sampling
    def sample(self, batch: int, *, generator: torch.Generator | None = None,
               device: torch.device | str | None = None) -> TrialBatch:
        """``batch`` fresh sequences drawn from ``generator`` (on ``device``, default: the
        generator's): a rule pattern per sequence (uniform over :data:`PATTERNS`), then a stimulus
        per trial (uniform over 0, 1).

        Returns
        -------
        TrialBatch
            ``inputs`` ``(batch, T, 4)`` with the stimuli (feedback channels zero: :meth:`rollout`
            fills them), ``targets`` ``(batch, T, 2)`` the one-hot ideal answer on scored steps (0
            elsewhere), ``mask`` ``(batch, T, 2)`` 1 on scored steps, ``periods`` ``(batch, T)``
            codes into :attr:`period_names`, and ``info``: ``pattern`` ``(batch,)``, ``rule``,
            ``stimulus``, ``correct``, ``ideal`` ``(batch, 5)``, all int64.
        """
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch must be a positive integer; found {batch!r}.")
        if device is None:
            device = generator.device if generator is not None else torch.device("cpu")
        device = torch.device(device)
        pattern = torch.randint(len(PATTERNS), (batch,), generator=generator, device=device)
        rule = torch.tensor(PATTERNS, dtype=torch.int64, device=device)[pattern]          # (B, 5)
        stimulus = torch.randint(2, (batch, TRIALS), generator=generator, device=device)
        correct = stimulus ^ rule
        previous = torch.cat([torch.zeros_like(rule[:, :1]), rule[:, :-1]], dim=1)
        ideal = stimulus ^ previous
        trial, period, is_sample, scored = self._step_layout(device)
        idx = trial.clamp(min=0)
        onehot = torch.nn.functional.one_hot
        stim = onehot(stimulus[:, idx], 2).float() * is_sample[None, :, None]           # (B, T, 2)
        inputs = torch.cat([stim, torch.zeros_like(stim)], dim=-1)
        targets = onehot(ideal[:, idx], 2).float() * scored[None, :, None]
        mask = scored[None, :, None].float().expand(batch, self.steps, 2).contiguous()
        periods = period[None].expand(batch, self.steps).contiguous()
        info = {"pattern": pattern, "rule": rule, "stimulus": stimulus, "correct": correct, "ideal": ideal}
        return TrialBatch(inputs, targets, mask, periods, info)

    # ------------------------------------------------------------------ the closed loop
    def _check_batch(self, batch: TrialBatch) -> None:
        x = batch.inputs
        if x.ndim < 3 or x.shape[-1] != self.input_dim or x.shape[-2] != self.steps:
            raise ValueError(f"batch.inputs has shape {tuple(x.shape)}; expected (..., batch, {self.steps}, "
                             f"{self.input_dim}) = (..., batch, time, input), from {self.name}.sample().")
        correct = batch.info.get("correct")
        if correct is None or tuple(correct.shape) != (*x.shape[:-2], TRIALS):
            found = None if correct is None else tuple(correct.shape)
            raise ValueError(f"batch.info['correct'] has shape {found}; expected {(*x.shape[:-2], TRIALS)} "
                             f"(one answer per trial); draw the batch with {self.name}.sample().")

    def rollout(self, run: RunFn, batch: TrialBatch, h0: torch.Tensor, *,
                mix: MixFn | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Simulate whole sequences segment by segment, feeding back the network's own answers.

        Parameters
        ----------
        run : callable
            ``run(h, start, stop, u_seg) -> (H_seg, Y_seg)``: the steps ``[start, stop)`` from the
            state ``h`` ``(..., batch, unit)`` with inputs ``u_seg`` ``(..., batch, stop - start, 4)``;
            ``H_seg`` ``(..., batch, stop - start, unit)``, ``Y_seg`` ``(..., batch, stop - start, 2)``
            the softmax probabilities (a head axis of length 1 before the last is accepted).
        batch : TrialBatch
            From :meth:`sample`; its tensors may carry leading dims (an ensemble's member axis),
            broadcast against those of ``h0``.
        h0 : torch.Tensor
            ``(..., batch, unit)``, the state before the settling period.
        mix : callable, optional
            ``mix(h_end, h_trial_start) -> h``, applied at each of the 4 boundaries between
            consecutive trials to the state after the wait period, with the state at that trial's
            start: 002's strategic skip connections between trial starts (Fig. 4D). Its result is
            the next trial's start state (the returned ``H`` holds the simulated states).

        Returns
        -------
        H : torch.Tensor
            ``(..., batch, T, unit)``; the settling period is simulated under ``torch.no_grad()``
            (as the authors do), so its states carry no gradient.
        Y : torch.Tensor
            ``(..., batch, T, 2)``.
        inputs : torch.Tensor
            ``(..., batch, T, 4)``, the inputs with the realised feedback: positive (channel 2)
            when the argmax of ``Y`` at the last response step equals ``info["correct"]``, else
            negative (channel 3).
        """
        self._check_batch(batch)
        if h0.ndim < 2 or h0.shape[-2] != batch.inputs.shape[-3]:
            raise ValueError(f"h0 has shape {tuple(h0.shape)}; expected (..., {batch.inputs.shape[-3]}, unit) "
                             f"= (..., batch, unit) for a batch of {batch.inputs.shape[-3]} sequences.")
        try:
            lead = torch.broadcast_shapes(batch.inputs.shape[:-3], h0.shape[:-2])
        except RuntimeError:
            raise ValueError(f"the leading dims of h0 {tuple(h0.shape[:-2])} and of the batch "
                             f"{tuple(batch.inputs.shape[:-3])} do not broadcast; give both the same member "
                             f"axis.") from None
        B = batch.inputs.shape[-3]
        inputs = batch.inputs.expand(*lead, *batch.inputs.shape[-3:])
        correct = batch.info["correct"].expand(*lead, B, TRIALS)
        Hs: list[torch.Tensor] = []
        Ys: list[torch.Tensor] = []
        Us: list[torch.Tensor] = []
        h = h0.expand(*lead, *h0.shape[-2:])
        h_start = h
        trial = -1

        def simulate(h: torch.Tensor, start: int, stop: int, u: torch.Tensor) -> torch.Tensor:
            H, Y = run(h, start, stop, u)
            if Y.ndim == H.ndim + 1 and Y.shape[-2] == 1:
                Y = Y.squeeze(-2)
            expected = (*u.shape[:-1],)
            if tuple(H.shape[:-1]) != expected or tuple(Y.shape) != (*expected, self.output_dim):
                raise ValueError(f"run(h, {start}, {stop}, u) returned H {tuple(H.shape)} and Y "
                                 f"{tuple(Y.shape)}; expected {expected + ('unit',)} and "
                                 f"{expected + (self.output_dim,)} = (..., batch, stop - start, ...).")
            Hs.append(H)
            Ys.append(Y)
            Us.append(u)
            return H[..., -1, :]

        for kind, start, stop in self._segments:
            u = inputs[..., start:stop, :]
            if kind == "settle":
                with torch.no_grad():
                    h = simulate(h, start, stop, u)
                continue
            if kind == "sample":
                trial += 1
                if trial > 0 and mix is not None:
                    h = mix(h, h_start)
                h_start = h
            elif kind == "feedback":
                answer = Ys[-1][..., -1, :].argmax(-1)                          # (..., B)
                positive = (answer == correct[..., trial]).to(u.dtype)
                fb = torch.stack([positive, 1.0 - positive], dim=-1)             # (..., B, 2)
                u = torch.cat([u[..., :2], fb[..., None, :].expand(*u.shape[:-1], 2)], dim=-1)
            h = simulate(h, start, stop, u)
        return torch.cat(Hs, dim=-2), torch.cat(Ys, dim=-2), torch.cat(Us, dim=-2)

    # ------------------------------------------------------------------ loss and performance
    def _outputs(self, outputs: torch.Tensor, batch: TrialBatch, what: str) -> torch.Tensor:
        if outputs.ndim == batch.targets.ndim + 1 and outputs.shape[-2] == 1:
            outputs = outputs.squeeze(-2)
        if outputs.shape[-2:] != batch.targets.shape[-2:] or outputs.ndim < 3:
            raise ValueError(f"{what}: outputs have shape {tuple(outputs.shape)}; expected (batch, time, "
                             f"{self.output_dim}) = {tuple(batch.targets.shape)} (or with a head axis of "
                             f"length 1 before the last), the softmax readout of the whole sequence.")
        return outputs

    def loss(self, outputs: torch.Tensor, batch: TrialBatch) -> torch.Tensor:
        """Cross-entropy ``-log p[ideal]`` averaged over the scored steps of all trials (002 Sec.
        4.1; the authors' sparse categorical cross-entropy, probabilities clipped at 1e-7).

        ``outputs``: the softmax probabilities ``(batch, time, 2)`` (a head axis of length 1
        before the last is accepted)."""
        outputs = self._outputs(outputs, batch, "loss")
        scored = batch.mask[..., 0]
        logp = torch.log(outputs.clamp(min=EPS, max=1.0))
        ce = -(batch.targets * logp).sum(-1)
        return (ce * scored).sum() / scored.sum().clamp(min=1)

    def performance(self, outputs: torch.Tensor, batch: TrialBatch) -> torch.Tensor:
        """``(batch,)`` float in [0, 1]: the fraction of scored steps whose argmax is the ideal
        answer, averaged over the 5 trials (all trials have as many scored steps); the authors'
        evaluation. A network succeeds above 0.99."""
        outputs = self._outputs(outputs, batch, "performance")
        scored = batch.mask[..., 0] > 0
        hit = (outputs.argmax(-1) == batch.targets.argmax(-1)) & scored
        return hit.sum(-1).to(outputs.dtype if outputs.is_floating_point() else torch.float32) / scored.sum(-1)

    def evaluate(self, model: torch.nn.Module, Ns: Sequence[int] | None = None, *, batch: int = 256,
                 batches: int = 1, generator: torch.Generator | None = None,
                 length_generator: torch.Generator | None = None,
                 device: torch.device | None = None) -> np.ndarray:
        """Mean performance of one network on ``batches`` fresh batches of ``batch`` sequences
        (``(1,)``, in [0, 1]), simulated in the closed loop (:meth:`rollout`) in evaluation mode
        (no private noise), without skip connections."""
        batches = check_positive_int("batches", batches)
        batch = check_positive_int("batch", batch)
        dev = next(model.parameters()).device if device is None else torch.device(device)
        dtype = next(model.parameters()).dtype

        def run(h: torch.Tensor, start: int, stop: int, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            H = model(u.to(dtype), h)
            Y = model.readout(H, heads=1)
            return H, Y.squeeze(-2) if Y.ndim == H.ndim + 1 else Y

        was_training = model.training
        model.eval()
        total = torch.zeros((), device=dev, dtype=torch.float64)
        try:
            with torch.no_grad():
                for _ in range(batches):
                    b = self.sample(batch, generator=generator, device=dev)
                    h0 = model.initial_state(batch, generator=generator).to(device=dev, dtype=dtype)
                    _, Y, _ = self.rollout(run, b, h0)
                    total += self.performance(Y, b).double().sum()
        finally:
            model.train(was_training)
        return np.array([float(total) / (batches * batch)])


__all__ = ["RuleReversal", "PATTERNS", "TRIALS", "FEEDBACK", "PERIOD_NAMES", "SEGMENT_PERIODS"]
