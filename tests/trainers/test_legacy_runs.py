"""Run directories written by trainers 0.1 (before the one engine) still load, resume and record.

``tests/data/trainers_0_1`` holds two tiny runs made by trainers 0.1 (commit d7ad746): a
single-head parity run of 2 epochs, and a ``train-sequence`` WCRNN on the adding problem, plus the
losses that 0.1 computed for the same parity run trained for 3 epochs without interruption.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

import dynatools as dt
import trainers

DATA = Path(__file__).resolve().parents[1] / "data" / "trainers_0_1"


@pytest.fixture
def legacy(tmp_path):
    shutil.copytree(DATA, tmp_path / "legacy")
    return tmp_path / "legacy"


def test_a_0_1_curriculum_run_resumes_exactly_where_0_1_would_have_gone(legacy):
    run = trainers.RunDir(legacy / "curriculum_run")
    cfg = run.config
    assert (cfg.model, cfg.units, cfg.curriculum, cfg.clip) == ("leaky", 4, "single-head", 2.0)
    assert cfg.model_options["negative_slope"] == 0.1 and cfg.curriculum_options["n_max"] == 3
    assert run.metrics().sizes["epoch"] == 2
    resumed = trainers.resume(legacy / "curriculum_run", max_epochs=3, progress=False)
    expected = json.loads((DATA / "expected.json").read_text())
    assert resumed.losses == expected["losses_3_epochs"]            # computed by trainers 0.1
    assert [h["accuracy"] for h in resumed.history] == expected["accuracy_3_epochs"]
    model, task, head = run.load()
    rec = trainers.record(model, task, Ns=[2], steps=50, trials=2, burn_in=5, seed=0)
    dt.validate(rec)


def test_a_0_1_train_sequence_run_loads_and_names_why_it_cannot_resume(legacy):
    run = trainers.RunDir(legacy / "sequence_run")
    model, task, head = run.load()
    assert (type(model).__name__, model.form, task.name, task.length, head) == ("WCRNN", "linear", "adding", 6, 0)
    np.testing.assert_allclose(torch.linalg.eigvals(model.R.double()).real.numpy(), 0.9, atol=1e-6)
    # 0.1's result.nc and the metrics read from the checkpoint agree
    old = xr.load_dataset(legacy / "sequence_run" / "result.nc")
    ds = run.metrics()
    assert ds.attrs["metric"] == "rms"
    np.testing.assert_allclose(ds.rms.values, old.test_metric.values)
    # 0.1's test RMS is reproduced by the loaded network on the same test set (seed + 1 = 1, 8 sequences)
    test = task.held_out(8, seed=1)
    with torch.no_grad():
        out = model.readout(model(test.inputs)[:, -1])[:, 0, 0]
    rms = float(torch.sqrt(torch.mean((out - test.targets) ** 2)))
    assert rms == pytest.approx(float(old.test_metric.values[-1]), rel=1e-5)
    with pytest.raises(ValueError, match="train-sequence.*cannot continue"):
        trainers.resume(legacy / "sequence_run", progress=False)
