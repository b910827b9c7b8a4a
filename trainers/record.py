"""Record a trained network's activity as a labeled dynatools recording (schema 1).

Timescale paper, Sec. 2: the network is driven by uncorrelated binary inputs "sampled at each time
step from a Bernoulli distribution", one bit per step (held for k steps with input rescaling,
App. E), for T = 1e5 steps in each of 10 trials; the activity of every unit goes into ``activity``
(trial, time, unit) for the autocorrelation analysis. The paper does not state the Bernoulli
probability. The authors' code draws it per trial, p ~ U(0, 1), once for each input sequence:
``generate_binary_sequence`` in ``analysis/timescales/timescales_utils.py`` of
github.com/LevinaLab/rnn_timescale_public, which ``comp_acs`` uses to simulate the networks whose
timescales it fits (their training generator, ``src/tasks/tasks.py``, does the same for parity and
uses p = 0.5 for DMS). ``record(p="uniform")`` reproduces that protocol. It matters: on the authors'
cumulative N = 2..11 parity network (10 trials) the median tau_net over units is 0.28-0.30 steps at
p = 0.5 and 0.5-1.2 steps with p drawn per trial, depending on the p's drawn.
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import replace
from typing import Any, Literal, Sequence

import numpy as np
import torch
import xarray as xr

import dynatools
from dynatools.recording import PAD as DS_PAD
from dynatools.recording import RecordingWriter, from_array
from dynatools.threads import step_work, torch_threads
from dynatools.utils import check_positive_int
from trainers.registry import build
from trainers.tasks import TASKS
from trainers.tasks.binary import check_Ns
from trainers.tasks.trials import PERIODS, pad_batch


def record(model: torch.nn.Module, task: Any = "parity", *, Ns: Sequence[int] | None = None,
           steps: int | None = None, trials: int = 10, burn_in: int | None = None,
           out: str | os.PathLike | None = None, chunk: int = 2000, outputs: bool = True,
           p: float | Sequence[float] | np.ndarray | Literal["uniform"] | None = None, seed: int | None = None,
           device: str | torch.device | None = None, attrs: dict[str, Any] | None = None,
           progress: bool = False, noise: bool = False) -> xr.Dataset:
    """Simulate ``model`` on random bits (or on a trial task's trials) and return (or write) a
    labeled recording.

    Trial tasks (``task.time_resolved``: the cognitive tasks, ``mtwm``, ``intwm``) and ensembles
    (:class:`trainers.ensemble.Ensemble`) are recorded trial by trial: see "Trial tasks and
    ensembles" below; the parameters there differ (``steps``, ``burn_in``, ``noise``).

    Parameters
    ----------
    model : torch.nn.Module
        A trainers model (``LeakyRNN``, ``GRU``, ``LSTM``) or any module with the protocol's
        ``forward``, ``initial_state`` and ``readout``.
    task : task object or name of :data:`trainers.TASKS`, default="parity"
        Its ``recording_stream`` drives the network: for parity/DMS random bits with the task's
        encoding and rescaling k (and the labels in ``target``); for the sequence tasks their
        input sequences one after another.
    Ns : sequence of int, optional
        Task sizes answered by heads ``0..len(Ns)-1`` (``output``, ``target``, ``W_out``).
        Default: no outputs, and ``W_out`` of every head.
    steps : int, optional
        Recorded time steps per trial; default 100_000 (trial tasks: below).
    trials : int, default=10
        Independent input sequences, simulated together.
    burn_in : int, optional
        Steps simulated and discarded first (from the initial state ``model.initial_state``);
        default 500. Trial tasks take none (below).
    out : path-like, optional
        Stream the recording to this netCDF4 file in time chunks (never holding the whole
        activity in memory) and return it opened lazily. Default: build it in memory.
    chunk : int, default=2000
        Time steps simulated (and written) at once.
    outputs : bool, default=True
        With ``Ns``: store ``output`` (predicted class of each head at every step) and
        ``target`` (the task's label at every step), both int8 (trial, time, head).
    p : float, array_like of float, or "uniform", optional
        Tasks with random-bit inputs (parity, DMS): probability of a 1 in the input bits (i.i.d.
        Bernoulli(p) within a trial); default 0.5. Other tasks take no p.

        - a float in [0, 1]: the same p for every trial;
        - one value in [0, 1] per trial, shape ``(trials,)``;
        - ``"uniform"``: p ~ U(0, 1) drawn independently for each trial from the seeded
          generator. This is the authors' protocol for their timescale analysis (see the module
          docstring); it gives much longer tau_net than p = 0.5.

        Stored as the attribute ``input_p`` (the float, ``"uniform"``, or ``"per-trial"`` for an
        array) and, always, as the coordinate ``input_p`` on ``trial`` (the p of each trial).
    seed : int, optional
        Seeds p (with ``"uniform"``), the bits and the initial state; stored in the attrs.
        Default: a random seed. One ``torch.Generator`` seeded with ``seed`` draws, in this
        order: with ``p="uniform"``, ``torch.rand(trials)`` for p; the bits,
        ``torch.rand(trials, n_bits) < p`` with ``n_bits = ceil((burn_in + steps) / k)``; then
        the initial state, ``model.initial_state(trials, generator=...)``. A float or per-trial p
        draws nothing, so it changes only the comparison, not the random numbers.
    device : optional
        Default: the model's device.
    attrs : dict, optional
        Extra global attributes (e.g. ``curriculum``, ``accuracy``, ``config``).
    progress : bool, default=False
        Show a progress bar over time chunks.
    noise : bool, default=False
        Trial tasks only: simulate with the network's private noise (below).

    Returns
    -------
    xarray.Dataset
        A recording that passes :func:`dynatools.validate`: ``activity`` (trial, time, unit)
        float32, ``input`` (trial, time, input_dim), ``tau`` as a unit coordinate (leaky RNN),
        the model's other per-unit labels from ``unit_coords()`` (e.g. ``module`` of a
        :class:`~trainers.models.ModularRNN`, on every task), weights ``W_rec``, ``W_in``,
        ``W_out``, ``bias``, heads labeled by their ``N``.

    Examples
    --------
    >>> import torch, trainers
    >>> net = trainers.LeakyRNN(6, n_heads=2, generator=torch.Generator().manual_seed(0))
    >>> rec = trainers.record(net, "parity", Ns=[2, 3], steps=50, trials=2, burn_in=10, seed=0)
    >>> rec.activity.shape, rec.output.dims
    ((2, 50, 6), ('trial', 'time', 'head'))

    The authors' input protocol, p ~ U(0, 1) per trial:

    >>> rec = trainers.record(net, steps=50, trials=3, burn_in=10, p="uniform", seed=0)
    >>> rec.attrs["input_p"], rec.input_p.dims
    ('uniform', ('trial',))

    Trial tasks and ensembles
    -------------------------
    For a task with ``time_resolved = True`` ``record`` draws ``trials`` trials with
    ``task.recording_stream(trials, steps, generator=...)`` and simulates each from the network's
    initial state at the trial's first step (no burn-in: ``burn_in`` must be unset or 0; ``p`` and
    ``Ns`` must be unset: the task draws its own trials and has one readout head).

    - ``activity`` (trial, time, unit) holds the **firing rates** ``model.rates(h)``: the state
      itself in the rate form (002), ``f(x)`` of the currents in the current form (001). Rates are
      what the network's units send to each other and to the readout, and what the timescale
      analysis of 002 (autocorrelation of single-unit activity) reads; the attribute
      ``activity.attrs["description"]`` says which. Sample ``t`` is the state after the Euler step
      driven by ``input[:, t]``.
    - ``steps``: None (default) keeps the trials' natural lengths; the time axis is as long as the
      longest trial, and shorter trials are padded at the end by the schema's rule (``activity``,
      ``input``, ``output`` NaN after ``trial_length``; ``period`` ``"pad"`` there). A number pads
      every trial to that length or cuts longer ones (``trial_length`` = the kept steps).
    - time in seconds: ``time = arange(T) * dt`` with ``dt = model.dt / 1000`` (``time_units="s"``,
      attribute ``dt`` in s), ``tau`` in s; ``population``, ``sign`` and ``tau`` per unit from
      ``model.unit_coords()``. A model without ``dt`` is recorded in steps.
    - ``period`` (trial, time): the task's period names (:data:`trainers.tasks.trials.PERIODS`)
      and ``"pad"``; ``trial_length`` (trial,); 1-D entries of the trials' ``info`` (e.g. the
      target direction) as coordinates ``info_<name>`` on ``trial``.
    - with ``outputs=True``: ``output`` (trial, time, head, class), the readout
      ``g(W_out r)`` of every step, and the task's target and cost mask as ``task_target`` and
      ``task_mask`` (same dims; the schema's ``target`` has no ``class`` dim), NaN on padding.
    - ``noise=False`` (default): evaluation mode, no private noise, as the task's performance
      is measured. ``noise=True`` simulates in training mode with the network's private noise
      (needs ``sigma > 0``); the standard-normal draws come from the seeded generator after the
      trials and the initial state, ``model.draw_noise(trials, T, generator=...)``.
    - an :class:`~trainers.ensemble.Ensemble` of K networks writes one recording with a leading
      ``member`` dim (``activity`` (member, trial, time, unit), ``output`` (member, ...),
      weights ``W_rec`` (member, unit, unit_pre), ...; ``tau``, ``population``, ``sign`` per
      (member, unit) where the members differ). The members run together
      (:meth:`Ensemble.run`) on the same trials; each member's initial state and noise draws come
      from its own copy of the generator (state after the trials), so the members also share the
      noise draws and member k's part equals ``record(ensemble.members[k], ...)`` with the same
      seed.
    - closed-loop tasks (``task.closed_loop``, e.g. ``rule-reversal``), whose feedback inputs
      depend on the network's own answers, are simulated through ``task.rollout`` with the plain
      network (no skip connections): ``input`` holds the realised inputs, feedback included
      (``(member, trial, time, input_dim)`` for an ensemble: each member gets the feedback on its
      own answers), and ``period`` the task's ``period_names`` (``"feedback"``). Whole sequences
      are simulated, then padded or cut to ``steps``. With ``noise=True`` the draws are sliced
      per segment as in training (OU noise restarts at every segment).
    - the recording is built in memory (``chunk`` and ``progress`` are not used); ``out``
      writes it atomically (:func:`dynatools.save_recording`) and returns it opened lazily.

    >>> net = trainers.RateRNN(8, input_dim=65, n_classes=33, generator=torch.Generator().manual_seed(0))
    >>> rec = trainers.record(net, "go", trials=3, seed=0)
    >>> rec.activity.dims, rec.time.attrs["units"], rec.attrs["dt"]
    (('trial', 'time', 'unit'), 's', 0.005)
    >>> sorted(set(rec.period.values.ravel().tolist()) - {"pad"})
    ['fixation', 'response', 'stimulus']
    """
    if isinstance(task, str):
        task = build(TASKS, task, TASKS.resolve_options(task, {}))
    if getattr(task, "time_resolved", False):
        return _record_trials(model, task, Ns=Ns, steps=steps, trials=trials, burn_in=burn_in, out=out,
                              chunk=chunk, outputs=outputs, p=p, seed=seed, device=device, attrs=attrs,
                              noise=noise)
    if _is_ensemble(model):
        raise ValueError(f"an Ensemble is recorded on trial tasks (time_resolved); task {task.name!r} is not "
                         f"one: record one member, record(ensemble.members[k], ...).")
    if noise:
        raise ValueError(f"noise=True applies to trial tasks; task {task.name!r} is not one: leave noise unset.")
    steps = 100_000 if steps is None else steps
    burn_in = 500 if burn_in is None else burn_in
    steps = check_positive_int("steps", steps)
    trials = check_positive_int("trials", trials)
    burn_in = check_positive_int("burn_in", burn_in, minimum=0)
    chunk = check_positive_int("chunk", chunk)
    if not hasattr(task, "recording_stream"):
        raise TypeError(f"task {getattr(task, 'name', task)!r} has no recording_stream(trials, steps, *, p, "
                        f"generator, device): record needs it to drive the network (trainers.protocols.Task).")
    bits = bool(getattr(task, "bit_inputs", False))
    if p is not None and not bits:
        raise ValueError(f"p sets the probability of a 1 in random-bit inputs; task {task.name!r} has none: "
                         f"leave p unset.")
    p_attr, p_trials = _check_p(0.5 if p is None else p, trials) if bits else (None, None)
    k = int(getattr(task, "k", 1))
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1)[0])
    Ns = check_Ns(Ns) if Ns is not None else None
    n_heads = getattr(model, "n_heads", None)
    if n_heads is None and hasattr(model, "heads"):
        n_heads = getattr(model.heads, "n_heads", None)
    if Ns is not None and n_heads is not None and len(Ns) > n_heads:
        raise ValueError(f"{len(Ns)} Ns but the model has only {n_heads} readout heads.")
    if Ns is not None and outputs and burn_in < max(Ns) * k:      # labels need N bits of history
        raise ValueError(f"burn_in={burn_in} is shorter than max(Ns) * k = {max(Ns) * k} "
                         f"steps: the first labels would be undefined; raise burn_in.")
    if Ns is not None and not getattr(task, "uses_N", True):
        raise ValueError(f"Ns labels heads by task size N; task {task.name!r} has none: leave Ns unset.")
    dev = next(model.parameters()).device if device is None else torch.device(device)
    gen = torch.Generator(device=dev).manual_seed(seed)
    p_bits: float | torch.Tensor | None = None
    if bits and p_trials is None:                           # "uniform": the first draw (see seed)
        p_draw = torch.rand(trials, generator=gen, device=dev)
        p_trials = p_draw.cpu().numpy().astype(np.float64)
        p_bits = p_draw[:, None]
    elif bits and isinstance(p_attr, float):
        p_bits = p_attr
    elif bits:
        p_bits = torch.as_tensor(p_trials, dtype=torch.float32, device=dev)[:, None]

    n_units = int(getattr(model, "n_units"))
    input_dim = int(getattr(model, "input_dim", 1))
    static = _static_fields(model, Ns)
    if bits:
        static.setdefault("coords", {})["input_p"] = ("trial", p_trials)
    meta = {
        "model": getattr(model, "name", None) or type(model).__name__,    # the registry name
        "task": task.name, "k": k, "input_p": p_attr, "seed": seed, "burn_in": burn_in,
        "N": list(Ns) if Ns is not None else None,
        "model_config": model.config() if hasattr(model, "config") else None,
        "software": f"dynatools {dynatools.__version__} (trainers)",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    meta.update(attrs or {})
    head_outputs = Ns is not None and outputs
    streamed = {"input": (("trial", "time", "input_dim"), "float32")}
    if head_outputs:
        streamed["output"] = (("trial", "time", "head"), "int8")
        streamed["target"] = (("trial", "time", "head"), "int8")

    if out is not None:
        sink: Any = RecordingWriter(out, n_trials=trials, n_time=steps, n_units=n_units,
                                    streamed=streamed, sizes={"input_dim": input_dim,
                                                              "head": len(Ns) if Ns else 1},
                                    **static, **meta)
    else:
        sink = _MemorySink(trials, steps, n_units, input_dim, len(Ns) if head_outputs else 0)
    try:
        _simulate(model, task, Ns if head_outputs else None, steps, trials, burn_in, chunk, p_bits,
                  gen, dev, sink, progress)
    except BaseException:
        if out is not None:
            sink.abort()
        raise
    if out is not None:
        sink.close()
        return dynatools.open_recording(out)
    return from_array(sink.activity, **sink.variables(), **static, **meta)


_P_OPTIONS = ("uniform",)


def _check_p(p: Any, trials: int) -> tuple[float | str, np.ndarray | None]:
    """Check ``record``'s ``p``; return the ``input_p`` attribute and the per-trial values
    (``None`` for "uniform": they are drawn later, from the record's generator)."""
    expected = 'a probability in [0, 1], one per trial (shape (trials,)), or "uniform"'
    if isinstance(p, str):
        if p not in _P_OPTIONS:
            raise ValueError(f"p={p!r} is not a valid option; expected {expected} "
                             f"(string options: {', '.join(map(repr, _P_OPTIONS))}).")
        return p, None
    if p is None or isinstance(p, (bool, np.bool_)):
        raise TypeError(f"p must be {expected}; found {p!r}.")
    try:
        values = np.asarray(p, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"p must be {expected}; found {type(p).__name__} {p!r}.") from None
    if values.ndim == 0:
        value = float(values)
        if not 0.0 <= value <= 1.0:                                        # also catches NaN
            raise ValueError(f"p must be a probability in [0, 1]; found {value}.")
        return value, np.full(trials, value)
    if values.shape != (trials,):
        raise ValueError(f"p has shape {values.shape}; expected ({trials},), one probability per "
                         f"trial (trials={trials}), a single float, or \"uniform\".")
    bad = np.flatnonzero(~((values >= 0.0) & (values <= 1.0)))
    if bad.size:
        raise ValueError(f"p must hold probabilities in [0, 1]; found {values[bad[0]]} for trial "
                         f"{bad[0]} ({bad.size} of {trials} trials out of range or NaN).")
    return "per-trial", values.copy()


def _static_fields(model: torch.nn.Module, Ns: Sequence[int] | None) -> dict[str, Any]:
    """Weights, per-unit coordinates and head labels of a random-bit recording (time in steps).

    Per-unit coordinates come from ``model.unit_coords()`` when the model has it (e.g.
    ``module`` of a :class:`~trainers.models.ModularRNN`, 004 Fig. 4-5), as on the trial-task
    path; ``tau`` is ``effective_tau()`` when the model has it (the timescales the dynamics use,
    in the model's own units, as before), else ``unit_coords()``'s ``tau``."""
    fields: dict[str, Any] = {}
    if hasattr(model, "recording_weights"):
        fields.update(model.recording_weights())
    if hasattr(model, "unit_coords"):
        fields.update(model.unit_coords())
    if hasattr(model, "effective_tau"):
        with torch.no_grad():
            fields["tau"] = model.effective_tau().cpu().numpy()
    if Ns is not None and "W_out" in fields:
        fields["W_out"] = fields["W_out"][: len(Ns)]
    if Ns is not None:
        fields["coords"] = {"head": ("head", np.arange(len(Ns))), "N": ("head", np.asarray(Ns))}
    return fields


class _MemorySink:
    def __init__(self, trials, steps, n_units, input_dim, n_heads):
        self.activity = np.empty((trials, steps, n_units), dtype=np.float32)
        self.arrays = {"input": np.empty((trials, steps, input_dim), dtype=np.float32)}
        if n_heads:
            self.arrays["output"] = np.empty((trials, steps, n_heads), dtype=np.int8)
            self.arrays["target"] = np.empty((trials, steps, n_heads), dtype=np.int8)

    def write(self, name, start, values):
        target = self.activity if name == "activity" else self.arrays[name]
        target[:, start:start + values.shape[1]] = values

    def variables(self):
        return dict(self.arrays)


def _simulate(model, task, Ns, steps, trials, burn_in, chunk, p, gen, dev, sink, progress):
    from tqdm.auto import tqdm

    total = burn_in + steps
    inputs, labels = task.recording_stream(trials, total, p=p, generator=gen, device=dev)
    inputs = inputs.to(next(model.parameters()).dtype)
    # a loop of small steps: one thread unless the network is large (dynatools.threads)
    with torch.no_grad(), torch_threads(work=step_work(model, trials)):
        h = model.initial_state(trials, generator=gen)
        t = 0
        bar = tqdm(total=total, desc="record", unit="step", disable=not progress)
        while t < total:
            stop = min(total, t + chunk, burn_in if t < burn_in else total)
            H = model(inputs[:, t:stop], h)
            h = H[:, -1]
            if stop > burn_in:
                lo = max(t, burn_in)
                part = H[:, lo - t:]
                hidden = model.hidden(part) if hasattr(model, "hidden") else part
                sink.write("activity", lo - burn_in, hidden.float().cpu().numpy())
                sink.write("input", lo - burn_in, inputs[:, lo:stop].cpu().numpy())
                if Ns is not None:
                    pred = model.readout(hidden, heads=len(Ns)).argmax(-1)
                    sink.write("output", lo - burn_in, pred.to(torch.int8).cpu().numpy())
                    target = labels(Ns, torch.arange(lo, stop, device=dev)).to(torch.int8)
                    sink.write("target", lo - burn_in, target.cpu().numpy())
            bar.update(stop - t)
            t = stop
        bar.close()


# ---------------------------------------------------------------------- trial tasks and ensembles
def _is_ensemble(model: Any) -> bool:
    from trainers.ensemble import Ensemble

    return isinstance(model, Ensemble)


def _rates(model: torch.nn.Module, H: torch.Tensor) -> torch.Tensor:
    """What ``activity`` holds: the firing rates (``rates``), else the model's ``hidden`` part of
    its state, else the state."""
    if hasattr(model, "rates"):
        return model.rates(H)
    return model.hidden(H) if hasattr(model, "hidden") else H


def _activity_description(model: torch.nn.Module) -> str:
    form = getattr(model, "form", None)
    if form == "rate":
        return "firing rates r (the state of the rate form, 002 Eq. 1)"
    if form == "current":
        return f"firing rates f(x) = {model.activation}(x) of the currents x (current form, 001)"
    return "firing rates" if hasattr(model, "rates") else "hidden state"


def _per_member(values: Sequence[np.ndarray]) -> np.ndarray:
    """One member's values if every member has the same, else the stack ``(member, ...)``."""
    first = np.asarray(values[0])
    if all(np.array_equal(first, np.asarray(v)) for v in values[1:]):
        return first
    return np.stack([np.asarray(v) for v in values])


def _closed_loop(model, task, batch, h0, noise):
    """A closed-loop task's sequences (``task.closed_loop``) through ``task.rollout``: the plain
    network in its current mode, its own answers fed back, no skip connections (as
    :func:`trainers.ensemble.simulate_trials` without a simulation method). ``h0`` ``(batch,
    state)``, or ``(member, batch, state)`` for an Ensemble; ``noise``: standard-normal draws of
    the whole sequence (sliced per segment) or None. Returns ``H`` ``(..., batch, T, state)``,
    ``Y`` ``(..., batch, T, 1, class)`` and the realised inputs ``(..., batch, T, input_dim)``."""
    ensemble = _is_ensemble(model)
    dtype = h0.dtype

    def run(h, start, stop, u_seg):
        n = None if noise is None else noise[..., start:stop, :]
        u_seg = u_seg.to(dtype)
        if ensemble:
            return model.run(u_seg, h, n, heads=1)
        H = model(u_seg, h) if n is None else model(u_seg, h, noise=n)
        return H, model.readout(H, heads=1)

    H, Y, inputs = task.rollout(run, batch, h0)
    return H, Y.unsqueeze(-2), inputs


def _pad_or_cut(steps, H, Y, u, batch):
    """``H`` ``(..., T, state)``, ``Y`` ``(..., T, head, class)``, ``u`` ``(..., T, input)`` and
    the batch padded (zeros; the batch by :func:`~trainers.tasks.trials.pad_batch`) or cut to
    ``steps``, as ``recording_stream`` pads or cuts open-loop trials."""
    T = H.shape[-2]
    if steps < T:
        return (H[..., :steps, :], Y[..., :steps, :, :], u[..., :steps, :],
                replace(batch, inputs=batch.inputs[:, :steps], targets=batch.targets[:, :steps],
                        mask=batch.mask[:, :steps], periods=batch.periods[:, :steps]))
    extra = steps - T

    def pad(x, dim):
        return torch.cat([x, x.new_zeros((*x.shape[:dim], extra, *x.shape[dim + 1:]))], dim=dim)

    return pad(H, H.ndim - 2), pad(Y, Y.ndim - 3), pad(u, u.ndim - 2), pad_batch(batch, steps)


def _record_trials(model, task, *, Ns, steps, trials, burn_in, out, chunk, outputs, p, seed, device, attrs,
                   noise) -> xr.Dataset:
    """``record`` for trial tasks (``task.time_resolved``), one network or an ensemble."""
    name = task.name
    trials = check_positive_int("trials", trials)
    check_positive_int("chunk", chunk)
    if steps is not None:
        steps = check_positive_int("steps", steps)
    if p is not None:
        raise ValueError(f"p sets the probability of a 1 in random-bit inputs; trial task {name!r} draws its "
                         f"own trials: leave p unset.")
    if Ns is not None:
        raise ValueError(f"Ns labels readout heads by task size N; trial task {name!r} has one head and no N: "
                         f"leave Ns unset.")
    if burn_in not in (None, 0):
        raise ValueError(f"burn_in={burn_in!r}: each trial of {name!r} starts from the network's initial state "
                         f"at its first step, nothing is discarded; leave burn_in unset.")
    if not isinstance(noise, (bool, np.bool_)):
        raise TypeError(f"noise must be True or False; found {noise!r}.")
    ensemble = _is_ensemble(model)
    members = list(model.members) if ensemble else [model]
    first = members[0]
    if noise and not all(hasattr(m, "draw_noise") and float(getattr(m, "sigma", 0.0)) > 0 for m in members):
        raise ValueError(f"noise=True, but the network has no private noise (sigma={getattr(first, 'sigma', 0)}); "
                         f"leave noise unset.")
    dt_ms = getattr(first, "dt", None)
    task_dt = getattr(task, "dt", None)
    if dt_ms is not None and task_dt is not None and not np.isclose(float(dt_ms), float(task_dt)):
        raise ValueError(f"the network steps dt={dt_ms:g} ms but task {name!r} has dt={task_dt:g} ms: its "
                         f"periods would have the wrong lengths; build the task with dt={dt_ms:g}.")
    input_dim = int(getattr(first, "input_dim", task.input_dim))
    if input_dim != int(task.input_dim):
        raise ValueError(f"the network takes {input_dim} inputs but task {name!r} gives {task.input_dim}; record "
                         f"it on the task it was trained on.")
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1)[0])
    dev = next(model.parameters()).device if device is None else torch.device(device)
    dtype = next(model.parameters()).dtype
    gen = torch.Generator(device=dev).manual_seed(seed)
    closed = bool(getattr(task, "closed_loop", False))
    # a closed-loop task feeds back the answers of whole sequences: simulate them, then pad or cut
    u, batch = task.recording_stream(trials, None if closed else steps, generator=gen, device=dev)
    u = u.to(dtype)
    T = int(u.shape[1])
    state = gen.get_state()
    gens = []
    for _ in members:                                         # every member: the same stream after the trials
        g = torch.Generator(device=dev)
        g.set_state(state)
        gens.append(g)
    was_training = model.training
    model.train(bool(noise))
    try:
        with torch.no_grad(), torch_threads(work=len(members) * step_work(first, trials)):
            h0 = [m.initial_state(trials, generator=g).to(device=dev, dtype=dtype) for m, g in zip(members, gens)]
            draws = ([m.draw_noise(trials, T, generator=g, device=dev, dtype=dtype) for m, g in zip(members, gens)]
                     if noise else None)
            if closed:
                H, Y, u = _closed_loop(model, task, replace(batch, inputs=u), torch.stack(h0) if ensemble else h0[0],
                                       None if draws is None else (torch.stack(draws) if ensemble else draws[0]))
                if steps is not None:
                    H, Y, u, batch = _pad_or_cut(steps, H, Y, u, batch)
                    T = steps
                R = (torch.stack([_rates(m, H[k]) for k, m in enumerate(members)]) if ensemble
                     else _rates(model, H))
            elif ensemble:
                H, Y = model.run(u.expand(len(members), *u.shape), torch.stack(h0),
                                 None if draws is None else torch.stack(draws), heads=1)
                R = torch.stack([_rates(m, H[k]) for k, m in enumerate(members)])
            else:
                H = model(u, h0[0]) if draws is None else model(u, h0[0], noise=draws[0])
                Y = model.readout(H, heads=1)
                R = _rates(model, H)
    finally:
        model.train(was_training)

    lengths = batch.lengths.cpu().numpy().astype(np.int64)
    names = tuple(getattr(task, "period_names", PERIODS))
    codes = batch.periods.cpu().numpy()
    period = np.asarray(names + (DS_PAD,))[codes]             # PAD = -1 picks the last name, "pad"

    fields: dict[str, Any] = {}
    weights = [m.recording_weights() for m in members] if hasattr(first, "recording_weights") else []
    for key in (weights[0] if weights else {}):
        fields[key] = np.stack([w[key] for w in weights]) if ensemble else weights[0][key]
    if hasattr(first, "unit_coords"):
        coords = [m.unit_coords() for m in members]
        for key in coords[0]:
            fields[key] = _per_member([c[key] for c in coords])
    elif hasattr(first, "effective_tau"):
        fields["tau"] = _per_member([m.effective_tau().detach().cpu().numpy() for m in members])
    if "W_out" in fields:
        fields["W_out"] = fields["W_out"][..., :1, :, :]      # the one head the task reads
    seconds = dt_ms is not None
    meta = {
        "model": getattr(first, "name", None) or type(first).__name__,
        "task": name, "seed": seed, "noise": bool(noise),
        "steps": "natural" if steps is None else steps,
        "model_config": model.config() if hasattr(model, "config") else None,
        "task_config": task.config() if hasattr(task, "config") else None,
        "software": f"dynatools {dynatools.__version__} (trainers)",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if ensemble:
        meta["members"] = len(members)
    if seconds:
        meta["dt_ms"] = float(dt_ms)
    meta.update(attrs or {})
    activity = R.float().cpu().numpy()
    if outputs:
        fields["output"] = Y.float().cpu().numpy()
    rec = from_array(activity, dt=float(dt_ms) / 1000.0 if seconds else 1.0,
                     time_units="s" if seconds else "step",
                     dims=("member", "trial", "time", "unit") if ensemble else ("trial", "time", "unit"),
                     input=u.float().cpu().numpy(), trial_length=lengths, period=period, **fields, **meta)
    rec["activity"].attrs["description"] = _activity_description(first)
    pad = xr.DataArray(np.arange(T)[None, :] >= lengths[:, None], dims=("trial", "time"))
    if outputs:
        dims4 = ("trial", "time", "head", "class")
        for var, values in (("task_target", batch.targets), ("task_mask", batch.mask)):
            arr = values.float().cpu().numpy()[:, :, None, :]
            rec[var] = xr.DataArray(arr, dims=dims4).where(~pad).transpose(*dims4)
        rec["output"].attrs["description"] = "readout g(W_out r) at every step (head, class = output channel)"
        rec["task_target"].attrs["description"] = "the task's target output at every step"
        rec["task_mask"].attrs["description"] = "the task's cost weight of every target entry"
    for key, value in batch.info.items():
        value = value.detach().cpu().numpy()
        if value.shape == (trials,):
            rec = rec.assign_coords({f"info_{key}": ("trial", value.astype(np.int8) if value.dtype == bool
                                                    else value)})
    dynatools.validate(rec)
    if out is not None:
        dynatools.save_recording(rec, out)
        return dynatools.open_recording(out)
    return rec
