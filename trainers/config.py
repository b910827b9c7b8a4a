"""Training configuration: one plain dataclass with nested sections, serialisable to JSON and
readable from TOML.

The engine's own fields (task, model, curriculum, sizes, optimiser, limits, device, seed) are
attributes; everything a model, task or curriculum declares lives in its own section
(``model_options``, ``task_options``, ``curriculum_options``), as that class's
:class:`~trainers.registry.Option` list says. :meth:`TrainConfig.resolved` fills every default in
this order: given value > the model's ``defaults`` > the task's > the curriculum's > the engine's.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import secrets
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from trainers.registry import Option

DEVICES = ("auto", "cpu", "cuda")
OPTIMIZERS = ("sgd", "adam")
SECTIONS = {"model_options": "model", "task_options": "task", "curriculum_options": "curriculum",
            "method_options": "method"}

#: The engine's fields, with their help (the ``trainers train`` flags) and the default used when
#: neither the model, the task nor the curriculum carries one.
ENGINE_OPTIONS = (
    Option("task", "parity", "the task (see 'trainers list'); default parity", str),
    Option("model", None, "the model (default: the task's: leaky for parity/dms, wcrnn for sequence tasks)",
           str, nullable=True),
    Option("curriculum", None, "the curriculum (default: the task's: multi-head for parity/dms, fixed "
           "for sequence tasks)", str, nullable=True),
    Option("units", 500, "recurrent units (default: the task's or model's; 500 parity/dms, 100 wcrnn)",
           int, minimum=1),
    Option("batch", 256, "sequences per batch (default 256 parity/dms, 128 sequence tasks)", int, minimum=1),
    Option("steps_per_epoch", 600, "optimizer steps per epoch (default 600; adding 100; images: one "
           "pass over the training set)", int, minimum=1),
    Option("eval_batches", 50, "fresh batches for the accuracy after each epoch (default 50)", int, minimum=1),
    Option("max_epochs", 1000, "stop after this many epochs (default 1000; sequence tasks 10)", int, minimum=1),
    Option("time_budget", None, "stop after this many seconds of training (checked after each epoch)",
           float, nullable=True, positive=True),
    Option("n_heads", None, "readout heads of the model (default: what the curriculum needs)", int,
           nullable=True, minimum=1),
    Option("optimizer", "sgd", "sgd or adam (default: the model's; sgd leaky/wcrnn, adam gru/lstm)", str,
           OPTIMIZERS),
    Option("lr", 0.05, "learning rate (default: the model's for its optimizer; 0.05 sgd / 1e-3 adam, "
           "wcrnn 0.01)", float, positive=True),
    Option("momentum", 0.1, "SGD momentum (default: the model's; 0.1 leaky, 0.9 wcrnn)", float, minimum=0.0,
           below=1.0),
    Option("nesterov", True, "Nesterov momentum for SGD (default: the model's; on for leaky, off for wcrnn)",
           bool),
    Option("clip", 0.0, "gradient-norm clip (default: the model's; 2.0 leaky/gru/lstm, none wcrnn); 0 "
           "disables", float, minimum=0.0),
    Option("lr_milestones", [], "optimizer steps after which lr is multiplied by --lr-factor", list, minimum=1),
    Option("lr_factor", 0.3, "learning-rate factor at each milestone (default 0.3)", float, minimum=0.0),
    Option("device", "auto", "auto, cpu or cuda (default auto: CUDA when available)", str, DEVICES),
    Option("seed", None, "random seed (default: a random one, saved in the run)", int, nullable=True,
           minimum=0),
    Option("members", 1, "networks trained in parallel as one ensemble (trial tasks such as the cognitive "
           "tasks; member k has seed + k); default 1", int, minimum=1),
    Option("method", "none", "training-time method for long dependencies (002 Sec. 3): none, cd, sctt or dasc "
           "(rate networks on trial tasks); default none", str, nullable=True),
)
_ENGINE = {o.name: o for o in ENGINE_OPTIONS}
#: learning rate of an optimizer chosen explicitly against the model's default optimizer
_LR_OF = {"sgd": 0.05, "adam": 1e-3}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (the ``trainers train`` flags mirror it).

    The engine's fields are the attributes below; ``None`` means "the default of the model, task
    or curriculum" and is filled by :meth:`resolved`. Options that a model, task or curriculum
    declares go in its section. :meth:`from_dict` (and TOML files, and the command line) also
    accept them as top-level keys and put each into the section of the class that declares it.

    Defaults are the papers': the timescale paper for parity/DMS (Sec. 3.2; App. C for GRU/LSTM:
    500 units, batch 256, 600 steps per epoch, accuracy on 50 fresh batches, SGD with Nesterov
    momentum 0.1, lr 0.05 and clipping at 2.0 for the leaky RNN, Adam lr 1e-3 and {-1, +1} inputs
    for GRU/LSTM, the multi-head curriculum, at most 1000 epochs); the fading-memory paper for the
    sequence tasks (Sec. 4: WCRNN of 100 units, SGD with momentum 0.9, batch 128, 10 epochs).

    Parameters
    ----------
    task : str, default="parity"
        A name of :data:`trainers.tasks.TASKS`.
    model, curriculum : str, optional
        Names of :data:`trainers.models.MODELS` and :data:`trainers.curricula.CURRICULA`.
    units, batch, steps_per_epoch, eval_batches, max_epochs : int, optional
    time_budget : float, optional
        Wall-clock limit in seconds, checked after every epoch.
    n_heads : int, optional
        Readout heads; default what the curriculum needs.
    optimizer : {"sgd", "adam"}, optional
    lr, momentum, lr_factor : float, optional
    nesterov : bool, optional
    clip : float, optional
        Gradient-norm clipping (L2 over all parameters); 0 disables it.
    lr_milestones : list of int, optional
        Optimizer steps after which the learning rate is multiplied by ``lr_factor``.
    device : {"auto", "cpu", "cuda"}, optional
    seed : int, optional
        Seeds the initialisation and every batch; default a random seed, stored in the run.
    method : {"none", "cd", "sctt", "dasc"}, optional
        Training-time simulation of 002 Sec. 3 (:mod:`trainers.skip`) for rate networks on trial
        tasks; its options (``skip``, ``beta0``, ``anneal_steps``, ``anneal_span``,
        ``strategic``) go in ``method_options``. Default ``none`` (the base model).
    members : int, optional
        Networks trained at once as one ensemble (trial tasks only; 002 Sec. 2.2 trains 100):
        member k is the network a single run with seed ``seed + k`` trains
        (:mod:`trainers.ensemble`). Default 1.
    model_options, task_options, curriculum_options, method_options : dict
        The sections (e.g. ``{"tau": 2.0}``, ``{"k": 2}``, ``{"n_max": 30}``).

    Examples
    --------
    >>> from trainers import TrainConfig
    >>> cfg = TrainConfig.from_dict({"model": "gru", "n_max": 20, "seed": 0}).resolved()
    >>> cfg.optimizer, cfg.lr, cfg.task_options["encoding"], cfg.curriculum_options["n_max"]
    ('adam', 0.001, 'pm1', 20)
    """

    task: str = "parity"
    model: str | None = None
    curriculum: str | None = None
    units: int | None = None
    batch: int | None = None
    steps_per_epoch: int | None = None
    eval_batches: int | None = None
    max_epochs: int | None = None
    time_budget: float | None = None
    n_heads: int | None = None
    optimizer: str | None = None
    lr: float | None = None
    momentum: float | None = None
    nesterov: bool | None = None
    clip: float | None = None
    lr_milestones: list[int] | None = None
    lr_factor: float | None = None
    device: str | None = None
    seed: int | None = None
    members: int | None = None
    method: str | None = None
    model_options: dict[str, Any] = field(default_factory=dict)
    task_options: dict[str, Any] = field(default_factory=dict)
    curriculum_options: dict[str, Any] = field(default_factory=dict)
    method_options: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------
    def classes(self) -> tuple[type, type, type]:
        """The registered (task, model, curriculum) classes this configuration names."""
        from trainers.curricula import CURRICULA
        from trainers.models import MODELS
        from trainers.tasks import TASKS

        task = TASKS[self.task]
        model = MODELS[self.model or task.defaults.get("model", "leaky")]
        curriculum = CURRICULA[self.curriculum or task.defaults.get("curriculum", "multi-head")]
        return task, model, curriculum

    def method_class(self) -> type:
        """The registered training-method class (:data:`trainers.skip.METHODS`) this configuration
        names (``none`` when unset)."""
        from trainers.skip import METHODS

        return METHODS[self.method or "none"]

    def resolved(self) -> "TrainConfig":
        """Check every field and section and fill every default (see the module docstring);
        draw the seed if none is given. Raises ValueError naming the field, the value and the
        valid choices. A resolved configuration resolves to itself."""
        from trainers.curricula import CURRICULA
        from trainers.models import MODELS
        from trainers.skip import METHODS
        from trainers.tasks import TASKS

        task_cls, model_cls, cur_cls = self.classes()
        defaults = {**cur_cls.defaults, **task_cls.defaults, **model_cls.defaults}
        given = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in SECTIONS}
        method_cls = self.method_class()
        out: dict[str, Any] = {"task": self.task, "model": model_cls.name, "curriculum": cur_cls.name,
                               "method": method_cls.name}
        for name, opt in _ENGINE.items():
            if name in out:
                continue
            value = given[name]
            if value is None and name not in ("time_budget", "n_heads", "seed"):
                value = defaults.get(name, opt.default)
                if name == "lr" and ("lr" not in defaults or given["optimizer"] not in (None, defaults.get("optimizer"))):
                    value = _LR_OF[out["optimizer"]]   # the chosen optimizer's, not the model's
            out[name] = opt.check(copy.deepcopy(value))
        out["lr_milestones"] = sorted(out["lr_milestones"])
        if cur_cls.name == "percentile" and not getattr(task_cls, "time_resolved", False):
            raise ValueError(f"curriculum 'percentile' (002's stopping rule) needs a trial task with a "
                             f"performance in [0, 1] (e.g. --task go); task {self.task!r} takes "
                             f"curriculum 'fixed' or one over N.")
        if not task_cls.uses_N and cur_cls.uses_N:
            raise ValueError(f"curriculum {cur_cls.name!r} schedules task sizes N, but task {self.task!r} "
                             f"has none; use curriculum='fixed' (--curriculum fixed) or leave it unset.")
        if task_cls.uses_N and not cur_cls.uses_N:
            raise ValueError(f"task {self.task!r} is trained with a curriculum over N (e.g. 'multi-head', "
                             f"'none'); curriculum {cur_cls.name!r} is for tasks without N.")
        if out["members"] > 1 and not getattr(task_cls, "time_resolved", False):
            raise ValueError(f"members={out['members']}: ensembles are trained on trial tasks (the cognitive "
                             f"tasks, e.g. --task go); task {self.task!r} trains one network per run, so "
                             f"leave members at 1" + ("; 002's delayed match-to-sample is --task dms-cog."
                                                      if self.task == "dms" else "."))
        _check_method(method_cls, dict(self.method_options), task_cls, model_cls, self.task)
        sections = _share({"task_options": (task_cls, dict(self.task_options)),
                           "model_options": (model_cls, dict(self.model_options)),
                           "curriculum_options": (cur_cls, dict(self.curriculum_options))})
        out["task_options"] = TASKS.resolve_options(self.task, sections["task_options"], defaults)
        out["model_options"] = MODELS.resolve_options(model_cls.name, sections["model_options"], defaults)
        out["curriculum_options"] = CURRICULA.resolve_options(cur_cls.name, sections["curriculum_options"],
                                                              defaults)
        out["method_options"] = METHODS.resolve_options(method_cls.name, dict(self.method_options), {})
        check_model = getattr(cur_cls, "check_model", None)   # a curriculum that needs a certain model
        if check_model is not None:
            check_model(model_cls.name, out["model_options"])
        needed = cur_cls.from_config(out["curriculum_options"]).n_heads()  # checks n_max >= n_start, ...
        if out["n_heads"] is None:
            out["n_heads"] = needed
        elif out["n_heads"] < needed:
            raise ValueError(f"n_heads={out['n_heads']} is too few: the {cur_cls.name} curriculum "
                             f"{_span(out['curriculum_options'])}needs {needed}.")
        if out["seed"] is None:
            out["seed"] = secrets.randbelow(2**31)
        return TrainConfig(**out)

    def make_curriculum(self):
        """The :mod:`trainers.curricula` object this (resolved) configuration names."""
        from trainers.curricula import CURRICULA
        from trainers.registry import build

        return build(CURRICULA, self.classes()[2].name, self.curriculum_options)

    def make_method(self):
        """The :mod:`trainers.skip` training method this (resolved) configuration names."""
        from trainers.registry import build
        from trainers.skip import METHODS

        return build(METHODS, self.method_class().name, self.method_options)

    def make_task(self):
        """The :mod:`trainers.tasks` object this (resolved) configuration names."""
        from trainers.registry import build
        from trainers.tasks import TASKS

        return build(TASKS, self.task, self.task_options)

    def make_model(self, task=None, generator=None):
        """A freshly initialised network of this (resolved) configuration; its input size and
        classes from ``task`` (default :meth:`make_task`), its heads from ``n_heads``."""
        from trainers.models import MODELS
        from trainers.registry import build

        task = self.make_task() if task is None else task
        sizes = {"n_units": self.units, "input_dim": task.input_dim, "n_heads": self.n_heads,
                 "n_classes": task.n_classes}
        return build(MODELS, self.classes()[1].name, {**sizes, **self.model_options}, generator=generator)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TrainConfig":
        """Build from a mapping; keys may use dashes or underscores.

        Options of the model, task or curriculum may be given at the top level (``n_max``,
        ``tau``, ``k``): each goes into the section of the class that declares it. A key no class
        of this run declares is an error that names who does. Configurations written by trainers
        0.1 (one flat dict) load too; options for classes the run does not use are dropped.
        """
        from trainers.curricula import CURRICULA
        from trainers.models import MODELS
        from trainers.skip import METHODS
        from trainers.tasks import TASKS

        if not isinstance(data, Mapping):
            raise TypeError(f"a configuration is a mapping of keys to values (a dict, a TOML table); "
                            f"found {type(data).__name__} {data!r}.")
        clean = {str(k).replace("-", "_"): v for k, v in data.items()}
        if len(clean) < len(data):
            twice = sorted(k for k in clean if sum(str(d).replace("-", "_") == k for d in data) > 1)
            raise ValueError(f"{twice[0]!r} is given twice (with dashes and with underscores); keep one.")
        bad = [s for s in SECTIONS if s in clean and not isinstance(clean[s], (Mapping, type(None)))]
        if bad:
            raise TypeError(f"{bad[0]} must be a table of options (a dict, a TOML table); found {clean[bad[0]]!r}.")
        legacy = not any(k in clean for k in SECTIONS) and {"negative_slope", "heads_per_step"} <= set(clean)
        if legacy and clean.get("clip") is None:
            clean["clip"] = 0.0                   # 0.1: None disabled clipping
        top = {k: clean.pop(k) for k in list(clean) if k in _ENGINE}
        sections = {s: dict(clean.pop(s) or {}) for s in SECTIONS if s in clean}
        probe = cls(**{k: v for k, v in top.items() if k in ("task", "model", "curriculum", "method")})
        task_cls, model_cls, cur_cls = probe.classes()
        owners = {"task_options": (TASKS, task_cls), "model_options": (MODELS, model_cls),
                  "curriculum_options": (CURRICULA, cur_cls), "method_options": (METHODS, probe.method_class())}
        for key, value in clean.items():
            mine = [s for s, (_, c) in owners.items() if any(o.name == key for o in c.options)]
            if len(mine) > 1 and all(_is_shared(owners[s][1], key) for s in mine):
                for s in mine:                       # one quantity of several classes (dt)
                    section = sections.setdefault(s, {})
                    if key in section and section[key] != value:
                        raise ValueError(f"option {key!r} is given twice: {value!r} at the top level and "
                                         f"{section[key]!r} in {s}; keep one.")
                    section[key] = value
                continue
            if len(mine) > 1:
                raise ValueError(f"option {key!r} is declared by both {mine}; give it inside one "
                                 f"section, e.g. {{'{mine[0]}': {{'{key}': ...}}}}.")
            if mine:
                section = sections.setdefault(mine[0], {})
                if key in section and section[key] != value:
                    raise ValueError(f"option {key!r} is given twice: {value!r} at the top level and "
                                     f"{section[key]!r} in {mine[0]}; keep one.")
                section[key] = value
                continue
            if legacy:
                continue
            elsewhere = [f"{reg.kind} {n!r}" for reg, _ in owners.values() for n in reg.owners(key)]
            if elsewhere:
                raise ValueError(f"{key!r} is an option of {', '.join(elsewhere)}, not of this run's "
                                 f"task {task_cls.name!r}, model {model_cls.name!r}, curriculum "
                                 f"{cur_cls.name!r} and method {probe.method_class().name!r}; drop it or "
                                 f"choose that {elsewhere[0].split()[0]}.")
            valid = sorted(set(_ENGINE) | set(SECTIONS) | {o.name for _, c in owners.values() for o in c.options})
            raise ValueError(f"unknown configuration key {key!r}; valid keys: {valid}.")
        return cls(**top, **sections)

    @classmethod
    def from_toml(cls, path: str | os.PathLike) -> "TrainConfig":
        """Read a TOML file of ``key = value`` lines (top level or a ``[train]`` table), with the
        sections as tables (``[model_options]``) or their options at the top level."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"configuration file {str(path)!r} does not exist.")
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path}: not valid TOML ({exc}).") from exc
        if "train" in data and isinstance(data["train"], dict):
            rest = sorted(k for k in data if k != "train")
            if rest:
                raise ValueError(f"{path}: keys {rest} lie outside the [train] table; put every "
                                 f"key in [train] or none.")
            data = data["train"]
        return cls.from_dict(data)


def _check_method(method_cls: type, given: dict[str, Any], task_cls: type, model_cls: type, task: str) -> None:
    """A training method other than ``none`` needs a rate network on a trial task; strategic skips
    need a multi-trial (closed-loop) task."""
    if method_cls.name != "none":
        if not getattr(model_cls, "simulations", False):
            raise ValueError(f"method {method_cls.name!r} (002 Sec. 3) changes a rate network's Euler "
                             f"simulation; model {model_cls.name!r} has none: use --model rate or --method none.")
        if not getattr(task_cls, "time_resolved", False):
            raise ValueError(f"method {method_cls.name!r} trains on trial tasks (the cognitive tasks, "
                             f"rule-reversal); task {task!r} is not one: use --method none.")
    if given.get("strategic") and not getattr(task_cls, "closed_loop", False):
        raise ValueError(f"strategic skip connections join the starts of consecutive trials of a multi-trial "
                         f"task (002 Sec. 4.1: --task rule-reversal); task {task!r} has one trial per "
                         f"sequence: drop --strategic.")


def _is_shared(cls: type, key: str) -> bool:
    return any(o.name == key and o.shared for o in cls.options)


def _share(sections: dict[str, tuple[type, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """The sections with every ``shared`` option given in one of them copied into the others that
    declare it (the time step ``dt`` of a rate network and of a trial task); different values in
    two sections are refused."""
    out = {name: given for name, (_, given) in sections.items()}
    declared = {name: {o.name for o in cls.options if o.shared} for name, (cls, _) in sections.items()}
    for key in set().union(*declared.values()):
        holders = [name for name in out if key in declared[name]]
        given = {name: out[name][key] for name in holders if key in out[name]}
        if len({float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else repr(v)
                for v in given.values()}) > 1:
            listed = ", ".join(f"{name} {v!r}" for name, v in given.items())
            raise ValueError(f"{key} differs between sections ({listed}); it is one quantity of the run: "
                             f"give it once (--{key.replace('_', '-')}).")
        if given:
            value = next(iter(given.values()))
            for name in holders:
                out[name] = {**out[name], key: value}
    return out


def _span(options: Mapping[str, Any]) -> str:
    if "n_start" in options:
        return f"from N={options['n_start']} to N={options['n_max']} "
    return ""


__all__ = ["TrainConfig", "ENGINE_OPTIONS", "DEVICES", "OPTIMIZERS", "SECTIONS"]
