"""``trainers fixed-points RUN [--N]`` and :func:`trainers.fixed_points.fixed_points_of_run`: the
points of a run's network solve its own step equation (checked with numpy from the checkpoint's
weights), rate networks are classified by their flow, ensembles get a ``member`` dim, and bad
arguments get one-line errors."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch
import xarray as xr

import trainers
from trainers._cli_fixed_points import add_parsers
from trainers.fixed_points import fixed_points_of_run, summary_lines


def cli(argv: list[str]) -> int:
    """The ``fixed-points`` subcommand on its own parser (as trainers.cli registers it)."""
    parser = argparse.ArgumentParser(prog="trainers")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def _registered() -> bool:
    from trainers.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return "fixed-points" in sub.choices


def test_a_leaky_run_at_N_its_points_solve_the_leaky_step(tmp_path, make_run, capsys):
    run = make_run(tmp_path / "run", Ns=(2, 3), units=8)
    assert cli(["fixed-points", str(run), "--N", "3", "--n-init", "200", "--trials", "2", "--steps", "60",
                "--device", "cpu", "--plot", str(tmp_path / "fp.png")]) == 0
    out = capsys.readouterr().out
    assert "fixed point(s)" in out and "wrote" in out
    path = run / "analysis" / "fixed_points_N003.nc"
    fp = xr.load_dataset(path)
    assert (tmp_path / "fp.png").stat().st_size > 1000
    assert fp.attrs["N"] == 3 and fp.attrs["task"] == "parity" and fp.attrs["time"] == "discrete"
    assert fp.attrs["jacobian"] == "analytic"
    model = trainers.RunDir(run).checkpoint(3).model().double()
    assert fp.sizes["point"] >= 1
    with torch.no_grad():
        h = torch.as_tensor(fp.state.values)
        np.testing.assert_allclose(model.step(h, None).numpy(), fp.state.values, atol=1e-7)
        np.testing.assert_allclose(model.jacobian(h, None).numpy(), fp.jacobian.values, atol=1e-10)
    ev = np.linalg.eigvals(fp.jacobian.values)
    n_unstable = (np.abs(ev) > 1 + 1e-6).sum(1)
    np.testing.assert_array_equal(fp.n_unstable.values, n_unstable)


def test_a_gru_run_starts_from_its_states_and_an_lstm_from_its_full_state(tmp_path, make_run):
    for model in ("gru", "lstm"):
        run = make_run(tmp_path / model, Ns=(2,), units=5, model=model)
        res = fixed_points_of_run(run, 2, n_init=80, trials=2, steps=40, device="cpu")
        net = trainers.RunDir(run).checkpoint(2).model().double()
        assert res.states.sizes["unit"] == net.state_size               # [h, c] for the LSTM
        assert res.result.sizes["unit"] == net.state_size
        with torch.no_grad():
            H = net(torch.as_tensor(np.zeros((1, 3, net.input_dim))))         # the states are real states
        assert H.shape[-1] == res.states.sizes["unit"]
        if res.result.sizes["point"]:
            h = torch.as_tensor(res.result.state.values)
            with torch.no_grad():
                np.testing.assert_allclose(net.step(h, None).numpy(), h.numpy(), atol=1e-7)


@pytest.fixture(scope="module")
def rate_ensemble(tmp_path_factory):
    out = tmp_path_factory.mktemp("go")
    trainers.train({"device": "cpu", "seed": 0, "units": 10, "batch": 8, "eval_batches": 1, "lr": 0.01,
                    "task": "go", "steps_per_epoch": 5, "max_epochs": 1, "members": 2}, out, progress=False)
    return out


def test_a_rate_ensemble_gets_members_and_flow_stability(rate_ensemble):
    res = fixed_points_of_run(rate_ensemble, n_init=150, trials=3, device="cpu")
    fp = res.result
    assert fp.sizes["member"] == 2 and fp.attrs["time"] == "continuous" and fp.attrs["dt"] > 0
    assert "member" in res.states.dims
    ens = trainers.RunDir(rate_ensemble).checkpoint().model().double()
    for k, m in enumerate(ens.members):
        W, b = m.effective_W_rec().detach().numpy(), m.b.detach().numpy()
        ok = fp["count"].values[k] > 0
        assert ok.any()
        for r in fp.state.values[k][ok]:                     # ReLU rate form: -r + relu(W r + b) = 0
            assert np.abs(-r + np.maximum(W @ r + b, 0.0)).max() < 1e-6
    assert all(line.startswith(f"member {k}:") for k, line in enumerate(summary_lines(fp)))
    import matplotlib

    matplotlib.use("Agg")
    from dynatools.fixed_points import plot_fixed_points

    ax = plot_fixed_points(fp, res.states, member=1)             # member 1's points in its own PCA space
    n_points = int((fp["count"].values[1] > 0).sum())
    assert sum(len(c.get_offsets()) for c in ax.collections) == n_points
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.mark.parametrize("argv, match", [
    (["--tol", "0"], r"--tol must be > 0"),
    (["--tol=-1e-9"], r"--tol must be > 0"),
    (["--n-init", "0"], r"--n-init must be >= 1"),
    (["--input", "1", "2", "3"], r"model takes 1 .*u\* of shape \(1,\)"),
    (["--N", "7"], r"no head for N=7|no checkpoint for N=7"),
])
def test_bad_arguments_get_one_line_errors(tmp_path, make_run, argv, match):
    run = make_run(tmp_path / "run", Ns=(2,), units=4)
    N = [] if "--N" in argv else ["--N", "2"]
    with pytest.raises((ValueError, FileNotFoundError), match=match) as info:
        cli(["fixed-points", str(run), *N, "--trials", "1", "--steps", "20", "--device", "cpu", "-q", *argv])
    assert "\n" not in str(info.value)


def test_a_missing_run_says_how_to_make_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="trainers train"):
        cli(["fixed-points", str(tmp_path / "nothing"), "-q", "--device", "cpu"])


@pytest.mark.skipif(not _registered(), reason="trainers/cli.py does not register fixed-points yet (the lead adds it)")
def test_the_trainers_command_runs_it(tmp_path, make_run):
    from trainers.cli import main

    run = make_run(tmp_path / "run", Ns=(2,), units=4)
    out = tmp_path / "fp.nc"
    assert main(["fixed-points", str(run), "--N", "2", "--n-init", "30", "--trials", "1", "--steps", "30",
                 "--device", "cpu", "-q", "-o", str(out)]) == 0
    assert xr.load_dataset(out).sizes["unit"] == 4
