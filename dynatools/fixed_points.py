"""Fixed points and slow points of recurrent maps, with their linearisation.

Sussillo & Barak (2013, "Opening the black box", Neural Computation 25:626) find the fixed points
of a trained RNN by minimising the speed ``q(h) = 0.5 * ||F(h) - h||^2`` of the map ``F`` from many
initial states sampled from the network's own activity; the minima with ``q = 0`` are fixed
points, shallow minima with small ``q`` are *slow points*, and the linearisation (the Jacobian
and its eigenvalues) at each says how the network computes near it. The seeds of this project
(``shared/seeds/``) explain trained networks through their dynamics (002, Soo, Goudar & Wang 2023,
Sec. 2.1: the rate network of Eq. 1 and 5) and through their Lyapunov spectra and Jacobians (003,
Dubinin & Effenberger 2024, Sec. 2.1, App. A); this module adds the fixed points of the same maps.

The map is any ``step(h, u) -> h_next`` on batched states ``(point, unit)`` (the protocol of
DESIGN.md): a trainers model, a user's RNN or a textbook map. All initial states are optimised at
once as one ``(point, unit)`` tensor on the states' device:

1. **Adam** (``torch.optim.Adam``) on the sum of the per-point ``q``; the gradient of the sum with
   respect to row i is the gradient of ``q_i``, and Adam's update is elementwise, so every point
   follows exactly the path it would follow alone (the benchmark compares with that loop). The
   learning rate decays exponentially to ``lr * lr_final`` over ``max_iter`` iterations; a point
   stops as soon as ``q < tol`` (a per-point convergence mask: only the active rows are stepped).
2. **Duplicates** closer than ``distance`` are merged (the lower ``q`` kept, ``count`` summed), and
   **outliers** (farther from the initial states' centroid than ``outlier_scale`` times the
   farthest initial state) and diverged points are dropped; after polishing, an exact fixed
   point (``q <= tol``) is kept wherever it lies.
3. **Polishing** by batched Levenberg-Marquardt on ``F(h) - h`` (Jacobian ``J - I``): quadratic
   convergence to an exact fixed point (``q`` at the rounding floor), and a descent method that
   stays at a slow point's minimum of ``q`` when there is no root nearby.
4. For every point: ``q``, the speed, the Jacobian ``J = dF/dh`` (the model's analytic
   ``jacobian(h, u)`` when it has one, else ``torch.func.jacrev``), its eigenvalues and
   eigenvectors, the number of unstable modes and the stability class.

**Discrete maps** (``flow=False``): a mode is unstable when ``|lambda| > 1``. **Continuous-time
rate networks** (``flow=True``; detected for models with a float ``dt`` and an ``alpha()`` method,
as ``trainers.models.RateRNN``): the model's step is the Euler step of the flow
``tau_i dh_i/dt = -h_i + f(...)_i`` (002 Eq. 1, 5), ``F(h) = h + dt * g(h)`` with
``g(h) = D_tau^-1 (-h + f(W h + b + W_in u))`` (rate form; current form alike). Hence

* ``F(h) = h`` exactly where ``g(h) = 0``: the fixed points of the Euler map *are* those of the
  flow, at any dt (they do not move with the step size);
* ``J_F = I + dt * J_g``, so the Jacobian of the flow is ``J_g = (J_F - I) / dt`` (per unit of
  ``dt``'s time: 1/ms for trainers' rate networks), and a mode is unstable when
  ``Re(lambda) > 0``. For a common tau, ``lambda * tau = (mu - 1) / (dt / tau)`` with ``mu`` the
  eigenvalue of ``J_F``. The Euler map's own ``|mu| > 1`` would call a stable focus of the flow
  unstable when ``dt`` is large (``|1 + dt lambda| > 1`` although ``Re lambda < 0``), which is why
  the flow is classified, not the map.

Stability classes: ``stable`` (every mode decays), ``unstable`` (some grow, none decays), ``saddle``
(some of each), ``marginal`` (none grows, at least one is neutral within ``marginal_tol``: a line
attractor's direction, ``|lambda| = 1`` or ``Re lambda = 0``).

This module imports torch; ``import dynatools`` does not. ``dynatools.fixed_points`` is both this
module and, called, the function :func:`fixed_points` (``dynatools.fixed_points(step, states)``).
"""

from __future__ import annotations

import inspect
import math
import sys
import types
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch
import xarray as xr

from dynatools._validation import (
    check_finite_parameters,
    check_positive_int,
    resolve_device,
)
from dynatools.lyapunov import _declared_size, _is_shape_error, jacobian_from_step
from dynatools.threads import torch_threads

__all__ = ["fixed_points", "plot_fixed_points", "STABILITY_CLASSES"]

Step = Callable[[torch.Tensor, "torch.Tensor | None"], torch.Tensor]

#: The stability classes of a point (module docstring).
STABILITY_CLASSES = ("stable", "unstable", "saddle", "marginal")
#: Colours of the classes in :func:`plot_fixed_points`.
_COLOURS = {"stable": "tab:blue", "unstable": "tab:red", "saddle": "tab:orange", "marginal": "tab:green"}


# ---------------------------------------------------------------------------- the map
class _Map:
    """One network: the step function, the object it belongs to, its Jacobian and time base."""

    def __init__(self, step: Any, jacobian: Callable | str | None, flow: bool | None, dt: float | None) -> None:
        plain = (types.FunctionType, types.MethodType, types.BuiltinFunctionType, types.BuiltinMethodType)
        if callable(getattr(step, "step", None)) and not isinstance(step, plain):
            owner, fn = step, step.step                 # a model (or any object with a .step method)
        elif callable(step) and not isinstance(step, torch.nn.Module):
            owner, fn = getattr(step, "__self__", None), step
        else:
            raise TypeError(f"step must be a callable step(h, u) -> h_next or a model with a .step method; "
                            f"found {type(step).__name__}.")
        self.owner, self.fn = owner, fn
        if isinstance(owner, torch.nn.Module):
            check_finite_parameters(owner.named_parameters())
        analytic = getattr(owner, "jacobian", None) if owner is not None else None
        if jacobian is None:
            if callable(analytic):
                self.jac, self.source = analytic, "analytic"
            else:
                self.jac, self.source = _autograd_jacobian(fn), "autograd"
        elif jacobian == "autograd":
            self.jac, self.source = _autograd_jacobian(fn), "autograd"
        elif callable(jacobian):
            self.jac, self.source = jacobian, "user"
        else:
            raise ValueError(f"jacobian={jacobian!r}: pass a callable jacobian(h, u), 'autograd' or None "
                             f"(the model's analytic one when it has one, else autograd).")
        model_dt = getattr(owner, "dt", None)
        model_dt = float(model_dt) if isinstance(model_dt, (int, float)) and not isinstance(model_dt, bool) else None
        if flow is None:
            flow = model_dt is not None and callable(getattr(owner, "alpha", None))
        self.flow = bool(flow)
        if self.flow:
            dt = model_dt if dt is None else dt
            if dt is None:
                raise ValueError("flow=True needs the Euler step: pass dt= (the map is h + dt * g(h)); the model "
                                 "declares no dt.")
            if not (isinstance(dt, (int, float)) and not isinstance(dt, bool) and math.isfinite(dt) and dt > 0):
                raise ValueError(f"dt must be a positive number (the Euler step of the flow); found {dt!r}.")
        self.dt = float(dt) if self.flow else 1.0

    def __call__(self, h: torch.Tensor, u: torch.Tensor | None) -> torch.Tensor:
        return self.fn(h, u)


def _autograd_jacobian(fn: Step) -> Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]:
    """``jacrev`` vmapped over the points (:func:`dynatools.lyapunov.jacobian_from_step`); a map
    that does not run under ``vmap`` (data-dependent control flow) is differentiated point by
    point instead."""
    batched = jacobian_from_step(fn)

    def jac(h: torch.Tensor, u: torch.Tensor | None) -> torch.Tensor:
        try:
            return batched(h, u)
        except RuntimeError:
            rows = []
            for i in range(h.shape[0]):
                ui = None if u is None else u[i:i + 1]
                rows.append(torch.func.jacrev(lambda y: fn(y[None], ui)[0])(h[i]))
            return torch.stack(rows)

    return jac


def _members(step: Any) -> list[Any] | None:
    """The networks of an ensemble (``step.members``, as ``trainers.ensemble.Ensemble``) or of a
    list/tuple of maps; None for one network."""
    if isinstance(step, (list, tuple)):
        if not step:
            raise ValueError("step is an empty sequence; pass one map, or one per ensemble member.")
        return list(step)
    members = getattr(step, "members", None)
    if isinstance(members, (list, tuple, torch.nn.ModuleList)) and len(members) and all(
            callable(getattr(m, "step", None)) for m in members):
        return list(members)
    return None


# ---------------------------------------------------------------------------- inputs
def _as_tensor(x: Any, name: str) -> torch.Tensor:
    if isinstance(x, xr.DataArray):
        x = x.values
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if not (t.is_floating_point() or t.dtype in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)):
        raise TypeError(f"{name} must hold real numbers; found dtype {t.dtype}.")
    return t


def _states_table(states: Any, unit_dim: str, k: int | None) -> list[torch.Tensor]:
    """The initial states as one ``(point, unit)`` tensor per network (``k`` members, or None)."""
    if isinstance(states, xr.Dataset):
        if "activity" not in states.data_vars:
            raise ValueError(f"states is a Dataset without 'activity' (found {sorted(map(str, states.data_vars))}); "
                             f"pass a recording or the DataArray of states.")
        states = states["activity"]
    if isinstance(states, xr.DataArray):
        if unit_dim not in states.dims:
            raise ValueError(f"states have dims {tuple(map(str, states.dims))} without {unit_dim!r}; pass "
                             f"unit_dim= (the dim of the state's units) or rename it.")
        if "member" in states.dims:
            if k is None:
                raise ValueError(f"states have a 'member' dim ({states.sizes['member']} members) but step is one "
                                 f"map; pass the ensemble (or a list of maps), or states.sel(member=...).")
            if states.sizes["member"] != k:
                raise ValueError(f"states have {states.sizes['member']} members but the ensemble has {k}.")
            return [_flatten(states.isel(member=i), unit_dim) for i in range(k)]
        table = _flatten(states, unit_dim)
        return [table] * (k or 1)
    t = _as_tensor(states, "states")
    if t.ndim == 1:
        t = t[None]
    if t.ndim == 3 and k is not None:
        if t.shape[0] != k:
            raise ValueError(f"states have shape {tuple(t.shape)}: {t.shape[0]} members, but the ensemble has {k}; "
                             f"pass (member={k}, point, unit) or one (point, unit) table for all.")
        return [t[i] for i in range(k)]
    if t.ndim != 2:
        raise ValueError(f"states have shape {tuple(t.shape)}; expected (point, unit)"
                         + (" or (member, point, unit)" if k is not None else "")
                         + ", e.g. recording.activity.stack(point=('trial', 'time')).")
    return [t] * (k or 1)


def _flatten(da: xr.DataArray, unit_dim: str) -> torch.Tensor:
    """A DataArray of states to ``(point, unit)``: every other dim becomes ``point``; rows with
    NaN (padded trials of a recording) are dropped."""
    others = [d for d in da.dims if d != unit_dim]
    arr = np.asarray(da.transpose(*others, unit_dim).values).reshape(-1, da.sizes[unit_dim])
    keep = np.isfinite(arr).all(1)
    if not keep.any():
        raise ValueError("states hold no finite row (every state has NaN or inf); pass the recording's activity.")
    return torch.as_tensor(arr[keep])


def _inputs_table(inputs: Any, P: int, dev: torch.device, dtype: torch.dtype, d: int | None) -> torch.Tensor | None:
    if inputs is None:
        return None
    u = _as_tensor(inputs, "inputs").detach().to(device=dev, dtype=dtype)
    if u.ndim == 1:
        u = u[None].expand(P, -1)
    if u.ndim != 2 or u.shape[0] != P:
        raise ValueError(f"inputs have shape {tuple(u.shape)}; expected (input_dim,) (one constant input u* for "
                         f"every point) or (point={P}, input_dim).")
    if d is not None and u.shape[1] != d:
        raise ValueError(f"inputs have {u.shape[1]} entries per point but the model takes {d} (model.input_dim); "
                         f"pass u* of shape ({d},).")
    if not bool(torch.isfinite(u).all()):
        raise ValueError("inputs contain NaN or inf; pass a finite constant input u*.")
    if not bool((u == u[:1]).all()):
        raise ValueError("inputs differ between points; fixed points under different inputs are different "
                         "problems (points would be merged and polished across them): call fixed_points once per "
                         "constant input u* of shape (input_dim,).")
    return u.contiguous()


def _subsample(h: torch.Tensor, n_init: int | None) -> torch.Tensor:
    """At most ``n_init`` rows, evenly spaced (deterministic; a recording's trials and times are
    covered evenly)."""
    if n_init is None or h.shape[0] <= n_init:
        return h
    idx = np.unique(np.linspace(0, h.shape[0] - 1, n_init).round().astype(np.int64))
    return h[torch.as_tensor(idx, device=h.device)]


def _positive(name: str, value: Any, fix: str, *, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(float(value)) or float(value) <= 0:
        raise ValueError(f"{name} must be a number > 0 ({fix}); found {value!r}.")
    return float(value)


# ---------------------------------------------------------------------------- the numerics
def _q(F: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    d = F - h
    return 0.5 * (d * d).sum(-1)


def _first_evaluation(net: _Map, h: torch.Tensor, u: torch.Tensor | None) -> torch.Tensor:
    """``F(h0)`` with the caller's errors said in terms of the arguments."""
    try:
        with torch.no_grad():
            F = net(h, u)
    except RuntimeError as exc:
        if not _is_shape_error(exc):
            raise
        raise ValueError(f"step(h, u) failed on states of shape {tuple(h.shape)} ({exc}); pass states "
                         f"(point, unit) with the map's number of units"
                         + ("" if u is None else " and inputs (input_dim,) with its input size") + ".") from exc
    if not isinstance(F, torch.Tensor) or F.shape != h.shape:
        found = tuple(F.shape) if isinstance(F, torch.Tensor) else type(F).__name__
        raise ValueError(f"step(h, u) returned {found} for states of shape {tuple(h.shape)}; a map returns the "
                         f"next state, shaped like h: pass states (point, unit) with the map's number of units.")
    with torch.no_grad():
        again = net(h, u)
    tol = 1e3 * torch.finfo(F.dtype).eps
    if not torch.allclose(again, F, rtol=tol, atol=tol * float(F.nan_to_num(0, 0, 0).abs().max().clamp(min=1)),
                          equal_nan=True):
        raise ValueError("step(h, u) gave different results for the same states: the map is random (a model in "
                         "training mode with noise?); call model.eval() or pass a deterministic step.")
    bad = ~torch.isfinite(F).all(1)
    if bool(bad.any()):
        raise ValueError(f"step(h, u) returned NaN or inf for {int(bad.sum())} of {h.shape[0]} initial states "
                         f"(first: point {int(torch.nonzero(bad)[0])}); fix the map (or the model's weights) or "
                         f"pass states where it is finite.")
    return F


def _adam(net: _Map, h0: torch.Tensor, u: torch.Tensor | None, *, tol: float, max_iter: int, lr: float,
          lr_final: float, progress: bool, window: int = 100, stall: float = 0.5
          ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Adam on ``sum_i q_i`` with a per-point convergence mask: a point stops when ``q < tol``,
    when q diverges, or when its best q fell by less than the fraction ``stall`` during the last
    ``window`` iterations (the polishing takes over). Returns the best state and q of every
    point, and the iterations run."""
    P = h0.shape[0]
    h = h0.clone().requires_grad_(True)
    opt = torch.optim.Adam([h], lr=lr)
    gamma = float(lr_final) ** (1.0 / max(max_iter, 1))
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=gamma)
    best_h = h0.clone()
    with torch.no_grad():
        best_q = _q(net(h0, u), h0)             # max_iter=0 keeps the initial states as they are
    active = torch.ones(P, dtype=torch.bool, device=h0.device)
    ref_q = best_q.clone()
    idx = None                                  # None: every row active (no gather)
    lazy = h0.device.type != "cpu"              # on a GPU, look at the mask only every few steps
    from tqdm.auto import tqdm

    bar = tqdm(total=max_iter, desc="fixed_points", unit="iter", disable=not progress)
    it = 0
    for it in range(1, max_iter + 1):
        x = h if idx is None else h.index_select(0, idx)
        ux = u if (u is None or idx is None) else u.index_select(0, idx)
        F = net(x, ux)
        q = _q(F, x)
        (grad,) = torch.autograd.grad(q.sum(), h)
        with torch.no_grad():
            rows = torch.arange(P, device=h0.device) if idx is None else idx
            qd = q.detach()
            better = qd < best_q[rows]          # NaN compares False: a diverged point keeps its best
            best_q[rows] = torch.where(better, qd, best_q[rows])
            best_h[rows] = torch.where(better[:, None], x.detach(), best_h[rows])
            done = (qd < tol) | ~torch.isfinite(qd)
            active[rows] = active[rows] & ~done
        h.grad = grad
        opt.step()
        sched.step()
        bar.update(1)
        if it % window == 0:                    # stalled: q fell by less than `stall` in a window
            stalled = best_q > (1.0 - stall) * ref_q
            active &= ~stalled
            ref_q = best_q.clone()
        if not lazy or it % 16 == 0:
            n_active = int(active.sum())
            if n_active == 0:
                break
            if n_active < (P if idx is None else idx.numel()):
                idx = torch.nonzero(active).flatten()
    if it < max_iter:                           # every point stopped early: the bar ends where it did
        bar.total = it
        bar.refresh()
    bar.close()
    return best_h, best_q, it


def _dedup(h: torch.Tensor, q: torch.Tensor, count: torch.Tensor, distance: float
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Greedy merge by ascending q: a point within ``distance`` of a kept point joins it."""
    if h.shape[0] == 0:
        return h, q, count
    order = torch.argsort(q).cpu().numpy()
    D = torch.cdist(h.double(), h.double()).cpu().numpy()
    owner = np.full(h.shape[0], -1)
    for i in order:
        if owner[i] >= 0:
            continue
        near = (D[i] <= distance) & (owner < 0)
        owner[near] = i
        owner[i] = i
    keep = np.array([i for i in order if owner[i] == i])
    cnt = count.cpu().numpy()
    merged = np.array([cnt[owner == i].sum() for i in keep])
    k = torch.as_tensor(keep, device=h.device)
    return h[k], q[k], torch.as_tensor(merged, device=count.device)


def _polish(net: _Map, h: torch.Tensor, u: torch.Tensor | None, iters: int, chunk: int) -> tuple[torch.Tensor,
                                                                                                   torch.Tensor]:
    """Batched Levenberg-Marquardt on ``G(h) = F(h) - h`` with ``A = J - I``: the step solves
    ``(A^T A + mu I) d = -A^T G``; a step that lowers q is taken and mu shrinks tenfold, else mu
    grows tenfold (per point). Only the points still moving are computed (a point stops at the
    rounding floor of q, when a step no longer lowers q by a relative 1e-12, or when mu has grown
    1e12-fold: no descent left), and a Jacobian is recomputed only where a step was taken.
    Returns the polished states and their q."""
    out_h, out_q = [], []
    n = h.shape[1]
    eye = torch.eye(n, dtype=h.dtype, device=h.device)
    eps = torch.finfo(h.dtype).eps
    tiny = torch.finfo(h.dtype).tiny
    for s in range(0, h.shape[0], chunk):
        x = h[s:s + chunk].clone()
        m = x.shape[0]
        us = None if u is None else u[s:s + chunk]
        G = net(x, us) - x
        q = 0.5 * (G * G).sum(1)
        AtA = torch.empty(m, n, n, dtype=h.dtype, device=h.device)
        AtG = torch.empty(m, n, dtype=h.dtype, device=h.device)
        mu = torch.full((m,), math.nan, dtype=h.dtype, device=h.device)
        scale = torch.ones(m, dtype=h.dtype, device=h.device)
        stale = torch.ones(m, dtype=torch.bool, device=h.device)
        live = torch.ones(m, dtype=torch.bool, device=h.device)
        floor = 0.5 * n * (4 * eps * (1 + x.abs().amax(1))) ** 2
        for _ in range(iters):
            live &= torch.isfinite(q) & (q > floor) & ~(mu > 1e12 * scale)
            idx = torch.nonzero(live).flatten()
            if idx.numel() == 0:
                break
            st = idx[stale[idx]]
            if st.numel():
                A = net.jac(x[st], None if us is None else us[st]).to(h.dtype) - eye
                AtA[st] = A.mT @ A
                AtG[st] = (A.mT @ G[st, :, None])[..., 0]
                sc = torch.diagonal(AtA[st], dim1=-2, dim2=-1).mean(-1).clamp(min=tiny)
                scale[st] = sc
                mu[st] = torch.where(torch.isnan(mu[st]), 1e-3 * sc, torch.maximum(mu[st], 1e-14 * sc))
                stale[st] = False
            d = torch.linalg.solve(AtA[idx] + mu[idx, None, None] * eye, -AtG[idx])
            xi = x[idx] + d
            Gi = net(xi, None if us is None else us[idx]) - xi
            qi = 0.5 * (Gi * Gi).sum(1)
            ok = torch.isfinite(qi) & (qi < q[idx])
            still = ok & (q[idx] - qi <= 1e-12 * q[idx])         # no progress left: done
            take = idx[ok]
            x[take], G[take], q[take] = xi[ok], Gi[ok], qi[ok]
            stale[take] = True
            live[idx[still]] = False
            mu[idx] = torch.where(ok, mu[idx] / 10, mu[idx] * 10)
        out_h.append(x)
        out_q.append(q)
    return torch.cat(out_h), torch.cat(out_q)


def _linearise(net: _Map, h: torch.Tensor, u: torch.Tensor | None, marginal_tol: float, vectors: bool
               ) -> dict[str, np.ndarray]:
    """Jacobian, its (flow's) eigen decomposition sorted by growth, and the stability class."""
    P, n = h.shape
    if P == 0:
        z = np.zeros((0, n))
        return {"J": np.zeros((0, n, n)), "ev": z.astype(complex), "vec": np.zeros((0, n, n), complex),
                "n_unstable": np.zeros(0, int), "n_marginal": np.zeros(0, int), "cls": np.array([], dtype=object)}
    with torch.no_grad():
        J = net.jac(h, u)
    if tuple(J.shape) != (P, n, n):
        raise ValueError(f"the Jacobian has shape {tuple(J.shape)}; expected {(P, n, n)} = (point, unit, unit).")
    J = J.detach().to("cpu", torch.float64)
    M = (J - torch.eye(n, dtype=torch.float64)) / net.dt if net.flow else J
    if vectors:
        ev, vec = torch.linalg.eig(M)
    else:
        ev, vec = torch.linalg.eigvals(M), None
    ev_np = ev.numpy()
    growth = ev_np.real * net.dt if net.flow else np.abs(ev_np) - 1.0     # > 0: the mode grows
    order = np.argsort(-growth, axis=1, kind="stable")
    ev_np = np.take_along_axis(ev_np, order, 1)
    growth = np.take_along_axis(growth, order, 1)
    vec_np = None
    if vec is not None:
        v = vec.numpy()                                   # columns are eigenvectors
        vec_np = np.take_along_axis(v, order[:, None, :], 2).transpose(0, 2, 1)   # (point, mode, unit)
    n_unstable = (growth > marginal_tol).sum(1)
    n_marginal = (np.abs(growth) <= marginal_tol).sum(1)
    n_stable = n - n_unstable - n_marginal
    cls = np.where(n_unstable == 0, np.where(n_marginal == 0, "stable", "marginal"),
                   np.where(n_stable == 0, "unstable", "saddle")).astype(object)
    return {"J": J.numpy(), "ev": ev_np, "vec": vec_np, "n_unstable": n_unstable, "n_marginal": n_marginal,
            "cls": cls}


def _one_network(net: _Map, h0: torch.Tensor, inputs: Any, opts: dict[str, Any], dev: torch.device,
                 dtype: torch.dtype) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    h0 = _subsample(h0.detach(), opts["n_init"]).to(device=dev, dtype=dtype).contiguous()
    if h0.shape[0] == 0 or h0.shape[1] == 0:
        raise ValueError(f"states have shape {tuple(h0.shape)}; expected (point, unit) with at least one point "
                         f"and one unit.")
    if not bool(torch.isfinite(h0).all()):
        raise ValueError("states contain NaN or inf; drop those rows first (a recording's padded trials are "
                         "dropped when you pass the DataArray).")
    attr, width = _declared_size(net.fn, ("state_size",))
    if width is None and net.owner is not None:
        attr, width = _declared_size(net.owner, ("state_size",))
    if width is not None and h0.shape[1] != width:
        raise ValueError(f"states have {h0.shape[1]} units per point but the model's state has {width} "
                         f"(model.{attr}); pass states of shape (point, {width}), e.g. a recording's activity.")
    _, d = _declared_size(net.owner if net.owner is not None else net.fn, ("input_dim",))
    P, n = h0.shape
    u = _inputs_table(inputs, P, dev, dtype, d)
    _first_evaluation(net, h0, u)
    centre = h0.mean(0)
    radius = float((h0 - centre).norm(dim=1).max())
    spread = float((h0 - centre).norm(dim=1).pow(2).mean().sqrt())
    scale = spread if spread > 0 else max(float(h0.abs().max()), 1.0)
    lr = opts["lr"] if opts["lr"] is not None else 1e-2 * scale / math.sqrt(n)
    distance = opts["distance"] if opts["distance"] is not None else 1e-3 * scale
    work = 6.0 * P * n * n

    def threads() -> Any:
        return torch_threads(work=work) if dev.type == "cpu" else nullcontext()

    with threads(), torch.enable_grad():
        h, q, iters = _adam(net, h0, u, tol=opts["tol"], max_iter=opts["max_iter"], lr=lr,
                            lr_final=opts["lr_final"], progress=opts["progress"])
    diverged = ~torch.isfinite(q) | ~torch.isfinite(h).all(1)
    far = torch.zeros_like(diverged)
    limit = math.inf
    if opts["outlier_scale"] is not None:
        limit = opts["outlier_scale"] * max(radius, scale)
        far = (h - centre).norm(dim=1) > limit
    keep = ~diverged & ~far
    h, q = h[keep], q[keep]
    count = torch.ones(h.shape[0], dtype=torch.int64, device=dev)
    n_candidates = h.shape[0]
    h, q, count = _dedup(h, q, count, distance)
    chunk = max(1, int(2**27 // (8 * n * n)))
    if opts["polish_iter"] > 0 and h.shape[0]:
        with threads(), torch.no_grad():
            h, q = _polish(net, h, _inputs_at(u, h0, h), opts["polish_iter"], chunk)
    fixed = q <= opts["tol"]
    # after polishing an exact fixed point is kept wherever it is; far minima above tol are dropped
    far2 = ~torch.isfinite(h).all(1) | (((h - centre).norm(dim=1) > limit) & ~fixed)
    slow = (~fixed & (q <= opts["slow_q"])) if opts["slow_q"] is not None else torch.zeros_like(fixed)
    kept = (fixed | slow) & ~far2 & torch.isfinite(q)
    n_not_converged = int((~(fixed | slow) & ~far2).sum())
    h, q, count = h[kept], q[kept], count[kept]
    before = h.shape[0]
    h, q, count = _dedup(h, q, count, distance)
    n_dup = (n_candidates - int(kept.numel())) + (before - h.shape[0])
    fixed = q <= opts["tol"]
    lin = _linearise(net, h, _inputs_at(u, h0, h), opts["marginal_tol"], opts["eigenvectors"])
    order = np.lexsort((-count.cpu().numpy(), q.cpu().numpy()))   # by ascending q, then basin size
    out = {
        "state": h.detach().cpu().numpy()[order],
        "q": q.detach().cpu().numpy()[order],
        "count": count.cpu().numpy()[order],
        "kind": np.where(fixed.cpu().numpy(), "fixed", "slow").astype(object)[order],
        "J": lin["J"][order], "ev": lin["ev"][order], "vec": None if lin["vec"] is None else lin["vec"][order],
        "n_unstable": lin["n_unstable"][order], "n_marginal": lin["n_marginal"][order],
        "cls": lin["cls"][order],
    }
    info = {"n_initial": int(P), "iterations": int(iters), "lr": float(lr), "distance": float(distance),
            "n_diverged": int(diverged.sum()), "n_outliers": int(far.sum()) + int(far2.sum()),
            "n_duplicates": int(n_dup), "n_not_converged": n_not_converged, "jacobian": net.source}
    return out, info


def _inputs_at(u: torch.Tensor | None, h0: torch.Tensor, h: torch.Tensor) -> torch.Tensor | None:
    """The inputs of the found points: the constant u* (expanded), or, when the initial states
    had different inputs, the input of the nearest initial state."""
    if u is None:
        return None
    if bool((u == u[:1]).all()):
        return u[:1].expand(h.shape[0], -1)
    nearest = torch.cdist(h.double(), h0.double()).argmin(1)
    return u[nearest]


# ---------------------------------------------------------------------------- the public function
def fixed_points(
    step: Any,
    states: Any,
    *,
    inputs: Any = None,
    tol: float | None = None,
    slow_q: float | None = None,
    max_iter: int = 2000,
    lr: float | None = None,
    lr_final: float = 1e-3,
    polish_iter: int = 30,
    distance: float | None = None,
    outlier_scale: float | None = 10.0,
    n_init: int | None = None,
    flow: bool | None = None,
    dt: float | None = None,
    marginal_tol: float = 1e-6,
    jacobian: Callable | str | None = None,
    eigenvectors: bool = True,
    unit_dim: str = "unit",
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    progress: bool = False,
) -> xr.Dataset:
    r"""Fixed points and slow points of ``h -> step(h, u*)`` found from many initial states at once.

    Minimises ``q(h) = 0.5 * ||step(h, u*) - h||^2`` (Sussillo & Barak 2013) from every initial state,
    as one batched optimisation (Adam, then Levenberg-Marquardt polishing), merges duplicates,
    drops outliers, and linearises the map at every point found (module docstring).

    Parameters
    ----------
    step : callable, model, ensemble, or list of them
        ``step(h, u) -> h_next`` on ``h`` ``(point, unit)``; or a model with a ``step`` method (a
        trainers model, whose analytic ``jacobian(h, u)`` is then used); or an ensemble with
        ``members`` (``trainers.ensemble.Ensemble``) or a list of maps: one search per member, and
        a ``member`` dim in the result.
    states : array_like, torch.Tensor, DataArray or recording Dataset
        Initial states ``(point, unit)``, e.g. sampled from a recording's activity. A DataArray
        (or a recording's ``activity``) has every dim but ``unit_dim`` (and ``member``) flattened
        into ``point``, rows with NaN (padded trials) dropped. For an ensemble: ``(member, point,
        unit)`` or one ``(point, unit)`` table shared by the members.
    inputs : array_like, optional
        The constant input ``u*``: ``(input_dim,)`` for every point (``(point, input_dim)`` is
        accepted when every row is the same; different inputs need one call each).
        None: ``step(h, None)`` (no input; a trainers model then adds its bias only).
    tol : float, optional
        A point with ``q <= tol`` is a fixed point; Adam stops a point once it gets there. Default
        1e-12 in float64, 1e-8 in float32 (rounding limits q to about ``n * eps**2``).
    slow_q : float, optional
        Also keep the minima with ``tol < q <= slow_q`` as slow points (``kind="slow"``). Default
        None: fixed points only.
    max_iter : int, default=2000
        Adam iterations at most.
    lr : float, optional
        Adam's initial learning rate; default ``1e-2 * s / sqrt(unit)`` with ``s`` the RMS distance
        of the initial states from their centroid.
    lr_final : float, default=1e-3
        The learning rate decays exponentially to ``lr * lr_final`` at ``max_iter``.
    polish_iter : int, default=30
        Levenberg-Marquardt iterations after Adam (0: none).
    distance : float, optional
        Points closer than this are one point; default ``1e-3 * s``.
    outlier_scale : float or None, default=10.0
        Drop points farther from the initial states' centroid than ``outlier_scale`` times the
        farthest initial state (None: keep all): before polishing every such candidate, after it
        only the minima above ``tol`` (an exact fixed point is kept wherever it lies).
    n_init : int, optional
        Use at most this many initial states, evenly spaced through ``states`` (deterministic).
    flow : bool, optional
        Classify the flow of a continuous-time network (``Re lambda`` of ``(J - I) / dt``) instead
        of the map (``|lambda|``). Default: True for a model with a float ``dt`` and ``alpha()``
        (trainers' ``RateRNN``), else False.
    dt : float, optional
        The Euler step for ``flow=True``; default the model's ``dt``.
    marginal_tol : float, default=1e-6
        A mode with ``| |lambda| - 1 | <= marginal_tol`` (map) or ``|Re lambda| * dt <=
        marginal_tol`` (flow) is neutral, neither stable nor unstable.
    jacobian : callable or {"autograd"}, optional
        ``jacobian(h, u) -> (point, unit, unit)``; default the model's analytic one, else autograd.
    eigenvectors : bool, default=True
        Store the eigenvectors (``(point, mode, unit)``); False stores the eigenvalues only.
    unit_dim : str, default="unit"
        The units' dim of DataArray states.
    device : str or torch.device, optional
        Default: the model's device; for a bare function where tensor ``states`` are (numpy or
        xarray states: the CPU).
    dtype : torch.dtype, optional
        Default: the model's parameter dtype (``model.double()`` for float64); for a bare map the
        dtype of torch-tensor states; else float64.
    progress : bool, default=False
        Show a progress bar over the Adam iterations.

    Returns
    -------
    xarray.Dataset
        Dims ``point`` (the points found, fixed points first by ascending q), ``unit``,
        ``unit_pre`` and ``mode`` (the least stable first), and ``member`` for an ensemble (members
        that found fewer points are padded: ``count`` 0, ``kind`` and ``stability`` ``""``):

        * ``state`` (point, unit): the point; ``q`` (point); ``speed`` (point): ``||F(h) - h||``
          per step, or ``||dh/dt||`` per unit of ``dt``'s time for a flow;
        * ``kind`` (point): ``"fixed"`` or ``"slow"``; ``count`` (point): how many initial states
          ended there;
        * ``jacobian`` (point, unit, unit_pre): ``dF/dh`` of the map (per step);
        * ``eigenvalue_real``, ``eigenvalue_imag`` (point, mode): of ``J`` (map) or of the flow's
          ``(J - I) / dt``; ``eigenvector_real``, ``eigenvector_imag`` (point, mode, unit);
        * ``n_unstable``, ``n_marginal`` (point); ``stability`` (point): ``stable``,
          ``unstable``, ``saddle`` or ``marginal``.

        Attrs: the parameters, ``time`` (``"discrete"`` or ``"continuous"``), ``dt``,
        ``eigenvalue_units``, ``jacobian`` (analytic / autograd / user) and the counts
        ``n_initial``, ``n_diverged``, ``n_outliers``, ``n_duplicates``, ``n_not_converged``.

    Examples
    --------
    The linear map ``h -> A h + b`` has one fixed point, ``(I - A)^-1 b``, with the eigenvalues of A:

    >>> import numpy as np, torch
    >>> import dynatools
    >>> A, b = np.array([[0.5, 0.2], [-0.1, 0.3]]), np.array([1.0, -1.0])
    >>> step = lambda h, u: h @ torch.as_tensor(A).T + torch.as_tensor(b)
    >>> fp = dynatools.fixed_points(step, np.random.default_rng(0).normal(size=(20, 2)), device="cpu")
    >>> fp.sizes["point"], np.allclose(fp.state[0], np.linalg.solve(np.eye(2) - A, b))
    (1, True)
    >>> str(fp.stability.values[0])
    'stable'
    """
    tol_given = tol
    if tol is not None:
        tol = _positive("tol", tol, "a threshold on q = 0.5 ||F(h) - h||^2, e.g. 1e-12")
    slow_q = _positive("slow_q", slow_q, "the largest q of a slow point, above tol", allow_none=True)
    max_iter = check_positive_int("max_iter", max_iter, minimum=0)
    lr = _positive("lr", lr, "Adam's learning rate, or None for the default", allow_none=True)
    lr_final = _positive("lr_final", lr_final, "the fraction of lr left at max_iter, e.g. 1e-3")
    polish_iter = check_positive_int("polish_iter", polish_iter, minimum=0)
    distance = _positive("distance", distance, "the merge radius of duplicate points, or None", allow_none=True)
    outlier_scale = _positive("outlier_scale", outlier_scale, "or None to keep every point", allow_none=True)
    marginal_tol = float(marginal_tol)
    if not (math.isfinite(marginal_tol) and marginal_tol >= 0):
        raise ValueError(f"marginal_tol must be a number >= 0; found {marginal_tol!r}.")
    if n_init is not None:
        n_init = check_positive_int("n_init", n_init)

    members = _members(step)
    maps = [_Map(m, jacobian, flow, dt) for m in (members if members is not None else [step])]
    tables = _states_table(states, unit_dim, None if members is None else len(maps))
    results, infos = [], []
    for net, table in zip(maps, tables):
        dev = resolve_device(device, net.owner if net.owner is not None else net.fn, like=table)
        dt_ = dtype
        if dt_ is None:
            p = next(net.owner.parameters(), None) if isinstance(net.owner, torch.nn.Module) else None
            if p is not None and p.is_floating_point():
                dt_ = p.dtype
            elif isinstance(states, torch.Tensor) and states.is_floating_point():
                dt_ = states.dtype                     # a bare map: the dtype of tensor states
            else:
                dt_ = torch.float64
        if tol is None:
            tol_used = 1e-12 if dt_ == torch.float64 else 1e-8
        else:
            tol_used = tol
        if slow_q is not None and slow_q <= tol_used:
            raise ValueError(f"slow_q={slow_q:g} must exceed tol={tol_used:g} (slow points lie above the fixed "
                             f"points' tolerance).")
        opts = {"tol": tol_used, "slow_q": slow_q, "max_iter": max_iter, "lr": lr, "lr_final": lr_final,
                "polish_iter": polish_iter, "distance": distance, "outlier_scale": outlier_scale,
                "n_init": n_init, "marginal_tol": marginal_tol, "eigenvectors": bool(eigenvectors),
                "progress": progress}
        out, info = _one_network(net, table, inputs, opts, dev, dt_)
        info["tol"] = tol_used
        info["dtype"] = str(dt_).replace("torch.", "")
        results.append(out)
        infos.append(info)
    net = maps[0]
    attrs = {"method": "Adam on q = 0.5 ||F(h) - h||^2, then Levenberg-Marquardt (Sussillo & Barak 2013)",
             "time": "continuous" if net.flow else "discrete", "dt": net.dt if net.flow else 1.0,
             "eigenvalue_units": "1/(unit of dt)" if net.flow else "multiplier per step",
             "stability_rule": "Re(lambda) of (J - I)/dt vs 0" if net.flow else "|lambda| vs 1",
             "tol_given": "none" if tol_given is None else float(tol_given),
             "slow_q": "none" if slow_q is None else slow_q, "max_iter": max_iter, "lr_final": lr_final,
             "polish_iter": polish_iter, "outlier_scale": "none" if outlier_scale is None else outlier_scale,
             "marginal_tol": marginal_tol, "flow": int(net.flow)}
    if members is None:
        ds = _dataset(results[0], net)
        ds.attrs.update(attrs)
        ds.attrs.update(infos[0])
        return ds
    return _stack_members(results, infos, net, attrs)


def _dataset(r: dict[str, np.ndarray], net: _Map, n_points: int | None = None) -> xr.Dataset:
    P = len(r["q"]) if n_points is None else n_points
    n = r["state"].shape[1] if r["state"].ndim == 2 else 0

    def pad(a: np.ndarray, fill: Any) -> np.ndarray:
        if a.shape[0] == P:
            return a
        out = np.full((P,) + a.shape[1:], fill, dtype=a.dtype if fill is not None else object)
        out[: a.shape[0]] = a
        return out

    speed = np.sqrt(2.0 * r["q"]) / (net.dt if net.flow else 1.0)
    data = {
        "state": (("point", "unit"), pad(r["state"], np.nan)),
        "q": ("point", pad(r["q"], np.nan)),
        "speed": ("point", pad(speed, np.nan)),
        "kind": ("point", pad(r["kind"].astype(str), "")),
        "count": ("point", pad(r["count"].astype(np.int64), 0)),
        "jacobian": (("point", "unit", "unit_pre"), pad(r["J"], np.nan)),
        "eigenvalue_real": (("point", "mode"), pad(r["ev"].real, np.nan)),
        "eigenvalue_imag": (("point", "mode"), pad(r["ev"].imag, np.nan)),
        "n_unstable": ("point", pad(r["n_unstable"].astype(np.int64), -1)),
        "n_marginal": ("point", pad(r["n_marginal"].astype(np.int64), -1)),
        "stability": ("point", pad(r["cls"].astype(str), "")),
    }
    if r["vec"] is not None:
        data["eigenvector_real"] = (("point", "mode", "unit"), pad(r["vec"].real, np.nan))
        data["eigenvector_imag"] = (("point", "mode", "unit"), pad(r["vec"].imag, np.nan))
    ds = xr.Dataset(data, coords={"point": np.arange(P), "unit": np.arange(n), "unit_pre": np.arange(n),
                                  "mode": np.arange(n)})
    ds["q"].attrs["description"] = "0.5 ||F(h) - h||^2 of the map (per step)"
    ds["speed"].attrs["units"] = "state per unit of dt" if net.flow else "state per step"
    return ds


def _stack_members(results: list[dict], infos: list[dict], net: _Map, attrs: dict[str, Any]) -> xr.Dataset:
    P = max(len(r["q"]) for r in results)
    ds = xr.concat([_dataset(r, net, P) for r in results], dim="member", data_vars="all", coords="minimal")
    ds = ds.assign_coords(member=np.arange(len(results)))
    ds.attrs.update(attrs)
    for key in infos[0]:
        values = [i[key] for i in infos]
        if isinstance(values[0], str):
            ds.attrs[key] = values[0]
        else:
            ds[f"{key}_per_member"] = ("member", np.asarray(values))
    return ds


# ---------------------------------------------------------------------------- the figure
def plot_fixed_points(result: xr.Dataset, activity: Any = None, *, components: Sequence[int] = (0, 1),
                      member: Any = None, trials: int | None = 10, eigenvector_length: float | None = None,
                      ax: Any = None, unit_dim: str = "unit", time_dim: str = "time",
                      trial_dim: str = "trial") -> Any:
    """Trajectories and fixed points in the same PCA space (Sussillo & Barak 2013, Fig. 3 style).

    The principal axes are those of the recording's activity (pooled over trials and time, by the
    float64 covariance of :mod:`dynatools.dimensionality`), else of the points themselves.
    Trajectories are thin grey lines; points are coloured by stability (stable blue, unstable red,
    saddle orange, marginal green; slow points hollow), and each unstable mode is drawn as short
    lines through its point: a real mode's eigenvector, or, for a complex pair, the real and
    imaginary parts of its eigenvector (the plane in which it spirals out).

    Parameters
    ----------
    result : xarray.Dataset
        The result of :func:`fixed_points`.
    activity : recording Dataset or DataArray, optional
        ``(trial, time, unit)`` (a recording's ``activity``): the trajectories, and the PCA basis.
        Its units must be the points' state (e.g. rates of a rate-form network).
    components : pair of int, default=(0, 1)
        The principal components on the axes (0 = the first).
    member : optional
        For an ensemble's result (and recording): the member shown; default the first.
    trials : int or None, default=10
        Trajectories drawn (the first ``trials``; None: all).
    eigenvector_length : float, optional
        Half-length of the eigenvector lines in state units; default 5% of the data's extent.
    ax : matplotlib Axes, optional
    unit_dim, time_dim, trial_dim : str
        Dim names of ``activity``.

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> import numpy as np, torch, matplotlib
    >>> matplotlib.use("Agg")
    >>> from dynatools.fixed_points import fixed_points, plot_fixed_points
    >>> fp = fixed_points(lambda h, u: 0.5 * h + 1.0, np.zeros((4, 3)) + np.arange(4)[:, None], device="cpu")
    >>> ax = plot_fixed_points(fp)
    """
    import matplotlib.pyplot as plt

    from dynatools.dimensionality import _moments

    res = result
    if "member" in res.dims:
        res = res.sel(member=member) if member is not None else res.isel(member=0)
        res = res.isel(point=np.flatnonzero(res["count"].values > 0))
    comps = [int(c) for c in components]
    if len(comps) != 2:
        raise ValueError(f"components must name two principal components, e.g. (0, 1); found {components!r}.")
    X = np.asarray(res["state"].values, dtype=np.float64)
    n = X.shape[1]
    act = None
    if activity is not None:
        act = activity["activity"] if isinstance(activity, xr.Dataset) else activity
        if not isinstance(act, xr.DataArray):
            act = xr.DataArray(np.asarray(activity), dims=(trial_dim, time_dim, unit_dim)[-np.ndim(activity):])
        if "member" in act.dims:
            act = act.sel(member=member) if member is not None else act.isel(member=0)
        if act.sizes[unit_dim] != n:
            raise ValueError(f"activity has {act.sizes[unit_dim]} units but the points have {n}; pass the "
                             f"recording of the same network (the activity must be its state).")
        if trial_dim not in act.dims:
            act = act.expand_dims(trial_dim)
        act = act.transpose(trial_dim, time_dim, unit_dim)
    if act is not None:
        acc = None
        for i in range(act.sizes[trial_dim]):
            x = act.isel({trial_dim: i})
            x = x.isel({time_dim: np.flatnonzero(np.isfinite(x.values).all(1))})
            acc = _moments(x, time_dim, unit_dim, 20_000, acc)
        cov = acc.covariance()
        mean = np.ldexp(acc.shift + acc.s1 / acc.count, acc.exponent or 0)
    elif X.shape[0] >= 2:
        mean = X.mean(0)
        cov = np.cov(X.T).reshape(n, n)
    else:
        mean, cov = np.zeros(n), np.eye(n)
    lam, vec = np.linalg.eigh(cov)
    axes = vec[:, np.argsort(lam)[::-1]]
    if max(comps) >= n:
        raise ValueError(f"components {comps} exceed the {n} dimensions of the state.")
    basis = axes[:, comps]

    def project(Y: np.ndarray) -> np.ndarray:
        return (Y - mean) @ basis

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4.5))
    extent = []
    if act is not None:
        shown = act.sizes[trial_dim] if trials is None else min(trials, act.sizes[trial_dim])
        for i in range(shown):
            Y = np.asarray(act.isel({trial_dim: i}).values, dtype=np.float64)
            Z = project(Y[np.isfinite(Y).all(1)])
            ax.plot(Z[:, 0], Z[:, 1], color="0.6", lw=0.6, alpha=0.7, zorder=1)
            extent.append(Z)
    Zp = project(X) if X.size else np.zeros((0, 2))
    extent.append(Zp)
    allz = np.concatenate(extent) if extent else Zp
    span = float(np.ptp(allz, axis=0).max()) if allz.size else 1.0
    half = 0.05 * (span if span > 0 else 1.0) if eigenvector_length is None else float(eigenvector_length)
    cls = res["stability"].values.astype(str)
    kind = res["kind"].values.astype(str)
    if "eigenvector_real" in res and X.size:
        Vr, Vi = res["eigenvector_real"].values, res["eigenvector_imag"].values
        lam_i = res["eigenvalue_imag"].values
        nu = res["n_unstable"].values
        for i in range(X.shape[0]):
            for m in range(int(nu[i])):
                if lam_i[i, m] < 0:             # the conjugate of a pair drawn already
                    continue
                # a real mode: its direction; a complex pair: the plane it rotates in (Re and Im)
                for v in ((Vr[i, m],) if lam_i[i, m] == 0 else (Vr[i, m], Vi[i, m])):
                    v = v / (np.linalg.norm(v) or 1.0)
                    a, b = project(X[i] - half * v), project(X[i] + half * v)
                    ax.plot([a[0], b[0]], [a[1], b[1]], color=_COLOURS["unstable"], lw=1.5, zorder=2)
    for name in STABILITY_CLASSES:
        for k, filled in (("fixed", True), ("slow", False)):
            sel = (cls == name) & (kind == k)
            if sel.any():
                ax.scatter(Zp[sel, 0], Zp[sel, 1], s=40 if filled else 30, zorder=3,
                           facecolors=_COLOURS[name] if filled else "none", edgecolors=_COLOURS[name],
                           label=f"{name}" + ("" if filled else " (slow)") + f" ({int(sel.sum())})")
    ax.set_xlabel(f"PC {comps[0] + 1}")
    ax.set_ylabel(f"PC {comps[1] + 1}")
    if X.size:
        ax.legend(fontsize=8, frameon=False)
    return ax


class _CallableModule(types.ModuleType):
    """``dynatools.fixed_points(...)`` calls :func:`fixed_points` although the name is this module
    (importing ``dynatools.fixed_points`` binds the module under that name in the package)."""

    def __call__(self, *args: Any, **kwargs: Any) -> xr.Dataset:
        return fixed_points(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
#: ``inspect.signature(dynatools.fixed_points)`` is the function's (the convention checks read it)
__signature__ = inspect.signature(fixed_points)
