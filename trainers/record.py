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
from typing import Any, Literal, Sequence

import numpy as np
import torch
import xarray as xr

import dynatools
from dynatools.recording import RecordingWriter, from_array
from dynatools.threads import step_work, torch_threads
from dynatools.utils import check_positive_int
from trainers.registry import build
from trainers.tasks import TASKS
from trainers.tasks.binary import check_Ns


def record(model: torch.nn.Module, task: Any = "parity", *, Ns: Sequence[int] | None = None,
           steps: int = 100_000, trials: int = 10, burn_in: int = 500, out: str | os.PathLike | None = None,
           chunk: int = 2000, outputs: bool = True,
           p: float | Sequence[float] | np.ndarray | Literal["uniform"] | None = None, seed: int | None = None,
           device: str | torch.device | None = None, attrs: dict[str, Any] | None = None,
           progress: bool = False) -> xr.Dataset:
    """Simulate ``model`` on random bits and return (or write) a labeled recording.

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
    steps : int, default=100_000
        Recorded time steps per trial.
    trials : int, default=10
        Independent input sequences, simulated together.
    burn_in : int, default=500
        Steps simulated and discarded first (from the initial state ``model.initial_state``).
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

    Returns
    -------
    xarray.Dataset
        A recording that passes :func:`dynatools.validate`: ``activity`` (trial, time, unit)
        float32, ``input`` (trial, time, input_dim), ``tau`` as a unit coordinate (leaky RNN),
        weights ``W_rec``, ``W_in``, ``W_out``, ``bias``, heads labeled by their ``N``.

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
    """
    steps = check_positive_int("steps", steps)
    trials = check_positive_int("trials", trials)
    burn_in = check_positive_int("burn_in", burn_in, minimum=0)
    chunk = check_positive_int("chunk", chunk)
    if isinstance(task, str):
        task = build(TASKS, task, TASKS.resolve_options(task, {}))
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
    fields: dict[str, Any] = {}
    if hasattr(model, "recording_weights"):
        fields.update(model.recording_weights())
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
