"""Registries that construct: name -> class, each class declaring its own options and defaults.

Models, tasks and curricula are registered here by name (one line in ``trainers/models/__init__.py``,
``trainers/tasks/__init__.py`` or ``trainers/curricula.py``). A registered class

* declares its options as a tuple of :class:`Option` (``options``): the keys of its section of the
  training configuration (``model_options``, ``task_options``, ``curriculum_options``), from which
  the ``trainers train`` flags and their help are generated;
* carries its own defaults for the engine's fields and for other sections' options (``defaults``,
  e.g. a GRU's ``{"optimizer": "adam", "lr": 1e-3, "encoding": "pm1"}``);
* builds itself from its resolved section (``from_config``) and writes it back (``config()``).

Adding a model, task or curriculum is therefore one file plus one registry line.

Examples
--------
>>> from trainers.registry import Option, Registry
>>> class Square:
...     name = "square"
...     options = (Option("side", 1.0, "side length", float),)
...     defaults = {}
...     def __init__(self, side): self.side = side
>>> SHAPES = Registry("shape")
>>> SHAPES.register(Square)
<class 'trainers.registry.Square'>
>>> SHAPES.resolve_options("square", {"side": 2})
{'side': 2.0}
>>> SHAPES.resolve_options("square", {"radius": 2})
Traceback (most recent call last):
...
ValueError: unknown shape option 'radius' for 'square'; its options: ['side'].
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from dynatools.utils import check_choice


@dataclass(frozen=True)
class Option:
    """One declared option of a registered class.

    Parameters
    ----------
    name : str
        Key in the configuration section (underscores; the CLI flag is ``--name-with-dashes``).
    default : Any
        Value when the configuration does not give one (and no other class's ``defaults`` does).
    help : str
        One line for ``--help``.
    type : {int, float, bool, str, list}, default=str
        ``list`` is a list of ints (e.g. milestones).
    choices : tuple, optional
        The valid values; anything else is refused with the list.
    nullable : bool, default=False
        ``None`` is a valid value (e.g. "draw at random").
    minimum : float, optional
        Smallest valid value for numbers (an integer option with minimum 1 is "a positive
        integer").
    positive : bool, default=False
        Numbers must be > 0.
    below : float, optional
        Numbers must be smaller than this (e.g. a momentum below 1).
    path : bool, default=False
        A string that names a local file or folder: stored absolute (``~`` expanded), so that a
        run directory resumes, evaluates and records from any working directory.
    shared : bool, default=False
        The same quantity for every class of a run that declares it (the time step ``dt`` in ms
        of a rate network and of a trial task): given once, it goes into each of their sections,
        and the sections must agree (:meth:`trainers.config.TrainConfig.resolved`).
    """

    name: str
    default: Any
    help: str
    type: type = str
    choices: tuple[Any, ...] | None = None
    nullable: bool = False
    minimum: float | None = None
    positive: bool = False
    below: float | None = None
    path: bool = False
    shared: bool = False

    def check(self, value: Any, owner: str = "") -> Any:
        """The value, checked and converted; a ValueError names the option and the fix."""
        where = f"{owner} option " if owner else ""
        if value is None:
            if self.nullable:
                return None
            raise ValueError(f"{where}{self.name} needs a value ({self.help}); found None.")
        if self.type is bool:
            if not isinstance(value, bool):
                raise ValueError(f"{where}{self.name} must be true or false; found {value!r}.")
            return value
        if self.type is int:
            if isinstance(value, bool) or not isinstance(value, int) and not (
                    isinstance(value, float) and value.is_integer()):
                raise ValueError(f"{where}{self.name} must be an integer; found {value!r}.")
            value = int(value)
        elif self.type is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{where}{self.name} must be a finite number; found {value!r}.")
            value = float(value)
        elif self.type is list:
            if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
                raise ValueError(f"{where}{self.name} must be a list of integers; found {value!r}.")
            value = [Option(self.name, 0, self.help, int, minimum=self.minimum).check(v, owner) for v in value]
            return value
        elif self.type is str:
            if self.path and isinstance(value, os.PathLike):
                value = os.fspath(value)
            if not isinstance(value, str):
                raise ValueError(f"{where}{self.name} must be a string; found {value!r}.")
            if self.path:
                value = os.path.abspath(os.path.expanduser(value))
        if self.choices is not None:
            check_choice(self.name, value, self.choices)
        if self.positive and self.below is not None and not 0 < value < self.below:
            raise ValueError(f"{where}{self.name} must lie in (0, {self.below:g}) ({self.help}); found {value!r}.")
        if self.positive and not value > 0:
            raise ValueError(f"{where}{self.name} must be a positive number; found {value!r}.")
        if self.minimum is not None and self.below is not None and not self.minimum <= value < self.below:
            raise ValueError(f"{where}{self.name} must lie in [{self.minimum:g}, {self.below:g}); found {value!r}.")
        if self.minimum is not None and value < self.minimum:
            what = {(int, 1): "a positive integer", (int, 0): "a non-negative integer"}.get(
                (self.type, self.minimum), f">= {self.minimum:g}")
            raise ValueError(f"{where}{self.name} must be {what}; found {value!r}.")
        if self.below is not None and not value < self.below:
            raise ValueError(f"{where}{self.name} must be below {self.below:g}; found {value!r}.")
        return value


class Registry(Mapping[str, type]):
    """Name -> class of one kind (``"model"``, ``"task"``, ``"curriculum"``).

    A class is registered under its ``name`` attribute. ``registry[name]`` on an unknown name
    raises a ValueError that lists the registered names.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._classes: dict[str, type] = {}

    def register(self, cls: type) -> type:
        """Add ``cls`` under ``cls.name`` (usable as a decorator); a second class under the same
        name is refused."""
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise TypeError(f"a {self.kind} class needs a non-empty string attribute 'name'; "
                            f"{cls.__name__} has {name!r}.")
        if name in self._classes and self._classes[name] is not cls:
            raise ValueError(f"{self.kind} {name!r} is already registered ({self._classes[name].__name__}).")
        for attr in ("options", "defaults"):
            if not hasattr(cls, attr):
                raise TypeError(f"{self.kind} class {cls.__name__} must declare {attr!r} "
                                f"(a tuple of Option, a dict of defaults; empty is fine).")
        self._classes[name] = cls
        return cls

    def unregister(self, name: str) -> None:
        """Remove ``name`` (for tests that register a class of their own)."""
        self._classes.pop(name, None)

    def __getitem__(self, name: str) -> type:
        if name not in self._classes:
            raise ValueError(f"{self.kind}={name!r} is not a valid option; choose one of "
                             + ", ".join(repr(n) for n in self._classes) + ".")
        return self._classes[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._classes)

    def __len__(self) -> int:
        return len(self._classes)

    def __contains__(self, name: object) -> bool:
        return name in self._classes

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {list(self._classes)})"

    def options(self, name: str) -> dict[str, Option]:
        """The options ``name`` declares, by option name."""
        return {o.name: o for o in self[name].options}

    def owners(self, option: str) -> list[str]:
        """Registered names that declare ``option``."""
        return [n for n, cls in self._classes.items() if any(o.name == option for o in cls.options)]

    def resolve_options(self, name: str, given: Mapping[str, Any],
                        defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Every option of ``name``: ``given`` where set, else ``defaults`` (other classes'
        defaults for this option), else the option's own default; each value checked.
        Keys that ``name`` does not declare are refused with the list of its options."""
        declared = self.options(name)
        unknown = [k for k in given if k not in declared]
        if unknown:
            raise ValueError(f"unknown {self.kind} option {unknown[0]!r} for {name!r}; its options: "
                             f"{sorted(declared)}.")
        defaults = defaults or {}
        out = {}
        for key, opt in declared.items():
            value = given[key] if key in given else defaults.get(key, opt.default)
            out[key] = opt.check(value, f"{self.kind} {name!r}")
        return out


def build(registry: Registry, name: str, options: Mapping[str, Any], **context: Any) -> Any:
    """``registry[name].from_config(options, **context)``: the one way classes are built from
    configuration."""
    cls = registry[name]
    factory: Callable[..., Any] = getattr(cls, "from_config")
    return factory(dict(options), **context)


__all__ = ["Option", "Registry", "build"]
