"""Adding a model and a task is one class each plus one registry line, with no other edit: a toy
model and a toy task registered here are trained, resumed, recorded and analysed through the
public API and through both command lines (issue: "registries that construct")."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import xarray as xr
from torch import nn

import dynatools as dt
import trainers
from trainers.registry import Option


# ---------------------------------------------------------------- the "one file" of a new model
class ToyRNN(nn.Module):
    """h <- tanh(gain * W h + U u + b), with a multi-head linear readout (a plain Elman RNN)."""

    name = "toy-rnn"
    options = (Option("gain", 1.0, "scale of the recurrent weights at initialisation", float, positive=True),)
    defaults = {"optimizer": "adam", "lr": 0.01, "clip": 1.0}

    def __init__(self, n_units, *, input_dim=1, n_heads=1, n_classes=2, gain=1.0, generator=None):
        super().__init__()
        self.n_units, self.input_dim, self.gain = n_units, input_dim, gain
        g = generator
        self.W = nn.Parameter(gain * torch.randn(n_units, n_units, generator=g) / n_units**0.5)
        self.U = nn.Parameter(torch.randn(n_units, input_dim, generator=g))
        self.b = nn.Parameter(torch.zeros(n_units))
        self.out = nn.Parameter(torch.randn(n_heads, n_classes, n_units, generator=g) / n_units**0.5)

    @classmethod
    def from_config(cls, config, *, generator=None):
        config = {k: v for k, v in config.items() if k != "model"}
        return cls(config.pop("n_units"), generator=generator, **config)

    def config(self):
        return {"model": self.name, "n_units": self.n_units, "input_dim": self.input_dim,
                "n_heads": self.n_heads, "n_classes": self.out.shape[1], "gain": self.gain}

    @property
    def n_heads(self):
        return self.out.shape[0]

    @property
    def state_size(self):
        return self.n_units

    @property
    def n_trainable(self):
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def initial_state(self, batch, *, generator=None):
        return torch.zeros(batch, self.n_units, dtype=self.W.dtype, device=self.W.device)

    def step(self, h, u):
        drive = h @ self.W.T + self.b
        return torch.tanh(drive if u is None else drive + u @ self.U.T)

    def forward(self, u, h0=None):
        h = self.initial_state(u.shape[0]) if h0 is None else h0
        states = []
        for t in range(u.shape[1]):
            h = self.step(h, u[:, t])
            states.append(h)
        return torch.stack(states, 1)

    def readout(self, h, heads=None):
        w = self.out if heads is None else self.out[:heads]
        return torch.einsum("...n,hcn->...hc", h, w)


# ---------------------------------------------------------------- the "one file" of a new task
class _Batch:
    def __init__(self, inputs, targets):
        self.inputs, self.targets = inputs, targets


class SignTask:
    """Is the sum of the inputs positive? Gaussian inputs, one answer at the end of the sequence."""

    name = "toy-sign"
    options = (Option("length", 6, "sequence length", int, minimum=1),)
    defaults = {"model": "toy-rnn", "curriculum": "fixed", "units": 8, "batch": 16, "steps_per_epoch": 4,
                "eval_batches": 2, "max_epochs": 2}
    input_dim, n_classes, metric, uses_N, minimal_performance = 1, 2, "accuracy", False, 75.0

    def __init__(self, length=6):
        self.length = length

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def config(self):
        return {"task": self.name, "length": self.length}

    def sample(self, n, generator, device=None):
        x = torch.randn(n, self.length, 1, generator=generator, device=generator.device)
        return _Batch(x.to(device), (x.sum((1, 2)) > 0).long().to(device))

    def train_batches(self, Ns, *, batch, steps, generator, length_generator, device):
        for _ in range(steps):
            yield self.sample(batch, length_generator, device)

    def loss(self, logits, batch):
        return nn.functional.cross_entropy(logits[:, 0], batch.targets)

    def evaluate(self, model, Ns, *, batch=16, batches=2, generator=None, length_generator=None, device=None):
        gen = torch.Generator().manual_seed(123)                   # a fixed test set
        b = self.sample(batch * batches, gen, next(model.parameters()).device)
        with torch.no_grad():
            pred = model.readout(model(b.inputs)[:, -1], heads=1)[:, 0].argmax(-1)
        return np.array([100.0 * float((pred == b.targets).double().mean())])

    def fixed_batch(self, Ns, size, *, generator, device):
        return self.sample(size, torch.Generator().manual_seed(generator.initial_seed()), device)

    def recording_stream(self, trials, steps, *, p=None, generator=None, device=None):
        return torch.randn(trials, steps, 1, generator=generator, device=generator.device).to(device), None


@pytest.fixture
def registered():
    """The one registry line each (and its removal after the test)."""
    trainers.MODELS.register(ToyRNN)
    trainers.TASKS.register(SignTask)
    yield
    trainers.MODELS.unregister(ToyRNN.name)
    trainers.TASKS.unregister(SignTask.name)


def test_a_toy_model_and_task_through_the_public_api(registered, tmp_path):
    from trainers.protocols import Network, Task

    cfg = {"task": "toy-sign", "gain": 0.5, "device": "cpu", "seed": 0}
    run = trainers.train({**cfg, "max_epochs": 1}, tmp_path / "r", progress=False)
    c = run.config                          # the task's and the model's defaults were applied
    assert (c.model, c.curriculum, c.units, c.batch, c.optimizer, c.lr) == ("toy-rnn", "fixed", 8, 16, "adam", 0.01)
    assert c.model_options == {"gain": 0.5} and c.task_options == {"length": 6}
    assert isinstance(run.model, Network) and isinstance(c.make_task(), Task)
    # resume equals an uninterrupted run
    resumed = trainers.resume(tmp_path / "r", max_epochs=3, progress=False)
    straight = trainers.train({**cfg, "max_epochs": 3}, progress=False)
    assert resumed.losses == straight.losses
    for k, v in straight.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[k], v), k
    # the run directory loads the toy model and task back
    model, task, head = trainers.RunDir(tmp_path / "r").load()
    assert type(model) is ToyRNN and model.gain == 0.5 and type(task) is SignTask and head == 0
    assert trainers.RunDir(tmp_path / "r").metrics().sizes["epoch"] == 3
    # record it and analyse the recording with dynatools
    rec = trainers.record(model, task, steps=300, trials=2, burn_in=10, seed=0)
    dt.validate(rec)
    assert rec.attrs["model"] == "toy-rnn" and rec.attrs["task"] == "toy-sign" and rec.activity.shape == (2, 300, 8)
    res = dt.timescales(rec, fit_lag=10, max_lag=20)
    assert res.tau_net.sizes["unit"] == 8 and res.status.notnull().all()
    # model-based analyses through the protocol: Lyapunov exponents of the autonomous map
    ly = dt.lyapunov_spectrum(model.double().step, torch.zeros(1, 8, dtype=torch.float64), None, steps=50,
                              device="cpu", seed=0)
    assert ly.sizes["exponent"] == 8 and np.isfinite(ly.lyapunov.values).all()


def test_a_toy_model_and_task_through_the_command_lines(registered, tmp_path, capsys):
    from dynatools.cli import main as dynatools_main
    from trainers.cli import main as trainers_main

    run = tmp_path / "r"
    with pytest.raises(SystemExit):
        trainers_main(["train", "--help"])
    assert "--gain" in capsys.readouterr().out                          # a flag generated from the option
    assert trainers_main(["train", "--task", "toy-sign", "--gain", "0.7", "--length", "5", "--max-epochs", "1",
                          "--device", "cpu", "--seed", "1", "--out", str(run), "-q"]) == 0
    assert "1 epoch(s) of toy-sign" in capsys.readouterr().out
    saved = json.loads((run / "config.json").read_text())
    assert saved["model"] == "toy-rnn" and saved["model_options"] == {"gain": 0.7}
    assert trainers_main(["resume", str(run), "--max-epochs", "2", "-q"]) == 0
    assert "2 epoch(s) of toy-sign" in capsys.readouterr().out
    assert trainers_main(["list"]) == 0 and "toy-sign" in capsys.readouterr().out
    rec = tmp_path / "rec.nc"
    assert trainers_main(["record", str(run), "--steps", "200", "--trials", "2", "--burn-in", "5",
                          "--seed", "0", "-o", str(rec), "-q", "--device", "cpu"]) == 0
    assert dynatools_main(["timescales", str(rec), "--fit-lag", "10", "--max-lag", "20",
                           "-o", str(tmp_path / "ts.nc"), "-q"]) == 0
    assert xr.open_dataset(tmp_path / "ts.nc").tau_net.sizes["unit"] == 8
    assert trainers_main(["lyapunov", str(run), "--steps", "40", "--warmup", "5", "--trajectories", "2",
                          "-o", str(tmp_path / "ly.nc"), "-q"]) == 0
    assert xr.open_dataset(tmp_path / "ly.nc").sizes["exponent"] == 8
    assert trainers_main(["hessian", str(run), "--k", "2", "--batch", "8", "-o", str(tmp_path / "h.nc"), "-q"]) == 0
    assert xr.open_dataset(tmp_path / "h.nc").sizes["eigenvalue"] == 2
