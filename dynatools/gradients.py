"""Gradient propagation through time: norms of dL/dh_t at every step of an unrolled RNN.

Fading-memory paper (Dubinin & Effenberger 2024, ``shared/seeds/003_*``), Eq. 10 and Fig. 2D:
``dL/dh_t = (V^{D-t})^T dL/dh_D`` -- the variational term of the dynamics carries the error back
from the readout at the last step D, so these norms show exploding or vanishing gradients.

This module imports torch; ``import dynatools`` does not.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any, Callable

import numpy as np
import torch
import xarray as xr

from dynatools._validation import check_finite_parameters, resolve_device
from dynatools.lyapunov import _check_model_shapes, _first_step_failed, _is_shape_error
from dynatools.threads import torch_threads

__all__ = ["gradient_norms"]


def gradient_norms(model: Any, inputs: Any, targets: Any = None,
                   loss: Callable[[torch.Tensor, Any], torch.Tensor] | None = None, *,
                   h0: Any = None, device: Any = None) -> xr.DataArray:
    """L2 and L-infinity norms of the loss gradient with respect to every state ``h_t``.

    The network is unrolled with ``step``: ``h_{t+1} = step(h_t, u_t)`` for t = 0..D-1, the
    readout is applied to ``h_D`` and ``loss(readout(h_D), targets)`` is differentiated with
    respect to ``h_0 .. h_D``.

    Parameters
    ----------
    model : object or callable
        A model with the protocol of DESIGN.md (``step``, ``initial_state``, ``readout``), or a
        bare ``step(h, u)`` callable (then ``h0`` is required and the readout is the identity).
    inputs : tensor or array
        ``(batch, time, input_dim)``, D = time steps; or an int D for an autonomous map
        (``u = None``).
    targets : optional
        Passed to ``loss`` unchanged.
    loss : callable, optional
        ``loss(outputs, targets) -> scalar``; default the sum of the outputs (so that dL/dh_D is
        all ones: the pure propagation of the Jacobian products).
    h0 : tensor or array, optional
        ``(batch, state)``; default ``model.initial_state(batch)``.
    device : str or torch.device, optional
        Where the network is unrolled. Default: the model's device (its parameters', also for a
        bound ``model.step``); else where ``h0`` is when it is a torch tensor; else CUDA when
        available, else CPU. ``h0`` and the inputs are moved there; a device other than the
        model's is refused (move the model first).

    Returns
    -------
    xarray.DataArray
        Dims ``("norm", "time")`` with ``norm = ["l2", "linf"]`` and ``time = 0..D``; each value is
        the norm of ``dL/dh_t`` over the whole batch and all units.

    Examples
    --------
    A linear map h -> 0.5 h: the gradient halves at every step back from the end.

    >>> import torch
    >>> from dynatools.gradients import gradient_norms
    >>> g = gradient_norms(lambda h, u: 0.5 * h, 3, h0=torch.ones(1, 2, dtype=torch.float64))
    >>> g.sel(norm="linf").values.tolist()
    [0.125, 0.25, 0.5, 1.0]
    """
    step = getattr(model, "step", model)
    if not callable(step):
        raise TypeError("model must have a step(h, u) method or be a step callable.")
    if isinstance(model, torch.nn.Module):
        check_finite_parameters(model.named_parameters())
    if isinstance(inputs, (int, np.integer)):
        n_steps, u_all = int(inputs), None
        if n_steps < 1:
            raise ValueError(f"the number of steps must be positive; found {n_steps}.")
    else:
        u_all = inputs if isinstance(inputs, torch.Tensor) else torch.as_tensor(np.asarray(inputs))
        if u_all.ndim != 3:
            raise ValueError(f"inputs have shape {tuple(u_all.shape)}; expected (batch, time, input_dim) "
                             f"or an int number of steps.")
        n_steps = u_all.shape[1]
        if u_all.shape[0] == 0:
            raise ValueError(f"inputs have shape {tuple(u_all.shape)}: an empty batch; expected (batch, time, "
                             f"input_dim) with at least one sequence.")
    if h0 is None:
        if not hasattr(model, "initial_state") or u_all is None:
            raise ValueError("pass h0= (batch, state): this model has no initial_state or the batch size is unknown.")
        h0 = model.initial_state(u_all.shape[0])
    dev = resolve_device(device, model if isinstance(model, torch.nn.Module) else step, like=h0)
    h0 = (h0 if isinstance(h0, torch.Tensor) else torch.as_tensor(np.asarray(h0))).to(dev)
    if h0.ndim != 2:
        raise ValueError(f"h0 has shape {tuple(h0.shape)}; expected (batch, state), e.g. "
                         f"model.initial_state(batch).")
    if u_all is not None and u_all.shape[0] != h0.shape[0]:
        raise ValueError(f"h0 has shape {tuple(h0.shape)} but inputs {tuple(u_all.shape)}; expected one state per "
                         f"input sequence: pass h0 of shape ({u_all.shape[0]}, {h0.shape[1]}).")
    _check_model_shapes(step, h0, u_all, u_name="inputs", batch="batch")
    if u_all is not None:
        u_all = u_all.to(device=dev, dtype=h0.dtype)
    h = h0.detach().clone().requires_grad_(True)
    states = [h]
    n = h0.shape[1]
    threads = torch_threads(work=6.0 * h0.shape[0] * n * n) if dev.type == "cpu" else nullcontext()
    with torch.enable_grad(), threads:      # forward + backward of small steps: dynatools.threads
        for t in range(n_steps):
            try:
                h = step(h, None if u_all is None else u_all[:, t])
            except RuntimeError as exc:           # torch's own shape messages, on the first step
                if t or not _is_shape_error(exc):
                    raise
                raise _first_step_failed(exc, h0, u_all, batch="batch") from exc
            if h.shape != states[0].shape:
                raise ValueError(f"step returned shape {tuple(h.shape)} for a state of shape "
                                 f"{tuple(states[0].shape)}.")
            states.append(h)
        out = model.readout(h) if hasattr(model, "readout") else h
        value = out.sum() if loss is None else loss(out, targets)
        if value.numel() != 1:
            raise ValueError("loss must return a scalar.")
        if not torch.isfinite(value):
            raise ValueError(f"the loss is {float(value.detach())}: the network's states diverged over the {n_steps} "
                             f"steps (or h0 / the inputs hold NaN); its gradients would be meaningless.")
        grads = torch.autograd.grad(value.reshape(()), states, allow_unused=True)
    l2, linf = [], []
    for g in grads:
        if g is None:
            l2.append(0.0)
            linf.append(0.0)
        else:
            g = g.detach().to(torch.float64)
            l2.append(float(torch.linalg.vector_norm(g)))
            linf.append(float(g.abs().max()))
    da = xr.DataArray(np.array([l2, linf]), dims=("norm", "time"),
                      coords={"norm": ["l2", "linf"], "time": np.arange(n_steps + 1)},
                      name="gradient_norm",
                      attrs={"description": "norm of dL/dh_t over batch and units", "steps": n_steps})
    return da
