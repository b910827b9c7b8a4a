"""Training-time methods for long-term dependencies (002 Sec. 3, Eq. 5-9; Sec. 4): coarsened
discretization (CD), skip connections through time (SCTT) and dynamics-aligned skip connections
(DASC), and their annealing schedules.

The methods change only how a rate network is simulated while it trains; evaluation, recordings
and every analysis use the plain network (002 Sec. 3: "only during training"). A method is a
registered class (``--method``) with its options (``--skip``, ``--beta0``, ``--anneal-steps``,
``--anneal-span``, ``--strategic``); at every optimizer step it names the :class:`Simulation`
to train with:

* ``none`` (control, 002 Fig. 2A): the base Euler model (Eq. 5);
* ``cd`` (Eq. 7): Euler steps of ``theta dt``; ``theta`` falls from ``theta0 = skip`` to 1;
* ``sctt`` (Eq. 8): every ``theta = skip`` steps, ``h <- (1 - beta) h_s + beta h``; ``beta`` rises
  from ``beta0`` to 1;
* ``dasc`` (Eq. 9): the same with the CD estimate ``h_s + theta dr_s/dt dt`` in place of ``h_s``.

Annealing (002 Sec. 4, "step count"): ``anneal_steps = n`` equal updates spread over the first
``anneal_span`` (20,000) optimizer steps: the span is cut into ``n + 1`` equal phases, phase ``k``
trains with ``beta_k = beta0 + (1 - beta0) k / n`` (SCTT, DASC) or ``theta_k = theta0 (n - k) / n``
rounded, and at least 1 (CD, as the authors' code); after the span the base model trains. The
paper's worked example: ``beta0 = 0.5``, 5 steps -> 0.5, 0.6, 0.7, 0.8, 0.9, 1.0.

Strategic skip connections (002 Sec. 4.1, Fig. 4D): with ``strategic``, multi-trial tasks mix the
state at the end of each trial with the state at its start, ``h <- beta h + (1 - beta) h_start``,
with the same ``beta`` schedule (``beta0``) for every method (for ``none`` and ``cd`` only these
skips use it). Only closed-loop multi-trial tasks (``rule-reversal``) have trial boundaries.

Adding a method is one class here plus one ``METHODS.register`` line.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from trainers.registry import Option, Registry

#: Names of the ways a rate network can be simulated (``Simulation.method``).
SIMULATIONS = ("base", "cd", "sctt", "dasc")


@dataclass(frozen=True)
class Simulation:
    """How a rate network's Euler steps run at one training step (002 Eq. 5-9).

    Parameters
    ----------
    method : {"base", "cd", "sctt", "dasc"}, default="base"
        ``base``: Eq. 5; ``cd``: steps of ``theta dt`` (Eq. 7); ``sctt`` / ``dasc``: skip
        connections every ``theta`` steps (Eq. 8 / Eq. 9) with mixing ratio ``beta``.
    theta : int, default=1
        Discretization factor (CD) or skip length in steps (SCTT, DASC).
    beta : float, default=1.0
        Mixing ratio in (0, 1] (SCTT, DASC): the weight of the base state.

    Examples
    --------
    >>> Simulation("dasc", theta=40, beta=0.5).is_base
    False
    >>> Simulation("cd", theta=1).is_base, Simulation("sctt", theta=10, beta=1.0).is_base
    (True, True)
    """

    method: str = "base"
    theta: int = 1
    beta: float = 1.0

    def __post_init__(self) -> None:
        if self.method not in SIMULATIONS:
            raise ValueError(f"simulation method {self.method!r} is not one of {list(SIMULATIONS)}.")
        if isinstance(self.theta, bool) or int(self.theta) != self.theta or self.theta < 1:
            raise ValueError(f"theta must be a positive integer (steps); found {self.theta!r}.")
        if not 0.0 < float(self.beta) <= 1.0:
            raise ValueError(f"beta must lie in (0, 1] (1 = no skip connection); found {self.beta!r}.")
        object.__setattr__(self, "theta", int(self.theta))
        object.__setattr__(self, "beta", float(self.beta))

    @property
    def coarse(self) -> int:
        """The factor by which the time step grows (CD's theta; 1 otherwise)."""
        return self.theta if self.method == "cd" else 1

    @property
    def is_base(self) -> bool:
        """True when this simulation is exactly the base model (CD at theta 1, SCTT/DASC at beta 1
        or, for DASC, theta 1)."""
        if self.method == "cd":
            return self.theta == 1
        if self.method in ("sctt", "dasc"):
            return self.beta == 1.0 or (self.method == "dasc" and self.theta == 1)
        return True

    def as_dict(self) -> dict[str, Any]:
        return {"method": self.method, "theta": self.theta, "beta": self.beta}


def coarse_batch(batch, theta: int):
    """The trials of a :class:`~trainers.tasks.trials.TrialBatch` at every ``theta``-th step
    (steps 0, theta, 2 theta, ...): what a network simulated with CD's steps of ``theta dt`` (002
    Eq. 7) is scored against. Works with a leading member axis."""
    if theta == 1:
        return batch
    return replace(batch, inputs=batch.inputs[..., ::theta, :], targets=batch.targets[..., ::theta, :],
                   mask=batch.mask[..., ::theta, :], periods=batch.periods[..., ::theta])


def anneal(value0: float, final: float, n: int, step: int, span: int) -> float:
    """Value of an annealed quantity at optimizer step ``step`` (0-based): ``n + 1`` equal phases
    over the first ``span`` steps going from ``value0`` to ``final`` in equal increments (002
    Sec. 4), then ``final``.

    Examples
    --------
    >>> [round(anneal(0.5, 1.0, 5, s, 6000), 3) for s in range(0, 7000, 1000)]
    [0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.0]
    """
    if n < 1 or step >= span:
        return final
    phase = min(n, (step * (n + 1)) // span)
    return value0 + (final - value0) * phase / n


class Method:
    """Base class of the training methods: ``simulation(step)`` gives the :class:`Simulation` of
    optimizer step ``step`` and ``strategic_beta(step)`` the ratio of the strategic skips (None
    when off)."""

    name = ""
    kind = "base"
    options: tuple = ()
    defaults: dict[str, Any] = {}

    def __init__(self, skip: int = 1, beta0: float = 1.0, anneal_steps: int = 5, anneal_span: int = 20000,
                 strategic: bool = False) -> None:
        self.skip, self.beta0 = int(skip), float(beta0)
        self.anneal_steps, self.anneal_span, self.strategic = int(anneal_steps), int(anneal_span), bool(strategic)
        if not 0.0 < self.beta0 <= 1.0:
            raise ValueError(f"beta0 must lie in (0, 1] (the initial weight of the base state); found {beta0!r}.")

    @classmethod
    def from_config(cls, config: dict) -> "Method":
        """Build from a resolved ``method_options`` section."""
        return cls(**{k: v for k, v in config.items() if k != "method"})

    def config(self) -> dict[str, Any]:
        return {"method": self.name, **{o.name: getattr(self, o.name) for o in self.options}}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.config().items() if k != 'method')})"

    def beta(self, step: int) -> float:
        """The annealed mixing ratio at optimizer step ``step``."""
        return anneal(self.beta0, 1.0, self.anneal_steps, step, self.anneal_span)

    def simulation(self, step: int) -> Simulation:
        return Simulation()

    def strategic_beta(self, step: int) -> float | None:
        """Ratio of the strategic skip connections at ``step`` (None: none)."""
        if not self.strategic:
            return None
        b = self.beta(step)
        return None if b >= 1.0 else b


_SKIP = Option("skip", 10, "skip length theta in steps (SCTT, DASC) or initial discretization factor theta0 "
               "(CD); 002 uses 10, 20, 40", int, minimum=1)
_BETA0 = Option("beta0", 0.5, "initial mixing ratio beta0 in (0, 1] (SCTT, DASC, strategic skips); 002 uses "
                "0.2, 0.5, 0.8", float, positive=True)
_STEPS = Option("anneal_steps", 5, "annealing step count: equal updates of theta/beta towards the base model "
                "(002: 1, 5 or 10)", int, minimum=1)
_SPAN = Option("anneal_span", 20000, "optimizer steps over which the annealing is spread (002: 20,000)", int,
               minimum=1)
_STRATEGIC = Option("strategic", False, "strategic skip connections between the starts of consecutive trials "
                    "(002 Sec. 4.1; multi-trial tasks such as rule-reversal)", bool)


class Control(Method):
    """The base model (002 Fig. 2A); with ``strategic``, only the strategic skip connections."""

    name = "none"
    options = (_BETA0, _STEPS, _SPAN, _STRATEGIC)

    def __init__(self, beta0: float = 0.5, anneal_steps: int = 5, anneal_span: int = 20000,
                 strategic: bool = False) -> None:
        super().__init__(1, beta0, anneal_steps, anneal_span, strategic)


class CoarsenedDiscretization(Method):
    """CD (002 Eq. 7): Euler steps of ``theta dt``, ``theta`` annealed from ``skip`` to 1."""

    name = "cd"
    options = (_SKIP, _BETA0, _STEPS, _SPAN, _STRATEGIC)

    def theta(self, step: int) -> int:
        """``theta0 (n - k) / n`` in phase k, rounded, at least 1 (the authors' schedule)."""
        value = anneal(float(self.skip), 0.0, self.anneal_steps, step, self.anneal_span)
        return max(1, int(round(value)))

    def simulation(self, step: int) -> Simulation:
        return Simulation("cd", theta=self.theta(step))


class SkipConnections(Method):
    """SCTT (002 Eq. 8): every ``skip`` steps ``h <- (1 - beta) h_s + beta h``."""

    name = "sctt"
    kind = "sctt"
    options = (_SKIP, _BETA0, _STEPS, _SPAN, _STRATEGIC)

    def simulation(self, step: int) -> Simulation:
        return Simulation(self.kind, theta=self.skip, beta=self.beta(step))


class DynamicsAlignedSkipConnections(SkipConnections):
    """DASC (002 Eq. 9): SCTT with the CD estimate ``h_s + theta dr_s/dt dt`` in place of ``h_s``."""

    name = "dasc"
    kind = "dasc"


#: name -> training method class (``--method`` on the command line).
METHODS = Registry("method")
METHODS.register(Control)
METHODS.register(CoarsenedDiscretization)
METHODS.register(SkipConnections)
METHODS.register(DynamicsAlignedSkipConnections)

__all__ = ["Simulation", "SIMULATIONS", "Method", "Control", "CoarsenedDiscretization", "SkipConnections",
           "DynamicsAlignedSkipConnections", "METHODS", "anneal", "coarse_batch"]
