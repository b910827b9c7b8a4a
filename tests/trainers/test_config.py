"""Training configuration: defaults filled by ``resolved()`` (optimizer, lr, encoding, heads,
seed), a table of bad configurations and their messages, dict/JSON/TOML round trips."""

from __future__ import annotations

import dataclasses
import json

import pytest

from trainers.config import TrainConfig


# ----------------------------------------------------------------------------------------------
def test_leaky_defaults():
    cfg = TrainConfig(model="leaky", seed=1).resolved()
    assert cfg.optimizer == "sgd"
    assert cfg.lr == 0.05
    assert cfg.encoding == "01"
    assert cfg.n_heads == 100              # multi-head 2..101
    assert (cfg.units, cfg.batch, cfg.steps_per_epoch, cfg.max_epochs) == (500, 256, 600, 1000)
    assert cfg.momentum == 0.1 and cfg.clip == 2.0


@pytest.mark.parametrize("model", ["gru", "lstm"])
def test_gated_defaults(model):
    cfg = TrainConfig(model=model, seed=1).resolved()
    assert cfg.optimizer == "adam"
    assert cfg.lr == pytest.approx(1e-3)
    assert cfg.encoding == "pm1"


def test_explicit_choices_are_kept():
    cfg = TrainConfig(model="gru", optimizer="sgd", encoding="01", seed=1).resolved()
    assert (cfg.optimizer, cfg.lr, cfg.encoding) == ("sgd", 0.05, "01")
    cfg = TrainConfig(model="leaky", optimizer="adam", lr=0.2, seed=1).resolved()
    assert (cfg.optimizer, cfg.lr) == ("adam", 0.2)


@pytest.mark.parametrize("kwargs, heads", [
    (dict(curriculum="multi-head"), 100),
    (dict(curriculum="multi-head", n_start=5, n_max=20), 16),
    (dict(curriculum="sliding"), 10),
    (dict(curriculum="sliding", window=4, shift=2, n_max=30), 4),
    (dict(curriculum="single-head"), 1),
    (dict(curriculum="none"), 1),
    (dict(curriculum="all-heads", n_start=3, n_max=12), 10),
    (dict(curriculum="single-head", n_heads=7), 7),      # more heads than needed is allowed
])
def test_n_heads_from_curriculum(kwargs, heads):
    assert TrainConfig(seed=0, **kwargs).resolved().n_heads == heads


def test_seed_drawn_when_none_and_kept_when_given():
    drawn = {TrainConfig().resolved().seed for _ in range(5)}
    assert all(isinstance(s, int) and 0 <= s < 2**31 for s in drawn)
    assert len(drawn) > 1                    # 5 draws from 2**31 values
    assert TrainConfig(seed=1234).resolved().seed == 1234
    assert TrainConfig(seed=0).resolved().seed == 0


def test_resolved_does_not_mutate():
    cfg = TrainConfig(model="gru")
    out = cfg.resolved()
    assert out is not cfg
    assert (cfg.optimizer, cfg.lr, cfg.encoding, cfg.n_heads, cfg.seed) == (None,) * 5
    assert out.optimizer == "adam"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lr = 0.1
    # resolving twice is stable
    assert out.resolved() == out


# ----------------------------------------------------------------------------------------------
BAD = [
    (dict(curriculum="staircase"), r"curriculum='staircase' is not a valid option"),
    (dict(task="copy"), r"task='copy' is not a valid option"),
    (dict(model="transformer"), r"model='transformer' is not a valid option"),
    (dict(n_start=1), r"n_start must be an integer N >= 2"),
    (dict(n_max=1), r"n_max must be an integer N >= 2"),
    (dict(n_start=10, n_max=5), r"n_max=5 is below n_start=10"),
    (dict(units=0), r"units must be a positive integer"),
    (dict(units=-5), r"units must be a positive integer"),
    (dict(batch=0), r"batch must be a positive integer"),
    (dict(steps_per_epoch=0), r"steps_per_epoch must be a positive integer"),
    (dict(max_epochs=0), r"max_epochs must be a positive integer"),
    (dict(max_epochs=-1), r"max_epochs must be a positive integer"),
    (dict(eval_batches=0), r"eval_batches must be a positive integer"),
    (dict(lr=-0.1), r"lr must be a positive number"),
    (dict(lr=0.0), r"lr must be a positive number"),
    (dict(momentum=1.0), r"momentum must lie in \[0, 1\)"),
    (dict(momentum=-0.1), r"momentum must lie in \[0, 1\)"),
    (dict(n_heads=5), r"n_heads=5 is too few"),
    (dict(curriculum="sliding", n_heads=9), r"n_heads=9 is too few"),
    (dict(device="tpu"), r"device='tpu' is not a valid option"),
    (dict(time_budget=-1.0), r"time_budget must be a positive number"),
    (dict(time_budget=0), r"time_budget must be a positive number"),
    (dict(seed=-1), r"seed must be a non-negative integer"),
    (dict(optimizer="rmsprop"), r"optimizer='rmsprop' is not a valid option"),
    (dict(encoding="ternary"), r"encoding='ternary' is not a valid option"),
    (dict(k=0), r"k must be a positive integer"),
    (dict(curriculum="sliding", window=5, shift=6), r"shift=6 exceeds window=5"),
]


@pytest.mark.parametrize("kwargs, match", BAD,
                         ids=["-".join(f"{k}={v}" for k, v in kw.items()) for kw, _ in BAD])
def test_bad_configuration(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs).resolved()


# ----------------------------------------------------------------------------------------------
def test_from_dict_accepts_dashed_keys():
    cfg = TrainConfig.from_dict({"n-max": 20, "steps-per-epoch": 7, "heads_per_step": 2,
                                 "time-budget": 60.0})
    assert (cfg.n_max, cfg.steps_per_epoch, cfg.heads_per_step, cfg.time_budget) == (20, 7, 2, 60.0)
    assert cfg.n_start == 2                 # untouched default


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match=r"unknown configuration keys \['bogus', 'learning_rate'\]"):
        TrainConfig.from_dict({"bogus": 1, "learning-rate": 0.1, "units": 4})


def test_json_round_trip():
    cfg = TrainConfig(task="dms", model="lstm", curriculum="sliding", units=32, n_max=40,
                      time_budget=12.5, clip=None, tau=2.0, seed=9).resolved()
    text = cfg.to_json()
    data = json.loads(text)
    assert data["task"] == "dms" and data["clip"] is None and data["optimizer"] == "adam"
    back = TrainConfig.from_dict(data)
    assert back == cfg
    assert back.resolved() == cfg


def test_from_toml_top_level(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('task = "dms"\nmodel = "gru"\nn-max = 30\nunits = 64\nlr = 0.01\nseed = 5\n')
    cfg = TrainConfig.from_toml(path)
    assert (cfg.task, cfg.model, cfg.n_max, cfg.units, cfg.lr, cfg.seed) == \
        ("dms", "gru", 30, 64, 0.01, 5)
    assert cfg.resolved().optimizer == "adam"


def test_from_toml_train_table(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('# comment\n[train]\ncurriculum = "single-head"\nbatch = 8\n'
                    'train_tau = false\n')
    cfg = TrainConfig.from_toml(str(path))
    assert (cfg.curriculum, cfg.batch, cfg.train_tau) == ("single-head", 8, False)


def test_from_toml_unknown_key(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text("epochs = 3\n")
    with pytest.raises(ValueError, match=r"unknown configuration keys \['epochs'\]"):
        TrainConfig.from_toml(path)


def test_from_toml_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"does not exist"):
        TrainConfig.from_toml(tmp_path / "nope.toml")


def test_from_toml_invalid(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("units = = 3\n[train\n")
    with pytest.raises(ValueError, match=r"not valid TOML"):
        TrainConfig.from_toml(path)
