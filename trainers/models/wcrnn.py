"""Weakly coupled residual RNN (WCRNN) of the fading-memory paper, and its residual builders.

Dubinin & Effenberger 2024 (``shared/seeds/003_*``), Sec. 3-4:

* linear residual (Eq. 11): ``x <- R x + gamma * tanh(W x + W_in s + b)``;
* type A (Eq. 18): ``x <- tanh(R x) + gamma * tanh(W x + W_in s + b)``;
* type B (Eq. 19): ``x <- tanh(R x + gamma * (W x + W_in s + b))``, the weakly coupled
  initialisation of an Elman RNN.

``R`` is fixed (a buffer); ``gamma`` is a scalar or one value per unit. For small gamma the
Lyapunov exponents are ``log |eig(R)|`` (Eq. 12-13).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from dynatools.utils import check_choice, check_positive_int
from trainers.models._common import (MultiHeadReadout, RecurrentModel, check_sizes, check_state,
                                     linear_bound, refuse_double_backward, uniform_)
from trainers.registry import Option

FORMS = ("linear", "A", "B")


def critical(n: int, r: float = 1.0) -> torch.Tensor:
    """``r * I`` (Sec. 4.1): subcritical for r < 1, critical for r = 1, supercritical above."""
    return r * torch.eye(check_positive_int("n", n))


def rotational(n: int, phi: float | np.ndarray) -> torch.Tensor:
    """Block-diagonal 2x2 rotations by angles ``phi`` (one per block, or one for all), Eq. 16."""
    n = check_positive_int("n", n)
    if n % 2:
        raise ValueError(f"rotational residuals need an even number of units; found n={n}.")
    phi = np.broadcast_to(np.asarray(phi, dtype=float), (n // 2,))
    R = torch.zeros(n, n)
    c, s = torch.tensor(np.cos(phi), dtype=torch.float32), torch.tensor(np.sin(phi), dtype=torch.float32)
    idx = torch.arange(0, n, 2)
    R[idx, idx], R[idx, idx + 1], R[idx + 1, idx], R[idx + 1, idx + 1] = c, -s, s, c
    return R


def heterogeneous(n: int, r0: float, dr: float, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """``diag(r)`` with ``r_i ~ U(r0 - dr/2, r0 + dr/2)`` (Eq. 17)."""
    n = check_positive_int("n", n)
    r = r0 - dr / 2 + dr * torch.rand(n, generator=generator)
    return torch.diag(r)


def orthonormal(n: int, *, seed: int | None = None) -> torch.Tensor:
    """A random orthonormal matrix (``scipy.stats.ortho_group``), as in Sec. 4.2; multiply it with
    a diagonal (:func:`heterogeneous`) for the informed heterogeneous residuals of Sec. 4.3."""
    from scipy.stats import ortho_group

    n = check_positive_int("n", n)
    return torch.tensor(ortho_group.rvs(n, random_state=seed), dtype=torch.float32)


_random_orthonormal = orthonormal   # the model option of the same name shadows it

RESIDUALS = ("critical", "rotational", "heterogeneous")


class WCRNN(RecurrentModel):
    r"""Weakly coupled residual RNN with a multi-head linear readout.

    Parameters
    ----------
    n_units : int
    residual : tensor (n_units, n_units)
        The fixed residual matrix R (e.g. :func:`critical`, :func:`rotational`).
    gamma : float or array, default=0.01
        Weak coupling, scalar or per unit.
    form : {"linear", "A", "B"}, default="linear"
        The update of Eq. 11, 18 or 19.
    input_dim : int, default=1
    n_heads : int, default=1
        Readout heads (the fading-memory paper uses one; curricula of the timescale paper more).
    n_classes : int, default=10
        Outputs per head: classes, or 1 for regression such as the adding problem.
    generator : torch.Generator, optional
        Initialisation of W, W_in, b and the readout (PyTorch's Linear: U(-1/sqrt(fan_in), ...)).
    fused : bool, default=True
        For ``form="linear"``, run :meth:`forward` through a fused recurrence with a hand-written
        backward pass (one matmul per step each way; forward + backward 1.9x faster at 32 units,
        1.4x at 100, batch 128 x 100 steps on the 2-core CPU machine). It gives first
        derivatives only; set ``fused=False`` for double backward (Hessian-vector products) or
        ``torch.func`` transforms. Forms A and B always run step by step.

    Examples
    --------
    >>> import torch
    >>> from trainers.models.wcrnn import WCRNN, critical
    >>> net = WCRNN(4, critical(4, 0.95), gamma=0.01, generator=torch.Generator().manual_seed(0))
    >>> net(torch.zeros(2, 5, 1)).shape
    torch.Size([2, 5, 4])
    >>> net.readout(torch.zeros(2, 4)).shape          # (batch, head, class)
    torch.Size([2, 1, 10])
    """

    name = "wcrnn"
    options = (
        Option("residual", "critical", "R = r I (critical), r x 2x2 rotations by phi (rotational, Eq. 16) "
               "or diag U(r +- dr/2) (heterogeneous, Eq. 17)", str, RESIDUALS),
        Option("r", 1.0, "residual strength r (r0 for heterogeneous)", float),
        Option("phi", 0.22, "rotation angle of the rotational residual (0.22 = 2 pi / 28)", float),
        Option("dr", 0.0, "width of the heterogeneous residual", float, minimum=0.0),
        Option("orthonormal", False, "multiply R by a random orthonormal matrix (Sec. 4.3)", bool),
        Option("gamma", 0.01, "weak coupling gamma", float),
        Option("form", "linear", "linear (Eq. 11), A (Eq. 18) or B (Eq. 19)", str, FORMS),
    )
    #: Fading-memory paper Sec. 4: SGD with momentum 0.9 (its lr is not stated; ours 0.01).
    defaults = {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "nesterov": False, "clip": 0.0,
                "units": 100}

    def __init__(self, n_units: int, residual: Any, *, gamma: float | np.ndarray = 0.01,
                 form: str = "linear", input_dim: int = 1, n_heads: int = 1, n_classes: int = 10,
                 generator: torch.Generator | None = None, fused: bool = True) -> None:
        super().__init__()
        self.fused = bool(fused)
        n, self.input_dim = check_sizes(n_units, input_dim, n_heads, n_classes)
        self.n_units = n
        self.form = check_choice("form", form, FORMS)
        R = torch.as_tensor(np.asarray(residual, dtype=np.float32))
        if R.shape != (n, n):
            raise ValueError(f"residual has shape {tuple(R.shape)}; expected ({n}, {n}).")
        g = torch.as_tensor(np.asarray(gamma, dtype=np.float32))
        if g.ndim not in (0, 1) or (g.ndim == 1 and g.shape != (n,)):
            raise ValueError(f"gamma must be a number or one value per unit ({n},); found shape {tuple(g.shape)}.")
        self.register_buffer("R", R)
        self.register_buffer("gamma", g.expand(n).clone())
        self.W = nn.Parameter(uniform_(torch.empty(n, n), linear_bound(n), generator))
        self.W_in = nn.Parameter(uniform_(torch.empty(n, self.input_dim), linear_bound(self.input_dim), generator))
        self.b = nn.Parameter(uniform_(torch.empty(n), linear_bound(n), generator))
        self.heads = MultiHeadReadout(n, n_heads, n_classes, generator=generator)
        self.builder: dict[str, Any] = {}
        self._register_load_state_dict_pre_hook(_single_readout_to_heads)

    @classmethod
    def from_config(cls, config: dict, *, generator: torch.Generator | None = None) -> "WCRNN":
        """Build from ``config()`` or a resolved ``model_options`` section with the sizes.

        With the residual options (``residual``, ``r``, ``phi``, ``dr``, ``orthonormal``,
        ``gamma``), R is built from them (random parts drawn from ``generator``); without them
        (a checkpoint's architecture) R and gamma are placeholders that the checkpoint's
        weights replace. Checkpoints of trainers 0.1 (``kind``, ``n_outputs``) are read too.
        """
        cfg = {k: v for k, v in config.items() if k != "model"}
        if "kind" in cfg:                                   # trainers 0.1 checkpoints
            cfg["form"] = cfg.pop("kind")
        if "n_outputs" in cfg:
            cfg["n_classes"] = cfg.pop("n_outputs")
        n = check_positive_int("n_units", cfg.pop("n_units"))
        builder = {k: cfg.pop(k) for k in ("residual", "r", "phi", "dr", "orthonormal") if k in cfg}
        gamma = cfg.pop("gamma", 0.01)
        if builder:
            R = _build_residual(n, generator=generator, **builder)
        else:
            R = torch.zeros(n, n)
        model = cls(n, R, gamma=gamma, generator=generator, **cfg)
        if builder:
            model.builder = {**builder, "gamma": float(gamma)}
        return model

    def config(self) -> dict[str, Any]:
        """Constructor arguments (JSON-serialisable) that rebuild this architecture."""
        return {"model": self.name, "n_units": self.n_units, "form": self.form,
                "input_dim": self.input_dim, "n_heads": self.heads.n_heads,
                "n_classes": self.heads.weight.shape[1], **self.builder}

    def unit_axes(self) -> dict[str, tuple[int, ...]]:
        """For each weight or buffer (state_dict name), the axes indexed by unit (what
        :func:`dynatools.robustness.ablate` zeroes)."""
        return {"R": (0, 1), "W": (0, 1), "W_in": (0,), "b": (0,), "heads.weight": (2,)}

    def initial_state(self, batch: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Zeros ``(batch, unit)``."""
        return torch.zeros(batch, self.n_units, device=self.W.device, dtype=self.W.dtype)

    def _drive(self, h: torch.Tensor, u: torch.Tensor | None) -> torch.Tensor:
        d = torch.nn.functional.linear(h, self.W, self.b)
        return d if u is None else d + torch.nn.functional.linear(u, self.W_in)

    def step(self, h: torch.Tensor, u: torch.Tensor | None) -> torch.Tensor:
        """One step (Eq. 11, 18 or 19), batched; ``u=None`` for the autonomous map."""
        d = self._drive(h, u)
        Rh = torch.nn.functional.linear(h, self.R)
        if self.form == "linear":
            return Rh + self.gamma * torch.tanh(d)
        if self.form == "A":
            return torch.tanh(Rh) + self.gamma * torch.tanh(d)
        return torch.tanh(Rh + self.gamma * d)

    def jacobian(self, h: torch.Tensor, u: torch.Tensor | None) -> torch.Tensor:
        """Analytic ``d step / d h``, ``(batch, unit, unit)``."""
        d = self._drive(h, u)
        Rh = torch.nn.functional.linear(h, self.R)
        col = lambda v: v[:, :, None]  # noqa: E731
        if self.form == "linear":
            return self.R + col(self.gamma * (1 - torch.tanh(d) ** 2)) * self.W
        if self.form == "A":
            return col(1 - torch.tanh(Rh) ** 2) * self.R + col(self.gamma * (1 - torch.tanh(d) ** 2)) * self.W
        out = torch.tanh(Rh + self.gamma * d)
        return col(1 - out**2) * (self.R + self.gamma[:, None] * self.W)

    def forward(self, u: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
        """States of every step ``(batch, time, unit)`` for ``u`` ``(batch, time, input_dim)``."""
        if u.ndim != 3 or u.shape[-1] != self.input_dim:
            raise ValueError(f"u has shape {tuple(u.shape)}; expected (batch, time, {self.input_dim}).")
        h = self.initial_state(u.shape[0]) if h0 is None else h0
        if h0 is not None:
            check_state(h0, u, self.n_units)
        if self.fused and self.form == "linear":
            c = torch.nn.functional.linear(u.transpose(0, 1), self.W_in, self.b)   # (time, batch, unit)
            return _LinearRecurrence.apply(c, h, self.W, self.R, self.gamma).transpose(0, 1)
        drive_in = torch.nn.functional.linear(u, self.W_in)          # every step's input at once
        hs = []
        for t in range(u.shape[1]):
            d = torch.nn.functional.linear(h, self.W, self.b) + drive_in[:, t]
            Rh = torch.nn.functional.linear(h, self.R)
            if self.form == "linear":
                h = Rh + self.gamma * torch.tanh(d)
            elif self.form == "A":
                h = torch.tanh(Rh) + self.gamma * torch.tanh(d)
            else:
                h = torch.tanh(Rh + self.gamma * d)
            hs.append(h)
        return torch.stack(hs, dim=1)

    def readout(self, h: torch.Tensor, heads: int | slice | None = None) -> torch.Tensor:
        """Outputs ``(..., head, class)`` of ``h`` (``(..., unit)``); ``heads=k`` keeps the first k."""
        return self.heads(h, heads)

    def recording_weights(self) -> dict[str, np.ndarray]:
        """Weights in the recording schema's names: ``W_in``, ``W_out`` and ``bias`` (the
        coupling W and the residual R together make the recurrence; neither alone is ``W_rec``)."""
        with torch.no_grad():
            return {"W_in": self.W_in.cpu().numpy(), "W_out": self.heads.weight.cpu().numpy(),
                    "bias": self.b.cpu().numpy()}


def _single_readout_to_heads(state_dict, prefix, *args) -> None:
    """Checkpoints of trainers 0.1 stored one readout as ``W_out`` (class, unit) and ``b_out``;
    they load as head 0 of the multi-head readout."""
    if prefix + "W_out" in state_dict:
        state_dict[prefix + "heads.weight"] = state_dict.pop(prefix + "W_out").unsqueeze(0)
        state_dict[prefix + "heads.bias"] = state_dict.pop(prefix + "b_out").unsqueeze(0)


def _build_residual(n: int, *, residual: str = "critical", r: float = 1.0, phi: float = 0.22, dr: float = 0.0,
                    orthonormal: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
    """The residual matrix named by the model options (fading-memory paper Sec. 4, Eq. 16-17)."""
    check_choice("residual", residual, RESIDUALS)
    if residual == "critical":
        R = critical(n, r)
    elif residual == "rotational":
        R = r * rotational(n, phi)
    else:
        R = heterogeneous(n, r, dr, generator=generator)
    if orthonormal:
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        R = _random_orthonormal(n, seed=seed) @ R
    return R


class _LinearRecurrence(torch.autograd.Function):
    """``h_{t+1} = h_t R^T + gamma * tanh(h_t W^T + c_t)`` (Eq. 11) for all t in one autograd node.

    Forward: one ``(batch, n) @ (n, 2n)`` matmul per step against ``[W^T | R^T]``. Backward
    (BPTT): one ``(batch, 2n) @ (2n, n)`` matmul per step, then the gradients of W (and R, gamma
    when they require it) as single matmuls over all steps. ``c`` is ``(time, batch, unit)``.
    """

    @staticmethod
    def forward(ctx, c, h0, W, R, gamma):  # type: ignore[override]
        T, n = c.shape[0], h0.shape[-1]
        M = torch.cat([W.t(), R.t()], dim=1)                  # (n, 2n)
        H = c.new_empty((T + 1,) + tuple(h0.shape))
        A = torch.empty_like(c)
        H[0] = h0
        P = c.new_empty(h0.shape[0], 2 * n)
        for t in range(T):
            torch.mm(H[t], M, out=P)
            torch.tanh(torch.add(P[:, :n], c[t], out=A[t]), out=A[t])
            torch.addcmul(P[:, n:], A[t], gamma, out=H[t + 1])
        ctx.save_for_backward(H, A, M, gamma)
        return H[1:]

    @staticmethod
    def backward(ctx, gH):  # type: ignore[override]
        refuse_double_backward("WCRNN")
        H, A, M, gamma = ctx.saved_tensors
        T, n = A.shape[0], A.shape[-1]
        G = A.new_empty(T, A.shape[1], 2 * n)               # [d pre-activation, d h_{t+1}] per step
        carry = torch.zeros_like(H[0])
        Mt = M.t()                                          # (2n, n) = [W; R]
        for t in range(T - 1, -1, -1):
            gh = G[t, :, n:]
            torch.add(gH[t], carry, out=gh)
            torch.mul(gh, gamma * (1 - A[t] * A[t]), out=G[t, :, :n])
            torch.mm(G[t], Mt, out=carry)
        Hp = H[:-1].reshape(-1, n)
        Gf = G.reshape(-1, 2 * n)
        need = ctx.needs_input_grad
        dW = Gf[:, :n].t() @ Hp if need[2] else None
        dR = Gf[:, n:].t() @ Hp if need[3] else None
        dgamma = (G[:, :, n:] * A).sum((0, 1)) if need[4] else None
        return G[:, :, :n], carry, dW, dR, dgamma


def elman(n_units: int, **kwargs: Any) -> WCRNN:
    """The Elman baseline with an identity residual: ``x <- x + tanh(W x + W_in s + b)``
    (``Elman_res`` of Table 2; train it with gradient clipping)."""
    return WCRNN(n_units, torch.eye(n_units), gamma=1.0, form="linear", **kwargs)
