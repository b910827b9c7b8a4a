"""Training configuration: one plain dataclass, serialisable to JSON and readable from TOML."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import secrets
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

from dynatools._validation import check_choice

OPTIMIZERS = ("sgd", "adam")
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (the command line's ``train`` flags mirror it).

    Defaults are the timescale paper's and its authors' code's (Sec. 3.2; App. C for GRU/LSTM):
    500 units, batch 256, 600 steps per epoch, accuracy on 50 fresh batches per epoch, SGD with
    Nesterov momentum (lr 0.05, momentum 0.1) and gradient-norm clipping at 2.0 for the leaky
    RNN, Adam (lr 1e-3) and {-1, +1} inputs for GRU and LSTM, at most 1000 epochs.

    Parameters
    ----------
    task : {"parity", "dms"}
    model : {"leaky", "gru", "lstm"}
    curriculum : {"none", "single-head", "multi-head", "sliding", "all-heads"}
    units : int, default=500
    batch : int, default=256
    steps_per_epoch : int, default=600
    eval_batches : int, default=50
        Fresh batches on which accuracy is measured after every epoch.
    max_epochs : int, default=1000
    time_budget : float, optional
        Wall-clock limit in seconds, checked after every epoch.
    n_start, n_max : int, default=2, 101
        First N and the target N that ends the run (``none`` trains ``n_max`` directly).
    heads_per_step : int, default=1
        New heads per multi-head step (m).
    window, shift : int, default=10, 5
        Sliding curriculum: number of heads H and shift w (App. B).
    n_heads : int, optional
        Readout heads of the model; default what the curriculum needs.
    k : int, default=1
        Input time-rescaling (App. E).
    encoding : {"01", "pm1"}, optional
        Input encoding; default "01" for the leaky RNN and "pm1" for GRU/LSTM (App. C).
    optimizer : {"sgd", "adam"}, optional
        Default "sgd" (Nesterov) for the leaky RNN, "adam" for GRU/LSTM.
    lr : float, optional
        Default 0.05 for SGD, 1e-3 for Adam.
    momentum : float, default=0.1
    clip : float or None, default=2.0
        Gradient-norm clipping (L2 over all parameters); None disables it.
    train_tau : bool, default=True
        False gives the fixed-tau runs of Fig. 4a (set ``tau`` to the fixed value).
    tau : float, optional
        Initial (or fixed) tau of every unit; default 1 + U(0, 1) per unit.
    nonlinearity : {"outside", "inside"}, default="outside"
    activation : {"leaky_relu", "relu", "tanh"}, default="leaky_relu"
    negative_slope : float, default=0.1
    device : {"auto", "cpu", "cuda"}, default="auto"
        "auto" picks CUDA when available.
    seed : int, optional
        Seeds the initialisation and every batch; default a random seed, stored in the run.
    """

    task: str = "parity"
    model: str = "leaky"
    curriculum: str = "multi-head"
    units: int = 500
    batch: int = 256
    steps_per_epoch: int = 600
    eval_batches: int = 50
    max_epochs: int = 1000
    time_budget: float | None = None
    n_start: int = 2
    n_max: int = 101
    heads_per_step: int = 1
    window: int = 10
    shift: int = 5
    n_heads: int | None = None
    k: int = 1
    encoding: str | None = None
    optimizer: str | None = None
    lr: float | None = None
    momentum: float = 0.1
    clip: float | None = 2.0
    train_tau: bool = True
    tau: float | None = None
    nonlinearity: str = "outside"
    activation: str = "leaky_relu"
    negative_slope: float = 0.1
    device: str = "auto"
    seed: int | None = None

    # ------------------------------------------------------------------
    def resolved(self) -> "TrainConfig":
        """Check every field and fill the model-dependent defaults (encoding, optimizer, lr,
        n_heads, seed). Raises ValueError naming the field, the value and the valid choices."""
        from trainers.curricula import CURRICULA
        from trainers.models import MODELS
        from trainers.tasks import TASKS

        check_choice("task", self.task, TASKS)
        check_choice("model", self.model, MODELS)
        check_choice("curriculum", self.curriculum, CURRICULA)
        check_choice("device", self.device, DEVICES)
        for name in ("units", "batch", "steps_per_epoch", "eval_batches", "max_epochs",
                     "heads_per_step", "window", "shift", "k"):
            _positive_int(name, getattr(self, name))
        for name in ("n_start", "n_max"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 2:
                raise ValueError(f"{name} must be an integer N >= 2 (N = 1 needs no memory); "
                                 f"found {value!r}.")
        if self.time_budget is not None and (isinstance(self.time_budget, bool) or not (
                isinstance(self.time_budget, (int, float)) and self.time_budget > 0)):
            raise ValueError(f"time_budget must be a positive number of seconds or None; "
                             f"found {self.time_budget!r}.")
        curriculum = self.make_curriculum()  # checks n_max >= n_start, window/shift
        gated = self.model in ("gru", "lstm")
        updates: dict[str, Any] = {}
        if self.encoding is None:
            updates["encoding"] = "pm1" if gated else "01"
        else:
            check_choice("encoding", self.encoding, ("01", "pm1"))
        optimizer = self.optimizer or ("adam" if gated else "sgd")
        check_choice("optimizer", optimizer, OPTIMIZERS)
        updates["optimizer"] = optimizer
        lr = self.lr if self.lr is not None else (1e-3 if optimizer == "adam" else 0.05)
        _positive_float("lr", lr)
        updates["lr"] = float(lr)
        if not (isinstance(self.momentum, (int, float)) and 0 <= self.momentum < 1):
            raise ValueError(f"momentum must lie in [0, 1); found {self.momentum!r}.")
        if self.clip is not None:
            _positive_float("clip", self.clip)
        needed = curriculum.n_heads()
        if self.n_heads is None:
            updates["n_heads"] = needed
        else:
            _positive_int("n_heads", self.n_heads)
            if self.n_heads < needed:
                raise ValueError(f"n_heads={self.n_heads} is too few: the {self.curriculum} "
                                 f"curriculum from N={self.n_start} to N={self.n_max} needs {needed}.")
        if self.tau is not None:
            _positive_float("tau", self.tau)
        check_choice("nonlinearity", self.nonlinearity, ("outside", "inside"))
        check_choice("activation", self.activation, ("leaky_relu", "relu", "tanh"))
        if not 0 <= self.negative_slope < 1:
            raise ValueError(f"negative_slope must lie in [0, 1); found {self.negative_slope!r}.")
        if self.seed is None:
            updates["seed"] = secrets.randbelow(2**31)
        elif isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer; found {self.seed!r}.")
        return dataclasses.replace(self, **updates)

    def make_curriculum(self):
        """The :mod:`trainers.curricula` object this configuration names."""
        from trainers.curricula import CURRICULA

        cls = CURRICULA[check_choice("curriculum", self.curriculum, CURRICULA)]
        kw: dict[str, Any] = {"n_start": self.n_start, "n_max": self.n_max}
        if self.curriculum == "multi-head":
            kw["heads_per_step"] = self.heads_per_step
        if self.curriculum == "sliding":
            kw.update(window=self.window, shift=self.shift)
        return cls(**kw)

    def make_task(self):
        """The :mod:`trainers.tasks` object this configuration names."""
        from trainers.tasks import TASKS

        return TASKS[self.task](k=self.k, encoding=self.encoding or "01")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TrainConfig":
        """Build from a mapping; keys may use dashes or underscores. Unknown keys are an error."""
        names = {f.name for f in fields(cls)}
        clean = {str(k).replace("-", "_"): v for k, v in data.items()}
        unknown = sorted(set(clean) - names)
        if unknown:
            raise ValueError(f"unknown configuration keys {unknown}; valid keys: {sorted(names)}.")
        return cls(**clean)

    @classmethod
    def from_toml(cls, path: str | os.PathLike) -> "TrainConfig":
        """Read a TOML file of ``key = value`` lines (top level or a ``[train]`` table)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"configuration file {str(path)!r} does not exist.")
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path}: not valid TOML ({exc}).") from exc
        if "train" in data and isinstance(data["train"], dict):
            rest = sorted(k for k in data if k != "train")
            if rest:
                raise ValueError(f"{path}: keys {rest} lie outside the [train] table; put every "
                                 f"key in [train] or none.")
            data = data["train"]
        return cls.from_dict(data)


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer; found {value!r}.")


def _positive_float(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number; found {value!r}.")
