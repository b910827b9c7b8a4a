"""Continuous-time rate RNN with diverse single-neuron timescales, simulated by Euler steps.

Sources (``shared/seeds/``):

* 002, Soo, Goudar & Wang (NeurIPS 2023), Sec. 2.1, Eq. 1 and 5: the rate form
  ``T dr/dt = -r + f(W_rec r + b + W_in u + eta)``, discretised as ``r <- r + dt * dr/dt``;
  dt = 5 ms and tau = 100 ms, ReLU (tanh and softplus named as alternatives).
* 001, Higgs, Siddiqui & Langdon (multi-tau RNNs): the current form
  ``tau_i dx_i/dt = -x_i + sum_j W_ij phi(x_j) + sum_k W_in_ik u_k`` with rates ``phi(x)``, and
  the timescale distributions vanilla, normal N(1 s, 0.2 s), uniform [0.1, 1.9] s and bimodal
  {0.5 s, 1.5 s}.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from dynatools.utils import check_choice
from trainers.models._common import (
    MultiHeadReadout,
    RecurrentModel,
    check_sizes,
    check_state,
    linear_bound,
    schema_arrays,
    uniform_,
)
from trainers.models._rate_scan import RateScan, activation, activation_grad
from trainers.registry import Option
from trainers.skip import Simulation

#: The forms of the dynamics: 002 Eq. 1 (state = rates) or 001 (state = currents, rates = f(x)).
FORMS = ("rate", "current")
#: Activations ``f``; ``linear`` (identity) is for closed-form checks.
RATE_ACTIVATIONS = ("relu", "tanh", "softplus", "linear")
#: Forms of the private noise: white (Euler-Maruyama) or Ornstein-Uhlenbeck (002's code).
NOISE_FORMS = ("white", "ou")
#: Output nonlinearities g of 002 Eq. 2, applied over the class axis of the readout.
OUTPUT_ACTIVATIONS = ("linear", "sigmoid", "softmax")
#: Weight initialisations: PyTorch's Linear bounds, or the authors' code of 002.
INITS = ("uniform", "002")
#: Timescale distributions of 001 (``vanilla``: every unit has ``tau``).
TAU_DISTRIBUTIONS = ("vanilla", "normal", "uniform", "bimodal")


def sample_tau(distribution: str, n: int, *, tau: float = 100.0, dt: float = 5.0,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-unit timescales in ms drawn from one of 001's distributions.

    Parameters
    ----------
    distribution : {"vanilla", "normal", "uniform", "bimodal"}
        ``vanilla``: every unit ``tau``; ``normal``: N(1000 ms, 200 ms), values <= ``dt`` redrawn
        (kept positive and above the step); ``uniform``: U(100 ms, 1900 ms); ``bimodal``: 500 ms
        for a random half of the units (``n // 2``) and 1500 ms for the rest.
    n : int
        Number of units.
    tau : float, default=100.0
        The common timescale of ``vanilla`` (ms).
    dt : float, default=5.0
        Euler step (ms); ``normal`` keeps every value above it.
    generator : torch.Generator, optional
        Source of the draws.

    Returns
    -------
    torch.Tensor
        ``(n,)`` float32, in ms.

    Examples
    --------
    >>> import torch
    >>> sample_tau("bimodal", 4, generator=torch.Generator().manual_seed(0)).sort().values
    tensor([ 500.,  500., 1500., 1500.])
    """
    check_choice("tau_distribution", distribution, TAU_DISTRIBUTIONS)
    if distribution == "vanilla":
        return torch.full((n,), float(tau))
    if distribution == "uniform":
        return 100.0 + 1800.0 * torch.rand(n, generator=generator)
    if distribution == "bimodal":
        values = torch.full((n,), 1500.0)
        values[torch.randperm(n, generator=generator)[: n // 2]] = 500.0
        return values
    values = 1000.0 + 200.0 * torch.randn(n, generator=generator)
    for _ in range(100):                      # truncated normal: redraw the (rare) values <= dt
        bad = values <= dt
        if not bad.any():
            break
        values[bad] = 1000.0 + 200.0 * torch.randn(int(bad.sum()), generator=generator)
    return values


_f = activation
_df = activation_grad


def _addmm(ext: torch.Tensor, h: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """``ext + h @ W.T`` in one operation: ``addmm`` for one network's ``(batch, unit)`` state,
    ``baddbmm`` for ``(member, batch, unit)`` states and ``(member, unit, unit)`` weights."""
    if h.ndim == 2 and W.ndim == 2:
        return torch.addmm(ext, h, W.mT)
    if h.ndim == 3 and W.ndim == 3:                            # a member axis: batched products
        return torch.baddbmm(ext, h, W.mT)
    return torch.matmul(h, W.mT) + ext


class RateRNN(RecurrentModel):
    r"""Continuous-time rate RNN (002 Eq. 1, 5; 001) with per-unit timescales and Dale's law.

    With :math:`\alpha_i = dt / \tau_i` and one Euler step of length ``dt`` (002 Eq. 5):

    * ``form="rate"`` (002 Eq. 1), state = rates r:
      :math:`r \leftarrow (1 - \alpha) \odot r + \alpha \odot f(W r + b + W_{in} u + \eta)`;
    * ``form="current"`` (001), state = currents x, rates :math:`f(x)`:
      :math:`x \leftarrow (1 - \alpha) \odot x + \alpha \odot (W f(x) + b + W_{in} u + \eta)`.

    Private noise :math:`\eta` (002 Eq. 1; training mode only, ``sigma > 0``) enters with the
    input: inside ``f`` in the rate form, in the drive :math:`W f(x) + b + W_{in} u + \eta` in the
    current form. From standard-normal draws :math:`\xi_t`:

    * ``noise="white"``: :math:`\eta_t = \sqrt{2 / \alpha}\, \sigma\, \xi_t`, so the state
      receives white noise of standard deviation :math:`\sqrt{2\alpha}\sigma` per step (for the
      rate form to first order in f), the Euler-Maruyama discretisation of noise whose stationary
      variance does not depend on ``dt``;
    * ``noise="ou"`` (002's code): :math:`\eta_t = \sigma\, o_t` with the Ornstein-Uhlenbeck process
      :math:`o_0 = \xi_0`, :math:`o_t = a\, o_{t-1} + \sqrt{1 - a^2}\, \xi_t`,
      :math:`a = e^{-dt / \tau_n}` (the exact discretisation): stationary standard deviation
      :math:`\sigma` and autocorrelation :math:`e^{-|s| / \tau_n}` at every ``dt``.

    ``model.eval()`` turns the noise off. Draws come from ``model.noise_generator`` (a
    ``torch.Generator`` on the model's device) or, when it is None, PyTorch's global generator;
    :meth:`forward` also takes them explicitly (ensembles).

    The readout (002 Eq. 2, ``y = g(W_out r)``) is the multi-head linear readout of the other
    models, applied to the rates (``r`` in the rate form, ``f(x)`` in the current form) of the
    output population, followed by ``g = output_activation`` over the class axis.

    Parameters
    ----------
    n_units : int
        Number of recurrent units.
    input_dim : int, default=1
    n_heads : int, default=1
    n_classes : int, default=2
    dt : float, default=5.0
        Euler step in ms (002: 5 ms). Must be smaller than every tau.
    tau_ms : float or array_like, default=100.0
        Timescale in ms (002: 100 ms; named ``tau_ms`` because the leaky RNN's ``tau`` counts
        steps): the value of every unit for ``tau_distribution="vanilla"``,
        or an array of ``n_units`` values (then ``tau_distribution`` is ignored).
    tau_distribution : {"vanilla", "normal", "uniform", "bimodal"}, default="vanilla"
        001's distributions (see :func:`sample_tau`; normal N(1 s, 0.2 s), uniform [0.1, 1.9] s,
        bimodal 0.5 s / 1.5 s).
    train_tau : bool, default=False
        Train tau. It is parametrised as ``tau = dt + exp(log_tau_excess)``, so it stays > dt.
    form : {"rate", "current"}, default="rate"
    activation : {"relu", "tanh", "softplus", "linear"}, default="relu"
        ``linear`` (identity) is meant for closed-form checks.
    sigma : float, default=0.0
        Private noise level (0: deterministic, which the engine's exact-resume tests rely on);
        for ``noise="ou"`` the stationary standard deviation of eta (002's code: 0.1).
    noise : {"white", "ou"}, default="white"
        Form of the private noise (above).
    noise_tau_ms : float, default=100.0
        Timescale tau_n of the Ornstein-Uhlenbeck noise in ms (002's code: tau_n = tau = 100 ms).
    dale : bool, default=False
        Dale's law: the first ``round(e_fraction * n_units)`` units are excitatory, the rest
        inhibitory; ``W = |W_raw| * sign`` with a fixed sign per presynaptic unit (column), so no
        optimiser step can flip a sign. Inhibitory columns start scaled by n_E / n_I (balance).
    e_fraction : float, default=0.8
        Excitatory fraction for Dale's law, in (0, 1).
    inhibitory_tau_half : bool, default=False
        Under Dale's law, the inhibitory units start with half the timescale they would otherwise
        get (from ``tau_ms`` or ``tau_distribution``; 002's code: tau_I = tau / 2 = 50 ms). Needs
        ``dale=True`` (without Dale's law there are no inhibitory units).
    gain : float, default=1.0
        Initial recurrent weights N(0, gain^2 / n_units) (magnitudes for Dale's law).
    init : {"uniform", "002"}, default="uniform"
        Initialisation of the other weights. ``uniform``: PyTorch's ``nn.Linear`` bounds for the
        input and readout weights, zero bias, recurrent weights by ``gain``. ``002``: the authors'
        code (``func_standardtasks.py``): recurrent N(0, 1/n^2) (``gain`` is not used), input and
        readout weights and the bias N(0, 1), readout bias 0. The cognitive tasks train with
        ``002``: with the ``uniform`` scales their ReLU networks saturate the sigmoid readout and
        stop learning.
    output_activation : {"linear", "sigmoid", "softmax"}, default="linear"
        ``g`` of 002 Eq. 2 (002: sigmoid for the cognitive tasks, softmax in Sec. 4.1), over the
        class axis. ``linear`` returns logits, which the cross-entropy of the binary tasks expects.
    input_units, output_units : float, default=0
        Populations (002 Sec. 2.2): the inputs project only onto the first ``input_units`` units,
        the readout reads only the next ``output_units`` units, the rest are auxiliary. A value in
        (0, 1) is a fraction of ``n_units`` (rounded; 002's code: 0.4 and 0.4), a value >= 1 a
        number of units (an integer). 0: no
        restriction on that side (every unit receives input / is read out). Fixed masks multiply
        ``W_in`` (rows) and the readout weights (columns) in the forward pass, and the masked
        weights start at zero, so no optimiser step can use them. Under Dale's law the E units
        come first too, so populations that fit in the E units are excitatory (002's code:
        0.4 n input, 0.4 n output, 0.2 n auxiliary = the inhibitory units).
    generator : torch.Generator, optional
        Source of the initialisation and the tau draws.

    Examples
    --------
    >>> import torch
    >>> from trainers.models import RateRNN
    >>> net = RateRNN(10, tau_distribution="bimodal", dale=True, generator=torch.Generator().manual_seed(0))
    >>> H = net(torch.ones(2, 20, 1))              # (batch, time, unit)
    >>> net.readout(H[:, -1]).shape                # (batch, head, class)
    torch.Size([2, 1, 2])
    >>> net.jacobian(H[:, -1], torch.ones(2, 1)).shape
    torch.Size([2, 10, 10])
    """

    name = "rate"
    #: the fused recurrence runs under torch.func.vmap (ensembles use it)
    fused_vmappable = True
    #: forward takes ``simulation=`` (CD, SCTT, DASC of 002 Sec. 3; ``trainers.skip``)
    simulations = True
    options = (
        Option("dt", 5.0, "Euler step in ms (002: 5 ms); shared with trial tasks", float, positive=True,
               shared=True),
        Option("tau_ms", 100.0, "timescale in ms of every unit for tau_distribution=vanilla (002: 100 ms)",
               float, positive=True),
        Option("tau_distribution", "vanilla", "vanilla, normal (1 s, 0.2 s), uniform [0.1, 1.9] s or "
               "bimodal 0.5/1.5 s (001)", str, TAU_DISTRIBUTIONS),
        Option("train_tau", False, "train the timescales (kept > dt)", bool),
        Option("form", "rate", "rate (002 Eq. 1) or current (001)", str, FORMS),
        Option("activation", "relu", "relu, tanh, softplus or linear", str, RATE_ACTIVATIONS),
        Option("sigma", 0.0, "private noise level while training (std sqrt(2 alpha) sigma per step)",
               float, minimum=0.0),
        Option("noise", "white", "form of the private noise: white or ou (Ornstein-Uhlenbeck, 002's code)",
               str, NOISE_FORMS),
        Option("noise_tau_ms", 100.0, "timescale in ms of the Ornstein-Uhlenbeck noise (002's code: 100 ms)",
               float, positive=True),
        Option("dale", False, "Dale's law: fixed E/I signs per presynaptic unit", bool),
        Option("e_fraction", 0.8, "excitatory fraction under Dale's law", float, positive=True, below=1.0),
        Option("inhibitory_tau_half", False, "under Dale's law, inhibitory units start with tau/2 (002's code)",
               bool),
        Option("gain", 1.0, "initial recurrent weights N(0, gain^2/n)", float, positive=True),
        Option("output_activation", "linear", "g of 002 Eq. 2 on the readout: linear (logits), sigmoid or "
               "softmax over classes", str, OUTPUT_ACTIVATIONS),
        Option("input_units", 0, "units receiving the input: the first ones (002 Sec. 2.2); a fraction of the "
               "units if below 1 (002: 0.4); 0 = all", float, minimum=0),
        Option("output_units", 0, "units read out: the next ones after the input units (002 Sec. 2.2); a "
               "fraction of the units if below 1 (002: 0.4); 0 = all", float, minimum=0),
        Option("init", "uniform", "weight initialisation: uniform (PyTorch's Linear bounds) or 002 (the "
               "authors' code: N(0, 1) input, readout and bias; N(0, 1/n^2) recurrent)", str, INITS),
    )
    #: 002 trains with Adam (the learning rate is the task's: 2e-3 for the cognitive tasks, the
    #: authors' 0.1 / 50 units; without one, Adam's 1e-3); inputs +-1.
    defaults = {"optimizer": "adam", "clip": 1.0, "encoding": "pm1"}

    def __init__(
        self,
        n_units: int,
        *,
        dt: float = 5.0,
        tau_ms: float | np.ndarray | torch.Tensor = 100.0,
        tau_distribution: str = "vanilla",
        train_tau: bool = False,
        form: str = "rate",
        activation: str = "relu",
        sigma: float = 0.0,
        noise: str = "white",
        noise_tau_ms: float = 100.0,
        dale: bool = False,
        e_fraction: float = 0.8,
        inhibitory_tau_half: bool = False,
        gain: float = 1.0,
        output_activation: str = "linear",
        input_units: float = 0,
        output_units: float = 0,
        init: str = "uniform",
        input_dim: int = 1,
        n_heads: int = 1,
        n_classes: int = 2,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.form = check_choice("form", form, FORMS)
        self.activation = check_choice("activation", activation, RATE_ACTIVATIONS)
        self.tau_distribution = check_choice("tau_distribution", tau_distribution, TAU_DISTRIBUTIONS)
        n, self.input_dim = check_sizes(n_units, input_dim, n_heads, n_classes)
        self.n_units = n
        self.dt = float(dt)
        if not (math.isfinite(self.dt) and self.dt > 0):
            raise ValueError(f"dt must be a positive number of ms; found {dt!r}.")
        self.sigma = float(sigma)
        if not (math.isfinite(self.sigma) and self.sigma >= 0):
            raise ValueError(f"sigma must be >= 0; found {sigma!r}.")
        self.noise = check_choice("noise", noise, NOISE_FORMS)
        self.output_activation = check_choice("output_activation", output_activation, OUTPUT_ACTIVATIONS)
        self.noise_tau_ms = float(noise_tau_ms)
        if not (math.isfinite(self.noise_tau_ms) and self.noise_tau_ms > 0):
            raise ValueError(f"noise_tau_ms must be a positive number of ms (002's code: 100); found "
                             f"{noise_tau_ms!r}.")
        self.gain = float(gain)
        if not (math.isfinite(self.gain) and self.gain > 0):
            raise ValueError(f"gain must be a positive number; found {gain!r}.")
        self.dale = bool(dale)
        self.inhibitory_tau_half = bool(inhibitory_tau_half)
        if self.inhibitory_tau_half and not self.dale:
            raise ValueError("inhibitory_tau_half needs dale=True (only Dale's law has inhibitory units); set "
                             "dale=True or inhibitory_tau_half=False.")
        self.e_fraction = float(e_fraction)
        if not 0.0 < self.e_fraction < 1.0:
            raise ValueError(f"e_fraction must lie in (0, 1), e.g. 0.8 for an 80/20 E/I split; "
                             f"found {e_fraction!r}.")
        self.noise_generator: torch.Generator | None = None
        #: run the Euler steps through the fused recurrence (hand-written backward, first
        #: derivatives; ``trainers.models._rate_scan``); False: autograd through the loop
        self.fused = True
        self.init = check_choice("init", init, INITS)
        sizes = []
        for name, value in (("input_units", input_units), ("output_units", output_units)):
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
                    or not math.isfinite(value) or value < 0 or (value >= 1 and not float(value).is_integer()):
                raise ValueError(f"{name} must be a number of units (an integer), a fraction of the units in "
                                 f"(0, 1), or 0 for no restriction; found {value!r}.")
            sizes.append(int(value) if value >= 1 or value == 0 else max(1, round(float(value) * n)))
        self._population_options = (float(input_units) if 0 < input_units < 1 else int(input_units),
                                    float(output_units) if 0 < output_units < 1 else int(output_units))
        self.input_units, self.output_units = sizes
        if self.input_units + self.output_units > n:
            raise ValueError(f"input_units + output_units = {self.input_units + self.output_units} exceeds "
                             f"n_units={n}; give smaller --input-units/--output-units (fractions such as 0.4 scale "
                             f"with the network; 0 = no restriction) or more --units.")

        tau = tau_ms
        tau_arr = np.asarray(tau.detach().cpu() if isinstance(tau, torch.Tensor) else tau, dtype=np.float64)
        self._tau_option = float(tau_arr) if tau_arr.ndim == 0 else tau_arr.tolist()
        if tau_arr.ndim == 0:
            tau_init = sample_tau(self.tau_distribution, n, tau=float(tau_arr), dt=self.dt, generator=generator)
        else:
            tau_init = torch.as_tensor(tau_arr, dtype=torch.float32)
            if tau_init.shape != (n,):
                raise ValueError(f"tau_ms has shape {tuple(tau_init.shape)}; expected a number or ({n},), "
                                 f"one value per unit.")
        n_e = min(n - 1, max(1, round(self.e_fraction * n))) if n > 1 else 1
        if self.inhibitory_tau_half:
            tau_init = tau_init.clone()
            tau_init[n_e:] *= 0.5                  # 002's code: inhibitory units have tau / 2
        if not torch.isfinite(tau_init).all():
            raise ValueError("tau_ms must be finite.")
        if float(tau_init.min()) <= self.dt:
            raise ValueError(f"dt={self.dt:g} ms must be smaller than every tau (smallest tau: "
                             f"{float(tau_init.min()):g} ms); use a smaller dt or larger timescales.")
        self.log_tau_excess = nn.Parameter(torch.log(tau_init.double() - self.dt).float(),
                                           requires_grad=bool(train_tau))

        if self.init == "002":                     # the authors' code (func_standardtasks.py)
            self.W_in = nn.Parameter(torch.randn(n, self.input_dim, generator=generator))
            self.b = nn.Parameter(torch.randn(n, generator=generator))
            W = torch.randn(n, n, generator=generator) / n
        else:
            self.W_in = nn.Parameter(uniform_(torch.empty(n, self.input_dim), linear_bound(self.input_dim),
                                              generator))
            self.b = nn.Parameter(torch.zeros(n))
            W = torch.randn(n, n, generator=generator) * (self.gain / math.sqrt(n))
        self.n_excitatory = n_e if self.dale else n
        sign = torch.ones(n)
        if self.dale:
            sign[n_e:] = -1.0
            W = W.abs()
            if n > n_e:
                W[:, n_e:] *= n_e / (n - n_e)
        self.register_buffer("sign", sign, persistent=False)
        self.W_rec = nn.Parameter(W)
        self.heads = MultiHeadReadout(n, n_heads, n_classes, generator=generator)
        if self.init == "002":
            with torch.no_grad():
                self.heads.weight.copy_(torch.randn(self.heads.weight.shape, generator=generator))
                self.heads.bias.zero_()
        # populations (002 Sec. 2.2): input = units [0, n_in), output = [n_in, n_in + n_out), 0 = all
        n_in, n_out = self.input_units, self.output_units
        input_mask = torch.zeros(n)
        input_mask[: n_in if n_in else n] = 1.0
        output_mask = torch.zeros(n)
        output_mask[n_in: n_in + n_out] = 1.0
        if not n_out:
            output_mask[:] = 1.0
        self.register_buffer("input_mask", input_mask, persistent=False)
        self.register_buffer("output_mask", output_mask, persistent=False)
        with torch.no_grad():                      # the masked weights start (and stay) at zero
            self.W_in.mul_(input_mask[:, None])
            self.heads.weight.mul_(output_mask)

    # ------------------------------------------------------------------ protocol (DESIGN.md)
    def config(self) -> dict[str, Any]:
        """Constructor arguments (JSON-serialisable) that rebuild this architecture (the trained
        tau itself is in the state_dict)."""
        return {
            "model": self.name, "n_units": self.n_units, "input_dim": self.input_dim,
            "n_heads": self.heads.n_heads, "n_classes": self.heads.weight.shape[1],
            "dt": self.dt, "tau_distribution": self.tau_distribution, "tau_ms": self._tau_option,
            "train_tau": self.log_tau_excess.requires_grad, "form": self.form,
            "activation": self.activation, "sigma": self.sigma, "noise": self.noise,
            "noise_tau_ms": self.noise_tau_ms, "dale": self.dale, "e_fraction": self.e_fraction,
            "inhibitory_tau_half": self.inhibitory_tau_half, "gain": self.gain,
            "output_activation": self.output_activation, "input_units": self._population_options[0],
            "output_units": self._population_options[1], "init": self.init,
        }

    def unit_axes(self) -> dict[str, tuple[int, ...]]:
        """For each weight (state_dict name), the axes indexed by unit (ablation)."""
        return {"W_rec": (0, 1), "W_in": (0,), "b": (0,), "heads.weight": (2,)}

    def effective_tau(self) -> torch.Tensor:
        """Per-unit timescales in ms, ``dt + exp(log_tau_excess)`` (always > dt)."""
        return self.dt + torch.exp(self.log_tau_excess)

    def alpha(self) -> torch.Tensor:
        """``dt / tau`` per unit, in (0, 1)."""
        return self.dt / self.effective_tau()

    def effective_W_rec(self) -> torch.Tensor:
        """The recurrent weights the dynamics use: ``|W_raw| * sign`` (columns) under Dale's law."""
        if self.dale:
            return self.W_rec.abs() * self.sign
        return self.W_rec

    def effective_W_in(self) -> torch.Tensor:
        """The input weights the dynamics use: rows outside the input population are zero."""
        return self.W_in * self.input_mask[:, None]

    def effective_W_out(self) -> torch.Tensor:
        """The readout weights ``(head, class, unit)`` in use: zero outside the output population."""
        return self.heads.weight * self.output_mask

    def unit_coords(self) -> dict[str, np.ndarray]:
        """Per-unit labels for recordings: ``population`` ("input", "output" or "auxiliary"; with
        ``input_units=0`` no unit is labelled "input", with ``output_units=0`` none "output", so an
        unrestricted network is all "auxiliary"), ``sign`` ("E"/"I"; all "E" without Dale's law)
        and ``tau`` in seconds (:meth:`effective_tau` / 1000)."""
        n, n_in, n_out = self.n_units, self.input_units, self.output_units
        population = np.full(n, "auxiliary", dtype=object)
        population[:n_in] = "input"
        population[n_in: n_in + n_out] = "output"
        sign = np.where(self.sign.detach().cpu().numpy() > 0, "E", "I")
        tau = self.effective_tau().detach().cpu().double().numpy() / 1000.0
        return {"population": population.astype(str), "sign": sign, "tau": tau}

    def rates(self, h: torch.Tensor) -> torch.Tensor:
        """Firing rates of a state: ``h`` itself (rate form) or ``f(h)`` (current form)."""
        return h if self.form == "rate" else _f(h, self.activation)

    def initial_state(self, batch: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Zeros, ``(batch, unit)``, on the model's device and dtype."""
        p = self.W_rec
        return torch.zeros(batch, self.n_units, device=p.device, dtype=p.dtype)

    def _input(self, u: torch.Tensor | None) -> torch.Tensor:
        """External drive ``W_in u + b`` (``b`` alone for ``u=None``); works on ``(..., input_dim)``."""
        return self.b if u is None else torch.nn.functional.linear(u, self.effective_W_in(), self.b)

    def _noise_on(self) -> bool:
        return self.training and self.sigma > 0

    def draw_noise(self, batch: int, steps: int, *, generator: torch.Generator | None = None,
                   device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Standard-normal white draws ``(batch, steps, unit)`` for :meth:`forward`'s ``noise``.

        ``generator`` defaults to ``self.noise_generator`` (PyTorch's global generator when that is
        None); ``device`` and ``dtype`` default to the model's. Scaling (white) or filtering (OU)
        happens inside :meth:`forward`, so the same draws give the same trajectory."""
        p = self.W_rec
        return torch.randn(int(batch), int(steps), self.n_units,
                           generator=self.noise_generator if generator is None else generator,
                           device=p.device if device is None else device, dtype=p.dtype if dtype is None else dtype)

    def _white(self, xi: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """Input noise eta of one step from standard-normal draws: ``sqrt(2 / alpha) sigma xi``."""
        return torch.sqrt(2.0 / alpha) * self.sigma * xi

    def _ou_coefficients(self, coarse: int = 1) -> tuple[float, float]:
        """``(a, sqrt(1 - a^2))`` with ``a = exp(-coarse dt / noise_tau_ms)``: the exact OU update."""
        a = math.exp(-coarse * self.dt / self.noise_tau_ms)
        return a, math.sqrt(1.0 - a * a)

    def input_noise(self, noise: torch.Tensor, *, coarse: int = 1) -> torch.Tensor:
        """The input noise eta ``(batch, time, unit)`` that :meth:`forward` adds (in training mode
        with ``sigma > 0``) for standard-normal draws ``noise`` ``(batch, time, unit)``: white
        ``sqrt(2 / alpha) sigma xi_t`` or OU ``sigma o_t`` (class docstring); ``coarse``: for steps
        of ``coarse * dt`` (CD, 002 Eq. 7)."""
        if self.noise == "white":
            return self._white(noise, coarse * self.alpha())
        a, c = self._ou_coefficients(coarse)
        xs = noise.unbind(1)
        o, out = xs[0], [xs[0]]
        for x in xs[1:]:
            o = a * o + c * x
            out.append(o)
        return self.sigma * torch.stack(out, dim=1)

    def _update(self, h: torch.Tensor, ext: torch.Tensor, alpha: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
        """One Euler step (002 Eq. 5) given the external drive ``ext = W_in u + b + eta``:
        ``h + alpha (f(W h + ext) - h)`` (rate form) or ``h + alpha (W f(h) + ext - h)`` (current
        form), as one fused matrix product (``addmm``) and one ``lerp``."""
        if self.form == "rate":
            return torch.lerp(h, _f(_addmm(ext, h, W), self.activation), alpha)
        return torch.lerp(h, _addmm(ext, _f(h, self.activation), W), alpha)

    def step(self, h: torch.Tensor, u: torch.Tensor | None) -> torch.Tensor:
        """One Euler step ``h -> h_next`` (002 Eq. 5) for ``h`` ``(batch, unit)`` and ``u``
        ``(batch, input_dim)`` (None: no input, bias only). Noise only in training mode with
        ``sigma > 0``, drawn from ``noise_generator``. A single step has no noise history: OU
        noise is drawn from its stationary distribution (``sigma xi``, independent across calls);
        the temporally correlated OU process exists in :meth:`forward`."""
        alpha = self.alpha()
        ext = self._input(u)
        if self._noise_on():
            xi = torch.randn(h.shape, generator=self.noise_generator, device=h.device, dtype=h.dtype)
            ext = ext + (self._white(xi, alpha) if self.noise == "white" else self.sigma * xi)
        return self._update(h, ext, alpha, self.effective_W_rec())

    def jacobian(self, h: torch.Tensor, u: torch.Tensor | None) -> torch.Tensor:
        """Analytic ``d step(h, u) / d h`` (noise-free), ``(batch, unit, unit)``.

        Rate form: ``diag(1 - alpha) + diag(alpha f'(z)) W`` with z = W r + b + W_in u; current
        form: ``diag(1 - alpha) + diag(alpha) W diag(f'(x))``."""
        alpha = self.alpha()
        W = self.effective_W_rec()
        eye = torch.diag(1.0 - alpha)
        if self.form == "rate":
            z = torch.nn.functional.linear(h, W) + self._input(u)
            return eye + (alpha * _df(z, self.activation))[:, :, None] * W
        return eye + (alpha[:, None] * W) * _df(h, self.activation)[:, None, :]

    def forward(self, u: torch.Tensor, h0: torch.Tensor | None = None,
                noise: torch.Tensor | None = None, *, simulation: Simulation | None = None) -> torch.Tensor:
        """States of every step, ``(batch, time, unit)``, for ``u`` ``(batch, time, input_dim)``
        from ``h0`` (default :meth:`initial_state`).

        ``noise``: standard-normal draws ``(batch, time, unit)`` (e.g. :meth:`draw_noise`), scaled
        inside. Used only in training mode with ``sigma > 0`` (evaluation mode is noise-free even
        when ``noise`` is given); when None there, the model draws them itself with
        :meth:`draw_noise`. The same ``u``, ``h0`` and ``noise`` give the same trajectory.

        ``simulation``: a training-time method of 002 Sec. 3 (:class:`trainers.skip.Simulation`;
        None = the base model). CD with factor theta simulates steps of ``theta dt`` from every
        theta-th input (and noise draw) and returns ``ceil(time / theta)`` states, the state after
        coarse step k standing for base step ``k theta``; SCTT and DASC return every step.

        Works under ``torch.func.vmap`` over stacked parameters and buffers (with
        ``torch.func.functional_call``): no in-place operations on parameters and no control flow
        on tensor values. The input projection of all steps is one matmul before the time loop."""
        if u.ndim != 3 or u.shape[-1] != self.input_dim:
            raise ValueError(f"u has shape {tuple(u.shape)}; expected (batch, time, {self.input_dim}).")
        batch, steps = u.shape[0], u.shape[1]
        if h0 is None:
            h0 = self.initial_state(batch).to(dtype=u.dtype, device=u.device)
        check_state(h0, u, self.state_size)
        if noise is not None:
            expected = (batch, steps, self.n_units)
            if tuple(noise.shape) != expected:
                raise ValueError(f"noise has shape {tuple(noise.shape)}; expected {expected} = (batch, time, "
                                 f"unit) standard-normal draws, e.g. model.draw_noise({batch}, {steps}).")
            if noise.dtype != u.dtype or noise.device != u.device:
                raise ValueError(f"noise is {noise.dtype} on {noise.device} but u is {u.dtype} on "
                                 f"{u.device}; convert one with .to(...).")
        coarse = 1 if simulation is None else simulation.coarse
        if coarse > 1:                                        # CD (002 Eq. 7): every theta-th input
            u = u[:, ::coarse]
            noise = None if noise is None else noise[:, ::coarse]
        return self.scan(h0, self.drive(u, noise, coarse=coarse), coarse * self.alpha(), self.effective_W_rec(),
                         simulation=simulation)

    def drive(self, u: torch.Tensor, noise: torch.Tensor | None = None, *, coarse: int = 1) -> torch.Tensor:
        """The external drive of every step, ``(batch, time, unit)``: ``W_in u + b``, plus the
        input noise eta in training mode with ``sigma > 0`` (from ``noise``, or drawn by
        :meth:`draw_noise` when None). One matrix product for all steps. ``coarse``: the noise of
        steps of ``coarse * dt`` (CD)."""
        ext = self._input(u)
        if self._noise_on():
            if noise is None:
                noise = self.draw_noise(u.shape[0], u.shape[1], device=u.device, dtype=u.dtype)
            ext = ext + self.input_noise(noise, coarse=coarse)  # white, or OU filtered before the loop
        return ext

    def scan(self, h0: torch.Tensor, ext: torch.Tensor, alpha: torch.Tensor, W: torch.Tensor, *,
             simulation: Simulation | None = None) -> torch.Tensor:
        """The Euler steps (002 Eq. 5) from ``h0`` ``(..., batch, unit)`` driven by ``ext``
        ``(..., batch, time, unit)``, with ``alpha`` ``(..., unit)`` and the effective recurrent
        weights ``W`` ``(..., unit, unit)``: the states ``(..., batch, time, unit)``.

        The leading dims may be a member axis: the stacked ``drive``, ``alpha`` and ``W`` of
        several networks of this architecture run in one scan with batched products
        (``baddbmm``); a single network's :meth:`forward` is the same scan without it.
        ``simulation``: SCTT or DASC skip connections (002 Eq. 8-9) every ``theta`` steps (CD's
        coarse step is the caller's: ``alpha`` and ``ext`` at ``theta dt``)."""
        skip, beta, aligned = 1, 1.0, False
        if simulation is not None and simulation.method in ("sctt", "dasc") and not simulation.is_base:
            skip, beta, aligned = simulation.theta, simulation.beta, simulation.method == "dasc"
        if (self.fused and h0.ndim == W.ndim and h0.ndim in (2, 3) and torch.is_grad_enabled()
                and any(t.requires_grad for t in (h0, ext, alpha, W))):
            return RateScan.apply(h0, ext, alpha, W, self.form, self.activation, skip, beta, aligned)[0]
        a = alpha if alpha.ndim == 1 else alpha.unsqueeze(-2)
        hs, h = [], h0
        start = first = h0
        for t, ext_t in enumerate(ext.unbind(-2)):           # unbind: one backward node, not T slices
            if beta < 1.0 and t % skip == 0:
                start = h
            h = self._update(h, ext_t, a, W)
            if beta < 1.0:
                if t % skip == 0:
                    first = h
                if t % skip == skip - 1:                      # 002 Eq. 8 (SCTT) / Eq. 9 (DASC)
                    estimate = torch.lerp(start, first, float(skip)) if aligned else start
                    h = torch.lerp(estimate, h, beta)
            hs.append(h)
        return torch.stack(hs, dim=-2)

    def readout(self, h: torch.Tensor, heads: int | slice | None = None) -> torch.Tensor:
        """Outputs ``(..., head, class)`` of the rates of ``h`` (``(..., unit)``): 002 Eq. 2,
        ``g(W_out r + b_out)`` with ``W_out`` the readout weights of the output population and
        ``g = output_activation`` over the class axis (``linear``: the logits themselves)."""
        y = self.heads(self.rates(h) * self.output_mask, heads)      # = effective_W_out() @ rates
        if self.output_activation == "sigmoid":
            return torch.sigmoid(y)
        if self.output_activation == "softmax":
            return torch.softmax(y, dim=-1)
        return y

    def recording_weights(self) -> dict[str, np.ndarray]:
        """Weights in the recording schema's names: W_rec (effective, signed), W_in and W_out
        (effective: zero outside the input and output populations), bias."""
        with torch.no_grad():
            return schema_arrays(W_rec=self.effective_W_rec(), W_in=self.effective_W_in(),
                                 W_out=self.effective_W_out(), bias=self.b)
