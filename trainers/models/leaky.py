"""Leaky RNN with trainable single-neuron timescales (timescale paper, Sec. 2, Eq. 1 and 5)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from dynatools.utils import check_choice
from trainers.registry import Option
from trainers.models._common import (
    ACTIVATIONS,
    MultiHeadReadout,
    RecurrentModel,
    activate,
    activate_,
    activation_grad_from_output,
    check_sizes,
    check_state,
    linear_bound,
    refuse_double_backward,
    schema_arrays,
    uniform_,
)

NONLINEARITY_PLACEMENTS = ("outside", "inside")




def leaky_jacobian(model, h: torch.Tensor, u: torch.Tensor | None) -> torch.Tensor:
    """Analytic ``d step(h, u) / d h`` ``(batch, unit, unit)`` of a leaky network (``LeakyRNN``,
    ``ModularRNN``): inside ``diag(a) + diag(f'(z)) W / tau`` with z = C / tau; outside
    ``diag(f'(z)) (diag(a) + W / tau)`` with z = a h + C / tau, ``a = 1 - 1 / tau``."""
    tau = model.effective_tau()
    a = 1.0 - 1.0 / tau
    W = model.effective_W_rec()
    Ws = W / tau[:, None]
    z_drive = (torch.nn.functional.linear(h, W) + model._drive_input(u)) / tau
    f = model.activation, model.negative_slope
    if model.nonlinearity == "outside":
        fp = activation_grad_from_output(activate(a * h + z_drive, *f), *f)
        return fp[:, :, None] * (torch.diag(a) + Ws)
    fp = activation_grad_from_output(activate(z_drive, *f), *f)
    return torch.diag(a) + fp[:, :, None] * Ws

def leaky_forward(model, u: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
    """States of every step, ``(batch, time, unit)``, of a leaky network (``LeakyRNN``;
    anything with ``effective_tau``, ``_drive_input``, ``effective_W_rec``, ``step`` and the
    activation attributes) for ``u`` ``(batch, time, input_dim)`` from ``h0``: the fused
    recurrence with its hand-written backward, or ``step`` by step with ``model.fused = False``.
    ``ModularRNN`` uses it for ``fused = False`` only; its fused path is the banded kernel
    ``_ModularRecurrence`` in ``trainers/models/modular.py``."""
    if u.ndim != 3 or u.shape[-1] != model.input_dim:
        raise ValueError(f"u has shape {tuple(u.shape)}; expected (batch, time, {model.input_dim}).")
    if h0 is None:
        h0 = model.initial_state(u.shape[0])
    check_state(h0, u, model.state_size)
    if not model.fused:
        hs, h = [], h0
        for t in range(u.shape[1]):
            h = model.step(h, u[:, t])
            hs.append(h)
        return torch.stack(hs, dim=1)
    tau = model.effective_tau()
    x = model._drive_input(u) / tau                       # one matmul for every step's input
    Wt = (model.effective_W_rec() / tau[:, None]).t()     # W/tau, transposed for h @ Wt
    H = _LeakyRecurrence.apply(x.transpose(0, 1), h0, Wt, 1.0 - 1.0 / tau,
                               model.nonlinearity, model.activation, model.negative_slope)
    return H.transpose(0, 1)

class LeakyRNN(RecurrentModel):
    r"""Leaky RNN whose per-neuron timescales ``tau`` are trained with the weights.

    With :math:`\tau_i \ge 1` (the dynamics use ``clamp(tau, min=1)``), :math:`a_i = 1 - 1/\tau_i`
    and the drive :math:`d = W^R r + b^R + W^I s + b^I` (self-connections held at zero), one step is

    * ``nonlinearity="outside"`` (Eq. 1): :math:`r \leftarrow f\big(a \odot r + d / \tau\big)`;
    * ``nonlinearity="inside"`` (Eq. 5, App. A): :math:`r \leftarrow a \odot r + f(d / \tau)`.

    Parameters
    ----------
    n_units : int
        Number of recurrent units (500 in the paper).
    input_dim : int, default=1
        Size of the input ``s`` (one bit per step in the paper's tasks).
    n_heads : int, default=1
        Number of readout heads, each ``Linear(n_units, n_classes)``; evaluated in one matmul.
    n_classes : int, default=2
        Classes per head.
    tau : float, array_like or None, default=None
        Initial timescales: ``None`` draws ``1 + U(0, 1)`` per unit as the authors' code does; a
        number sets every unit to it; an array of length ``n_units`` gives each unit its own.
    train_tau : bool, default=True
        Train ``tau`` (``False`` keeps it fixed, as in the paper's fixed-tau runs, Fig. 4a).
    nonlinearity : {"outside", "inside"}, default="outside"
        Placement of ``f``: around the whole update (Eq. 1) or on the drive only (Eq. 5).
    activation : {"leaky_relu", "relu", "tanh"}, default="leaky_relu"
        The nonlinearity ``f`` (App. A compares all three).
    negative_slope : float, default=0.1
        Slope of the leaky ReLU for negative inputs: 0.1 as the paper states (Sec. 2); the authors'
        public code used PyTorch's default 0.01 (see :func:`trainers.import_reference`).
    h0_scale : float, default=0.1
        The initial state is ``h0_scale * U(0, 1)`` per unit and sequence, as in the authors' code.
    fused : bool, default=True
        Run :meth:`forward` through a fused recurrence with a hand-written backward pass
        (3-4x faster on CPU than step-by-step autograd, same numbers). It supports first
        derivatives only; set ``fused=False`` for double backward (Hessians) or ``torch.func``.
    generator : torch.Generator, optional
        Source of the random initialisation (weights as PyTorch's ``nn.Linear``:
        U(-1/sqrt(fan_in), 1/sqrt(fan_in))). Default: PyTorch's global generator.

    Examples
    --------
    >>> import torch
    >>> from trainers.models import LeakyRNN
    >>> net = LeakyRNN(8, n_heads=3, generator=torch.Generator().manual_seed(0))
    >>> h = net(torch.ones(4, 10, 1))         # (batch, time, unit)
    >>> net.readout(h[:, -1]).shape           # (batch, head, class)
    torch.Size([4, 3, 2])
    >>> net.n_trainable                       # tau, W_in, b_in, W_rec, b_rec, 3 heads
    150
    """

    name = "leaky"
    options = (
        Option("tau", None, "initial (or fixed) tau of every unit (default 1 + U(0,1) per unit)", float,
               nullable=True, positive=True),
        Option("train_tau", True, "train the timescales tau (default); --no-train-tau keeps them fixed", bool),
        Option("nonlinearity", "outside", "outside (Eq. 1) or inside (Eq. 5)", str, NONLINEARITY_PLACEMENTS),
        Option("activation", "leaky_relu", "leaky_relu, relu or tanh", str, ACTIVATIONS),
        Option("negative_slope", 0.1, "leaky-ReLU slope (the paper's 0.1; the authors' code used 0.01)",
               float, minimum=0.0, below=1.0),
    )
    #: Timescale paper Sec. 3.2 and the authors' code: SGD with Nesterov momentum, clipping at 2.
    defaults = {"optimizer": "sgd", "lr": 0.05, "momentum": 0.1, "nesterov": True, "clip": 2.0,
                "encoding": "01"}

    def __init__(
        self,
        n_units: int,
        *,
        input_dim: int = 1,
        n_heads: int = 1,
        n_classes: int = 2,
        tau: float | np.ndarray | torch.Tensor | None = None,
        train_tau: bool = True,
        nonlinearity: str = "outside",
        activation: str = "leaky_relu",
        negative_slope: float = 0.1,
        h0_scale: float = 0.1,
        fused: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        n, self.input_dim = check_sizes(n_units, input_dim, n_heads, n_classes)
        self.n_units = n
        self.nonlinearity = check_choice("nonlinearity", nonlinearity, NONLINEARITY_PLACEMENTS)
        self.activation = check_choice("activation", activation, ACTIVATIONS)
        slope = float(negative_slope)
        if not 0.0 <= slope < 1.0:
            raise ValueError(f"negative_slope must lie in [0, 1); found {negative_slope}.")
        self.negative_slope = slope
        self.h0_scale = float(h0_scale)
        self.fused = bool(fused)

        if tau is None:
            tau_init = 1.0 + torch.rand(n, generator=generator)
        else:
            tau_init = torch.as_tensor(np.asarray(tau, dtype=np.float32)).float()
            if tau_init.ndim == 0:
                tau_init = tau_init.expand(n).clone()
            if tau_init.shape != (n,):
                raise ValueError(
                    f"tau has shape {tuple(tau_init.shape)}; expected a number or ({n},), one "
                    f"value per unit."
                )
            if not torch.isfinite(tau_init).all() or (tau_init <= 0).any():
                raise ValueError("tau must be finite and positive (the dynamics clamp it at >= 1).")
        self.tau = nn.Parameter(tau_init, requires_grad=bool(train_tau))
        self.W_in = nn.Parameter(uniform_(torch.empty(n, self.input_dim), linear_bound(self.input_dim), generator))
        self.b_in = nn.Parameter(uniform_(torch.empty(n), linear_bound(self.input_dim), generator))
        self.W_rec = nn.Parameter(uniform_(torch.empty(n, n), linear_bound(n), generator))
        self.b_rec = nn.Parameter(uniform_(torch.empty(n), linear_bound(n), generator))
        with torch.no_grad():
            self.W_rec.fill_diagonal_(0.0)
        self.register_buffer("mask", 1.0 - torch.eye(n), persistent=False)
        self.heads = MultiHeadReadout(n, n_heads, n_classes, generator=generator)

    # ------------------------------------------------------------------ protocol (DESIGN.md)
    def config(self) -> dict[str, Any]:
        """Constructor arguments (JSON-serialisable) that rebuild this architecture."""
        return {
            "model": self.name, "n_units": self.n_units, "input_dim": self.input_dim,
            "n_heads": self.heads.n_heads, "n_classes": self.heads.weight.shape[1],
            "train_tau": self.tau.requires_grad, "nonlinearity": self.nonlinearity,
            "activation": self.activation, "negative_slope": self.negative_slope,
            "h0_scale": self.h0_scale,
        }

    def unit_axes(self) -> dict[str, tuple[int, ...]]:
        """For each weight (state_dict name), the axes indexed by unit: what
        :func:`dynatools.robustness.ablate` zeroes (Eq. 6 of the timescale paper, plus biases)."""
        return {"W_rec": (0, 1), "W_in": (0,), "b_in": (0,), "b_rec": (0,), "heads.weight": (2,)}

    def effective_tau(self) -> torch.Tensor:
        """``clamp(tau, min=1)``: the timescales the dynamics use."""
        return self.tau.clamp(min=1.0)

    def effective_W_rec(self) -> torch.Tensor:
        """Recurrent weights with the diagonal masked to zero (as the dynamics see them)."""
        return self.W_rec * self.mask

    def initial_state(self, batch: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``h0_scale * U(0, 1)``, shape ``(batch, unit)``, on the model's device and dtype."""
        p = self.W_rec
        return self.h0_scale * torch.rand(batch, self.n_units, generator=generator,
                                          device=p.device, dtype=p.dtype)

    def _drive_input(self, u: torch.Tensor | None) -> torch.Tensor:
        bias = self.b_rec + self.b_in
        if u is None:
            return bias
        return torch.nn.functional.linear(u, self.W_in, bias)

    def step(self, h: torch.Tensor, u: torch.Tensor | None) -> torch.Tensor:
        """One time step ``h -> h_next`` for ``h`` of shape ``(batch, unit)`` and ``u`` of shape
        ``(batch, input_dim)`` (``None``: no input, biases only). Differentiable to any order."""
        tau = self.effective_tau()
        drive = torch.nn.functional.linear(h, self.effective_W_rec()) + self._drive_input(u)
        a = 1.0 - 1.0 / tau
        f = self.activation, self.negative_slope
        if self.nonlinearity == "outside":
            return activate(a * h + drive / tau, *f)
        return a * h + activate(drive / tau, *f)

    def jacobian(self, h: torch.Tensor, u: torch.Tensor | None) -> torch.Tensor:
        """Analytic Jacobian ``d step(h, u) / d h`` of each batch element, ``(batch, unit, unit)``.

        Outside (Eq. 1): ``diag(f'(z)) (diag(a) + W / tau)``, z = a h + d / tau; inside (Eq. 5):
        ``diag(a) + diag(f'(z)) W / tau``, z = d / tau (used by :mod:`dynatools.lyapunov`)."""
        return leaky_jacobian(self, h, u)

    def forward(self, u: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
        """States of every step, ``(batch, time, unit)``, for inputs ``u`` of shape
        ``(batch, time, input_dim)`` starting from ``h0`` (default :meth:`initial_state`)."""
        return leaky_forward(self, u, h0)

    def readout(self, h: torch.Tensor, heads: int | slice | None = None) -> torch.Tensor:
        """Logits ``(..., head, class)`` of ``h`` (``(..., unit)``); ``heads=k`` keeps the first k."""
        return self.heads(h, heads)

    def recording_weights(self) -> dict[str, np.ndarray]:
        """Weights in the recording schema's names: W_rec (diagonal zero), W_in, W_out, bias."""
        with torch.no_grad():
            return schema_arrays(W_rec=self.effective_W_rec(), W_in=self.W_in, W_out=self.heads.weight,
                                 bias=self.b_rec + self.b_in)


class _LeakyRecurrence(torch.autograd.Function):
    """The whole leaky recurrence in one autograd node, with a hand-written BPTT.

    Forward writes every state into one preallocated buffer (no per-step allocation); the
    backward pass runs one matmul per step and computes the weight and tau gradients afterwards
    with single large matmuls/reductions over all steps.
    Inputs: ``x`` (time, batch, unit) = drive / tau, ``h0`` (batch, unit), ``Wt`` = (W / tau)^T,
    ``a`` = 1 - 1/tau.
    """

    @staticmethod
    def forward(ctx, x, h0, Wt, a, placement, activation, slope):  # type: ignore[override]
        T = x.shape[0]
        H = x.new_empty((T + 1,) + tuple(h0.shape))
        H[0] = h0
        # inside: f(z) is kept too, so that f'(z) is exact in the backward pass (recomputing
        # f(z) as h_t - a h_{t-1} loses tiny values to rounding)
        Fz = x.new_empty((T,) + tuple(h0.shape)) if placement == "inside" else H[1:]
        for t in range(T):
            out = H[t + 1]
            if placement == "outside":
                torch.addmm(x[t], H[t], Wt, out=out)
                out.addcmul_(H[t], a)
                activate_(out, activation, slope)
            else:
                torch.addmm(x[t], H[t], Wt, out=Fz[t])
                activate_(Fz[t], activation, slope)
                torch.addcmul(Fz[t], H[t], a, out=out)
        ctx.save_for_backward(H, Fz, Wt, a)
        ctx.placement, ctx.activation, ctx.slope = placement, activation, slope
        return H[1:]

    @staticmethod
    def backward(ctx, gH):  # type: ignore[override]
        refuse_double_backward("LeakyRNN")
        H, Fz, Wt, a = ctx.saved_tensors
        placement, activation, slope = ctx.placement, ctx.activation, ctx.slope
        T = H.shape[0] - 1
        G = torch.empty_like(H[1:])            # gradient with respect to the pre-activation z_t
        carry = torch.zeros_like(H[0])         # gradient flowing into h_{t-1}
        W = Wt.t()
        da = torch.zeros_like(a)
        for t in range(T - 1, -1, -1):
            g = G[t]
            gh = gH[t] + carry                 # total gradient on h_t
            if placement == "outside":
                torch.mul(gh, activation_grad_from_output(H[t + 1], activation, slope), out=g)
                torch.mm(g, W, out=carry)
                carry.addcmul_(g, a)
            else:
                torch.mul(gh, activation_grad_from_output(Fz[t], activation, slope), out=g)
                torch.mm(g, W, out=carry)
                carry.addcmul_(gh, a)
                da += (gh * H[t]).sum(0)
        Hp = H[:-1].reshape(-1, H.shape[-1])
        Gf = G.reshape(-1, G.shape[-1])
        dWt = Hp.t() @ Gf
        if placement == "outside":
            da = (G * H[:-1]).sum((0, 1))
        return G, carry, dWt, da, None, None, None
