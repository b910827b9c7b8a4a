"""One convention per concept across the public API (docs/api.md): dim keywords, seed=None with
the drawn seed in attrs, device= on every torch analysis, progress=False in the library.

The signature table below is checked against every public function, so a new function or
keyword that breaks the convention fails here; behaviour is checked on a tiny model (no trainers).
"""

from __future__ import annotations

import inspect
import types

import numpy as np
import pytest
import torch

import dynatools as dt
from tiny_model import Tiny

#: keyword -> its one default (docs/api.md)
DIM_DEFAULTS = {"time_dim": "time", "trial_dim": "trial", "unit_dim": "unit", "lag_dim": "lag",
                "module_dim": "module"}
#: which public functions take which convention keyword
SEEDED = {"lyapunov_spectrum", "hessian_eigenvalues", "hessian_density", "hessian_trace", "perturb"}
TORCH = {"lyapunov_spectrum", "hessian_eigenvalues", "hessian_density", "hessian_trace", "gradient_norms",
         "ablation_by_tau", "perturb", "fixed_points"}
PROGRESS = {"autocorrelation", "timescales", "pca_dimensionality", "participation_ratio", "analyze_recording",
            "lyapunov_spectrum", "hessian_eigenvalues", "hessian_density", "hessian_trace", "ablation_by_tau",
            "perturb", "fixed_points"}
ACTIVITY = {"autocorrelation", "timescales", "pca_dimensionality", "participation_ratio", "analyze_recording",
            "power_spectrum"}


def _functions():
    out = {}
    for name in dt.__all__:
        obj = getattr(dt, name)
        # dynatools.fixed_points is a callable module once imported (module and function share the name)
        if inspect.isfunction(obj) or (isinstance(obj, types.ModuleType) and callable(obj)):
            out[name] = inspect.signature(obj).parameters
    return out


FUNCTIONS = _functions()


def test_the_table_names_only_public_functions():
    assert SEEDED | TORCH | PROGRESS | ACTIVITY <= set(FUNCTIONS)


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_every_public_signature_follows_the_convention(name):
    params = FUNCTIONS[name]
    assert "dim" not in params, "the time dim is time_dim="
    for key, default in DIM_DEFAULTS.items():
        if key in params:
            assert params[key].default == default and params[key].kind is inspect.Parameter.KEYWORD_ONLY
    assert not [k for k in params if k.endswith("_dim") and k not in DIM_DEFAULTS]
    if name in ACTIVITY:
        assert {"time_dim", "trial_dim", "unit_dim"} <= set(params)
    assert ("seed" in params) == (name in SEEDED)
    assert ("device" in params) == (name in TORCH)
    assert ("progress" in params) == (name in PROGRESS)
    for key, default in (("seed", None), ("device", None), ("progress", False)):
        if key in params:
            assert params[key].default is default, f"{name}({key}=...) defaults to {params[key].default!r}"
            assert params[key].kind is inspect.Parameter.KEYWORD_ONLY


def score(model):
    """An accuracy in (0.5, 1) that moves with every weight and timescale."""
    with torch.no_grad():
        h = model(torch.ones(2, 4, 3, dtype=torch.float64))
    return [0.75 + 0.2 * float(torch.tanh(h[0, -1].sum() / 10)), 0.8]


def test_perturb_draws_a_seed_stores_it_and_it_reproduces_the_result():
    net = Tiny()
    a = dt.perturb(net, [0.0, 0.5], score, repeats=2)
    b = dt.perturb(net, [0.0, 0.5], score, repeats=2)
    assert a.attrs["seed"] != b.attrs["seed"]
    assert not np.array_equal(a.accuracy.values, b.accuracy.values)
    assert dt.perturb(net, [0.0, 0.5], score, repeats=2, seed=a.attrs["seed"]).identical(a)
    with pytest.raises(TypeError, match="seed must be an int"):
        dt.perturb(net, [0.1], score, seed="0")


def test_robustness_is_quiet_by_default_and_takes_a_device(capsys):
    net = Tiny()
    res = dt.perturb(net, [0.0, 0.5], score, repeats=2, seed=3)
    abl = dt.ablation_by_tau(net, score, n=2)
    assert capsys.readouterr().err == ""                          # progress=False: no bar
    assert dt.perturb(net, [0.0, 0.5], score, repeats=2, seed=3, device="cpu").identical(res)
    assert dt.ablation_by_tau(net, score, n=2, device="cpu").identical(abl)
    dt.ablation_by_tau(net, score, n=1, progress=True)
    assert "ablate" in capsys.readouterr().err
    with pytest.raises(ValueError, match="not a torch device"):
        dt.perturb(net, [0.1], score, device="gpu0")


@pytest.mark.cuda                   # skipped without a CUDA device (tests/conftest.py)
def test_device_defaults_on_a_cuda_machine():
    net, gpu = Tiny(), Tiny().cuda()
    u = torch.rand(2, 10, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    # a model on the GPU runs there without device=, and agrees with the CPU
    res = dt.lyapunov_spectrum(gpu.step, gpu.initial_state(2), u.cuda(), seed=0)
    ref = dt.lyapunov_spectrum(net.step, net.initial_state(2), u, seed=0)
    np.testing.assert_allclose(res.lyapunov, ref.lyapunov, rtol=1e-9)
    with pytest.raises(ValueError, match="model's parameters are on 'cpu'"):
        dt.lyapunov_spectrum(net.step, net.initial_state(2), u, device="cuda")
    # a bare step: where a tensor h0 is (closures over CPU tensors work), else CUDA
    seen = []

    def step(h, x):
        seen.append(h.device.type)
        return 0.5 * h

    W = 0.5 * torch.eye(3, dtype=torch.float64)
    dt.gradient_norms(lambda h, x: h @ W, 2, h0=torch.ones(1, 3, dtype=torch.float64))
    dt.gradient_norms(step, 2, h0=torch.ones(1, 3, dtype=torch.float64))
    assert set(seen) == {"cpu"}
    seen.clear()
    dt.lyapunov_spectrum(step, np.ones((1, 2)), steps=3, seed=0, jacobian=lambda h, x: 0.5 * torch.eye(
        2, dtype=h.dtype, device=h.device).expand(h.shape[0], 2, 2))
    assert set(seen) == {"cuda"}
    # robustness: device= evaluates a copy moved there; the model stays where it is
    where = []
    dt.perturb(net, [0.1], lambda m: where.append(next(m.parameters()).device.type) or 0.9, repeats=1,
               seed=0, device="cuda")
    assert set(where) == {"cuda"} and net.W_rec.device.type == "cpu"
    # Hessians: params moved to the device
    A = torch.diag(torch.arange(1.0, 7.0, dtype=torch.float64, device="cuda"))
    r = dt.hessian_trace(lambda x: 0.5 * x @ A @ x, torch.zeros(6, dtype=torch.float64), n_samples=3, seed=0,
                         device="cuda")
    assert float(r.trace) == 21.0


# ---------------------------------------------------------------- devices in the tests (docs/testing.md)
def test_the_device_fixture_marks_cuda(device, request):
    """The shared ``device`` fixture (tests/conftest.py): cpu always, cuda marked ``cuda`` (skipped
    without a GPU, so a GPU machine runs both)."""
    assert device in ("cpu", "cuda")
    assert (device == "cuda") == (request.node.get_closest_marker("cuda") is not None)
    assert torch.zeros(1, device=device).device.type == device


def test_tests_use_the_shared_device_rules():
    """One way to test on devices: the ``device`` fixture or the ``cuda`` mark, skipped by
    tests/conftest.py; no module keeps its own cpu/cuda list or asks ``torch.cuda.is_available()``
    (on a GPU machine such a branch runs where the CPU tests meant the CPU)."""
    from pathlib import Path

    root = Path(__file__).parent
    own = [str(p.relative_to(root)) for p in sorted(root.rglob("*.py")) if p.name != "conftest.py"
           and p != Path(__file__) and any(s in p.read_text() for s in ('param("cuda"', "cuda.is_available()"))]
    assert not own, f"use the `device` fixture or @pytest.mark.cuda (tests/conftest.py) instead: {own}"
