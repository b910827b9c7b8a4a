"""The written protocols: what the engine, the recordings and every dynatools analysis need of a
network and of a task. Classes follow them structurally (no inheritance needed); one test checks
every registered model and task against them (``test_protocol`` and ``test_task_protocol`` in
``tests/trainers/test_models.py``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch


@runtime_checkable
class Network(Protocol):
    """A recurrent network (DESIGN.md, "Contracts between the parts"). A ``torch.nn.Module`` with:

    * ``step(h, u) -> h_next``: one batched time step, ``h`` ``(batch, state)``, ``u``
      ``(batch, input_dim)`` or None (autonomous map);
    * ``initial_state(batch, *, generator=None) -> h0`` ``(batch, state)``;
    * ``forward(u, h0=None) -> H``: the states of every step, ``(batch, time, state)``;
    * ``readout(h, heads=None) -> logits`` ``(..., head, class)``; ``heads=k`` keeps the first k;
    * ``n_units``, ``input_dim``, ``n_heads``, ``state_size``, ``n_trainable``;
    * ``name`` (its registry name) and ``config()`` (what rebuilds its architecture).

    Optional, used where present: ``jacobian(h, u)`` (analytic ``d step / d h``, Lyapunov
    spectra), ``recording_weights()`` (weights in the recording schema's names),
    ``unit_axes()`` (which axes of each weight are units: ablation), ``effective_tau()``
    (per-unit timescales), ``hidden(state)`` (the part of the state the readout sees: LSTM).
    """

    name: str
    n_units: int
    input_dim: int

    @property
    def n_heads(self) -> int: ...

    @property
    def state_size(self) -> int: ...

    @property
    def n_trainable(self) -> int: ...

    def step(self, h: torch.Tensor, u: torch.Tensor | None) -> torch.Tensor: ...

    def initial_state(self, batch: int, *, generator: torch.Generator | None = None) -> torch.Tensor: ...

    def forward(self, u: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor: ...

    def readout(self, h: torch.Tensor, heads: int | slice | None = None) -> torch.Tensor: ...

    def config(self) -> dict[str, Any]: ...


#: Optional methods of a :class:`Network`, used where a model has them.
OPTIONAL_NETWORK_METHODS = ("jacobian", "recording_weights", "unit_axes", "effective_tau", "hidden")


@runtime_checkable
class Task(Protocol):
    """A task the engine trains on.

    * ``name``, ``input_dim``, ``n_classes`` (outputs per head; 1 for regression), ``metric``
      (``"accuracy"`` in per cent or ``"rms"``), ``uses_N`` (answers depend on a task size N, so
      curricula over N apply), ``minimal_performance`` (or None);
    * ``train_batches(Ns, *, batch, steps, generator, length_generator, device)``: one epoch of
      batches, each with ``inputs`` ``(batch, time, input_dim)``;
    * ``loss(logits, batch)``: the training loss from the readout of the last state;
    * ``evaluate(model, Ns, *, batch, batches, generator, length_generator, device)``: the metric
      per active head;
    * ``fixed_batch(Ns, size, *, generator, device)``: a reproducible batch (Hessians);
    * ``recording_stream(trials, steps, *, p, generator, device) -> (inputs, labels)``: the long
      input of a recording or a Lyapunov spectrum, ``(trials, steps, input_dim)``, and a function
      ``labels(Ns, t)`` (None when the task has no per-step labels); ``p`` is the probability of
      a 1 for tasks with random-bit inputs (``bit_inputs = True``), None otherwise; trial tasks
      return the :class:`~trainers.tasks.trials.TrialBatch` of the trials instead of ``labels``;
    * ``config()``: ``{"task": name, **options}``.

    Trial tasks (``time_resolved = True``, :class:`trainers.tasks.trials.TrialTask`) are read out
    at every step: ``loss`` receives ``(batch, time, head, class)``; they also provide
    ``performance(outputs, batch)`` (1/0 per trial) and ``sample(batch, generator=, device=)``.
    """

    name: str
    input_dim: int
    uses_N: bool

    def train_batches(self, Ns: Sequence[int], *, batch: int, steps: int, generator: torch.Generator,
                      length_generator: torch.Generator, device: torch.device) -> Iterator[Any]: ...

    def loss(self, logits: torch.Tensor, batch: Any) -> torch.Tensor: ...

    def evaluate(self, model: torch.nn.Module, Ns: Sequence[int] | None, **kwargs: Any) -> np.ndarray: ...

    def fixed_batch(self, Ns: Sequence[int] | None, size: int, *, generator: torch.Generator,
                    device: torch.device) -> Any: ...

    def recording_stream(self, trials: int, steps: int, *, p: Any = None, generator: torch.Generator | None = None,
                         device: torch.device | None = None) -> tuple[torch.Tensor, Any]: ...

    def config(self) -> dict[str, Any]: ...


__all__ = ["Network", "Task", "OPTIONAL_NETWORK_METHODS"]
