"""The thread policy (dynatools.threads): who decides, small work on one thread, restoring."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from dynatools import threads
from dynatools.threads import choose_threads, set_threads, step_work, torch_threads


@pytest.fixture
def clean_env(monkeypatch):
    for name in (threads.ENV_VAR, "OMP_NUM_THREADS"):
        monkeypatch.setenv(name, "1")               # recorded, so that the original is restored
        monkeypatch.delenv(name)
    monkeypatch.setattr(threads, "available_cores", lambda: 8)
    return monkeypatch


@pytest.mark.parametrize("work, workers, omp, expected", [
    (1e3, 1, None, 1),                          # small work: one thread even with 8 cores
    (threads.SMALL_WORK - 1, 1, None, 1),
    (threads.SMALL_WORK, 1, None, 8),           # large: every core
    (None, 1, None, 8),                         # unknown work counts as large
    (1e12, 2, None, 4),                         # workers share the cores
    (1e12, 16, None, 1),                        # never below one
    (1e12, 1, "3", 3),                          # OMP_NUM_THREADS caps
])
def test_choose_threads(clean_env, work, workers, omp, expected):
    if omp:
        clean_env.setenv("OMP_NUM_THREADS", omp)
    assert choose_threads(work, workers=workers) == expected


@pytest.mark.parametrize("work", [1e3, 1e12, None])
def test_dynatools_threads_fixes_the_number(clean_env, work):
    clean_env.setenv(threads.ENV_VAR, "5")
    assert choose_threads(work) == 5


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_invalid_environment_is_named(clean_env, value):
    clean_env.setenv(threads.ENV_VAR, value)
    with pytest.raises(ValueError, match=f"{threads.ENV_VAR} must be a whole number >= 1.*{value}"):
        choose_threads(1e12)


def test_torch_threads_sets_and_restores():
    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    with torch_threads(other) as n:
        assert n == other and torch.get_num_threads() == other
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), torch_threads(other):
        raise RuntimeError("inside")
    assert torch.get_num_threads() == before          # restored after an error too


def test_torch_threads_small_work_uses_one_thread(clean_env):
    with torch_threads(work=1e3) as n:
        assert n == 1 and torch.get_num_threads() == 1


def test_step_work_counts_multiply_adds():
    rnn = torch.nn.RNN(10, 20, bias=False)             # 20*10 + 20*20 weights
    assert step_work(rnn, batch=3) == 2 * 3 * (200 + 400)


def test_set_threads(clean_env):
    """--threads N: the policy, torch and numpy's BLAS all use N (restored here afterwards)."""
    import numpy as np  # noqa: F401  (its BLAS is loaded)
    from threadpoolctl import threadpool_info, threadpool_limits

    before = torch.get_num_threads()
    blas = threadpool_limits(limits=None, user_api="blas")       # remembers the BLAS settings
    try:
        set_threads(1)
        assert os.environ[threads.ENV_VAR] == "1" and choose_threads(1e12) == 1
        assert torch.get_num_threads() == 1
        counts = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
        assert counts and set(counts) == {1}
    finally:
        torch.set_num_threads(before)
        blas.restore_original_limits()
    with pytest.raises(ValueError, match="threads must be a whole number >= 1"):
        set_threads(0)


@pytest.mark.parametrize("user, expected", [(None, "PASSIVE"), ("active", "active")])
def test_importing_before_torch_makes_openmp_threads_sleep(user, expected):
    """A fresh interpreter: importing dynatools (or trainers) before torch sets the passive wait
    policy that OpenMP reads when torch loads it, unless the user chose one."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if user:
        env["OMP_WAIT_POLICY"] = user
    code = ("import dynatools, os, sys; assert 'torch' not in sys.modules; "
            "print(os.environ['OMP_WAIT_POLICY'])")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected


def test_lyapunov_and_gradients_step_small_problems_on_one_thread(clean_env):
    """Inside the loops of the model-based analyses, a small problem runs on one torch thread
    whatever the caller's setting, which is restored afterwards."""
    import dynatools as dt

    seen = []
    W = torch.tensor([[0.5, 0.1], [0.0, 0.3]], dtype=torch.float64)

    def step(h, u):
        seen.append(torch.get_num_threads())
        return h @ W.T

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        dt.lyapunov_spectrum(step, h0=torch.ones(1, 2, dtype=torch.float64), steps=5, warmup=0, seed=0)
        dt.gradient_norms(step, torch.zeros(1, 4, 0, dtype=torch.float64), h0=torch.ones(1, 2, dtype=torch.float64))
        assert seen and set(seen) == {1}
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_dynatools_commands_take_threads(clean_env, tmp_path):
    from dynatools.cli import build_parser, main

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert "--threads" in sub.choices["timescales"].format_help()
    assert "--threads" not in sub.choices["info"].format_help()
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    blas = threadpool_limits(limits=None, user_api="blas")       # --threads caps BLAS too: restored below
    try:
        assert main(["timescales", str(tmp_path / "missing.nc"), "-o", str(tmp_path / "o.nc"), "--threads", "1"]) == 2
        assert os.environ[threads.ENV_VAR] == "1"
    finally:
        torch.set_num_threads(before)
        blas.restore_original_limits()


@pytest.mark.parametrize("omp, expected", [("4,1", 4), ("3", 3), ("abc", 8), ("", 8)])
def test_omp_num_threads_is_read_as_openmp_does(clean_env, omp, expected):
    """A nested list ("4,1") is valid for OpenMP: its first level caps; junk is ignored, as OpenMP does."""
    clean_env.setenv("OMP_NUM_THREADS", omp)
    assert choose_threads(1e12) == expected


def test_large_work_never_raises_the_callers_torch_setting(clean_env):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch_threads(work=1e12) as n:            # 8 cores available, but the caller chose 1
            assert n == 1 and torch.get_num_threads() == 1
        clean_env.setenv(threads.ENV_VAR, "3")        # an explicit choice does raise it
        with torch_threads(work=1e12) as n:
            assert n == 3 and torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("cores, count, omp, expected, omp_after", [
    (16, None, None, None, None),               # not an xdist worker: torch's default is kept
    (16, "1", None, None, None),                # one worker has every core
    (16, "12", None, 1, "1"),                   # pytest -n 12 on 16 cores: one thread each
    (16, "4", None, 4, "4"),
    (2, "2", None, 1, "1"),
    (16, "4", "2", None, "2"),                  # the user's OMP_NUM_THREADS is kept
])
def test_share_cores_between_test_workers(clean_env, cores, count, omp, expected, omp_after):
    """pytest -n N (the root conftest.py): each worker's torch gets cores // N threads through
    OMP_NUM_THREADS, which torch reads when imported and choose_threads caps at (issue 17)."""
    clean_env.setattr(threads, "available_cores", lambda: cores)
    clean_env.delenv("PYTEST_XDIST_WORKER_COUNT", raising=False)
    if count is not None:
        clean_env.setenv("PYTEST_XDIST_WORKER_COUNT", count)
    if omp is not None:
        clean_env.setenv("OMP_NUM_THREADS", omp)
    before = torch.get_num_threads()
    try:
        assert threads.share_cores_between_workers() == expected
        assert os.environ.get("OMP_NUM_THREADS") == omp_after
        if expected is not None:
            assert torch.get_num_threads() == min(before, expected)   # torch was already imported
            assert choose_threads(1e12) == expected
        else:
            assert torch.get_num_threads() == before
    finally:
        torch.set_num_threads(before)


def test_share_cores_takes_the_worker_count_and_checks_it(clean_env):
    clean_env.setattr(threads, "available_cores", lambda: 8)
    before = torch.get_num_threads()
    try:
        assert threads.share_cores_between_workers(3) == 2 and os.environ["OMP_NUM_THREADS"] == "2"
    finally:
        torch.set_num_threads(before)
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="workers must be a whole number >= 1"):
            threads.share_cores_between_workers(bad)
    clean_env.delenv("OMP_NUM_THREADS")
    clean_env.setenv("PYTEST_XDIST_WORKER_COUNT", "zero")
    with pytest.raises(ValueError, match="PYTEST_XDIST_WORKER_COUNT must be a whole number"):
        threads.share_cores_between_workers()


def test_each_test_worker_starts_torch_with_its_share():
    """A fresh interpreter as pytest-xdist starts it: loading the root conftest.py before torch
    sets the share that torch then starts with."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", threads.ENV_VAR)}
    env["PYTEST_XDIST_WORKER_COUNT"] = str(2 * threads.available_cores())    # more workers than cores
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = "import conftest, torch; print(torch.get_num_threads())"
    out = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "1"


def test_a_threads_option_does_not_outlive_its_test_a(tmp_path):
    """Two tests in order: the first runs a command with --threads 3, the second (next in this
    module, so in the same worker process) sees the suite's setting again (tests/conftest.py)."""
    from threadpoolctl import threadpool_limits

    from dynatools.cli import main

    os.environ.pop(threads.ENV_VAR, None)
    blas = threadpool_limits(limits=None, user_api="blas")       # --threads caps BLAS too: restored below
    try:
        main(["timescales", str(tmp_path / "missing.nc"), "-o", str(tmp_path / "o.nc"), "--threads", "3"])
        assert os.environ[threads.ENV_VAR] == "3"
    finally:
        blas.restore_original_limits()


def test_a_threads_option_does_not_outlive_its_test_b():
    assert os.environ.get(threads.ENV_VAR) != "3"
