"""Gradient norms over time: exact powers for a linear RNN, agreement with autograd by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dynatools.gradients import gradient_norms


@pytest.mark.parametrize("a", [0.5, 0.9, 1.1])
def test_linear_rnn_gives_exact_powers(a):
    D, B, n = 20, 3, 4
    g = gradient_norms(lambda h, u: a * h, D, h0=torch.ones(B, n, dtype=torch.float64))
    t = np.arange(D + 1)
    np.testing.assert_allclose(g.sel(norm="l2"), a ** (D - t) * np.sqrt(B * n), rtol=1e-12)
    np.testing.assert_allclose(g.sel(norm="linf"), a ** (D - t), rtol=1e-12)


def test_matrix_rnn_with_inputs_matches_transposed_jacobian_products():
    rng = np.random.default_rng(0)
    W = torch.tensor(rng.standard_normal((3, 3)) / 2)
    u = torch.tensor(rng.standard_normal((2, 6, 1)))
    c = torch.tensor(rng.standard_normal(3))
    g = gradient_norms(lambda h, x: torch.tanh(h @ W.T + x * c), u, h0=torch.zeros(2, 3, dtype=torch.float64),
                       loss=lambda out, y: (out**2).sum())
    # by hand: backward recursion with the Jacobians of tanh
    hs = [torch.zeros(2, 3, dtype=torch.float64)]
    for t in range(6):
        hs.append(torch.tanh(hs[-1] @ W.T + u[:, t] * c))
    grad = 2 * hs[-1]
    expected = [float(torch.linalg.vector_norm(grad))]
    for t in range(6, 0, -1):
        grad = (grad * (1 - hs[t] ** 2)) @ W
        expected.append(float(torch.linalg.vector_norm(grad)))
    np.testing.assert_allclose(g.sel(norm="l2").values, expected[::-1], rtol=1e-12)


def test_trainers_model_with_readout():
    trainers = pytest.importorskip("trainers")
    model = trainers.LeakyRNN(8, n_heads=2, generator=torch.Generator().manual_seed(0))
    u = (torch.rand(4, 15, 1, generator=torch.Generator().manual_seed(1)) < 0.5).float()
    labels = torch.randint(0, 2, (4, 2), generator=torch.Generator().manual_seed(2))
    g = gradient_norms(model, u, labels, lambda logits, y: torch.nn.functional.cross_entropy(logits.transpose(1, 2), y),
                       h0=model.initial_state(4, generator=torch.Generator().manual_seed(3)))
    assert g.dims == ("norm", "time") and g.sizes["time"] == 16
    assert np.all(np.isfinite(g)) and float(g.sel(norm="l2", time=15)) > 0


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        ((lambda h, u: h[:, :1], 3), {"h0": torch.ones(2, 3)}, "step returned shape"),
        ((lambda h, u: h, 3), {}, "pass h0"),
        ((lambda h, u: h, torch.ones(2, 3)), {"h0": torch.ones(2, 3)}, "expected \\(batch, time, input_dim\\)"),
        ((lambda h, u: h, 0), {"h0": torch.ones(2, 3)}, "must be positive"),
    ],
)
def test_bad_input(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        gradient_norms(*args, **kwargs)


def _leaky_8_units_2_inputs():
    trainers = pytest.importorskip("trainers")
    return trainers.LeakyRNN(8, input_dim=2, generator=torch.Generator().manual_seed(0)).double()


F64 = dict(dtype=torch.float64)


@pytest.mark.parametrize(
    "model, inputs, h0, expectation",
    [
        ("model", torch.zeros(0, 10, 2, **F64), None,
         pytest.raises(ValueError, match=r"inputs have shape \(0, 10, 2\): an empty batch")),
        ("model", torch.zeros(2, 10, 2, **F64), torch.zeros(2, 5, **F64),
         pytest.raises(ValueError, match=r"h0 has shape \(2, 5\): 5 units, but the model's state has 8 "
                                         r"\(model.state_size\); pass h0 of shape \(batch, 8\)")),
        ("model", torch.zeros(2, 10, 3, **F64), None,
         pytest.raises(ValueError, match=r"inputs have shape \(2, 10, 3\), input_dim 3, but the model takes 2")),
        ("model", torch.zeros(2, 10, 2, **F64), torch.zeros(3, 8, **F64),
         pytest.raises(ValueError, match=r"h0 has shape \(3, 8\) but inputs \(2, 10, 2\).*pass h0 of shape "
                                         r"\(2, 8\)")),
        (lambda h, u: h, 3, torch.zeros(0, 3),
         pytest.raises(ValueError, match=r"h0 has shape \(0, 3\): its batch axis is empty")),
        (lambda h, u: h, 3, torch.zeros(3),
         pytest.raises(ValueError, match=r"h0 has shape \(3,\); expected \(batch, state\)")),
        (lambda h, u: h @ torch.eye(4), 3, torch.zeros(2, 3),
         pytest.raises(ValueError, match=r"failed on the first step with h0 of shape \(2, 3\).*mat1 and mat2")),
    ],
)
def test_shapes_that_do_not_fit_the_model_name_the_argument(model, inputs, h0, expectation):
    if model == "model":
        model = _leaky_8_units_2_inputs()
    with expectation:
        gradient_norms(model, inputs, h0=h0)


def test_nan_weights_and_a_diverging_map_are_named():
    import trainers

    net = trainers.LeakyRNN(4, n_heads=1, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        net.b_in[0] = float("nan")
    with pytest.raises(ValueError, match=r"parameters \['b_in'\]"):
        gradient_norms(net, torch.zeros(1, 3, 1))
    with pytest.raises(ValueError, match="diverged over the 2000 steps"):
        gradient_norms(lambda h, u: 10.0 * h, 2000, h0=torch.ones(1, 2, dtype=torch.float64))


def test_device_is_the_models_else_h0s_and_another_is_refused():
    trainers = pytest.importorskip("trainers")
    model = trainers.LeakyRNN(4, n_heads=1, generator=torch.Generator().manual_seed(0)).double()   # on the CPU
    u = torch.rand(2, 3, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert gradient_norms(model, u).identical(gradient_norms(model, u, device="cpu"))    # no device=: the model's
    with pytest.raises(ValueError, match="model's parameters are on 'cpu'"):
        gradient_norms(model, u, device="meta")
    with pytest.raises(ValueError, match="not a torch device"):
        gradient_norms(model, u, device="gpu0")
    W = 0.5 * torch.eye(2, dtype=torch.float64)                  # a step closing over a CPU tensor runs
    g = gradient_norms(lambda h, x: h @ W, 2, h0=torch.ones(1, 2, dtype=torch.float64))  # where h0 is
    np.testing.assert_allclose(g.sel(norm="linf"), [0.25, 0.5, 1.0])
    g = gradient_norms(lambda h, x: 0.5 * h, 2, h0=np.ones((1, 2)), device="cpu")   # a plain array is h0
    np.testing.assert_allclose(g.sel(norm="linf"), [0.25, 0.5, 1.0])
