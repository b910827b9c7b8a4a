"""Re-training without curriculum (Fig. 8c) and readout re-fitting (Sec. 4.1)."""

from __future__ import annotations


import numpy as np
import pytest
import torch

import trainers
from trainers.retrain import refit_readout, retrain, retrain_sweep

from reference_networks import REFERENCE, needs_reference
TINY = dict(batch=8, steps_per_epoch=2, eval_batches=1, device="cpu", progress=False)


@pytest.mark.parametrize("n_heads", [1, 4])      # single-head networks too: their head is not kept
def test_retrain_starts_from_the_network_with_one_fresh_head(n_heads):
    net = trainers.LeakyRNN(10, n_heads=n_heads, h0_scale=0.3, generator=torch.Generator().manual_seed(0))
    run = retrain(net, 6, epochs=1, lr=1e-12, **TINY)
    new = run.model
    assert new.heads.n_heads == 1 and run.config.curriculum == "none" and run.config.curriculum_options["n_max"] == 6
    for name in ("W_rec", "W_in", "b_rec", "b_in", "tau"):
        torch.testing.assert_close(getattr(new, name).detach().cpu(), getattr(net, name).detach(), rtol=0, atol=1e-9)
    assert new.h0_scale == 0.3
    fresh = trainers.train({**run.config.to_dict(), "max_epochs": 1, "lr": 1e-12}, progress=False).model
    assert not torch.equal(new.heads.weight[0].detach(), net.heads.weight[0].detach())
    torch.testing.assert_close(new.heads.weight.detach(), fresh.heads.weight.detach(), rtol=0, atol=1e-9)
    assert run.history[0]["Ns"] == [6]


def test_retrain_keeps_the_task_rescaling_and_encoding():
    net = trainers.LeakyRNN(10, n_heads=2, generator=torch.Generator().manual_seed(0))
    run = retrain(net, 3, epochs=1, task=trainers.DMS(k=2, encoding="pm1"), **TINY)
    assert (run.config.task, run.config.task_options) == ("dms", {"k": 2, "encoding": "pm1"})


def test_init_of_another_shape_is_refused():
    net = trainers.LeakyRNN(10, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="init does not match"):
        trainers.train(dict(units=12, max_epochs=1, n_max=3, batch=4, steps_per_epoch=1, eval_batches=1,
                            device="cpu", seed=0), init=net, progress=False)


@needs_reference
def test_retrain_sweep_on_the_authors_network():
    from trainers.evaluation import continuous_accuracy

    net = trainers.import_reference(REFERENCE / "cumulative_parity_network_1" / "rnn_N2_N11")
    acc_kw = {"steps": 200, "trials": 2}
    res = retrain_sweep(net, [12, 13], base_N=11, base_head=9, epochs=1, accuracy=acc_kw, **TINY)
    base = continuous_accuracy(net, trainers.Parity(), 11, head=9, **acc_kw).mean()
    assert res.attrs["base_accuracy"] == pytest.approx(base)
    np.testing.assert_allclose(res.relative_accuracy, (res.accuracy - 0.5) / (base - 0.5))
    assert list(res.N.values) == [12, 13] and list(res.epochs_trained.values) == [1, 1]
    assert res.accuracy.shape == (2, 2)


def test_refit_readout_is_deterministic_and_leaves_the_network_unchanged():
    net = trainers.LeakyRNN(12, generator=torch.Generator().manual_seed(2))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    a = refit_readout(net, [2, 3], batch=128, seed=3)
    b = refit_readout(net, [2, 3], batch=128, seed=3)
    assert a.identical(b)
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k])
    assert np.all((a.test_accuracy >= 0) & (a.test_accuracy <= 1))


class _StandIn(torch.nn.Module):
    """A stand-in network whose final state holds noise and, with ``hold``, the parity of the last
    3 bits."""

    def __init__(self, hold):
        super().__init__()
        self.hold = hold
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def initial_state(self, batch, generator=None):
        return torch.zeros(batch, 2)

    def forward(self, u, h0=None):
        bits = u[..., 0]
        parity = torch.nn.functional.pad(bits, (2, 0)).unfold(1, 3, 1).sum(-1) % 2
        noise = torch.rand(bits.shape + (2,))
        return noise + torch.stack([parity, 0 * parity], -1) * 10 * self.hold


@pytest.mark.parametrize("hold, expected", [(True, 1.0), (False, 0.5)])
def test_refit_readout_decodes_what_the_state_holds_and_only_that(hold, expected):
    torch.manual_seed(0)
    res = refit_readout(_StandIn(hold), [3], batch=512, seed=1)
    # odd N: the labels are balanced whatever each sequence's probability of a one, so chance is 0.5
    assert float(res.test_accuracy.sel(N=3)) == pytest.approx(expected, abs=0.07)
