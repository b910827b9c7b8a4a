"""Shared fixtures (the synthetic processes themselves are in processes.py)."""

from __future__ import annotations

import os

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


def pytest_collection_modifyitems(config, items):
    """``long`` tests (tens of minutes on a CPU) run only with DYNATOOLS_LONG_TESTS=1."""
    if os.environ.get("DYNATOOLS_LONG_TESTS") == "1":
        return
    skip = pytest.mark.skip(reason="long test: set DYNATOOLS_LONG_TESTS=1 to run it")
    for item in items:
        if "long" in item.keywords:
            item.add_marker(skip)

