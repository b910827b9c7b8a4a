"""Binary tasks (N-parity, N-DMS): labels (at the end, in time, at given positions) against a
plain-Python per-sequence computation, input rescaling and encoding, the sequence-length range,
the per-sequence Bernoulli rate, reproducibility, devices, errors and the ``TASKS`` registry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainers.tasks import DMS, TASKS, BinaryTask, Parity, TaskBatch

TASK_CLASSES = [Parity, DMS]


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------------------------
# Independent reference: one sequence at a time, one bit at a time.
def _parity_ref(seq: list[int], n: int) -> int:
    """Parity of the last n bits, by counting ones."""
    ones = 0
    for b in seq[len(seq) - n:]:
        if b == 1:
            ones += 1
    return ones % 2


def _dms_ref(seq: list[int], n: int) -> int:
    """1 when the current (last) bit equals the bit n - 1 steps earlier."""
    t = len(seq) - 1
    return 1 if seq[t] == seq[t - n + 1] else 0


REF = {Parity: _parity_ref, DMS: _dms_ref}


def _ref_labels(cls, bits: torch.Tensor, Ns) -> list[list[int]]:
    rows = []
    for seq in bits.tolist():
        seq = [int(b) for b in seq]
        rows.append([REF[cls](seq, n) for n in Ns])
    return rows


def _ref_labels_in_time(cls, bits: torch.Tensor, Ns) -> list[list[list[int]]]:
    out = []
    for seq in bits.tolist():
        seq = [int(b) for b in seq]
        per_t = []
        for t in range(len(seq)):
            seen = seq[: t + 1]
            per_t.append([REF[cls](seen, n) if len(seen) >= n else -1 for n in Ns])
        out.append(per_t)
    return out


# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", TASK_CLASSES)
def test_hand_worked_labels(cls):
    # bits 1 0 1 1: parity of last 2, 3, 4 bits = 0, 0, 1; DMS compares bit 3 with bits 2, 1, 0.
    bits = torch.tensor([[1.0, 0.0, 1.0, 1.0]])
    expected = {Parity: [[0, 0, 1]], DMS: [[1, 0, 1]]}[cls]
    assert cls().labels(bits, [2, 3, 4]).tolist() == expected
    in_time = cls().labels_in_time(bits, [2, 4])[0].tolist()
    expected_t = {Parity: [[-1, -1], [1, -1], [1, -1], [0, 1]],
                  DMS: [[-1, -1], [0, -1], [0, -1], [1, 1]]}[cls]
    assert in_time == expected_t


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("Ns", [[2], [2, 3, 4, 5], [3, 7, 10], [10, 4]])
@pytest.mark.parametrize("cls", TASK_CLASSES)
def test_labels_match_per_sequence_loop(cls, Ns, seed):
    b = cls().sample(Ns, 16, generator=_gen(seed))
    assert isinstance(b, TaskBatch)
    assert b.Ns == tuple(Ns)
    assert b.labels.dtype == torch.int64
    assert b.labels.shape == (16, len(Ns))
    assert b.labels.tolist() == _ref_labels(cls, b.bits, Ns)
    # labels are also recomputable from the bits by the public method
    assert b.labels.tolist() == cls().labels(b.bits, Ns).tolist()


@pytest.mark.parametrize("seed", [0, 5])
@pytest.mark.parametrize("cls", TASK_CLASSES)
def test_labels_when_N_equals_the_whole_sequence(cls, seed):
    # length == max(Ns): the largest N's window is the entire sequence
    Ns = [2, 6, 9]
    b = cls().sample(Ns, 32, generator=_gen(seed), length=9)
    assert b.bits.shape == (32, 9)
    assert b.labels.tolist() == _ref_labels(cls, b.bits, Ns)
    if cls is Parity:
        assert b.labels[:, 2].tolist() == [int(s) % 2 for s in b.bits.sum(1).tolist()]
    else:
        assert b.labels[:, 2].tolist() == [int(r[0] == r[-1]) for r in b.bits.tolist()]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("Ns", [[2], [2, 5, 8], [8, 3]])
@pytest.mark.parametrize("cls", TASK_CLASSES)
def test_labels_in_time_match_per_sequence_loop(cls, Ns, seed):
    g = _gen(seed)
    bits = cls().draw_bits(8, 20, generator=g)
    lit = cls().labels_in_time(bits, Ns)
    assert lit.dtype == torch.int8
    assert lit.shape == (8, 20, len(Ns))
    ref = _ref_labels_in_time(cls, bits, Ns)
    assert lit.tolist() == ref
    # -1 exactly before N bits have been seen
    for j, n in enumerate(Ns):
        assert (lit[:, : n - 1, j] == -1).all()
        assert (lit[:, n - 1:, j] >= 0).all()
    # the last time step equals the end-of-sequence labels
    assert lit[:, -1, :].long().tolist() == cls().labels(bits, Ns).tolist()


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("cls", TASK_CLASSES)
def test_labels_at_positions_match_per_sequence_loop(cls, seed):
    Ns = [2, 5, 9]
    bits = cls().draw_bits(6, 30, generator=_gen(seed))
    positions = [0, 1, 3, 4, 8, 17, 29]
    got = cls().labels_at(bits, Ns, torch.tensor(positions))
    assert got.shape == (6, len(positions), len(Ns))
    ref = _ref_labels_in_time(cls, bits, Ns)
    assert got.tolist() == [[row[p] for p in positions] for row in ref]


# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("encoding", ["01", "pm1"])
@pytest.mark.parametrize("k", [1, 2, 5])
@pytest.mark.parametrize("cls", TASK_CLASSES)
def test_rescaled_and_encoded_inputs(cls, k, encoding):
    Ns = [2, 4]
    b = cls(k=k, encoding=encoding).sample(Ns, 6, generator=_gen(11))
    n_bits = b.bits.shape[1]
    assert b.inputs.shape == (6, k * n_bits, 1)
    assert b.inputs.dtype == torch.float32
    low, high = (0.0, 1.0) if encoding == "01" else (-1.0, 1.0)
    x = b.inputs[..., 0].tolist()
    for i, seq in enumerate(b.bits.tolist()):
        for t, bit in enumerate(seq):
            want = high if bit == 1.0 else low
            held = x[i][t * k:(t + 1) * k]
            assert held == [want] * k, (i, t)
    assert set(np.unique(b.inputs.numpy()).tolist()) <= {low, high}


@pytest.mark.parametrize("cls", TASK_CLASSES)
def test_labels_do_not_depend_on_k_or_encoding(cls):
    Ns = [2, 3, 6]
    ref = cls().sample(Ns, 12, generator=_gen(4))
    for k in (1, 2, 5):
        for enc in ("01", "pm1"):
            b = cls(k=k, encoding=enc).sample(Ns, 12, generator=_gen(4))
            assert torch.equal(b.bits, ref.bits)
            assert torch.equal(b.labels, ref.labels)
            assert b.labels.tolist() == _ref_labels(cls, b.bits, Ns)


# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", TASK_CLASSES)
def test_length_range_small(cls):
    Ns = [2, 4]                       # lengths uniform in [6, 18)
    g = _gen(7)
    task = cls(k=2)
    lengths = []
    for _ in range(600):
        b = task.sample(Ns, 1, generator=g)
        lengths.append(b.bits.shape[1])
        assert b.inputs.shape[1] == 2 * b.bits.shape[1]
    assert min(lengths) == 6 and max(lengths) == 17
    assert set(lengths) == set(range(6, 18))


@pytest.mark.parametrize("cls", TASK_CLASSES)
def test_length_range_reaches_both_ends(cls):
    Ns = [25, 3]                      # lengths uniform in [27, 102)
    g = _gen(8)
    lengths = [cls().sample(Ns, 1, generator=g).bits.shape[1] for _ in range(2500)]
    assert all(27 <= n < 102 for n in lengths)
    assert min(lengths) == 27
    assert max(lengths) == 101
    assert BinaryTask.length_range(25) == (27, 102)


@pytest.mark.parametrize("cls", TASK_CLASSES)
def test_length_override(cls):
    b = cls(k=3).sample([2, 5], 4, generator=_gen(0), length=40)
    assert b.bits.shape == (4, 40)
    assert b.inputs.shape == (4, 120, 1)
    with pytest.raises(ValueError, match=r"length=4 is shorter than the largest N=5"):
        cls().sample([2, 5], 4, generator=_gen(0), length=4)


# ----------------------------------------------------------------------------------------------
def test_parity_draws_a_rate_per_sequence():
    b = Parity().sample([2], 256, generator=_gen(3), length=2000)
    frac = b.bits.mean(1).numpy()
    assert frac.std() > 0.2            # U(0, 1) has std 0.289
    assert frac.min() < 0.1 and frac.max() > 0.9
    assert 0.4 < frac.mean() < 0.6


def test_dms_rate_is_one_half():
    b = DMS().sample([2], 256, generator=_gen(3), length=2000)
    frac = b.bits.mean(1).numpy()
    assert np.abs(frac - 0.5).max() < 0.06   # binomial std 0.011
    assert frac.std() < 0.03


# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", TASK_CLASSES)
def test_same_seed_same_batch(cls):
    a = cls(k=2).sample([2, 7], 8, generator=_gen(42))
    b = cls(k=2).sample([2, 7], 8, generator=_gen(42))
    c = cls(k=2).sample([2, 7], 8, generator=_gen(43))
    assert torch.equal(a.inputs, b.inputs)
    assert torch.equal(a.bits, b.bits)
    assert torch.equal(a.labels, b.labels)
    assert a.bits.shape != c.bits.shape or not torch.equal(a.bits, c.bits)


@pytest.mark.parametrize("cls", TASK_CLASSES)
def test_batch_on_the_device(cls, device):
    """device: the fixture (cpu, cuda if present). The batch is where device= says, else where the
    generator is, and its labels are the reference's."""
    b = cls().sample([2, 3], 4, generator=torch.Generator(device=device).manual_seed(0), device=device)
    for t in (b.inputs, b.labels, b.bits):
        assert t.device.type == device
    Ns = [2, 5]
    b = cls(k=2).sample(Ns, 8, generator=torch.Generator(device=device).manual_seed(0))
    for t in (b.inputs, b.labels, b.bits):
        assert t.device.type == device
    assert b.labels.cpu().tolist() == _ref_labels(cls, b.bits.cpu(), Ns)
    assert cls().labels_in_time(b.bits, Ns).cpu().tolist() == \
        _ref_labels_in_time(cls, b.bits.cpu(), Ns)


# ----------------------------------------------------------------------------------------------
ERRORS = [
    ("N < 2", lambda cls: cls().sample([1, 3], 4), r"N >= 2"),
    ("N = 0", lambda cls: cls().sample([0], 4), r"N >= 2"),
    ("empty Ns", lambda cls: cls().sample([], 4), r"Ns is empty"),
    ("batch 0", lambda cls: cls().sample([2], 0), r"batch must be an integer >= 1"),
    ("batch < 0", lambda cls: cls().sample([2], -3), r"batch must be an integer >= 1"),
    ("k 0", lambda cls: cls(k=0), r"k must be an integer >= 1"),
    ("k < 0", lambda cls: cls(k=-2), r"k must be an integer >= 1"),
    ("encoding", lambda cls: cls(encoding="bipolar"), r"encoding='bipolar' is not a valid option"),
    ("labels N < 2", lambda cls: cls().labels(torch.zeros(2, 5), [1]), r"N >= 2"),
    ("labels N > length", lambda cls: cls().labels(torch.zeros(2, 5), [2, 7]),
     r"sequence of 5 bits is shorter than N = 7"),
    ("labels_in_time empty", lambda cls: cls().labels_in_time(torch.zeros(2, 5), []),
     r"Ns is empty"),
]


@pytest.mark.parametrize("cls", TASK_CLASSES)
@pytest.mark.parametrize("call, match", [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_bad_input_raises(cls, call, match):
    with pytest.raises(ValueError, match=match):
        call(cls)


def test_tasks_registry():
    assert TASKS["parity"] is Parity and TASKS["dms"] is DMS
    assert list(TASKS) == ["parity", "dms", "adding", "digits", "pdigits", "smnist", "psmnist", "scifar10",
                           "go", "rtgo", "dgo", "anti", "rtanti", "danti", "dm", "dmd", "msdm", "ddm",
                           "ddmd", "msddm", "dms-cog", "dnms", "dmc", "dnmc", "mtwm", "intwm", "rule-reversal"]
    assert Parity.name == "parity" and DMS.name == "dms"
    assert Parity().config() == {"task": "parity", "k": 1, "encoding": "01"}
    assert DMS(k=3, encoding="pm1").config() == {"task": "dms", "k": 3, "encoding": "pm1"}
