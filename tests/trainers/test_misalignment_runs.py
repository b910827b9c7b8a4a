"""Dynamics misalignment of a trained network (002 Sec. 3.4, Fig. 3B-C) and the Table 1/2 runner."""

from __future__ import annotations

import numpy as np
import pytest

import trainers
from trainers.misalignment import misalignment
from trainers.skip_table import skip_table

TINY = {"device": "cpu", "seed": 0, "units": 12, "batch": 8, "eval_batches": 1, "lr": 0.01}


@pytest.fixture(scope="module")
def trained_go():
    run = trainers.train({**TINY, "task": "go", "steps_per_epoch": 60, "max_epochs": 1, "members": 2},
                         progress=False)
    return run.model, run.config.make_task()


def test_fig_3b_ordering_on_a_trained_network(trained_go):
    model, task = trained_go
    ds = misalignment(model, task, trials=8)
    nmse = ds["nmse"].mean("member")
    cd = nmse.sel(simulation="cd").values
    assert np.all(np.diff(cd) > 0)                                   # CD's error grows with theta
    upto_tau = nmse.sel(theta=[5, 10, 20])                           # theta up to the time constant (20 steps)
    assert (upto_tau.sel(simulation="sctt") > upto_tau.sel(simulation="dasc")).all()
    assert ds.attrs["tau_steps"] == pytest.approx(20.0)
    assert ds["nmse"].dims == ("simulation", "theta", "member") and ds.sizes["member"] == 2


def test_true_dynamics_have_zero_nmse_and_no_performance_difference(trained_go):
    model, task = trained_go
    ds = misalignment(model, task, thetas=(1,), methods=("cd", "dasc"), trials=8)
    np.testing.assert_array_equal(ds["nmse"].values, 0.0)
    np.testing.assert_array_equal(ds["performance_difference"].values, 0.0)


def test_misalignment_refuses_what_it_cannot_compare(trained_go):
    model, task = trained_go
    with pytest.raises(ValueError, match="methods must be among"):
        misalignment(model, task, methods=("rk4",))
    with pytest.raises(ValueError, match="thetas must be positive"):
        misalignment(model, task, thetas=(0,))
    from trainers.tasks import TASKS
    with pytest.raises(ValueError, match="feeds back"):
        misalignment(model, TASKS["rule-reversal"]())
    leaky = trainers.TrainConfig.from_dict({"task": "go", "model": "leaky", "units": 4, "seed": 0}).resolved()
    with pytest.raises(ValueError, match="rate networks"):
        misalignment(leaky.make_model(), task)


def test_the_table_runner_resumes_and_reads_its_runs(tmp_path):
    opts = {"units": 8, "batch": 4, "eval_batches": 1, "device": "cpu"}
    kw = dict(configurations=["control", "DASC10"], members=2, steps_per_epoch=2, anneal_span=2,
              progress=False, options=opts)
    first = skip_table(tmp_path, ["go"], max_steps=2, **kw)
    assert first["steps_run"].values.tolist() == [[2.0, 2.0]]
    assert first["status"].values.tolist() == [["failed", "failed"]]
    pending = skip_table(tmp_path, ["go", "dgo"], max_steps=4, train=False, **kw)
    assert pending["status"].values.tolist() == [["incomplete", "incomplete"], ["missing", "missing"]]
    with pytest.raises(ValueError, match=r"other settings \(members: run 2 vs asked 3"):
        skip_table(tmp_path, ["go"], max_steps=4, **{**kw, "members": 3})
    more = skip_table(tmp_path, ["go"], max_steps=4, **kw)                 # resumes both runs
    assert more["steps_run"].values.tolist() == [[4.0, 4.0]]
    again = skip_table(tmp_path, ["go"], max_steps=4, train=False, **kw)   # only reads
    np.testing.assert_array_equal(again["wall_seconds"].values, more["wall_seconds"].values)
    steps = trainers.RunDir(tmp_path / "go" / "DASC10").steps()
    assert [b for r in steps for b in r["beta"]] == [0.5, 0.8, 1.0, 1.0]      # 6 phases over 2 steps
    assert np.isnan(more["steps"]).all()                                 # 4 steps solve nothing: "failed"
    for ext in ("nc", "csv", "png"):
        assert (tmp_path / f"table.{ext}").stat().st_size > 0
    with pytest.raises(ValueError, match="unknown configuration"):
        skip_table(tmp_path, ["go"], configurations=["DASC99"])


def test_table_figure_marks_failed_runs_and_the_best():
    import xarray as xr

    from trainers.skip_table import plot_skip_table

    steps = np.array([[2000.0, np.nan, 1000.0]])
    ds = xr.Dataset({n: (("task", "configuration"), v) for n, v in {
        "steps": steps, "wall_seconds": np.array([[10.0, 50.0, 20.0]]), "flops": np.array([[1e12, 5e12, 2e12]]),
        "learned": np.array([[0.9, 0.1, 1.0]]), "members": np.full((1, 3), 8.0)}.items()},
        coords={"task": ["dgo"], "configuration": ["control", "CD10", "DASC40"]}, attrs={"max_steps": 4000})
    fig = plot_skip_table(ds)
    texts = [c.get_text().get_text() for c in fig.axes[0].tables[0].get_celld().values()]
    assert "failed" in texts and "0.100" in texts and "0.200" in texts
    bold = {c.get_text().get_text() for c in fig.axes[0].tables[0].get_celld().values()
            if c.get_text().get_weight() == "bold"}
    assert "0.100" in bold                                          # DASC40's 1000 steps: the fewest
