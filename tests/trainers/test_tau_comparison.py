"""Smoke test of docs/examples/tau_distributions_001.py (effective vs intrinsic timescales of
001's tau distributions) at tiny sizes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "docs" / "examples" / "tau_distributions_001.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("tau_distributions_001", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_streams_have_the_task_inputs(script):
    from trainers.tasks.multitau import MultiTimescaleWM

    task = MultiTimescaleWM()
    g = torch.Generator().manual_seed(0)
    u = script.task_stream(task, 2, 1000, g)
    assert u.shape == (2, 1000, task.input_dim)
    assert (u[..., 0] == 0).any() and (u[..., 0] == 1).any()        # several trials: go signals
    n = script.noise_stream(task, 2, 500, g)
    assert torch.all(n[..., 0] == 1) and torch.all(n[..., 3:] == 0)
    assert abs(float(n[..., 1:3].std()) - task.noise_std()) < 0.05 * task.noise_std()


def test_compare_distribution_tiny(script):
    res = script.compare_distribution("bimodal", members=2, units=8, steps=2, steps_per_epoch=2, batch=4,
                                      eval_batches=1, streams=2, seconds=10.0, subsample=10, fit_lag=10,
                                      trials=4, trial_fit_lag=20)
    row = res["row"]
    assert res["tau"].shape == (2, 8)
    assert set(np.unique(np.round(res["tau"], 3))) == {0.5, 1.5}     # 001's bimodal, in s
    assert row["steps"] == 2 and 0.0 <= row["perf_mean"] <= 1.0
    for which in ("initial", "trained"):
        for cond in script.CONDITIONS:
            eff = res["effective"][which][cond]
            assert eff.shape == (2, 8)
            assert np.all(eff[np.isfinite(eff)] > 0)
            assert 0.0 <= row[f"{which}_{cond}_reliable"] <= 1.0
            assert res["status"][which][cond].shape == (2, 8)
        for cond in ("task", "noise"):
            assert 0.0 <= row[f"{which}_{cond}_diverged_streams"] <= 1.0
    text = script.table([row])
    assert "bimodal" in text and text.count("\n| mtwm") == 1 + 2 * len(script.CONDITIONS)


def test_spearman_is_nan_for_equal_timescales(script):
    x = np.ones(10)
    assert np.isnan(script.spearman(x, np.arange(10.0)))
    assert script.spearman(np.arange(10.0), np.arange(10.0) ** 2) == pytest.approx(1.0)
