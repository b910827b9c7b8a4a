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

from dynatools._validation import check_choice, check_positive_int
from trainers.models._common import (RecurrentModel, check_state, linear_bound, refuse_double_backward,
                                     uniform_)

KINDS = ("linear", "A", "B")


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


class WCRNN(RecurrentModel):
    r"""Weakly coupled residual RNN with a linear readout on the last state.

    Parameters
    ----------
    n_units : int
    residual : tensor (n_units, n_units)
        The fixed residual matrix R (e.g. :func:`critical`, :func:`rotational`).
    gamma : float or array, default=0.01
        Weak coupling, scalar or per unit.
    kind : {"linear", "A", "B"}, default="linear"
        Eq. 11, 18 or 19.
    input_dim : int, default=1
    n_outputs : int, default=10
        Readout size (classes, or 1 for regression such as the adding problem).
    generator : torch.Generator, optional
        Initialisation of W, W_in, b and the readout (PyTorch's Linear: U(-1/sqrt(fan_in), ...)).
    fused : bool, default=True
        For ``kind="linear"``, run :meth:`forward` through a fused recurrence with a hand-written
        backward pass (one matmul per step each way; forward + backward 1.9x faster at 32 units,
        1.4x at 100, batch 128 x 100 steps on the 2-core CPU machine). It gives first
        derivatives only; set ``fused=False`` for double backward (Hessian-vector products) or
        ``torch.func`` transforms. Types A and B always run step by step.

    Examples
    --------
    >>> import torch
    >>> from trainers.models.wcrnn import WCRNN, critical
    >>> net = WCRNN(4, critical(4, 0.95), gamma=0.01, generator=torch.Generator().manual_seed(0))
    >>> net(torch.zeros(2, 5, 1)).shape
    torch.Size([2, 5, 4])
    """

    kind_name = "wcrnn"

    def __init__(self, n_units: int, residual: Any, *, gamma: float | np.ndarray = 0.01,
                 kind: str = "linear", input_dim: int = 1, n_outputs: int = 10,
                 generator: torch.Generator | None = None, fused: bool = True) -> None:
        super().__init__()
        self.fused = bool(fused)
        n = self.n_units = check_positive_int("n_units", n_units)
        self.input_dim = check_positive_int("input_dim", input_dim)
        self.n_outputs = check_positive_int("n_outputs", n_outputs)
        self.kind = check_choice("kind", kind, KINDS)
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
        self.W_out = nn.Parameter(uniform_(torch.empty(self.n_outputs, n), linear_bound(n), generator))
        self.b_out = nn.Parameter(uniform_(torch.empty(self.n_outputs), linear_bound(n), generator))

    def config(self) -> dict[str, Any]:
        return {"model": self.kind_name, "n_units": self.n_units, "kind": self.kind,
                "input_dim": self.input_dim, "n_outputs": self.n_outputs}

    def unit_axes(self) -> dict[str, tuple[int, ...]]:
        """For each weight or buffer (state_dict name), the axes indexed by unit (what
        :func:`dynatools.robustness.ablate` zeroes)."""
        return {"R": (0, 1), "W": (0, 1), "W_in": (0,), "b": (0,), "W_out": (1,)}

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
        if self.kind == "linear":
            return Rh + self.gamma * torch.tanh(d)
        if self.kind == "A":
            return torch.tanh(Rh) + self.gamma * torch.tanh(d)
        return torch.tanh(Rh + self.gamma * d)

    def jacobian(self, h: torch.Tensor, u: torch.Tensor | None) -> torch.Tensor:
        """Analytic ``d step / d h``, ``(batch, unit, unit)``."""
        d = self._drive(h, u)
        Rh = torch.nn.functional.linear(h, self.R)
        col = lambda v: v[:, :, None]  # noqa: E731
        if self.kind == "linear":
            return self.R + col(self.gamma * (1 - torch.tanh(d) ** 2)) * self.W
        if self.kind == "A":
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
        if self.fused and self.kind == "linear":
            c = torch.nn.functional.linear(u.transpose(0, 1), self.W_in, self.b)   # (time, batch, unit)
            return _LinearRecurrence.apply(c, h, self.W, self.R, self.gamma).transpose(0, 1)
        drive_in = torch.nn.functional.linear(u, self.W_in)          # every step's input at once
        hs = []
        for t in range(u.shape[1]):
            d = torch.nn.functional.linear(h, self.W, self.b) + drive_in[:, t]
            Rh = torch.nn.functional.linear(h, self.R)
            if self.kind == "linear":
                h = Rh + self.gamma * torch.tanh(d)
            elif self.kind == "A":
                h = torch.tanh(Rh) + self.gamma * torch.tanh(d)
            else:
                h = torch.tanh(Rh + self.gamma * d)
            hs.append(h)
        return torch.stack(hs, dim=1)

    def readout(self, h: torch.Tensor) -> torch.Tensor:
        """Outputs ``(..., head=1, n_outputs)`` of an affine readout (the protocol's head dim)."""
        return torch.nn.functional.linear(h, self.W_out, self.b_out).unsqueeze(-2)


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
    return WCRNN(n_units, torch.eye(n_units), gamma=1.0, kind="linear", **kwargs)
