"""Shared fixtures of the trainers tests."""

from __future__ import annotations

import pytest
import torch

import trainers
from trainers.checkpoint import save_checkpoint


def _make_run(root, Ns=(2, 3, 4), units=10, constant_readout=False, model="leaky"):
    """A run directory with one solved checkpoint per N (random networks; the analysis does not
    care whether they were trained). ``constant_readout``: every head always answers 0, so the
    network is exactly at chance level on balanced labels."""
    cfg = trainers.TrainConfig.from_dict({"model": model, "units": units, "n_max": max(Ns), "seed": 0,
                                          "device": "cpu"}).resolved()
    (root / "checkpoints").mkdir(parents=True)
    for i, N in enumerate(Ns):
        net = trainers.MODELS[model](units, n_heads=cfg.n_heads, generator=torch.Generator().manual_seed(i))
        with torch.no_grad():
            if model == "leaky":
                net.tau.copy_(torch.linspace(1.0, 2.0 + i, units))
            if constant_readout:
                net.heads.weight.zero_()
                net.heads.bias.copy_(torch.tensor([1.0, 0.0]))
        active = list(range(2, N + 1))
        save_checkpoint(root / "checkpoints" / f"N{N:03d}.pt", net,
                        {"kind": "solved", "config": cfg.to_dict(), "epoch": i + 1, "Ns": active,
                         "accuracy": {str(n): 90.0 + n for n in active}})   # as trainers.train saves it
    return root



@pytest.fixture
def make_run():
    """``make_run(root, Ns=(2, 3, 4), units=10, constant_readout=False)``: a fake run directory."""
    return _make_run
