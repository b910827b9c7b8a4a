"""Sequence benchmarks of the fading-memory paper (Sec. 4): the adding problem, sequential and
permuted sequential images (MNIST, grayscale CIFAR-10) and the shipped 8x8 digits.

Nothing is downloaded at run time: MNIST and CIFAR-10 are read from files the user points to.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dynatools._validation import check_positive_int


@dataclass(frozen=True)
class SequenceBatch:
    """``inputs`` ``(batch, time, input_dim)`` float; ``targets`` ``(batch,)`` (class ids, int64,
    or regression values, float)."""

    inputs: torch.Tensor
    targets: torch.Tensor

    def to(self, device: torch.device | str) -> "SequenceBatch":
        """The batch on ``device``."""
        return SequenceBatch(self.inputs.to(device), self.targets.to(device))


class AddingProblem:
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

    def __init__(self, length: int = 100) -> None:
        self.length = check_positive_int("length", length, minimum=2)

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


class ImageSequences:
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

    def __init__(self, x_train, y_train, x_test, y_test, *, permute: bool = False, seed: int = 0,
                 name: str = "images") -> None:
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
        self.name = ("p" if permute else "") + name

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


def _datasets_dir() -> Path:
    env = os.environ.get("DYNATOOLS_DATASETS")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "datasets"


def digits(*, permute: bool = False, seed: int = 0, test_fraction: float = 0.25) -> ImageSequences:
    """The shipped 8x8 digits (1797 images, ``datasets/digits_8x8.npz``) as 64-step sequences,
    split into train/test with a fixed seed; no download needed (used by tests and the demo)."""
    path = _datasets_dir() / "digits_8x8.npz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; run from a source checkout or set DYNATOOLS_DATASETS "
                                f"(regenerate with: python datasets/make_digits.py).")
    with np.load(path) as d:
        x, y = d["images"].astype(np.float32) / 16.0, d["labels"].astype(np.int64)
    order = np.random.default_rng(12345).permutation(len(y))
    n_test = int(round(test_fraction * len(y)))
    te, tr = order[:n_test], order[n_test:]
    return ImageSequences(x[tr], y[tr], x[te], y[te], permute=permute, seed=seed, name="digits")


_MNIST_FILES = {"x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
                "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte"}


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def mnist(path: str | os.PathLike, *, permute: bool = False, seed: int = 0) -> ImageSequences:
    """Sequential (``permute=False``) or permuted sequential MNIST from local files.

    ``path`` is a folder with the four IDX files (``train-images-idx3-ubyte`` etc., optionally
    ``.gz``) or an ``.npz`` with ``x_train, y_train, x_test, y_test``. Nothing is downloaded.
    """
    path = Path(path)
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
    return ImageSequences(arrays["x_train"] / 255.0, arrays["y_train"], arrays["x_test"] / 255.0,
                          arrays["y_test"], permute=permute, seed=seed, name="smnist")


def cifar10_gray(path: str | os.PathLike) -> ImageSequences:
    """Grayscale sequential CIFAR-10 (1024 steps) from a local ``.npz`` with ``x_train`` (n, 32, 32,
    3) uint8, ``y_train``, ``x_test``, ``y_test``. Gray = 0.299 R + 0.587 G + 0.114 B."""
    path = Path(path)
    if not (path.suffix == ".npz" and path.is_file()):
        raise FileNotFoundError(f"no CIFAR-10 npz at {str(path)!r}; convert the python batches from "
                                f"https://www.cs.toronto.edu/~kriz/cifar.html into an npz with x_train "
                                f"(n, 32, 32, 3), y_train, x_test, y_test and pass its path.")
    with np.load(path) as d:
        gray = {k: (d[k].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)) / 255.0
                for k in ("x_train", "x_test")}
        return ImageSequences(gray["x_train"], d["y_train"].reshape(-1), gray["x_test"],
                              d["y_test"].reshape(-1), name="scifar10")
