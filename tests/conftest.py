"""Shared fixtures (the synthetic processes themselves are in processes.py) and the device rules.

Devices (docs/testing.md)
    A test about CPU behaviour (exact comparisons, resuming, a command run without ``--device``)
    pins ``device="cpu"``: ``device="auto"``/None picks CUDA on a GPU machine. A test about
    devices takes the ``device`` fixture, which runs it on ``"cpu"`` and, marked ``cuda``, on
    ``"cuda"``; ``cuda`` tests are skipped where PyTorch sees no GPU. On a GPU machine a test
    that puts a tensor on CUDA without the ``cuda`` mark fails, naming the rule.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
from hypothesis import settings

# Property tests draw their examples from a fixed seed (one per test), like every other test: a
# random draw made the suite fail once in many runs (a rare AR(1) sample, test_properties.py).
settings.register_profile("dynatools", derandomize=True)
settings.load_profile("dynatools")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def device(request) -> str:
    """``"cpu"``, and ``"cuda"`` (marked ``cuda``: skipped without a GPU): a test that takes this
    fixture runs on every device."""
    return request.param


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    """``long`` tests (tens of minutes on a CPU) run only with DYNATOOLS_LONG_TESTS=1; ``cuda``
    tests only where PyTorch sees a CUDA device."""
    if os.environ.get("DYNATOOLS_LONG_TESTS") != "1":
        skip = pytest.mark.skip(reason="long test: set DYNATOOLS_LONG_TESTS=1 to run it")
        for item in items:
            if "long" in item.keywords:
                item.add_marker(skip)
    cuda = [item for item in items if item.get_closest_marker("cuda")]
    if cuda and not _cuda_available():
        skip = pytest.mark.skip(reason="no CUDA device")
        for item in cuda:
            item.add_marker(skip)


def _cuda_allocations(torch) -> int:
    """Tensors allocated on the current CUDA device so far in this process (0 before CUDA starts;
    reading it does not start CUDA)."""
    if not torch.cuda.is_initialized():
        return 0
    return int(torch.cuda.memory_stats().get("allocation.all.allocated", 0))


@pytest.fixture(autouse=True)
def _cuda_only_where_marked(request):
    """On a GPU machine, a test without the ``cuda`` mark that allocates on CUDA fails: it resolved
    ``device="auto"``/None where it meant the CPU, or it is about devices and should take the
    ``device`` fixture."""
    torch = sys.modules.get("torch")
    if torch is None or request.node.get_closest_marker("cuda") or not torch.cuda.is_available():
        yield
        return
    before = _cuda_allocations(torch)
    yield
    if _cuda_allocations(torch) > before:
        pytest.fail(f"{request.node.nodeid} allocated CUDA tensors but is not marked `cuda`: pin "
                    f"device='cpu' (--device cpu) where it is about CPU behaviour, or take the `device` "
                    f"fixture (tests/conftest.py; docs/testing.md)", pytrace=False)


#: Thread settings a command may change in its process (``--threads N`` sets DYNATOOLS_THREADS; a
#: dask LocalCluster sets the others): restored after each test, so the next test in the same
#: worker process sees the suite's own settings.
_THREAD_VARIABLES = ("DYNATOOLS_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@pytest.fixture(autouse=True)
def _thread_settings_restored():
    before = {k: os.environ.get(k) for k in _THREAD_VARIABLES}
    torch = sys.modules.get("torch")
    threads = torch.get_num_threads() if torch is not None else None
    yield
    for key, value in before.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    torch = sys.modules.get("torch")
    if threads is not None and torch is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
