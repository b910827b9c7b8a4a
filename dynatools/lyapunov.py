"""Lyapunov spectra of recurrent maps by the QR method.

Fading-memory paper (Dubinin & Effenberger 2024, ``shared/seeds/003_*``), Sec. 2.1 (Eq. 2-4) and
Appendix A / Algorithm 1: a set of k tangent vectors ``Q`` is pushed through the Jacobians of the
map, ``Q <- J_t Q``, and re-orthonormalised by a QR decomposition every ``reortho_every`` steps;
the Lyapunov exponents are the time averages of ``log |diag R|`` (Benettin et al. 1980; Eckmann &
Ruelle 1985). The map is any callable ``step(h, u) -> h_next`` on batched states ``(batch, unit)``
(the protocol of DESIGN.md), so trainers models, a user's own RNN or a textbook map all plug in.

This module imports torch; ``import dynatools`` does not.
"""

from __future__ import annotations

import warnings
from contextlib import nullcontext
from typing import Any, Callable

import numpy as np
import torch
import xarray as xr

from dynatools._validation import (
    check_finite_parameters,
    check_positive_int,
    module_parameter,
    resolve_device,
    resolve_seed,
)
from dynatools.threads import torch_threads

__all__ = ["lyapunov_spectrum", "jacobian_from_step"]

Step = Callable[[torch.Tensor, "torch.Tensor | None"], torch.Tensor]


def _default_dtype(dtype: torch.dtype | None, step: Step) -> torch.dtype:
    if dtype is None:
        p = module_parameter(step)
        return p.dtype if p is not None and p.is_floating_point() else torch.float64
    return dtype


def jacobian_from_step(step: Step) -> Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]:
    """Jacobian ``d step(h, u) / d h`` of every batch element, ``(batch, n, n)``, by
    ``torch.func.jacrev`` vmapped over the batch (for maps without an analytic Jacobian)."""
    from torch.func import jacrev, vmap

    def single(h: torch.Tensor, u: torch.Tensor | None) -> torch.Tensor:
        out = step(h[None], None if u is None else u[None])
        return out[0]

    def jac(h: torch.Tensor, u: torch.Tensor | None) -> torch.Tensor:
        if u is None:
            return vmap(lambda x: jacrev(lambda y: single(y, None))(x))(h)
        return vmap(lambda x, v: jacrev(lambda y: single(y, v))(x))(h, u)

    return jac


def _declared_size(step: Any, names: tuple[str, ...]) -> tuple[str, int] | tuple[None, None]:
    """The first of ``names`` that the model behind ``step`` (the object ``model.step`` is bound
    to, or ``step`` itself) declares as an int, e.g. ``("state_size", 8)``; else ``(None, None)``."""
    for owner in (getattr(step, "__self__", None), step):
        if owner is None:
            continue
        for name in names:
            try:
                value = getattr(owner, name, None)
            except Exception:             # a property that fails is no declaration
                value = None
            if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
                return name, int(value)
    return None, None


def _check_model_shapes(step: Any, h: Any, u: Any, *, h_name: str = "h0", u_name: str = "inputs",
                        batch: str = "trajectory") -> None:
    """Refuse, before any step is taken, a state ``h`` ``(batch, unit)`` or inputs ``u``
    ``(batch, time, input_dim)`` that are empty or do not fit the sizes the model declares
    (``state_size`` and ``input_dim``, as trainers models do), with the argument, the shapes and
    the fix.
    Shared by :func:`lyapunov_spectrum` and :func:`dynatools.gradients.gradient_norms`."""
    if h.shape[0] == 0:
        raise ValueError(f"{h_name} has shape {tuple(h.shape)}: its {batch} axis is empty; expected ({batch}, "
                         f"unit) with at least one row (e.g. model.initial_state(1)).")
    if h.shape[1] == 0:
        raise ValueError(f"{h_name} has shape {tuple(h.shape)}: zero units; expected ({batch}, unit) with the "
                         f"map's state size (at least 1).")
    attr, n = _declared_size(step, ("state_size",))     # not n_units: an LSTM's state is [h, c]
    if n is not None and h.shape[1] != n:
        raise ValueError(f"{h_name} has shape {tuple(h.shape)}: {h.shape[1]} units, but the model's "
                         f"state has {n} (model.{attr}); pass {h_name} of shape ({batch}, {n}), e.g. "
                         f"model.initial_state({h.shape[0]}).")
    if u is None:
        return
    if u.shape[1] == 0:
        raise ValueError(f"{u_name} have shape {tuple(u.shape)}: zero time steps; expected ({batch}, time, "
                         f"input_dim) with at least one step.")
    attr, d = _declared_size(step, ("input_dim",))
    if d is not None and u.shape[2] != d:
        raise ValueError(f"{u_name} have shape {tuple(u.shape)}, input_dim {u.shape[2]}, but the model takes "
                         f"{d} inputs (model.{attr}); pass {u_name} of shape ({batch}, time, {d}).")


#: Parts of torch's messages for tensors of mismatched shapes (other RuntimeErrors pass unchanged).
_SHAPE_MESSAGES = ("shapes cannot be multiplied", "size of tensor", "must match the size", "expected size",
                   "mismatch", "cannot be broadcast", "invalid for input of size", "expected input")


def _is_shape_error(exc: Exception) -> bool:
    return type(exc) is RuntimeError and any(m in str(exc) for m in _SHAPE_MESSAGES)


def _first_step_failed(exc: Exception, h: Any, u: Any, *, h_name: str = "h0", u_name: str = "inputs",
                       batch: str = "trajectory") -> ValueError:
    """A shape error of torch on the first step, said in terms of the caller's arguments."""
    found = f"{h_name} of shape {tuple(h.shape)}" + ("" if u is None else f" and {u_name} of shape {tuple(u.shape)}")
    return ValueError(f"step(h, u) failed on the first step with {found} ({type(exc).__name__}: {exc}). "
                      f"Check that {h_name} is ({batch}, unit) with the map's number of units"
                      + ("" if u is None else f" and {u_name} ({batch}, time, input_dim) with its input size")
                      + ".")


def _analytic_jacobian(step: Step):
    owner = getattr(step, "__self__", None)
    fn = getattr(owner, "jacobian", None) if owner is not None else None
    return fn if callable(fn) else None


def lyapunov_spectrum(
    step: Step,
    h0: Any,
    inputs: Any = None,
    *,
    steps: int | None = None,
    k: int | None = None,
    warmup: int = 0,
    reortho_every: int = 1,
    jacobian: Callable | str | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    seed: int | None = None,
    progress: bool = False,
) -> xr.Dataset:
    r"""Lyapunov exponents of the map ``h_{t+1} = step(h_t, u_t)`` along one or more trajectories.

    Parameters
    ----------
    step : callable
        ``step(h, u) -> h_next`` with ``h`` of shape ``(trajectory, unit)`` and ``u`` of shape
        ``(trajectory, input_dim)`` or None (autonomous map). A trainers model's ``model.step``
        works, and its analytic ``model.jacobian`` is then used.
    h0 : array_like or torch.Tensor
        Initial states, ``(trajectory, unit)``; a 1-D array is one trajectory.
    inputs : array_like or torch.Tensor, optional
        ``(trajectory, time, input_dim)``; the number of steps is its time length. None: the map
        is autonomous and ``steps`` must be given.
    steps : int, optional
        Number of steps for an autonomous map (including ``warmup``).
    k : int, optional
        Number of exponents (the largest k); default all, ``k = unit``.
    warmup : int, default=0
        Steps run first (state and tangent vectors evolve) but not averaged, so that the tangent
        vectors align with the dynamics.
    reortho_every : int, default=1
        Steps between QR re-orthonormalisations (larger is faster; too large overflows for strongly
        expanding maps).
    jacobian : callable or {"autograd"}, optional
        ``jacobian(h, u) -> (trajectory, unit, unit)``. Default: the model's analytic ``jacobian``
        when ``step`` is a bound method of an object that has one, else ``torch.func.jacrev``.
    device : str or torch.device, optional
        Default: where the model's parameters are when ``step`` is a bound method of a
        ``torch.nn.Module`` (``model.step``); else where ``h0`` is when it is a torch tensor; else
        CUDA when available, else CPU. A device other than the model's is refused (move the model
        first).
    dtype : torch.dtype, optional
        Precision of the state and tangent vectors; the log-diagonals are always accumulated in
        float64. Default: the model's parameter dtype for ``model.step`` (call ``model.double()``
        for float64 dynamics), else float64. float32 is faster and accurate to about 1e-5 per
        step; with it, exponents below about ``log(1e-38) / reortho_every`` underflow (a
        RuntimeWarning says so).
    seed : int or None, default=None
        Seeds the random orthonormal initial tangent vectors; None draws a fresh seed. The seed
        used is stored in the attribute ``seed``: pass it back to reproduce the result exactly.
    progress : bool, default=False
        Show a progress bar.

    Returns
    -------
    xarray.Dataset
        ``lyapunov`` (dim ``exponent``, largest first): mean over trajectories, natural log per
        step; ``lyapunov_std`` (spread over trajectories); ``per_trajectory``
        (``trajectory, exponent``); ``running`` (``time, exponent``): the running estimate after
        each re-orthonormalisation, averaged over trajectories (the convergence curves of
        Fig. 2B). Attributes record the parameters. Diverged trajectories (non-finite states or
        tangent vectors) report ``inf`` in ``per_trajectory`` and raise a RuntimeWarning;
        ``lyapunov``, ``lyapunov_std`` and ``running`` are over the other trajectories (``inf``
        if all diverged), and the attribute ``diverged`` counts them.

    Examples
    --------
    The logistic map at r = 4 has the exponent ln 2:

    >>> import numpy as np, torch
    >>> from dynatools.lyapunov import lyapunov_spectrum
    >>> logistic = lambda h, u: 4.0 * h * (1.0 - h)
    >>> res = lyapunov_spectrum(logistic, np.linspace(0.1, 0.9, 16)[:, None], steps=5000, warmup=100, device="cpu")
    >>> bool(abs(float(res.lyapunov[0]) - np.log(2)) < 0.01)
    True
    """
    dev = resolve_device(device, step, like=h0)
    dtype = _default_dtype(dtype, step)
    owner = getattr(step, "__self__", None)
    if isinstance(owner, torch.nn.Module):
        check_finite_parameters(owner.named_parameters())
    h = torch.as_tensor(np.asarray(h0) if not isinstance(h0, torch.Tensor) else h0)
    if h.ndim == 1:
        h = h[None]
    if h.ndim != 2:
        raise ValueError(f"h0 has shape {tuple(h.shape)}; expected (trajectory, unit) or (unit,).")
    h = h.to(device=dev, dtype=dtype)
    n_traj, n = h.shape
    if inputs is not None:
        u_all = torch.as_tensor(np.asarray(inputs) if not isinstance(inputs, torch.Tensor) else inputs)
        if u_all.ndim != 3 or u_all.shape[0] != n_traj:
            raise ValueError(f"inputs have shape {tuple(u_all.shape)}; expected (trajectory={n_traj}, "
                             f"time, input_dim).")
        _check_model_shapes(step, h, u_all)
        u_all = u_all.to(device=dev, dtype=dtype)
        total = u_all.shape[1]
        if steps is not None and steps != total:
            raise ValueError(f"steps={steps} differs from the inputs' time length {total}; give one.")
    else:
        if steps is None:
            raise ValueError("an autonomous map (inputs=None) needs steps=.")
        _check_model_shapes(step, h, None)
        u_all = None
        total = check_positive_int("steps", steps)
    k = n if k is None else check_positive_int("k", k)
    if k > n:
        raise ValueError(f"k={k} exceeds the state dimension {n}; a map of {n} units has {n} exponents.")
    warmup = check_positive_int("warmup", warmup, minimum=0)
    reortho_every = check_positive_int("reortho_every", reortho_every)
    if warmup >= total:
        raise ValueError(f"warmup={warmup} leaves no step to average (total {total} steps).")

    if jacobian is None:
        jacobian = _analytic_jacobian(step)
        source = "analytic" if jacobian is not None else "autograd"
        if jacobian is None:
            jacobian = jacobian_from_step(step)
    elif jacobian == "autograd":
        jacobian, source = jacobian_from_step(step), "autograd"
    elif callable(jacobian):
        source = "user"
    else:
        raise ValueError(f"jacobian={jacobian!r}: pass a callable, 'autograd' or None.")

    seed = resolve_seed(seed)
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    Q = torch.linalg.qr(torch.randn(n_traj, n, k, generator=gen, dtype=torch.float64))[0]
    Q = Q.to(device=dev, dtype=dtype)
    log_sum = torch.zeros(n_traj, k, dtype=torch.float64, device=dev)
    diverged = torch.zeros(n_traj, dtype=torch.bool, device=dev)
    underflowed = torch.zeros(n_traj, dtype=torch.bool, device=dev)
    lazy = dev.type != "cpu"          # on a GPU: no data-dependent branch, so no sync every step
    running: list[torch.Tensor] = []
    running_time: list[int] = []
    averaged = 0

    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc="lyapunov", unit="step", disable=not progress)
    # a loop of small products on the CPU: one thread unless the problem is large (dynatools.threads)
    threads = torch_threads(work=2.0 * n_traj * n * n * (k + 1)) if dev.type == "cpu" else nullcontext()
    with torch.no_grad(), threads:
        for t in range(total):
            u = None if u_all is None else u_all[:, t]
            try:
                h_next = step(h, u)
                if h_next.shape != h.shape:
                    raise ValueError(f"step(h, u) returned shape {tuple(h_next.shape)} for h of shape "
                                     f"{tuple(h.shape)}; a map must return a state of its input's shape.")
                J = jacobian(h, u)
            except RuntimeError as exc:          # torch's own shape messages, on the first step
                if t or not _is_shape_error(exc):
                    raise
                raise _first_step_failed(exc, h, u_all) from exc
            if J.shape != (n_traj, n, n):
                raise ValueError(f"the Jacobian has shape {tuple(J.shape)}; expected {(n_traj, n, n)}.")
            Q = torch.bmm(J.to(dtype), Q)
            h = h_next
            bad = ~torch.isfinite(h).all(1)          # the state is cheap to check every step
            if lazy or bad.any():
                diverged |= bad
                h = torch.where(bad[:, None], torch.zeros_like(h), h)
                Q = torch.where(bad[:, None, None], torch.eye(n, k, dtype=dtype, device=dev), Q)
            if (t + 1) % reortho_every == 0 or t + 1 in (total, warmup):
                Q, R = torch.linalg.qr(Q)
                d = torch.diagonal(R, dim1=-2, dim2=-1)
                bad = torch.isnan(d).any(1) | torch.isposinf(d.abs()).any(1)  # tangent vectors overflowed
                if lazy or bad.any():
                    diverged |= bad
                    Q = torch.where(bad[:, None, None], torch.eye(n, k, dtype=dtype, device=dev), Q)
                    d = torch.where(bad[:, None], torch.ones_like(d), d)
                underflowed |= (d == 0).any(1) & ~diverged  # a direction shrank to exactly zero
                sign = torch.where(d < 0, -1.0, 1.0).to(dtype)
                Q = Q * sign[:, None, :]                    # diag(R) > 0 convention
                if t + 1 > warmup:
                    log_sum += torch.log(d.abs().to(torch.float64))
                    averaged = t + 1 - warmup
                    live = ~diverged
                    running.append(torch.where(live[:, None], log_sum / averaged, 0.0).sum(0)
                                   / live.sum().clamp(min=1))
                    running_time.append(t + 1)
            bar.update(1)
        bar.close()
    per_traj = (log_sum / max(averaged, 1)).cpu().numpy()
    gone = diverged.cpu().numpy()
    if gone.any():
        idx = np.flatnonzero(gone).tolist()
        warnings.warn(f"trajectories {idx} diverged (non-finite state or tangent vectors); their "
                      f"exponents are reported as inf and the means are over the other "
                      f"{int((~gone).sum())}.", RuntimeWarning, stacklevel=2)
        per_traj[gone] = np.inf
    if underflowed.any():
        idx = torch.nonzero(underflowed).flatten().tolist()
        floor = np.log(torch.finfo(dtype).tiny) / reortho_every
        warnings.warn(f"tangent vectors of trajectories {idx} shrank to exactly zero, so some exponents read "
                      f"-inf. Either the map is singular along some direction (a Jacobian with zero rows, e.g. "
                      f"silent ReLU units: the exponent is truly -inf), or a direction shrank below the "
                      f"{str(dtype).replace('torch.', '')} range between two QR steps (exponents below about "
                      f"{floor:.3g} per step at reortho_every={reortho_every}): then lower reortho_every or use "
                      f"float64.", RuntimeWarning, stacklevel=2)
    live = per_traj[~gone]
    mean = live.mean(0) if live.size else np.full(k, np.inf)
    order = np.argsort(-np.nan_to_num(mean, nan=-np.inf, posinf=np.inf))
    per_traj, mean = per_traj[:, order], mean[order]
    run = torch.stack(running).cpu().numpy()[:, order] if running else np.empty((0, k))
    if not live.size:
        run[:] = np.inf
    ok = np.isfinite(per_traj).all(1)
    finite_std = per_traj[ok].std(0) if ok.any() else np.full(k, np.nan)
    ds = xr.Dataset(
        {
            "lyapunov": ("exponent", mean),
            "lyapunov_std": ("exponent", finite_std),
            "per_trajectory": (("trajectory", "exponent"), per_traj),
            "running": (("time", "exponent"), run),
        },
        coords={"exponent": np.arange(k), "trajectory": np.arange(n_traj),
                "time": np.asarray(running_time)},
        attrs={"units": "natural log per step", "steps": total, "warmup": warmup,
               "reortho_every": reortho_every, "k": k, "jacobian": source,
               "dtype": str(dtype).replace("torch.", ""), "method": "QR (Benettin)",
               "diverged": int(diverged.sum()), "underflowed": int(underflowed.sum()), "seed": int(seed)},
    )
    ds["lyapunov"].attrs["units"] = "1/step (natural log)"
    return ds
