"""trainers report on a tiny CPU run: every figure written as valid PNG and SVG, index.html links
them all; a run at chance gets a note instead of robustness figures."""

from __future__ import annotations

import re

import numpy as np
import pytest

import trainers
from trainers.cli import main

pytest.importorskip("matplotlib")

SMALL = ["--steps", "1500", "--trials", "2", "--repeats", "2", "--accuracy-steps", "200",
         "--accuracy-trials", "3", "--ablate", "3", "--serial", "-q"]


def _ck(run, N):
    """The checkpoint file of a run saved when N was solved."""
    return trainers.RunDir(run).checkpoint_path(N)


def _an(run, name):
    """A file of a run's analysis folder."""
    return trainers.RunDir(run).analysis_dir / name


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("runs") / "multi-head"
    trainers.train(dict(units=24, batch=32, steps_per_epoch=40, eval_batches=4, max_epochs=40, n_max=5,
                        device="cpu", seed=0), d, progress=False)
    assert _ck(d, 3).is_file()     # solves N = 2 and 3 on CPU in seconds
    return d


def test_report_writes_every_figure_and_an_index_that_links_them(tiny_run, tmp_path, make_run):
    at_chance = make_run(tmp_path / "random", Ns=(2, 3), units=24, constant_readout=True)
    out = tmp_path / "report"
    assert main(["report", str(tiny_run), str(at_chance), "-o", str(out), *SMALL]) == 0
    pngs = sorted(out.glob("*.png"))
    names = {p.stem for p in pngs}
    assert {"timescales_vs_N", "weight_balance_vs_N", "dimensionality_vs_N", "ablation", "perturbation_W_rec",
            "perturbation_tau", "autocorrelation_fits_multi-head", "tau_net_distribution_random"} <= names
    for png in pngs:
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
        svg = png.with_suffix(".svg").read_text()
        assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    page = (out / "index.html").read_text()
    linked = set(re.findall(r'src="([^"]+\.png)"', page))
    assert linked == {p.name for p in pngs}
    assert "robustness skipped" in page                       # the random network is at chance
    assert "multi-head" in page and "random" in page
    assert "p ~ U(0, 1) drawn per trial" in page              # the recording protocol is stated


def test_report_reuses_the_cache_and_refuses_an_empty_run(tiny_run, tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["report", str(tiny_run), "-o", str(out), "--no-robustness", *SMALL]) == 0
    cache = _an(tiny_run, "N002.nc")
    stamp = cache.stat().st_mtime_ns
    assert main(["report", str(tiny_run), "-o", str(out), "--no-robustness", *SMALL]) == 0
    assert cache.stat().st_mtime_ns == stamp
    assert not list(out.glob("modular_*")) and "Modular networks" not in (out / "index.html").read_text()
    trainers.RunDir(tmp_path / "empty").checkpoints_dir.mkdir(parents=True)
    assert main(["report", str(tmp_path / "empty"), "-o", str(out), *SMALL]) == 2
    assert "has not solved any N" in capsys.readouterr().err


def test_report_on_a_gated_run_notes_what_does_not_apply(tmp_path, make_run):
    run = make_run(tmp_path / "gru", Ns=(2, 3), units=8, model="gru")
    out = tmp_path / "report"
    assert main(["report", str(run), "-o", str(out), *SMALL]) == 0
    page = (out / "index.html").read_text()
    assert "robustness skipped" in page and "carry no W_rec" in page and "no per-unit timescale" in page
    assert (out / "timescales_vs_N.png").is_file() and not (out / "weight_balance_vs_N.png").exists()


def test_report_with_retraining(tiny_run, tmp_path):
    import xarray as xr

    out = tmp_path / "report"
    assert main(["report", str(tiny_run), "-o", str(out), "--no-robustness", "--retrain", "4", "5",
                 "--retrain-epochs", "1", *SMALL]) == 0
    assert (out / "retraining.png").read_bytes()[:4] == b"\x89PNG"
    res = xr.load_dataset(_an(tiny_run, "retrain_N003.nc"))
    assert list(res.N.values) == [4, 5] and list(res.epochs_trained.values) == [1, 1]
    assert 'src="retraining.png"' in (out / "index.html").read_text()


def test_a_second_report_into_the_same_folder_removes_what_it_no_longer_makes(tiny_run, tmp_path):
    out = tmp_path / "report"
    args = ["report", str(tiny_run), "-o", str(out), *SMALL]
    assert main([*args, "--ablate", "20"]) == 0
    page = (out / "index.html").read_text()
    assert "12 units ablated from each end" in page           # at most half of the 24 units
    assert (out / "ablation.png").is_file()
    cache = _an(tiny_run, "N002.nc")
    stamp = cache.stat().st_mtime_ns
    assert main([*args, "--no-robustness", "--refresh"]) == 0
    assert cache.stat().st_mtime_ns != stamp                  # --refresh recomputes
    assert not (out / "ablation.png").exists() and not (out / "perturbation_tau.svg").exists()
    listed = set((out / "figures.txt").read_text().split())
    assert listed == {p.name for p in out.iterdir() if p.suffix in (".png", ".svg")}


def test_report_checks_everything_before_any_work(tiny_run, tmp_path, make_run, capsys):
    out = tmp_path / "never"
    trainers.RunDir(tmp_path / "empty").checkpoints_dir.mkdir(parents=True)
    assert main(["report", str(tiny_run), str(tmp_path / "empty"), "-o", str(out), *SMALL]) == 2
    assert "has not solved any N" in capsys.readouterr().err and not out.exists()
    assert main(["report", str(tiny_run), "-o", str(out), *SMALL, "--retrain", "1"]) == 2
    assert "N >= 2" in capsys.readouterr().err and not out.exists()
    assert main(["report", str(tiny_run), "-o", str(out), *SMALL, "--workers", "0"]) == 2
    assert "workers" in capsys.readouterr().err and not out.exists()


def test_retraining_is_skipped_for_a_network_at_chance(tiny_run, tmp_path, make_run):
    at_chance = make_run(tmp_path / "random", Ns=(2, 3), units=24, constant_readout=True)
    out = tmp_path / "report"
    assert main(["report", str(at_chance), "-o", str(out), "--no-robustness", "--retrain", "4",
                 "--retrain-epochs", "1", *SMALL]) == 0
    assert "re-training skipped" in (out / "index.html").read_text()
    assert not _an(at_chance, "retrain_N003.nc").exists() and not (out / "retraining.png").exists()


def test_make_report_records_as_the_authors_and_reads_each_checkpoint_once(tmp_path, make_run, monkeypatch):
    import xarray as xr

    import trainers.rundir as rundir
    from trainers.analyze import INPUT_P, analyze_run
    from trainers.report import make_report

    run = make_run(tmp_path / "run", Ns=(2, 3), units=8)
    reads = []
    real = rundir.read_checkpoint
    monkeypatch.setattr(rundir, "read_checkpoint", lambda path: reads.append(path.name) or real(path))
    index = make_report([run], tmp_path / "r", steps=600, trials=2, burn_in=50, fit_lag=10, repeats=2,
                        n_ablate=3, accuracy={"steps": 100, "trials": 2}, parallel="serial", progress=False)
    assert index.name == "index.html" and index.is_file()
    assert sorted(reads) == [_ck(run, 2).name, _ck(run, 3).name]    # analysis and robustness share one read
    summary = xr.load_dataset(_an(run, "summary.nc"))
    assert summary.attrs["input_p"] == INPUT_P
    direct = analyze_run(run, steps=600, trials=2, burn_in=50, fit_lag=10, parallel="serial", progress=False,
                         refresh=True)
    xr.testing.assert_allclose(summary, direct)


# ------------------------------------------------------------------ modular runs (004)
@pytest.fixture(scope="module")
def growth_run(tmp_path_factory):
    """A growth run of 004's modular network that solves N = 2 and 3 (two modules at N = 3)."""
    d = tmp_path_factory.mktemp("runs") / "growth"
    trainers.train({"task": "parity", "model": "modular", "curriculum": "growth", "units": 10, "module_size": 10,
                    "batch": 32, "steps_per_epoch": 50, "eval_batches": 2, "max_epochs": 14, "n_max": 4, "seed": 0,
                    "device": "cpu"}, d, progress=False)
    assert trainers.RunDir(d).solved()[-1] >= 3
    return d


def test_report_of_a_modular_run_adds_the_modular_section(growth_run, tiny_run, tmp_path):
    import xarray as xr

    from trainers.modular_analysis import module_weight_conservation, perturbation_sweep
    from trainers.report import EPS_MODULAR, make_report

    out = tmp_path / "report"
    kw = dict(steps=1500, trials=2, repeats=2, n_ablate=3, accuracy={"steps": 200, "trials": 3}, parallel="serial",
              modular_evaluation={"batches": 1, "batch": 32}, progress=False)
    index = make_report([growth_run, tiny_run], out, **kw)
    for name in ("modular_tasks_solved", "modular_module_accuracy_growth", "modular_weight_conservation_growth",
                 "timescales_vs_N", "ablation"):                   # the leaky run's figures are still there
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "<svg" in (out / f"{name}.svg").read_text()
    assert not (out / "modular_module_accuracy_multi-head.png").exists()      # per-module: modular runs only
    page = index.read_text()
    assert "<h2>Modular networks" in page and "<td>growth</td><td>3</td><td>2 × 10</td>" in page
    assert "Eq. 5 perturbations are in the modular section" in page
    top = trainers.RunDir(growth_run).solved()[-1]
    sweep = xr.load_dataset(_an(growth_run, f"perturbation_sweep_N{top:03d}.nc"))
    assert sweep["target"].values.tolist() == ["recurrent", "feedforward", "tau"]
    assert sweep["epsilon"].values.tolist() == list(EPS_MODULAR) and sweep["N"].values.tolist() == [2, 3]
    model = trainers.RunDir(growth_run).checkpoint(top).model()
    direct = perturbation_sweep(model, "parity", EPS_MODULAR, repeats=2, seed=0, Ns=[2, 3], batches=1, batch=32)
    np.testing.assert_array_equal(sweep["accuracy"], direct["accuracy"])
    cons = module_weight_conservation(model)
    assert f"<td>{cons.attrs['recurrent_mean']:.3g}</td>" in page
    # the leaky run is swept too, as the non-modular network of Fig. 3 (W_rec and tau)
    leaky = xr.load_dataset(_an(tiny_run, "perturbation_sweep_N003.nc"))
    assert leaky["target"].values.tolist() == ["recurrent", "tau"]
    # a second report reuses the cached sweeps; without robustness only weight conservation is drawn
    stamp = _an(growth_run, f"perturbation_sweep_N{top:03d}.nc").stat().st_mtime_ns
    make_report([growth_run], out, **kw)
    assert _an(growth_run, f"perturbation_sweep_N{top:03d}.nc").stat().st_mtime_ns == stamp
    make_report([growth_run], out, **{**kw, "robustness": False})
    assert (out / "modular_weight_conservation_growth.png").is_file()
    assert not (out / "modular_tasks_solved.png").exists()


def test_a_modular_report_checks_its_options_first(growth_run, tmp_path):
    from trainers.report import make_report

    with pytest.raises(ValueError, match="modular_evaluation batch"):
        make_report([growth_run], tmp_path / "never", modular_evaluation={"batch": 0}, progress=False)
    assert not (tmp_path / "never").exists()


def test_report_fixed_points_section_equals_the_direct_search(tiny_run, tmp_path):
    """--fixed-points adds one figure per run whose points are those of fixed_points_of_run at the
    largest solved N (cached; a second report reads the cache). The report searches on the CPU on
    every machine."""
    import xarray as xr

    from trainers.fixed_points import fixed_points_of_run
    from trainers.report import FIXED_POINT_STATES

    out = tmp_path / "report"
    assert main(["report", str(tiny_run), "-o", str(out), *SMALL, "--no-robustness", "--fixed-points"]) == 0
    assert (out / "fixed_points_multi-head.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    top = trainers.RunDir(tiny_run).solved()[-1]
    cached = xr.load_dataset(_an(tiny_run, f"fixed_points_report_N{top:03d}.nc"))
    direct = fixed_points_of_run(tiny_run, top, n_init=FIXED_POINT_STATES, device="cpu").result
    assert cached.sizes["point"] == direct.sizes["point"] >= 1
    np.testing.assert_allclose(cached["state"].values, direct["state"].values, atol=1e-10)
    np.testing.assert_allclose(cached["eigenvalue_real"].values, direct["eigenvalue_real"].values, atol=1e-10)
    assert cached["stability"].values.tolist() == direct["stability"].values.tolist()
    page = (out / "index.html").read_text()
    assert "fixed point(s)" in page and "N = %d" % top in page
    stamp = _an(tiny_run, f"fixed_points_report_N{top:03d}.nc").stat().st_mtime_ns
    assert main(["report", str(tiny_run), "-o", str(out), *SMALL, "--no-robustness", "--fixed-points"]) == 0
    assert _an(tiny_run, f"fixed_points_report_N{top:03d}.nc").stat().st_mtime_ns == stamp
