"""N-parity and N-DMS: the binary memory tasks of the timescale paper (Sec. 3.1, App. C, E).

Batches are drawn on the target device in a few tensor operations (no loop over sequences):
one length per batch, bits as a ``(batch, length)`` tensor, labels for every requested N at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from dynatools.utils import check_choice, check_positive_int
from trainers.registry import Option

ENCODINGS = ("01", "pm1")


@dataclass(frozen=True)
class TaskBatch:
    """One batch of a binary task.

    Attributes
    ----------
    inputs : torch.Tensor
        ``(batch, length * k, 1)`` float, the network's input (each bit held for k steps).
    labels : torch.Tensor
        ``(batch, len(Ns))`` int64, the label of each N at the end of the sequence.
    bits : torch.Tensor
        ``(batch, length)`` float 0/1, the underlying bit sequence.
    Ns : tuple of int
        The Ns whose labels ``labels`` holds, in column order.
    """

    inputs: torch.Tensor
    labels: torch.Tensor
    bits: torch.Tensor
    Ns: tuple[int, ...]


def check_Ns(Ns: Sequence[int]) -> tuple[int, ...]:
    """Validate a list of task sizes: integers >= 2, at least one."""
    Ns = tuple(Ns)
    if any(isinstance(n, bool) or not float(n).is_integer() for n in Ns):
        raise ValueError(f"task sizes must be integers; found {list(Ns)}.")
    Ns = tuple(int(n) for n in Ns)
    if not Ns:
        raise ValueError("Ns is empty; give at least one task size N >= 2.")
    bad = [n for n in Ns if n < 2]
    if bad:
        raise ValueError(f"task sizes must be N >= 2 (N = 1 needs no memory); found {bad}.")
    return Ns


class BinaryTask:
    """Base class: a stream of random bits and a label per N computed from its last bits.

    Parameters
    ----------
    k : int, default=1
        Input time-rescaling (App. E): each bit is held for ``k`` consecutive steps.
    encoding : {"01", "pm1"}, default="01"
        Input values {0, 1} (the paper's leaky RNN) or {-1, +1} (zero-mean, used for the GRU
        and LSTM in App. C). Labels are unaffected.
    """

    name = ""
    #: probability of a 1: None draws p ~ U(0, 1) per sequence.
    p_one: float | None = 0.5
    options = (
        Option("k", 1, "input time-rescaling: each bit held k steps (App. E)", int, minimum=1),
        Option("encoding", "01", "input values: 01 or pm1 (default: the model's; 01 leaky, pm1 gru/lstm)",
               str, ENCODINGS),
    )
    #: Timescale paper Sec. 3.2 and the authors' code: 500 units, batches of 256, 600 steps per
    #: epoch, accuracy on 50 fresh batches, the multi-head curriculum, at most 1000 epochs.
    defaults = {"model": "leaky", "curriculum": "multi-head", "units": 500, "batch": 256,
                "steps_per_epoch": 600, "eval_batches": 50, "max_epochs": 1000}
    #: the task's answers depend on a task size N (curricula over N apply)
    uses_N = True
    #: recordings drive the network with random bits whose probability of a 1 is ``p``
    bit_inputs = True
    input_dim = 1
    n_classes = 2
    metric = "accuracy"
    #: accuracy (per cent) that counts as having learnt something (none for the binary tasks:
    #: the curricula decide when a head is solved)
    minimal_performance: float | None = None

    def __init__(self, *, k: int = 1, encoding: str = "01") -> None:
        self.k = check_positive_int("k", k)
        self.encoding = check_choice("encoding", encoding, ENCODINGS)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(k={self.k}, encoding={self.encoding!r})"

    @classmethod
    def from_config(cls, config: dict) -> "BinaryTask":
        """Build from a resolved ``task_options`` section (``k``, ``encoding``)."""
        return cls(**{k: v for k, v in config.items() if k != "task"})

    def config(self) -> dict:
        return {"task": self.name, "k": self.k, "encoding": self.encoding}

    # ------------------------------------------------------------------ engine protocol
    def train_batches(self, Ns: Sequence[int], *, batch: int, steps: int, generator: torch.Generator,
                      length_generator: torch.Generator, device: torch.device) -> Iterator[TaskBatch]:
        """One epoch: ``steps`` fresh batches labelled for every N in ``Ns``."""
        for _ in range(steps):
            yield self.sample(Ns, batch, generator=generator, device=device, length_generator=length_generator)

    def loss(self, logits: torch.Tensor, batch: TaskBatch) -> torch.Tensor:
        """Cross-entropy on the last step, averaged over sequences and summed over the active
        heads (timescale paper Sec. 3.2); ``logits`` is ``(batch, head, class)``."""
        return torch.nn.functional.cross_entropy(logits.transpose(1, 2), batch.labels,
                                                 reduction="none").mean(0).sum()

    def evaluate(self, model: torch.nn.Module, Ns: Sequence[int], *, batch: int = 256, batches: int = 50,
                 generator: torch.Generator | None = None, length_generator: torch.Generator | None = None,
                 device: torch.device | None = None) -> np.ndarray:
        """Accuracy (per cent) of heads ``0..len(Ns)-1`` on ``batches`` fresh batches, head ``i``
        answering ``Ns[i]``: readout on the last step, class = argmax (the authors' 50 x 256)."""
        batches = check_positive_int("batches", batches)
        batch = check_positive_int("batch", batch)
        dev = next(model.parameters()).device if device is None else torch.device(device)
        correct = torch.zeros(len(Ns), device=dev)
        with torch.no_grad():
            for _ in range(batches):
                b = self.sample(Ns, batch, generator=generator, device=dev, length_generator=length_generator)
                H = model(b.inputs, model.initial_state(batch, generator=generator))
                pred = model.readout(H[:, -1], heads=len(Ns)).argmax(-1)
                correct += (pred == b.labels).sum(0)
        return (100.0 * correct / (batches * batch)).cpu().numpy()

    def recording_stream(self, trials: int, steps: int, *, p: float | torch.Tensor = 0.5,
                         generator: torch.Generator | None = None, device: torch.device | None = None):
        """The input of a recording: ``(inputs, labels)``, inputs ``(trials, steps, 1)`` from
        Bernoulli(p) bits (``p`` a float or ``(trials, 1)``), each held k steps and encoded;
        ``labels(Ns, t)`` gives the label of every N after the bit seen at steps ``t``."""
        n_bits = -(-steps // self.k)
        bits = (torch.rand(trials, n_bits, generator=generator, device=device) < p).float()
        return self.encode(bits)[:, :steps], lambda Ns, t: self.labels_at(bits, Ns, t // self.k)

    def fixed_batch(self, Ns: Sequence[int], size: int, *, generator: torch.Generator,
                    device: torch.device) -> TaskBatch:
        """One batch drawn from ``generator`` (the loss closure's fixed batch)."""
        return self.sample(Ns, size, generator=generator, device=device)

    @staticmethod
    def length_range(n_max: int) -> tuple[int, int]:
        """Sequence lengths (in bits) are uniform in ``[n_max + 2, 4 * n_max + 2)``, as in the
        authors' DMS generator (the paper, Sec. 3.1: "between N + 2 and 4N")."""
        return n_max + 2, 4 * n_max + 2

    def draw_bits(self, batch: int, length: int, *, generator: torch.Generator | None = None,
                  device: torch.device | str | None = None) -> torch.Tensor:
        """Random bits ``(batch, length)`` as float 0/1."""
        u = torch.rand(batch, length, generator=generator, device=device)
        if self.p_one is None:
            p = torch.rand(batch, 1, generator=generator, device=device)
        else:
            p = self.p_one
        return (u < p).float()

    def labels_at(self, bits: torch.Tensor, Ns: Sequence[int], positions: torch.Tensor) -> torch.Tensor:
        """Labels after bit ``positions[j]`` (0-based) for every N: ``(batch, len(positions),
        len(Ns))`` int64, -1 where fewer bits than the label needs have been seen."""
        Ns = check_Ns(Ns)
        positions = torch.as_tensor(positions, device=bits.device).long()
        n = torch.tensor(Ns, device=bits.device)
        first = positions[:, None] - n[None, :] + 1                    # first bit of the window
        valid = first >= 0
        out = self._window_labels(bits, positions, first.clamp(min=0), n)
        return torch.where(valid, out, torch.full_like(out, -1))

    def _window_labels(self, bits, last, first, n) -> torch.Tensor:
        raise NotImplementedError

    def labels(self, bits: torch.Tensor, Ns: Sequence[int]) -> torch.Tensor:
        """Labels ``(batch, len(Ns))`` at the end of ``bits`` (``(batch, length)``, 0/1)."""
        L = bits.shape[1]
        if max(check_Ns(Ns)) > L:
            raise ValueError(f"sequence of {L} bits is shorter than N = {max(Ns)}.")
        return self.labels_at(bits, Ns, torch.tensor([L - 1]))[:, 0]

    def labels_in_time(self, bits: torch.Tensor, Ns: Sequence[int]) -> torch.Tensor:
        """Labels after every bit, ``(batch, length, len(Ns))`` int8; -1 where fewer than the
        bits a label needs have been seen."""
        return self.labels_at(bits, Ns, torch.arange(bits.shape[1])).to(torch.int8)

    def encode(self, bits: torch.Tensor) -> torch.Tensor:
        """Network input ``(batch, length * k, 1)`` from bits: rescaled by k, then encoded."""
        x = bits if self.k == 1 else bits.repeat_interleave(self.k, dim=1)
        if self.encoding == "pm1":
            x = 2.0 * x - 1.0
        return x.unsqueeze(-1)

    def sample(self, Ns: Sequence[int], batch: int, *, generator: torch.Generator | None = None,
               device: torch.device | str | None = None, length: int | None = None,
               length_generator: torch.Generator | None = None) -> TaskBatch:
        """Draw one batch with labels for every N in ``Ns``.

        Parameters
        ----------
        Ns : sequence of int
            Task sizes to label (e.g. the active heads of a curriculum).
        batch : int
            Number of sequences.
        generator : torch.Generator, optional
            Random source; it must live on ``device``. Default: PyTorch's global generator.
        device : torch.device or str, optional
            Where to draw the batch (default: the generator's device, else CPU).
        length : int, optional
            Sequence length in bits; default uniform in :meth:`length_range` of ``max(Ns)``.
        length_generator : torch.Generator, optional
            CPU generator for the length (default ``generator``). With a CUDA ``generator``, pass
            one: drawing the length on the GPU makes the CPU wait for the GPU at every batch.

        Examples
        --------
        >>> import torch
        >>> from trainers.tasks import Parity
        >>> b = Parity().sample([2, 3], 4, generator=torch.Generator().manual_seed(0))
        >>> b.inputs.shape[0], b.labels.shape
        (4, torch.Size([4, 2]))
        """
        Ns = check_Ns(Ns)
        batch = check_positive_int("batch", batch)
        if device is None:
            device = generator.device if generator is not None else torch.device("cpu")
        if length is None:
            lo, hi = self.length_range(max(Ns))
            lg = length_generator if length_generator is not None else generator
            length = int(torch.randint(lo, hi, (1,), generator=lg,
                                       device=lg.device if lg is not None else "cpu").item())
        elif length < max(Ns):
            raise ValueError(f"length={length} is shorter than the largest N={max(Ns)}.")
        bits = self.draw_bits(batch, length, generator=generator, device=device)
        return TaskBatch(self.encode(bits), self.labels(bits, Ns), bits, Ns)


class Parity(BinaryTask):
    """N-parity: the label is the parity (XOR) of the last N bits (Sec. 3.1).

    Bits are Bernoulli(p) with p ~ U(0, 1) drawn per sequence (the authors' per-sequence
    generator; their batched one drew one p per batch).
    """

    name = "parity"
    p_one = None

    def _window_labels(self, bits, last, first, n):
        cs = torch.nn.functional.pad(bits.long().cumsum(1), (1, 0))  # cs[:, j] = sum(bits[:, :j]), exact
        return (cs[:, last + 1][:, :, None] - cs[:, first]) % 2


class DMS(BinaryTask):
    """N-delayed match-to-sample: the label is 1 when the current bit equals the bit N - 1 steps
    earlier, i.e. bit t equals bit t - N + 1 (Sec. 3.1). Bits are Bernoulli(0.5)."""

    name = "dms"
    p_one = 0.5

    def _window_labels(self, bits, last, first, n):
        return (bits[:, last][:, :, None] == bits[:, first]).long()
