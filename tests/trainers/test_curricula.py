"""Curricula: the sequence of active Ns under scripted per-head accuracies for every curriculum,
the authors' "solved" rule (mean > 98% and newest head > 98%), head counts and invalid
parameters."""

from __future__ import annotations

import numpy as np
import pytest

from trainers.curricula import (CURRICULA, THRESHOLD, AllHeads, Fixed, Growth, MultiHead, NoCurriculum,
                                Percentile, SingleHead, Sliding)

P = 99.5   # a passing head
F = 60.0   # a failing head


def drive(cur, script):
    """Simulated training loop: one scripted accuracy array per epoch.

    Returns the active Ns after every epoch (the first entry is ``initial()``) and whether the
    curriculum finished. The script must not run past the end of the curriculum.
    """
    Ns = cur.initial()
    history = [list(Ns)]
    done = False
    for epoch, acc in enumerate(script):
        assert not done, f"script continues after the curriculum finished (epoch {epoch})"
        assert len(acc) == len(Ns), f"epoch {epoch}: {len(acc)} accuracies for Ns={Ns}"
        if cur.solved(np.asarray(acc)):
            if cur.finished(Ns):
                done = True
            else:
                Ns = cur.next(Ns)
        history.append(list(Ns))
    return history, done


def r(a, b):
    return list(range(a, b + 1))


# ----------------------------------------------------------------------------------------------
def test_registry():
    assert dict(CURRICULA) == {"none": NoCurriculum, "single-head": SingleHead, "multi-head": MultiHead,
                               "sliding": Sliding, "all-heads": AllHeads, "growth": Growth, "fixed": Fixed,
                               "percentile": Percentile}
    assert THRESHOLD == 98.0
    with pytest.raises(ValueError, match=r"curriculum='zigzag' is not a valid option; choose one of 'none'"):
        CURRICULA["zigzag"]


def test_fixed_has_one_stage_that_is_never_solved():
    cur = Fixed.from_config({})
    assert cur.initial() == [] and cur.next([]) == [] and cur.n_heads() == 1
    assert not cur.solved([100.0]) and not cur.finished([])


def test_multi_head_one_per_step():
    cur = MultiHead(n_start=2, n_max=5, heads_per_step=1)
    script = [
        [97.0],                 # newest (and mean) below 98
        [P],                    # solved -> add N=3
        [99.5, 97.0],           # mean 98.25 passes, newest fails
        [P, P],                 # -> add N=4
        [95.0, P, P],           # newest passes, mean 98.0 is not > 98
        [P, P, P],              # -> add N=5
        [P, F, P, P],           # mean 89.6 fails
        [P, P, P, P],           # solved with n_max active -> finished
    ]
    history, done = drive(cur, script)
    assert history == [[2], [2], [2, 3], [2, 3], [2, 3, 4], [2, 3, 4], [2, 3, 4, 5],
                       [2, 3, 4, 5], [2, 3, 4, 5]]
    assert done


def test_multi_head_three_per_step_capped_at_n_max():
    cur = MultiHead(n_start=2, n_max=7, heads_per_step=3)
    script = [
        [P],                    # -> 2, 3, 4, 5
        [P, P, P, F],           # newest fails
        [P, P, P, P],           # -> +6, 7 only (8 would exceed n_max)
        [P] * 6,                # finished
    ]
    history, done = drive(cur, script)
    assert history == [[2], r(2, 5), r(2, 5), r(2, 7), r(2, 7)]
    assert done
    assert cur.next(r(2, 7)) == r(2, 7)


def test_sliding_window_10_shift_5_with_final_partial_shift():
    cur = Sliding(n_start=2, n_max=23, window=10, shift=5)
    script = [
        [P] * 9 + [F],          # newest fails
        [P] * 10,               # -> 7..16
        [P] * 10,               # -> 12..21
        [P] * 10,               # only 2 Ns left before n_max: -> 14..23
        [F] + [P] * 9,          # mean 95.55 fails
        [P] * 10,               # finished
    ]
    history, done = drive(cur, script)
    assert history == [r(2, 11), r(2, 11), r(7, 16), r(12, 21), r(14, 23), r(14, 23), r(14, 23)]
    assert done
    assert all(len(ns) == 10 for ns in history)
    assert cur.next(r(14, 23)) == r(14, 23)


def test_sliding_window_4_shift_1():
    cur = Sliding(n_start=2, n_max=7, window=4, shift=1)
    script = [[P] * 4, [P, P, P, 98.0], [P] * 4, [P] * 4]
    history, done = drive(cur, script)
    assert history == [r(2, 5), r(3, 6), r(3, 6), r(4, 7), r(4, 7)]
    assert done


def test_sliding_window_4_shift_3_partial():
    cur = Sliding(n_start=2, n_max=9, window=4, shift=3)
    history, done = drive(cur, [[P] * 4] * 3)
    assert history == [r(2, 5), r(5, 8), r(6, 9), r(6, 9)]
    assert done


def test_single_head():
    cur = SingleHead(n_start=3, n_max=6)
    script = [[P], [F], [98.0], [P], [P], [97.9], [P]]
    history, done = drive(cur, script)
    assert history == [[3], [4], [4], [4], [5], [6], [6], [6]]
    assert done
    assert cur.next([6]) == [6]


def test_none_trains_n_max_directly():
    cur = NoCurriculum(n_start=2, n_max=12)
    history, done = drive(cur, [[F], [98.0], [P]])
    assert history == [[12], [12], [12], [12]]
    assert done


def test_none_is_not_finished_before_solved():
    cur = NoCurriculum(n_start=2, n_max=12)
    history, done = drive(cur, [[F], [50.0], [97.99]])
    assert history == [[12]] * 4
    assert not done


def test_all_heads_fixed():
    cur = AllHeads(n_start=2, n_max=6)
    script = [[P, P, P, P, F], [F, F, P, P, P], [P] * 5]
    history, done = drive(cur, script)
    assert history == [r(2, 6)] * 4
    assert done


def test_unfinished_multi_head_stops_where_accuracy_stalls():
    cur = MultiHead(n_start=2, n_max=101)
    history, done = drive(cur, [[P], [P, P], [P, P, F], [P, P, F]])
    assert history[-1] == [2, 3, 4]
    assert not done
    assert not cur.finished([2, 3, 4])
    assert cur.finished([2, 3, 101])


# ----------------------------------------------------------------------------------------------
RULE = [
    ([99.0], True),
    ([98.0], False),                        # exactly the threshold is not enough
    ([98.0001], True),
    ([100.0, 100.0, 97.9], False),          # mean 99.3 passes, newest fails
    ([90.0, 99.0, 99.5], False),            # newest passes, mean 96.2 fails
    ([97.5, 98.5], False),                  # mean exactly 98.0
    ([100.0, 98.0], False),                 # mean 99, newest exactly 98
    ([98.0, 100.0], True),                  # an older head at 98 is fine
    ([90.0, 100.0, 100.0, 100.0, 100.0], False),   # mean exactly 98
    ([91.0, 100.0, 100.0, 100.0, 100.0], True),    # mean 98.2: not every head needs 98
    ([], False),
]


@pytest.mark.parametrize("name", sorted(n for n in CURRICULA if CURRICULA[n].uses_N))
@pytest.mark.parametrize("acc, expected", RULE)
def test_solved_rule(name, acc, expected):
    cur = CURRICULA[name](n_start=2, n_max=20)
    assert cur.solved(acc) is expected
    assert cur.solved(np.asarray(acc, dtype=np.float32)) is expected
    # independent statement of the rule
    if acc:
        assert expected == (sum(acc) / len(acc) > 98.0 and acc[-1] > 98.0)


# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cur, heads", [
    (NoCurriculum(n_start=2, n_max=50), 1),
    (SingleHead(n_start=2, n_max=50), 1),
    (MultiHead(n_start=2, n_max=101), 100),
    (MultiHead(n_start=5, n_max=9, heads_per_step=3), 5),
    (Sliding(n_start=2, n_max=101, window=10, shift=5), 10),
    (Sliding(n_start=2, n_max=50, window=4, shift=1), 4),
    (AllHeads(n_start=3, n_max=12), 10),
])
def test_n_heads(cur, heads):
    assert cur.n_heads() == heads
    # the curriculum never has more active Ns than heads
    assert len(cur.initial()) <= heads


BAD = [
    (SingleHead, dict(n_start=1), r"n_start must be >= 2"),
    (NoCurriculum, dict(n_start=0, n_max=5), r"n_start must be >= 2"),
    (MultiHead, dict(n_start=1), r"n_start must be >= 2"),
    (AllHeads, dict(n_start=1, n_max=5), r"n_start must be >= 2"),
    (Sliding, dict(n_start=1), r"n_start must be >= 2"),
    (MultiHead, dict(n_start=5, n_max=4), r"n_max=4 is below n_start=5"),
    (SingleHead, dict(n_start=10, n_max=3), r"n_max=3 is below n_start=10"),
    (AllHeads, dict(n_start=10, n_max=9), r"n_max=9 is below n_start=10"),
    (Sliding, dict(n_max=50, window=4, shift=5), r"shift=5 exceeds window=4"),
    (Sliding, dict(n_start=2, n_max=10, window=10, shift=5),
     r"n_max=10 is smaller than the first window 2\.\.11"),
    (Sliding, dict(n_max=50, window=0, shift=1), r"window must be an integer >= 1"),
    (Sliding, dict(n_max=50, window=4, shift=0), r"shift must be an integer >= 1"),
    (MultiHead, dict(heads_per_step=0), r"heads_per_step must be an integer >= 1"),
    (MultiHead, dict(heads_per_step=-2), r"heads_per_step must be an integer >= 1"),
]


@pytest.mark.parametrize("cls, kwargs, match", BAD,
                         ids=[f"{c.__name__}-{'-'.join(f'{k}={v}' for k, v in kw.items())}"
                              for c, kw, _ in BAD])
def test_invalid_parameters(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


def test_smallest_valid_sliding_window():
    cur = Sliding(n_start=2, n_max=11, window=10, shift=5)
    history, done = drive(cur, [[P] * 10])
    assert history == [r(2, 11), r(2, 11)]
    assert done
