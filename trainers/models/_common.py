"""Pieces shared by the trainers models: the multi-head readout, activations and init helpers."""

from __future__ import annotations

import math

import torch
from torch import nn

from dynatools.utils import check_positive_int

#: Activations a model may use, with the derivative written in terms of the activation's output
#: (what the fused backward pass of :class:`~trainers.models.LeakyRNN` needs).
ACTIVATIONS = ("leaky_relu", "relu", "tanh")


def uniform_(tensor: torch.Tensor, bound: float, generator: torch.Generator | None) -> torch.Tensor:
    """Fill ``tensor`` with U(-bound, bound) in place, drawing from ``generator``."""
    with torch.no_grad():
        tensor.uniform_(-bound, bound, generator=generator)
    return tensor


def linear_bound(fan_in: int) -> float:
    """PyTorch's default ``nn.Linear`` bound 1/sqrt(fan_in), for weights and biases alike."""
    return 1.0 / math.sqrt(fan_in)


def activate(z: torch.Tensor, activation: str, slope: float) -> torch.Tensor:
    """Apply ``activation`` (out of place, differentiable to any order)."""
    if activation == "leaky_relu":
        return torch.nn.functional.leaky_relu(z, slope)
    if activation == "relu":
        return torch.relu(z)
    return torch.tanh(z)


def activate_(z: torch.Tensor, activation: str, slope: float) -> torch.Tensor:
    """Apply ``activation`` in place (no allocation; used in the fused recurrence)."""
    if activation == "leaky_relu":
        return torch.nn.functional.leaky_relu_(z, slope)
    if activation == "relu":
        return z.relu_()
    return z.tanh_()


def activation_grad_from_output(out: torch.Tensor, activation: str, slope: float) -> torch.Tensor:
    """f'(z) expressed through y = f(z): leaky ReLU and ReLU by the sign of y, tanh as 1 - y^2."""
    if activation == "tanh":
        return 1.0 - out * out
    one = torch.ones((), dtype=out.dtype, device=out.device)
    return torch.where(out > 0, one, one * (slope if activation == "leaky_relu" else 0.0))


class MultiHeadReadout(nn.Module):
    """``n_heads`` linear readouts ``Linear(n_units, n_classes)`` evaluated in one matmul.

    Parameters are stored stacked: ``weight`` of shape ``(head, class, unit)`` and ``bias`` of
    shape ``(head, class)``, so head ``i`` is ``logits_i = weight[i] @ h + bias[i]``, exactly an
    ``nn.Linear(n_units, n_classes)`` per head (timescale paper, Sec. 3.2, Fig. 2b).
    """

    def __init__(self, n_units: int, n_heads: int, n_classes: int = 2, *,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_heads, n_classes, n_units))
        self.bias = nn.Parameter(torch.empty(n_heads, n_classes))
        bound = linear_bound(n_units)
        uniform_(self.weight, bound, generator)
        uniform_(self.bias, bound, generator)

    @property
    def n_heads(self) -> int:
        return self.weight.shape[0]

    def forward(self, h: torch.Tensor, heads: int | slice | None = None) -> torch.Tensor:
        """Logits ``(..., head, class)`` of the heads ``heads`` (all by default; an int k = first k)."""
        w, b = self.weight, self.bias
        if heads is not None:
            if isinstance(heads, int) and not 1 <= heads <= self.n_heads:
                raise ValueError(f"heads={heads}: this readout has {self.n_heads} head(s); ask "
                                 f"for 1..{self.n_heads}.")
            sl = slice(0, heads) if isinstance(heads, int) else heads
            w, b = w[sl], b[sl]
        n_h, n_c, n_u = w.shape
        out = torch.nn.functional.linear(h, w.reshape(n_h * n_c, n_u), b.reshape(n_h * n_c))
        return out.unflatten(-1, (n_h, n_c))


def check_sizes(n_units: int, input_dim: int, n_heads: int, n_classes: int) -> tuple[int, int]:
    """Check a model's sizes (positive integers; one class is a regression output); return
    ``(n_units, input_dim)``."""
    check_positive_int("n_heads", n_heads)
    check_positive_int("n_classes", n_classes)
    return check_positive_int("n_units", n_units), check_positive_int("input_dim", input_dim)


def check_state(h0: torch.Tensor, u: torch.Tensor, state_size: int) -> None:
    """``h0`` must be ``(batch, state_size)`` with the batch, dtype and device of ``u``."""
    expected = (u.shape[0], state_size)
    if tuple(h0.shape) != expected:
        raise ValueError(f"h0 has shape {tuple(h0.shape)}; expected {expected} = (batch of u, "
                         f"state size). Use model.initial_state(batch) for the default.")
    if h0.dtype != u.dtype or h0.device != u.device:
        raise ValueError(f"h0 is {h0.dtype} on {h0.device} but u is {u.dtype} on {u.device}; "
                         f"convert one with .to(...).")


def schema_arrays(**tensors: torch.Tensor) -> dict:
    """Tensors as numpy arrays under the recording schema's names (``recording_weights``)."""
    return {name: t.detach().cpu().numpy() for name, t in tensors.items()}


def count_trainable(module: nn.Module) -> int:
    """Number of trainable scalars (parameters with ``requires_grad``)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


class RecurrentModel(nn.Module):
    """What every trainers model shares: ``state_size`` (``n_units`` unless overridden),
    ``n_trainable``, ``n_heads`` and construction from configuration; subclasses add ``step``,
    ``jacobian``, ``initial_state``, ``forward``, ``readout`` and ``config`` (the protocol of
    :mod:`trainers.protocols`).

    A registered model declares ``name`` (its registry name, also ``config()["model"]``),
    ``options`` (its section of the training configuration, :class:`trainers.registry.Option`)
    and ``defaults`` (training defaults it carries: optimizer, lr, input encoding, ...).
    """

    n_units: int
    name: str = ""
    options: tuple = ()
    defaults: dict = {}

    @classmethod
    def from_config(cls, config: dict, *, generator: torch.Generator | None = None) -> "RecurrentModel":
        """Build from ``config()`` or from a resolved ``model_options`` section plus the sizes
        (``n_units``, ``input_dim``, ``n_heads``, ``n_classes``) the engine adds."""
        config = {k: v for k, v in config.items() if k != "model"}
        return cls(**config, generator=generator)

    @property
    def n_heads(self) -> int:
        """Number of readout heads."""
        return self.heads.n_heads

    @property
    def state_size(self) -> int:
        """Size of the state ``h`` that ``step`` maps."""
        return self.n_units

    @property
    def n_trainable(self) -> int:
        """Number of trainable parameters (scalars)."""
        return count_trainable(self)


def refuse_double_backward(model_name: str) -> None:
    """Called first in a fused recurrence's hand-written backward: with ``create_graph=True`` (a
    second derivative was asked for) raise an error that names the fix."""
    if torch.is_grad_enabled():
        raise RuntimeError(
            f"{model_name} with fused=True supports first derivatives only; set model.fused = False "
            f"for double backward (Hessian-vector products) or torch.func transforms.")
