"""Trial-based tasks with time-resolved targets: what the cognitive tasks (002 Sec. 2.1, Yang et
al. 2019) and the multi-timescale tasks of 001 share.

A trial task draws whole trials on the device in a few tensor operations (no Python loop over
trials): inputs, targets and a cost mask at every time step, the trial period of every step, and
what the performance criterion needs. The network is read out at every step (``time_resolved``),
the loss is the masked mean-squared error (002 Sec. 2.1), and the performance of a trial is 1 or
0 (:meth:`TrialTask.performance`, implemented by each family of tasks).

Trials of one batch may differ in length: each trial ends at its own last step, and the steps
after it are padding (``periods == PAD``, zero input, zero cost). Padding at the end never changes
a causal network's outputs at earlier steps, so batches drawn for different members of an
ensemble can be padded to a common length (:func:`pad_batch`) without changing any member's loss
or performance.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from dynatools.utils import check_positive_int

#: Names of the trial periods, indexed by the codes in :attr:`TrialBatch.periods`.
PERIODS = ("fixation", "stimulus", "delay", "response")
FIXATION, STIMULUS, DELAY, RESPONSE = range(4)
#: Code of the padding steps after a trial's end.
PAD = -1


@dataclass(frozen=True)
class TrialBatch:
    """One batch of trials.

    Attributes
    ----------
    inputs : torch.Tensor
        ``(batch, time, input_dim)`` float.
    targets : torch.Tensor
        ``(batch, time, output_dim)`` float, the target output at every step.
    mask : torch.Tensor
        ``(batch, time, output_dim)`` float, the cost weight of every target entry (0 on padding).
    periods : torch.Tensor
        ``(batch, time)`` int64 codes into :data:`PERIODS`; :data:`PAD` after the trial's end.
    info : dict of str to torch.Tensor
        Per-trial quantities the performance criterion needs, each ``(batch, ...)`` (e.g. the
        target direction in radians and whether a response is required).
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    mask: torch.Tensor
    periods: torch.Tensor
    info: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def lengths(self) -> torch.Tensor:
        """``(batch,)`` int64: number of steps of each trial (up to its last non-padding step)."""
        return (self.periods != PAD).sum(1)

    def to(self, device: torch.device | str) -> "TrialBatch":
        """The batch on ``device``."""
        return TrialBatch(self.inputs.to(device), self.targets.to(device), self.mask.to(device),
                          self.periods.to(device), {k: v.to(device) for k, v in self.info.items()})


def pad_batch(batch: TrialBatch, steps: int) -> TrialBatch:
    """``batch`` padded at the end to ``steps`` time steps (zero input, target and cost; period
    :data:`PAD`). A batch that is already ``steps`` long is returned as it is."""
    extra = int(steps) - batch.inputs.shape[1]
    if extra < 0:
        raise ValueError(f"cannot pad a batch of {batch.inputs.shape[1]} steps to {steps}.")
    if extra == 0:
        return batch

    def pad(x: torch.Tensor, value: float = 0.0) -> torch.Tensor:
        shape = (x.shape[0], extra, *x.shape[2:])
        return torch.cat([x, torch.full(shape, value, dtype=x.dtype, device=x.device)], dim=1)

    return replace(batch, inputs=pad(batch.inputs), targets=pad(batch.targets), mask=pad(batch.mask),
                   periods=pad(batch.periods, PAD))


def stack_batches(batches: Sequence[TrialBatch]) -> TrialBatch:
    """Batches of the members of an ensemble stacked on a new leading ``member`` axis, each
    padded to the longest (see :func:`pad_batch`)."""
    steps = max(b.inputs.shape[1] for b in batches)
    padded = [pad_batch(b, steps) for b in batches]
    keys = padded[0].info.keys()
    return TrialBatch(torch.stack([b.inputs for b in padded]), torch.stack([b.targets for b in padded]),
                      torch.stack([b.mask for b in padded]), torch.stack([b.periods for b in padded]),
                      {k: torch.stack([b.info[k] for b in padded]) for k in keys})


def masked_mse(outputs: torch.Tensor, batch: TrialBatch) -> torch.Tensor:
    """Mean-squared error weighted by the cost mask (002 Sec. 2.1): ``sum(mask * (y - target)^2)
    / number of non-padding target entries``. ``outputs`` is ``(..., batch, time, output_dim)``
    or has a head axis of length 1 before the last one. Padding does not change the value."""
    if outputs.ndim == batch.targets.ndim + 1:
        outputs = outputs.squeeze(-2)
    valid = (batch.periods != PAD).sum() * batch.targets.shape[-1]
    return (batch.mask * (outputs - batch.targets) ** 2).sum() / valid.clamp(min=1)


class TrialTask:
    """Base class of trial tasks; a subclass implements :meth:`sample` and :meth:`performance`.

    The engine reads the network out at every step (``time_resolved = True``): the readout it
    passes to :meth:`loss` and :meth:`performance` is ``(batch, time, head, output_dim)`` (one
    head). The metric is the fraction of correct trials (``"performance"``, in [0, 1]).
    """

    name = ""
    options: tuple = ()
    defaults: dict[str, Any] = {}
    uses_N = False
    bit_inputs = False
    time_resolved = True
    metric = "performance"
    minimal_performance: float | None = None
    input_dim: int = 1
    output_dim: int = 1

    @property
    def n_classes(self) -> int:
        """Outputs of the one readout head (the engine sizes the readout from it)."""
        return self.output_dim

    @classmethod
    def from_config(cls, config: dict) -> "TrialTask":
        """Build from a resolved ``task_options`` section."""
        return cls(**{k: v for k, v in config.items() if k != "task"})

    def config(self) -> dict[str, Any]:
        return {"task": self.name, **{o.name: getattr(self, o.name) for o in self.options}}

    def __repr__(self) -> str:
        args = ", ".join(f"{o.name}={getattr(self, o.name)!r}" for o in self.options)
        return f"{type(self).__name__}({args})"

    # ------------------------------------------------------------------ to implement
    def sample(self, batch: int, *, generator: torch.Generator | None = None,
               device: torch.device | str | None = None) -> TrialBatch:
        """``batch`` fresh trials drawn from ``generator`` (on ``device``)."""
        raise NotImplementedError

    def performance(self, outputs: torch.Tensor, batch: TrialBatch) -> torch.Tensor:
        """``(batch,)`` float, 1.0 for a correct trial and 0.0 otherwise, from the readout
        ``outputs`` ``(batch, time, output_dim)`` (a head axis of length 1 is accepted)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ engine protocol
    def loss(self, outputs: torch.Tensor, batch: TrialBatch) -> torch.Tensor:
        """Masked mean-squared error (:func:`masked_mse`)."""
        return masked_mse(outputs, batch)

    def train_batches(self, Ns: Sequence[int] | None, *, batch: int, steps: int, generator: torch.Generator,
                      length_generator: torch.Generator | None = None,
                      device: torch.device | None = None) -> Iterator[TrialBatch]:
        """``steps`` fresh batches of ``batch`` trials."""
        for _ in range(steps):
            yield self.sample(batch, generator=generator, device=device)

    def fixed_batch(self, Ns: Sequence[int] | None, size: int, *, generator: torch.Generator,
                    device: torch.device) -> TrialBatch:
        """A reproducible batch of ``size`` trials (Hessians)."""
        return self.sample(size, generator=generator, device=device)

    def evaluate(self, model: torch.nn.Module, Ns: Sequence[int] | None = None, *, batch: int = 256,
                 batches: int = 1, generator: torch.Generator | None = None,
                 length_generator: torch.Generator | None = None,
                 device: torch.device | None = None) -> np.ndarray:
        """Fraction of correct trials on ``batches`` fresh batches (``(1,)``, in [0, 1]), the
        network in evaluation mode (no private noise)."""
        batches = check_positive_int("batches", batches)
        batch = check_positive_int("batch", batch)
        dev = next(model.parameters()).device if device is None else torch.device(device)
        dtype = next(model.parameters()).dtype
        was_training = model.training
        model.eval()
        correct = torch.zeros((), device=dev)
        try:
            with torch.no_grad():
                for _ in range(batches):
                    b = self.sample(batch, generator=generator, device=dev)
                    H = model(b.inputs.to(dtype), model.initial_state(batch, generator=generator))
                    correct += self.performance(model.readout(H, heads=1), b).sum()
        finally:
            model.train(was_training)
        return np.array([float(correct) / (batches * batch)])

    def recording_stream(self, trials: int, steps: int | None = None, *, p: Any = None,
                         generator: torch.Generator | None = None, device: torch.device | None = None):
        """``trials`` fresh trials as the input of a recording, ``(trials, steps, input_dim)``
        (padded or cut to ``steps``; None keeps the batch's length), and the :class:`TrialBatch`
        they come from (its periods label every step)."""
        b = self.sample(trials, generator=generator, device=device)
        if steps is not None:
            if steps >= b.inputs.shape[1]:
                b = pad_batch(b, steps)
            else:
                b = replace(b, inputs=b.inputs[:, :steps], targets=b.targets[:, :steps],
                            mask=b.mask[:, :steps], periods=b.periods[:, :steps])
        return b.inputs, b


__all__ = ["TrialBatch", "TrialTask", "PERIODS", "PAD", "FIXATION", "STIMULUS", "DELAY", "RESPONSE",
           "pad_batch", "stack_batches", "masked_mse"]
