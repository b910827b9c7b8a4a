"""GRU and LSTM baselines with the multi-head readout (timescale paper, App. C).

Written as explicit cells (one matmul for the input drive of every step, one for the recurrent
gates per step) rather than cuDNN modules, so they support double backward (Hessians) and
``torch.func``; the gate equations and parameter layout are PyTorch's ``nn.GRU`` / ``nn.LSTM``
(gate order r, z, n and i, f, g, o), so weights can be copied from those modules.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from trainers.models._common import (
    MultiHeadReadout,
    RecurrentModel,
    check_sizes,
    check_state,
    linear_bound,
    uniform_,
)


class _GatedRNN(RecurrentModel):
    n_gates = 0
    #: Timescale paper App. C: Adam (lr 1e-3) and zero-mean {-1, +1} inputs for GRU and LSTM.
    defaults = {"optimizer": "adam", "lr": 1e-3, "clip": 2.0, "encoding": "pm1"}

    def __init__(self, n_units: int, *, input_dim: int = 1, n_heads: int = 1, n_classes: int = 2,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        n, self.input_dim = check_sizes(n_units, input_dim, n_heads, n_classes)
        self.n_units = n
        g = self.n_gates * n
        bound = linear_bound(n)  # PyTorch's nn.GRU / nn.LSTM init: U(-1/sqrt(hidden), 1/sqrt(hidden))
        self.W_ih = nn.Parameter(uniform_(torch.empty(g, self.input_dim), bound, generator))
        self.W_hh = nn.Parameter(uniform_(torch.empty(g, n), bound, generator))
        self.b_ih = nn.Parameter(uniform_(torch.empty(g), bound, generator))
        self.b_hh = nn.Parameter(uniform_(torch.empty(g), bound, generator))
        self.heads = MultiHeadReadout(n, n_heads, n_classes, generator=generator)

    def config(self) -> dict[str, Any]:
        """Constructor arguments (JSON-serialisable) that rebuild this architecture."""
        return {"model": self.name, "n_units": self.n_units, "input_dim": self.input_dim,
                "n_heads": self.heads.n_heads, "n_classes": self.heads.weight.shape[1]}

    def unit_axes(self) -> dict[str, tuple[Any, ...]]:
        """For each weight, the axes indexed by unit (what :func:`dynatools.robustness.ablate`
        zeroes); ``(axis, blocks)`` where the gates are stacked in ``blocks`` blocks of n_units."""
        g = self.n_gates
        return {"W_ih": ((0, g),), "W_hh": ((0, g), 1), "b_ih": ((0, g),), "b_hh": ((0, g),),
                "heads.weight": (2,)}

    def initial_state(self, batch: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Zeros of shape ``(batch, state_size)`` (PyTorch's default for GRU and LSTM)."""
        p = self.W_hh
        return torch.zeros(batch, self.state_size, device=p.device, dtype=p.dtype)

    def _cell(self, h: torch.Tensor, gi: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def step(self, h: torch.Tensor, u: torch.Tensor | None) -> torch.Tensor:
        """One time step ``h -> h_next``, batched; ``u=None`` runs the cell without input."""
        if u is None:
            gi = self.b_ih.expand(h.shape[0], -1)
        else:
            gi = torch.nn.functional.linear(u, self.W_ih, self.b_ih)
        return self._cell(h, gi)

    def forward(self, u: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
        """States of every step ``(batch, time, state_size)`` for ``u`` ``(batch, time, input_dim)``."""
        if u.ndim != 3 or u.shape[-1] != self.input_dim:
            raise ValueError(f"u has shape {tuple(u.shape)}; expected (batch, time, {self.input_dim}).")
        h = self.initial_state(u.shape[0]) if h0 is None else h0
        check_state(h, u, self.state_size)
        gi_all = torch.nn.functional.linear(u, self.W_ih, self.b_ih)  # all steps in one matmul
        hs = []
        for t in range(u.shape[1]):
            h = self._cell(h, gi_all[:, t])
            hs.append(h)
        return torch.stack(hs, dim=1)

    def hidden(self, h: torch.Tensor) -> torch.Tensor:
        """The hidden state (what the readout sees) of a state of shape ``(..., state_size)``."""
        return h[..., : self.n_units]

    def readout(self, h: torch.Tensor, heads: int | slice | None = None) -> torch.Tensor:
        """Logits ``(..., head, class)``; ``h`` is a full state or the hidden part."""
        return self.heads(self.hidden(h) if h.shape[-1] != self.n_units else h, heads)

    def recording_weights(self) -> dict[str, np.ndarray]:
        """The readout weights ``W_out`` (gated weights have no single W_rec in the schema)."""
        with torch.no_grad():
            return {"W_out": self.heads.weight.cpu().numpy()}


class GRU(_GatedRNN):
    r"""Gated recurrent unit with a multi-head readout (App. C of the timescale paper).

    :math:`r = \sigma(W_{ir}s + b_{ir} + W_{hr}h + b_{hr})`,
    :math:`z = \sigma(W_{iz}s + b_{iz} + W_{hz}h + b_{hz})`,
    :math:`n = \tanh(W_{in}s + b_{in} + r \odot (W_{hn}h + b_{hn}))`,
    :math:`h \leftarrow (1 - z) \odot n + z \odot h` (PyTorch's ``nn.GRU``).

    Parameters
    ----------
    n_units : int
        Hidden size.
    input_dim, n_heads, n_classes : int
        As for :class:`~trainers.models.LeakyRNN`.
    generator : torch.Generator, optional
        Source of the initialisation U(-1/sqrt(n_units), 1/sqrt(n_units)).

    Examples
    --------
    >>> import torch
    >>> from trainers.models import GRU
    >>> net = GRU(6, n_heads=2, generator=torch.Generator().manual_seed(0))
    >>> net(torch.zeros(3, 5, 1)).shape
    torch.Size([3, 5, 6])
    """

    name = "gru"
    n_gates = 3

    def jacobian(self, h: torch.Tensor, u: torch.Tensor | None) -> torch.Tensor:
        """Analytic Jacobian ``d step(h, u) / d h``, ``(batch, unit, unit)``."""
        gi = self.b_ih.expand(h.shape[0], -1) if u is None else torch.nn.functional.linear(u, self.W_ih, self.b_ih)
        gh = torch.nn.functional.linear(h, self.W_hh, self.b_hh)
        i_r, i_z, i_n = gi.chunk(3, -1)
        h_r, h_z, h_n = gh.chunk(3, -1)
        W_r, W_z, W_n = self.W_hh.chunk(3, 0)
        r = torch.sigmoid(i_r + h_r)
        z = torch.sigmoid(i_z + h_z)
        n = torch.tanh(i_n + r * h_n)
        dr = (r * (1 - r))[:, :, None] * W_r
        dz = (z * (1 - z))[:, :, None] * W_z
        dn = (1 - n * n)[:, :, None] * (h_n[:, :, None] * dr + r[:, :, None] * W_n)
        return (1 - z)[:, :, None] * dn + (h - n)[:, :, None] * dz + torch.diag_embed(z)

    def _cell(self, h: torch.Tensor, gi: torch.Tensor) -> torch.Tensor:
        gh = torch.nn.functional.linear(h, self.W_hh, self.b_hh)
        i_r, i_z, i_n = gi.chunk(3, -1)
        h_r, h_z, h_n = gh.chunk(3, -1)
        r = torch.sigmoid(i_r + h_r)
        z = torch.sigmoid(i_z + h_z)
        n = torch.tanh(i_n + r * h_n)
        return n + z * (h - n)


class LSTM(_GatedRNN):
    r"""Long short-term memory with a multi-head readout (App. C of the timescale paper).

    The state is the concatenation ``[h, c]`` of shape ``(batch, 2 * n_units)`` (DESIGN.md);
    the readout sees ``h``. Gates as PyTorch's ``nn.LSTM``: :math:`c \leftarrow f \odot c + i
    \odot g`, :math:`h \leftarrow o \odot \tanh(c)`.

    Examples
    --------
    >>> import torch
    >>> from trainers.models import LSTM
    >>> net = LSTM(6, generator=torch.Generator().manual_seed(0))
    >>> net(torch.zeros(3, 5, 1)).shape       # hidden and cell state
    torch.Size([3, 5, 12])
    """

    name = "lstm"
    n_gates = 4

    @property
    def state_size(self) -> int:
        return 2 * self.n_units

    def jacobian(self, state: torch.Tensor, u: torch.Tensor | None) -> torch.Tensor:
        """Analytic Jacobian of ``[h, c] -> [h', c']``, ``(batch, 2 unit, 2 unit)``."""
        h, c = state.split(self.n_units, dim=-1)
        gi = self.b_ih.expand(h.shape[0], -1) if u is None else torch.nn.functional.linear(u, self.W_ih, self.b_ih)
        gates = gi + torch.nn.functional.linear(h, self.W_hh, self.b_hh)
        i, f, g, o = (x for x in gates.chunk(4, -1))
        i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
        W_i, W_f, W_g, W_o = self.W_hh.chunk(4, 0)
        c_new = f * c + i * g
        tc = torch.tanh(c_new)
        col = lambda v: v[:, :, None]  # noqa: E731
        dc_dh = col(c * f * (1 - f)) * W_f + col(g * i * (1 - i)) * W_i + col(i * (1 - g * g)) * W_g
        dc_dc = torch.diag_embed(f)
        dh_dh = col(tc * o * (1 - o)) * W_o + col(o * (1 - tc * tc)) * dc_dh
        dh_dc = col(o * (1 - tc * tc)) * dc_dc
        top = torch.cat([dh_dh, dh_dc], dim=2)
        bottom = torch.cat([dc_dh, dc_dc], dim=2)
        return torch.cat([top, bottom], dim=1)

    def _cell(self, state: torch.Tensor, gi: torch.Tensor) -> torch.Tensor:
        h, c = state.split(self.n_units, dim=-1)
        gates = gi + torch.nn.functional.linear(h, self.W_hh, self.b_hh)
        i, f, g, o = gates.chunk(4, -1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return torch.cat([h, c], dim=-1)
