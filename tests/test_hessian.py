"""Hessian eigenvalues, density and trace against closed forms and the dense Hessian."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dynatools.hessian import hessian_density, hessian_eigenvalues, hessian_trace

F64 = torch.float64


def _quadratic(seed=0, n=30):
    rng = np.random.default_rng(seed)
    B = rng.standard_normal((n, n))
    A = (B + B.T) / 2
    At = torch.tensor(A)
    return A, (lambda x: 0.5 * x @ At @ x), torch.zeros(n, dtype=F64)


@pytest.mark.parametrize("which", ["LA", "LM", "SA"])
@pytest.mark.parametrize("method", ["lanczos", "dense"])
def test_quadratic_form_gives_the_eigenvalues_of_A(which, method):
    A, f, x0 = _quadratic()
    w = np.linalg.eigvalsh(A)
    expected = {"LA": np.sort(w)[::-1], "SA": np.sort(w), "LM": w[np.argsort(-np.abs(w))]}[which][:5]
    res = hessian_eigenvalues(f, x0, k=5, which=which, method=method)
    np.testing.assert_allclose(res.hessian_eigenvalue.values, expected, atol=1e-8)
    assert res.attrs["method"] == method and res.hessian_eigenvalue.dims == ("eigenvalue",)


def test_least_squares_hessian_is_2_over_N_XtX():
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((50, 8)), rng.standard_normal(50)
    Xt, yt = torch.tensor(X), torch.tensor(y)
    res = hessian_eigenvalues(lambda w: ((Xt @ w - yt) ** 2).mean(), torch.zeros(8, dtype=F64), k=3)
    np.testing.assert_allclose(res.hessian_eigenvalue, np.sort(np.linalg.eigvalsh(2 / 50 * X.T @ X))[::-1][:3],
                               rtol=1e-10)


def test_rosenbrock_at_its_minimum():
    def rosen(p):
        return (1 - p[0]) ** 2 + 100 * (p[1] - p[0] ** 2) ** 2

    res = hessian_eigenvalues(rosen, torch.ones(2, dtype=F64), k=2)
    np.testing.assert_allclose(res.hessian_eigenvalue, [1001.6006, 0.3994], atol=1e-4)


def test_small_rnn_lanczos_equals_dense_autograd_hessian():
    trainers = pytest.importorskip("trainers")
    from torch.func import functional_call

    model = trainers.LeakyRNN(6, n_heads=2, fused=False, generator=torch.Generator().manual_seed(0)).double()
    g = torch.Generator().manual_seed(1)
    u = (torch.rand(8, 12, 1, generator=g) < 0.5).double()
    h0 = model.initial_state(8, generator=g).double()
    labels = torch.randint(0, 2, (8, 2), generator=g)
    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss(p):
        H = functional_call(model, p, (u, h0))                        # (batch, time, unit)
        w, b = p["heads.weight"], p["heads.bias"]                     # (head, class, unit), (head, class)
        logits = torch.einsum("bn,hcn->bhc", H[:, -1], w) + b
        return torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels)

    res = hessian_eigenvalues(loss, params, k=10, which="LM")
    flat_names = list(params)
    sizes = [params[k].numel() for k in flat_names]

    def flat_loss(x):
        parts = torch.split(x, sizes)
        return loss({k: p.reshape(params[k].shape) for k, p in zip(flat_names, parts)})

    x0 = torch.cat([params[k].reshape(-1) for k in flat_names])
    H = torch.autograd.functional.hessian(flat_loss, x0).numpy()
    w = np.linalg.eigvalsh((H + H.T) / 2)
    np.testing.assert_allclose(res.hessian_eigenvalue, w[np.argsort(-np.abs(w))][:10], atol=1e-6)
    assert res.attrs["n_hvp"] < H.shape[0]


def test_density_integrates_to_one_and_splits_two_clusters():
    rng = np.random.default_rng(2)
    vals = np.concatenate([rng.normal(-1, 0.05, 40), rng.normal(4, 0.05, 40)])
    Q = np.linalg.qr(rng.standard_normal((80, 80)))[0]
    A = torch.tensor(Q @ np.diag(vals) @ Q.T)
    d = hessian_density(lambda x: 0.5 * x @ A @ x, torch.zeros(80, dtype=F64), n_probes=20,
                        lanczos_steps=40, seed=3)
    lam, dens = d["lambda"].values, d.density.values
    assert np.trapezoid(dens, lam) == pytest.approx(1.0, abs=1e-3)
    low = np.trapezoid(np.where(lam < 1.5, dens, 0), lam)
    assert low == pytest.approx(0.5, abs=0.1)
    np.testing.assert_allclose(d.weight.sum("node"), 1.0, atol=1e-10)


def test_hutchinson_interval_covers_the_exact_trace():
    A, f, x0 = _quadratic(seed=4, n=40)
    res = hessian_trace(f, x0, n_samples=200, seed=5)
    assert float(res.ci_low) <= np.trace(A) <= float(res.ci_high)
    assert float(res.ci_high - res.ci_low) < 0.5 * np.abs(A).sum()


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: hessian_eigenvalues(lambda x: (x**2).sum(), torch.zeros(3, dtype=F64), k=4), ValueError, "k=4 exceeds"),
        (lambda: hessian_eigenvalues(lambda x: x**2, torch.zeros(3, dtype=F64), k=1), ValueError, "scalar"),
        (lambda: hessian_eigenvalues(lambda m: 0, torch.nn.Linear(2, 2), k=1), TypeError, "functional_call"),
        (lambda: hessian_eigenvalues(lambda x: x.sum(), torch.zeros(3, dtype=F64), which="BE"), ValueError, "which="),
        (lambda: hessian_trace(lambda x: x.sum(), torch.zeros(3, dtype=F64), n_samples=1), ValueError, "n_samples"),
    ],
)
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_bad_parameters_and_losses_are_named():
    w = torch.tensor([1.0, float("nan")], dtype=torch.float64)
    with pytest.raises(ValueError, match=r"params \['w'\] contain NaN"):
        hessian_eigenvalues(lambda p: (p["w"] ** 2).sum(), {"w": w}, k=1)
    with pytest.raises(ValueError, match="loss_fn\\(params\\) is inf"):
        hessian_eigenvalues(lambda p: (p["w"] ** 2).sum() / 0.0, {"w": torch.ones(2, dtype=torch.float64)}, k=1)


NOT_TWICE_DIFFERENTIABLE = r"holds NaN or inf \(30 of 30 entries\) although loss_fn\(params\) is finite.*sqrt\(x \+ 1e-12\)"


@pytest.mark.parametrize(
    "call, expectation",
    [   # sqrt(sum x^2) at 0: the loss is 0, its gradient and Hessian are NaN
        (lambda f, x: hessian_eigenvalues(f, x, k=2, seed=0),
         pytest.raises(ValueError, match="Hessian-vector product at params " + NOT_TWICE_DIFFERENTIABLE)),
        (lambda f, x: hessian_eigenvalues(f, x, k=2, method="dense"),
         pytest.raises(ValueError, match=r"the Hessian at params holds NaN or inf \(900 of 900 entries\)")),
        (lambda f, x: hessian_density(f, x, n_probes=2, lanczos_steps=5, seed=0),
         pytest.raises(ValueError, match=NOT_TWICE_DIFFERENTIABLE)),
        (lambda f, x: hessian_trace(f, x, n_samples=3, seed=0),
         pytest.raises(ValueError, match=NOT_TWICE_DIFFERENTIABLE)),
        # a loss linear in params: every Hessian-vector product is zero and ARPACK stops
        (lambda f, x: hessian_eigenvalues(lambda y: y.sum(), x, k=2, seed=0),
         pytest.raises(RuntimeError, match=r"ARPACK failed.*Hessian is most likely zero.*method='dense'")),
    ],
)
def test_a_nan_hessian_names_the_loss_and_the_fix(call, expectation):
    with expectation:
        call(lambda x: (x ** 2).sum().sqrt(), torch.zeros(30, dtype=F64))


def test_a_fused_trainers_model_gets_the_fix_in_the_message():
    import trainers
    from torch.func import functional_call

    net = trainers.LeakyRNN(4, n_heads=1, generator=torch.Generator().manual_seed(0)).double()
    u = torch.rand(2, 5, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    params = {k: v.detach() for k, v in net.named_parameters()}
    with pytest.raises(RuntimeError, match="fused = False"):
        hessian_eigenvalues(lambda p: functional_call(net, p, (u,)).sum(), params, k=2)
    net.fused = False
    assert hessian_eigenvalues(lambda p: functional_call(net, p, (u,)).sum(), params, k=2).sizes["eigenvalue"] == 2


@pytest.mark.parametrize("call", [
    lambda f, x, **kw: hessian_eigenvalues(f, x, k=2, **kw),
    lambda f, x, **kw: hessian_density(f, x, n_probes=2, lanczos_steps=6, **kw),
    lambda f, x, **kw: hessian_trace(f, x, n_samples=3, **kw),
])
def test_default_seed_is_drawn_stored_and_reproduces_the_result(call):
    A, f, x0 = _quadratic(seed=6, n=12)
    a, b = call(f, x0), call(f, x0)
    assert a.attrs["seed"] != b.attrs["seed"]
    assert call(f, x0, seed=a.attrs["seed"]).identical(a)


def test_device_defaults_to_the_params_and_progress_counts_hvps(capsys):
    A, f, x0 = _quadratic(seed=7, n=12)
    res = hessian_eigenvalues(f, x0, k=2, seed=0)                   # no device=: where params are
    assert res.identical(hessian_eigenvalues(f, x0, k=2, seed=0, device="cpu"))
    with pytest.raises(ValueError, match="not a torch device"):
        hessian_trace(f, x0, n_samples=3, device="gpu0")
    hessian_trace(f, x0, n_samples=3, seed=0, progress=True)
    assert "hessian_trace" in capsys.readouterr().err
    hessian_eigenvalues(f, x0, k=2, seed=0)                          # the library is quiet by default
    assert capsys.readouterr().err == ""


def _rnn_loss(seed=0, n=6, T=8):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(n, n, generator=g, dtype=torch.float64) / n ** 0.5
    x = torch.randn(4, T, n, generator=g, dtype=torch.float64)

    def loss(W):
        h = torch.zeros(4, n, dtype=torch.float64)
        for t in range(T):
            h = torch.tanh(h @ W.T + x[:, t])
        return (h ** 2).sum()

    return loss, W


def test_products_use_the_stored_graph_when_it_agrees_with_torch_func():
    """Every product after the first comes from the kept gradient graph (one backward pass) and
    equals the forward-over-reverse product of torch.func to rounding."""
    from dynatools.hessian import _Flat

    loss, W = _rnn_loss()
    flat = _Flat(loss, W)
    g = torch.Generator().manual_seed(1)
    vs = [torch.randn(flat.n, generator=g, dtype=torch.float64) for _ in range(3)]
    flat.hvp(vs[0])
    assert flat._use_graph is True
    for v in vs[1:]:
        torch.testing.assert_close(flat.hvp(v), flat._hvp_func(v), rtol=1e-10, atol=1e-12)


class _SquareWrongSecondOrder(torch.autograd.Function):
    """x**2 whose backward is written so that autograd differentiates it wrongly (the graph of
    the gradient treats 2x as a constant times grad): its stored-graph HVP would be zero."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x ** 2

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * (2 * x.detach())


def test_a_graph_that_disagrees_with_torch_func_is_not_used():
    from dynatools.hessian import _Flat

    flat = _Flat(lambda x: _SquareWrongSecondOrder.apply(x).sum() + (x ** 2).sum(), torch.ones(3, dtype=torch.float64))
    flat._hvp_func = lambda v: 4.0 * v          # the true product of sum(2 x^2), standing in for torch.func
    v = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    torch.testing.assert_close(flat.hvp(v), 4.0 * v)
    assert flat._use_graph is False             # the graph gave 2 v: never used again
    torch.testing.assert_close(flat.hvp(v), 4.0 * v)
