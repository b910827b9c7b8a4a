"""Ensembles of networks trained in parallel, and the training loop of trial tasks.

002 (Soo, Goudar & Wang, NeurIPS 2023, Sec. 2.2 and Table 1) trains 100 rate networks per task
"simultaneously" and stops when the mean performance of the networks between the 10th and 90th
percentile reaches 0.99, or at 40,000 steps. Here K networks with their own initialisation,
private noise, batches and optimiser state run as one batched computation on one device: the
members' parameters are stacked and one ``torch.func.vmap`` of the member's own forward pass
turns every matrix product into a batched one. A single network is the K = 1 case of the same
code, and member k of an ensemble with seed s trains exactly as a single run with seed s + k
(same initialisation, batches and noise; the optimiser update of each parameter entry depends
on that entry's gradient only, and gradients are clipped per member).

Per step and per member the loop records the loss, the performance on the training batch and
the floating-point operations (:func:`training_flops`); per step the wall-clock time (shared by
the members: they run together). After every ``steps_per_epoch`` steps each member is evaluated
on fresh trials without noise and the stopping rule (:class:`trainers.curricula.Percentile`) is
checked; a checkpoint is written, from which a run resumes exactly.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import nn

from trainers.skip import Method, Simulation, coarse_batch
from trainers.tasks.trials import TrialBatch, stack_batches


class Ensemble(nn.Module):
    """K networks of one architecture evaluated as one batched computation.

    Parameters
    ----------
    members : sequence of torch.nn.Module
        Networks with the same ``config()`` (their weights differ). They are kept as
        ``self.members`` (a ``ModuleList``): ``ensemble.members[k]`` is member k as an ordinary
        network, sharing its parameters with the ensemble.

    Examples
    --------
    >>> import torch
    >>> from trainers.models import RateRNN
    >>> from trainers.ensemble import Ensemble
    >>> ens = Ensemble([RateRNN(8, generator=torch.Generator().manual_seed(k)) for k in range(3)])
    >>> H, Y = ens.run(torch.ones(3, 2, 5, 1))          # (member, batch, time, ...)
    >>> H.shape, Y.shape
    (torch.Size([3, 2, 5, 8]), torch.Size([3, 2, 5, 1, 2]))
    >>> torch.allclose(H[1], ens.members[1](torch.ones(2, 5, 1)), atol=1e-6)
    True
    """

    name = "ensemble"

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        members = list(members)
        if not members:
            raise ValueError("an ensemble needs at least one member.")
        first = members[0].config() if hasattr(members[0], "config") else None
        for k, m in enumerate(members[1:], 1):
            if type(m) is not type(members[0]) or (first is not None and m.config() != first):
                raise ValueError(f"member {k} has another architecture than member 0; an ensemble stacks "
                                 f"networks of one configuration.")
        self.members = nn.ModuleList(members)
        base = copy.deepcopy(members[0]).to("meta")
        if hasattr(base, "fused") and not getattr(base, "fused_vmappable", False):
            base.fused = False              # a hand-written recurrence without a vmap rule (leaky RNN)
        self._runner = [_Runner(base)]      # a list: not a submodule

    @property
    def size(self) -> int:
        """Number of members K."""
        return len(self.members)

    @property
    def n_units(self) -> int:
        return self.members[0].n_units

    @property
    def input_dim(self) -> int:
        return self.members[0].input_dim

    def config(self) -> dict[str, Any]:
        """``{"model": "ensemble", "members": K, "member": <member config>}`` (rebuilds it)."""
        return {"model": self.name, "members": self.size, "member": self.members[0].config()}

    @classmethod
    def from_config(cls, config: dict[str, Any], *, generator: torch.Generator | None = None) -> "Ensemble":
        from trainers.checkpoint import build_model

        return cls([build_model(config["member"]) for _ in range(int(config["members"]))])

    def initial_state(self, batch: int, *, generators: Sequence[torch.Generator | None] | None = None) -> torch.Tensor:
        """``(member, batch, state)``: each member's initial state (drawn from its generator)."""
        gens = generators or [None] * self.size
        return torch.stack([m.initial_state(batch, generator=g) for m, g in zip(self.members, gens)])

    def _stacked(self) -> dict[str, torch.Tensor]:
        """Every parameter and buffer of the members stacked on a leading member axis
        (differentiable: gradients reach each member's own parameters)."""
        names = [n for n, _ in self.members[0].named_parameters()] + [n for n, _ in self.members[0].named_buffers()]
        tensors = [dict(m.named_parameters()) | dict(m.named_buffers()) for m in self.members]
        return {f"model.{n}": torch.stack([t[n] for t in tensors]) for n in names}

    def run(self, u: torch.Tensor, h0: torch.Tensor | None = None, noise: torch.Tensor | None = None, *,
            heads: int | None = 1, simulation: Simulation | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """States and readout of every member at every step.

        Parameters
        ----------
        u : torch.Tensor
            ``(member, batch, time, input_dim)``.
        h0 : torch.Tensor, optional
            ``(member, batch, state)``; default each member's initial state.
        noise : torch.Tensor, optional
            ``(member, batch, time, unit)`` standard-normal draws for members with private noise
            (used in training mode only; see ``RateRNN.draw_noise``).
        heads : int, optional
            Readout heads (the first ``heads``); None: all.
        simulation : trainers.skip.Simulation, optional
            A training-time method of 002 Sec. 3 (rate networks): under CD with factor theta the
            time axis of ``H`` and ``Y`` has ``ceil(time / theta)`` coarse steps.

        Returns
        -------
        H : torch.Tensor
            ``(member, batch, time, state)``.
        Y : torch.Tensor
            ``(member, batch, time, head, class)``.
        """
        if u.ndim != 4 or u.shape[0] != self.size:
            raise ValueError(f"u has shape {tuple(u.shape)}; expected (member={self.size}, batch, time, input_dim).")
        if h0 is None:
            h0 = self.initial_state(u.shape[1])
        runner = self._runner[0]
        runner.train(self.training)
        if noise is None and self.training and any(_draws_noise(m) for m in self.members):
            T = u.shape[2]                  # each member's draws from its own noise_generator
            noise = torch.stack([m.draw_noise(u.shape[1], T, generator=m.noise_generator, device=u.device,
                                              dtype=u.dtype) for m in self.members])
        runner.heads = heads
        extra = {} if simulation is None or simulation.is_base else {"simulation": simulation}
        if self.size == 1:                  # one network: its own forward, no vmap overhead
            m = self.members[0]
            H = m(u[0], h0[0], **extra) if noise is None else m(u[0], h0[0], noise=noise[0], **extra)
            return H[None], m.readout(H, heads=heads)[None]
        params = self._stacked()

        if noise is None:
            def one(p: dict[str, torch.Tensor], u_k: torch.Tensor, h_k: torch.Tensor):
                return torch.func.functional_call(runner, p, (u_k, h_k), extra)
            return torch.func.vmap(one)(params, u, h0)

        def one_noisy(p: dict[str, torch.Tensor], u_k: torch.Tensor, h_k: torch.Tensor, n_k: torch.Tensor):
            return torch.func.functional_call(runner, p, (u_k, h_k, n_k), extra)
        return torch.func.vmap(one_noisy)(params, u, h0, noise)

    def forward(self, u: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
        """States ``(member, batch, time, state)`` (see :meth:`run`)."""
        return self.run(u, h0)[0]

    def readout(self, h: torch.Tensor, heads: int | slice | None = None) -> torch.Tensor:
        """Readout of member k applied to ``h[k]`` (``h``: ``(member, ..., state)``)."""
        return torch.stack([m.readout(h[k], heads) for k, m in enumerate(self.members)])


class _Runner(nn.Module):
    """``model(u, h0[, noise])`` and its readout at every step: the one function vmapped."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.heads: int | None = 1

    def forward(self, u: torch.Tensor, h0: torch.Tensor, noise: torch.Tensor | None = None, **simulation):
        H = self.model(u, h0, **simulation) if noise is None else self.model(u, h0, noise=noise, **simulation)
        return H, self.model.readout(H, heads=self.heads)


def training_flops(model: nn.Module, batch: int, steps: int) -> int:
    """Floating-point operations of the matrix products of one training step (forward and
    backward through ``steps`` Euler steps on ``batch`` trials) of a rate network, counted as
    ``torch.utils.flop_counter`` counts them (2 per multiply-add; element-wise work is not counted).

    Forward, per Euler step: the recurrent product ``2 B N^2``, the input projection ``2 B N I``
    and the readout ``2 B N O`` (O outputs of the one head that trial tasks train). Backward: the recurrent product twice (gradients of the weights
    and of the state) except the state gradient of the first step (the initial state is not
    trained), the input projection once (the inputs need no gradient), the readout twice.

    Examples
    --------
    >>> import torch
    >>> from trainers.models import RateRNN
    >>> training_flops(RateRNN(4, input_dim=1, n_classes=2), batch=1, steps=1)   # 2 * (2*16 + 2*4 + 3*8)
    128
    """
    N, I = int(model.n_units), int(model.input_dim)
    O = int(model.heads.weight.shape[1])          # training reads out one head
    B, T = int(batch), int(steps)
    return 2 * B * ((3 * T - 1) * N * N + 2 * T * N * I + 3 * T * N * O)


def member_batch(batch: TrialBatch, k: int) -> TrialBatch:
    """Member k's trials out of a stacked batch (:func:`trainers.tasks.trials.stack_batches`)."""
    return TrialBatch(batch.inputs[k], batch.targets[k], batch.mask[k], batch.periods[k],
                      {name: v[k] for name, v in batch.info.items()})


def member_losses(task, outputs: torch.Tensor, batch: TrialBatch) -> torch.Tensor:
    """``(member,)``: each member's training loss on its own trials of a stacked batch. The
    masked MSE of trial tasks in one computation for all members; a task with its own ``loss``
    member by member."""
    from trainers.tasks.trials import PAD, TrialTask

    if type(task).loss is TrialTask.loss:
        y = outputs.squeeze(-2) if outputs.ndim == batch.targets.ndim + 1 else outputs
        valid = (batch.periods != PAD).sum((1, 2)) * batch.targets.shape[-1]
        return (batch.mask * (y - batch.targets) ** 2).sum((1, 2, 3)) / valid.clamp(min=1)
    return torch.stack([task.loss(outputs[k], member_batch(batch, k)) for k in range(outputs.shape[0])])


def member_performance(task, outputs: torch.Tensor, batch: TrialBatch) -> torch.Tensor:
    """``(member, trial)``: 1/0 per trial (``task.performance`` is per trial, so all members'
    trials are scored in one call)."""
    K, B = outputs.shape[:2]
    flat = TrialBatch(batch.inputs.flatten(0, 1), batch.targets.flatten(0, 1), batch.mask.flatten(0, 1),
                      batch.periods.flatten(0, 1), {n: v.flatten(0, 1) for n, v in batch.info.items()})
    return task.performance(outputs.flatten(0, 1), flat).reshape(K, B)


def _draws_noise(model: nn.Module) -> bool:
    return hasattr(model, "draw_noise") and float(getattr(model, "sigma", 0.0)) > 0


def draw_step(ensemble: Ensemble, task, batch: int, generators: Sequence[torch.Generator], device,
              dtype: torch.dtype, *, noise: bool) -> tuple[TrialBatch, list[int], torch.Tensor | None]:
    """One batch per member, each from its own stream (trials, then noise), stacked and padded to
    the longest: ``(stacked batch, each member's length, noise or None)``."""
    batches = [task.sample(batch, generator=g, device=device) for g in generators]
    lengths = [b.inputs.shape[1] for b in batches]
    draws = None
    if noise:
        T = max(lengths)
        draws = []
        for m, g, t in zip(ensemble.members, generators, lengths):
            z = m.draw_noise(batch, t, generator=g, device=device, dtype=dtype)
            draws.append(torch.nn.functional.pad(z, (0, 0, 0, T - t)))
        draws = torch.stack(draws)
    return stack_batches(batches), lengths, draws


def simulate_trials(ensemble: Ensemble, task, batch: TrialBatch, h0: torch.Tensor, noise: torch.Tensor | None = None,
                    *, simulation: Simulation | None = None,
                    strategic: float | None = None) -> tuple[torch.Tensor, TrialBatch]:
    """The readout of every member on a stacked batch, and the batch to score it against.

    Open-loop tasks run :meth:`Ensemble.run`; under CD with factor theta (002 Eq. 7) the readout
    has one step per theta and the returned batch is the trials at those steps
    (:func:`trainers.skip.coarse_batch`). Closed-loop tasks (``task.closed_loop``, e.g.
    rule-reversal) simulate their segments through ``task.rollout``, which feeds back the network's
    responses; CD's coarse states are held over the theta base steps they stand for, and
    ``strategic`` (a ratio below 1) mixes the state at every trial's end with its start (002
    Sec. 4.1). The skip windows of SCTT and DASC start afresh in every segment, as in the authors'
    code; CD's last coarse step of a segment is shortened to end with it. Returns ``(Y, batch)``:
    ``Y`` ``(member, batch, time, head, class)``."""
    sim = None if simulation is None or simulation.is_base else simulation
    if not getattr(task, "closed_loop", False):
        _, Y = ensemble.run(batch.inputs.to(h0.dtype), h0, noise, simulation=sim)
        return Y, (batch if sim is None or sim.coarse == 1 else coarse_batch(batch, sim.coarse))
    theta = 1 if sim is None else sim.coarse

    def run(h: torch.Tensor, start: int, stop: int, u_seg: torch.Tensor):
        n = None if noise is None else noise[..., start:stop, :]
        u_seg = u_seg.to(h.dtype)
        if theta == 1:
            return ensemble.run(u_seg, h, n, simulation=sim)
        # CD: coarse steps of theta dt, the last one shortened to the segment's end (r dt), each
        # state held over the base steps it covers
        full = (stop - start) // theta * theta
        Hs, Ys = [], []
        for a, b, factor in ((0, full, theta), (full, stop - start, stop - start - full)):
            if b > a:
                H, Y = ensemble.run(u_seg[..., a:b, :], h, None if n is None else n[..., a:b, :],
                                    simulation=Simulation("cd", theta=factor))
                h = H[..., -1, :]
                Hs.append(H.repeat_interleave(factor, dim=-2))
                Ys.append(Y.repeat_interleave(factor, dim=-3))
        return torch.cat(Hs, dim=-2), torch.cat(Ys, dim=-3)

    mix = None if strategic is None else (lambda h_end, h_start: torch.lerp(h_start, h_end, strategic))
    _, Y, inputs = task.rollout(run, batch, h0, mix=mix)
    return Y, replace(batch, inputs=inputs)


def simulated_steps(task, length: int, theta: int = 1) -> int:
    """Euler steps that :func:`simulate_trials` takes for a trial of ``length`` base steps under CD
    with factor ``theta``: ``ceil(length / theta)``, or that per segment of a closed-loop task."""
    if theta == 1:
        return int(length)
    if getattr(task, "closed_loop", False) and hasattr(task, "segments"):
        return sum(-(-(stop - start) // theta) for _, start, stop in task.segments())
    return -(-int(length) // theta)


def evaluate_members(ensemble: Ensemble, task, *, batch: int, batches: int,
                     generators: Sequence[torch.Generator], device) -> np.ndarray:
    """Fraction of correct trials of each member on ``batches`` fresh batches of its own stream,
    without private noise (evaluation mode): ``(member,)`` in [0, 1]."""
    dtype = next(ensemble.parameters()).dtype
    was = ensemble.training
    ensemble.eval()
    correct = torch.zeros(ensemble.size, device=device)
    try:
        with torch.no_grad():
            for _ in range(batches):
                sb, _, _ = draw_step(ensemble, task, batch, generators, device, dtype, noise=False)
                h0 = ensemble.initial_state(batch, generators=generators).to(dtype)
                Y, sb = simulate_trials(ensemble, task, sb, h0)
                correct += member_performance(task, Y, sb).sum(1)
    finally:
        ensemble.train(was)
    return (correct / (batch * batches)).cpu().numpy()


def clip_per_member(ensemble: Ensemble, max_norm: float) -> None:
    """Clip the gradient norm of each member separately, as K single runs with
    ``torch.nn.utils.clip_grad_norm_`` would (same formula: grads times
    ``min(1, max_norm / (norm + 1e-6))``), for all members at once."""
    names = [n for n, p in ensemble.members[0].named_parameters() if p.requires_grad]
    per_member = [dict(m.named_parameters()) for m in ensemble.members]
    grads = {n: [pm[n].grad for pm in per_member] for n in names}
    names = [n for n in names if all(g is not None for g in grads[n])]
    if not names:
        return
    norms = torch.stack([torch.linalg.vector_norm(torch.stack(grads[n]).flatten(1), dim=1) for n in names])
    total = torch.linalg.vector_norm(norms, dim=0)                       # (member,)
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for n in names:
        torch._foreach_mul_(grads[n], list(coef.unbind()))


def trial_epoch(ensemble: Ensemble, task, optimizer: torch.optim.Optimizer, cfg, generators, device, *,
                iteration: int, progress_bar=None, method: Method | None = None) -> tuple[dict[str, Any], int]:
    """``cfg.steps_per_epoch`` optimiser steps of every member; returns the per-step records
    (lists over steps of per-member values) and the new iteration count. ``method``: the
    training-time method of 002 Sec. 3 (:mod:`trainers.skip`) whose schedule names the simulation
    of each step (its ``theta`` and ``beta`` are recorded per step)."""
    dtype = next(ensemble.parameters()).dtype
    noise = any(_draws_noise(m) for m in ensemble.members)
    K = ensemble.size
    rec: dict[str, list] = {"loss": [], "performance": [], "flops": [], "wall_seconds": []}
    if method is not None and method.name != "none" or method is not None and method.strategic:
        rec.update(theta=[], beta=[])
    for _ in range(cfg.steps_per_epoch):
        t0 = time.perf_counter()
        sim = None if method is None else method.simulation(iteration)
        strategic = None if method is None else method.strategic_beta(iteration)
        sb, lengths, draws = draw_step(ensemble, task, cfg.batch, generators, device, dtype, noise=noise)
        h0 = ensemble.initial_state(cfg.batch, generators=generators).to(dtype)
        Y, sb = simulate_trials(ensemble, task, sb, h0, draws, simulation=sim, strategic=strategic)
        losses = member_losses(task, Y, sb)
        optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        if cfg.clip > 0:
            clip_per_member(ensemble, cfg.clip)
        if cfg.lr_milestones:
            decays = sum(iteration >= m for m in cfg.lr_milestones)
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr * cfg.lr_factor ** decays
        optimizer.step()
        iteration += 1
        with torch.no_grad():
            perf = member_performance(task, Y.detach(), sb).mean(1)
        rec["loss"].append(losses.detach().cpu().tolist())
        rec["performance"].append(perf.cpu().tolist())
        # each member's own trials (a single run's work); the batched step also computes the
        # padding up to the longest member's trials, which is not counted
        theta = 1 if sim is None else sim.coarse
        rec["flops"].append([training_flops(ensemble.members[0], cfg.batch, simulated_steps(task, t, theta))
                             for t in lengths])
        if "theta" in rec:
            rec["theta"].append(sim.theta)
            rec["beta"].append(sim.beta if sim.method in ("sctt", "dasc") else (strategic or 1.0))
        rec["wall_seconds"].append(time.perf_counter() - t0)
        if progress_bar is not None:
            progress_bar.update(1)
    return rec, iteration


def ensemble_metrics(history: Sequence[dict[str, Any]], stop_reason: str = "", config_json: str = "",
                     steps: Sequence[dict[str, Any]] | None = None):
    """The history of a trial-task run as an :class:`xarray.Dataset`: ``history`` has one
    entry per epoch (the lines of ``metrics.jsonl``), ``steps`` one per-step record per epoch
    (``Run.steps``, ``steps.jsonl``; default: ``history[i]["steps"]``).

    Over ``(member, step)``: ``loss``, ``performance`` (on each training batch, with noise) and
    ``flops`` (:func:`training_flops`); over ``step``: ``wall_seconds`` (one step of all members
    together), ``iteration`` and, for runs with a training method (:mod:`trainers.skip`), ``theta``
    and ``beta``; over ``(member, epoch)``: ``eval_performance`` (fresh trials, no
    noise); over ``epoch``: ``score`` (the stopping rule's 10-90 percentile mean) and
    ``epoch_step`` (the step each evaluation followed). Attrs: ``stop_reason``,
    ``steps_to_threshold`` (the step after which the rule was met; -1 if never), ``config``.
    """
    import xarray as xr

    if steps is None:                                  # records kept in the history entries
        steps = [h["steps"] for h in history]
    records = list(steps)
    loss = np.array([row for r in steps for row in r["loss"]], dtype=float)
    perf = np.array([row for r in steps for row in r["performance"]], dtype=float)
    flops = np.array([row for r in steps for row in r["flops"]], dtype=float)
    wall = np.array([w for r in steps for w in r["wall_seconds"]], dtype=float)
    K = loss.shape[1] if loss.ndim == 2 else 0
    steps = np.arange(1, loss.shape[0] + 1)
    evals = np.array([h["members_performance"] for h in history], dtype=float).reshape(len(history), K)
    epoch_step = np.array([int(h["iteration"]) for h in history])
    score = np.array([float(h["mean_performance"]) for h in history])
    solved = [h["iteration"] for h in history if h.get("solved")]
    ds = xr.Dataset(
        {"loss": (("member", "step"), loss.T), "performance": (("member", "step"), perf.T),
         "flops": (("member", "step"), flops.T), "wall_seconds": ("step", wall),
         "eval_performance": (("member", "epoch"), evals.T), "score": ("epoch", score),
         "epoch_step": ("epoch", epoch_step)},
        coords={"member": np.arange(K), "step": steps, "epoch": np.arange(1, len(history) + 1)},
        attrs={"stop_reason": stop_reason, "steps_to_threshold": int(solved[0]) if solved else -1,
               "config": config_json, "metric": "performance"})
    if all("theta" in r for r in records):            # a training method's schedule (002 Sec. 4)
        ds["theta"] = ("step", np.array([v for r in records for v in r["theta"]], dtype=int))
        ds["beta"] = ("step", np.array([v for r in records for v in r["beta"]], dtype=float))
        ds["theta"].attrs["description"] = "skip length (SCTT, DASC) or discretization factor (CD) of the step"
        ds["beta"].attrs["description"] = "mixing ratio of the step's skip connections (1: none)"
    ds["flops"].attrs["description"] = "matrix-product FLOPs of the training step (forward + backward)"
    ds["wall_seconds"].attrs["units"] = "s"
    return ds


__all__ = ["Ensemble", "training_flops", "ensemble_metrics", "evaluate_members", "member_batch",
           "member_losses", "member_performance", "simulate_trials", "simulated_steps",
           "trial_epoch", "draw_step", "clip_per_member"]
