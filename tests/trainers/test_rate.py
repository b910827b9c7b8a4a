"""RateRNN (002 Eq. 1, 5; 001): Euler steps against the exact linear solution, Dale's law under
optimisation, 001's timescale distributions, noise scaling, the analytic Jacobian, training,
reloading and recording through the engine, and the errors."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

import dynatools as dt
import trainers
from trainers.models import MODELS, RateRNN
from trainers.models.rate import sample_tau


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_registered_under_rate():
    assert MODELS["rate"] is RateRNN


def _linear_net(form: str, dt_ms: float, tau: np.ndarray) -> RateRNN:
    net = RateRNN(4, input_dim=2, form=form, activation="linear", dt=dt_ms, tau_ms=tau, gain=0.5,
                  generator=_gen(1)).double()
    with torch.no_grad():
        net.b.copy_(torch.tensor([0.1, -0.2, 0.05, 0.0], dtype=torch.float64))
    return net


@pytest.mark.parametrize("form", ["rate", "current"])
def test_euler_step_of_a_linear_network_converges_to_the_exact_solution_at_order_dt(form):
    """tau dr/dt = -r + W r + b + W_in u, u constant: r(T) = e^{AT} r0 + A^{-1}(e^{AT} - I) D c
    with A = D (W - I), D = diag(1/tau), c = b + W_in u. Euler's error is O(dt)."""
    tau = np.array([60.0, 80.0, 100.0, 150.0])
    T = 200.0
    r0 = np.array([0.3, -0.1, 0.2, 0.5])
    u = np.array([1.0, -0.5])
    errors = []
    for dt_ms in (4.0, 2.0, 1.0):
        net = _linear_net(form, dt_ms, tau)
        W = net.effective_W_rec().detach().numpy()
        c = net.b.detach().numpy() + net.W_in.detach().numpy() @ u
        D = np.diag(1.0 / tau)
        A = D @ (W - np.eye(4))
        E = scipy.linalg.expm(A * T)
        exact = E @ r0 + np.linalg.solve(A, (E - np.eye(4)) @ (D @ c))
        steps = int(round(T / dt_ms))
        uu = torch.tensor(u).expand(1, steps, 2)
        H = net(uu, torch.tensor(r0)[None])
        errors.append(np.abs(H[0, -1].detach().numpy() - exact).max())
    assert errors[0] < 1e-2
    ratios = np.array(errors[:-1]) / np.array(errors[1:])
    np.testing.assert_allclose(ratios, 2.0, rtol=0.15)       # halve dt, the error halves


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("form", ["rate", "current"])
def test_dale_signs_never_flip_over_100_optimiser_steps(optimizer, form):
    net = RateRNN(10, input_dim=2, dale=True, form=form, generator=_gen(2))
    sign = torch.tensor([1.0] * 8 + [-1.0] * 2)
    Opt = {"sgd": lambda p: torch.optim.SGD(p, lr=0.5), "adam": lambda p: torch.optim.Adam(p, lr=0.05)}
    opt = Opt[optimizer](net.parameters())
    target = torch.randn(4, 6, 10, generator=_gen(3))
    u = torch.randn(4, 6, 2, generator=_gen(4))
    raw0 = net.W_rec.detach().clone()
    for _ in range(100):
        opt.zero_grad()
        # a random loss that pushes weights across zero
        loss = ((net(u) - target) ** 2).mean() + (net.effective_W_rec() * target[0, 0][:, None]).sum()
        loss.backward()
        opt.step()
        W = net.effective_W_rec().detach()
        assert (W * sign >= 0).all()                        # E columns >= 0, I columns <= 0
    assert (torch.sign(net.W_rec.detach()) != torch.sign(raw0)).any()   # raw weights did cross zero


@pytest.mark.parametrize("n", [7, 10, 50])
def test_dale_split_is_80_20_by_presynaptic_unit(n):
    net = RateRNN(n, dale=True, generator=_gen(5))
    W = net.effective_W_rec().detach()
    n_e = round(0.8 * n)
    assert net.n_excitatory == n_e
    assert (W[:, :n_e] >= 0).all() and (W[:, n_e:] <= 0).all()


N_SAMPLES = 20_000


@pytest.mark.parametrize(
    "distribution, mean, sd, lo, hi",
    [
        ("vanilla", 100.0, 0.0, 100.0, 100.0),
        ("normal", 1000.0, 200.0, 5.0, np.inf),
        ("uniform", 1000.0, 1800.0 / np.sqrt(12.0), 100.0, 1900.0),
        ("bimodal", 1000.0, 500.0, 500.0, 1500.0),
    ],
)
def test_tau_distributions_have_the_stated_moments(distribution, mean, sd, lo, hi):
    """001: vanilla, normal N(1 s, 0.2 s), uniform [0.1, 1.9] s, bimodal 0.5 / 1.5 s (in ms)."""
    tau = sample_tau(distribution, N_SAMPLES, generator=_gen(6)).double().numpy()
    se = max(sd, 1e-9) / np.sqrt(N_SAMPLES)
    assert abs(tau.mean() - mean) < 5 * se + 1e-9
    assert abs(tau.std() - sd) < 0.03 * sd + 1e-9
    assert tau.min() >= lo and tau.max() <= hi and (tau > 5.0).all()
    if distribution == "bimodal":
        values, counts = np.unique(tau, return_counts=True)
        assert values.tolist() == [500.0, 1500.0] and counts.tolist() == [N_SAMPLES // 2] * 2
    if distribution == "uniform":
        assert tau.min() < 110.0 and tau.max() > 1890.0


@pytest.mark.parametrize("distribution", ["vanilla", "normal", "uniform", "bimodal"])
def test_model_uses_the_sampled_timescales(distribution):
    net = RateRNN(200, tau_distribution=distribution, generator=_gen(7))
    expected = sample_tau(distribution, 200, generator=_gen(7))
    torch.testing.assert_close(net.effective_tau().detach(), expected, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(net.alpha().detach(), 5.0 / expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("distribution", ["vanilla", "bimodal"])
def test_inhibitory_units_start_with_half_the_timescale(distribution):
    """002's code: tau_E = tau, tau_I = tau / 2 (the last 20 % of the units)."""
    net = RateRNN(10, dale=True, inhibitory_tau_half=True, tau_distribution=distribution, generator=_gen(60))
    plain = RateRNN(10, dale=True, tau_distribution=distribution, generator=_gen(60))
    tau, tau0 = net.effective_tau().detach(), plain.effective_tau().detach()
    torch.testing.assert_close(tau[:8], tau0[:8])
    torch.testing.assert_close(tau[8:], tau0[8:] / 2, rtol=1e-5, atol=1e-3)
    if distribution == "vanilla":
        torch.testing.assert_close(tau, torch.tensor([100.0] * 8 + [50.0] * 2), rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(net.unit_coords()["tau"][8:], tau[8:].double().numpy() / 1000.0)
    rebuilt = RateRNN.from_config(net.config(), generator=_gen(60))
    torch.testing.assert_close(rebuilt.effective_tau(), net.effective_tau())


def test_a_given_tau_array_and_trainable_tau_stay_above_dt():
    tau = np.linspace(20.0, 300.0, 6)
    net = RateRNN(6, tau_ms=tau, train_tau=True, dt=10.0, generator=_gen(8))
    torch.testing.assert_close(net.effective_tau().detach().double(), torch.tensor(tau), rtol=1e-5, atol=1e-3)
    opt = torch.optim.Adam(net.parameters(), lr=0.5)
    for _ in range(100):                                     # push every tau down hard
        opt.zero_grad()
        net.effective_tau().sum().backward()
        opt.step()
    assert (net.effective_tau() > net.dt).all() and (net.alpha() < 1).all()
    assert RateRNN(6, tau_ms=tau, train_tau=False).n_trainable == RateRNN(6, tau_ms=tau, train_tau=True).n_trainable - 6


@pytest.mark.parametrize("noise", ["white", "ou"])
@pytest.mark.parametrize("form", ["rate", "current"])
def test_noise_has_std_sqrt_2_alpha_sigma_in_training_and_is_off_in_eval(form, noise):
    """step(): white noise gives the state std sqrt(2 alpha) sigma per step; OU (no history in one
    step) its stationary input noise sigma xi, i.e. std alpha sigma on the state."""
    net = RateRNN(3, form=form, sigma=0.5, tau_ms=np.array([50.0, 100.0, 200.0]), activation="linear",
                  noise=noise, generator=_gen(9))
    with torch.no_grad():
        net.W_rec.zero_()
        net.W_in.zero_()
    net.noise_generator = _gen(10)
    h1 = net.step(torch.zeros(40_000, 3), None).detach()
    alpha = net.alpha().detach()
    expected = torch.sqrt(2 * alpha) * 0.5 if noise == "white" else alpha * 0.5
    torch.testing.assert_close(h1.std(0), expected, rtol=0.02, atol=0)
    net.eval()
    assert torch.equal(net.step(torch.zeros(5, 3), None), torch.zeros(5, 3))


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_populations_input_and_readout_weights_stay_zero_outside_them(optimizer):
    """002 Sec. 2.2: inputs reach only the input population (units 0-2), the readout reads only
    the output population (units 3-6); units 7-9 are auxiliary."""
    net = RateRNN(10, input_dim=2, input_units=3, output_units=4, dale=True, generator=_gen(20))
    in_out = torch.zeros(10, dtype=torch.bool)
    in_out[:3] = True
    read = torch.zeros(10, dtype=torch.bool)
    read[3:7] = True
    assert (net.W_in[~in_out] == 0).all() and (net.W_in[in_out] != 0).all()
    assert (net.heads.weight[..., ~read] == 0).all()
    Opt = {"sgd": lambda p: torch.optim.SGD(p, lr=0.5, momentum=0.9), "adam": lambda p: torch.optim.Adam(p, lr=0.05)}
    opt = Opt[optimizer](net.parameters())
    u = torch.randn(4, 6, 2, generator=_gen(21))
    for _ in range(20):                                     # a loss through the dynamics: raw weights stay 0
        opt.zero_grad()
        H = net(u)
        (net.readout(H).pow(2).mean() - H.pow(2).mean()).backward()
        opt.step()
    assert (net.W_in[~in_out] == 0).all() and (net.heads.weight[..., ~read] == 0).all()
    for _ in range(5):                                      # a loss on the raw weights (decay): they move,
        opt.zero_grad()                                     # the effective ones stay 0
        (net.readout(net(u)).pow(2).mean() + net.W_in.sum() + net.heads.weight.sum()).backward()
        opt.step()
    assert (net.W_in[~in_out] != 0).all()
    assert (net.effective_W_in()[~in_out] == 0).all() and (net.effective_W_out()[..., ~read] == 0).all()
    w = net.recording_weights()
    assert (w["W_in"][~in_out.numpy()] == 0).all() and (w["W_out"][..., ~read.numpy()] == 0).all()
    with torch.no_grad():                                   # even raw weights set by hand do nothing
        net.W_in.fill_(1.0)
        net.heads.weight.fill_(1.0)
        net.W_rec.zero_()
        net.b.zero_()
    H = net(u).detach()
    assert (H[..., 3:] == 0).all() and (H[..., :3] != 0).any()   # only the input population moves
    h = torch.randn(5, 10, generator=_gen(22)).abs()
    h2 = h.clone()
    h2[:, ~read] += 1.0
    assert torch.equal(net.readout(h), net.readout(h2))     # the readout sees the output population only


def test_unit_coords_label_populations_signs_and_tau_in_seconds():
    net = RateRNN(10, input_units=4, output_units=4, dale=True, tau_distribution="bimodal", generator=_gen(23))
    c = net.unit_coords()
    assert c["population"].tolist() == ["input"] * 4 + ["output"] * 4 + ["auxiliary"] * 2
    assert c["sign"].tolist() == ["E"] * 8 + ["I"] * 2
    np.testing.assert_allclose(c["tau"], net.effective_tau().detach().double().numpy() / 1000.0)
    plain = RateRNN(5).unit_coords()
    assert plain["population"].tolist() == ["auxiliary"] * 5 and plain["sign"].tolist() == ["E"] * 5
    assert RateRNN(5, output_units=2).unit_coords()["population"].tolist() == ["output"] * 2 + ["auxiliary"] * 3
    rebuilt = RateRNN.from_config(net.config())
    assert (rebuilt.input_units, rebuilt.output_units) == (4, 4)


def test_ou_noise_has_stationary_std_sigma_and_autocorrelation_time_tau_n():
    """002's code uses Ornstein-Uhlenbeck input noise; exact discretisation o_t = a o_{t-1} +
    sqrt(1 - a^2) xi_t, a = exp(-dt / tau_n): std sigma at every step, autocorrelation exp(-s / tau_n)."""
    sigma, tau_n, dt_ms = 0.3, 50.0, 5.0
    net = RateRNN(4, sigma=sigma, noise="ou", noise_tau_ms=tau_n, dt=dt_ms, generator=_gen(50))
    eta = net.input_noise(net.draw_noise(5000, 40, generator=_gen(51))).double()
    assert eta.shape == (5000, 40, 4)
    np.testing.assert_allclose(eta.std(0).numpy(), sigma, rtol=0.05)         # stationary from t=0
    np.testing.assert_allclose(eta.std().item(), sigma, rtol=0.01)
    lags = np.arange(1, 21)
    x = eta[:, 5]
    acf = np.array([((x * eta[:, 5 + k]).mean() / (x * x).mean()).item() for k in lags])
    np.testing.assert_allclose(acf, np.exp(-lags * dt_ms / tau_n), atol=0.03)
    slope = np.polyfit(lags * dt_ms, np.log(acf), 1)[0]
    assert abs(-1.0 / slope - tau_n) < 0.05 * tau_n                        # autocorrelation time


@pytest.mark.parametrize("form", ["rate", "current"])
def test_forward_adds_the_ou_input_noise_and_the_state_has_the_closed_form_std(form):
    sigma, tau, tau_n, dt_ms = 0.5, 40.0, 100.0, 5.0
    net = RateRNN(3, form=form, activation="linear", sigma=sigma, noise="ou", noise_tau_ms=tau_n, dt=dt_ms,
                  tau_ms=tau, generator=_gen(52)).double()
    with torch.no_grad():
        net.W_rec.zero_()
        net.b.fill_(0.2)
    u = torch.zeros(4000, 300, 1, dtype=torch.float64)
    xi = net.draw_noise(4000, 300, generator=_gen(53))
    H = net(u, noise=xi)
    eta, alpha = net.input_noise(xi), net.alpha()
    h, manual = torch.zeros(4000, 3, dtype=torch.float64), []
    for t in range(300):                                   # r <- (1 - alpha) r + alpha (b + eta_t)
        h = (1 - alpha) * h + alpha * (net.b + eta[:, t])
        manual.append(h)
    torch.testing.assert_close(H, torch.stack(manual, 1))
    p, a = 1 - dt_ms / tau, np.exp(-dt_ms / tau_n)         # AR(1) driven by AR(1): closed-form variance
    var = (dt_ms / tau * sigma) ** 2 * (1 + p * a) / ((1 - p * p) * (1 - p * a))
    np.testing.assert_allclose(H[:, -1].std(0).detach().numpy(), np.sqrt(var), rtol=0.04)
    np.testing.assert_allclose(H[:, -1].mean(0).detach().numpy(), 0.2, atol=0.01)


@pytest.mark.parametrize("g", ["linear", "sigmoid", "softmax"])
def test_output_activation_is_applied_over_the_class_axis(g):
    """002 Eq. 2: y = g(W_out r)."""
    net = RateRNN(6, n_heads=2, n_classes=3, output_activation=g, generator=_gen(70))
    linear = RateRNN(6, n_heads=2, n_classes=3, generator=_gen(70))
    h = torch.randn(4, 5, 6, generator=_gen(71))
    y, logits = net.readout(h), linear.readout(h)
    assert y.shape == (4, 5, 2, 3)
    expected = {"linear": logits, "sigmoid": torch.sigmoid(logits), "softmax": torch.softmax(logits, -1)}[g]
    torch.testing.assert_close(y, expected)
    if g == "softmax":
        torch.testing.assert_close(y.sum(-1), torch.ones(4, 5, 2))
    torch.testing.assert_close(net.readout(h, heads=1), expected[..., :1, :])
    assert RateRNN.from_config(net.config()).output_activation == g


@pytest.mark.parametrize("form", ["rate", "current"])
@pytest.mark.parametrize("noise", ["white", "ou"])
def test_explicit_noise_same_draws_same_trajectory_and_eval_ignores_it(form, noise):
    net = RateRNN(5, input_dim=2, form=form, sigma=0.3, noise=noise, generator=_gen(30))
    u = torch.randn(3, 12, 2, generator=_gen(31))
    xi = net.draw_noise(3, 12, generator=_gen(32))
    assert xi.shape == (3, 12, 5)
    H1, H2 = net(u, noise=xi), net(u, noise=xi.clone())
    assert torch.equal(H1, H2)
    assert not torch.equal(H1, net(u, noise=net.draw_noise(3, 12, generator=_gen(33))))
    net.noise_generator = _gen(32)                         # drawn inside: the same numbers
    assert torch.equal(net(u), H1)
    net.eval()
    assert torch.equal(net(u, noise=xi), net(u))           # evaluation: noise-free even if given
    # forward's Euler steps are step()'s: noise-free, step by step
    h = net.initial_state(3)
    for t in range(12):
        h = net.step(h, u[:, t])
    torch.testing.assert_close(net(u)[:, -1], h, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("noise", ["white", "ou"])
@pytest.mark.parametrize("form", ["rate", "current"])
def test_forward_under_vmap_over_three_stacked_models_equals_the_plain_forwards(form, noise):
    kw = dict(input_dim=2, form=form, sigma=0.2, noise=noise, dale=True, tau_distribution="uniform",
              train_tau=True, input_units=2, output_units=3)
    nets = [RateRNN(6, generator=_gen(40 + k), **kw) for k in range(3)]
    params, buffers = torch.func.stack_module_state(nets)
    base = RateRNN(6, **kw)
    u = torch.randn(3, 4, 9, 2, generator=_gen(44))          # (model, batch, time, input)
    h0 = 0.1 * torch.randn(3, 4, 6, generator=_gen(45))
    xi = torch.randn(3, 4, 9, 6, generator=_gen(46))

    def run(p, b, uk, hk, nk):
        return torch.func.functional_call(base, (p, b), (uk, hk, nk))

    out = torch.func.vmap(run, in_dims=(0, 0, 0, 0, 0))(params, buffers, u, h0, xi)
    for k, net in enumerate(nets):
        assert net.training
        torch.testing.assert_close(out[k], net(u[k], h0[k], xi[k]), rtol=1e-6, atol=1e-6)
    assert not torch.allclose(out[0], out[1])


@pytest.mark.parametrize("activation", ["relu", "tanh", "softplus", "linear"])
@pytest.mark.parametrize("form", ["rate", "current"])
@pytest.mark.parametrize("dale", [False, True])
@pytest.mark.parametrize("populations", [(0, 0), (2, 3)])
def test_analytic_jacobian_equals_autograd(activation, form, dale, populations):
    net = RateRNN(6, input_dim=2, form=form, activation=activation, dale=dale, input_units=populations[0],
                  output_units=populations[1], tau_distribution="uniform", generator=_gen(11)).double()
    with torch.no_grad():
        net.b.normal_(generator=_gen(12))
    h = torch.randn(3, 6, generator=_gen(13), dtype=torch.float64)
    u = torch.randn(3, 2, generator=_gen(14), dtype=torch.float64)
    auto = torch.func.vmap(torch.func.jacrev(lambda x, v: net.step(x[None], v[None])[0]))(h, u)
    torch.testing.assert_close(net.jacobian(h, u), auto)
    auto0 = torch.func.vmap(torch.func.jacrev(lambda x: net.step(x[None], None)[0]))(h)
    torch.testing.assert_close(net.jacobian(h, None), auto0)


def test_lyapunov_spectrum_runs_on_the_model():
    net = RateRNN(6, form="current", activation="tanh", gain=1.5, generator=_gen(15)).double()
    ly = dt.lyapunov_spectrum(net.step, torch.zeros(1, 6, dtype=torch.float64), None, steps=50,
                              device="cpu", seed=0)
    assert ly.sizes["exponent"] == 6 and np.isfinite(ly.lyapunov.values).all()


def test_train_on_parity_reload_and_record(tmp_path):
    cfg = {"model": "rate", "task": "parity", "units": 16, "batch": 8, "steps_per_epoch": 3,
           "eval_batches": 1, "max_epochs": 1, "n_max": 3, "device": "cpu", "seed": 0,
           "tau_distribution": "bimodal", "dale": True, "sigma": 0.1}
    run = trainers.train(cfg, tmp_path / "r", progress=False)
    assert run.config.model == "rate" and run.config.optimizer == "adam"
    assert np.isfinite(run.losses).all()
    model, task, head = trainers.RunDir(tmp_path / "r").load()
    assert isinstance(model, RateRNN) and model.dale and model.sigma == 0.1
    torch.testing.assert_close(model.effective_tau(), run.model.effective_tau())
    for k, v in run.model.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    rec = trainers.record(model.eval(), task, steps=50, trials=2, burn_in=5, seed=0)
    dt.validate(rec)
    assert rec.attrs["model"] == "rate" and rec.activity.shape == (2, 50, 16)
    assert sorted(np.unique(rec.tau.values).tolist()) == pytest.approx([500.0, 1500.0])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"dt": 100.0}, r"dt=100 ms must be smaller than every tau"),
        ({"dt": 5.0, "tau_ms": [50.0, 4.0, 60.0, 70.0]}, r"smallest tau: 4 ms"),
        ({"tau_ms": [50.0, 60.0]}, r"tau_ms has shape \(2,\)"),
        ({"tau_distribution": "lognormal"}, r"tau_distribution='lognormal'.*'vanilla', 'normal', 'uniform', 'bimodal'"),
        ({"activation": "gelu"}, r"activation='gelu'.*'relu', 'tanh', 'softplus'"),
        ({"form": "voltage"}, r"form='voltage'.*'rate', 'current'"),
        ({"dale": True, "e_fraction": 1.0}, r"e_fraction must lie in \(0, 1\)"),
        ({"dale": True, "e_fraction": 0.0}, r"e_fraction must lie in \(0, 1\)"),
        ({"sigma": -1.0}, r"sigma must be >= 0"),
        ({"dt": 0.0}, r"dt must be a positive"),
        ({"inhibitory_tau_half": True}, r"inhibitory_tau_half needs dale=True .*set dale=True or"),
        ({"dale": True, "inhibitory_tau_half": True, "tau_ms": 9.0, "dt": 5.0}, r"smallest tau: 4.5 ms"),
        ({"output_activation": "relu"}, r"output_activation='relu'.*'linear', 'sigmoid', 'softmax'"),
        ({"noise": "pink"}, r"noise='pink'.*'white', 'ou'"),
        ({"noise_tau_ms": 0.0}, r"noise_tau_ms must be a positive number of ms"),
        ({"input_units": 3, "output_units": 2}, r"input_units \+ output_units = 5 exceeds n_units=4; give smaller --input-units"),
        ({"input_units": -1}, r"input_units must be a number of units \(an integer\), a fraction"),
        ({"output_units": 1.5}, r"output_units must be a number of units \(an integer\), a fraction"),
        ({"init": "xavier"}, r"init='xavier' is not a valid option"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match) as err:
        RateRNN(4, **kwargs)
    assert "\n" not in str(err.value)                      # one line


@pytest.mark.parametrize(
    "options, match",
    [
        ({"input_units": -2}, r"input_units must be >= 0"),
        ({"output_units": "4"}, r"output_units must be a finite number"),
        ({"input_units": 10, "output_units": 10}, r"input_units \+ output_units = 20 exceeds n_units=16"),
        ({"noise": "brown"}, r"noise='brown'.*'white', 'ou'"),
        ({"noise_tau_ms": -5.0}, r"noise_tau_ms must be a positive number"),
        ({"inhibitory_tau_half": "yes"}, r"inhibitory_tau_half must be true or false"),
        ({"inhibitory_tau_half": True}, r"inhibitory_tau_half needs dale=True"),
        ({"output_activation": "tanh"}, r"output_activation='tanh'.*'linear', 'sigmoid', 'softmax'"),
    ],
)
def test_bad_new_options_through_the_engine_are_one_line_errors(options, match):
    cfg = {"model": "rate", "task": "parity", "units": 16, "device": "cpu", "seed": 0, "max_epochs": 1,
           "steps_per_epoch": 1, "batch": 2, "eval_batches": 1, "n_max": 2, **options}
    with pytest.raises(ValueError, match=match) as err:
        trainers.train(cfg, progress=False)
    assert "\n" not in str(err.value)


def test_bad_noise_tensors_are_one_line_errors():
    net = RateRNN(3, sigma=0.1)
    u = torch.zeros(2, 5, 1)
    with pytest.raises(ValueError, match=r"noise has shape \(2, 5, 4\); expected \(2, 5, 3\).*draw_noise\(2, 5\)"):
        net(u, noise=torch.zeros(2, 5, 4))
    with pytest.raises(ValueError, match=r"noise is torch.float64 .* convert one with"):
        net(u, noise=torch.zeros(2, 5, 3, dtype=torch.float64))


def test_bad_options_through_the_registry():
    with pytest.raises(ValueError, match="e_fraction"):
        trainers.train({"model": "rate", "task": "parity", "e_fraction": 1.5, "device": "cpu"}, progress=False)
    with pytest.raises(ValueError, match="tau_distribution"):
        trainers.train({"model": "rate", "task": "parity", "tau_distribution": "x", "device": "cpu"},
                       progress=False)


@pytest.mark.parametrize("given, n_in, n_out", [(0.4, 20, 20), (20, 20, 20), (0, 0, 0), (0.01, 1, 1)])
def test_population_sizes_as_fractions_or_counts(given, n_in, n_out):
    net = RateRNN(50, input_units=given, output_units=given)
    assert (net.input_units, net.output_units) == (n_in, n_out)
    assert net.config()["input_units"] == given                    # rebuilds with the same rule
    coords = net.unit_coords()["population"]
    assert (coords == "input").sum() == n_in and (coords == "output").sum() == n_out


def test_init_002_follows_the_authors_scales():
    """002's code: recurrent N(0, 1/n^2), input, readout and bias N(0, 1), no readout bias."""
    n = 400
    net = RateRNN(n, input_dim=50, n_classes=30, init="002", generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert abs(float(net.W_rec.std()) * n - 1) < 0.02
        for w in (net.W_in, net.b, net.heads.weight):
            assert abs(float(w.std()) - 1) < 0.05 and abs(float(w.mean())) < 0.05
        assert float(net.heads.bias.abs().max()) == 0.0


@pytest.mark.parametrize("form", ["rate", "current"])
def test_scan_over_a_member_axis_equals_each_network(form):
    nets = [RateRNN(6, form=form, activation="tanh", tau_distribution="uniform", input_dim=2,
                    generator=torch.Generator().manual_seed(k)) for k in range(3)]
    u = torch.randn(3, 4, 7, 2, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ext = torch.stack([n.drive(u[k]) for k, n in enumerate(nets)])
        alpha = torch.stack([n.alpha() for n in nets])
        W = torch.stack([n.effective_W_rec() for n in nets])
        H = nets[0].scan(torch.zeros(3, 4, 6), ext, alpha, W)
        for k, n in enumerate(nets):
            torch.testing.assert_close(H[k], n(u[k]), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("form", ["rate", "current"])
@pytest.mark.parametrize("activation", ["relu", "tanh", "softplus", "linear"])
@pytest.mark.parametrize("extras", [{}, {"dale": True, "train_tau": True, "input_units": 2, "output_units": 2,
                                         "sigma": 0.2, "noise": "ou"}])
def test_fused_recurrence_gives_autograds_gradients(form, activation, extras):
    """The hand-written backward of the fused Euler steps against autograd through the loop."""
    net = RateRNN(6, input_dim=2, n_classes=3, form=form, activation=activation, tau_distribution="uniform",
                  generator=torch.Generator().manual_seed(1), **extras).double()
    gen = torch.Generator().manual_seed(2)
    u = torch.randn(3, 9, 2, dtype=torch.float64, generator=gen)
    noise = torch.randn(3, 9, 6, dtype=torch.float64, generator=gen)
    h0 = torch.randn(3, 6, dtype=torch.float64, generator=gen, requires_grad=True)
    grads = []
    for fused in (True, False):
        net.fused = fused
        net.zero_grad()
        h0.grad = None
        (net.readout(net(u, h0, noise=noise), heads=1) ** 2).sum().backward()
        grads.append([p.grad for p in net.parameters() if p.grad is not None] + [h0.grad])
    assert len(grads[0]) == len(grads[1])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-8)


def test_fused_recurrence_over_a_member_axis_and_second_derivatives():
    from trainers.engine import loss_closure

    nets = [RateRNN(5, input_dim=2, generator=torch.Generator().manual_seed(k)).double() for k in range(2)]
    u = torch.randn(2, 3, 6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    ext = torch.stack([n.drive(u[k]) for k, n in enumerate(nets)])
    W = torch.stack([n.effective_W_rec() for n in nets])
    alpha = torch.stack([n.alpha() for n in nets])
    H = nets[0].scan(torch.zeros(2, 3, 5, dtype=torch.float64), ext, alpha, W)     # fused, batched
    H.square().sum().backward()
    for k, n in enumerate(nets):
        ref = RateRNN(5, input_dim=2, generator=torch.Generator().manual_seed(k)).double()
        ref.fused = False
        ref(u[k]).square().sum().backward()
        torch.testing.assert_close(n.W_rec.grad, ref.W_rec.grad, atol=1e-10, rtol=1e-8)
    # Hessians need double backward: loss_closure runs the unfused loop on a copy
    from trainers.tasks import TASKS
    task = TASKS["go"]()
    net = RateRNN(8, input_dim=task.input_dim, n_classes=task.n_classes, output_activation="sigmoid").double()
    loss_fn, params = loss_closure(net, task, batch=2)
    params = {k: v.requires_grad_() for k, v in params.items()}
    assert net.fused
    grads = torch.autograd.grad(loss_fn(params), list(params.values()), create_graph=True)
    assert torch.autograd.grad(grads[0].sum(), params["W_rec"], allow_unused=True)[0] is not None
    h = net(torch.ones(1, 4, task.input_dim, dtype=torch.float64))           # fused: first derivatives only
    g = torch.autograd.grad(h.sum(), net.W_rec, create_graph=True)[0]
    with pytest.raises(RuntimeError, match="does not require grad"):
        torch.autograd.grad(g.sum(), net.W_rec)
