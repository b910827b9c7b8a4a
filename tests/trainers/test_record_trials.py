"""record() on trial tasks (issue 13, item 5): firing rates in seconds with task periods and
padded trials, ensembles in one file with a member dim, `trainers record RUN_DIR` on trial-task
runs, and what dynatools reads from them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

import dynatools as dt
import trainers
from trainers.ensemble import Ensemble
from trainers.models import RateRNN
from trainers.registry import build
from trainers.tasks import TASKS
from trainers.tasks.trials import PAD, PERIODS


def _task(name, **options):
    return build(TASKS, name, TASKS.resolve_options(name, options))


def _net(task, seed=0, n=10, **kw):
    return RateRNN(n, input_dim=task.input_dim, n_classes=task.output_dim, generator=torch.Generator().manual_seed(seed),
                   **kw)


def _trials(task, trials, seed, steps=None):
    """The trials record draws: the same stream, seeded with ``seed``."""
    return task.recording_stream(trials, steps, generator=torch.Generator().manual_seed(seed))


def _valid(lengths, T):
    return np.arange(T)[None, :] < np.asarray(lengths)[:, None]


@pytest.mark.parametrize("name, kw", [
    ("go", {}),
    ("dgo", {"form": "current", "activation": "tanh", "dale": True, "tau_distribution": "uniform"}),
    ("mtwm", {"input_units": 4, "output_units": 3}),
])
def test_a_recording_is_the_network_on_the_tasks_trials(name, kw):
    task = _task(name)
    net = _net(task, **kw)
    rec = trainers.record(net, task, trials=3, seed=4)
    dt.validate(rec)
    u, batch = _trials(task, 3, 4)
    T = u.shape[1]
    lengths = batch.lengths.numpy()
    assert rec.activity.dims == ("trial", "time", "unit") and rec.activity.shape == (3, T, 10)
    np.testing.assert_array_equal(rec.trial_length.values, lengths)
    with torch.no_grad():
        rates = net.rates(net(u)).numpy()
        Y = net.readout(net(u), heads=1).numpy()
    valid = _valid(lengths, T)
    np.testing.assert_allclose(rec.activity.values[valid], rates[valid], rtol=1e-6, atol=1e-6)
    assert np.isnan(rec.activity.values[~valid]).all() and np.isfinite(rec.activity.values[valid]).all()
    np.testing.assert_allclose(rec.output.values[valid], Y[valid], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(rec.input.values[valid], u.numpy()[valid])
    np.testing.assert_array_equal(rec.task_target.values[:, :, 0][valid], batch.targets.numpy()[valid])
    assert np.isnan(rec.input.values[~valid]).all() and np.isnan(rec.task_target.values[~valid]).all()
    # period labels are the batch's codes; "pad" exactly after each trial's end
    codes = batch.periods.numpy()
    expected = np.where(codes == PAD, "pad", np.asarray(PERIODS)[np.maximum(codes, 0)])
    assert rec.period.dims == ("trial", "time")
    np.testing.assert_array_equal(rec.period.values, expected)
    # time in seconds from the model's dt in ms
    assert rec.time.attrs["units"] == "s" and rec.attrs["dt"] == pytest.approx(net.dt / 1000)
    np.testing.assert_allclose(rec.time.values, np.arange(T) * net.dt / 1000)
    coords = net.unit_coords()
    np.testing.assert_allclose(rec.tau.values, coords["tau"])
    np.testing.assert_array_equal(rec.population.values, coords["population"])
    np.testing.assert_array_equal(rec.sign.values, coords["sign"])
    for key, value in net.recording_weights().items():
        np.testing.assert_array_equal(rec[key].values, value)
    assert rec.attrs["model"] == "rate" and rec.attrs["task"] == name and rec.attrs["seed"] == 4
    assert rec.attrs["noise"] is False and rec.attrs["task_config"] == task.config()
    assert "rates" in rec.activity.attrs["description"]


def test_steps_pads_or_cuts_every_trial():
    task = _task("go")
    net = _net(task)
    natural = trainers.record(net, task, trials=3, seed=1)
    T, lengths = natural.sizes["time"], natural.trial_length.values
    cut = trainers.record(net, task, trials=3, seed=1, steps=100)
    assert cut.sizes["time"] == 100 and (cut.trial_length.values == 100).all()
    np.testing.assert_allclose(cut.activity.values, natural.activity.values[:, :100], rtol=1e-6)
    assert "pad" not in cut.period.values
    longer = trainers.record(net, task, trials=3, seed=1, steps=T + 20)
    assert longer.sizes["time"] == T + 20
    np.testing.assert_array_equal(longer.trial_length.values, lengths)
    np.testing.assert_array_equal(longer.activity.values[:, :T], natural.activity.values)
    assert np.isnan(longer.activity.values[:, T:]).all() and (longer.period.values[:, T:] == "pad").all()


def _ensemble(task, K=3, **kw):
    return Ensemble([_net(task, seed=k, tau_distribution="uniform", train_tau=True, **kw) for k in range(K)])


def test_an_ensemble_is_one_recording_with_a_member_dim(monkeypatch):
    task = _task("dm")
    ens = _ensemble(task)
    calls = []
    run = Ensemble.run
    monkeypatch.setattr(Ensemble, "run", lambda self, *a, **k: calls.append(1) or run(self, *a, **k))
    rec = trainers.record(ens, task, trials=3, seed=2)
    assert len(calls) == 1                                    # one batched computation of all members
    dt.validate(rec)
    assert rec.activity.dims == ("member", "trial", "time", "unit") and rec.sizes["member"] == 3
    assert rec.W_rec.dims == ("member", "unit", "unit_pre") and rec.output.dims[0] == "member"
    assert rec.input.dims == ("trial", "time", "input_dim")          # the members share the trials
    assert rec.task_target.dims == ("trial", "time", "head", "class")
    assert rec.tau.dims == ("member", "unit") and rec.sign.dims == ("unit",)   # tau differs, signs do not
    assert rec.attrs["members"] == 3 and rec.attrs["model_config"]["model"] == "ensemble"
    u, batch = _trials(task, 3, 2)
    valid = _valid(batch.lengths.numpy(), u.shape[1])
    for k, m in enumerate(ens.members):
        alone = trainers.record(m, task, trials=3, seed=2)
        np.testing.assert_allclose(rec.activity.values[k], alone.activity.values, rtol=1e-6, atol=1e-6,
                                   equal_nan=True)
        with torch.no_grad():
            own = m.rates(m(u)).numpy()
        np.testing.assert_allclose(rec.activity.values[k][valid], own[valid], rtol=1e-6, atol=1e-6)
        for key in ("W_rec", "W_in", "W_out", "bias", "tau"):
            np.testing.assert_array_equal(rec[key].values[k], alone[key].values)
        np.testing.assert_array_equal(rec.period.values, alone.period.values)


def test_private_noise_on_request():
    task = _task("go")
    ens = _ensemble(task, K=2, sigma=0.1, noise="ou").eval()
    quiet = trainers.record(ens, task, trials=2, seed=3)
    noisy = trainers.record(ens, task, trials=2, seed=3, noise=True)
    assert not ens.training and not ens.members[0].training          # evaluation mode restored
    assert noisy.attrs["noise"] is True
    assert np.nanmax(np.abs(noisy.activity.values - quiet.activity.values)) > 1e-3
    np.testing.assert_array_equal(noisy.activity.values, trainers.record(ens, task, trials=2, seed=3,
                                                                         noise=True).activity.values)
    alone = trainers.record(ens.members[1], task, trials=2, seed=3, noise=True)
    np.testing.assert_allclose(noisy.activity.values[1], alone.activity.values, rtol=1e-5, atol=1e-6,
                               equal_nan=True)
    ens.train()
    trainers.record(ens, task, trials=1, seed=3)                       # noise-free even from training mode
    assert ens.training
    with pytest.raises(ValueError, match="no private noise"):
        trainers.record(_net(task), task, trials=1, seed=0, noise=True)


def test_round_trip_and_timescales_of_an_ensemble(tmp_path):
    task = _task("go")
    ens = _ensemble(task, K=2)
    path = tmp_path / "ens.nc"
    rec = trainers.record(ens, task, trials=2, seed=5, out=path)
    mem = trainers.record(ens, task, trials=2, seed=5)
    back = dt.open_recording(path)
    dt.validate(back)
    np.testing.assert_array_equal(back.activity.values, mem.activity.values)
    np.testing.assert_array_equal(back.period.values, mem.period.values)
    np.testing.assert_array_equal(back.trial_length.values, mem.trial_length.values)
    np.testing.assert_array_equal(back.task_mask.values, mem.task_mask.values)
    assert back.attrs["model_config"] == mem.attrs["model_config"] and back.attrs["noise"] is False
    assert rec.activity.dims == back.activity.dims
    with pytest.warns(RuntimeWarning):                               # trials are short for the fits
        ts = dt.timescales(back)
    assert ts.tau_net.dims == ("member", "unit") and ts.tau_net.attrs["units"] == "s"


def test_trainers_record_on_trial_runs(tmp_path, capsys):
    from dynatools.cli import main as dynatools_main
    from trainers.cli import main

    cfg = {"task": "go", "units": 8, "batch": 4, "steps_per_epoch": 1, "max_epochs": 1, "eval_batches": 1,
           "device": "cpu", "seed": 1}
    trainers.train({**cfg, "members": 2}, tmp_path / "k2", progress=False)
    trainers.train(cfg, tmp_path / "k1", progress=False)
    out = tmp_path / "k2.nc"
    assert main(["record", str(tmp_path / "k2"), "--trials", "2", "--seed", "0", "-o", str(out),
                 "--device", "cpu"]) == 0
    assert "2 networks" in capsys.readouterr().out
    rec = dt.open_recording(out)
    assert rec.activity.dims[0] == "member" and rec.sizes["member"] == 2 and rec.sizes["trial"] == 2
    assert rec.attrs["train_seed"] == 1 and len(rec.attrs["performance"]) == 2
    ens = trainers.RunDir(tmp_path / "k2").load().model
    direct = trainers.record(ens, "go", trials=2, seed=0)
    np.testing.assert_array_equal(rec.activity.values, direct.activity.values)
    one = tmp_path / "k1.nc"
    assert main(["record", str(tmp_path / "k1"), "--trials", "2", "--steps", "80", "--seed", "0", "-q",
                 "-o", str(one), "--device", "cpu"]) == 0
    assert dt.open_recording(one).activity.shape == (2, 80, 8)
    assert dynatools_main(["info", str(out)]) == 0
    info = capsys.readouterr().out
    assert "ensemble of 2 member(s)" in info and "periods: fixation, stimulus, response" in info
    assert dynatools_main(["timescales", str(out), "-o", str(tmp_path / "ts.nc"), "-q"]) == 0
    capsys.readouterr()                                       # the fits' warnings: the trials are short
    with xr.open_dataset(tmp_path / "ts.nc") as ts:
        assert ts.tau_net.dims == ("member", "unit")
    for argv, match in ([["--N", "3"], "drop --N"], [["--p", "0.5"], "drop --p"],
                        [["--burn-in", "5"], "leave burn_in unset"], [["--trials", "0"], "trials must be"],
                        [["--steps", "0"], "steps must be"]):
        assert main(["record", str(tmp_path / "k1"), *argv, "-o", str(tmp_path / "x.nc"), "--device", "cpu"]) == 2
        err = capsys.readouterr().err.strip()
        assert match in err and "\n" not in err
    assert not (tmp_path / "x.nc").exists()
    # the cognitive tasks train with OU noise (sigma 0.1): --noise records with it
    assert main(["record", str(tmp_path / "k1"), "--noise", "--trials", "1", "-q", "-o", str(tmp_path / "n.nc"),
                 "--device", "cpu"]) == 0
    assert dt.open_recording(tmp_path / "n.nc").attrs["noise"] is True


@pytest.mark.parametrize("kwargs, match", [
    ({"p": 0.5}, "leave p unset"),
    ({"trials": 0}, r"trials must be an integer >= 1"),
    ({"Ns": [2]}, "leave Ns unset"),
    ({"burn_in": 10}, "leave burn_in unset"),
    ({"steps": 0}, r"steps must be an integer >= 1"),
    ({"noise": True}, "leave noise unset"),
])
def test_bad_input_is_one_line_naming_the_fix(kwargs, match):
    task = _task("go")
    with pytest.raises(ValueError, match=match) as info:
        trainers.record(_net(task), task, **{"trials": 2, "seed": 0, **kwargs})
    assert "\n" not in str(info.value)


def test_mismatches_and_ensembles_on_stream_tasks():
    task = _task("go", dt=10.0)
    with pytest.raises(ValueError, match="build the task with dt=5"):
        trainers.record(_net(_task("go")), task, trials=1, seed=0)
    with pytest.raises(ValueError, match="record it on the task it was trained on"):
        trainers.record(_net(_task("mtwm")), "go", trials=1, seed=0)
    parity_net = RateRNN(6, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"record\(ensemble.members\[k\]"):
        trainers.record(Ensemble([parity_net]), "parity", steps=10, burn_in=0, trials=1, seed=0)
    with pytest.raises(ValueError, match="noise=True applies to trial tasks"):
        trainers.record(parity_net, "parity", steps=10, burn_in=0, trials=1, seed=0, noise=True)
    rec = trainers.record(parity_net, "parity", steps=10, trials=1, seed=0)       # defaults as before
    assert rec.attrs["burn_in"] == 500 and rec.time.attrs["units"] == "step"
