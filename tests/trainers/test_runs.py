"""trainers.analyze.analyze_run over the solved-N checkpoints of a run: caching, serial = dask,
the recording protocol, errors; and the ``trainers analyze`` command."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import dynatools as dt
import trainers
from dynatools.summary import analyze_recording
from dynatools.timescales import RELIABLE
from dynatools.utils import file_stamp
from trainers.analyze import INPUT_P, analyze_run, load_checkpoint_analysis
from trainers.cli import main

PARAMS = dict(steps=600, trials=2, burn_in=50, fit_lag=10, progress=False)


def _ck(run, N):
    """The checkpoint file of a run saved when N was solved."""
    return trainers.RunDir(run).checkpoint_path(N)


def _an(run, name):
    """A file of a run's analysis folder."""
    return trainers.RunDir(run).analysis_dir / name



def test_analyze_run_collects_every_checkpoint_and_matches_a_direct_analysis(tmp_path, make_run):
    run = make_run(tmp_path / "run")
    summary = analyze_run(run, parallel="serial", **PARAMS)
    assert list(summary.N.values) == [2, 3, 4] and summary.sizes["unit"] == 10
    # the N=3 entry equals recording that checkpoint by hand (p ~ U(0, 1) per trial, the authors'
    # protocol) and analysing the recording
    net = trainers.load_model(_ck(run, 3))
    rec = trainers.record(net, trainers.Parity(), Ns=[2, 3], steps=600, trials=2, burn_in=50, seed=0,
                          outputs=False, p="uniform")
    direct = analyze_recording(rec, fit_lag=10)
    assert summary.attrs["input_p"] == INPUT_P == "uniform (per-trial U(0,1), the authors' protocol)"
    assert xr.load_dataset(_an(run, "N003.nc")).attrs["input_p"] == INPUT_P
    np.testing.assert_allclose(summary.tau_net.sel(N=3), direct.tau_net, rtol=1e-10)
    np.testing.assert_allclose(summary.tau.sel(N=3), np.linspace(1.0, 3.0, 10), rtol=1e-6)
    assert float(summary.dimensionality.sel(N=3)) == float(direct.dimensionality)
    np.testing.assert_allclose(summary.balance.sel(N=3), dt.weight_balance(net).balance, rtol=1e-6)
    np.testing.assert_array_equal(summary.accuracy, [92.0, 93.0, 94.0])   # each checkpoint's accuracy on its N
    assert float(summary.tau_mean.sel(N=3)) == pytest.approx(2.0, rel=1e-6)   # linspace(1, 3) over units
    # tau_net statistics: over the units whose fit is reliable only
    status, tau_net = summary.status.sel(N=2), summary.tau_net.sel(N=2)
    reliable = tau_net.where(status.isin(list(RELIABLE)) | ((status == "tau_at_bound") & (tau_net < 1.0)))
    assert float(summary.tau_net_median.sel(N=2)) == pytest.approx(float(np.nanmedian(reliable)))
    assert int(summary.tau_net_excluded.sel(N=2)) == int(np.isfinite(summary.tau_net.sel(N=2)).sum()
                                                         - np.isfinite(reliable).sum())
    on_disk = xr.load_dataset(_an(run, "summary.nc"))
    xr.testing.assert_allclose(on_disk, summary)
    assert "autocorrelation" in load_checkpoint_analysis(run, 4)


def test_cache_is_reused_and_invalidated(tmp_path, make_run):
    run = make_run(tmp_path / "run", Ns=(2, 3))
    analyze_run(run, parallel="serial", **PARAMS)
    cache = _an(run, "N002.nc")
    stamp = cache.stat().st_mtime_ns
    analyze_run(run, parallel="serial", **PARAMS)
    assert cache.stat().st_mtime_ns == stamp                      # reused
    analyze_run(run, parallel="serial", **{**PARAMS, "trials": 3})
    assert cache.stat().st_mtime_ns != stamp                      # other parameters: recomputed
    stamp = cache.stat().st_mtime_ns
    other = make_run(tmp_path / "other", Ns=(3, 2), units=10)    # its N002 has other weights
    _ck(run, 2).write_bytes(_ck(other, 2).read_bytes())
    before = xr.load_dataset(cache).tau_net.values
    analyze_run(run, parallel="serial", **{**PARAMS, "trials": 3})
    assert cache.stat().st_mtime_ns != stamp
    assert not np.allclose(xr.load_dataset(cache).tau_net.values, before, equal_nan=True)


@pytest.mark.slow
def test_dask_equals_serial(tmp_path, make_run):
    pytest.importorskip("dask")                      # the local pool does not need distributed
    a = analyze_run(make_run(tmp_path / "a"), parallel="serial", **PARAMS)
    b = analyze_run(make_run(tmp_path / "b"), parallel="dask", workers=2, **PARAMS)
    xr.testing.assert_allclose(a.drop_attrs(), b.drop_attrs())


def test_run_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a trainers run directory"):
        analyze_run(tmp_path)
    trainers.RunDir(tmp_path).checkpoints_dir.mkdir()
    with pytest.raises(FileNotFoundError, match="has not solved any N"):
        analyze_run(tmp_path)
    with pytest.raises(FileNotFoundError, match="analyze_run"):
        load_checkpoint_analysis(tmp_path, 5)
    with pytest.raises(ValueError, match="parallel"):
        analyze_run(tmp_path, parallel="threads")


def test_a_sequence_task_run_is_refused_with_what_it_has(tmp_path):
    trainers.train({"task": "adding", "length": 15, "units": 6, "steps_per_epoch": 2, "max_epochs": 1,
                    "test_size": 20, "device": "cpu", "seed": 0}, tmp_path / "r", progress=False)
    with pytest.raises(ValueError, match="adding run: it has no per-N networks.*metrics"):
        analyze_run(tmp_path / "r")


@pytest.mark.slow
def test_an_existing_dask_client_is_used(tmp_path, make_run, monkeypatch):
    distributed = pytest.importorskip("distributed")
    run = make_run(tmp_path / "r", Ns=(2, 3))
    import concurrent.futures

    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as c, \
            distributed.Client(c) as client:
        def no_local_pool(*args, **kwargs):
            raise AssertionError("a local process pool was started although a client is running")

        monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", no_local_pool)
        res = analyze_run(run, parallel="dask", **PARAMS)
        assert client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.task_prefixes)) > 0
    assert list(res.N.values) == [2, 3]


@pytest.mark.parametrize(("n_tasks", "workers", "cores", "limit", "expected"), [
    (10, None, 2, None, (2, 1)),     # one single-threaded worker per core
    (10, 2, 16, None, (2, 8)),       # two workers share 16 cores: 8 threads each, not 1
    (1, None, 16, None, (1, 16)),    # one checkpoint: one worker with every core
    (10, 5, 2, None, (5, 1)),        # more workers than cores: still at least one thread
    (10, 2, 16, 1, (2, 1)),          # the user's OMP_NUM_THREADS=1 is kept
])
def test_local_pool_shares_the_cores(n_tasks, workers, cores, limit, expected):
    from trainers.analyze import _local_pool

    assert _local_pool(n_tasks, workers, cores, limit) == expected


@pytest.mark.parametrize(("cores", "load", "pool"), [
    (2, 0.0, False),     # 2 idle cores: the pool's start-up and shared cores cost more than it gains
    (4, 0.0, True),
    (4, 1.5, False),     # 4 cores beside 1.5 cores of other work: serial
    (16, 3.0, True),
])
def test_auto_uses_a_pool_only_with_3_free_cores(tmp_path, make_run, monkeypatch, cores, load, pool):
    import trainers.analyze as analyze

    calls = []
    monkeypatch.setattr(analyze, "_cores", lambda: cores)
    monkeypatch.setattr(analyze.os, "getloadavg", lambda: (load, load, load))
    monkeypatch.setattr(analyze, "_client_running", lambda: False)
    monkeypatch.setattr(analyze, "_run_dask", lambda *a, **k: calls.append("dask"))
    monkeypatch.setattr(analyze, "_analyze_checkpoint", lambda *a, **k: calls.append("serial"))
    run = make_run(tmp_path / "r")
    with pytest.raises(RuntimeError, match="keeps being rewritten"):   # nothing written: only the choice matters
        analyze_run(run, parallel="auto", **PARAMS)
    assert calls and (calls[0] == "dask") == pool


def test_local_pool_rejects_zero_workers():
    from trainers.analyze import _local_pool

    with pytest.raises(ValueError, match="workers"):
        _local_pool(3, 0, 2)


@pytest.mark.parametrize("saved, N, Ns, expected", [
    ({"2": 100.0, "3": 98.5}, 3, [2, 3], 98.5),      # what trainers.train saves
    ([100.0, 98.5], 3, [2, 3], 98.5),                # one value per head
    ({"2": 100.0}, 3, [2, 3], np.nan),
    (None, 3, [3], np.nan),
])
def test_checkpoint_accuracy_formats(saved, N, Ns, expected):
    from trainers.analyze import _checkpoint_accuracy
    from trainers.rundir import Checkpoint

    ck = Checkpoint(Path("checkpoint.pt"), {"meta": {"kind": "solved", "Ns": Ns, "accuracy": saved}})
    np.testing.assert_equal(_checkpoint_accuracy(ck, N), expected)


def test_a_cache_rewritten_with_other_parameters_is_not_mixed_into_the_summary(tmp_path, make_run, monkeypatch):
    import trainers.analyze as analyze

    run = make_run(tmp_path / "run", Ns=(2, 3))
    analyze_run(run, parallel="serial", **PARAMS)
    expected = analyze_run(run, parallel="serial", **PARAMS)
    analyze_run(run, parallel="serial", **{**PARAMS, "trials": 3})            # now N002/N003 hold trials=3
    # another process wins the race: the caches look valid when checked, then hold other parameters
    monkeypatch.setattr(analyze, "is_cached", lambda path, key: True)
    again = analyze_run(run, parallel="serial", **PARAMS)
    xr.testing.assert_allclose(again.drop_attrs(), expected.drop_attrs())
    assert xr.load_dataset(_an(run, "N002.nc")).attrs["cache_key"] == analyze._key(
        file_stamp(_ck(run, 2)), {**{k: v for k, v in PARAMS.items() if k != "progress"},
                                                         "threshold": 0.9, "seed": 0})


def test_each_checkpoint_file_is_read_once(tmp_path, make_run, monkeypatch):
    import trainers.rundir as rundir

    run = make_run(tmp_path / "run", Ns=(2, 3))
    reads = []
    real = rundir.read_checkpoint
    monkeypatch.setattr(rundir, "read_checkpoint", lambda path: reads.append(Path(path).name) or real(path))
    analyze_run(run, parallel="serial", **PARAMS)
    assert sorted(reads) == [_ck(run, 2).name, _ck(run, 3).name]
    reads.clear()
    analyze_run(run, parallel="serial", **PARAMS)                # cached: no checkpoint is read
    assert reads == []


def test_analyze_command_writes_the_summary_and_prints_it(tmp_path, make_run, capsys):
    run = make_run(tmp_path / "run", Ns=(2, 3))
    assert main(["analyze", str(run), "--steps", "600", "--trials", "2", "--burn-in", "50", "--fit-lag", "10",
                 "--serial"]) == 0
    out = capsys.readouterr().out
    assert "summary.nc: 2 solved N (2..3)" in out and "uniform (per-trial U(0,1)" in out
    on_disk = xr.load_dataset(_an(run, "summary.nc"))
    expected = analyze_run(run, parallel="serial", **PARAMS)       # the same parameters: from the cache
    xr.testing.assert_allclose(on_disk, expected)
    assert main(["analyze", str(run), "--steps", "600", "--trials", "2", "--burn-in", "50", "--fit-lag", "10",
                 "--threshold", "0.5", "--seed", "1", "--refresh", "--serial", "-q"]) == 0
    assert capsys.readouterr().out == ""
    again = xr.load_dataset(_an(run, "summary.nc"))
    assert json.loads(again.attrs["params"])["threshold"] == 0.5 and json.loads(again.attrs["params"])["seed"] == 1
    assert main(["analyze", str(tmp_path / "nothing")]) == 2
    assert "trainers analyze: error:" in capsys.readouterr().err
    assert main(["analyze", str(run), "--workers", "0", "-q"]) == 2
    assert "workers" in capsys.readouterr().err


@pytest.mark.parametrize("env, expected", [({"DYNATOOLS_THREADS": "1"}, 1), ({"OMP_NUM_THREADS": "2,1"}, 2), ({}, 4)])
def test_pool_workers_get_the_users_thread_choice(monkeypatch, env, expected):
    """DYNATOOLS_THREADS (--threads) is what each worker gets; OMP_NUM_THREADS (even a nested
    list) caps cores // workers."""
    import concurrent.futures

    import trainers.analyze as analyze

    for name in ("DYNATOOLS_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.setenv(name, "1")
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(analyze, "_cores", lambda: 8)
    monkeypatch.setattr(analyze, "_client_running", lambda: False)
    seen = {}

    class Stop(Exception):
        pass

    def stub(*args, initargs=(), **kwargs):
        seen["per"] = initargs[0]
        seen["env"] = os.environ.get("DYNATOOLS_THREADS")
        raise Stop

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", stub)
    with pytest.raises(Stop):
        analyze._run_dask("run", [(2, "a.nc"), (3, "b.nc")], {}, None, False)
    assert seen == {"per": expected, "env": str(expected)}
