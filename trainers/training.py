"""The training loop: curricula over N, checkpoints every epoch and per solved N, exact resume.

Timescale paper, Sec. 3.2: back-propagation through time, cross-entropy on the last step summed
over the active heads, SGD with Nesterov momentum (Adam for GRU/LSTM, App. C); the curriculum
advances when the active heads are solved (:mod:`trainers.curricula`).

Run directory layout::

    RUN_DIR/config.json              the resolved TrainConfig
    RUN_DIR/metrics.jsonl            one JSON line per epoch (loss, accuracy per N, tau, speed)
    RUN_DIR/checkpoints/latest.pt    after every epoch: weights, optimizer, RNG, history
    RUN_DIR/checkpoints/N011.pt      when the heads whose largest N is 11 were solved (kept)
"""

from __future__ import annotations

import copy

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from dynatools._validation import nonfinite_names
from trainers.checkpoint import (
    CheckpointError,
    atomic_write_text,
    build_model,
    read_checkpoint,
    save_checkpoint,
)
from trainers.config import TrainConfig

LATEST = "latest.pt"


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"auto"``/None -> CUDA when available, else CPU; ``"cuda"`` without a GPU is an error."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was requested but PyTorch sees no CUDA device; use "
                         "device='auto' or 'cpu'.")
    return dev


def solved_checkpoint_name(Ns: Sequence[int]) -> str:
    """File name of the checkpoint kept when the heads ``Ns`` are solved: ``N{max:03d}.pt``."""
    return f"N{max(Ns):03d}.pt"


@dataclass
class Run:
    """A training run: its configuration, network, history and where it stopped.

    Attributes
    ----------
    config : TrainConfig
        The resolved configuration.
    model : torch.nn.Module
        The network as trained so far.
    history : list of dict
        One entry per epoch (the lines of ``metrics.jsonl``).
    Ns : list of int
        Active task sizes for the next epoch.
    solved : list of list of int
        Every solved set of Ns, in order.
    stop_reason : str
        "target" (n_max solved), "max_epochs", "time_budget" or "running".
    run_dir : pathlib.Path or None
        Where checkpoints and metrics are written (None: in memory only).
    """

    config: TrainConfig
    model: torch.nn.Module
    history: list[dict[str, Any]] = field(default_factory=list)
    Ns: list[int] = field(default_factory=list)
    solved: list[list[int]] = field(default_factory=list)
    stop_reason: str = "running"
    run_dir: Path | None = None

    @property
    def max_solved_N(self) -> int | None:
        """Largest N among the solved heads (None when nothing was solved)."""
        return max((max(s) for s in self.solved), default=None)

    @property
    def losses(self) -> list[float]:
        """Mean training loss of every epoch."""
        return [h["loss"] for h in self.history]

    def metrics(self):
        """The history as an :class:`xarray.Dataset` with dims ``epoch`` and ``N``."""
        import xarray as xr

        Ns = sorted({int(n) for h in self.history for n in h["accuracy"]})
        acc = np.full((len(self.history), len(Ns)), np.nan)
        for i, h in enumerate(self.history):
            for n, a in h["accuracy"].items():
                acc[i, Ns.index(int(n))] = a
        epoch = [h["epoch"] for h in self.history]
        ds = xr.Dataset(
            {
                "loss": ("epoch", [h["loss"] for h in self.history]),
                "accuracy": (("epoch", "N"), acc),
                "tau_mean": ("epoch", [h.get("tau_mean", np.nan) for h in self.history]),
                "tau_std": ("epoch", [h.get("tau_std", np.nan) for h in self.history]),
                "sequences_per_s": ("epoch", [h["sequences_per_s"] for h in self.history]),
                "wall_seconds": ("epoch", [h["wall_seconds"] for h in self.history]),
            },
            coords={"epoch": epoch, "N": Ns},
            attrs={"config": self.config.to_json(), "stop_reason": self.stop_reason},
        )
        ds["accuracy"].attrs["units"] = "%"
        return ds


def evaluate(model: torch.nn.Module, task, Ns: Sequence[int], *, batches: int = 50,
             batch: int = 256, generator: torch.Generator | None = None,
             device: str | torch.device | None = None,
             length_generator: torch.Generator | None = None) -> np.ndarray:
    """Accuracy (per cent) of heads ``0..len(Ns)-1`` on fresh batches, head ``i`` answering ``Ns[i]``.

    Parameters
    ----------
    model : torch.nn.Module
        A trainers model (or any module with the protocol's ``forward``, ``initial_state`` and
        ``readout``).
    task : trainers.tasks.BinaryTask
    Ns : sequence of int
    batches, batch : int
        Number and size of the batches (the authors' code: 50 batches of 256).
    generator : torch.Generator, optional
        Random source on ``device``.
    device : optional
        Default: the model's device.
    length_generator : torch.Generator, optional
        CPU generator for the sequence lengths (see :meth:`trainers.tasks.BinaryTask.sample`).

    Returns
    -------
    numpy.ndarray
        ``(len(Ns),)`` accuracies in per cent, readout on the last step, class = argmax.
    """
    from dynatools._validation import check_positive_int

    batches = check_positive_int("batches", batches)
    batch = check_positive_int("batch", batch)
    dev = next(model.parameters()).device if device is None else torch.device(device)
    correct = torch.zeros(len(Ns), device=dev)
    with torch.no_grad():
        for _ in range(batches):
            b = task.sample(Ns, batch, generator=generator, device=dev,
                            length_generator=length_generator)
            h0 = model.initial_state(batch, generator=generator)
            H = model(b.inputs, h0)
            pred = model.readout(H[:, -1], heads=len(Ns)).argmax(-1)
            correct += (pred == b.labels).sum(0)
    return (100.0 * correct / (batches * batch)).cpu().numpy()


def _seeds(seed: int) -> tuple[int, int, int]:
    init, data, lengths = np.random.SeedSequence(seed).generate_state(3)
    return int(init), int(data), int(lengths)


@dataclass
class _Streams:
    """The run's random streams: bits and initial states on the device, lengths on the CPU (so
    that drawing a length never waits for the GPU)."""

    data: torch.Generator
    lengths: torch.Generator

    def state(self, device: torch.device) -> dict[str, Any]:
        return {"data": self.data.get_state(), "lengths": self.lengths.get_state(),
                "device_type": torch.tensor(list(device.type.encode()), dtype=torch.uint8)}


def _make_model(cfg: TrainConfig, generator: torch.Generator) -> torch.nn.Module:
    from trainers.models import MODELS

    cls = MODELS[cfg.model]
    if cfg.model == "leaky":
        return cls(cfg.units, n_heads=cfg.n_heads, tau=cfg.tau, train_tau=cfg.train_tau,
                   nonlinearity=cfg.nonlinearity, activation=cfg.activation,
                   negative_slope=cfg.negative_slope, generator=generator)
    return cls(cfg.units, n_heads=cfg.n_heads, generator=generator)


def _make_optimizer(cfg: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)


def _prepare_run_dir(run_dir: Path) -> None:
    latest = run_dir / "checkpoints" / LATEST
    if latest.exists():
        raise FileExistsError(f"{run_dir} already holds a run; continue it with "
                              f"`trainers resume {run_dir}` (trainers.resume) or choose another --out.")
    try:
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise PermissionError(f"output directory {str(run_dir)!r} is not writable ({exc.strerror}); "
                              f"choose another --out.") from exc


def train(config: TrainConfig | dict[str, Any], run_dir: str | os.PathLike | None = None, *,
          init: torch.nn.Module | None = None, init_readout: bool = True, progress: bool = True) -> Run:
    """Train a network as ``config`` says; checkpoints go to ``run_dir``.

    Parameters
    ----------
    config : TrainConfig or dict
        The run's configuration; checked completely before any training.
    run_dir : path-like, optional
        Directory for ``config.json``, ``metrics.jsonl`` and ``checkpoints/``; created if needed,
        must not already hold a run. None trains in memory without checkpoints.
    init : torch.nn.Module, optional
        Start from this network's weights instead of a fresh initialisation (re-training, Fig. 8c
        of the timescale paper). Every weight whose name and shape match is copied; readout heads
        of another shape keep their fresh initialisation. The initial-state scale ``h0_scale`` of
        a leaky RNN is copied too.
    init_readout : bool, default=True
        Copy ``init``'s readout heads where their shape matches. False: every head starts fresh
        (:func:`trainers.retrain.retrain`, whatever the number of heads ``init`` had).
    progress : bool, default=True
        Show a progress bar (epoch, active N range, loss, accuracy).

    Returns
    -------
    Run

    Examples
    --------
    >>> import trainers
    >>> cfg = trainers.TrainConfig(units=16, batch=8, steps_per_epoch=2, eval_batches=1,
    ...                            max_epochs=1, n_max=3, device="cpu", seed=0)
    >>> run = trainers.train(cfg, progress=False)
    >>> run.stop_reason, len(run.history)
    ('max_epochs', 1)
    """
    cfg = (TrainConfig.from_dict(config) if isinstance(config, dict) else config).resolved()
    device = resolve_device(cfg.device)
    if run_dir is not None:
        run_dir = Path(run_dir)
        _prepare_run_dir(run_dir)
        atomic_write_text(run_dir / "config.json", cfg.to_json())
    init_seed, data_seed, length_seed = _seeds(cfg.seed)
    model = _make_model(cfg, torch.Generator().manual_seed(init_seed))
    if init is not None:
        _copy_matching(init, model, heads=init_readout)
        if hasattr(init, "h0_scale") and hasattr(model, "h0_scale"):
            model.h0_scale = float(init.h0_scale)
    model = model.to(device)
    optimizer = _make_optimizer(cfg, model)
    streams = _Streams(torch.Generator(device=device).manual_seed(data_seed),
                       torch.Generator().manual_seed(length_seed))
    run = Run(cfg, model, Ns=cfg.make_curriculum().initial(), run_dir=run_dir)
    return _loop(run, optimizer, streams, device, start_epoch=0, wall0=0.0, progress=progress)


def _copy_matching(source: torch.nn.Module, target: torch.nn.Module, *, heads: bool = True) -> None:
    """Copy every state entry whose name and shape match (the readout ``heads.*`` only if
    ``heads``); refuse models whose recurrent part differs."""
    src = source.state_dict()
    dst = target.state_dict()
    shared = {k: v for k, v in src.items() if k in dst and dst[k].shape == v.shape
              and (heads or not k.startswith("heads."))}
    recurrent = [k for k in dst if not k.startswith("heads.")]
    missing = [k for k in recurrent if k not in shared]
    if missing:
        details = ", ".join(f"{k}: {tuple(src[k].shape) if k in src else 'absent'} vs {tuple(dst[k].shape)}"
                            for k in missing[:4])
        raise ValueError(f"init does not match the configured model ({details}); set units, model, "
                         f"nonlinearity and activation as in the initial network.")
    with torch.no_grad():
        for k, v in shared.items():
            dst[k].copy_(v.to(dst[k].dtype))


def resume(run_dir: str | os.PathLike, *, max_epochs: int | None = None,
           time_budget: float | None = None, device: str | None = None,
           progress: bool = True) -> Run:
    """Continue a run from ``RUN_DIR/checkpoints/latest.pt`` with the same random stream.

    A run killed at any point continues from the end of its last completed epoch and produces
    the same losses and weights as an uninterrupted run (on the same device). ``max_epochs``
    and ``time_budget`` (seconds of training in total) may be raised to extend a run.
    """
    run_dir = Path(run_dir)
    latest = run_dir / "checkpoints" / LATEST
    if not latest.is_file():
        raise FileNotFoundError(f"no run to resume in {str(run_dir)!r}: {latest} is missing. Start "
                                f"one with `trainers train --out {run_dir}`.")
    # temporary files of this run's own writes, left by a process killed while writing
    stale = [*(run_dir / "checkpoints").glob(".*.pt.*.tmp"), *run_dir.glob(".metrics.jsonl.*.tmp"),
             *run_dir.glob(".config.json.*.tmp")]
    for path in stale:
        path.unlink()
    payload = read_checkpoint(latest)
    meta = payload["meta"]
    if meta.get("kind") == "sequence":
        raise ValueError(f"{run_dir} is a train-sequence run; continue it with "
                         f"trainers.sequence_training.resume_sequence({str(run_dir)!r}) "
                         f"(the command `trainers resume` picks the right one).")
    if "config" not in meta or "rng" not in payload:
        raise CheckpointError(f"{latest} is not the latest checkpoint of a `trainers train` run (it has no "
                              f"{'config' if 'config' not in meta else 'random-stream state'}); it cannot be "
                              f"resumed.")
    cfg = TrainConfig.from_dict(meta["config"])
    cfg_file = run_dir / "config.json"
    if cfg_file.is_file():
        try:
            on_disk = TrainConfig.from_dict(json.loads(cfg_file.read_text()))
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{cfg_file} is damaged ({exc}); delete it: resume takes the "
                                  f"configuration from {latest}.") from exc
        arch = ("model", "units", "n_heads", "task", "curriculum", "nonlinearity", "activation")
        diff = [k for k in arch if getattr(on_disk, k) != getattr(cfg, k)]
        if diff:
            raise CheckpointError(f"{latest} belongs to another model than {cfg_file} "
                                  f"(differs in {diff}); the run directory is inconsistent.")
    updates: dict[str, Any] = {}
    if max_epochs is not None:
        updates["max_epochs"] = max_epochs
    if time_budget is not None:
        updates["time_budget"] = time_budget
    if device is not None:
        updates["device"] = device
    if updates:
        import dataclasses

        cfg = dataclasses.replace(cfg, **updates).resolved()
    dev = resolve_device(cfg.device)
    rng = payload["rng"]
    trained_on = bytes(rng["device_type"].tolist()).decode()
    if trained_on != dev.type:
        raise ValueError(
            f"this run was trained on {trained_on} and would resume on {dev.type}; its random "
            f"stream lives on {trained_on}, so exact continuation needs the same device: resume "
            f"with --device {trained_on} (device={trained_on!r}).")
    if updates:  # every check passed: record the new limits
        atomic_write_text(cfg_file, cfg.to_json())
    model = build_model(meta["model_config"])
    model.load_state_dict(payload["state_dict"])
    model.to(dev)
    optimizer = _make_optimizer(cfg, model)
    optimizer.load_state_dict(payload["optimizer"])
    streams = _Streams(torch.Generator(device=dev), torch.Generator())
    streams.data.set_state(rng["data"])
    streams.lengths.set_state(rng["lengths"])
    run = Run(cfg, model, history=meta["history"], Ns=meta["Ns"], solved=meta["solved"],
              stop_reason=meta["stop_reason"], run_dir=run_dir)
    if run.stop_reason == "target":
        return run
    return _loop(run, optimizer, streams, dev, start_epoch=meta["epoch"],
                 wall0=meta["wall_seconds"], progress=progress)


def _tau_stats(model: torch.nn.Module) -> dict[str, float]:
    if not hasattr(model, "effective_tau"):
        return {}
    with torch.no_grad():
        tau = model.effective_tau()
        return {"tau_mean": float(tau.mean()), "tau_std": float(tau.std())}


def _loop(run: Run, optimizer, streams: _Streams, device, *, start_epoch: int, wall0: float,
          progress: bool) -> Run:
    from tqdm.auto import tqdm

    cfg, model = run.config, run.model
    task, curriculum = cfg.make_task(), cfg.make_curriculum()
    wall = wall0
    if cfg.time_budget is not None and wall >= cfg.time_budget:
        run.stop_reason = "time_budget"  # already spent (raise it to continue)
        return run
    run.stop_reason = "running"
    generator = streams.data
    bar = tqdm(total=cfg.max_epochs, initial=start_epoch, desc="train", unit="epoch",
               disable=not progress, dynamic_ncols=True)
    try:
        for epoch in range(start_epoch, cfg.max_epochs):
            t0 = time.perf_counter()
            Ns = list(run.Ns)
            model.train()
            losses = torch.zeros(cfg.steps_per_epoch, device=device)
            steps = tqdm(range(cfg.steps_per_epoch), desc=f"epoch {epoch + 1} N={Ns[0]}..{Ns[-1]}",
                         leave=False, disable=not progress, dynamic_ncols=True)
            for i in steps:
                b = task.sample(Ns, cfg.batch, generator=generator, device=device,
                                length_generator=streams.lengths)
                h0 = model.initial_state(cfg.batch, generator=generator)
                H = model(b.inputs, h0)
                logits = model.readout(H[:, -1], heads=len(Ns))          # (batch, head, class)
                loss = F.cross_entropy(logits.transpose(1, 2), b.labels, reduction="none").mean(0).sum()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.clip is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=cfg.clip)
                optimizer.step()
                losses[i] = loss.detach()
            train_seconds = time.perf_counter() - t0
            loss_mean = float(losses.mean())
            broken = nonfinite_names(model.named_parameters())
            if not math.isfinite(loss_mean) or broken:   # the last update can break the weights alone
                what = f"the loss became {loss_mean}" if not math.isfinite(loss_mean) else \
                    f"the parameters {broken} became NaN or inf"
                raise FloatingPointError(
                    f"{what} in epoch {epoch + 1}; lower lr (now {cfg.lr}) or clip (now {cfg.clip}). "
                    f"The last good state is in the latest checkpoint (not overwritten).")
            acc = evaluate(model, task, Ns, batches=cfg.eval_batches, batch=cfg.batch,
                           generator=generator, device=device, length_generator=streams.lengths)
            wall += time.perf_counter() - t0
            solved = curriculum.solved(acc)
            entry = {
                "epoch": epoch + 1, "loss": loss_mean,
                "accuracy": {str(n): float(a) for n, a in zip(Ns, acc)},
                "mean_accuracy": float(acc.mean()), "Ns": Ns, "solved": solved,
                **_tau_stats(model),
                "wall_seconds": wall, "epoch_seconds": time.perf_counter() - t0,
                "sequences_per_s": cfg.steps_per_epoch * cfg.batch / train_seconds,
            }
            run.history.append(entry)
            if solved:
                run.solved.append(Ns)
                if run.run_dir is not None:
                    save_checkpoint(run.run_dir / "checkpoints" / solved_checkpoint_name(Ns), model,
                                    {"kind": "solved", "config": cfg.to_dict(), "epoch": epoch + 1,
                                     "Ns": Ns, "accuracy": entry["accuracy"]})
                if curriculum.finished(Ns):
                    run.stop_reason = "target"
                else:
                    run.Ns = curriculum.next(Ns)
            if run.stop_reason == "running":
                if epoch + 1 >= cfg.max_epochs:
                    run.stop_reason = "max_epochs"
                elif cfg.time_budget is not None and wall >= cfg.time_budget:
                    run.stop_reason = "time_budget"
            if run.run_dir is not None:
                _save_latest(run, optimizer, streams.state(device), epoch + 1, wall)
            bar.update(1)
            bar.set_postfix_str(f"N={Ns[0]}..{Ns[-1]} loss={loss_mean:.3f} acc={acc.mean():.1f}%")
            if run.stop_reason != "running":
                break
    finally:
        bar.close()
    if run.stop_reason == "running":  # max_epochs already reached before this call
        run.stop_reason = "max_epochs"
    return run


def _save_latest(run: Run, optimizer, rng: dict[str, Any], epoch: int, wall: float) -> None:
    ckpt = run.run_dir / "checkpoints"
    meta = {"kind": "latest", "config": run.config.to_dict(), "epoch": epoch, "Ns": run.Ns,
            "solved": run.solved, "history": run.history, "wall_seconds": wall,
            "stop_reason": run.stop_reason}
    save_checkpoint(ckpt / LATEST, run.model, meta, optimizer=optimizer,
                    rng=rng)
    lines = "".join(json.dumps(h) + "\n" for h in run.history)
    atomic_write_text(run.run_dir / "metrics.jsonl", lines)


def loss_closure(model: torch.nn.Module, task, Ns: Sequence[int], *, batch: int = 256,
                 seed: int = 0) -> tuple[Any, dict[str, torch.Tensor]]:
    """The training loss on one fixed batch as a function of the parameters, for
    :func:`dynatools.hessian_eigenvalues`: returns ``(loss_fn, params)``.

    ``loss_fn(params)`` is the sum over heads ``0..len(Ns)-1`` of the cross-entropy on the last
    step, computed with ``torch.func.functional_call`` on a copy of the model (twice
    differentiable: the copy of a LeakyRNN runs with ``fused = False``; ``model`` is not changed).
    ``params`` holds the trainable parameters only (``requires_grad``; e.g. no ``tau`` when
    ``train_tau=False``).
    """
    from torch.func import functional_call

    model = copy.deepcopy(model)                 # the caller's model keeps its fast fused path
    if hasattr(model, "fused"):
        model.fused = False
    dev = next(model.parameters()).device
    gen = torch.Generator(device=dev).manual_seed(seed)
    b = task.sample(Ns, batch, generator=gen, device=dev)
    dtype = next(model.parameters()).dtype
    u = b.inputs.to(dtype)
    h0 = model.initial_state(batch, generator=gen)
    n_heads = len(Ns)
    params = {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}

    def loss_fn(p: dict[str, torch.Tensor]) -> torch.Tensor:
        H = functional_call(model, p, (u, h0))[:, -1]
        hidden = model.hidden(H) if hasattr(model, "hidden") else H
        w, bias = p["heads.weight"][:n_heads], p["heads.bias"][:n_heads]
        logits = torch.einsum("bn,hcn->bhc", hidden, w) + bias
        return F.cross_entropy(logits.transpose(1, 2), b.labels, reduction="none").mean(0).sum()

    return loss_fn, params
