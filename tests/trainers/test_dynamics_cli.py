"""`trainers lyapunov` and `trainers hessian` on a run directory or checkpoint file."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

import trainers
from dynatools.hessian import hessian_eigenvalues
from trainers.cli import main
from trainers.engine import loss_closure


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("run") / "r"
    trainers.train(dict(units=12, batch=16, steps_per_epoch=3, eval_batches=1, max_epochs=1, n_max=4,
                        device="cpu", seed=0), d, progress=False)
    return d


def test_lyapunov_command(run_dir, tmp_path, capsys):
    out = tmp_path / "ly.nc"
    assert main(["lyapunov", str(run_dir), "--steps", "200", "--warmup", "20", "--trajectories", "2",
                 "-o", str(out), "--device", "cpu"]) == 0
    assert "largest:" in capsys.readouterr().out
    res = xr.open_dataset(out)
    assert res.sizes["exponent"] == 12 and res.attrs["jacobian"] == "analytic"
    assert np.all(np.diff(res.lyapunov.values) <= 0)
    assert res.attrs["input"] == "Bernoulli(0.5) bits, encoded as in training"
    # the same checkpoint file works too
    latest = trainers.RunDir(run_dir).checkpoint_path()
    assert main(["lyapunov", str(latest), "--steps", "50", "--warmup", "5",
                 "-o", str(tmp_path / "ly2.nc"), "-q", "--device", "cpu", "--k", "3"]) == 0
    assert xr.open_dataset(tmp_path / "ly2.nc").sizes["exponent"] == 3


@pytest.mark.cuda
def test_lyapunov_command_on_cuda_equals_the_cpu_result(run_dir, tmp_path):     # skipped without CUDA
    argv = ["lyapunov", str(run_dir), "--steps", "100", "--warmup", "10", "--trajectories", "2", "-q"]
    assert main([*argv, "--device", "cuda", "-o", str(tmp_path / "gpu.nc")]) == 0
    assert main([*argv, "--device", "cpu", "-o", str(tmp_path / "cpu.nc")]) == 0
    np.testing.assert_allclose(xr.open_dataset(tmp_path / "gpu.nc").lyapunov.values,
                               xr.open_dataset(tmp_path / "cpu.nc").lyapunov.values, rtol=1e-6, atol=1e-9)


def test_lyapunov_command_equals_the_python_api(run_dir, tmp_path):
    from dynatools.lyapunov import lyapunov_spectrum

    assert main(["lyapunov", str(run_dir), "--steps", "60", "--warmup", "10", "--trajectories", "2",
                 "-o", str(tmp_path / "ly.nc"), "--device", "cpu", "--seed", "3", "-q"]) == 0
    model, task, _ = trainers.RunDir(run_dir).load()
    model = model.double()
    gen = torch.Generator().manual_seed(3)
    bits = (torch.rand(2, 60, generator=gen) < 0.5).float()
    u = task.encode(bits).double()
    h0 = model.initial_state(2, generator=gen)
    direct = lyapunov_spectrum(model.step, h0, u, warmup=10, device="cpu", dtype=torch.float64, seed=3)
    np.testing.assert_allclose(xr.open_dataset(tmp_path / "ly.nc").lyapunov.values, direct.lyapunov.values,
                               rtol=1e-10)


def test_hessian_command_equals_the_python_api(run_dir, tmp_path):
    out = tmp_path / "h.nc"
    assert main(["hessian", str(run_dir), "--k", "3", "--batch", "8", "-o", str(out), "-q"]) == 0
    res = xr.open_dataset(out)
    model = trainers.RunDir(run_dir).latest.model().double()
    loss_fn, params = loss_closure(model, trainers.Parity(), [2], batch=8, seed=0)
    direct = hessian_eigenvalues(loss_fn, params, k=3, method="dense")
    np.testing.assert_allclose(res.hessian_eigenvalue.values, direct.hessian_eigenvalue.values, rtol=1e-6)


def test_hessian_density_and_a_solved_N(tmp_path, make_run, capsys):
    run = make_run(tmp_path / "run", Ns=(2, 3), units=6)
    out = tmp_path / "h.nc"
    assert main(["hessian", str(run), "--N", "3", "--k", "2", "--batch", "4", "--density", "-o", str(out)]) == 0
    assert "Ns 2..3" in capsys.readouterr().out
    res = xr.open_dataset(out)
    assert "density" in res and res.attrs["Ns"] == "[2, 3]"
    model, task, head = trainers.RunDir(run).load(3)
    loss_fn, params = loss_closure(model.double(), task, [2, 3], batch=4, seed=0)
    direct = hessian_eigenvalues(loss_fn, params, k=2, method="dense")
    np.testing.assert_allclose(res.hessian_eigenvalue.values, direct.hessian_eigenvalue.values, rtol=1e-6)
    assert main(["hessian", str(run), "--N", "5", "-o", str(out)]) == 2
    assert "no checkpoint for N=5" in capsys.readouterr().err
    ck = trainers.RunDir(run).checkpoint_path(2)
    assert main(["hessian", str(ck), "--N", "3", "-o", str(out)]) == 2
    assert "no head for N=3" in capsys.readouterr().err


def test_loss_closure_equals_the_training_loss():
    model = trainers.LeakyRNN(6, n_heads=2, generator=torch.Generator().manual_seed(0)).double()
    task = trainers.Parity()
    loss_fn, params = loss_closure(model, task, [2, 3], batch=8, seed=1)
    gen = torch.Generator().manual_seed(1)
    b = task.sample([2, 3], 8, generator=gen)
    H = model(b.inputs.double(), model.initial_state(8, generator=gen))
    logits = model.readout(H[:, -1], heads=2)
    expected = torch.nn.functional.cross_entropy(logits.transpose(1, 2), b.labels, reduction="none").mean(0).sum()
    torch.testing.assert_close(loss_fn(params), expected)
    assert model.fused                                   # the caller's model keeps its fused path


def test_loss_closure_leaves_frozen_parameters_out():
    model = trainers.LeakyRNN(5, n_heads=1, train_tau=False, generator=torch.Generator().manual_seed(0)).double()
    loss_fn, params = loss_closure(model, trainers.Parity(), [2], batch=4, seed=0)
    assert "tau" not in params and "W_rec" in params
    assert torch.isfinite(loss_fn(params))


def test_missing_source_is_a_one_line_error(tmp_path, capsys):
    assert main(["lyapunov", str(tmp_path), "-o", str(tmp_path / "x.nc")]) == 2
    err = capsys.readouterr().err
    assert "trainers lyapunov: error:" in err and "not a trainers run directory" in err and "Traceback" not in err
    assert main(["hessian", str(tmp_path / "none.pt"), "-o", str(tmp_path / "x.nc")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.fixture(scope="module")
def sequence_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("seq") / "r"
    trainers.train({"task": "adding", "length": 15, "units": 6, "steps_per_epoch": 2, "max_epochs": 1,
                    "test_size": 20, "device": "cpu", "seed": 0, "r": 0.97}, d, progress=False)
    return d


def test_dynamics_commands_on_a_sequence_task_run(sequence_run, tmp_path, capsys):
    # Lyapunov: a weakly coupled R = 0.97 I network has every exponent near log 0.97 (Eq. 13)
    assert main(["lyapunov", str(sequence_run), "--steps", "15", "--warmup", "2", "--trajectories", "3",
                 "-o", str(tmp_path / "ly.nc"), "-q"]) == 0
    ly = xr.open_dataset(tmp_path / "ly.nc")
    np.testing.assert_allclose(ly.lyapunov.values, np.log(0.97), atol=0.02)
    assert ly.attrs["input"] == "adding sequences one after another"
    model, task, _ = trainers.RunDir(sequence_run).load()
    model = model.double()
    # the command equals the Python API on the task's recording stream
    from dynatools.lyapunov import lyapunov_spectrum

    gen = torch.Generator().manual_seed(0)
    u = task.recording_stream(3, 15, generator=gen)[0].double()
    h0 = model.initial_state(3, generator=gen)
    direct = lyapunov_spectrum(model.step, h0, u, warmup=2, dtype=torch.float64, seed=0)
    np.testing.assert_allclose(ly.lyapunov.values, direct.lyapunov.values, rtol=1e-10)
    # Hessian: the command equals the dense eigenvalues of the same loss
    assert main(["hessian", str(sequence_run), "--k", "3", "--batch", "16", "-o", str(tmp_path / "h.nc")]) == 0
    assert "16 test sequences" in capsys.readouterr().out
    loss_fn, params = loss_closure(model, task, batch=16)
    direct = hessian_eigenvalues(loss_fn, params, k=3, method="dense")
    np.testing.assert_allclose(xr.open_dataset(tmp_path / "h.nc").hessian_eigenvalue.values,
                               direct.hessian_eigenvalue.values, rtol=1e-6)
    assert main(["lyapunov", str(sequence_run), "--steps", "0", "-o", str(tmp_path / "x.nc")]) == 2
    assert "--steps must be" in capsys.readouterr().err
    assert main(["lyapunov", str(sequence_run), "--N", "3", "-o", str(tmp_path / "x.nc")]) == 2
    assert "drop --N" in capsys.readouterr().err
    # the defaults work on a short sequence task: all 15 steps, a warm-up of 15 // 5 = 3
    assert main(["lyapunov", str(sequence_run), "-o", str(tmp_path / "d.nc"), "-q"]) == 0
    d = xr.open_dataset(tmp_path / "d.nc")
    assert (d.attrs["steps"], d.attrs["warmup"]) == (15, 3)


def test_sequence_loss_closure_equals_the_training_loss():
    from trainers.models import WCRNN, critical
    from trainers.tasks import TASKS

    for name in ("adding", "pdigits"):
        task = TASKS[name](12) if name == "adding" else TASKS[name]()
        net = WCRNN(5, critical(5), gamma=0.05, input_dim=task.input_dim, n_classes=task.n_classes,
                    generator=torch.Generator().manual_seed(0)).double()
        b = task.held_out(10, seed=3)
        out = net.readout(net(b.inputs.double())[:, -1])[:, 0]
        expected = (torch.nn.functional.cross_entropy(out, b.targets) if name == "pdigits"
                    else torch.sqrt(torch.mean((out[:, 0] - b.targets.double()) ** 2)))
        loss_fn, params = loss_closure(net, task, batch=10, seed=3)
        torch.testing.assert_close(loss_fn(params), expected)
        assert net.fused is True                 # the caller's model is not changed
