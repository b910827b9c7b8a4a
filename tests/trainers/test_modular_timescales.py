"""Module coordinates in parity recordings, weight conservation of a recorded ModularRNN, and
trained vs effective timescales per module (004 Fig. 4) against closed forms.

Ground truth: a unit with no recurrent or feed-forward input receives only ``g(s_t)``, a function
of the i.i.d. Bernoulli input bit, so its activity is an AR(1) process
``r_t = (1 - 1/tau) r_(t-1) + g(s_t)`` (004 Eq. 1 inside form; LeakyRNN's outside form in its
linear regime) whose autocorrelation decays as ``(1 - 1/tau)^lag``: effective timescale
``-1 / ln(1 - 1/tau)`` with ``tau = clamp(tau, 1)``.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import dynatools  # noqa: E402
import trainers  # noqa: E402
from trainers import analyze  # noqa: E402
from trainers.checkpoint import save_checkpoint  # noqa: E402
from trainers.models import ModularRNN  # noqa: E402
from trainers.modular_timescales import module_timescales, plot_module_timescales  # noqa: E402

SIZE = 4
#: trained tau of the units of modules 0, 1, 2 (module 0 has one unit below 1: clamped to 1)
TAUS = [np.array([0.5, 1.5, 2.0, 2.5]), np.array([3.0, 3.5, 4.0, 5.0]), np.array([6.0, 7.0, 8.0, 10.0])]
FAST = {"steps": 20_000, "trials": 1, "burn_in": 200, "fit_lag": 30, "seed": 0, "progress": False}


def _effective(tau: np.ndarray) -> np.ndarray:
    """Closed-form timescale of the AR(1) process with coefficient 1 - 1/clamp(tau, 1)."""
    a = 1.0 - 1.0 / np.maximum(tau, 1.0)
    with np.errstate(divide="ignore"):
        return np.where(a > 0, -1.0 / np.log(np.where(a > 0, a, 0.5)), 0.0)


def _decoupled_modular(n_modules: int, seed: int = 0) -> ModularRNN:
    net = ModularRNN(n_modules * SIZE, n_modules=n_modules, n_heads=n_modules,
                     generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        for m in range(n_modules):
            net.W_rec[m].zero_()
            net.tau[m].copy_(torch.as_tensor(TAUS[m]))
            net.W_in[m].fill_(1.0)                 # g(1) != g(0): every unit follows the input
        for w in net.W_ff:
            w.zero_()
    return net


def _modular_run(root, Ns=(2, 3, 4)):
    """A growth run directory: the checkpoint of N holds N - 1 modules (module m answers m + 2),
    every module decoupled with the trained taus TAUS[m]."""
    cfg = trainers.TrainConfig.from_dict({"model": "modular", "curriculum": "growth", "module_size": SIZE,
                                          "units": SIZE, "n_max": max(Ns), "seed": 0, "device": "cpu"}).resolved()
    (root / "checkpoints").mkdir(parents=True)
    for i, N in enumerate(Ns):
        active = list(range(2, N + 1))
        save_checkpoint(root / "checkpoints" / f"N{N:03d}.pt", _decoupled_modular(N - 1, seed=i),
                        {"kind": "solved", "config": cfg.to_dict(), "epoch": i + 1, "Ns": active,
                         "accuracy": {str(n): 90.0 + n for n in active}})
    return root


LEAKY_TAUS = {2: np.array([1.5, 2.0, 3.0, 4.0, 6.0, 8.0]), 3: np.array([0.7, 1.2, 2.5, 5.0, 5.0, 9.0])}


def _leaky_run(root):
    """A non-modular multi-head run: LeakyRNN without recurrent weights, inputs and biases
    positive (the leaky ReLU stays linear), other trained taus at each N."""
    units = 6
    cfg = trainers.TrainConfig.from_dict({"model": "leaky", "units": units, "n_max": 3, "seed": 0,
                                          "device": "cpu"}).resolved()
    (root / "checkpoints").mkdir(parents=True)
    for i, (N, taus) in enumerate(LEAKY_TAUS.items()):
        net = trainers.LeakyRNN(units, n_heads=cfg.n_heads, generator=torch.Generator().manual_seed(i))
        with torch.no_grad():
            net.W_rec.zero_()
            net.W_in.fill_(1.0)
            net.b_in.fill_(0.1)
            net.b_rec.fill_(0.1)
            net.tau.copy_(torch.as_tensor(taus))
        active = list(range(2, N + 1))
        save_checkpoint(root / "checkpoints" / f"N{N:03d}.pt", net,
                        {"kind": "solved", "config": cfg.to_dict(), "epoch": i + 1, "Ns": active,
                         "accuracy": {str(n): 95.0 for n in active}})
    return root


# ---------------------------------------------------------------------------- item 1: record
def test_parity_recording_of_a_modular_network_carries_its_modules(tmp_path):
    net = ModularRNN(12, n_modules=3, n_heads=3, generator=torch.Generator().manual_seed(0))
    kw = dict(Ns=[2, 3, 4], steps=40, trials=2, burn_in=10, seed=0)
    rec = trainers.record(net, "parity", **kw)
    dynatools.validate(rec)
    assert rec["module"].dims == ("unit",)
    assert rec["module"].values.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    np.testing.assert_array_equal(rec["tau"].values, torch.cat(list(net.tau)).clamp(min=1).detach().numpy())
    # the streamed file (record(out=...)) carries the same coordinates
    disk = trainers.record(net, "parity", out=tmp_path / "rec.nc", **kw)
    dynatools.validate(disk)
    assert disk["module"].values.tolist() == rec["module"].values.tolist()
    np.testing.assert_array_equal(disk["tau"].values, rec["tau"].values)
    np.testing.assert_array_equal(disk["activity"].values, rec["activity"].values)
    reopened = dynatools.open_recording(tmp_path / "rec.nc")
    assert reopened["module"].values.tolist() == rec["module"].values.tolist()


def test_leaky_parity_recording_keeps_its_tau_and_has_no_module():
    net = trainers.LeakyRNN(5, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        net.tau.copy_(torch.tensor([0.5, 1.0, 2.0, 3.0, 4.0]))
    rec = trainers.record(net, "parity", steps=20, trials=1, burn_in=5, seed=0)
    assert "module" not in rec.coords
    np.testing.assert_array_equal(rec["tau"].values, [1.0, 1.0, 2.0, 3.0, 4.0])


def test_weight_conservation_reads_a_recorded_grown_network():
    """Duplicated modules (growth with duplication, nothing trained) are exact copies: variance 0;
    a fresh module's weights are not (about 2 for independent weights)."""
    net = ModularRNN(4, n_modules=1, generator=torch.Generator().manual_seed(0))
    for seed in (1, 2, 3):
        net.add_module(duplicate_recurrent=True, duplicate_feedforward=True, generator=torch.Generator().manual_seed(seed))
    rec = trainers.record(net, "parity", steps=10, trials=1, burn_in=0, seed=0)
    res = dynatools.weight_conservation(rec)
    assert res["module"].values.tolist() == [1, 2, 3]
    np.testing.assert_allclose(res["W_R"].values, 0.0, atol=1e-12)
    np.testing.assert_allclose(res["W_FF"].values[1:], 0.0, atol=1e-12)      # W_ff[1], W_ff[2] copy W_ff[0]
    fresh = ModularRNN(4, n_modules=1, generator=torch.Generator().manual_seed(0))
    for seed in (1, 2):
        fresh.add_module(duplicate_recurrent=False, duplicate_feedforward=False,
                         generator=torch.Generator().manual_seed(seed))
    res = dynatools.weight_conservation(trainers.record(fresh, "parity", steps=10, trials=1, burn_in=0, seed=0))
    assert (res["W_R"].values > 0.3).all() and res["W_FF"].values[1] > 0.3


# ---------------------------------------------------------------------------- item 3: timescales
def test_modular_run_per_module_means_match_the_closed_form(tmp_path):
    run = _modular_run(tmp_path / "run")
    res = module_timescales(run, **FAST)
    assert res["N"].values.tolist() == [2, 3, 4]
    assert res["solving_module"].values.tolist() == [0, 1, 2]
    assert res.attrs["units"] == "module solving N" and res.attrs["modular"] == 1
    assert res["n_units"].values.tolist() == [SIZE] * 3
    for i, taus in enumerate(TAUS):
        # trained: the mean of clamp(tau, 1) of the module solving N (exactly what the model uses)
        assert res["tau_mean"].values[i] == pytest.approx(np.maximum(taus, 1.0).mean(), rel=1e-6)
        # effective: AR(1) timescales, estimated from 2e4 steps (statistical error a few per cent)
        assert res["tau_net_mean"].values[i] == pytest.approx(_effective(taus).mean(), rel=0.1, abs=0.1)
    # every module of every network: the same per-module values (the modules are the same)
    by_mod = res["tau_mean_by_module"]
    assert by_mod.dims == ("N", "module") and res["module"].values.tolist() == [0, 1, 2]
    assert np.isnan(by_mod.sel(N=2, module=1)) and np.isnan(by_mod.sel(N=3, module=2))
    np.testing.assert_allclose(by_mod.sel(module=0).values, np.maximum(TAUS[0], 1).mean(), rtol=1e-6)
    np.testing.assert_allclose(res["tau_net_mean_by_module"].sel(module=0).values, _effective(TAUS[0]).mean(),
                               rtol=0.1, atol=0.1)
    assert res["accuracy"].values.tolist() == [92.0, 93.0, 94.0] and res["epoch"].values.tolist() == [1, 2, 3]
    assert '"steps": 20000' in res.attrs["params"] and "004" in res.attrs["reference"]
    assert (res.attrs["model"], res.attrs["curriculum"], res.attrs["task"]) == ("modular", "growth", "parity")


def test_non_modular_run_averages_all_units(tmp_path):
    run = _leaky_run(tmp_path / "leaky")
    res = module_timescales(run, **FAST)
    assert res.attrs["units"] == "all units" and res.attrs["modular"] == 0
    assert set(res.dims) == {"N"} and "solving_module" not in res.coords
    for N, taus in LEAKY_TAUS.items():
        row = res.sel(N=N)
        assert float(row["tau_mean"]) == pytest.approx(np.maximum(taus, 1.0).mean(), rel=1e-6)
        assert float(row["tau_net_mean"]) == pytest.approx(_effective(taus).mean(), rel=0.1, abs=0.1)
        assert int(row["n_units"]) == 6


def test_shares_analyze_runs_cache_and_selects_Ns(tmp_path, monkeypatch):
    run = _modular_run(tmp_path / "run")
    params = {k: v for k, v in FAST.items() if k != "progress"}
    analyze.analyze_run(run, parallel="serial", progress=False, **params)
    import trainers.modular_timescales as mt

    real, calls = mt._analyze_checkpoint, []
    cache = trainers.RunDir(run).analysis_path("", 3)
    before = cache.stat().st_mtime_ns

    def counted(*args):
        calls.append(args[1])
        return real(*args)

    monkeypatch.setattr(mt, "_analyze_checkpoint", counted)
    again = module_timescales(run, Ns=[3], refresh=True, **FAST)      # refresh: recorded and analysed again
    assert calls == [3] and cache.stat().st_mtime_ns != before

    def fail(*args, **kwargs):
        raise AssertionError("recomputed although analyze_run cached these settings")

    monkeypatch.setattr(analyze, "_analyze_checkpoint", fail)
    monkeypatch.setattr(mt, "_analyze_checkpoint", fail)
    res = module_timescales(run, Ns=[3], **FAST)
    assert res["N"].values.tolist() == [3] and res["solving_module"].values.tolist() == [1]
    np.testing.assert_allclose(res["tau_net_mean"], again["tau_net_mean"])     # the same seeded recording
    with pytest.raises(ValueError, match=r"Ns=\[5\]: N \[5\] not solved.*solved-N checkpoints for \[2, 3, 4\]"):
        module_timescales(run, Ns=[5], **FAST)
    with pytest.raises(ValueError, match="no N given"):
        module_timescales(run, Ns=[], **FAST)
    with pytest.raises(FileNotFoundError, match="not a trainers run directory"):
        module_timescales(tmp_path / "nothing", **FAST)


def test_plot_overlays_modular_and_non_modular():
    import xarray as xr

    def fake(modular, shift):
        return xr.Dataset({"tau_mean": ("N", [1.5, 1.4, 1.5]), "tau_net_mean": ("N", [2.0 + shift, 3.0, 4.0])},
                          coords={"N": [2, 3, 4]}, attrs={"modular": modular})

    fig = plot_module_timescales({"modular": [fake(1, 0.0), fake(1, 0.5)], "non-modular": fake(0, 0.0)})
    a, b = fig.axes
    assert [line.get_label() for line in a.lines] == ["modular (2 networks)", "non-modular"]
    np.testing.assert_allclose(b.lines[0].get_ydata(), [2.25, 3.0, 4.0])
    assert plot_module_timescales([fake(1, 0), fake(0, 0)]).axes[0].lines[1].get_label() == "non-modular"
    with pytest.raises(TypeError, match="module_timescales"):
        plot_module_timescales({"x": xr.Dataset()})
    import matplotlib.pyplot as plt

    plt.close("all")
