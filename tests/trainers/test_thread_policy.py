"""The thread policy (dynatools.threads) where trainers runs torch: small networks step on one
thread whatever torch's default; DYNATOOLS_THREADS overrides; the caller's setting is restored."""

from __future__ import annotations

import argparse

import pytest
import torch

import trainers
from dynatools import threads
from trainers.evaluation import continuous_accuracy


@pytest.fixture
def spy_threads(monkeypatch):
    """Run with torch's default of 2 threads and record the thread count inside the model."""
    for name in (threads.ENV_VAR, "OMP_NUM_THREADS"):
        monkeypatch.setenv(name, "1")
        monkeypatch.delenv(name)
    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    seen = []
    net = trainers.MODELS["leaky"](6, n_heads=2, generator=torch.Generator().manual_seed(0))
    forward = net.forward

    def spying(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return forward(*args, **kwargs)

    monkeypatch.setattr(net, "forward", spying)
    yield net, seen, monkeypatch
    torch.set_num_threads(before)


def _record(net):
    trainers.record(net, "parity", Ns=[2], steps=20, trials=2, burn_in=4, seed=0, progress=False)


def _accuracy(net):
    continuous_accuracy(net, trainers.Parity(), 2, head=0, steps=20, trials=2, burn_in=4, seed=0)


@pytest.mark.parametrize("run", [_record, _accuracy], ids=["record", "continuous_accuracy"])
def test_small_networks_step_on_one_thread_and_the_setting_is_restored(spy_threads, run):
    net, seen, _ = spy_threads
    run(net)
    assert seen and set(seen) == {1}
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize("run", [_record, _accuracy], ids=["record", "continuous_accuracy"])
def test_dynatools_threads_overrides_the_policy(spy_threads, run):
    net, seen, monkeypatch = spy_threads
    monkeypatch.setenv(threads.ENV_VAR, "3")
    run(net)
    assert set(seen) == {3}


def _train(net):
    """Train the spied network (its weights copied into a fresh one would bypass the spy), so the
    engine's thread choice is seen inside the forward pass."""
    from trainers import engine

    cfg = {"units": 6, "batch": 4, "steps_per_epoch": 2, "eval_batches": 1, "max_epochs": 1, "n_max": 3,
           "device": "cpu", "seed": 0}
    original = engine.TrainConfig.make_model
    engine.TrainConfig.make_model = lambda self, task, generator=None: net
    try:
        engine.train(cfg, progress=False)
    finally:
        engine.TrainConfig.make_model = original


def test_training_a_small_network_uses_one_thread(spy_threads):
    net, seen, _ = spy_threads
    _train(net)
    assert seen and set(seen) == {1}
    assert torch.get_num_threads() == 2


def test_threads_option_of_the_commands(tmp_path, monkeypatch):
    """--threads N on every computing subcommand sets DYNATOOLS_THREADS before the command runs."""
    from trainers.cli import build_parser, main

    from threadpoolctl import threadpool_limits

    monkeypatch.setenv(threads.ENV_VAR, "1")
    before = torch.get_num_threads()
    blas = threadpool_limits(limits=None, user_api="blas")       # --threads caps BLAS too: restored below
    try:
        assert main(["evaluate", str(tmp_path), "--threads", "3"]) == 2    # no run there: a one-line error
        assert threads.choose_threads(1.0) == 3 and torch.get_num_threads() == 3
        assert main(["evaluate", str(tmp_path), "--threads", "0"]) == 2
    finally:
        torch.set_num_threads(before)
        blas.restore_original_limits()
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert "--threads" not in sub.choices["list"].format_help()
    def leaves(prefix, parser):          # nested commands (trainers modular perturb): each leaf
        nested = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not nested:
            yield prefix, parser
        for action in nested:
            for name, child in action.choices.items():
                yield from leaves(f"{prefix} {name}", child)

    for name, p in sub.choices.items():
        if name != "list":
            for leaf, q in leaves(name, p):
                if leaf != "modular baseline":      # counts parameters: nothing to thread
                    assert "--threads" in q.format_help(), leaf
