"""A run directory: its layout, its files, and loading what it holds. No other module spells the
layout out.

::

    RUN_DIR/config.json              the resolved TrainConfig
    RUN_DIR/metrics.jsonl            one JSON line per epoch (loss, metric per head, tau, speed)
    RUN_DIR/checkpoints/latest.pt    after every epoch: weights, optimizer, random streams, history
    RUN_DIR/checkpoints/N011.pt      when the heads whose largest N is 11 were solved (kept)
    RUN_DIR/analysis/                results computed from the checkpoints (trainers analyze/report)

Runs written by trainers 0.1 (flat ``config.json``; ``train-sequence`` runs with ``result.nc``)
load as well.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterator, NamedTuple, Sequence

import numpy as np
import torch

from trainers.checkpoint import CheckpointError, atomic_write_text, build_model, read_checkpoint, save_checkpoint
from trainers.config import TrainConfig

CONFIG = "config.json"
METRICS = "metrics.jsonl"
#: per-step records of trial-task runs (one line per epoch, appended: loss, performance, FLOPs
#: per member and step), kept out of metrics.jsonl and the checkpoints, which are rewritten
STEPS = "steps.jsonl"
CHECKPOINTS = "checkpoints"
LATEST = "latest.pt"
ANALYSIS = "analysis"


def solved_name(N: int) -> str:
    """File name of the checkpoint kept when the heads up to ``N`` are solved: ``N{N:03d}.pt``."""
    return f"N{int(N):03d}.pt"


class Network(NamedTuple):
    """What :meth:`RunDir.load` returns: the network, its task, and the head that answers the
    requested N (the newest active head for the latest network; 0 for tasks without N)."""

    model: torch.nn.Module
    task: Any
    head: int


@dataclass
class Checkpoint:
    """One checkpoint file of a run, read once.

    Attributes
    ----------
    path : pathlib.Path
    payload : dict
        What :func:`trainers.checkpoint.read_checkpoint` returns (weights, optimizer, streams, meta).
    """

    path: Path
    payload: dict[str, Any] = field(repr=False)

    @property
    def meta(self) -> dict[str, Any]:
        return self.payload["meta"]

    @property
    def kind(self) -> str:
        """"latest", "solved", or "sequence" (a trainers 0.1 train-sequence run)."""
        return str(self.meta.get("kind", ""))

    @property
    def epoch(self) -> int:
        return int(self.meta.get("epoch") or 0)

    @cached_property
    def config(self) -> TrainConfig:
        """The run's resolved configuration as this checkpoint saved it."""
        meta = self.meta
        if self.kind == "sequence":
            return _legacy_sequence_config(meta)
        if "config" not in meta:
            raise CheckpointError(f"{self.path} holds no training configuration; it was not written by "
                                  f"trainers train.")
        return TrainConfig.from_dict(meta["config"]).resolved()

    @property
    def Ns(self) -> list[int]:
        """The task sizes its heads answer, in head order. For the latest checkpoint: the heads of
        its last evaluated epoch (``meta["Ns"]`` may already hold the next step's new head)."""
        history = self.meta.get("history") or []
        if self.kind == "latest" and history:
            return list(history[-1]["Ns"])
        return list(self.meta.get("Ns") or [])

    @property
    def accuracy(self) -> dict[str, float]:
        """The metric per head label (``{"N": value}``) when the checkpoint was saved."""
        history = self.meta.get("history") or []
        if self.kind == "latest" and history:
            h = history[-1]
            return dict(h.get(h.get("metric", "accuracy"), {}))
        if self.kind == "sequence" and history:
            return {"test": float(history[-1]["test_metric"])}
        return dict(self.meta.get("accuracy") or {})

    def model(self, device: str | torch.device = "cpu") -> torch.nn.Module:
        """The network, with this checkpoint's weights, in eval mode on ``device``."""
        model = build_model(self.meta["model_config"])
        model.load_state_dict(self.payload["state_dict"])
        return model.to(device).eval()


class RunDir:
    """A run directory: layout, configuration, metrics and checkpoints.

    Parameters
    ----------
    path : path-like
        The directory (``trainers train --out``).

    Examples
    --------
    >>> import tempfile, trainers
    >>> d = tempfile.mkdtemp()
    >>> _ = trainers.train({"units": 8, "batch": 8, "steps_per_epoch": 2, "eval_batches": 1,
    ...                     "max_epochs": 2, "n_max": 3, "device": "cpu", "seed": 0}, d, progress=False)
    >>> run = trainers.RunDir(d)
    >>> run.config.units, run.metrics().sizes["epoch"], run.solved()
    (8, 2, [])
    >>> model, task, head = run.load()
    >>> task.name, head
    ('parity', 0)
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        #: the layout (the only place it is spelled out)
        self.config_path = self.path / CONFIG
        self.metrics_path = self.path / METRICS
        self.steps_path = self.path / STEPS
        self.checkpoints_dir = self.path / CHECKPOINTS
        self.latest_path = self.checkpoints_dir / LATEST
        self._checkpoints: dict[int | None, Checkpoint] = {}

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    # ------------------------------------------------------------------ layout
    @property
    def analysis_dir(self) -> Path:
        """Where analyses of this run's checkpoints are cached (created on first use)."""
        d = self.path / ANALYSIS
        d.mkdir(exist_ok=True)
        return d

    def analysis_path(self, name: str, N: int | None = None) -> Path:
        """A result file in :attr:`analysis_dir`: ``{name}_N011.nc`` for one solved N (``N011.nc``
        when ``name`` is empty), ``{name}.nc`` for the whole run."""
        stem = name if N is None else "_".join(filter(None, (name, f"N{int(N):03d}")))
        return self.analysis_dir / f"{stem}.nc"

    def checkpoint_path(self, N: int | None = None) -> Path:
        """``checkpoints/latest.pt`` (N=None) or the file kept when N was solved."""
        return self.latest_path if N is None else self.checkpoints_dir / solved_name(N)

    # ------------------------------------------------------------------ reading
    def _require(self) -> None:
        if not self.checkpoints_dir.is_dir():
            raise FileNotFoundError(f"{self.path} is not a trainers run directory (no {CHECKPOINTS}/ folder); "
                                    f"train one with 'trainers train --out {self.path}'.")

    def solved(self) -> list[int]:
        """The Ns with a solved checkpoint, ascending."""
        self._require()
        found = []
        for p in self.checkpoints_dir.glob("N*.pt"):
            try:
                found.append(int(p.stem[1:]))
            except ValueError:
                continue
        return sorted(found)

    def checkpoint(self, N: int | None = None) -> Checkpoint:
        """The latest checkpoint (N=None) or the one saved when N was solved, read once."""
        if N not in self._checkpoints:
            self._require()
            path = self.checkpoint_path(N)
            if not path.is_file():
                if N is None:
                    raise FileNotFoundError(f"no run in {str(self.path)!r}: {path} is missing. Start one "
                                            f"with `trainers train --out {self.path}`.")
                have = self.solved()
                raise FileNotFoundError(f"{self.path} has no checkpoint for N={N}; solved: "
                                        f"{have or 'none'}.")
            self._checkpoints[N] = Checkpoint(path, read_checkpoint(path))
        return self._checkpoints[N]

    @property
    def latest(self) -> Checkpoint:
        """The checkpoint written after the last completed epoch."""
        return self.checkpoint(None)

    @property
    def config(self) -> TrainConfig:
        """The resolved configuration (``config.json``, else the latest checkpoint's)."""
        if self.config_path.is_file():
            return TrainConfig.from_dict(self._config_json()).resolved()
        return self.latest.config

    def _config_json(self) -> dict[str, Any]:
        """The object in ``config.json``; a damaged file is an error that says how to recover."""
        try:
            data = json.loads(self.config_path.read_text())
            if not isinstance(data, dict):
                raise ValueError(f"it holds {json.dumps(data)[:40]}, not a JSON object")
        except ValueError as exc:                   # json.JSONDecodeError is a ValueError
            raise CheckpointError(f"{self.config_path} is damaged ({exc}); delete it: the configuration "
                                  f"is also in {self.latest_path}.") from exc
        return data

    def metrics(self):
        """The history as an :class:`xarray.Dataset` (:func:`metrics_dataset`), from
        ``metrics.jsonl`` (or the latest checkpoint's history)."""
        if self.metrics_path.is_file() and self.config_path.is_file() and not self.latest_path.is_file():
            history = [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line.strip()]
            return metrics_dataset(history, self.config, "")        # the checkpoint is gone, the log is not
        latest = self.latest
        if latest.kind == "sequence":               # trainers 0.1 train-sequence run
            metric = "rms" if latest.config.task == "adding" else "accuracy"
            history = [{"epoch": i + 1, "loss": h["train_loss"], "iteration": h["iteration"], "metric": metric,
                        metric: {"test": h["test_metric"]}} for i, h in enumerate(latest.meta["history"])]
            return metrics_dataset(history, latest.config, "max_epochs")
        if self.metrics_path.is_file():
            history = [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line.strip()]
        else:
            history = latest.meta.get("history") or []
        steps = None
        if history and "members_performance" in history[0]:
            on_file = {r["epoch"]: r for r in self.steps(len(history))}
            steps = [h.get("steps") or on_file.get(h["epoch"]) for h in history]   # older runs: in the history
            if any(r is None for r in steps):
                missing = [h["epoch"] for h, r in zip(history, steps) if r is None][:5]
                raise CheckpointError(f"{self.steps_path} lacks the per-step records of epochs {missing}; the "
                                      f"run directory is incomplete (the per-epoch metrics are in "
                                      f"{self.metrics_path}).")
        return metrics_dataset(history, latest.config, latest.meta.get("stop_reason", ""), steps=steps)

    # ------------------------------------------------------------------ per-step records (trial tasks)
    def steps(self, epochs: int | None = None) -> list[dict[str, Any]]:
        """The per-step records of a trial-task run, one dict per epoch (``loss``,
        ``performance``, ``flops``: lists over steps of per-member values; ``wall_seconds``), for
        the first ``epochs`` epochs (default all)."""
        if not self.steps_path.is_file():
            return []
        records = [json.loads(line) for line in self.steps_path.read_text().splitlines() if line.strip()]
        return [r for r in records if epochs is None or r["epoch"] <= epochs]

    def append_steps(self, epoch: int, record: dict[str, Any]) -> None:
        """Append the per-step record of ``epoch`` (flushed and fsynced; a line of an epoch whose
        checkpoint was never written is dropped on resume, :meth:`truncate_steps`)."""
        with open(self.steps_path, "a") as fh:
            fh.write(json.dumps({"epoch": int(epoch), **record}) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def truncate_steps(self, epochs: int) -> list[dict[str, Any]]:
        """Keep the records of the first ``epochs`` epochs (the latest checkpoint's), atomically;
        return them."""
        kept = self.steps(epochs)
        if self.steps_path.is_file():
            atomic_write_text(self.steps_path, "".join(json.dumps(r) + "\n" for r in kept))
        return kept

    def load(self, N: int | None = None, *, device: str | torch.device = "cpu") -> Network:
        """``(model, task, head)``: the network saved when N was solved (default: the latest), its
        task, and the head that answers N (the newest active head of the latest network)."""
        ck = self.checkpoint(N)
        model = ck.model(device)
        task = ck.config.make_task()
        Ns = ck.Ns
        if N is not None and Ns and N not in Ns:
            raise CheckpointError(f"{ck.path} has no head for N={N} (its heads answer {Ns}).")
        head = Ns.index(N) if N is not None and Ns else max(len(Ns) - 1, 0)
        return Network(model, task, head)

    # ------------------------------------------------------------------ writing (the engine)
    def prepare(self) -> None:
        """Create the directory for a new run; refuse one that already holds a run. Temporary files
        of an earlier attempt killed before its first checkpoint was complete are removed."""
        if self.latest_path.exists():
            raise FileExistsError(f"{self.path} already holds a run; continue it with "
                                  f"`trainers resume {self.path}` (trainers.resume) or choose another --out.")
        try:
            self.checkpoints_dir.mkdir(parents=True, exist_ok=True)
            probe = self.path / ".write-test"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise PermissionError(f"output directory {str(self.path)!r} is not writable ({exc.strerror}); "
                                  f"choose another --out.") from exc
        self.remove_stale()       # a first attempt killed while writing its first checkpoint

    def remove_stale(self) -> None:
        """Delete temporary files of this run's own writes left by a process killed while writing."""
        stale = [*self.checkpoints_dir.glob(".*.pt.*.tmp"), *self.path.glob(f".{METRICS}.*.tmp"),
                 *self.path.glob(f".{CONFIG}.*.tmp"), *self.path.glob(f".{STEPS}.*.tmp")]
        for p in stale:
            p.unlink()

    def check_config(self, cfg: TrainConfig) -> None:
        """Refuse a ``config.json`` that describes another network than the checkpoints."""
        if not self.config_path.is_file():
            return
        on_disk = TrainConfig.from_dict(self._config_json())
        arch = ("task", "model", "units", "n_heads", "curriculum", "model_options")
        diff = [k for k in arch if getattr(on_disk, k) != getattr(cfg, k)]
        if diff:
            raise CheckpointError(f"{self.latest_path} belongs to another model than {self.config_path} "
                                  f"(differs in {diff}); the run directory is inconsistent.")

    def write_config(self, cfg: TrainConfig) -> None:
        atomic_write_text(self.config_path, cfg.to_json())

    def save_solved(self, model: torch.nn.Module, cfg: TrainConfig, *, epoch: int, Ns: Sequence[int],
                    accuracy: dict[str, float]) -> Path:
        """Keep the network that solved the heads ``Ns``."""
        path = self.checkpoint_path(max(Ns))
        save_checkpoint(path, model, {"kind": "solved", "config": cfg.to_dict(), "epoch": epoch,
                                      "Ns": list(Ns), "accuracy": accuracy})
        self._checkpoints.pop(max(Ns), None)
        return path

    def save_latest(self, run: Any, optimizer: torch.optim.Optimizer, rng: dict[str, Any], *, epoch: int,
                    wall: float) -> None:
        """The latest checkpoint (weights, optimizer, streams, history), then ``metrics.jsonl``."""
        meta = {"kind": "latest", "config": run.config.to_dict(), "epoch": epoch, "Ns": run.Ns,
                "solved": run.solved, "history": run.history, "wall_seconds": wall,
                "stop_reason": run.stop_reason}
        with _interrupt_after():
            save_checkpoint(self.latest_path, run.model, meta, optimizer=optimizer, rng=rng)
            self._checkpoints.pop(None, None)
            atomic_write_text(self.metrics_path, "".join(json.dumps(h) + "\n" for h in run.history))


@contextmanager
def _interrupt_after() -> Iterator[None]:
    """Hold a Ctrl-C (SIGINT) that arrives inside the block until the block is done, so that an
    epoch's checkpoint and its metrics line are written together; a second Ctrl-C interrupts at
    once. Only in the main thread, and only where Ctrl-C raises KeyboardInterrupt as usual."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return
    pending: list[int] = []

    def hold(signum: int, frame: Any) -> None:
        if pending:
            raise KeyboardInterrupt
        pending.append(signum)

    signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if pending:
        raise KeyboardInterrupt


def metrics_dataset(history: Sequence[dict[str, Any]], config: TrainConfig, stop_reason: str = "",
                    steps: Sequence[dict[str, Any]] | None = None):
    """A run's history as an :class:`xarray.Dataset`.

    Variables over ``epoch``: ``loss`` (mean training loss), the task's metric (``accuracy`` in
    per cent over ``(epoch, N)`` for curricula, over ``epoch`` for tasks without N; ``rms`` for
    regression), ``tau_mean``, ``tau_std``, ``sequences_per_s``, ``wall_seconds``; coordinate
    ``iteration`` (optimizer steps at each epoch's end). Attrs: ``config`` (JSON), ``stop_reason``,
    ``metric``, ``best`` (best mean metric) and, for tasks with a minimal performance (the
    fading-memory paper's 50% accuracy / RMS 0.05), ``minimal_performance``, ``reached_mp`` and
    ``iterations_to_mp`` (training iterations until it was first reached; all iterations if never).
    """
    import xarray as xr

    if history and "members_performance" in history[0]:        # a trial task: per member and step
        from trainers.ensemble import ensemble_metrics

        return ensemble_metrics(history, stop_reason, config.to_json(), steps=steps)
    metric = history[0].get("metric", "accuracy") if history else "accuracy"
    labels = sorted({k for h in history for k in h.get(metric, {})}, key=lambda s: (not s.isdigit(), s.zfill(6)))
    by_N = bool(labels) and all(lb.isdigit() for lb in labels)
    values = np.full((len(history), len(labels)), np.nan)
    for i, h in enumerate(history):
        for lb, v in h.get(metric, {}).items():
            values[i, labels.index(lb)] = v
    epoch = [int(h["epoch"]) for h in history]
    iteration = [int(h.get("iteration", 0)) for h in history]

    def column(name: str) -> list[float]:
        return [float(h.get(name, np.nan)) for h in history]

    data = {"loss": ("epoch", column("loss")), "tau_mean": ("epoch", column("tau_mean")),
            "tau_std": ("epoch", column("tau_std")), "sequences_per_s": ("epoch", column("sequences_per_s")),
            "wall_seconds": ("epoch", column("wall_seconds"))}
    coords: dict[str, Any] = {"epoch": epoch, "iteration": ("epoch", iteration)}
    if by_N:
        data[metric] = (("epoch", "N"), values)
        coords["N"] = [int(lb) for lb in labels]
    else:
        data[metric] = ("epoch", values[:, 0] if labels else np.full(len(history), np.nan))
    ds = xr.Dataset(data, coords=coords,
                    attrs={"config": config.to_json(), "stop_reason": stop_reason, "metric": metric})
    ds[metric].attrs["units"] = "%" if metric == "accuracy" else ""
    mean = np.nanmean(values, axis=1) if labels and len(history) else np.array([])
    higher = metric == "accuracy"
    if mean.size:
        ds.attrs["best"] = float(np.nanmax(mean) if higher else np.nanmin(mean))
    threshold = history[-1].get("minimal_performance") if history else None
    if threshold is not None:
        reached = [i for i, m in enumerate(mean) if (m >= threshold if higher else m <= threshold)]
        ds.attrs.update(minimal_performance=float(threshold), reached_mp=int(bool(reached)),
                        iterations_to_mp=int(iteration[reached[0]] if reached else (iteration[-1] if iteration else 0)))
    return ds


def _legacy_sequence_config(meta: dict[str, Any]) -> TrainConfig:
    """The configuration of a trainers 0.1 ``train-sequence`` run, from its checkpoint."""
    spec, settings = meta["task"], meta["settings"]
    name = spec["name"]
    options: dict[str, Any] = {}
    if name == "adding":
        options = {"length": spec["length"]}
    if name in ("pdigits", "psmnist"):
        options["permutation_seed"] = spec.get("seed", 0)
    if name in ("smnist", "psmnist", "scifar10"):
        options["data"] = spec.get("data")
    mc = meta["model_config"]
    return TrainConfig(task=name, model="wcrnn", curriculum="fixed", units=mc["n_units"],
                       batch=settings["batch"], steps_per_epoch=settings["steps_per_epoch"],
                       max_epochs=settings["epochs"], optimizer=settings["optimizer"], lr=settings["lr"],
                       momentum=settings["momentum"], nesterov=False, clip=settings.get("clip") or 0.0,
                       lr_milestones=list(settings.get("lr_milestones", [])),
                       lr_factor=settings.get("lr_factor", 0.3), device="cpu", seed=settings["seed"],
                       model_options={"form": mc.get("kind", "linear")}, task_options=options).resolved()


__all__ = ["RunDir", "Checkpoint", "Network", "metrics_dataset", "solved_name"]
