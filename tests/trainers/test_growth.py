"""The growth curriculum of 004 ("Modular networks", Fig. 1, 6): one module per solved N, exact
duplication of the last module, earlier modules frozen, the engine's optimizer rebuilt after
growth, checkpoints and exact resume of a grown network, and the refusals. ``freeze="decay"``:
the soft freezing of the authors' growth script (per-module learning rates decayed at each
growth), against a hand-written SGD update."""

from __future__ import annotations

import pytest
import torch

import trainers
from trainers.checkpoint import build_model
from trainers.cli import main
from trainers.curricula import AUTHORS_FREEZE_DECAY, CURRICULA, Growth
from trainers.engine import make_optimizer
from trainers.models import ModularRNN


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _net(seed: int = 0) -> ModularRNN:
    return ModularRNN(4, n_modules=1, generator=_gen(seed))


def _module(net: ModularRNN, m: int) -> dict[str, torch.Tensor]:
    out = {"W_rec": net.W_rec[m], "W_in": net.W_in[m], "bias": net.bias[m], "tau": net.tau[m],
           "head_w": net.heads.weight[m], "head_b": net.heads.bias[m]}
    if m >= 1:
        out["W_ff"] = net.W_ff[m - 1]
    return {k: v.detach().clone() for k, v in out.items()}


def _cfg(**kw):
    cfg = {"task": "parity", "model": "modular", "curriculum": "growth", "module_size": 4, "units": 4,
           "batch": 16, "steps_per_epoch": 10, "eval_batches": 1, "max_epochs": 4, "n_max": 5,
           "device": "cpu", "seed": 3}
    return {**cfg, **kw}


@pytest.fixture
def solve_first_two(monkeypatch):
    """N = 2 and N = 3 count as solved at once (after epochs 1 and 2); N = 4 never: the run
    grows twice, then trains three modules."""
    monkeypatch.setattr(Growth, "solved", lambda self, acc: len(acc) < 3)


def test_registered_with_its_options():
    assert CURRICULA["growth"] is Growth
    cur = trainers.TrainConfig.from_dict(_cfg(duplicate_recurrent=False)).resolved()
    assert cur.curriculum_options == {"n_start": 2, "n_max": 5,
                                      "duplicate_recurrent": False, "duplicate_feedforward": True,
                                      "freeze": "earlier", "freeze_decay": 0.95 ** 25}
    assert cur.n_heads == 1 and cur.model_options["n_modules"] == 1
    g = cur.make_curriculum()
    assert g.initial() == [2] and g.next([2]) == [2, 3] and g.next([2, 3, 4, 5]) == [2, 3, 4, 5]


def test_grow_duplicates_the_last_module_bitwise_and_freezes_earlier_ones():
    net, g = _net(), Growth()
    net.W_rec[0].data.normal_(generator=_gen(9))           # "trained" weights, diagonal included
    net.W_rec[0].data.fill_diagonal_(0.0)
    g.grow(net, _gen(1))
    assert net.n_modules == 2 and net.n_heads == 2 and net.frozen_modules == 1
    assert torch.equal(net.W_rec[1], net.W_rec[0])
    g.grow(net, _gen(2))
    assert net.n_modules == 3 and net.n_heads == 3 and net.frozen_modules == 2
    assert torch.equal(net.W_rec[2], net.W_rec[1]) and torch.equal(net.W_ff[1], net.W_ff[0])
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    assert trainable == {"tau.2", "W_in.2", "bias.2", "W_rec.2", "W_ff.1", "heads.weight.2", "heads.bias.2"}
    # the optimizer the engine rebuilds holds exactly the newest module's parameters
    cfg = trainers.TrainConfig.from_dict(_cfg()).resolved()
    opt = make_optimizer(cfg, net)
    assert sum(p.numel() for g_ in opt.param_groups for p in g_["params"]) == net.n_trainable


def test_fresh_weights_when_not_duplicating_and_deterministic_per_generator():
    grown = []
    for _ in range(2):
        net, g = _net(), Growth(duplicate_recurrent=False, duplicate_feedforward=False)
        g.grow(net, _gen(1))
        g.grow(net, _gen(2))
        grown.append(net)
    a, b = grown
    assert not torch.equal(a.W_rec[1], a.W_rec[0]) and not torch.equal(a.W_rec[2], a.W_rec[1])
    assert not torch.equal(a.W_ff[1], a.W_ff[0])
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_freezing_variants_of_fig_6a_and_their_reload():
    net, g = _net(), Growth(freeze="recurrent-after-2")
    g.grow(net, _gen(1))
    g.grow(net, _gen(2))
    assert net.frozen_recurrent and not any(w.requires_grad for w in net.W_rec)
    assert torch.equal(net.W_rec[2], net.W_rec[0])
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    assert trainable == {"tau.2", "W_in.2", "bias.2", "W_ff.1", "heads.weight.2", "heads.bias.2"}
    rebuilt = build_model(net.config())
    assert [p.requires_grad for p in rebuilt.parameters()] == [p.requires_grad for p in net.parameters()]

    net, g = _net(), Growth(freeze="feedforward-after-3")
    g.grow(net, _gen(1))                          # N = 3: W^FF between modules 0 and 1 trains
    assert net.W_ff[0].requires_grad and not net.frozen_feedforward
    g.grow(net, _gen(2))                          # N = 4: that W^FF is duplicated and frozen
    assert net.frozen_feedforward and not any(w.requires_grad for w in net.W_ff)
    assert torch.equal(net.W_ff[1], net.W_ff[0]) and net.W_rec[2].requires_grad
    rebuilt = build_model(net.config())
    assert [p.requires_grad for p in rebuilt.parameters()] == [p.requires_grad for p in net.parameters()]
    net.freeze_weights(feedforward=False)
    assert net.W_ff[1].requires_grad and not net.W_ff[0].requires_grad


def test_engine_grows_frozen_modules_stay_bitwise_and_the_newest_trains(solve_first_two, monkeypatch):
    snapshots = []
    grow = Growth.grow

    def recording_grow(self, model, generator=None):
        parent = _module(model, model.n_modules - 1)
        grow(self, model, generator)
        snapshots.append((parent, [_module(model, m) for m in range(model.n_modules)]))

    monkeypatch.setattr(Growth, "grow", recording_grow)
    run = trainers.train(_cfg(), progress=False)
    assert [h["Ns"] for h in run.history] == [[2], [2, 3], [2, 3, 4], [2, 3, 4]]
    assert run.model.n_modules == 3 and run.model.n_heads == 3 and run.model.frozen_modules == 2
    assert len(snapshots) == 2
    for parent, after in snapshots:                  # duplicated at the moment of growth
        assert torch.equal(after[-1]["W_rec"], parent["W_rec"])
    assert torch.equal(snapshots[1][1][2]["W_ff"], snapshots[1][0]["W_ff"])
    final = [_module(run.model, m) for m in range(3)]
    at_last_growth = snapshots[1][1]
    for m in (0, 1):                                 # frozen over epochs 3 and 4
        for k, v in at_last_growth[m].items():
            assert torch.equal(final[m][k], v), (m, k)
    for k, v in at_last_growth[2].items():           # the newest module trains
        assert not torch.equal(final[2][k], v), k
    assert all(torch.isfinite(torch.tensor(run.losses)))


@pytest.mark.parametrize("stop", [1, 2, 3])
def test_resume_after_growth_equals_an_uninterrupted_run(solve_first_two, tmp_path, stop):
    """Stopped right after the first / second growth (fresh optimizer) or one epoch later (its
    momentum buffers in the checkpoint)."""
    reference = trainers.train(_cfg(), tmp_path / "ref", progress=False)
    part = trainers.train(_cfg(max_epochs=stop), tmp_path / "run", progress=False)
    assert part.model.n_modules == min(stop, 2) + 1  # grown at the end of epochs 1 and 2
    resumed = trainers.resume(tmp_path / "run", max_epochs=4, progress=False)
    assert resumed.losses == reference.losses
    assert [h["accuracy"] for h in resumed.history] == [h["accuracy"] for h in reference.history]
    for (k, v), w in zip(reference.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(v, w), k
    model, task, head = trainers.RunDir(tmp_path / "run").load()
    assert isinstance(model, ModularRNN) and model.n_modules == 3 and head == 2
    assert model.config() == reference.model.config()
    early, _, _ = trainers.RunDir(tmp_path / "run").load(2)   # saved when N = 2 was solved
    assert early.n_modules == 1


@pytest.mark.parametrize("kw, match", [
    ({"model": "leaky", "units": 4}, "use --model modular"),
    ({"n_modules": 2, "units": 8}, "starts from one trainable module"),
    ({"freeze": "recurrent-after-2", "duplicate_recurrent": False}, "leave duplicate_recurrent True"),
    ({"freeze": "feedforward-after-3", "duplicate_feedforward": False}, "leave duplicate_feedforward True"),
    ({"freeze": "everything"}, "everything"),
    ({"freeze": "decay", "freeze_decay": 0.0}, "freeze_decay must be a positive number"),
    ({"freeze": "decay", "freeze_decay": 1.5}, r"must lie in \(0, 1\]"),
    ({"freeze_decay": 0.5}, "applies only to freeze='decay'"),
    ({"freeze": "recurrent-after-2", "freeze_decay": 0.5}, "add --freeze decay or drop --freeze-decay"),
])
def test_refusals(kw, match):
    cfg = _cfg(**kw)
    if kw.get("model") == "leaky":
        del cfg["module_size"]
    with pytest.raises(ValueError, match=match):
        trainers.TrainConfig.from_dict(cfg).resolved()


def test_grow_refuses_another_model():
    with pytest.raises(TypeError, match="ModularRNN"):
        Growth().grow(trainers.LeakyRNN(4), _gen())


# ---------------------------------------------------------------- soft freezing (freeze="decay")
def _grown(decay: float = 0.5, times: int = 2, seed: int = 0) -> tuple[ModularRNN, Growth]:
    net, g = _net(seed), Growth(freeze="decay", freeze_decay=decay)
    for k in range(times):
        g.grow(net, _gen(k + 1))
    return net, g


def test_decay_freezes_nothing_and_rates_follow_the_formula():
    assert AUTHORS_FREEZE_DECAY == pytest.approx(0.2773896, abs=1e-7)   # 0.95**25
    assert Growth(freeze="decay").freeze_decay == AUTHORS_FREEZE_DECAY
    net, g = _grown(0.5, times=3)
    assert net.n_modules == 4 and net.frozen_modules == 0
    assert all(p.requires_grad for p in net.parameters())
    assert torch.equal(net.W_rec[3], net.W_rec[2])                   # duplication as with hard freezing
    cfg = trainers.TrainConfig.from_dict(_cfg(freeze="decay", freeze_decay=0.5, lr=0.2)).resolved()
    opt = make_optimizer(cfg, net)
    assert [grp["lr"] for grp in opt.param_groups] == [0.2 * 0.125, 0.2 * 0.25, 0.2 * 0.5, 0.2]
    for m, grp in enumerate(opt.param_groups):                       # group m is module m and head m
        want = [net.tau[m], net.W_in[m], net.bias[m], net.W_rec[m]] + ([net.W_ff[m - 1]] if m else []) \
            + [net.heads.weight[m], net.heads.bias[m]]
        assert [id(p) for p in grp["params"]] == [id(p) for p in want]
        assert grp["base_lr"] == grp["lr"]
    assert sum(p.numel() for grp in opt.param_groups for p in grp["params"]) == net.n_trainable


def test_hard_freezing_keeps_the_single_default_group():
    net, g = _net(), Growth()
    g.grow(net, _gen(1))
    assert g.param_groups(net, 0.1) is None
    opt = make_optimizer(trainers.TrainConfig.from_dict(_cfg()).resolved(), net)
    assert len(opt.param_groups) == 1 and "base_lr" not in opt.param_groups[0]
    assert [id(p) for p in opt.param_groups[0]["params"]] == [id(p) for p in net.parameters() if p.requires_grad]


def _loss(net: ModularRNN, seed: int) -> torch.Tensor:
    x = torch.randn(5, 7, 1, generator=_gen(seed))
    H = net(x, net.initial_state(5, generator=_gen(seed + 100)))
    return net.readout(H[:, -1], heads=net.n_modules).square().sum()


def test_decay_step_equals_hand_written_per_module_sgd():
    """Two steps of the engine's optimizer (SGD, momentum 0.1, Nesterov) against the update
    written out: buf = mu buf + g (buf = g at first), p -= lr_m (g + mu buf), lr_m = lr d**(n-1-m)."""
    lr, mu, d = 0.1, 0.1, 0.3
    net, _ = _grown(d, times=2)
    cfg = trainers.TrainConfig.from_dict(_cfg(freeze="decay", freeze_decay=d)).resolved()
    assert (cfg.lr, cfg.momentum, cfg.nesterov, cfg.optimizer) == (lr, mu, True, "sgd")
    opt = make_optimizer(cfg, net)
    module_of = {}
    for m in range(3):
        for p in [net.tau[m], net.W_in[m], net.bias[m], net.W_rec[m], net.heads.weight[m], net.heads.bias[m]] \
                + ([net.W_ff[m - 1]] if m else []):
            module_of[id(p)] = m
    expected = {id(p): p.detach().clone() for p in net.parameters()}
    buf: dict[int, torch.Tensor] = {}
    for step in range(2):
        opt.zero_grad()
        _loss(net, step).backward()
        for p in net.parameters():
            g_ = p.grad.detach().clone()
            buf[id(p)] = g_ if step == 0 else mu * buf[id(p)] + g_
            expected[id(p)] = expected[id(p)] - lr * d ** (2 - module_of[id(p)]) * (g_ + mu * buf[id(p)])
        opt.step()
        for p in net.parameters():
            torch.testing.assert_close(p.detach(), expected[id(p)], rtol=1e-6, atol=1e-7)
    moved = [float((p.detach() - q.detach()).abs().max()) for p, q in zip(net.parameters(), _grown(d, times=2)[0].parameters())]
    assert min(moved) > 0                                             # every module trained


def test_momentum_of_earlier_modules_survives_the_rebuild_after_growth():
    net, g = _grown(0.5, times=1)
    cfg = trainers.TrainConfig.from_dict(_cfg(freeze="decay", freeze_decay=0.5)).resolved()
    old = make_optimizer(cfg, net)
    _loss(net, 0).backward()
    old.step()
    g.grow(net, _gen(7))
    new = make_optimizer(cfg, net, previous=old)
    assert [grp["lr"] for grp in new.param_groups] == [0.025, 0.05, 0.1]
    for p in list(net.W_rec)[:2] + [net.W_ff[0], net.heads.weight[0]]:
        assert new.state[p]["momentum_buffer"] is old.state[p]["momentum_buffer"]
    assert net.W_rec[2] not in new.state and net.W_ff[1] not in new.state


def test_engine_decay_trains_every_module(solve_first_two, monkeypatch):
    snapshots = []
    grow = Growth.grow

    def recording_grow(self, model, generator=None):
        grow(self, model, generator)
        snapshots.append([_module(model, m) for m in range(model.n_modules)])

    monkeypatch.setattr(Growth, "grow", recording_grow)
    run = trainers.train(_cfg(freeze="decay"), progress=False)
    assert [h["Ns"] for h in run.history] == [[2], [2, 3], [2, 3, 4], [2, 3, 4]]
    assert run.model.n_modules == 3 and run.model.frozen_modules == 0 and run.model.config()["frozen_modules"] == 0
    final = [_module(run.model, m) for m in range(3)]
    for m in range(3):                                # nothing is frozen: every module moved after the last growth
        for k, v in snapshots[1][m].items():
            assert not torch.equal(final[m][k], v), (m, k)


@pytest.mark.parametrize("stop", [1, 2, 3])
def test_decay_resume_after_growth_equals_an_uninterrupted_run(solve_first_two, tmp_path, stop):
    """Soft freezing: the per-module rates and the carried-over momentum are rebuilt on resume."""
    kw = {"freeze": "decay", "freeze_decay": 0.4}
    reference = trainers.train(_cfg(**kw), tmp_path / "ref", progress=False)
    part = trainers.train(_cfg(max_epochs=stop, **kw), tmp_path / "run", progress=False)
    assert part.model.n_modules == min(stop, 2) + 1
    resumed = trainers.resume(tmp_path / "run", max_epochs=4, progress=False)
    assert resumed.losses == reference.losses
    for (k, v), w in zip(reference.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(v, w), k
    saved = trainers.RunDir(tmp_path / "run").checkpoint().payload["optimizer"]["param_groups"]
    assert [grp["lr"] for grp in saved] == pytest.approx([0.1 * 0.16, 0.1 * 0.4, 0.1])


def test_decay_rates_under_lr_milestones(solve_first_two, tmp_path):
    trainers.train(_cfg(freeze="decay", freeze_decay=0.5, lr_milestones=[5]), tmp_path / "r", progress=False)
    saved = trainers.RunDir(tmp_path / "r").checkpoint().payload["optimizer"]["param_groups"]
    assert [grp["lr"] for grp in saved] == pytest.approx([0.1 * 0.25 * 0.3, 0.1 * 0.5 * 0.3, 0.1 * 0.3])


def test_cli_freeze_decay(tmp_path):
    out = tmp_path / "r"
    assert main(["train", "--task", "parity", "--model", "modular", "--curriculum", "growth", "--module-size", "4",
                 "--units", "4", "--n-max", "3", "--batch", "8", "--steps-per-epoch", "2", "--eval-batches", "1",
                 "--max-epochs", "1", "--device", "cpu", "--seed", "0", "--freeze", "decay", "--freeze-decay",
                 "0.5", "-q", "--out", str(out)]) == 0
    cfg = trainers.RunDir(out).config
    assert cfg.curriculum_options["freeze"] == "decay" and cfg.curriculum_options["freeze_decay"] == 0.5
