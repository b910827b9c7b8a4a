"""Analyses of modular networks (004: Hamidi, Khajehabdollahi et al., "Modular Growth of
Hierarchical Networks", ``shared/seeds/004_*``).

* Size-matched non-modular baselines (Fig. 1, 2b: "a set of non-modular networks (M = 20, 54, 91,
  128) with an equivalent number of trainable parameters (at N = 30)"):
  :func:`trainable_parameters`, :func:`modular_parameters`, :func:`baseline_parameters`,
  :func:`matched_baseline_units`, :func:`matched_baselines` and :func:`baseline_config` (the
  :class:`~trainers.TrainConfig` dict of the matched multi-head run).
* Robustness (004 "Robustness", Eq. 5; Fig. 3 and 5a-b): :func:`perturb` returns a copy of a
  modular network (or of the non-modular :class:`~trainers.LeakyRNN`, Fig. 3's comparison) with
  one parameter group (W^R, W^FF or tau) perturbed as Eq. 5 prescribes; :func:`tasks_solved`
  counts the heads whose accuracy exceeds 0.9 (Fig. 3) and keeps each head's accuracy (Fig. 5a-b);
  :func:`perturbation_sweep` does both over targets, strengths and repeats, with the mean and
  spread over repeats; :func:`plot_tasks_solved` and :func:`plot_module_accuracy` draw Fig. 3 and
  Fig. 5a-b.
* Weight conservation across modules (004 Fig. 5c): :func:`module_weight_conservation`.

Everything here works on models (and run configurations) of ``trainers``; accuracies come from the
task's own evaluation (``task.evaluate(model, Ns, ...)``, the one the engine uses: readout on the
last step of fresh batches, head i answering ``Ns[i]``).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import xarray as xr

from dynatools.utils import check_choice, check_positive_int
from trainers.config import TrainConfig
from trainers.models.modular import ModularRNN

#: Targets of :func:`perturb`: 004's three trained parameter groups and the parameter (list) that
#: holds them (ModularRNN: one per module; LeakyRNN: one ``W_rec`` matrix and one ``tau`` vector).
TARGETS = {"recurrent": "W_rec", "feedforward": "W_ff", "tau": "tau"}
#: Every name a target may be given by (the parameter names too: ``--target W_rec``) -> its name.
TARGET_NAMES = {**{t: t for t in TARGETS}, **{v: k for k, v in TARGETS.items()}}

#: 004's pairs (module size M_m -> non-modular size M), Fig. 1 and "Results".
PAPER_PAIRS = {5: 20, 10: 54, 15: 91, 20: 128}

EQ5 = "W + eps * xi/||xi|| * ||W|| over the whole group, xi ~ N(0, I), Frobenius norms; tau: + |...| (004 Eq. 5)"


# ---------------------------------------------------------------------------- parameter counts
def trainable_parameters(model: torch.nn.Module) -> int:
    """Number of trainable entries of ``model``: the sum of ``numel`` over the parameters with
    ``requires_grad`` (as stored: the held-at-zero diagonal of a recurrent matrix counts, and the
    leaky RNN's two biases count twice, as PyTorch counts them)."""
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


def _sections(model_options: Mapping[str, Any] | None, task: str, task_options: Mapping[str, Any] | None,
              ) -> dict[str, Any]:
    return {"task": task, "task_options": dict(task_options or {}), "seed": 0}


def modular_parameters(module_size: int, n_max: int = 30, *, n_start: int = 2, task: str = "parity",
                       task_options: Mapping[str, Any] | None = None,
                       model_options: Mapping[str, Any] | None = None) -> int:
    """Trainable parameters of the modular network grown to ``n_max - n_start + 1`` modules (one
    per N = n_start..n_max, each with its head), counted on the actual model
    (:class:`~trainers.models.ModularRNN` built by ``TrainConfig(...).make_model()``).

    This is at once the network's final parameter count (all modules trainable) and the number of
    parameters it trains over its whole growth: every module's W^R, W^FF, W^I, bias, tau and head
    are trained in the step that adds the module and frozen afterwards (hard freezing; with
    ``freeze="decay"`` earlier modules keep training at a decayed rate, each entry still counted
    once), none is removed (duplication only initialises the new module's weights).

    Examples
    --------
    >>> from trainers.modular_analysis import modular_parameters
    >>> modular_parameters(10, 30)      # 29 modules of 10: 29 * (100 + 3 * 10 + 22) + 28 * 100
    7208
    """
    ms = check_positive_int("module_size", module_size)
    n_modules = _n_heads(n_start, n_max)
    options = {**dict(model_options or {}), "n_modules": n_modules, "module_size": ms, "frozen_modules": 0}
    cfg = TrainConfig.from_dict({**_sections(model_options, task, task_options), "model": "modular",
                                 "curriculum": "multi-head", "units": n_modules * ms, "n_start": n_start,
                                 "n_max": n_max, "model_options": options}).resolved()
    return trainable_parameters(cfg.make_model(generator=torch.Generator().manual_seed(0)))


def baseline_parameters(units: int, n_max: int = 30, *, n_start: int = 2, baseline_model: str = "leaky",
                        task: str = "parity", task_options: Mapping[str, Any] | None = None,
                        model_options: Mapping[str, Any] | None = None) -> int:
    """Trainable parameters of the non-modular multi-head network of ``units`` units with one head
    per N = n_start..n_max (004 Fig. 1: one recurrent core, a head added per N), counted on the
    actual model built by ``TrainConfig(...).make_model()``.

    ``baseline_model="leaky"`` (default): :class:`~trainers.LeakyRNN` (tau, W_in, two biases
    ``b_in`` and ``b_rec``, W_rec, heads); ``"modular"``: a ModularRNN of ONE module whose heads
    all read it, which is 004's non-modular network of Eq. 3 exactly (one bias per unit), M fewer
    parameters.

    Examples
    --------
    >>> from trainers.modular_analysis import baseline_parameters
    >>> baseline_parameters(54, 30)     # 54^2 + 4 * 54 + 29 * (2 * 54 + 2)
    6322
    """
    units = check_positive_int("units", units)
    check_choice("baseline_model", baseline_model, ("leaky", "modular"))
    options = dict(model_options or {})
    if baseline_model == "modular":
        options.update(n_modules=1, module_size=units, frozen_modules=0)
    cfg = TrainConfig.from_dict({**_sections(model_options, task, task_options), "model": baseline_model,
                                 "curriculum": "multi-head", "units": units, "n_start": n_start,
                                 "n_max": n_max, "model_options": options}).resolved()
    return trainable_parameters(cfg.make_model(generator=torch.Generator().manual_seed(0)))


def _n_heads(n_start: int, n_max: int) -> int:
    n_start = check_positive_int("n_start", n_start)
    n_max = check_positive_int("n_max", n_max)
    if n_max < n_start:
        raise ValueError(f"n_max={n_max} is below n_start={n_start}; give n_max >= n_start (004: N = 2..30).")
    return n_max - n_start + 1


def matched_baseline_units(module_size: int, n_max: int = 30, *, n_start: int = 2, baseline_model: str = "leaky",
                           task: str = "parity", task_options: Mapping[str, Any] | None = None,
                           model_options: Mapping[str, Any] | None = None,
                           baseline_options: Mapping[str, Any] | None = None) -> int:
    """Units M of the non-modular multi-head network whose trainable-parameter count is closest to
    the modular network's (modules of ``module_size`` grown to ``n_max``; 004 matches at N = 30).

    Both counts come from the actual models (:func:`modular_parameters`,
    :func:`baseline_parameters`); the count grows with M, so M is found by bisection and the
    closer of the two neighbours is returned (the smaller on a tie). 004 pairs M_m = 5, 10, 15,
    20 with M = 20, 54, 91, 128; this function gives 25, 59, 95, 132 (docs/modular.md explains
    the difference).

    Parameters
    ----------
    module_size : int
        Units per module M_m.
    n_max, n_start : int, default 30, 2
        The modular network has one module per N = n_start..n_max; the baseline one head per N.
    baseline_model : {"leaky", "modular"}, default "leaky"
        See :func:`baseline_parameters`.
    task, task_options
        The task (its input size and classes set the layer shapes).
    model_options, baseline_options : dict, optional
        Options of the modular model (e.g. ``{"train_tau": False}``) and of the baseline (default:
        the modular ones that the baseline model declares).

    Examples
    --------
    >>> from trainers.modular_analysis import matched_baseline_units
    >>> matched_baseline_units(15)
    95
    """
    target = modular_parameters(module_size, n_max, n_start=n_start, task=task, task_options=task_options,
                                model_options=model_options)
    kw = {"n_start": n_start, "baseline_model": baseline_model, "task": task, "task_options": task_options,
          "model_options": _baseline_options(model_options, baseline_model, baseline_options)}

    def count(m: int) -> int:
        return baseline_parameters(m, n_max, **kw)

    lo, hi = 1, 2
    while count(hi) < target:
        lo, hi = hi, 2 * hi
    while hi - lo > 1:                       # count(lo) < target <= count(hi), or lo == 1
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if count(mid) < target else (lo, mid)
    return lo if abs(count(lo) - target) <= abs(count(hi) - target) else hi


def _baseline_options(model_options: Mapping[str, Any] | None, baseline_model: str,
                      baseline_options: Mapping[str, Any] | None) -> dict[str, Any]:
    from trainers.models import MODELS

    if baseline_options is not None:
        return dict(baseline_options)
    declared = MODELS.options(baseline_model)
    skip = {"n_modules", "module_size", "frozen_modules"}
    return {k: v for k, v in dict(model_options or {}).items() if k in declared and k not in skip}


def matched_baselines(module_sizes: Sequence[int] = (5, 10, 15, 20), n_max: int = 30, *, n_start: int = 2,
                      baseline_model: str = "leaky", task: str = "parity") -> xr.Dataset:
    """The table of docs/modular.md: for each module size, the modular network's parameter count,
    the matched baseline size and its count, and 004's pair with its count on our classes.

    Returns
    -------
    xarray.Dataset
        Over ``module_size``: ``modular_parameters``, ``units`` (matched M),
        ``baseline_parameters``, ``paper_units`` (004's M, -1 where 004 gives none) and
        ``paper_baseline_parameters`` (our count at 004's M; -1 where none).
    """
    sizes = [check_positive_int("module_size", m) for m in module_sizes]
    kw = {"n_start": n_start, "task": task}
    mod = [modular_parameters(m, n_max, **kw) for m in sizes]
    units = [matched_baseline_units(m, n_max, baseline_model=baseline_model, **kw) for m in sizes]
    base = [baseline_parameters(u, n_max, baseline_model=baseline_model, **kw) for u in units]
    paper = [PAPER_PAIRS.get(m, -1) if n_max == 30 and n_start == 2 else -1 for m in sizes]
    paper_count = [baseline_parameters(u, n_max, baseline_model=baseline_model, **kw) if u > 0 else -1
                   for u in paper]
    dims = ("module_size",)
    return xr.Dataset(
        {"modular_parameters": (dims, mod), "units": (dims, units), "baseline_parameters": (dims, base),
         "paper_units": (dims, paper), "paper_baseline_parameters": (dims, paper_count)},
        coords={"module_size": sizes},
        attrs={"n_max": n_max, "n_start": n_start, "baseline_model": baseline_model, "task": task,
               "method": "closest trainable-parameter count, models built by TrainConfig.make_model"},
    )


def baseline_config(modular_config: Mapping[str, Any], *, baseline_model: str = "leaky") -> dict[str, Any]:
    """The :class:`~trainers.TrainConfig` dict of the size-matched non-modular run for a modular
    run's configuration (a run's ``config.json`` or any dict ``TrainConfig.from_dict`` accepts).

    The baseline is a multi-head ``baseline_model`` network (004 Fig. 1: one recurrent core, a head
    per N) of :func:`matched_baseline_units` units, on the same task (and task options), seed,
    batch, steps per epoch, evaluation batches, epochs, optimiser settings and device; it keeps
    the modular network's neuron options the baseline model declares (tau, train_tau,
    nonlinearity, activation, negative_slope: 004's non-modular network is the same neuron model,
    Eq. 3). The curriculum is ``multi-head`` over the same n_start..n_max. The caller's dict is
    not changed.

    Examples
    --------
    >>> import trainers
    >>> from trainers.modular_analysis import baseline_config
    >>> cfg = {"model": "modular", "curriculum": "growth", "units": 10, "module_size": 10, "n_max": 30, "seed": 3}
    >>> base = baseline_config(cfg)
    >>> base["model"], base["units"], base["curriculum"], base["seed"]
    ('leaky', 59, 'multi-head', 3)
    >>> # trainers.train(trainers.TrainConfig.from_dict(base), "runs/baseline")
    """
    cfg = TrainConfig.from_dict(dict(modular_config)).resolved().to_dict()
    if cfg["model"] != "modular":
        raise ValueError(f"modular_config describes a {cfg['model']!r} run; give the configuration of a "
                         f"modular run (model 'modular').")
    options = cfg["model_options"]
    ms = options.get("module_size") or cfg["units"] // options.get("n_modules", 1)
    cur = cfg["curriculum_options"]
    if "n_max" not in cur or "n_start" not in cur:
        raise ValueError(f"the modular run's curriculum {cfg['curriculum']!r} has no n_start/n_max; the "
                         f"baseline is matched at n_max (004: N = 30) and needs a curriculum that has them.")
    n_start, n_max = int(cur["n_start"]), int(cur["n_max"])
    base_options = _baseline_options(options, baseline_model, None)
    units = matched_baseline_units(ms, n_max, n_start=n_start, baseline_model=baseline_model, task=cfg["task"],
                                   task_options=cfg["task_options"], model_options=options,
                                   baseline_options=base_options)
    if baseline_model == "modular":
        base_options.update(n_modules=1, module_size=units, frozen_modules=0)
    out = {k: copy.deepcopy(v) for k, v in cfg.items()
           if k not in ("model", "curriculum", "units", "n_heads", "model_options", "curriculum_options")}
    out.update(model=baseline_model, curriculum="multi-head", units=units, model_options=base_options,
               curriculum_options={"n_start": n_start, "n_max": n_max})
    return out


# ---------------------------------------------------------------------------- Eq. 5 perturbation
def _target(target: Any) -> str:
    """The canonical name of a target ("recurrent", "feedforward", "tau") from it or its
    parameter name ("W_rec", "W_ff")."""
    if not isinstance(target, str) or target not in TARGET_NAMES:
        raise ValueError(f"target={target!r} is not a valid option; choose one of "
                         f"{', '.join(repr(t) for t in TARGET_NAMES)} (004's W^R, W^FF, tau).")
    return TARGET_NAMES[target]


def _check_model(model: Any) -> torch.nn.Module:
    if not isinstance(model, torch.nn.Module) or not isinstance(getattr(model, "W_rec", None),
                                                                (torch.nn.Parameter, torch.nn.ParameterList)):
        raise TypeError(f"model must be a trainers ModularRNN (004's modular network) or LeakyRNN (its "
                        f"non-modular network, Eq. 3): a network with W_rec and tau parameters; found "
                        f"{type(model).__name__}. For any other network, perturb one named parameter with "
                        f"dynatools.robustness.perturb(model, epsilons, score, target=NAME).")
    return model


def _check_eps(eps: Any) -> float:
    try:
        value = float(eps)
    except (TypeError, ValueError):
        raise TypeError(f"eps must be a number >= 0; found {eps!r}.") from None
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"eps must be a finite number >= 0 (a relative strength, 004 Eq. 5); found {eps!r}. "
                         f"Eq. 5 draws the sign from xi, so a negative eps adds nothing.")
    return value


def _group(model: torch.nn.Module, target: str) -> list[torch.nn.Parameter]:
    """The parameters of one target group: a ModularRNN's per-module list, a LeakyRNN's one
    parameter."""
    target = _target(target)
    name = TARGETS[target]
    held = getattr(model, name, None)
    if isinstance(held, torch.nn.Parameter):
        return [held]
    if isinstance(held, torch.nn.ParameterList) and len(held):
        return list(held)
    if isinstance(held, torch.nn.ParameterList):
        raise ValueError(f"target={target!r}: this network has {model.n_modules} module(s) and no feed-forward "
                         f"weights W_ff (module 0 has none); perturb 'recurrent' or 'tau', or grow it first.")
    if target == "feedforward":
        raise ValueError(f"target='feedforward': a {type(model).__name__} is non-modular (one recurrent matrix "
                         f"W_rec, no feed-forward weights W_ff between modules); perturb 'recurrent' (W_rec) "
                         f"or 'tau'.")
    raise ValueError(f"target={target!r}: {type(model).__name__} has no parameter {name!r}; 004's groups are "
                     f"W_rec, W_ff (modular networks) and tau.")


def model_targets(model: torch.nn.Module) -> list[str]:
    """The targets a network has: ``["recurrent", "feedforward", "tau"]`` for a ModularRNN of two
    or more modules, ``["recurrent", "tau"]`` for one module or a non-modular LeakyRNN (004 Fig.
    3 perturbs W^R and W^FF of modular networks, the recurrent weights of non-modular ones, and
    tau of both).

    Examples
    --------
    >>> import torch, trainers
    >>> from trainers.modular_analysis import model_targets
    >>> model_targets(trainers.LeakyRNN(8, generator=torch.Generator().manual_seed(0)))
    ['recurrent', 'tau']
    """
    _check_model(model)
    out = []
    for t in TARGETS:
        try:
            _group(model, t)
        except ValueError:
            continue
        out.append(t)
    return out


def _direction(model: torch.nn.Module, target: str, generator: torch.Generator | None) -> list[torch.Tensor]:
    """``xi / ||xi|| * ||W||`` over the whole group (float64 on the CPU), split per module; its
    absolute value for tau."""
    params = _group(model, target)
    W = torch.cat([p.detach().double().cpu().reshape(-1) for p in params])
    xi = torch.randn(W.shape, generator=generator, dtype=torch.float64)
    d = xi / torch.linalg.norm(xi) * torch.linalg.norm(W)
    if _target(target) == "tau":
        d = d.abs()
    return [x.reshape(p.shape) for x, p in zip(d.split([p.numel() for p in params]), params)]


def _apply(model: torch.nn.Module, target: str, eps: float, direction: list[torch.Tensor]) -> torch.nn.Module:
    out = copy.deepcopy(model)
    if eps == 0.0:
        return out                           # bitwise the original (W + 0 would turn -0.0 into 0.0)
    with torch.no_grad():
        for p, d in zip(_group(out, target), direction):
            p.copy_((p.detach().double().cpu() + eps * d).to(dtype=p.dtype, device=p.device))
    return out


def perturb(model: torch.nn.Module, target: str, eps: float, generator: torch.Generator | None = None,
            ) -> torch.nn.Module:
    r"""A copy of the network with one trained parameter group perturbed as 004 Eq. 5:

    .. math::
        \widetilde W = W + \varepsilon \frac{\xi}{\|\xi\|} \|W\|, \qquad \xi \sim \mathcal N(0, I),

    Frobenius norms, "proportional to the magnitude of the weights of the layer being targeted".
    The group is one of 004's three: ``"recurrent"`` (``"W_rec"``: W^R of every module),
    ``"feedforward"`` (``"W_ff"``: W^FF of every module m >= 1) or ``"tau"`` (every unit's
    timescale); W and xi are the whole group, all modules' entries together (one draw, one norm),
    so the perturbation reaches every module and, through W^FF, every module downstream (004
    Fig. 5). For tau, the perturbation is made positive, ``tau + eps * |xi / ||xi|| * ||tau|| |``
    (004: "we also only perturb tau_i in positive direction to avoid tau < 1"; DESIGN.md's
    convention), so no timescale decreases.

    The non-modular network of Fig. 3 (a :class:`~trainers.LeakyRNN`, e.g. the size-matched
    baseline) is perturbed the same way: ``"recurrent"`` is its whole recurrent matrix W_rec,
    ``"tau"`` its timescales; it has no ``"feedforward"`` group.

    As stored: xi covers all ``n^2`` entries of each recurrent matrix (Eq. 5's xi ~ N(0, I^{n x
    n})), including the diagonal, which the dynamics hold at zero, so the effective strength on
    the used entries is about ``eps * sqrt(1 - 1/n)`` (n the module size, or the units of a
    LeakyRNN); tau is the raw parameter (the dynamics use ``clamp(tau, 1)``).

    Parameters
    ----------
    model : ModularRNN or LeakyRNN
        The (trained) network; not changed.
    target : {"recurrent", "feedforward", "tau"} or {"W_rec", "W_ff"}
    eps : float
        Relative strength epsilon_W >= 0. ``eps = 0`` returns an exact copy (bitwise).
    generator : torch.Generator, optional
        A CPU generator that draws xi (default: the global one).

    Returns
    -------
    ModularRNN or LeakyRNN
        A perturbed deep copy (same device, dtype, frozen set).

    Examples
    --------
    >>> import torch
    >>> from trainers.models import ModularRNN
    >>> from trainers.modular_analysis import perturb
    >>> net = ModularRNN(30, n_modules=3, n_heads=3, generator=torch.Generator().manual_seed(0))
    >>> noisy = perturb(net, "feedforward", 0.1, torch.Generator().manual_seed(1))
    >>> W, W2 = (torch.cat([w.detach().flatten() for w in m.W_ff]) for m in (net, noisy))
    >>> round(float((W2 - W).norm() / W.norm()), 6)
    0.1
    """
    _check_model(model)
    eps = _check_eps(eps)
    return _apply(model, target, eps, _direction(model, target, generator))


# ---------------------------------------------------------------------------- tasks solved
def _task(task: Any) -> Any:
    from trainers.tasks import TASKS

    if isinstance(task, str):
        return TASKS[task]()
    if not hasattr(task, "evaluate"):
        raise TypeError(f"task must be a task name ({', '.join(sorted(TASKS))}) or a task object with "
                        f"evaluate(model, Ns, ...); found {task!r}.")
    return task


def _heads(model: torch.nn.Module, Ns: Sequence[int] | None, n_start: int) -> list[int]:
    if Ns is not None:
        Ns = [int(n) for n in Ns]
        if not Ns:
            raise ValueError("Ns is empty; give the N each head answers (head i answers Ns[i]).")
        return Ns
    if isinstance(model, ModularRNN):
        n = model.n_modules                  # heads beyond the modules read the last module: untrained
    else:
        with torch.no_grad():
            n = model.readout(model.initial_state(1)).shape[-2]
    return list(range(n_start, n_start + n))


def _head_coords(model: torch.nn.Module, Ns: Sequence[int]) -> dict[str, Any]:
    """Coordinates over N: ``head`` (index), and for a ModularRNN the ``module`` the head reads
    (head k reads module ``min(k, n_modules - 1)``)."""
    coords: dict[str, Any] = {"N": list(Ns), "head": (("N",), np.arange(len(Ns)))}
    if isinstance(model, ModularRNN):
        coords["module"] = (("N",), np.minimum(np.arange(len(Ns)), model.n_modules - 1))
    return coords


def _solved_dataset(acc: np.ndarray, Ns: Sequence[int], threshold: float, model: torch.nn.Module) -> xr.Dataset:
    return xr.Dataset(
        {"accuracy": (("N",), acc), "solved": (("N",), acc > threshold),
         "tasks_solved": ((), int((acc > threshold).sum()))},
        coords=_head_coords(model, Ns),
        attrs={"threshold": threshold},
    )


def _check_threshold(threshold: float) -> float:
    t = float(threshold)
    if not 0.0 <= t < 1.0:
        raise ValueError(f"threshold must be a fraction in [0, 1) (004: 0.9); found {threshold!r}.")
    return t


def tasks_solved(model: torch.nn.Module, task: Any = "parity", *, threshold: float = 0.9,
                 Ns: Sequence[int] | None = None, n_start: int = 2, batches: int = 10, batch: int = 256,
                 generator: torch.Generator | None = None) -> xr.Dataset:
    """The number of tasks N a multi-head network still solves, with the accuracy of every head
    (004 Fig. 3: "the number of tasks that the network is still able to solve with accuracy >
    0.9"; Fig. 5a-b: "the accuracy of each module's prediction for its corresponding task N").

    Accuracies come from ``task.evaluate(model, Ns, batch=batch, batches=batches,
    generator=generator)`` (fresh batches, readout on the last step), head i answering ``Ns[i]``.
    ``tasks_solved`` counts the heads above ``threshold``, wherever they are (not only a prefix).

    Parameters
    ----------
    model : torch.nn.Module
        A ModularRNN (head m is module m's readout) or any multi-head model (e.g. the matched
        leaky baseline).
    task : str or task object, default "parity"
    threshold : float, default 0.9
        A head solves its N when its accuracy (a fraction) exceeds it.
    Ns : sequence of int, optional
        The N of each head. Default ``n_start, n_start + 1, ...``: one per module of a ModularRNN
        (heads beyond the modules are untrained), one per head otherwise.
    n_start : int, default 2
    batches, batch : int, default 10, 256
    generator : torch.Generator, optional
        Draws the batches and initial states (on the model's device); seed it to evaluate every
        model on the same sequences.

    Returns
    -------
    xarray.Dataset
        ``accuracy`` (fraction) and ``solved`` over ``N`` (coordinates ``head`` and, for a
        ModularRNN, ``module``: the module that head reads), the scalar ``tasks_solved``; attrs
        ``threshold``, ``batches``, ``batch``.

    Examples
    --------
    >>> import torch, trainers
    >>> from trainers.modular_analysis import tasks_solved
    >>> net = trainers.LeakyRNN(8, n_heads=3, generator=torch.Generator().manual_seed(0))
    >>> ds = tasks_solved(net, "parity", batches=1, batch=16, generator=torch.Generator().manual_seed(0))
    >>> ds["N"].values.tolist()              # head i answers N = 2 + i
    [2, 3, 4]
    """
    threshold = _check_threshold(threshold)
    Ns = _heads(model, Ns, n_start)
    task = _task(task)
    was_training = model.training
    model.eval()
    try:
        acc = np.asarray(task.evaluate(model, Ns, batch=check_positive_int("batch", batch),
                                       batches=check_positive_int("batches", batches), generator=generator),
                         dtype=float) / 100.0
    finally:
        model.train(was_training)
    if acc.shape != (len(Ns),):
        raise ValueError(f"{type(task).__name__}.evaluate returned shape {acc.shape} for {len(Ns)} heads; "
                         f"tasks_solved needs one accuracy per head (a multi-head binary task such as parity).")
    ds = _solved_dataset(acc, Ns, threshold, model)
    ds.attrs.update(batches=batches, batch=batch)
    return ds


def _spread(values: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, standard deviation (ddof 1) and standard error of the mean over ``axis``; the
    spread is NaN with one sample."""
    n = values.shape[axis]
    mean = values.mean(axis)
    if n < 2:
        nan = np.full(mean.shape, np.nan)
        return mean, nan, nan
    std = values.std(axis, ddof=1)
    return mean, std, std / np.sqrt(n)


def perturbation_sweep(model: torch.nn.Module, task: Any = "parity", eps_values: Sequence[float] = (0.0, 0.1, 0.2),
                       targets: Sequence[str] | None = None, repeats: int = 10,
                       seed: int | None = None, *, threshold: float = 0.9, Ns: Sequence[int] | None = None,
                       n_start: int = 2, batches: int = 10, batch: int = 256, progress: bool = False) -> xr.Dataset:
    """Tasks solved and per-head (per-module) accuracy of a network under Eq. 5 perturbations of
    each target group, over strengths and repeats (004 Fig. 3 for modular and non-modular
    networks; Fig. 5a-b, the accuracy of each module on its N).

    Repeat r of target t draws one direction xi (from ``seed``, t and r: the same direction
    whatever other targets are swept) and scales it by every eps (:func:`perturb`), so the
    curves over eps are smooth; every evaluation (the unperturbed one included) sees the same
    batches (a generator seeded from ``seed`` on the model's device). eps = 0 is the unperturbed
    network (not evaluated again).

    Parameters
    ----------
    model : ModularRNN or LeakyRNN
        004's modular network, or the non-modular one of Fig. 3 (e.g. the size-matched baseline).
    task : str or task object, default "parity"
    eps_values : sequence of float
        Relative strengths >= 0.
    targets : sequence of {"recurrent", "feedforward", "tau"} (or "W_rec", "W_ff"), optional
        Default: every group the network has (:func:`model_targets`).
    repeats : int, default 10
        Random directions per target (004 Fig. 5: 10 perturbations per network).
    seed : int or None, default None
        None draws a fresh seed; the seed used is in ``attrs["seed"]`` (pass it back to reproduce).
    threshold, Ns, n_start, batches, batch
        As :func:`tasks_solved`.
    progress : bool, default False
        A progress bar over the evaluations.

    Returns
    -------
    xarray.Dataset
        ``tasks_solved`` over ``(target, epsilon, repeat)`` and ``accuracy`` (fraction) over
        ``(target, epsilon, repeat, N)`` (coordinates ``head`` and, for a ModularRNN,
        ``module``); over the repeats: ``tasks_solved_mean``, ``tasks_solved_std``,
        ``tasks_solved_sem``, ``accuracy_mean``, ``accuracy_sem`` (std with ddof 1, SEM = std /
        sqrt(repeats); NaN with one repeat); ``base_accuracy`` over ``N`` and
        ``base_tasks_solved`` (the unperturbed network); attrs ``threshold``, ``seed``,
        ``repeats``, ``batches``, ``batch``, ``task``, ``model``, ``n_modules`` (0 for a
        non-modular network), ``method``.

    Examples
    --------
    >>> import torch, trainers
    >>> from trainers.models import ModularRNN
    >>> from trainers.modular_analysis import perturbation_sweep
    >>> net = ModularRNN(12, n_modules=3, n_heads=3, generator=torch.Generator().manual_seed(0))
    >>> ds = perturbation_sweep(net, "parity", [0.0, 0.5], ["recurrent", "feedforward"], repeats=2,
    ...                         seed=0, batches=1, batch=16)
    >>> dict(ds["accuracy"].sizes)
    {'target': 2, 'epsilon': 2, 'repeat': 2, 'N': 3}
    >>> base = trainers.LeakyRNN(8, n_heads=2, generator=torch.Generator().manual_seed(0))
    >>> perturbation_sweep(base, "parity", [0.0, 0.5], repeats=1, seed=0, batches=1, batch=16)["target"].values.tolist()
    ['recurrent', 'tau']
    """
    from tqdm.auto import tqdm

    _check_model(model)
    eps = [_check_eps(e) for e in np.atleast_1d(np.asarray(eps_values, dtype=object))]
    targets = model_targets(model) if targets is None else [_target(t) for t in targets]
    if not targets or not eps:
        raise ValueError("targets and eps_values must not be empty.")
    if len(set(targets)) != len(targets):
        raise ValueError(f"targets {targets} name a group twice; give each once.")
    for t in targets:
        _group(model, t)                     # refuse before evaluating anything
    repeats = check_positive_int("repeats", repeats)
    threshold = _check_threshold(threshold)
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1, dtype=np.uint32)[0])
    seed = check_positive_int("seed", seed, minimum=0)
    Ns = _heads(model, Ns, n_start)
    task = _task(task)
    dev = next(model.parameters()).device
    eval_seed = int(np.random.SeedSequence([seed, 0]).generate_state(1)[0])

    def evaluate(m: torch.nn.Module) -> np.ndarray:
        gen = torch.Generator(device=dev).manual_seed(eval_seed)
        return tasks_solved(m, task, threshold=threshold, Ns=Ns, batches=batches, batch=batch,
                            generator=gen)["accuracy"].values

    base = evaluate(model)
    acc = np.empty((len(targets), len(eps), repeats, len(Ns)))
    bar = tqdm(total=acc.shape[0] * acc.shape[1] * repeats, desc="perturb (Eq. 5)", disable=not progress)
    for ti, t in enumerate(targets):
        for r in range(repeats):
            xi_seed = int(np.random.SeedSequence([seed, 1, list(TARGETS).index(t), r]).generate_state(1)[0])
            direction = _direction(model, t, torch.Generator().manual_seed(xi_seed))
            for ei, e in enumerate(eps):
                acc[ti, ei, r] = base if e == 0.0 else evaluate(_apply(model, t, e, direction))
                bar.update()
    bar.close()
    solved = (acc > threshold).sum(-1)
    s_mean, s_std, s_sem = _spread(solved.astype(float), 2)
    a_mean, _, a_sem = _spread(acc, 2)
    dims = ("target", "epsilon", "repeat", "N")
    te, ten = ("target", "epsilon"), ("target", "epsilon", "N")
    return xr.Dataset(
        {"accuracy": (dims, acc), "tasks_solved": (dims[:-1], solved),
         "tasks_solved_mean": (te, s_mean), "tasks_solved_std": (te, s_std), "tasks_solved_sem": (te, s_sem),
         "accuracy_mean": (ten, a_mean), "accuracy_sem": (ten, a_sem),
         "base_accuracy": (("N",), base), "base_tasks_solved": ((), int((base > threshold).sum()))},
        coords={"target": targets, "epsilon": eps, "repeat": np.arange(repeats), **_head_coords(model, Ns)},
        attrs={"threshold": threshold, "seed": seed, "repeats": repeats, "batches": batches, "batch": batch,
               "task": getattr(task, "name", type(task).__name__), "model": type(model).__name__,
               "n_modules": int(model.n_modules) if isinstance(model, ModularRNN) else 0, "method": EQ5},
    )


# ---------------------------------------------------------------------------- weight conservation
def module_weight_conservation(model: ModularRNN) -> xr.Dataset:
    """How much of each module's W^R and W^FF is kept from the module before it (004 Fig. 5c):
    :func:`dynatools.connectivity.weight_conservation` of consecutive modules' blocks.

    Each block is normalised by its own mean and std and the variance of the change ``W_bar^m -
    W_bar^(m-1)`` taken (lower = more conserved; 0 for an exact or affine copy, about 2 for
    independent weights). W^R uses the off-diagonal entries only (the diagonal is no weight: the
    dynamics hold it at zero).

    Parameters
    ----------
    model : ModularRNN
        With at least 2 modules (W^FF needs 3: module 0 has none).

    Returns
    -------
    xarray.Dataset
        ``recurrent`` and ``feedforward`` over ``module`` = 1 .. n_modules - 1 (the change from
        module m - 1 to m; ``feedforward`` is NaN at module 1, whose predecessor has no W^FF);
        attrs ``recurrent_mean``, ``feedforward_mean`` (NaN when there is no value).

    Examples
    --------
    >>> import torch
    >>> from trainers.models import ModularRNN
    >>> from trainers.modular_analysis import module_weight_conservation
    >>> net = ModularRNN(5, n_modules=1, generator=torch.Generator().manual_seed(0))
    >>> net.add_module(duplicate_recurrent=True, duplicate_feedforward=False)
    >>> float(module_weight_conservation(net)["recurrent"].sel(module=1))     # an exact copy
    0.0
    """
    from dynatools.connectivity import weight_conservation

    if not isinstance(model, ModularRNN):
        raise TypeError(f"model must be a trainers ModularRNN; found {type(model).__name__} (a non-modular "
                        f"network has no modules to compare).")
    n = model.n_modules
    if n < 2:
        raise ValueError(f"this network has {n} module; weight conservation compares consecutive modules "
                         f"and needs at least 2 (grow it first).")
    off = ~torch.eye(model.module_size, dtype=torch.bool)
    rec = weight_conservation([w.detach().cpu().double()[off].numpy() for w in model.W_rec]).values
    ff = np.full(n - 1, np.nan)
    if len(model.W_ff) >= 2:
        ff[1:] = weight_conservation([w.detach().cpu().double().numpy() for w in model.W_ff]).values
    mean = (lambda v: float(np.nanmean(v)) if np.isfinite(v).any() else float("nan"))
    return xr.Dataset({"recurrent": (("module",), rec), "feedforward": (("module",), ff)},
                      coords={"module": np.arange(1, n)},
                      attrs={"recurrent_mean": mean(rec), "feedforward_mean": mean(ff),
                             "method": "dynatools.connectivity.weight_conservation of consecutive modules; "
                                       "W_rec off-diagonal entries (004 Fig. 5c)"})


# ---------------------------------------------------------------------------- figures
#: Okabe-Ito colour-blind-safe palette (as dynatools.plot), one colour per network or target.
_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
_TITLES = {"recurrent": "recurrent weights $W^R$", "feedforward": "feed-forward weights $W^{FF}$",
           "tau": r"timescales $\tau$ (upward only)"}


def _as_sweeps(sweeps: Any) -> dict[str, xr.Dataset]:
    if isinstance(sweeps, xr.Dataset):
        sweeps = {sweeps.attrs.get("label", sweeps.attrs.get("model", "network")): sweeps}
    if not isinstance(sweeps, Mapping) or not sweeps:
        raise TypeError("give a perturbation_sweep Dataset or a dict {label: Dataset} of them.")
    for label, ds in sweeps.items():
        if not isinstance(ds, xr.Dataset) or "tasks_solved" not in ds or "accuracy" not in ds:
            raise TypeError(f"{label!r}: expected a perturbation_sweep Dataset (tasks_solved, accuracy); "
                            f"found {type(ds).__name__}.")
    return dict(sweeps)


def _band(ax: Any, x: np.ndarray, mean: np.ndarray, sem: np.ndarray, **style: Any) -> None:
    ax.plot(x, mean, marker="o", ms=3, **style)
    if np.isfinite(sem).any():
        ax.fill_between(x, mean - np.nan_to_num(sem), mean + np.nan_to_num(sem), alpha=0.2, lw=0,
                        color=style.get("color"))


def plot_tasks_solved(sweeps: Any, *, targets: Sequence[str] | None = None) -> Any:
    """004 Fig. 3: the number of tasks still solved (accuracy > threshold) against the relative
    perturbation strength eps, one panel per target, one line per network (mean over repeats,
    band: SEM over repeats).

    Parameters
    ----------
    sweeps : Dataset or dict of str to Dataset
        :func:`perturbation_sweep` results (modular and non-modular networks overlaid).
    targets : sequence of str, optional
        Panels (default: every target of any sweep, in the order W^R, W^FF, tau).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import torch, trainers
    >>> from trainers.modular_analysis import perturbation_sweep, plot_tasks_solved
    >>> net = trainers.LeakyRNN(8, n_heads=2, generator=torch.Generator().manual_seed(0))
    >>> fig = plot_tasks_solved({"leaky": perturbation_sweep(net, "parity", [0, 1], repeats=2, seed=0,
    ...                                                       batches=1, batch=16)})
    >>> len(fig.axes)
    2
    """
    import matplotlib.pyplot as plt

    runs = _as_sweeps(sweeps)
    present = {str(t) for ds in runs.values() for t in ds["target"].values}
    targets = [t for t in TARGETS if t in present] if targets is None else [_target(t) for t in targets]
    if not targets:
        raise ValueError("no target to draw; the sweeps hold none of the targets asked for.")
    fig, axes = plt.subplots(1, len(targets), figsize=(3.6 * len(targets), 3.2), squeeze=False,
                             constrained_layout=True)
    for ax, t in zip(axes[0], targets):
        for i, (label, ds) in enumerate(runs.items()):
            if t not in [str(v) for v in ds["target"].values]:
                continue
            d = ds.sel(target=t)
            solved = d["tasks_solved"].values.astype(float)
            mean, _, sem = _spread(solved, 1)
            _band(ax, d["epsilon"].values, mean, sem, color=_COLOURS[i % len(_COLOURS)],
                  label=f"{label} ({ds.sizes['N']} heads)")
        ax.set_title(_TITLES[t])
        ax.set_xlabel(r"relative perturbation $\varepsilon$ (Eq. 5)")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    thr = next(iter(runs.values())).attrs.get("threshold", 0.9)
    axes[0][0].set_ylabel(f"tasks solved (accuracy > {thr:g})")
    axes[0][0].legend(fontsize=8)
    return fig


def plot_module_accuracy(sweep: xr.Dataset, *, targets: Sequence[str] | None = None) -> Any:
    """004 Fig. 5a-b: the accuracy of each module (head) on its N against the perturbation
    strength, one panel per target, one line per N (darker: larger N; mean over repeats, band:
    SEM over repeats).

    Parameters
    ----------
    sweep : Dataset
        A :func:`perturbation_sweep` result.
    targets : sequence of str, optional
        Panels (default: W^FF then W^R, as Fig. 5a-b, and tau, those the sweep holds).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import torch
    >>> from trainers.models import ModularRNN
    >>> from trainers.modular_analysis import perturbation_sweep, plot_module_accuracy
    >>> net = ModularRNN(12, n_modules=3, n_heads=3, generator=torch.Generator().manual_seed(0))
    >>> fig = plot_module_accuracy(perturbation_sweep(net, "parity", [0, 1], repeats=2, seed=0, batches=1, batch=16))
    >>> len(fig.axes)       # W^FF, W^R, tau
    3
    """
    import matplotlib.pyplot as plt
    from matplotlib import cm, colors

    if not isinstance(sweep, xr.Dataset):
        raise TypeError(f"plot_module_accuracy draws one network: give one perturbation_sweep Dataset; found "
                        f"{type(sweep).__name__}.")
    ds = next(iter(_as_sweeps(sweep).values()))
    present = [str(t) for t in ds["target"].values]
    order = ("feedforward", "recurrent", "tau")
    targets = [t for t in order if t in present] if targets is None else [_target(t) for t in targets]
    missing = [t for t in targets if t not in present]
    if missing or not targets:
        raise ValueError(f"the sweep holds targets {present}; asked for {targets}.")
    Ns = ds["N"].values
    norm = colors.Normalize(vmin=Ns.min() - 0.5 * max(1, np.ptp(Ns)), vmax=Ns.max())
    cmap = plt.get_cmap("Blues")
    fig, axes = plt.subplots(1, len(targets), figsize=(3.6 * len(targets) + 0.8, 3.2), squeeze=False,
                             constrained_layout=True)
    for ax, t in zip(axes[0], targets):
        d = ds.sel(target=t)
        acc = d["accuracy"].transpose("epsilon", "repeat", "N").values
        mean, _, sem = _spread(acc, 1)
        for k, N in enumerate(Ns):
            _band(ax, d["epsilon"].values, mean[:, k], sem[:, k], color=cmap(norm(N)), label=f"N = {N}")
        ax.axhline(ds.attrs.get("threshold", 0.9), color="0.5", ls=":", lw=1)
        ax.set_title(_TITLES[t])
        ax.set_xlabel(r"relative perturbation $\varepsilon$ (Eq. 5)")
        ax.set_ylim(min(0.4, float(np.nanmin(mean)) - 0.02), 1.02)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("accuracy of each module on its N")
    if len(Ns) <= 8:
        axes[0][-1].legend(fontsize=8, title="module's task", title_fontsize=8)
    else:
        bar = fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=list(axes[0]), label="N (module's task)")
        bar.ax.yaxis.get_major_locator().set_params(integer=True)
    return fig


def plot_weight_conservation(conservation: xr.Dataset) -> Any:
    """004 Fig. 5c: the variance of the normalised weight change between consecutive modules,
    W^R and W^FF (a :func:`module_weight_conservation` result), against the module; lower =
    more conserved.

    Examples
    --------
    >>> import torch
    >>> from trainers.models import ModularRNN
    >>> from trainers.modular_analysis import module_weight_conservation, plot_weight_conservation
    >>> net = ModularRNN(12, n_modules=3, generator=torch.Generator().manual_seed(0))
    >>> fig = plot_weight_conservation(module_weight_conservation(net))
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.4, 3.2), constrained_layout=True)
    m = conservation["module"].values
    for i, (name, label) in enumerate((("recurrent", "$W^R$"), ("feedforward", "$W^{FF}$"))):
        v = conservation[name].values
        if np.isfinite(v).any():
            ax.plot(m, v, marker="o", color=_COLOURS[i],
                    label=f"{label} (mean {np.nanmean(v):.3g})")
    ax.set_xlabel("module m (change from m - 1 to m)")
    ax.set_ylabel("variance of the normalised change")
    ax.set_ylim(bottom=0)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


__all__ = ["TARGETS", "TARGET_NAMES", "PAPER_PAIRS", "trainable_parameters", "modular_parameters",
           "baseline_parameters", "matched_baseline_units", "matched_baselines", "baseline_config", "perturb",
           "model_targets", "tasks_solved", "perturbation_sweep", "module_weight_conservation",
           "plot_tasks_solved", "plot_module_accuracy", "plot_weight_conservation"]
