"""Checkpoints: a state_dict plus JSON metadata, written atomically, read with weights_only=True.

A checkpoint file (``torch.save``) holds a dict of tensors, numbers and strings only:
``state_dict`` (model weights), ``optimizer`` (optimizer state), ``rng`` (generator states) and
``meta`` (a JSON string: the model's architecture, the training configuration, the active Ns,
epoch, accuracy and the run's history). Loading therefore never unpickles arbitrary objects.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from dynatools.utils import write_atomic

FORMAT = "trainers.checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, or belongs to another model."""


def atomic_write_bytes(path: Path, writer) -> None:
    """Call ``writer(file_object)`` on a temporary file beside ``path``, fsync, then rename."""

    def fill(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            writer(fh)

    write_atomic(path, fill)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, lambda fh: fh.write(text.encode()))


def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module, meta: dict[str, Any], *,
                    optimizer: torch.optim.Optimizer | None = None,
                    rng: dict[str, torch.Tensor] | None = None) -> Path:
    """Write a checkpoint atomically (temporary file, fsync, rename)."""
    path = Path(path)
    payload = {
        "format": FORMAT,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": json.dumps({"model_config": model.config(), **meta}),
    }
    if optimizer is not None:
        payload["optimizer"] = optimizer.state_dict()
    if rng is not None:
        payload["rng"] = {k: v.cpu() for k, v in rng.items()}
    atomic_write_bytes(path, lambda fh: torch.save(payload, fh))
    return path


def safe_load(path: str | os.PathLike) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, with one-line errors.

    A file that holds Python objects other than tensors, numbers, strings and containers of them
    (a pickle of some class, which could run code when loaded) is refused as not trusted: nothing
    in it is unpickled, and the message never suggests loading it unsafely. A truncated or
    damaged file is refused as unreadable. Both raise :class:`CheckpointError` (a ValueError).
    """
    try:
        with warnings.catch_warnings():              # torch's remark on the pickle protocol of a foreign file
            warnings.filterwarnings("ignore", "Detected pickle protocol", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        message = str(exc)
        found = re.search(r"GLOBAL ([\w.]+)", message)
        if isinstance(exc, pickle.UnpicklingError) and "GLOBAL" in message:   # it names a Python object
            what = f" (found {found.group(1)!r})" if found else ""
            raise CheckpointError(
                f"{path} is not a trusted checkpoint: it holds Python objects other than tensors, numbers, "
                f"strings and containers of them{what}, and trainers never unpickles those. Use a checkpoint "
                f"written by trainers (RUN_DIR/checkpoints/*.pt), or trainers.import_reference() for the "
                f"authors' published networks.") from None      # PyTorch's advice (unsafe loading) is not passed on
        # truncated or damaged: the first sentence of the cause, after PyTorch's general advice
        text = message.split("WeightsUnpickler error:")[-1].strip()
        first = re.split(r"(?<=\.)\s|\n", text, maxsplit=1)[0].rstrip(".")
        if len(first) < 12 or "weights" in first.lower():   # KeyError(101) of a text file says less than its type
            first = type(exc).__name__
        raise CheckpointError(f"{path} is not a readable trainers checkpoint (damaged, truncated or not "
                              f"written by torch.save: {first}).") from None


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint file with ``torch.load(weights_only=True)`` (:func:`safe_load`); ``meta``
    is decoded."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist.")
    payload = safe_load(path)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: not a trainers checkpoint (format {payload.get('format') if isinstance(payload, dict) else None!r}, "
            f"expected {FORMAT!r}). For the authors' published networks use trainers.import_reference()."
        )
    try:
        payload["meta"] = json.loads(payload["meta"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: the checkpoint's metadata is damaged ({exc}).") from exc
    return payload


def build_model(model_config: dict[str, Any]) -> torch.nn.Module:
    """Instantiate the architecture described by ``model.config()`` (weights uninitialised), via
    the model registry (:data:`trainers.models.MODELS`)."""
    from trainers.models import MODELS

    cfg = dict(model_config)
    name = cfg.get("model")
    if name == "ensemble":
        from trainers.ensemble import Ensemble

        return Ensemble.from_config(cfg)
    if name not in MODELS:
        raise CheckpointError(f"unknown model {name!r} in the checkpoint; known: {sorted(MODELS)}.")
    return MODELS[name].from_config(cfg)


def load_model(path: str | os.PathLike, *, model: torch.nn.Module | None = None,
               device: str | torch.device = "cpu") -> torch.nn.Module:
    """Load the network of a checkpoint.

    Parameters
    ----------
    path : path-like
        A checkpoint written by :func:`trainers.train` (``RUN_DIR/checkpoints/*.pt``; a run
        directory's checkpoints are easier to reach through :class:`trainers.RunDir`).
    model : torch.nn.Module, optional
        Load into this model instead of building one; its architecture must match the
        checkpoint's, otherwise a :class:`CheckpointError` names the differences.
    device : str or torch.device, default="cpu"

    Returns
    -------
    torch.nn.Module
        The model, in eval mode.
    """
    payload = read_checkpoint(path)
    stored = payload["meta"]["model_config"]
    if model is None:
        model = build_model(stored)
    else:
        mine = model.config() if hasattr(model, "config") else {}
        diff = {k: (stored.get(k), mine.get(k)) for k in set(stored) | set(mine) if stored.get(k) != mine.get(k)}
        if diff:
            details = ", ".join(f"{k}: checkpoint {a!r} vs model {b!r}" for k, (a, b) in sorted(diff.items()))
            raise CheckpointError(f"{path} holds another model ({details}); build the model from "
                                  f"the checkpoint with trainers.load_model(path).")
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval()
