"""Training configuration: defaults filled by ``resolved()`` from the model, task and curriculum
(optimizer, lr, encoding, heads, seed), options routed to their sections, a table of bad
configurations and their messages, dict/JSON/TOML round trips, configurations of trainers 0.1."""

from __future__ import annotations

import dataclasses
import json

import pytest

from trainers.config import TrainConfig

C = TrainConfig.from_dict


# ----------------------------------------------------------------------------------------------
def test_leaky_defaults():
    cfg = C({"model": "leaky", "seed": 1}).resolved()
    assert cfg.optimizer == "sgd" and cfg.nesterov
    assert cfg.lr == 0.05
    assert cfg.task_options == {"k": 1, "encoding": "01"}
    assert cfg.n_heads == 100              # multi-head 2..101
    assert (cfg.units, cfg.batch, cfg.steps_per_epoch, cfg.max_epochs) == (500, 256, 600, 1000)
    assert cfg.momentum == 0.1 and cfg.clip == 2.0
    assert cfg.model_options == {"tau": None, "train_tau": True, "nonlinearity": "outside",
                                 "activation": "leaky_relu", "negative_slope": 0.1}
    assert cfg.curriculum_options == {"n_start": 2, "n_max": 101, "heads_per_step": 1}


@pytest.mark.parametrize("model", ["gru", "lstm"])
def test_gated_defaults(model):
    cfg = C({"model": model, "seed": 1}).resolved()
    assert cfg.optimizer == "adam"
    assert cfg.lr == pytest.approx(1e-3)
    assert cfg.task_options["encoding"] == "pm1"
    assert cfg.model_options == {}


@pytest.mark.parametrize("task, model, metric_defaults", [
    ("adding", "wcrnn", {"units": 100, "batch": 128, "max_epochs": 10, "steps_per_epoch": 100}),
    ("digits", "wcrnn", {"units": 100, "batch": 128, "max_epochs": 10}),
])
def test_sequence_tasks_take_the_fading_memory_papers_defaults(task, model, metric_defaults):
    cfg = C({"task": task, "seed": 0}).resolved()
    assert (cfg.model, cfg.curriculum, cfg.n_heads) == (model, "fixed", 1)
    assert (cfg.optimizer, cfg.lr, cfg.momentum, cfg.nesterov, cfg.clip) == ("sgd", 0.01, 0.9, False, 0.0)
    for key, value in metric_defaults.items():
        assert getattr(cfg, key) == value, key
    assert cfg.model_options["residual"] == "critical" and cfg.model_options["gamma"] == 0.01


def test_explicit_choices_are_kept():
    cfg = C({"model": "gru", "optimizer": "sgd", "encoding": "01", "seed": 1}).resolved()
    assert (cfg.optimizer, cfg.lr, cfg.task_options["encoding"]) == ("sgd", 0.05, "01")
    cfg = C({"model": "leaky", "optimizer": "adam", "lr": 0.2, "seed": 1}).resolved()
    assert (cfg.optimizer, cfg.lr) == ("adam", 0.2)
    cfg = C({"task": "adding", "optimizer": "adam", "seed": 1}).resolved()   # the chosen optimizer's lr
    assert (cfg.optimizer, cfg.lr) == ("adam", 1e-3)


def test_options_go_to_the_section_of_the_class_that_declares_them():
    cfg = C({"tau": 2.0, "k": 3, "window": 4, "shift": 2, "curriculum": "sliding", "n_max": 20})
    assert cfg.model_options == {"tau": 2.0}
    assert cfg.task_options == {"k": 3}
    assert cfg.curriculum_options == {"window": 4, "shift": 2, "n_max": 20}
    nested = C({"model_options": {"tau": 2.0}, "task_options": {"k": 3}, "curriculum": "sliding",
                "curriculum_options": {"window": 4, "shift": 2, "n_max": 20}})
    assert nested == cfg


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
    assert C({"seed": 0, **kwargs}).resolved().n_heads == heads


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
    assert (cfg.optimizer, cfg.lr, cfg.n_heads, cfg.seed) == (None,) * 4
    assert cfg.task_options == {}
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
    (dict(n_start=1), r"n_start must be >= 2"),
    (dict(n_max=1), r"n_max=1 is below n_start=2"),
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
    (dict(units=2.5), r"units must be an integer"),
    (dict(negative_slope=1.5), r"negative_slope must lie in \[0, 1\)"),
    (dict(train_tau="yes"), r"train_tau must be true or false"),
    (dict(lr_milestones=[0]), r"lr_milestones must be a positive integer"),
    (dict(model="gru", tau=2.0), r"'tau' is an option of model 'leaky', model 'modular', not of this run's .* model 'gru'"),
    (dict(length=10), r"'length' is an option of task 'adding'"),
    (dict(task="adding", curriculum="multi-head"), r"task 'adding' has none; use curriculum='fixed'"),
    (dict(curriculum="fixed"), r"curriculum 'fixed' is for tasks without N"),
    (dict(model_options={"slope": 0.1}), r"unknown model option 'slope' for 'leaky'; its options: "),
    (dict(task="pdigits", permutation_seed=-1), r"permutation_seed must be a non-negative integer"),
]


@pytest.mark.parametrize("kwargs, match", BAD,
                         ids=["-".join(f"{k}={v}" for k, v in kw.items()) for kw, _ in BAD])
def test_bad_configuration(kwargs, match):
    with pytest.raises(ValueError, match=match):
        C(kwargs).resolved()


# ----------------------------------------------------------------------------------------------
def test_from_dict_accepts_dashed_keys():
    cfg = TrainConfig.from_dict({"n-max": 20, "steps-per-epoch": 7, "heads_per_step": 2,
                                 "time-budget": 60.0})
    assert (cfg.curriculum_options["n_max"], cfg.steps_per_epoch, cfg.curriculum_options["heads_per_step"],
            cfg.time_budget) == (20, 7, 2, 60.0)
    assert cfg.resolved().curriculum_options["n_start"] == 2                 # untouched default


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match=r"unknown configuration key 'bogus'; valid keys: \[.*'units'"):
        TrainConfig.from_dict({"bogus": 1, "learning-rate": 0.1, "units": 4})


@pytest.mark.parametrize("data, match", [
    ([("units", 4)], r"a configuration is a mapping of keys to values .* found list"),
    ({"model_options": 3}, r"model_options must be a table of options .* found 3"),
    ({"task-options": [1]}, r"task_options must be a table of options .* found \[1\]"),
])
def test_from_dict_names_a_value_of_the_wrong_kind(data, match):
    with pytest.raises(TypeError, match=match):
        TrainConfig.from_dict(data)


@pytest.mark.parametrize("data, match", [
    ({"n_max": 5, "curriculum_options": {"n_max": 7}}, r"'n_max' is given twice: 5 at the top level and 7 in curriculum_options"),
    ({"lr-factor": 0.5, "lr_factor": 0.2}, r"'lr_factor' is given twice \(with dashes and with underscores\)"),
])
def test_from_dict_refuses_a_key_given_twice(data, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig.from_dict(data)
    assert TrainConfig.from_dict({"k": 2, "task_options": {"k": 2}}).task_options == {"k": 2}   # same value


def test_json_round_trip():
    cfg = C(dict(task="dms", model="leaky", curriculum="sliding", units=32, n_max=40,
                 time_budget=12.5, clip=0, tau=2.0, seed=9, lr_milestones=[30, 10])).resolved()
    text = cfg.to_json()
    data = json.loads(text)
    assert data["task"] == "dms" and data["clip"] == 0 and data["optimizer"] == "sgd"
    assert data["model_options"]["tau"] == 2.0 and data["lr_milestones"] == [10, 30]
    back = TrainConfig.from_dict(data)
    assert back == cfg
    assert back.resolved() == cfg


#: config.json of a trainers 0.1 run (one flat dict; clip None meant "no clipping")
LEGACY = {"activation": "leaky_relu", "batch": 64, "clip": None, "curriculum": "multi-head", "device": "cpu",
          "encoding": "pm1", "eval_batches": 10, "heads_per_step": 1, "k": 1, "lr": 0.001, "max_epochs": 40,
          "model": "gru", "momentum": 0.1, "n_heads": 29, "n_max": 30, "n_start": 2, "negative_slope": 0.1,
          "nonlinearity": "outside", "optimizer": "adam", "seed": 0, "shift": 5, "steps_per_epoch": 100,
          "task": "parity", "tau": None, "time_budget": None, "train_tau": True, "units": 64, "window": 10}


def test_a_trainers_0_1_configuration_still_loads():
    cfg = TrainConfig.from_dict(LEGACY).resolved()
    assert (cfg.model, cfg.units, cfg.n_heads, cfg.clip, cfg.lr) == ("gru", 64, 29, 0.0, 0.001)
    assert cfg.task_options == {"k": 1, "encoding": "pm1"}
    assert cfg.curriculum_options == {"n_start": 2, "n_max": 30, "heads_per_step": 1}
    assert cfg.model_options == {}          # the leaky RNN's fields of a GRU run are dropped


def test_from_toml_top_level(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('task = "dms"\nmodel = "gru"\nn-max = 30\nunits = 64\nlr = 0.01\nseed = 5\n')
    cfg = TrainConfig.from_toml(path)
    assert (cfg.task, cfg.model, cfg.curriculum_options["n_max"], cfg.units, cfg.lr, cfg.seed) == \
        ("dms", "gru", 30, 64, 0.01, 5)
    assert cfg.resolved().optimizer == "adam"


def test_from_toml_sections(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('task = "adding"\nunits = 8\n[model_options]\ngamma = 0.05\nform = "B"\n'
                    '[task_options]\nlength = 20\n')
    cfg = TrainConfig.from_toml(path).resolved()
    assert (cfg.model_options["gamma"], cfg.model_options["form"], cfg.task_options["length"]) == (0.05, "B", 20)


def test_from_toml_train_table(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('# comment\n[train]\ncurriculum = "single-head"\nbatch = 8\n'
                    'train_tau = false\n')
    cfg = TrainConfig.from_toml(str(path))
    assert (cfg.curriculum, cfg.batch, cfg.model_options["train_tau"]) == ("single-head", 8, False)


def test_from_toml_unknown_key(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text("epochs = 3\n")
    with pytest.raises(ValueError, match=r"unknown configuration key 'epochs'"):
        TrainConfig.from_toml(path)


def test_from_toml_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"does not exist"):
        TrainConfig.from_toml(tmp_path / "nope.toml")


def test_from_toml_invalid(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("units = = 3\n[train\n")
    with pytest.raises(ValueError, match=r"not valid TOML"):
        TrainConfig.from_toml(path)
