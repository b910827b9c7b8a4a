"""Robustness of trained networks: ablation of units and perturbation of weights or timescales.

Timescale paper (Khajehabdollahi et al. 2024, ``shared/seeds/000_*``), Sec. 4.3 and App. F;
modular-growth paper (``004_*``, Eq. 5) for perturbations of other weight groups.

Everything goes through the model protocol of DESIGN.md and a ``score`` callable that returns the
accuracy of a model (a number, or one number per trial). For the paper's measure, one long random
sequence per trial read out at every step (App. F), use
``trainers.evaluation.accuracy_scorer(task, N, head=...)``; any other evaluation of your own works
the same way. Results are relative accuracies (Eq. in Sec. 4.3)

    acc_rel = (acc - 0.5) / (acc_base - 0.5),

1 when an intervention changes nothing and about 0 at chance level.

This module imports torch; ``import dynatools`` does not.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import torch
import xarray as xr

from dynatools._validation import (
    check_choice,
    check_positive_int,
    module_parameter,
    resolve_device,
    resolve_seed,
    same_device,
)

Score = Callable[[torch.nn.Module], Any]


def relative_accuracy(acc: Any, acc_base: Any, *, chance: float = 0.5) -> Any:
    """``(acc - chance) / (acc_base - chance)`` (timescale paper, Sec. 4.3).

    Parameters
    ----------
    acc : float, array or DataArray
        Accuracies after the intervention, as fractions in [0, 1].
    acc_base : float, array or DataArray
        Accuracy of the unchanged network; must exceed ``chance``.
    chance : float, default=0.5
        Chance level (binary tasks).

    Examples
    --------
    >>> from dynatools.robustness import relative_accuracy
    >>> relative_accuracy(0.75, 1.0)
    0.5
    """
    base = np.asarray(acc_base, dtype=float)
    if np.any(base <= chance):
        raise ValueError(f"acc_base must exceed the chance level {chance} (found {acc_base}); a network "
                         f"at chance has no accuracy to lose. Accuracies are fractions, not per cent.")
    for name, a in (("acc", acc), ("acc_base", acc_base)):
        arr = np.asarray(a, dtype=float)
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contains NaN or inf; every accuracy must be a number in [0, 1] "
                             f"(did the evaluation run on an empty or diverged network?).")
        if np.any((arr < 0) | (arr > 1)):
            raise ValueError(f"{name} must be fractions in [0, 1]; found values up to {np.nanmax(arr)} "
                             f"(divide per cent by 100).")
    if not isinstance(acc, xr.DataArray):
        acc = np.asarray(acc, dtype=float)
    if not isinstance(acc_base, xr.DataArray):
        acc_base = np.asarray(acc_base, dtype=float)
    out = (acc - chance) / (acc_base - chance)
    return float(out) if np.ndim(out) == 0 and not isinstance(out, xr.DataArray) else out


def _scores(score: Score, model: torch.nn.Module) -> np.ndarray:
    values = np.atleast_1d(np.asarray(score(model), dtype=float))
    if values.ndim != 1 or not np.all(np.isfinite(values)):
        raise ValueError(f"score(model) must return an accuracy or one accuracy per trial; found {values!r}.")
    return values


class AblatedModel(torch.nn.Module):
    """A model with some units removed (returned by :func:`ablate`); it follows the same protocol.

    The wrapped copy has the units' incoming, outgoing, input and readout weights and biases set to
    zero, and their initial state is zero, so their activity and their influence are exactly zero.
    Other attributes are forwarded to the wrapped model.
    """

    def __init__(self, model: torch.nn.Module, keep: torch.Tensor, units: list[int]) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("keep", keep)
        self.ablated_units = units

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["model"], name)

    def initial_state(self, batch: int, **kwargs: Any) -> torch.Tensor:
        return self.model.initial_state(batch, **kwargs) * self.keep

    def step(self, h: torch.Tensor, u: torch.Tensor | None) -> torch.Tensor:
        return self.model.step(h * self.keep, u)

    def forward(self, u: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
        h0 = self.initial_state(u.shape[0]) if h0 is None else h0 * self.keep
        return self.model(u, h0)

    def readout(self, h: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.model.readout(h, *args, **kwargs)


def ablate(model: torch.nn.Module, units: int | Sequence[int]) -> AblatedModel:
    """A copy of ``model`` with ``units`` removed (timescale paper, App. F, Eq. 6).

    Zeroes every weight into and out of each unit (recurrent rows and columns, input weights, the
    readout weights of all heads) and its biases, and starts it from zero, so the unit's activity
    and its influence on the rest of the network and on the outputs are exactly zero. The model is
    not changed.

    Parameters
    ----------
    model : torch.nn.Module
        A model that declares ``unit_axes()`` (every trainers model): for each state_dict entry,
        the axes indexed by unit, each an int or ``(axis, blocks)`` when ``blocks`` gates are
        stacked along it (GRU, LSTM). A state of k * n_units values (the LSTM's [h, c]) is
        masked in each block.
    units : int or sequence of int
        Indices of the units to remove.

    Returns
    -------
    AblatedModel

    Examples
    --------
    >>> import torch, trainers
    >>> from dynatools.robustness import ablate
    >>> net = trainers.LeakyRNN(6, generator=torch.Generator().manual_seed(0))
    >>> H = ablate(net, [1, 4])(torch.rand(2, 20, 1))
    >>> bool((H[..., [1, 4]] == 0).all())
    True
    """
    if not hasattr(model, "unit_axes"):
        raise TypeError(f"{type(model).__name__} does not declare unit_axes(), so it is unknown which "
                        f"weights belong to a unit; add a unit_axes() method returning "
                        f"{{state_dict name: axes indexed by unit}} (see trainers.LeakyRNN.unit_axes).")
    inner = model.model if isinstance(model, AblatedModel) else model
    prior = model.ablated_units if isinstance(model, AblatedModel) else []
    state_size = int(inner.initial_state(1).shape[-1])
    n = int(getattr(inner, "n_units", state_size))
    if state_size % n:
        raise ValueError(f"the state size {state_size} is not a multiple of n_units={n}.")
    units = sorted(set(prior) | {int(u) for u in np.atleast_1d(units)})
    bad = [u for u in units if not 0 <= u < n]
    if bad:
        raise ValueError(f"units {bad} do not exist; the model has {n} units (0..{n - 1}).")
    clone = copy.deepcopy(inner)
    state = clone.state_dict(keep_vars=True)
    idx = torch.as_tensor(units, dtype=torch.long)
    with torch.no_grad():
        for name, axes in clone.unit_axes().items():
            tensor = state[name]
            for entry in axes:             # an axis, or (axis, blocks) for gate-stacked weights
                axis, blocks = entry if isinstance(entry, tuple) else (entry, 1)
                rows = (idx[None, :] + n * torch.arange(blocks)[:, None]).reshape(-1)
                tensor.index_fill_(axis, rows.to(tensor.device), 0.0)
    p = next(clone.parameters())
    keep = torch.ones(n, device=p.device, dtype=p.dtype)
    keep[idx] = 0.0
    return AblatedModel(clone, keep.repeat(state_size // n), units).eval()


def ablation_by_tau(model: torch.nn.Module, score: Score, *, n: int = 20,
                    which: Literal["longest", "shortest"] = "longest",
                    tau: Any = None, device: Any = None, progress: bool = False) -> xr.Dataset:
    """Relative accuracy after removing each of the ``n`` units with the longest (or shortest)
    trained timescale tau, one unit at a time (timescale paper, Sec. 4.3 and Fig. 7).

    Parameters
    ----------
    model : torch.nn.Module
        Declares ``unit_axes()``; its ``effective_tau()`` gives tau unless ``tau`` is passed.
    score : callable
        ``score(model)`` -> accuracy (fraction) or one accuracy per trial, e.g.
        ``trainers.evaluation.accuracy_scorer(task, N, head=...)``.
    n : int, default=20
        Units to test (20 = 4% of the paper's 500-unit networks).
    which : {"longest", "shortest"}, default="longest"
    tau : array (unit,), optional
        Timescales to rank by, for models without ``effective_tau()``. By default the effective
        tau (``clamp(tau, 1)``) ranks the units and ties, such as every unit whose raw tau is
        below 1, are broken by the raw trained tau (attr ``ties``).
    device : str or torch.device, optional
        Where the model is evaluated. Default: the model's device (no copy is moved). Another
        device evaluates a copy of the model moved there (``score`` must then work with a model
        on that device, as ``trainers.evaluation.accuracy_scorer`` does: it draws its inputs
        where the model is).
    progress : bool, default=False
        Show a progress bar over the ablated units.

    Returns
    -------
    xarray.Dataset
        Over ``unit`` (the ablated unit, with coordinate ``tau``) and ``trial``: ``accuracy`` and
        ``relative_accuracy``; attrs ``base_accuracy`` (mean over trials, the reference of the
        relative accuracy), ``which``.

    Examples
    --------
    >>> import torch, trainers
    >>> from dynatools.robustness import ablation_by_tau
    >>> from trainers.evaluation import accuracy_scorer
    >>> net = trainers.LeakyRNN(8, generator=torch.Generator().manual_seed(0))
    >>> score = lambda m: [0.9, 0.8]        # a stand-in; use accuracy_scorer(task, N, head=...)
    >>> ablation_by_tau(net, score, n=2).relative_accuracy.shape
    (2, 2)
    """
    from tqdm.auto import tqdm

    which = check_choice("which", which, ("longest", "shortest"))
    n = check_positive_int("n", n)
    raw = None
    if tau is None:
        if not hasattr(model, "effective_tau"):
            raise TypeError(f"{type(model).__name__} has no effective_tau(); pass tau= (one value per unit).")
        with torch.no_grad():
            tau = model.effective_tau().detach().cpu().numpy()
            if isinstance(getattr(model, "tau", None), torch.Tensor) and model.tau.shape == tau.shape:
                raw = model.tau.detach().cpu().double().numpy()
    tau = np.asarray(tau, dtype=float)
    n_units = int(getattr(model, "n_units", model.initial_state(1).shape[-1]))
    if tau.shape != (n_units,):
        raise ValueError(f"tau has shape {tau.shape}; expected ({n_units},), one value per unit.")
    if not np.all(np.isfinite(tau)):
        raise ValueError("tau contains NaN or inf; pass finite timescales, one per unit.")
    if n > n_units:
        raise ValueError(f"n={n} exceeds the model's {n_units} units.")
    model = _on_device(model, device)
    # Ties of the effective tau (raw values below 1 are all clamped to 1) are broken by the raw
    # trained value, so the "shortest" units do not depend on the unit numbering.
    sign = -1.0 if which == "longest" else 1.0
    keys = (sign * tau,) if raw is None else (sign * raw, sign * tau)     # lexsort: last key first
    order = np.lexsort(keys)[:n]
    base = _scores(score, model)
    base_mean = float(base.mean())
    relative_accuracy(base_mean, base_mean)          # a network at chance: refuse before the sweep
    accs = []
    for u in tqdm(order, desc=f"ablate {which} tau", disable=not progress):
        values = _scores(score, ablate(model, int(u)))
        if values.size != base.size:
            raise ValueError(f"score returned {values.size} trials for an ablated model but {base.size} for "
                             f"the original; it must evaluate the same trials every time.")
        accs.append(values)
    acc = np.stack(accs)
    return xr.Dataset(
        {"accuracy": (("unit", "trial"), acc),
         "relative_accuracy": (("unit", "trial"), relative_accuracy(acc, base_mean))},
        coords={"unit": order, "tau": ("unit", tau[order]), "trial": np.arange(acc.shape[1])},
        attrs={"base_accuracy": base_mean, "which": which,
               "ties": "none" if raw is None else "broken by the raw (unclamped) trained tau",
               "method": "one unit at a time (timescale paper Sec. 4.3, App. F, Eq. 6)"},
    )


def _on_device(model: torch.nn.Module, device: Any) -> torch.nn.Module:
    """``model`` itself (device None or its own), or an evaluation copy moved to ``device``."""
    if device is None:
        return model
    dev = resolve_device(device)
    p = module_parameter(model)
    if p is not None and same_device(p.device, dev):
        return model
    return copy.deepcopy(model).to(dev).eval()


def _parameter(model: torch.nn.Module, target: str) -> torch.nn.Parameter:
    params = dict(model.named_parameters())
    if target not in params:
        raise ValueError(f"target {target!r} is not a parameter of {type(model).__name__}; "
                         f"choose from {sorted(params)}.")
    return params[target]


def perturb(model: torch.nn.Module, epsilons: float | Sequence[float], score: Score, *,
            target: str = "W_rec", repeats: int = 10, positive: bool | None = None,
            seed: int | None = None, device: Any = None, progress: bool = False) -> xr.Dataset:
    """Relative accuracy under random perturbations of one weight group (Eq. 4 of the timescale
    paper; Eq. 5 of the modular-growth paper), swept over ``epsilons``.

    ``W <- W + eps * xi / ||xi|| * ||W||`` with ``xi ~ N(0, I)`` and Frobenius norms; with
    ``positive`` (the default for ``tau``) the perturbation is ``eps * |xi / ||xi|| * ||W|| |``, so
    a timescale is never lowered. Repeat r draws one direction ``xi`` (from ``seed`` and r) and
    scales it by every eps, so the curves over eps are smooth.

    The parameter is perturbed as stored. For a trainers LeakyRNN this means: ``W_rec`` over all
    n^2 entries, as in the paper (xi_W ~ N(0, I^(n x n))), although the dynamics mask the diagonal,
    so the effective strength is about ``eps * sqrt(1 - 1/n)``; and the raw ``tau``, of which the
    dynamics use ``clamp(tau, 1)``, so the part of an upward step that keeps a raw tau below 1 has no
    effect.

    Parameters
    ----------
    model : torch.nn.Module
    epsilons : float or sequence of float
        Relative perturbation strengths (>= 0).
    score : callable
        ``score(model)`` -> accuracy or one accuracy per trial (see :func:`ablation_by_tau`).
    target : str, default="W_rec"
        The name of the parameter to perturb (``model.named_parameters()``), e.g. ``"W_rec"`` or
        ``"tau"`` for a LeakyRNN, ``"W"`` for a WCRNN.
    repeats : int, default=10
    positive : bool, optional
        Default: True for ``"tau"`` (also ``"model.tau"`` of an :class:`AblatedModel`), False
        otherwise.
    seed : int or None, default=None
        Seeds the directions ``xi``; None draws a fresh seed. The seed used is stored in the
        attribute ``seed`` (pass it back to reproduce the result exactly).
    device : str or torch.device, optional
        Where the model is evaluated, as for :func:`ablation_by_tau`.
    progress : bool, default=False
        Show a progress bar over the (repeat, epsilon) evaluations.

    Returns
    -------
    xarray.Dataset
        ``accuracy`` and ``relative_accuracy`` over ``(epsilon, repeat, trial)``; attrs
        ``base_accuracy``, ``target``, ``positive``, ``seed``.

    Examples
    --------
    >>> import torch, trainers
    >>> from dynatools.robustness import perturb
    >>> net = trainers.LeakyRNN(8, generator=torch.Generator().manual_seed(0))
    >>> score = lambda m: 0.9                # a stand-in; use accuracy_scorer(task, N, head=...)
    >>> perturb(net, [0.0, 0.1], score, target="tau", repeats=2).sizes["epsilon"]
    2
    """
    from tqdm.auto import tqdm

    eps = np.atleast_1d(np.asarray(epsilons, dtype=float))
    if eps.ndim != 1 or np.any(eps < 0) or not np.all(np.isfinite(eps)):
        raise ValueError(f"epsilons must be finite numbers >= 0; found {epsilons!r}.")
    repeats = check_positive_int("repeats", repeats)
    _parameter(model, target)
    seed = resolve_seed(seed)
    model = _on_device(model, device)
    original = _parameter(model, target).detach()
    positive = (target.rsplit(".", 1)[-1] == "tau") if positive is None else bool(positive)
    norm = torch.linalg.norm(original)
    base = _scores(score, model)
    base_mean = float(base.mean())
    relative_accuracy(base_mean, base_mean)          # a network at chance: refuse before the sweep
    results = np.empty((len(eps), repeats, base.size))
    bar = tqdm(total=len(eps) * repeats, desc=f"perturb {target}", disable=not progress)
    clone = copy.deepcopy(model).eval()
    param = _parameter(clone, target)
    for r in range(repeats):
        gen = torch.Generator().manual_seed((seed * 1_000_003 + r) % 2**64)
        xi = torch.randn(original.shape, generator=gen, dtype=torch.float64)
        direction = (xi / torch.linalg.norm(xi) * norm.double()).to(original)
        if positive:
            direction = direction.abs()
        for i, e in enumerate(eps):
            with torch.no_grad():
                param.copy_(original + float(e) * direction)
            values = _scores(score, clone)
            if values.size != base.size:
                raise ValueError(f"score returned {values.size} trials for a perturbed model but {base.size} "
                                 f"for the original; it must evaluate the same trials every time.")
            results[i, r] = values
            bar.update()
    bar.close()
    return xr.Dataset(
        {"accuracy": (("epsilon", "repeat", "trial"), results),
         "relative_accuracy": (("epsilon", "repeat", "trial"), relative_accuracy(results, base_mean))},
        coords={"epsilon": eps, "repeat": np.arange(repeats), "trial": np.arange(base.size)},
        attrs={"base_accuracy": base_mean, "target": target, "positive": int(positive), "seed": seed,
               "method": "W + eps * xi/||xi|| * ||W|| (timescale paper Eq. 4)"},
    )


__all__ = ["relative_accuracy", "ablate", "AblatedModel", "ablation_by_tau", "perturb"]
