"""Lyapunov spectra by QR against closed forms and published values (fading-memory paper,
App. A): logistic map, Henon map, Arnold's cat map, constant linear maps, the analytic Jacobians
of the trainers models against autograd, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dynatools.lyapunov import jacobian_from_step, lyapunov_spectrum

CPU = dict(device="cpu")


def henon(h, u):
    x, y = h[:, 0], h[:, 1]
    return torch.stack([1 - 1.4 * x**2 + y, 0.3 * x], 1)


def henon_jacobian(h, u):
    J = torch.zeros(h.shape[0], 2, 2, dtype=h.dtype)
    J[:, 0, 0], J[:, 0, 1], J[:, 1, 0] = -2.8 * h[:, 0], 1.0, 0.3
    return J


CAT = np.array([[2.0, 1.0], [1.0, 1.0]])


def cat(h, u):
    return torch.remainder(h @ torch.as_tensor(CAT, dtype=h.dtype).T, 1.0)


@pytest.mark.parametrize("jacobian", ["autograd", "closed form"])
def test_logistic_map_r4_is_ln2(jacobian):
    h0 = np.random.default_rng(0).uniform(0.1, 0.9, (16, 1))
    jac = None if jacobian == "autograd" else (lambda h, u: (4 - 8 * h)[:, :, None])
    res = lyapunov_spectrum(lambda h, u: 4 * h * (1 - h), h0, steps=5000, warmup=100, jacobian=jac, **CPU)
    assert abs(res.lyapunov.item() - np.log(2)) < 0.01
    assert res.lyapunov.dims == ("exponent",)
    assert res.attrs["jacobian"] == ("autograd" if jac is None else "user")


def test_henon_map_published_exponents_and_exact_sum():
    h0 = np.random.default_rng(5).uniform(0, 0.2, (8, 2))
    res = lyapunov_spectrum(henon, h0, steps=10_000, warmup=1000, jacobian=henon_jacobian, **CPU)
    lam = res.lyapunov.values
    assert abs(lam[0] - 0.4192) < 0.01 and abs(lam[1] + 1.6232) < 0.01
    # the Jacobian determinant is -0.3 everywhere: the sum is ln 0.3 per trajectory exactly
    np.testing.assert_allclose(res.per_trajectory.sum("exponent"), np.log(0.3), atol=1e-6)


def test_arnold_cat_map():
    res = lyapunov_spectrum(cat, np.random.default_rng(1).random((3, 2)), steps=3000, warmup=200, **CPU)
    golden = np.log((3 + np.sqrt(5)) / 2)  # 0.9624
    np.testing.assert_allclose(res.lyapunov.values, [golden, -golden], atol=1e-3)


@pytest.mark.parametrize("reortho_every", [1, 5])
@pytest.mark.parametrize("seed", [0, 1])
def test_constant_linear_map_gives_log_abs_eigenvalues(reortho_every, seed):
    rng = np.random.default_rng(seed)
    eig = np.array([1.3, -0.9, 0.6, 0.25])
    V = rng.standard_normal((4, 4))
    A = V @ np.diag(eig) @ np.linalg.inv(V)  # non-normal, real eigenvalues
    At = torch.tensor(A)
    res = lyapunov_spectrum(lambda h, u: h @ At.T, rng.standard_normal((2, 4)), steps=1500,
                            warmup=500, reortho_every=reortho_every, **CPU)
    np.testing.assert_allclose(res.lyapunov.values, np.sort(np.log(np.abs(eig)))[::-1], atol=1e-6)
    # k < n: the k largest
    top = lyapunov_spectrum(lambda h, u: h @ At.T, rng.standard_normal((1, 4)), steps=1500,
                            warmup=500, k=2, reortho_every=reortho_every, **CPU)
    np.testing.assert_allclose(top.lyapunov.values, np.log([1.3, 0.9]), atol=1e-6)


def test_sum_of_exponents_is_log_abs_det_for_random_linear_maps():
    rng = np.random.default_rng(3)
    A = rng.standard_normal((5, 5)) / 2
    At = torch.tensor(A)
    res = lyapunov_spectrum(lambda h, u: h @ At.T, rng.standard_normal((1, 5)), steps=400, **CPU)
    assert res.lyapunov.sum().item() == pytest.approx(np.log(abs(np.linalg.det(A))), abs=1e-9)


def test_running_estimates_converge_to_the_final_value():
    res = lyapunov_spectrum(henon, np.tile([0.1, 0.1], (2, 1)), steps=2000, warmup=100,
                            jacobian=henon_jacobian, **CPU)
    assert res.running.dims == ("time", "exponent")
    np.testing.assert_allclose(res.running.isel(time=-1), res.lyapunov)
    assert res.time.values[0] == 101 and res.time.values[-1] == 2000


@pytest.mark.parametrize("name, kw", [("leaky", {}), ("leaky", {"nonlinearity": "inside", "activation": "tanh"}),
                                      ("gru", {}), ("lstm", {})])
def test_trainers_models_analytic_jacobian_equals_autograd(name, kw):
    trainers = pytest.importorskip("trainers")
    model = trainers.MODELS[name](7, generator=torch.Generator().manual_seed(0), **kw).double()
    h = torch.randn(3, model.state_size, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    u = torch.rand(3, 1, dtype=torch.float64)
    for uu in (u, None):
        torch.testing.assert_close(model.jacobian(h, uu), jacobian_from_step(model.step)(h, uu),
                                   rtol=1e-6, atol=1e-6)


def test_model_step_uses_the_analytic_jacobian_and_agrees_with_autograd():
    trainers = pytest.importorskip("trainers")
    model = trainers.LeakyRNN(12, generator=torch.Generator().manual_seed(2)).double()
    u = (torch.rand(2, 300, 1, generator=torch.Generator().manual_seed(3)) < 0.5).double()
    h0 = model.initial_state(2).double()
    a = lyapunov_spectrum(model.step, h0, u, warmup=50, **CPU)                 # a drawn seed ...
    b = lyapunov_spectrum(model.step, h0, u, warmup=50, jacobian="autograd", seed=a.attrs["seed"], **CPU)
    assert a.attrs["jacobian"] == "analytic" and b.attrs["jacobian"] == "autograd"
    np.testing.assert_allclose(a.lyapunov, b.lyapunov, atol=1e-10)


def test_divergence_warns_and_reports_inf():
    h0 = np.array([[1.0], [2.0]])  # x -> x^2: 1 is a fixed point (exponent ln 2), 2 escapes
    with pytest.warns(RuntimeWarning, match=r"trajectories \[1\] diverged"):
        res = lyapunov_spectrum(lambda h, u: h * h, h0, steps=50, **CPU)
    assert np.isinf(res.per_trajectory.values[1]).all()
    assert res.per_trajectory.values[0, 0] == pytest.approx(np.log(2))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(step=lambda h, u: h[:, :1], h0=np.ones((2, 3)), steps=5), ValueError, "returned shape"),
        (dict(step=lambda h, u: h, h0=np.ones((2, 3)), steps=5, k=4), ValueError, "k=4 exceeds"),
        (dict(step=lambda h, u: h, h0=np.ones((2, 3))), ValueError, "needs steps="),
        (dict(step=lambda h, u: h, h0=np.ones((2, 3)), inputs=np.ones((3, 4, 1))), ValueError, "trajectory=2"),
        (dict(step=lambda h, u: h, h0=np.ones((2, 3, 1)), steps=5), ValueError, "expected \\(trajectory, unit\\)"),
        (dict(step=lambda h, u: h, h0=np.ones((2, 3)), steps=5, warmup=5), ValueError, "no step to average"),
        (dict(step=lambda h, u: h, h0=np.ones((2, 3)), steps=5, jacobian="magic"), ValueError, "jacobian="),
        (dict(step=lambda h, u: h, h0=np.ones((2, 3)), steps=5, seed=-1), ValueError, "seed must be an int"),
        (dict(step=lambda h, u: h, h0=np.ones((2, 3)), steps=5, seed=1.5), TypeError, "seed must be an int"),
    ],
)
def test_bad_input(kwargs, error, match):
    with pytest.raises(error, match=match):
        lyapunov_spectrum(**kwargs, device="cpu")


def _leaky_8_units_2_inputs():
    trainers = pytest.importorskip("trainers")
    return trainers.LeakyRNN(8, input_dim=2, generator=torch.Generator().manual_seed(0)).double()


W4 = torch.eye(4, dtype=torch.float64)


@pytest.mark.parametrize(
    "step, h0, inputs, expectation",
    [
        ("model", np.zeros((3, 5)), np.zeros((3, 10, 2)),
         pytest.raises(ValueError, match=r"h0 has shape \(3, 5\): 5 units, but the model's state has 8 "
                                         r"\(model.state_size\); pass h0 of shape \(trajectory, 8\)")),
        ("model", np.zeros((0, 8)), np.zeros((0, 10, 2)),
         pytest.raises(ValueError, match=r"h0 has shape \(0, 8\): its trajectory axis is empty.*at least one")),
        ("model", np.zeros((3, 8)), np.zeros((3, 10, 3)),
         pytest.raises(ValueError, match=r"inputs have shape \(3, 10, 3\), input_dim 3, but the model takes 2 "
                                         r"inputs \(model.input_dim\); pass inputs of shape \(trajectory, time, 2\)")),
        ("model", np.zeros((3, 8)), np.zeros((3, 0, 2)),
         pytest.raises(ValueError, match=r"inputs have shape \(3, 0, 2\): zero time steps")),
        (lambda h, u: h, np.zeros((3, 0)), None,
         pytest.raises(ValueError, match=r"h0 has shape \(3, 0\): zero units")),
        (lambda h, u: h, np.zeros((0, 2)), None,
         pytest.raises(ValueError, match=r"h0 has shape \(0, 2\): its trajectory axis is empty")),
        # a bare step function declares no sizes: torch's own error is said in terms of h0
        (lambda h, u: h @ W4, np.ones((2, 3)), None,
         pytest.raises(ValueError, match=r"failed on the first step with h0 of shape \(2, 3\).*mat1 and mat2.*"
                                         r"Check that h0 is \(trajectory, unit\)")),
    ],
)
def test_shapes_that_do_not_fit_the_map_name_the_argument(step, h0, inputs, expectation):
    if step == "model":
        step = _leaky_8_units_2_inputs().step
    with expectation:
        lyapunov_spectrum(step, h0, inputs, steps=None if inputs is not None else 5, seed=0, device="cpu")


def test_overflowing_tangent_vectors_warn_and_report_inf():
    A = torch.tensor([[1e30, 0.0], [0.0, 0.5]], dtype=torch.float64)
    with pytest.warns(RuntimeWarning, match="diverged"):
        res = lyapunov_spectrum(lambda h, u: h, np.ones((1, 2)), steps=40, reortho_every=40,
                                jacobian=lambda h, u: A.expand(h.shape[0], 2, 2), **CPU)
    assert np.isinf(res.lyapunov.values).all()


def test_a_float32_model_works_with_the_defaults():
    import trainers

    net = trainers.LeakyRNN(6, generator=torch.Generator().manual_seed(0))           # float32, CPU
    h0 = net.initial_state(2, generator=torch.Generator().manual_seed(1))
    u = torch.rand(2, 80, 1, generator=torch.Generator().manual_seed(2))
    res = lyapunov_spectrum(net.step, h0, u, warmup=20)
    assert res.attrs["dtype"] == "float32" and np.isfinite(res.lyapunov).all()
    ref = lyapunov_spectrum(net.double().step, h0.double(), u.double(), warmup=20, seed=res.attrs["seed"])
    np.testing.assert_allclose(res.lyapunov, ref.lyapunov, atol=1e-4)


def test_nan_weights_are_named():
    import trainers

    net = trainers.LeakyRNN(4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        net.W_rec[0, 1] = float("nan")
    with pytest.raises(ValueError, match="W_rec"):
        lyapunov_spectrum(net.step, net.initial_state(1), torch.zeros(1, 10, 1))


def test_underflow_is_reported():
    # diag(e^-0.5, e^-9) in float32 with a QR every 12 steps: e^-108 is below float32's range
    A = torch.diag(torch.tensor([np.exp(-0.5), np.exp(-9.0)], dtype=torch.float32))
    with pytest.warns(RuntimeWarning, match="shrank to exactly zero"):
        res = lyapunov_spectrum(lambda h, u: h, np.ones((1, 2)), steps=60, warmup=12, reortho_every=12,
                                dtype=torch.float32, jacobian=lambda h, u: A.expand(h.shape[0], 2, 2), device="cpu")
    assert res.attrs["underflowed"] == 1 and res.lyapunov.values[0] == pytest.approx(-0.5, abs=1e-5)
    ok = lyapunov_spectrum(lambda h, u: h, np.ones((1, 2)), steps=60, warmup=12, reortho_every=4,
                           dtype=torch.float32, jacobian=lambda h, u: A.expand(h.shape[0], 2, 2), device="cpu")
    np.testing.assert_allclose(ok.lyapunov, [-0.5, -9.0], atol=1e-4)


def test_means_leave_out_diverged_trajectories_and_unseeded_runs_differ():
    h0 = np.array([[1.0], [1.0], [2.0]])  # x -> x^2: 1 stays (exponent ln 2), 2 escapes
    with pytest.warns(RuntimeWarning, match="means are over the other 2"):
        res = lyapunov_spectrum(lambda h, u: h * h, h0, steps=50, device="cpu")
    assert res.lyapunov.values[0] == pytest.approx(np.log(2)) and res.attrs["diverged"] == 1
    np.testing.assert_allclose(res.running.values[-1], np.log(2))
    a = lyapunov_spectrum(lambda h, u: 0.5 * h, np.ones((1, 3)), steps=3, seed=None, device="cpu")
    b = lyapunov_spectrum(lambda h, u: 0.5 * h, np.ones((1, 3)), steps=3, seed=None, device="cpu")
    assert a.attrs["seed"] != b.attrs["seed"]


def test_default_seed_is_drawn_stored_and_reproduces_the_result():
    W = torch.tensor([[0.9, -1.3, 0.2], [1.1, 0.4, -0.7], [-0.3, 0.8, 1.2]], dtype=torch.float64)
    step = lambda h, u: torch.tanh(h @ W.T)                              # noqa: E731
    h0 = np.full((2, 3), 0.3)
    a = lyapunov_spectrum(step, h0, steps=8, **CPU)
    b = lyapunov_spectrum(step, h0, steps=8, **CPU)
    assert a.attrs["seed"] != b.attrs["seed"]
    assert not np.allclose(a.running.values[0], b.running.values[0])    # short runs: Q0 shows
    assert lyapunov_spectrum(step, h0, steps=8, seed=a.attrs["seed"], **CPU).identical(a)


def test_device_defaults_to_the_models_and_another_is_refused():
    trainers = pytest.importorskip("trainers")
    model = trainers.LeakyRNN(4, generator=torch.Generator().manual_seed(0)).double()     # on the CPU
    u = torch.zeros(1, 5, 1, dtype=torch.float64)
    res = lyapunov_spectrum(model.step, model.initial_state(1), u, seed=0)              # no device=
    assert res.attrs["dtype"] == "float64" and np.isfinite(res.lyapunov).all()
    with pytest.raises(ValueError, match="model's parameters are on 'cpu'"):
        lyapunov_spectrum(model.step, model.initial_state(1), u, device="meta")
