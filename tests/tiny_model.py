"""A tiny protocol model shared by the convention and layering tests (not a test module)."""

from __future__ import annotations

import torch


class Tiny(torch.nn.Module):
    """A 3-unit linear RNN with the model protocol of DESIGN.md, written without trainers (used by
    the convention and layering tests; its source is also run where trainers cannot be imported)."""

    n_units = 3

    def __init__(self):
        super().__init__()
        self.W_rec = torch.nn.Parameter(torch.tensor([[0.5, 0.2, 0.0], [-0.3, 0.4, 0.1], [0.2, 0.0, 0.6]],
                                                     dtype=torch.float64))
        self.tau = torch.nn.Parameter(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))

    def unit_axes(self):
        return {"W_rec": (0, 1), "tau": (0,)}

    def effective_tau(self):
        return self.tau.clamp(min=1.0)

    def initial_state(self, batch, generator=None):
        return torch.ones(batch, 3, dtype=torch.float64)

    def step(self, h, u):
        return h @ self.W_rec.T + (0.0 if u is None else u)

    def forward(self, u, h0=None):
        h = self.initial_state(u.shape[0]) if h0 is None else h0
        out = []
        for t in range(u.shape[1]):
            h = self.step(h, u[:, t])
            out.append(h)
        return torch.stack(out, 1)

    def readout(self, h, heads=None):
        return h.sum(-1, keepdim=True)
