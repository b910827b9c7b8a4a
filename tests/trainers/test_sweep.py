"""Sweeps on dask.distributed (trainers.sweep): the grid, the claim on a run directory, training on
a LocalCluster, faults (a worker killed with SIGKILL), re-runs, the gathered Dataset, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("distributed")

import trainers  # noqa: E402
from trainers import sweep as sw  # noqa: E402
from trainers.cli import main  # noqa: E402

BASE = {"task": "parity", "units": 8, "batch": 8, "steps_per_epoch": 2, "eval_batches": 1, "max_epochs": 3,
        "n_max": 3, "device": "cpu"}
GRID = {"lr": [0.01, 0.05], "curriculum": ["single-head", "multi-head"], "seed": [0, 1]}


@pytest.fixture(scope="module")
def client():
    """A LocalCluster of 2 one-thread worker processes (as run_sweep makes by default), each
    declaring one unit of a resource "GPU" (as ``dask worker --resources GPU=1`` does)."""
    import logging

    from distributed import Client, LocalCluster

    environ = dict(os.environ)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=logging.ERROR, env={"OMP_WAIT_POLICY": "PASSIVE"},
                      resources={"GPU": 1}) as cluster:
        with Client(cluster, set_as_default=False) as c:      # as a caller's own client may be
            yield c
    sw._restore_environ(environ)              # distributed set OMP_NUM_THREADS=1 & co. in this process


def _same_as_alone(run_dir: Path, config: dict, tmp: Path) -> None:
    """The run equals the same configuration trained alone in this process."""
    alone = tmp / ("alone-" + run_dir.name)
    trainers.train(config, alone, progress=False)
    a, b = trainers.RunDir(run_dir).latest, trainers.RunDir(alone).latest
    assert a.meta["stop_reason"] == b.meta["stop_reason"] and a.epoch == b.epoch
    for k, v in b.payload["state_dict"].items():
        assert torch.equal(a.payload["state_dict"][k], v), (run_dir.name, k)
    la, lb = trainers.RunDir(run_dir).metrics()["loss"].values, trainers.RunDir(alone).metrics()["loss"].values
    np.testing.assert_array_equal(la, lb)


# ---------------------------------------------------------------------- the grid
def test_the_grid_expands_in_order_with_names_from_the_parameters():
    runs = sw.Sweep(BASE, GRID).runs()
    assert len(runs) == 8
    assert runs[0].name == "lr=0.01_curriculum=single-head_seed=0"
    assert runs[-1].name == "lr=0.05_curriculum=multi-head_seed=1"
    assert [r.params["seed"] for r in runs[:2]] == [0, 1]              # the last key varies fastest
    assert runs[5].config == {**BASE, "lr": 0.05, "curriculum": "single-head", "seed": 1}
    assert len({r.name for r in runs}) == 8


def test_named_settings_and_options_inside_sections_of_the_base():
    base = {**BASE, "model_options": {"tau": 2.0}, "seed": 3}
    grid = {"tau": [1.5, 3.0], "variant": {"plain": {"clip": 0.0}, "clipped": {"clip": 1.0, "lr": 0.02}}}
    runs = sw.Sweep.from_dict({"base": base, "grid": grid}).runs()
    assert [r.name for r in runs] == ["tau=1.5_variant=plain", "tau=1.5_variant=clipped",
                                      "tau=3.0_variant=plain", "tau=3.0_variant=clipped"]
    cfg = trainers.TrainConfig.from_dict(runs[1].config).resolved()
    assert cfg.model_options["tau"] == 1.5 and cfg.clip == 1.0 and cfg.lr == 0.02 and cfg.seed == 3


def test_a_sweep_file_is_read(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('[base]\nunits = 8\nn-max = 3\ndevice = "cpu"\n[grid]\nseed = [0, 1]\n'
                    '[grid.opt]\nsgd = {optimizer = "sgd"}\nadam = {optimizer = "adam", lr = 0.001}\n')
    runs = sw.Sweep.from_toml(path).runs()
    assert [r.name for r in runs] == ["seed=0_opt=sgd", "seed=0_opt=adam", "seed=1_opt=sgd", "seed=1_opt=adam"]
    assert runs[1].config["n_max"] == 3 and runs[1].config["optimizer"] == "adam"


@pytest.mark.parametrize("data, match", [
    ({"base": BASE}, "the grid is empty"),
    ({"base": BASE, "grid": {}}, "the grid is empty"),
    ({"base": BASE, "grid": {"lr": []}}, "non-empty list"),
    ({"base": BASE, "grid": {"lr": 0.1}}, "non-empty list"),
    ({"base": BASE, "grid": {"seed": [0, 0]}}, "twice"),
    ({"base": BASE, "grid": {"v": {"a": 1}}}, "tables of keys"),
    ({"base": BASE, "grid": {"seed": [0]}, "sweep": {}}, "unknown tables"),
])
def test_a_malformed_grid_is_refused(data, match):
    with pytest.raises(ValueError, match=match):
        sw.Sweep.from_dict(data).runs()
    if "sweep" not in data:                                       # the constructor checks the same
        with pytest.raises(ValueError, match=match):
            sw.Sweep(data["base"], data.get("grid"))


@pytest.mark.parametrize("dim", ["run", "epoch", "N", "member", "step", "status", "config", "stop_reason"])
def test_a_dimension_named_as_a_dimension_or_variable_of_the_results_is_refused(dim):
    with pytest.raises(ValueError, match=f"grid dimension '{dim}' has the name of a dimension or variable"):
        sw.Sweep({**BASE, "seed": 0}, {dim: {"a": {"lr": 0.1}, "b": {"lr": 0.2}}})


def test_a_sweep_of_trial_tasks_and_curriculum_tasks_is_refused():
    grid = {"setup": {"parity": {"task": "parity"}, "go": {"task": "go"}}}
    with pytest.raises(ValueError, match="mixes trial tasks .* make two sweeps"):
        sw.Sweep({"units": 8, "seed": 0, "device": "cpu"}, grid).runs()


@pytest.mark.parametrize("base, grid, match", [
    (BASE, {"lrr": [0.1, 0.2], "seed": [0]}, r"grid key 'lrr' .*unknown configuration key 'lrr'"),
    (BASE, {"seed": [0], "lrr": [0.1, 0.2]}, r"^grid key 'lrr' .*unknown configuration key 'lrr'"),
    ({**BASE, "unts": 8}, {"seed": [0], "lr": [0.1]}, r"^\[base\] of the sweep .*unknown configuration key 'unts'"),
    (BASE, {"seed": [0], "v": {"a": {"clpi": 1.0}}}, r"^grid dimension 'v' \(its key 'clpi'\)"),
    (BASE, {"lr": [0.1, -1.0], "seed": [0]}, r"grid key 'lr' .*run lr=-1.0_seed=0"),
    (BASE, {"lr": [0.1]}, "gives no seed"),
    ({**BASE, "seed": 0}, {"lr": [0.1], "v": {"a": {"lr": 0.2}}}, "set by two grid dimensions"),
    ({**BASE, "seed": 0}, {"task": ["parity", "nonsense"]}, "grid key 'task'"),
])
def test_invalid_configurations_are_refused_before_anything_is_trained(tmp_path, base, grid, match):
    with pytest.raises(ValueError, match=match):
        sw.run_sweep(sw.Sweep(base, grid), tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_names_that_collide_are_refused():
    with pytest.raises(ValueError, match="same directory name"):
        sw.Sweep({**BASE, "seed": 0}, {"v": {"a/b": {"lr": 0.1}, "a-b": {"lr": 0.2}}}).runs()


def test_a_grid_extended_with_more_seeds_trains_only_the_new_runs_in_this_process(tmp_path):
    base = {**BASE, "max_epochs": 1}
    first = sw.run_sweep(sw.Sweep(base, {"seed": [0, 1]}), tmp_path, workers=0, progress=False)
    assert first.trained == ["seed=0", "seed=1"]
    assert json.loads((tmp_path / "sweep.json").read_text())["runs"][1] == {"name": "seed=1", "params": {"seed": 1}}
    more = sw.run_sweep(sw.Sweep(base, {"seed": [0, 1, 2]}), tmp_path, workers=0, progress=False)
    assert more.trained == ["seed=2"] and more.skipped == ["seed=0", "seed=1"]
    assert sw.sweep_results(tmp_path, save=False).sizes["seed"] == 3
    with pytest.raises(ValueError, match=r"seed=0 holds a run with other settings \(lr: run 0.05 vs asked 0.01"):
        sw.run_sweep(sw.Sweep({**base, "lr": 0.01}, {"seed": [0, 1]}), tmp_path, workers=0, progress=False)
    assert len(json.loads((tmp_path / "sweep.json").read_text())["runs"]) == 3    # not overwritten


def test_a_names_template_lays_the_runs_out_in_folders(tmp_path):
    sweep = sw.Sweep.from_dict({"base": {**BASE, "max_epochs": 1, "seed": 0}, "names": "{opt}/lr{lr}",
                                "grid": {"opt": {"sgd": {}, "adam": {"optimizer": "adam"}}, "lr": [0.01, 0.1]}})
    assert [r.name for r in sweep.runs()] == ["sgd/lr0.01", "sgd/lr0.1", "adam/lr0.01", "adam/lr0.1"]
    sw.run_sweep(sweep, tmp_path, workers=0, progress=False)
    assert trainers.RunDir(tmp_path / "adam" / "lr0.1").config.optimizer == "adam"
    ds = sw.sweep_results(tmp_path, save=False)
    assert ds["opt"].values.tolist() == ["sgd", "adam"] and ds["loss"].dims[:2] == ("opt", "lr")
    for template, match in (("{nope}", "does not fit"), ("../{lr}", "relative paths"), ("{opt}", "same directory")):
        with pytest.raises(ValueError, match=match):
            sw.Sweep(sweep.base, sweep.grid, template).runs()


# ---------------------------------------------------------------------- one run
_HOLD = """
import sys, time
from trainers.sweep import claim
with claim(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


def test_the_claim_excludes_a_second_holder_until_the_first_dies(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(TimeoutError, match=f"pid {proc.pid} on"):
            with sw.claim(tmp_path, timeout=0.3, poll=0.05):
                pass
        proc.send_signal(signal.SIGKILL)                 # the OS releases the lock of a killed holder
        proc.wait(timeout=10)
        with sw.claim(tmp_path, timeout=5, poll=0.05):
            assert (tmp_path / "sweep.lock").read_text().startswith(f"pid {os.getpid()} ")
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_train_run_trains_skips_and_continues_a_run_asked_for_more_epochs(tmp_path):
    config = {**BASE, "seed": 4, "max_epochs": 2}
    run_dir = tmp_path / "run"
    assert sw.run_status(run_dir) == "missing"
    assert sw.train_run(run_dir, config)["action"] == "trained"
    assert sw.run_status(run_dir, config) == "done"
    mtime = (run_dir / "checkpoints" / "latest.pt").stat().st_mtime_ns
    assert sw.train_run(run_dir, config)["action"] == "skipped"
    assert (run_dir / "checkpoints" / "latest.pt").stat().st_mtime_ns == mtime
    more = {**config, "max_epochs": 4}                   # the sweep file raised the limit
    assert sw.run_status(run_dir, more) == "partial"
    result = sw.train_run(run_dir, more)
    assert result["action"] == "resumed" and result["epochs"] == 4
    _same_as_alone(run_dir, more, tmp_path)
    events = [json.loads(line) for line in (run_dir / "sweep.log").read_text().splitlines()]
    assert [(e["event"], e["action"]) for e in events] == [("start", "trained"), ("end", "trained"),
                                                          ("start", "skipped"), ("end", "skipped"),
                                                          ("start", "resumed"), ("end", "resumed")]


def test_a_run_directory_with_other_settings_is_refused(tmp_path):
    sw.train_run(tmp_path / "run", {**BASE, "seed": 0, "max_epochs": 1})
    with pytest.raises(ValueError, match=r"other settings \(lr: run 0.05 vs asked 0.01"):
        sw.train_run(tmp_path / "run", {**BASE, "seed": 0, "max_epochs": 1, "lr": 0.01})


def test_leftovers_of_an_attempt_killed_in_its_first_epoch_are_removed(tmp_path):
    """A trial task appends each epoch's per-step records to steps.jsonl before its checkpoint: a
    first attempt killed in between leaves a line that a fresh start must not keep."""
    config = {"task": "go", "members": 2, "units": 8, "batch": 4, "steps_per_epoch": 2, "eval_batches": 1,
              "max_epochs": 1, "device": "cpu", "seed": 0}
    trainers.train(config, tmp_path / "alone", progress=False)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "steps.jsonl").write_text((tmp_path / "alone" / "steps.jsonl").read_text())
    sw.train_run(run_dir, config)
    assert len((run_dir / "steps.jsonl").read_text().splitlines()) == 1
    assert trainers.RunDir(run_dir).metrics().sizes["step"] == 2


def test_a_run_that_raises_is_reported_logged_and_retried_and_the_others_go_on(tmp_path):
    sweep = sw.Sweep({**BASE, "max_epochs": 1, "clip": 0.0, "seed": 0}, {"lr": [0.05, 1e30]})
    report = sw.run_sweep(sweep, tmp_path, workers=0, retries=1, progress=False)
    assert report.trained == ["lr=0.05"] and list(report.failed) == ["lr=1e+30"]
    assert report.failed["lr=1e+30"].startswith("FloatingPointError: ")
    events = [json.loads(line) for line in (tmp_path / "lr=1e+30" / "sweep.log").read_text().splitlines()]
    assert [e["event"] for e in events] == ["start", "error", "start", "error"]   # tried twice
    assert events[1]["error"].startswith("FloatingPointError: the loss became")
    assert main(["sweep-results", str(tmp_path), "-q"]) == 0


def test_limits_raised_or_spent_decide_whether_a_run_continues(tmp_path):
    config = {**BASE, "seed": 0, "max_epochs": 2}
    run_dir = tmp_path / "run"
    sw.train_run(run_dir, config)
    assert sw.run_status(run_dir, {**config, "time_budget": 100.0}) == "done"    # max_epochs still reached
    budget = {**config, "seed": 1, "max_epochs": 4, "time_budget": 1e-9}         # stops after one epoch
    run_dir = tmp_path / "budget"
    assert sw.train_run(run_dir, budget)["stop_reason"] == "time_budget"
    assert sw.run_status(run_dir, budget) == "done"                              # the budget is spent
    assert sw.run_status(run_dir, {**budget, "max_epochs": 10}) == "done"
    assert sw.run_status(run_dir, {**budget, "time_budget": None}) == "done"    # none given: the run's own
    more = {**budget, "time_budget": 1e6}
    assert sw.run_status(run_dir, more) == "partial"                             # a larger budget continues
    result = sw.train_run(run_dir, more)
    assert result["action"] == "resumed" and result["epochs"] == 4 and result["stop_reason"] == "max_epochs"
    assert sw.run_status(run_dir, more) == "done" and sw.run_status(run_dir, {**more, "max_epochs": 3}) == "done"


# ---------------------------------------------------------------------- on a cluster
def test_a_grid_on_a_local_cluster_equals_runs_trained_alone_and_reruns_train_only_what_is_missing(
        client, tmp_path):
    out = tmp_path / "sweep"
    sweep = sw.Sweep(BASE, GRID)
    report = sw.run_sweep(sweep, out, scheduler=client, resources={"GPU": 1}, progress=False)
    assert report.ok and len(report.trained) == 8
    runs = sweep.runs()
    for run in runs:
        _same_as_alone(out / run.name, run.config, tmp_path)
    hosts = {json.loads(line)["pid"] for run in runs for line in (out / run.name / "sweep.log").read_text().splitlines()}
    assert len(hosts) == 2                                                      # both workers trained

    ds = sw.sweep_results(out)
    assert ds["accuracy"].dims == ("lr", "curriculum", "seed", "epoch", "N")
    assert ds["lr"].values.tolist() == [0.01, 0.05] and ds["curriculum"].values.tolist() == GRID["curriculum"]
    assert (ds["status"] == "done").all() and (ds["stop_reason"] == "max_epochs").all()
    one = trainers.RunDir(out / "lr=0.05_curriculum=multi-head_seed=1").metrics()
    np.testing.assert_array_equal(ds["loss"].sel(lr=0.05, curriculum="multi-head", seed=1).values,
                                  one["loss"].values)
    import xarray as xr

    with xr.open_dataset(out / "results.nc") as saved:
        np.testing.assert_array_equal(saved["loss"].values, ds["loss"].values)

    stamps = {r.name: (out / r.name / "checkpoints" / "latest.pt").stat().st_mtime_ns for r in runs}
    again = sw.run_sweep(sweep, out, scheduler=client, progress=False)         # finished: no training
    assert again.skipped == [r.name for r in runs] and not again.trained + again.resumed
    assert stamps == {r.name: (out / r.name / "checkpoints" / "latest.pt").stat().st_mtime_ns for r in runs}

    import shutil

    shutil.rmtree(out / runs[0].name)                                          # half-finished: one missing,
    trainers.train({**runs[3].config, "max_epochs": 1}, tmp_path / "short", progress=False)   # one partial
    shutil.rmtree(out / runs[3].name)
    shutil.copytree(tmp_path / "short", out / runs[3].name)
    cfg = json.loads((out / runs[3].name / "config.json").read_text())
    assert cfg["max_epochs"] == 1
    partial = sw.sweep_results(out, save=False)
    assert partial["status"].sel(lr=0.01, curriculum="single-head", seed=0).item() == "missing"
    gone = partial.sel(lr=0.01, curriculum="single-head", seed=0)
    assert np.isnan(gone["loss"]).all() and np.isnan(gone["best"]) and gone["config"].item() == ""
    assert gone["stop_reason"].item() == "" and partial["best"].dims == ("lr", "curriculum", "seed")
    third = sw.run_sweep(sweep, out, scheduler=client.scheduler.address, progress=False)   # by its address
    assert third.trained == [runs[0].name] and third.resumed == [runs[3].name] and len(third.skipped) == 6
    _same_as_alone(out / runs[0].name, runs[0].config, tmp_path / "again")
    _same_as_alone(out / runs[3].name, runs[3].config, tmp_path / "again")


def test_a_worker_killed_mid_sweep_loses_nothing_and_no_run_is_trained_twice_at_once(client, tmp_path):
    out = tmp_path / "sweep"
    base = {**BASE, "units": 24, "batch": 16, "steps_per_epoch": 10, "max_epochs": 8, "n_max": 4}
    sweep = sw.Sweep(base, {"lr": [0.02, 0.04], "seed": [0, 1]})
    runs = sweep.runs()
    killed: dict = {}

    def kill_a_worker_mid_run():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            for run in runs:
                log, metrics = out / run.name / "sweep.log", out / run.name / "metrics.jsonl"
                if not (log.is_file() and metrics.is_file()):
                    continue
                epochs = len(metrics.read_text().splitlines())           # written after each checkpoint
                events = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
                if 1 <= epochs <= 5 and events[-1]["event"] == "start" and events[-1]["action"] == "trained":
                    os.kill(events[-1]["pid"], signal.SIGKILL)
                    killed.update(pid=events[-1]["pid"], run=run.name, time=time.time())
                    return
            time.sleep(0.005)

    killer = threading.Thread(target=kill_a_worker_mid_run)
    killer.start()
    report = sw.run_sweep(sweep, out, scheduler=client, progress=False)
    killer.join()
    assert killed, "no run was caught mid-training"
    assert report.ok and sorted(report.trained + report.resumed) == sorted(r.name for r in runs)
    assert killed["run"] in report.resumed                    # continued from its latest checkpoint
    for run in runs:                                          # complete and uncorrupted
        assert sw.run_status(out / run.name, run.config) == "done"
        _same_as_alone(out / run.name, run.config, tmp_path)
        open_since: dict = {}
        for e in (json.loads(line) for line in (out / run.name / "sweep.log").read_text().splitlines()):
            if e["event"] == "start":
                for pid, since in open_since.items():        # another holder still inside: only the dead one
                    assert pid == killed["pid"] and e["time"] >= killed["time"], (run.name, e, open_since)
                open_since = {e["pid"]: e["time"]}
            else:
                assert open_since.pop(e["pid"], None) is not None
        assert not open_since


# ---------------------------------------------------------------------- the command line
def test_the_commands_run_a_sweep_and_gather_it(tmp_path, capsys):
    path = tmp_path / "s.toml"
    path.write_text('[base]\nunits = 8\nbatch = 8\nsteps-per-epoch = 2\neval-batches = 1\nmax-epochs = 2\n'
                    'n-max = 3\ndevice = "cpu"\n[grid]\nlr = [0.01, 0.05]\nseed = [0]\n')
    out = tmp_path / "sw"
    assert main(["sweep", str(path), "-o", str(out), "--dry-run"]) == 0
    listed = capsys.readouterr().out
    assert "missing  lr=0.01_seed=0" in listed and "2 runs over lr (2) x seed (1)" in listed
    environ = dict(os.environ)
    assert main(["sweep", str(path), "-o", str(out), "--workers", "1", "-q"]) == 0
    assert dict(os.environ) == environ                # the local cluster's settings do not stay behind
    assert main(["sweep-results", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "2 runs over lr (2) x seed (1): 2 done" in printed and (out / "results.nc").is_file()
    best = sw.sweep_results(out, save=False)["best"].isel(seed=0).to_pandas()   # the table of each point's best
    assert "best mean accuracy:" in printed and best.to_string(float_format=lambda v: f"{v:.4g}") in printed
    assert main(["sweep", str(path), "-o", str(out)]) == 0
    assert "2 skipped (finished)" in capsys.readouterr().out


@pytest.mark.parametrize("grid, extra, message", [
    ("lrr = [0.1, 0.2]\nseed = [0]\n", [], "grid key 'lrr' of the sweep"),
    ("", [], "the grid is empty; add a [grid] table"),
    ("seed = [0]\n", ["--scheduler", "tcp://127.0.0.1:9", "--connect-timeout", "0.5"],
     "cannot reach the dask scheduler at 'tcp://127.0.0.1:9' within 0.5 s"),
    ("seed = [0]\n", ["--resources", "GPU"], "--resources takes NAME=AMOUNT"),
    ("seed = [0]\n", ["--resources", "GPU=1"], "give --scheduler"),
])
def test_bad_input_is_one_line_naming_the_fix(tmp_path, capsys, grid, extra, message):
    path = tmp_path / "s.toml"
    path.write_text(f'[base]\nunits = 8\nn-max = 3\ndevice = "cpu"\n[grid]\n{grid}')
    assert main(["sweep", str(path), "-o", str(tmp_path / "sw"), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and err.startswith("trainers sweep: error: ")


def test_results_of_a_directory_that_is_no_sweep_name_the_command(tmp_path, capsys):
    assert main(["sweep-results", str(tmp_path)]) == 2
    assert "is not a sweep directory" in capsys.readouterr().err


def test_the_modular_readers_take_a_sweep_directory_for_its_runs(tmp_path):
    from trainers.pareto import learning_curves, pareto_table

    base = {"task": "parity", "model": "modular", "curriculum": "growth", "units": 4, "n_max": 4, "batch": 8,
            "steps_per_epoch": 2, "eval_batches": 1, "max_epochs": 2, "device": "cpu", "seed": 0}
    with pytest.raises(ValueError, match="grid key 'module_size' .*set units=6"):     # caught before training
        sw.run_sweep(sw.Sweep(base, {"module_size": [4, 6]}), tmp_path / "sw", workers=0, progress=False)
    sweep = sw.Sweep(base, {"module_size": {"4": {"module_size": 4}, "6": {"module_size": 6, "units": 6}}})
    assert sw.run_sweep(sweep, tmp_path / "sw", workers=0, progress=False).ok
    ds = pareto_table([tmp_path / "sw"], epochs=2)
    assert ds["size"].values.tolist() == [4, 6]
    assert [Path(p).name for p in ds["run"].values] == ["module_size=4", "module_size=6"]
    assert learning_curves([tmp_path / "sw"]).sizes["run"] == 2
    assert main(["modular", "pareto", str(tmp_path / "sw"), "--epochs", "2", "-q"]) == 0


def test_a_task_gets_its_share_of_the_cores_as_a_cap_and_a_small_network_one_thread(monkeypatch):
    """In a dask worker OMP_NUM_THREADS is 1 (dask's pre-spawn environment): the task's share
    raises torch's count for the run; the thread policy still gives a small network one thread;
    DYNATOOLS_THREADS wins; everything is restored."""
    from dynatools import threads

    monkeypatch.delenv(threads.ENV_VAR, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setattr(threads, "available_cores", lambda: 8)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with sw._thread_cap(4):
            assert torch.get_num_threads() == 4 and threads.choose_threads(work=1e12) == 4
            assert threads.choose_threads(work=1e3) == 1
        assert torch.get_num_threads() == 1 and os.environ["OMP_NUM_THREADS"] == "1"
        monkeypatch.setenv(threads.ENV_VAR, "2")
        with sw._thread_cap(4):
            assert torch.get_num_threads() == 1 and threads.choose_threads(work=1e12) == 2
    finally:
        torch.set_num_threads(before)


def test_the_docs_sweep_file_expands_as_the_docs_say():
    import re
    import tomllib

    page = (Path(__file__).resolve().parents[2] / "docs" / "sweeps.md").read_text()
    blocks = re.findall(r"```toml\n(.*?)```", page, flags=re.S)
    runs = sw.Sweep.from_dict(tomllib.loads(blocks[0])).runs()
    assert len(runs) == 12 and runs[0].name == "lr=0.02_curriculum=single-head_seed=0"
    assert "12 runs over lr (2) x curriculum (2) x seed (3)" in page
    named = tomllib.loads(blocks[1])
    runs = sw.Sweep({"task": "go", "model": "rate", "units": 8, "seed": 0, "device": "cpu"}, named["grid"]).runs()
    assert [r.name for r in runs] == ["method=control", "method=CD10", "method=DASC40"]


def test_ensembles_are_one_task_each_and_their_results_keep_member_and_step(tmp_path):
    base = {"task": "go", "members": 2, "units": 8, "batch": 4, "steps_per_epoch": 2, "eval_batches": 1,
            "device": "cpu", "seed": 0}
    sweep = sw.Sweep(base, {"max_epochs": [1, 2], "method": {"none": {"method": "none"},
                                                             "dasc": {"method": "dasc", "skip": 2}}})
    report = sw.run_sweep(sweep, tmp_path, workers=0, progress=False)
    assert len(report.trained) == 4
    ds = sw.sweep_results(tmp_path, save=True)
    assert ds["loss"].dims == ("max_epochs", "method", "member", "step")
    assert ds.sizes["member"] == 2 and ds.sizes["step"] == 4
    short = ds["loss"].sel({"max_epochs": 1, "method": "dasc"})      # (a dim named method: sel's dict form)
    assert np.isfinite(short.isel(step=slice(0, 2))).all() and np.isnan(short.isel(step=slice(2, 4))).all()
    alone = trainers.RunDir(tmp_path / "max_epochs=2_method=dasc").metrics()
    np.testing.assert_array_equal(ds["loss"].sel({"max_epochs": 2, "method": "dasc"}).values, alone["loss"].values)
    assert ds["method"].attrs["settings"] and (tmp_path / "results.nc").is_file()
    assert ds["steps_to_threshold"].dims == ("max_epochs", "method") and ds.attrs["metric"] == "performance"


def test_limits_given_with_dashes_are_the_limits_a_run_continues_to(tmp_path):
    config = {**BASE, "seed": 0, "max_epochs": 1}
    sw.train_run(tmp_path, config)
    more = {k: v for k, v in config.items() if k != "max_epochs"} | {"max-epochs": 3}
    assert sw.run_status(tmp_path, more) == "partial"
    assert sw.train_run(tmp_path, more)["epochs"] == 3 and sw.run_status(tmp_path, more) == "done"


def test_a_dimension_named_as_a_variable_of_the_metrics_is_refused_when_gathering(tmp_path):
    with pytest.raises(ValueError, match="grid dimension 'loss' has the name"):
        sw.Sweep({**BASE, "seed": 0}, {"loss": {"a": {"lr": 0.1}}})
    sweep = sw.Sweep({**BASE, "seed": 0, "max_epochs": 1}, {"tau_mean": {"a": {"lr": 0.1}, "b": {"lr": 0.2}}})
    sw.run_sweep(sweep, tmp_path, workers=0, progress=False)
    with pytest.raises(ValueError, match=r"\['tau_mean'\] have the name of a variable"):
        sw.sweep_results(tmp_path)


def test_workers_and_a_scheduler_together_are_refused(tmp_path):
    with pytest.raises(ValueError, match="give one of --workers and --scheduler"):
        sw.run_sweep(sw.Sweep({**BASE, "seed": 0}, {"lr": [0.1]}), tmp_path, workers=2, scheduler="tcp://x:1")


def test_the_learning_curves_of_a_sweep_one_line_per_grid_point_with_the_seeds_range(tmp_path, capsys):
    import matplotlib

    matplotlib.use("Agg")
    sweep = sw.Sweep({**BASE, "max_epochs": 2}, {"lr": [0.01, 0.05], "seed": [0, 1]})
    sw.run_sweep(sweep, tmp_path, workers=0, progress=False)
    ds = sw.sweep_results(tmp_path, save=False)
    ax = sw.plot_sweep(ds)
    assert [line.get_label() for line in ax.get_lines()] == ["lr=0.01", "lr=0.05"]
    assert len(ax.collections) == 2 and ax.get_ylabel() == "accuracy (%)"
    mean = ds["accuracy"].mean("N").sel(lr=0.05).mean("seed").values
    np.testing.assert_allclose(ax.get_lines()[1].get_ydata(), mean)
    assert sw.plot_sweep(ds, "loss").get_ylabel() == "loss"
    with pytest.raises(ValueError, match="variable 'nope' is not in the sweep's results"):
        sw.plot_sweep(ds, "nope")
    assert main(["sweep-results", str(tmp_path), "--plot", str(tmp_path / "c.png"), "-q"]) == 0
    assert (tmp_path / "c.png").stat().st_size > 0
    assert main(["sweep-results", str(tmp_path), "--plot", str(tmp_path / "c.xyz")]) == 2
    assert "the suffix sets the format" in capsys.readouterr().err


@pytest.mark.slow
def test_the_docs_sweep_prints_the_quoted_table(tmp_path, capsys, monkeypatch):
    """docs/sweeps.md's laptop sweep (12 runs, in this process) prints the table the page quotes."""
    import re

    page = (Path(__file__).resolve().parents[2] / "docs" / "sweeps.md").read_text()
    (tmp_path / "sweep.toml").write_text(re.findall(r"```toml\n(.*?)```", page, flags=re.S)[0])
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", "sweep.toml", "-o", "runs/sweep", "--workers", "0", "-q"]) == 0
    capsys.readouterr()
    assert main(["sweep-results", "runs/sweep", "--plot", "curves.png"]) == 0
    printed = [line.rstrip() for line in capsys.readouterr().out.splitlines()]
    block = page.split("$ trainers sweep-results runs/sweep --plot curves.png\n", 1)[1].split("```", 1)[0]
    quoted = [line.rstrip() for line in block.splitlines() if line.strip()]
    assert [p for p in printed if p.strip()] == quoted
