"""The Euler steps of a rate network (002 Eq. 1, 5; 001) as one autograd function.

Forward: the time loop without autograd bookkeeping (``addmm``, the activation, ``lerp`` per
step). Backward: back-propagation through time written out, with the weight and timescale
gradients of all steps as single matrix products. It computes the same gradients as autograd
through :meth:`trainers.models.RateRNN.scan`'s loop, in the same matrix products (so
:func:`trainers.ensemble.training_flops` counts it too), with far fewer operations per step.
``generate_vmap_rule``: it runs under ``torch.func.vmap`` (ensembles). First derivatives only:
the Hessian code turns it off (``model.fused = False``).

Skip connections through time (002 Sec. 3.2-3.3, Eq. 8-9) are part of the recurrence: with
``skip = theta > 1`` and ``beta < 1``, the state at the end of every window of ``theta`` steps
(steps ``s+1 .. s+theta`` from the window's start state ``h_s``) is mixed,
``h_{s+theta} <- beta h_{s+theta} + (1 - beta) e_s``, with ``e_s = h_s`` (SCTT, Eq. 8) or the
coarse Euler estimate ``e_s = h_s + theta (h_{s+1} - h_s)`` (DASC, Eq. 9: ``h_{s+1} - h_s`` is
``dr/dt dt`` at ``h_s``, the first step's own increment). The mixed state goes on.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable


def activation(z: torch.Tensor, name: str) -> torch.Tensor:
    """``f(z)`` of a rate network."""
    if name == "relu":
        return torch.relu(z)
    if name == "tanh":
        return torch.tanh(z)
    if name == "softplus":
        return torch.nn.functional.softplus(z)
    return z


def activation_grad(z: torch.Tensor, name: str) -> torch.Tensor:
    """``f'(z)``."""
    if name == "relu":
        return (z > 0).to(z.dtype)
    if name == "tanh":
        return 1.0 - torch.tanh(z) ** 2
    if name == "softplus":
        return torch.sigmoid(z)
    return torch.ones_like(z)


def _steps(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The time steps of ``(..., batch, time, unit)`` as contiguous ``(..., batch, unit)`` blocks."""
    return x.movedim(-2, 0).contiguous().unbind(0)


def _join(steps: list[torch.Tensor]) -> torch.Tensor:
    """Inverse of :func:`_steps`."""
    return torch.stack(steps, 0).movedim(0, -2)


def _per_unit(alpha: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """``alpha`` ``(..., unit)`` shaped to broadcast against states ``(..., batch, unit)``."""
    return alpha if alpha.ndim == 1 else alpha.unsqueeze(-2)


class RateScan(torch.autograd.Function):
    """``RateScan.apply(h0, ext, alpha, W, form, activation, skip, beta, aligned) -> (H, Z)`` for
    ``h0`` ``(batch, unit)``, ``ext`` ``(batch, time, unit)``, ``alpha`` ``(unit,)``, ``W`` ``(unit, unit)``, or
    the same with a leading member axis on all four (stacked networks: batched products):

    * ``form="rate"``: ``Z_t = ext_t + h_{t-1} W^T``, ``h_t = h_{t-1} + alpha (f(Z_t) - h_{t-1})``;
    * ``form="current"``: ``Z_t = ext_t + f(h_{t-1}) W^T``, ``h_t = h_{t-1} + alpha (Z_t - h_{t-1})``.

    ``H`` ``(batch, time, unit)`` holds the states; ``Z`` (not differentiable) the drives.
    ``skip``, ``beta``, ``aligned``: the skip connections of the module docstring (``skip=1`` or
    ``beta=1``: none; ``aligned``: DASC, else SCTT)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(h0, ext, alpha, W, form, name, skip=1, beta=1.0, aligned=False):  # type: ignore[override]
        Wt = W.mT
        a = _per_unit(alpha, h0)
        product = torch.addmm if h0.ndim == 2 else torch.baddbmm
        mixing = _mixing(skip, beta, aligned)
        hs, zs, h = [], [], h0
        start = first = h0
        for t, ext_t in enumerate(_steps(ext)):
            if mixing and t % skip == 0:
                start = h
            if form == "rate":
                z = product(ext_t, h, Wt)
                h = torch.lerp(h, activation(z, name), a)
            else:
                z = product(ext_t, activation(h, name), Wt)
                h = torch.lerp(h, z, a)
            if mixing:
                if t % skip == 0:
                    first = h
                if t % skip == skip - 1:
                    estimate = torch.lerp(start, first, float(skip)) if aligned else start
                    h = torch.lerp(estimate, h, beta)
            zs.append(z)
            hs.append(h)
        return _join(hs), _join(zs)

    @staticmethod
    def setup_context(ctx, inputs, output):
        h0, _, alpha, W, form, name = inputs[:6]
        skip, beta, aligned = (tuple(inputs[6:]) + (1, 1.0, False)[len(inputs) - 6:])[:3]
        H, Z = output
        ctx.save_for_backward(h0, alpha, W, H, Z)
        ctx.form, ctx.name = form, name
        ctx.mix = (int(skip), float(beta), bool(aligned)) if _mixing(skip, beta, aligned) else None
        ctx.mark_non_differentiable(Z)

    @staticmethod
    @once_differentiable
    def backward(ctx, gH, gZ):  # type: ignore[override]
        h0, alpha, W, H, Z = ctx.saved_tensors
        need_h0, need_ext, need_alpha, need_W = ctx.needs_input_grad[:4]
        Hprev = torch.cat([h0.unsqueeze(-2), H.narrow(-2, 0, H.shape[-2] - 1)], -2)
        T = H.shape[-2]
        a = _per_unit(alpha, h0)
        keep = 1.0 - a
        if ctx.form == "rate":
            into_z = _steps(a.unsqueeze(-2) * activation_grad(Z, ctx.name))     # dh_t / dZ_t
            pre_grad = None
        else:
            into_z = None
            pre_grad = _steps(activation_grad(Hprev, ctx.name))                  # f'(h_{t-1})
        grads = _steps(gH)
        carry = torch.zeros_like(h0)
        dzs, gs = [None] * T, [None] * T
        extra: dict[int, torch.Tensor] = {}                      # dL/dh_t through the skip estimates
        for t in range(T - 1, -1, -1):
            g = grads[t] + carry                                 # dL/dh_t
            if t in extra:
                g = g + extra.pop(t)
            if ctx.mix is not None and t % ctx.mix[0] == ctx.mix[0] - 1:
                skip, beta, aligned = ctx.mix
                s = t - skip + 1                                 # the window's first step
                to_estimate = (1.0 - beta) * g
                g = beta * g                                     # dL/d(the step's own output)
                if aligned:                                      # e = (1 - theta) h_{s-1} + theta h_s
                    _add(extra, s - 1, (1.0 - skip) * to_estimate)
                    _add(extra, s, skip * to_estimate)
                else:                                            # e = h_{s-1}
                    _add(extra, s - 1, to_estimate)
            dz = g * (into_z[t] if into_z is not None else a)
            gs[t], dzs[t] = g, dz
            if t > 0 or need_h0:
                back = torch.matmul(dz, W)                       # dL/d(input of the product)
                if pre_grad is not None:
                    back = back * pre_grad[t]
                carry = g * keep + back
        dZ = _join(dzs)
        if -1 in extra:
            carry = carry + extra.pop(-1)
        d_h0 = carry if need_h0 else None
        d_ext = dZ if need_ext else None
        d_W = None
        if need_W:
            source = Hprev if ctx.form == "rate" else activation(Hprev, ctx.name)
            d_W = dZ.flatten(-3, -2).mT @ source.flatten(-3, -2)
        d_alpha = None
        if need_alpha:
            target = activation(Z, ctx.name) if ctx.form == "rate" else Z
            d_alpha = (_join(gs) * (target - Hprev)).sum((-3, -2))
        return (d_h0, d_ext, d_alpha, d_W) + (None,) * (len(ctx.needs_input_grad) - 4)


def _mixing(skip: int, beta: float, aligned: bool) -> bool:
    """Whether skip connections change anything: ``theta > 1`` (DASC) or ``theta >= 1`` (SCTT),
    and ``beta < 1`` (at ``theta = 1`` DASC's estimate is the step itself)."""
    return float(beta) < 1.0 and (int(skip) > 1 or (int(skip) == 1 and not aligned))


def _add(acc: dict[int, torch.Tensor], t: int, value: torch.Tensor) -> None:
    acc[t] = acc[t] + value if t in acc else value


__all__ = ["RateScan", "activation", "activation_grad"]
