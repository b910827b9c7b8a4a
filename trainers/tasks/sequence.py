"""Sequence benchmarks of the fading-memory paper (Sec. 4): the adding problem, sequential and
permuted sequential images (MNIST, grayscale CIFAR-10) and the shipped 8x8 digits.

Nothing is downloaded at run time: MNIST and CIFAR-10 are read from files the user points to.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dynatools.utils import check_positive_int
from trainers.registry import Option

#: Minimal performance of the fading-memory paper (Sec. 4): accuracy (%) for classification, RMS
#: for regression.
MINIMAL_PERFORMANCE = {"classification": 50.0, "regression": 0.05}

#: Fading-memory paper Sec. 4: batch 128, 100 units (the model's default), readout on the last
#: state; an epoch is a pass over the training images (the adding problem: 100 iterations).
SEQUENCE_DEFAULTS = {"model": "wcrnn", "curriculum": "fixed", "batch": 128, "steps_per_epoch": 100,
                     "eval_batches": 1, "max_epochs": 10}


@dataclass(frozen=True)
class SequenceBatch:
    """``inputs`` ``(batch, time, input_dim)`` float; ``targets`` ``(batch,)`` (class ids, int64,
    or regression values, float)."""

    inputs: torch.Tensor
    targets: torch.Tensor

    def to(self, device: torch.device | str) -> "SequenceBatch":
        """The batch on ``device``."""
        return SequenceBatch(self.inputs.to(device), self.targets.to(device))


class SequenceTask:
    """What the sequence tasks share for the training engine: one readout head on the last
    state, cross-entropy (classification) or RMS (regression) loss, and the test metric
    (accuracy in per cent, or RMS) with the paper's minimal performance."""

    kind = "classification"
    uses_N = False
    defaults = SEQUENCE_DEFAULTS

    @property
    def metric(self) -> str:
        return "accuracy" if self.kind == "classification" else "rms"

    @property
    def n_classes(self) -> int:
        return self.n_outputs

    @property
    def minimal_performance(self) -> float:
        return MINIMAL_PERFORMANCE[self.kind]

    @classmethod
    def from_config(cls, config: dict) -> "SequenceTask":
        """Build from a resolved ``task_options`` section."""
        return cls(**{k: v for k, v in config.items() if k != "task"})

    def config(self) -> dict[str, Any]:
        return {"task": self.name, **self._options}

    def loss(self, logits: torch.Tensor, batch: "SequenceBatch") -> torch.Tensor:
        """Cross-entropy or RMS of head 0 on the last state (``logits`` ``(batch, head, class)``)."""
        out = logits[:, 0]
        if self.kind == "classification":
            return torch.nn.functional.cross_entropy(out, batch.targets)
        return torch.sqrt(torch.mean((out[:, 0] - batch.targets.to(out.dtype)) ** 2))

    def fixed_batch(self, Ns: Sequence[int] | None, size: int, *, generator: torch.Generator,
                    device: torch.device) -> "SequenceBatch":
        """``size`` held-out sequences chosen by ``generator``'s seed (:meth:`held_out`)."""
        return self.held_out(size, seed=int(generator.initial_seed())).to(device)

    def recording_stream(self, trials: int, steps: int, *, p: Any = None,
                         generator: torch.Generator | None = None, device: torch.device | None = None):
        """The input of a recording: the task's sequences one after another, ``(trials, steps,
        input_dim)``, drawn from ``generator``; no labels (``(inputs, None)``)."""
        n = -(-steps // self.length)
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=getattr(generator, "device", "cpu")))
        x = self.held_out(trials * n, seed=seed, replace=True).inputs
        return x.reshape(trials, n * self.length, self.input_dim)[:, :steps].to(device), None

    def _run(self, model: torch.nn.Module, b: "SequenceBatch") -> torch.Tensor:
        dtype = next(model.parameters()).dtype
        H = model(b.inputs.to(dtype), model.initial_state(b.inputs.shape[0]))
        return model.readout(H[:, -1], heads=1)


class AddingProblem(SequenceTask):
    """The adding problem of length D (Hochreiter & Schmidhuber 1997; fading-memory paper Sec. 4).

    Two input channels: values ~ U(0, 1), and a cue that is 1 at one random step of the first half
    and one of the second half. The target is the sum of the two cued values (regression, RMS
    loss; minimal performance RMS 0.05).

    Examples
    --------
    >>> import torch
    >>> from trainers.tasks import AddingProblem
    >>> b = AddingProblem(10).sample(4, generator=torch.Generator().manual_seed(0))
    >>> b.inputs.shape, b.targets.shape
    (torch.Size([4, 10, 2]), torch.Size([4]))
    """

    name = "adding"
    kind = "regression"
    input_dim = 2
    n_outputs = 1
    options = (
        Option("length", 100, "adding problem: sequence length D", int, minimum=2),
        Option("test_size", 1000, "adding problem: size of the fixed test set", int, minimum=1),
    )

    def __init__(self, length: int = 100, *, test_size: int = 1000) -> None:
        self.length = check_positive_int("length", length, minimum=2)
        self.test_size = check_positive_int("test_size", test_size)
        self._options = {"length": self.length, "test_size": self.test_size}
        self._test: dict[str, SequenceBatch] = {}

    def sample(self, batch: int, *, generator: torch.Generator | None = None,
               device: torch.device | str | None = None, split: str = "train") -> SequenceBatch:
        """A fresh batch (the task is infinite; ``split`` is accepted for symmetry)."""
        batch = check_positive_int("batch", batch)
        dev = device if device is not None else (generator.device if generator is not None else "cpu")
        D, half = self.length, self.length // 2
        values = torch.rand(batch, D, generator=generator, device=dev)
        first = torch.randint(0, half, (batch,), generator=generator, device=dev)
        second = torch.randint(half, D, (batch,), generator=generator, device=dev)
        cue = torch.zeros(batch, D, device=dev)
        rows = torch.arange(batch, device=dev)
        cue[rows, first] = 1.0
        cue[rows, second] = 1.0
        target = values[rows, first] + values[rows, second]
        return SequenceBatch(torch.stack([values, cue], -1), target)

    def held_out(self, size: int, *, seed: int = 0, replace: bool = False) -> SequenceBatch:
        """``size`` fresh sequences drawn from ``seed`` (the task is infinite, so ``replace`` changes nothing)."""
        return self.sample(check_positive_int("size", size), generator=torch.Generator().manual_seed(seed))

    def train_batches(self, Ns: Any, *, batch: int, steps: int, generator: torch.Generator,
                      length_generator: torch.Generator, device: torch.device) -> Iterator[SequenceBatch]:
        """One epoch: ``steps`` fresh batches drawn on the CPU stream, moved to ``device``."""
        for _ in range(steps):
            yield self.sample(batch, generator=length_generator).to(device)

    def evaluate(self, model: torch.nn.Module, Ns: Any = None, *, device: torch.device | None = None,
                 **_: Any) -> np.ndarray:
        """RMS error on the fixed test set of ``test_size`` sequences (seed 1), as ``(1,)``."""
        dev = next(model.parameters()).device if device is None else torch.device(device)
        if str(dev) not in self._test:
            self._test[str(dev)] = self.held_out(self.test_size, seed=1).to(dev)
        test = self._test[str(dev)]
        model.eval()
        with torch.no_grad():
            out = self._run(model, test)[:, 0, 0]
            return np.array([float(torch.sqrt(torch.mean((out - test.targets.to(out.dtype)) ** 2)))])


class ImageSequences(SequenceTask):
    """Images read pixel by pixel (sMNIST-style), optionally with a fixed random permutation.

    Parameters
    ----------
    x_train, y_train, x_test, y_test : arrays
        Images ``(n, pixels)`` (or ``(n, h, w)``) scaled to [0, 1], integer labels.
    permute : bool, default=False
        Apply one fixed permutation of the pixel order (psMNIST).
    seed : int, default=0
        Seed of the permutation.
    name : str
    """

    kind = "classification"
    input_dim = 1
    name = "images"
    options: tuple = ()

    def __init__(self, x_train, y_train, x_test, y_test, *, permute: bool = False, seed: int = 0,
                 name: str | None = None) -> None:
        def prep(x):
            x = np.array(x, dtype=np.float32)           # a writable copy
            return x.reshape(x.shape[0], -1)

        self.x = {"train": torch.from_numpy(prep(x_train)), "test": torch.from_numpy(prep(x_test))}
        self.y = {"train": torch.tensor(np.asarray(y_train, dtype=np.int64)),
                  "test": torch.tensor(np.asarray(y_test, dtype=np.int64))}
        for split in ("train", "test"):
            if self.x[split].shape[0] != self.y[split].shape[0]:
                raise ValueError(f"{split}: {self.x[split].shape[0]} images but {self.y[split].shape[0]} labels.")
        self.length = self.x["train"].shape[1]
        self.n_outputs = int(max(self.y["train"].max(), self.y["test"].max())) + 1
        self.permutation = np.random.default_rng(seed).permutation(self.length) if permute else None
        if name is not None:
            self.name = name
        self._options: dict[str, Any] = {}

    def size(self, split: str) -> int:
        return self.x[split].shape[0]

    def batches(self, split: str, batch: int, *, generator: torch.Generator | None = None,
                device: torch.device | str | None = None, shuffle: bool = True):
        """Iterate over the split in batches (shuffled with ``generator`` when ``shuffle``)."""
        n = self.size(split)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        for i in range(0, n, batch):
            idx = order[i:i + batch]
            x = self.x[split][idx]
            if self.permutation is not None:
                x = x[:, torch.as_tensor(self.permutation)]
            yield SequenceBatch(x.unsqueeze(-1).to(device or "cpu"), self.y[split][idx].to(device or "cpu"))

    def held_out(self, size: int, *, seed: int = 0, replace: bool = False) -> SequenceBatch:
        """A seeded random subset of ``size`` test images (all of them if fewer; ``replace``:
        exactly ``size``, drawn with replacement)."""
        size = check_positive_int("size", size)
        n = self.size("test")
        gen = torch.Generator().manual_seed(seed)
        idx = torch.randint(0, n, (size,), generator=gen) if replace else torch.randperm(n, generator=gen)[: min(size, n)]
        x = self.x["test"][idx]
        if self.permutation is not None:
            x = x[:, torch.as_tensor(self.permutation)]
        return SequenceBatch(x.unsqueeze(-1), self.y["test"][idx])

    def train_batches(self, Ns: Any, *, batch: int, steps: int, generator: torch.Generator,
                      length_generator: torch.Generator, device: torch.device) -> Iterator[SequenceBatch]:
        """One epoch: a pass over the training images, shuffled by the CPU stream (``steps`` is
        not used)."""
        return self.batches("train", batch, generator=length_generator, device=device)

    def evaluate(self, model: torch.nn.Module, Ns: Any = None, *, device: torch.device | None = None,
                 **_: Any) -> np.ndarray:
        """Accuracy (per cent) on the whole test split, as ``(1,)``."""
        dev = next(model.parameters()).device if device is None else torch.device(device)
        model.eval()
        correct = 0
        with torch.no_grad():
            for b in self.batches("test", 1024, device=dev, shuffle=False):
                correct += int((self._run(model, b)[:, 0].argmax(-1) == b.targets).sum())
        return np.array([100.0 * correct / self.size("test")])


def _digits_arrays(test_fraction: float = 0.25) -> tuple[np.ndarray, ...]:
    from dynatools.data import shipped_path

    path = shipped_path("digits_8x8.npz")   # the installed copy, or $DYNATOOLS_DATASETS's
    with np.load(path) as d:
        x, y = d["images"].astype(np.float32) / 16.0, d["labels"].astype(np.int64)
    order = np.random.default_rng(12345).permutation(len(y))
    n_test = int(round(test_fraction * len(y)))
    te, tr = order[:n_test], order[n_test:]
    return x[tr], y[tr], x[te], y[te]


PERMUTATION_SEED = Option("permutation_seed", 0, "permuted tasks: seed of the fixed pixel permutation", int,
                          minimum=0)
DATA = Option("data", None, "smnist, psmnist: MNIST folder or npz; scifar10: CIFAR-10 npz (nothing is "
              "downloaded)", str, nullable=True, path=True)


class _RegisteredImages(ImageSequences):
    """A registered image task: its arrays come from ``load(path)`` (``data`` names the local
    file; shipped data when ``what`` is empty) and ``permuted`` applies one fixed permutation."""

    permuted = False
    what = ""                                # what ``data`` must point to ("" = shipped data)

    @staticmethod
    def load(path: Path | None) -> tuple[np.ndarray, ...]:
        raise NotImplementedError

    def __init__(self, data: str | os.PathLike | None = None, *, permutation_seed: int = 0) -> None:
        path = _needs_data(self.name, data, self.what) if self.what else None
        super().__init__(*self.load(path), permute=self.permuted, seed=permutation_seed)
        self._options = {} if path is None else {"data": str(path)}
        if self.permuted:
            self._options["permutation_seed"] = int(permutation_seed)


class Digits(_RegisteredImages):
    """The shipped 8x8 digits (1797 images, ``dynatools/data/digits_8x8.npz``) as 64-step sequences,
    split into train/test with a fixed seed; no download needed (used by tests and the demo).

    Examples
    --------
    >>> from trainers.tasks import Digits
    >>> task = Digits()
    >>> task.length, task.n_outputs, task.size("test")
    (64, 10, 449)
    """

    name = "digits"
    options = ()
    load = staticmethod(lambda path: _digits_arrays())


class PermutedDigits(Digits):
    """The shipped 8x8 digits with one fixed random permutation of the pixel order."""

    name = "pdigits"
    options = (PERMUTATION_SEED,)
    permuted = True


_MNIST_FILES = {"x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
                "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte"}


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _needs_data(name: str, data: Any, what: str) -> Path:
    if data is None:
        raise ValueError(f"task {name!r} reads local files: pass data= (the CLI's --data) with the path "
                         f"to the {what}; nothing is downloaded.")
    return Path(data)


def _mnist_arrays(path: Path) -> tuple[np.ndarray, ...]:
    how = ("download the four files from http://yann.lecun.com/exdb/mnist/ (or a mirror) into one "
           "folder, or save an npz with x_train, y_train, x_test, y_test, and pass its path")
    if path.suffix == ".npz" and path.is_file():
        with np.load(path) as d:
            arrays = {k: d[k] for k in _MNIST_FILES}
    elif path.is_dir():
        arrays = {}
        for key, stem in _MNIST_FILES.items():
            found = [p for p in (path / stem, path / (stem + ".gz")) if p.is_file()]
            if not found:
                raise FileNotFoundError(f"MNIST file {stem}[.gz] not found in {path}; {how}.")
            arrays[key] = _read_idx(found[0])
    else:
        raise FileNotFoundError(f"no MNIST data at {str(path)!r}; {how}.")
    return arrays["x_train"] / 255.0, arrays["y_train"], arrays["x_test"] / 255.0, arrays["y_test"]


class SequentialMNIST(_RegisteredImages):
    """Sequential MNIST (784 steps) from local files.

    ``data`` is a folder with the four IDX files (``train-images-idx3-ubyte`` etc., optionally
    ``.gz``) or an ``.npz`` with ``x_train, y_train, x_test, y_test``. Nothing is downloaded.
    """

    name = "smnist"
    options = (DATA,)
    what = "MNIST folder or npz"
    load = staticmethod(lambda path: _mnist_arrays(path))


class PermutedMNIST(SequentialMNIST):
    """Permuted sequential MNIST: :class:`SequentialMNIST` with one fixed pixel permutation."""

    name = "psmnist"
    options = (DATA, PERMUTATION_SEED)
    permuted = True


class SequentialCIFAR10(_RegisteredImages):
    """Grayscale sequential CIFAR-10 (1024 steps) from a local ``.npz`` with ``x_train`` (n, 32, 32,
    3) uint8, ``y_train``, ``x_test``, ``y_test``. Gray = 0.299 R + 0.587 G + 0.114 B."""

    name = "scifar10"
    options = (DATA,)
    what = "CIFAR-10 npz"
    load = staticmethod(lambda path: _cifar_arrays(path))


def _cifar_arrays(path: Path) -> tuple[np.ndarray, ...]:
    if not (path.suffix == ".npz" and path.is_file()):
        raise FileNotFoundError(f"no CIFAR-10 npz at {str(path)!r}; convert the python batches from "
                                f"https://www.cs.toronto.edu/~kriz/cifar.html into an npz with x_train "
                                f"(n, 32, 32, 3), y_train, x_test, y_test and pass its path.")
    with np.load(path) as d:
        gray = {k: (d[k].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)) / 255.0
                for k in ("x_train", "x_test")}
        return gray["x_train"], d["y_train"].reshape(-1), gray["x_test"], d["y_test"].reshape(-1)
