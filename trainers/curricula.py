"""Curricula of the timescale paper: which task sizes N the readout heads answer, and when to
move on (Sec. 3.2, App. B and D).

A curriculum is a rule on the list ``Ns`` of active task sizes: head ``i`` answers ``Ns[i]``
(the authors' convention: in the multi-head curriculum head ``i`` answers ``N = n_start + i``; in
single-head and sliding curricula the same heads are re-assigned to the new Ns). All active heads
are trained together (the loss is the sum of their cross-entropies). After each epoch the
curriculum advances when the mean accuracy over the active heads exceeds 98% **and** the newest
head (``Ns[-1]``) exceeds 98% -- the authors' rule.

``CURRICULA`` is the registry of the names used in configurations (``--curriculum``); adding a
curriculum is one class plus one ``CURRICULA.register`` line. ``fixed`` is the schedule of tasks
without a size N (the sequence tasks): one stage, trained for ``max_epochs``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from dynatools.utils import check_positive_int
from trainers.registry import Option, Registry

#: The authors' accuracy threshold (per cent) for "solved".
THRESHOLD = 98.0


@dataclass(frozen=True)
class Curriculum:
    """Base rule. ``n_start`` is the first N, ``n_max`` the target N that ends the run.

    Parameters
    ----------
    n_start : int, default=2
        First task size.
    n_max : int, default=101
        Target: the run is finished once a set of heads containing ``n_max`` is solved.
    """

    n_start: int = 2
    n_max: int = 101
    name = ""
    options = (
        Option("n_start", 2, "first N", int, minimum=2),
        Option("n_max", 101, "target N that ends the run; 'none' trains it directly", int),
    )
    defaults = {}  # type: ignore[var-annotated]
    #: the curriculum schedules task sizes N (tasks without N take ``fixed``)
    uses_N = True

    @classmethod
    def from_config(cls, config: dict) -> "Curriculum":
        """Build from a resolved ``curriculum_options`` section."""
        return cls(**{k: v for k, v in config.items() if k != "curriculum"})

    def __post_init__(self) -> None:
        if int(self.n_start) < 2:
            raise ValueError(f"n_start must be >= 2 (N = 1 needs no memory); found {self.n_start}.")
        if int(self.n_max) < int(self.n_start):
            raise ValueError(f"n_max={self.n_max} is below n_start={self.n_start}; give n_max >= n_start.")

    def initial(self) -> list[int]:
        """Active Ns at the start of training (one head for ``n_start`` unless overridden)."""
        return [int(self.n_start)]

    def next(self, Ns: Sequence[int]) -> list[int]:
        """Active Ns after the current ones are solved (never beyond ``n_max``)."""
        raise NotImplementedError

    def n_heads(self) -> int:
        """Readout heads the model needs for the whole run."""
        return 1

    def solved(self, accuracy: Sequence[float]) -> bool:
        """The authors' rule: mean accuracy over active heads > 98% and the newest head > 98%.

        ``accuracy`` is per active head, in per cent, in the order of ``Ns``.
        """
        acc = np.asarray(accuracy, dtype=float)
        return bool(acc.size and acc.mean() > THRESHOLD and acc[-1] > THRESHOLD)

    def finished(self, Ns: Sequence[int]) -> bool:
        """Whether solving ``Ns`` completes the curriculum."""
        return max(Ns) >= self.n_max

    def config(self) -> dict:
        return {"curriculum": self.name, "n_start": int(self.n_start), "n_max": int(self.n_max)}


@dataclass(frozen=True)
class NoCurriculum(Curriculum):
    """Train one N directly (Fig. 3a): the single head answers ``N = n_max`` from the start."""

    name = "none"

    def initial(self) -> list[int]:
        return [int(self.n_max)]

    def next(self, Ns: Sequence[int]) -> list[int]:
        return list(Ns)


@dataclass(frozen=True)
class SingleHead(Curriculum):
    """One head, retrained for N + 1 each time N is solved (Sec. 3.2, Fig. 2b)."""

    name = "single-head"

    def next(self, Ns: Sequence[int]) -> list[int]:
        return [min(Ns[-1] + 1, int(self.n_max))]


@dataclass(frozen=True)
class MultiHead(Curriculum):
    """Cumulative heads: ``heads_per_step`` new heads (N+1, ..., N+m) join the solved ones
    (Sec. 3.2, Fig. 2b; the authors' "cumulative" curriculum)."""

    heads_per_step: int = 1
    name = "multi-head"
    options = Curriculum.options + (Option("heads_per_step", 1, "multi-head: new heads per curriculum step", int),)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_int("heads_per_step", self.heads_per_step)

    def next(self, Ns: Sequence[int]) -> list[int]:
        new = [n for n in range(Ns[-1] + 1, Ns[-1] + 1 + self.heads_per_step) if n <= self.n_max]
        return list(Ns) + new

    def n_heads(self) -> int:
        return int(self.n_max) - int(self.n_start) + 1

    def config(self) -> dict:
        return {**super().config(), "heads_per_step": int(self.heads_per_step)}


@dataclass(frozen=True)
class Sliding(Curriculum):
    """A window of ``window`` heads (H) over consecutive Ns, shifted by ``shift`` (w) once solved
    (App. B: H = 10 heads starting at N = 2..11, w in {1, 3, 5})."""

    window: int = 10
    shift: int = 5
    name = "sliding"
    options = Curriculum.options + (Option("window", 10, "sliding: number of heads H", int),
                                    Option("shift", 5, "sliding: shift w of the window", int))

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_int("window", self.window)
        check_positive_int("shift", self.shift)
        if self.shift > self.window:
            raise ValueError(f"shift={self.shift} exceeds window={self.window}; the window can "
                             f"move by at most its own size.")
        if self.n_max < self.n_start + self.window - 1:
            raise ValueError(f"n_max={self.n_max} is smaller than the first window "
                             f"{self.n_start}..{self.n_start + self.window - 1}; raise n_max or "
                             f"shrink the window.")

    def initial(self) -> list[int]:
        return list(range(int(self.n_start), int(self.n_start) + int(self.window)))

    def next(self, Ns: Sequence[int]) -> list[int]:
        shift = min(self.shift, max(0, int(self.n_max) - Ns[-1]))
        return list(Ns[shift:]) + list(range(Ns[-1] + 1, Ns[-1] + 1 + shift))

    def n_heads(self) -> int:
        return int(self.window)

    def config(self) -> dict:
        return {**super().config(), "window": int(self.window), "shift": int(self.shift)}


@dataclass(frozen=True)
class AllHeads(Curriculum):
    """Every N in ``n_start..n_max`` trained from the start, no explicit curriculum (App. D)."""

    name = "all-heads"

    def initial(self) -> list[int]:
        return list(range(int(self.n_start), int(self.n_max) + 1))

    def next(self, Ns: Sequence[int]) -> list[int]:
        return list(Ns)

    def n_heads(self) -> int:
        return int(self.n_max) - int(self.n_start) + 1


#: Freezing variants of the growth curriculum: hard freezing (004 text, Fig. 6a) and ``decay``, the
#: soft freezing of the authors' growth script (earlier modules keep training at a decayed rate).
GROWTH_FREEZING = ("earlier", "recurrent-after-2", "feedforward-after-3", "decay")
#: Per-growth learning-rate factor of ``freeze="decay"``: the authors' ExponentialLR gamma 0.95 stepped
#: FREEZING_STEPS = 25 times for every earlier module at each growth, 0.95**25 = 0.277.
AUTHORS_FREEZE_DECAY = 0.95 ** 25


@dataclass(frozen=True)
class Growth(Curriculum):
    """004's growth curriculum ("Modular networks"; Fig. 1, 6) for ``--model modular``: start with
    one module answering ``n_start``; each time the active heads are solved (the authors' rule,
    :meth:`Curriculum.solved`), add a module and its head for N + 1 (``Ns`` grows as in
    ``multi-head``: head m reads module m and answers ``n_start + m``) and freeze every earlier
    module, so that only the newest module's W^R, W^FF, W^I, bias, tau and head train.

    The engine calls :meth:`grow` right after :meth:`next` and rebuilds the optimizer over the
    trainable parameters. The network must start with one module (``n_modules`` 1).

    Parameters
    ----------
    duplicate_recurrent, duplicate_feedforward : bool, default=True
        The new module's W^R (resp. W^FF) is an exact copy of the last module's, else drawn fresh
        (004 Fig. 6b). The first grown module has no W^FF to copy: it is drawn fresh.
    freeze : {"earlier", "recurrent-after-2", "feedforward-after-3"}, default="earlier"
        ``earlier``: all parameters of earlier modules frozen (004). ``recurrent-after-2``: in
        addition, the recurrent weights of every module are frozen once the first N is solved
        (they are duplicated into every new module; W^FF and the rest of the newest module train).
        ``feedforward-after-3``: in addition, the feed-forward weights are frozen once the second
        N is solved (the W^FF trained between the first two modules is duplicated into every
        later module; W^R and the rest train). 004 Fig. 6a, with ``n_start`` 2.
        ``decay``: soft freezing, as in the authors' growth script (LevinaLab/rnn_timescale_public,
        ``training/train_growth.py``; not in 004's text): nothing is frozen, every module keeps
        training, and at each growth every earlier module's learning rate is multiplied by
        ``freeze_decay``; module m of ``n_modules`` (with its head) trains at
        ``lr * freeze_decay ** (n_modules - 1 - m)`` (:meth:`param_groups`).
    freeze_decay : float, default=0.95**25 (= 0.277)
        ``freeze="decay"`` only: the per-growth factor on every earlier module's learning rate, in
        (0, 1]; the default is the authors' ExponentialLR ``gamma ** FREEZING_STEPS`` = 0.95**25.
        1 trains every module at the full rate (no freezing at all).

    Examples
    --------
    >>> import torch
    >>> from trainers.curricula import Growth
    >>> from trainers.models import ModularRNN
    >>> net, g = ModularRNN(4, generator=torch.Generator().manual_seed(0)), Growth(freeze="decay")
    >>> g.grow(net, torch.Generator().manual_seed(1)); g.grow(net, torch.Generator().manual_seed(2))
    >>> [round(group["lr"], 5) for group in g.param_groups(net, 0.1)]      # modules 0, 1, 2
    [0.00769, 0.02774, 0.1]
    """

    duplicate_recurrent: bool = True
    duplicate_feedforward: bool = True
    freeze: str = "earlier"
    freeze_decay: float = AUTHORS_FREEZE_DECAY
    name = "growth"
    options = Curriculum.options + (
        Option("duplicate_recurrent", True, "growth: copy the last module's W^R into a new module (else "
               "fresh; 004 Fig. 6b)", bool),
        Option("duplicate_feedforward", True, "growth: copy the last module's W^FF into a new module "
               "(else fresh)", bool),
        Option("freeze", "earlier", "growth: earlier (train only the newest module), recurrent-after-2 or "
               "feedforward-after-3 (004 Fig. 6a), or decay (every module trains; earlier modules' lr "
               "decays at each growth, the authors' script)", str, GROWTH_FREEZING),
        Option("freeze_decay", AUTHORS_FREEZE_DECAY, "growth with --freeze decay: factor in (0, 1] on every "
               "earlier module's lr at each growth (default 0.95**25 = 0.277, the authors' gamma**FREEZING_STEPS)",
               float, positive=True),
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.freeze not in GROWTH_FREEZING:
            raise ValueError(f"freeze={self.freeze!r} is not a growth freezing variant; choose one of "
                             f"{list(GROWTH_FREEZING)}.")
        if self.freeze == "recurrent-after-2" and not self.duplicate_recurrent:
            raise ValueError("freeze='recurrent-after-2' duplicates the frozen recurrent weights into every "
                             "new module (004 Fig. 6a); leave duplicate_recurrent True.")
        if self.freeze == "feedforward-after-3" and not self.duplicate_feedforward:
            raise ValueError("freeze='feedforward-after-3' duplicates the frozen feed-forward weights into "
                             "every new module (004 Fig. 6a); leave duplicate_feedforward True.")
        decay = self.freeze_decay
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0.0 < float(decay) <= 1.0:
            raise ValueError(f"freeze_decay={decay!r} must lie in (0, 1]: the factor on an earlier module's "
                             f"learning rate at each growth (the authors': 0.95**25 = {AUTHORS_FREEZE_DECAY:.4f}).")
        if self.freeze != "decay" and float(decay) != AUTHORS_FREEZE_DECAY:
            raise ValueError(f"freeze_decay={decay!r} applies only to freeze='decay' (soft freezing), but "
                             f"freeze={self.freeze!r} freezes earlier modules outright; add --freeze decay "
                             f"or drop --freeze-decay.")

    @staticmethod
    def check_model(model: str, model_options: dict) -> None:
        """Refuse a model the curriculum cannot grow (called by ``TrainConfig.resolved``)."""
        if model != "modular":
            raise ValueError(f"curriculum 'growth' adds modules to a modular network; model {model!r} "
                             f"has none: use --model modular (e.g. --model modular --module-size 10 "
                             f"--units 10).")
        if int(model_options.get("n_modules", 1)) != 1 or int(model_options.get("frozen_modules", 0)):
            raise ValueError(f"curriculum 'growth' starts from one trainable module (n_modules 1, "
                             f"frozen_modules 0); found n_modules={model_options.get('n_modules')}, "
                             f"frozen_modules={model_options.get('frozen_modules')}. Give "
                             f"units = module_size.")

    def next(self, Ns: Sequence[int]) -> list[int]:
        return list(Ns) + ([Ns[-1] + 1] if Ns[-1] < int(self.n_max) else [])

    def grow(self, model, generator=None) -> None:
        """Add one module and its head to ``model`` (a :class:`~trainers.models.ModularRNN`) and
        freeze as ``freeze`` says (``decay``: freeze nothing); new weights are drawn from
        ``generator``. Rebuild the optimizer afterwards."""
        from trainers.models.modular import ModularRNN

        if not isinstance(model, ModularRNN):
            raise TypeError(f"the growth curriculum grows a ModularRNN; found {type(model).__name__}.")
        n = model.n_modules                      # modules before growing; the new one is module n
        ff_after = self.freeze == "feedforward-after-3" and n >= 2
        model.add_module(duplicate_recurrent=bool(self.duplicate_recurrent),
                         duplicate_feedforward=bool(self.duplicate_feedforward), generator=generator)
        model.freeze_modules(0 if self.freeze == "decay" else n)
        if self.freeze == "recurrent-after-2":
            model.freeze_weights(recurrent=True)
        elif ff_after:
            model.freeze_weights(feedforward=True)

    def param_groups(self, model, lr: float) -> list[dict] | None:
        """Optimizer parameter groups for ``freeze="decay"`` (the engine's hook, see
        :func:`trainers.engine.make_optimizer`); None for hard freezing (the engine's default: one
        group over the trainable parameters).

        Group m holds module m's trainable tau, W^I, bias, W^R, W^FF (from module m - 1) and head m,
        at learning rate ``lr * freeze_decay ** (n_modules - 1 - m)``: the newest module trains at
        ``lr``, each growth since a module was the newest multiplied its rate by ``freeze_decay``
        (the authors' growth script: one SGD optimizer and ExponentialLR scheduler per module and
        layer, every earlier module's scheduler stepped FREEZING_STEPS = 25 times at each growth,
        gamma 0.95). Heads beyond the last module (they read it) join the newest group. The rates
        are a function of the grown model only, so a resumed run rebuilds the same optimizer.

        Parameters
        ----------
        model : ModularRNN
        lr : float
            The configuration's learning rate (the newest module's).

        Returns
        -------
        list of dict or None
            ``[{"params": [...], "lr": ...}, ...]``, one per module (modules without trainable
            parameters left out), in module order.
        """
        if self.freeze != "decay":
            return None
        n = model.n_modules
        groups = []
        for m in range(n):
            params = [model.tau[m], model.W_in[m], model.bias[m], model.W_rec[m]]
            if m >= 1:
                params.append(model.W_ff[m - 1])
            heads = [m] if m < n - 1 else range(m, model.heads.n_heads)
            for k in heads:
                params += [model.heads.weight[k], model.heads.bias[k]]
            params = [p for p in params if p.requires_grad]
            if params:
                groups.append({"params": params, "lr": float(lr) * float(self.freeze_decay) ** (n - 1 - m)})
        return groups

    def config(self) -> dict:
        return {**super().config(), "duplicate_recurrent": bool(self.duplicate_recurrent),
                "duplicate_feedforward": bool(self.duplicate_feedforward), "freeze": self.freeze,
                "freeze_decay": float(self.freeze_decay)}


class Fixed:
    """One stage for tasks without a size N (the sequence tasks of the fading-memory paper): a
    single head, trained until ``max_epochs`` (or the time budget); nothing is "solved"."""

    name = "fixed"
    options: tuple = ()
    defaults = {}  # type: ignore[var-annotated]
    uses_N = False

    @classmethod
    def from_config(cls, config: dict) -> "Fixed":
        return cls()

    def initial(self) -> list[int]:
        return []

    def next(self, Ns: Sequence[int]) -> list[int]:
        return list(Ns)

    def n_heads(self) -> int:
        return 1

    def solved(self, accuracy: Sequence[float]) -> bool:
        return False

    def finished(self, Ns: Sequence[int]) -> bool:
        return False

    def config(self) -> dict:
        return {"curriculum": self.name}


def percentile_mean(values: Sequence[float], low: float = 10.0, high: float = 90.0) -> float:
    """Mean performance of the networks between the ``low``-th and ``high``-th percentile (002 Sec.
    2.2, Table 1): the sorted values without the lowest ``floor(K low / 100)`` and the highest
    ``floor(K (100 - high) / 100)`` of the K values (for 10 and 90: ``scipy.stats.trim_mean(v,
    0.1)``; for K = 100 the 80 middle networks; for fewer than 10 networks all of them).

    Examples
    --------
    >>> from trainers.curricula import percentile_mean
    >>> percentile_mean([0.0, 0.2] + [0.5] * 16 + [1.0, 1.0])   # 20 values: the lowest 2 and highest 2 out
    0.5
    """
    v = np.sort(np.asarray(values, dtype=float).ravel())
    n = v.size
    if n == 0:
        raise ValueError("percentile_mean needs at least one value.")
    cut_low, cut_high = int(np.floor(n * low / 100.0)), int(np.floor(n * (100.0 - high) / 100.0))
    return float(v[cut_low:n - cut_high].mean())


@dataclass(frozen=True)
class Percentile(Fixed):
    """The stopping rule of 002 (Sec. 2.2, Table 1) for trial tasks (one stage without N, as
    :class:`Fixed`): training ends when the mean
    performance of the networks between the ``low``-th and ``high``-th percentile of an ensemble
    reaches ``threshold`` (0.99), checked after every evaluation; otherwise at the step limit
    (``max_epochs`` x ``steps_per_epoch``, 40,000 steps by default). For one network the rule is
    its own performance >= threshold.

    Parameters
    ----------
    threshold : float, default=0.99
    low, high : float, default=10, 90
        Percentiles (0-100) of the members' performances that bound the averaged ones.
    """

    threshold: float = 0.99
    low: float = 10.0
    high: float = 90.0
    name = "percentile"
    options = (
        Option("threshold", 0.99, "performance (0-1) the ensemble's 10-90 percentile mean must reach (002)",
               float, positive=True),
        Option("low", 10.0, "lower percentile of the members averaged by the stopping rule", float,
               minimum=0.0, below=100.0),
        Option("high", 90.0, "upper percentile of the members averaged by the stopping rule", float,
               minimum=0.0),
    )
    defaults = {}  # type: ignore[var-annotated]
    uses_N = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.low < self.high <= 100.0:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100 (002: 10 and 90); found "
                             f"low={self.low}, high={self.high}.")
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"threshold is a performance in (0, 1] (002: 0.99); found {self.threshold}.")

    @classmethod
    def from_config(cls, config: dict) -> "Percentile":
        return cls(**{k: v for k, v in config.items() if k != "curriculum"})

    def score(self, performance: Sequence[float]) -> float:
        """The ensemble's performance: :func:`percentile_mean` of the members' performances."""
        return percentile_mean(performance, self.low, self.high)

    def solved(self, performance: Sequence[float]) -> bool:
        """Whether the members' performances (each in [0, 1]) meet the rule."""
        return bool(self.score(performance) >= self.threshold)

    def finished(self, Ns: Sequence[int]) -> bool:
        return True

    def config(self) -> dict:
        return {"curriculum": self.name, "threshold": self.threshold, "low": self.low, "high": self.high}


#: name -> curriculum class (``--curriculum`` on the command line).
CURRICULA = Registry("curriculum")
CURRICULA.register(NoCurriculum)
CURRICULA.register(SingleHead)
CURRICULA.register(MultiHead)
CURRICULA.register(Sliding)
CURRICULA.register(AllHeads)
CURRICULA.register(Growth)
CURRICULA.register(Fixed)
CURRICULA.register(Percentile)

__all__ = ["THRESHOLD", "Curriculum", "NoCurriculum", "SingleHead", "MultiHead", "Sliding",
           "AllHeads", "Growth", "GROWTH_FREEZING", "AUTHORS_FREEZE_DECAY", "Fixed", "Percentile", "percentile_mean", "CURRICULA"]
