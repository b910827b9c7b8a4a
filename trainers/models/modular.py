"""Modular leaky RNN of the modular-growth paper (004: Hamidi, Khajehabdollahi et al., "Modular
Growth of Hierarchical Networks", Eq. 1-2 and 4), run as one fused recurrence."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from dynatools.utils import check_choice, check_positive_int
from trainers.models._common import (
    ACTIVATIONS,
    RecurrentModel,
    activate,
    activate_,
    check_sizes,
    check_state,
    linear_bound,
    refuse_double_backward,
    schema_arrays,
    uniform_,
)
from trainers.models.leaky import NONLINEARITY_PLACEMENTS, leaky_forward, leaky_jacobian
from trainers.registry import Option


class ModularRNN(RecurrentModel):
    r"""Chain of small leaky RNN modules with trainable timescales, one readout head per module.

    Every unit is a leaky rate neuron with its own trainable timescale (004 Eq. 1, ``dt = 1``):
    :math:`r_i(t) = (1 - 1/\tau_i)\, r_i(t-1) + [C_i(t)]_\alpha / \tau_i`, with the leaky ReLU
    :math:`[x]_\alpha` of negative slope :math:`\alpha` (Eq. 2) and :math:`\tau_i \ge 1` (the
    dynamics use ``clamp(tau, min=1)``, as :class:`~trainers.models.LeakyRNN`). For a (leaky)
    ReLU, :math:`[C]_\alpha / \tau = [C / \tau]_\alpha`, so this is LeakyRNN's
    ``nonlinearity="inside"`` update, the default here; ``"outside"`` (the timescale paper's
    Eq. 1) is offered too. The input of unit i of module m is (Eq. 4)

    .. math::
        C^m_i(t) = \sum_{j \ne i} W^{R,m}_{ij} r^m_j(t-1) + \sum_k W^{FF,m}_{ik} r^{m-1}_k(t-1)
                   + W^{I,m}_i S(t) + b^m_i,

    with the feed-forward term only for modules m > 0 (0-based here; 004 counts from 1):
    module m sees its own units (no self-connections: the diagonal of :math:`W^{R,m}` is held at
    zero) and the previous step's activity of module m - 1, nothing else.

    **Fused recurrence.** All modules run as ONE leaky RNN over ``n_units = n_modules *
    module_size`` units whose recurrent matrix (:meth:`effective_W_rec`) is block-bidiagonal:
    the :math:`W^{R,m}` on the block diagonal (diagonal zero), :math:`W^{FF,m}` on the block
    sub-diagonal (rows of module m, columns of module m - 1), zeros elsewhere. :meth:`forward`
    runs a single loop over time (never over modules) with a hand-written backward pass
    (:class:`_ModularRecurrence`): consecutive modules are grouped into blocks of
    ``block_modules`` modules, and each step is ONE batched matmul over the blocks, each block
    reading its own units and the last module of the block before it (for :math:`W^{FF}`). The
    zeros outside the band are skipped (at 30 modules of 10 the dense matrix is 93% zeros), the
    weight gradients are one batched product over all steps after the time loop, restricted to
    the blocks. With ``block_modules >= n_modules`` this is one dense matmul per step.
    Gradients reach the per-module parameters.

    **Per-module parameters** (``nn.ParameterList``, index = module): ``W_rec[m]``
    ``(module_size, module_size)``, ``W_ff[m - 1]`` ``(module_size, module_size)`` for module
    ``m >= 1`` (the list is one shorter than the modules), ``W_in[m]`` ``(module_size,
    input_dim)``, ``bias[m]`` and ``tau[m]`` ``(module_size,)``. One bias per unit, as Eq. 4's
    :math:`b_i` (LeakyRNN keeps PyTorch's two). Head k is ``heads.weight[k]`` ``(n_classes,
    module_size)`` and ``heads.bias[k]`` ``(n_classes,)`` and reads ONLY module ``min(k,
    n_modules - 1)``: head m is module m's readout (module m answers N = n_start + m on the
    multi-head parity curriculum); heads the engine builds beyond the modules (a curriculum that
    needs more heads than there are modules) read the last module until a module is grown for
    them (:meth:`add_module`). Because each module's tensors are separate parameters, a growth
    curriculum can freeze earlier modules (:meth:`freeze_modules`) and grow new ones
    (:meth:`add_module`).

    Parameters
    ----------
    n_units : int
        Total number of units (the engine's ``units``); must equal ``n_modules * module_size``.
    input_dim : int, default=1
        Size of the input ``S(t)``.
    n_heads : int, default=1
        Readout heads (the engine passes what the curriculum needs). Head k reads module
        ``min(k, n_modules - 1)``.
    n_classes : int, default=2
        Classes per head.
    n_modules : int, default=1
        Number of modules (with 1, the network is 004's non-modular network, Eq. 3).
    module_size : int, optional
        Units per module (:math:`M_m`; 004 uses 5, 10, 15, 20). Default: ``n_units // n_modules``
        (``n_units`` must then be a multiple of ``n_modules``); when given, ``n_units`` must equal
        ``n_modules * module_size``. The model's default ``units`` is 10: ``--model modular``
        alone is one module of 10 units, the start of 004's growth.
    tau : float or None, default=None
        Initial timescales: ``None`` draws ``1 + U(0, 1)`` per unit (as LeakyRNN); a number sets
        every unit to it.
    train_tau : bool, default=True
        Train ``tau`` (004 trains it).
    nonlinearity : {"inside", "outside"}, default="inside"
        ``"inside"``: 004 Eq. 1, :math:`r \leftarrow a r + f(C/\tau)`; ``"outside"``:
        :math:`r \leftarrow f(a r + C/\tau)` (timescale paper Eq. 1).
    activation : {"leaky_relu", "relu", "tanh"}, default="leaky_relu"
        ``f`` (004: leaky ReLU, Eq. 2).
    negative_slope : float, default=0.1
        :math:`\alpha` of the leaky ReLU (004 does not state it; 0.1 as the timescale paper's text,
        its public code used 0.01). Recorded in ``config()``.
    h0_scale : float, default=0.1
        The initial state is ``h0_scale * U(0, 1)`` per unit (as LeakyRNN).
    frozen_modules : int, default=0
        Modules ``0 .. frozen_modules - 1`` (and their heads) start frozen (``requires_grad``
        False), as :meth:`freeze_modules` leaves them; stored in ``config()`` so that a
        checkpoint of a growing network reloads with the same trainable set.
    frozen_recurrent, frozen_feedforward : bool, default=False
        ``W_rec`` (resp. ``W_ff``) of every module frozen, as :meth:`freeze_weights` leaves them
        (004 Fig. 6a); stored in ``config()``.
    fused : bool, default=True
        :meth:`forward` through the fused kernel (first derivatives only); ``False`` loops over
        :meth:`step` with autograd (double backward, ``torch.func``).
    block_modules : int or None, default=None
        Modules per block of the fused recurrence (a speed setting: results are equal up to
        float rounding). ``None`` picks automatically (:meth:`blocks`): on CPU blocks of about
        50 units (``round(50 / module_size)`` modules), the fastest measured on one CPU thread,
        except for small batches (dense per-step product under 5e5 multiply-adds); on CUDA
        every module in one block (one dense matmul per step). A number >= ``n_modules`` forces
        the dense matrix. Not part of ``config()``; can be changed on the instance.
    generator : torch.Generator, optional
        Source of the random initialisation: per module, in order, tau, W_in, bias, W_rec, W_ff
        (modules >= 1), then that module's head; then any further heads. Weights are
        U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (fan_in = module_size for W_rec, W_ff, bias and heads;
        input_dim for W_in).

    Examples
    --------
    >>> import torch
    >>> from trainers.models import ModularRNN
    >>> net = ModularRNN(15, n_modules=3, n_heads=3, generator=torch.Generator().manual_seed(0))
    >>> H = net(torch.ones(4, 10, 1))              # (batch, time, unit): all modules at once
    >>> net.readout(H[:, -1]).shape                # (batch, head, class); head m reads module m
    torch.Size([4, 3, 2])
    >>> net.add_module(duplicate_recurrent=True, duplicate_feedforward=True)
    >>> net.freeze_modules(3)                      # train only the new module 3 (and its head)
    >>> net.n_modules, net.n_units, net.n_heads, net.n_trainable
    (4, 20, 4, 77)
    """

    name = "modular"
    options = (
        Option("n_modules", 1, "modular: number of modules (004 Eq. 4); units = n_modules * module_size",
               int, minimum=1),
        Option("module_size", None, "modular: units per module (default units / n_modules; 004: 5-20)", int,
               nullable=True, minimum=1),
        Option("frozen_modules", 0, "modular: modules below this index start frozen (a growing network's "
               "checkpoint)", int, minimum=0),
        Option("tau", None, "initial (or fixed) tau of every unit (default 1 + U(0,1) per unit)", float,
               nullable=True, positive=True),
        Option("train_tau", True, "train the timescales tau (default); --no-train-tau keeps them fixed", bool),
        Option("nonlinearity", "inside", "inside (004 Eq. 1, default) or outside", str, NONLINEARITY_PLACEMENTS),
        Option("activation", "leaky_relu", "leaky_relu (004 Eq. 2), relu or tanh", str, ACTIVATIONS),
        Option("negative_slope", 0.1, "leaky-ReLU slope alpha (004 Eq. 2)", float, minimum=0.0, below=1.0),
    )
    #: 004 trains with SGD and cross-entropy; the optimiser settings are LeakyRNN's (timescale
    #: paper); units 10 = one module of 10, the start of 004's growth.
    # lr 0.1: the default of the authors' growth training (LevinaLab/rnn_timescale_public,
    # training/config_parser.py, LEARNING_RATE used by training/train_growth.py; 004 gives no
    # value); the leaky RNN's 0.05 is 000's multi-head setting. Momentum, Nesterov and the clip
    # at 2 are the same in both.
    defaults = {"optimizer": "sgd", "lr": 0.1, "momentum": 0.1, "nesterov": True, "clip": 2.0,
                "encoding": "01", "units": 10}

    def __init__(
        self,
        n_units: int,
        *,
        input_dim: int = 1,
        n_heads: int = 1,
        n_classes: int = 2,
        n_modules: int = 1,
        module_size: int | None = None,
        tau: float | None = None,
        train_tau: bool = True,
        nonlinearity: str = "inside",
        activation: str = "leaky_relu",
        negative_slope: float = 0.1,
        h0_scale: float = 0.1,
        frozen_modules: int = 0,
        frozen_recurrent: bool = False,
        frozen_feedforward: bool = False,
        fused: bool = True,
        block_modules: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        n, self.input_dim = check_sizes(n_units, input_dim, n_heads, n_classes)
        n_mod = check_positive_int("n_modules", n_modules)
        self.block_modules = None if block_modules is None else check_positive_int("block_modules", block_modules)
        if module_size is None:
            if n % n_mod:
                raise ValueError(
                    f"n_units={n} is not a multiple of n_modules={n_mod}; set units to n_modules * "
                    f"module_size (e.g. units={n_mod * max(1, n // n_mod)} for modules of "
                    f"{max(1, n // n_mod)}), or give module_size.")
            module_size = n // n_mod
        ms = check_positive_int("module_size", module_size)
        if n != n_mod * ms:
            raise ValueError(
                f"n_units={n} does not equal n_modules * module_size = {n_mod} * {ms} = {n_mod * ms}; "
                f"set units={n_mod * ms} (trainers train --units {n_mod * ms}), or change n_modules "
                f"or module_size.")
        self.module_size = ms
        self.n_classes = check_positive_int("n_classes", n_classes)
        self.nonlinearity = check_choice("nonlinearity", nonlinearity, NONLINEARITY_PLACEMENTS)
        self.activation = check_choice("activation", activation, ACTIVATIONS)
        slope = float(negative_slope)
        if not 0.0 <= slope < 1.0:
            raise ValueError(f"negative_slope must lie in [0, 1); found {negative_slope}.")
        self.negative_slope = slope
        if tau is not None and not (np.isfinite(float(tau)) and float(tau) > 0):
            raise ValueError(f"tau must be finite and positive (the dynamics clamp it at >= 1); found {tau}.")
        self.tau_init = None if tau is None else float(tau)
        self.train_tau = bool(train_tau)
        self.h0_scale = float(h0_scale)
        self.fused = bool(fused)

        self.tau = nn.ParameterList()
        self.W_in = nn.ParameterList()
        self.bias = nn.ParameterList()
        self.W_rec = nn.ParameterList()
        self.W_ff = nn.ParameterList()
        self.heads = ModuleHeads(ms, n_classes)
        self.register_buffer("mask", 1.0 - torch.eye(ms), persistent=False)
        for m in range(n_mod):
            self._append_module(None, None, generator)
            if m < n_heads:
                self.heads.append(generator)
        for _ in range(n_mod, n_heads):
            self.heads.append(generator)
        frozen = check_positive_int("frozen_modules", frozen_modules, minimum=0)
        if frozen > n_mod:
            raise ValueError(f"frozen_modules={frozen} exceeds n_modules={n_mod}; give 0..{n_mod}.")
        self.frozen_recurrent = bool(frozen_recurrent)
        self.frozen_feedforward = bool(frozen_feedforward)
        self.freeze_modules(frozen)

    # ------------------------------------------------------------------ structure
    @property
    def n_modules(self) -> int:
        """Number of modules."""
        return len(self.W_rec)

    @property
    def n_units(self) -> int:  # type: ignore[override]
        """Total number of units, ``n_modules * module_size``."""
        return self.n_modules * self.module_size

    def _append_module(self, W_rec: torch.Tensor | None, W_ff: torch.Tensor | None,
                       generator: torch.Generator | None) -> None:
        """Append one module: fresh tau, W_in, bias; W_rec / W_ff copied from the given tensors
        or drawn fresh (W_ff only for a module that has a predecessor)."""
        ms, ref = self.module_size, (self.W_rec[0] if len(self.W_rec) else None)
        kw = {} if ref is None else {"device": ref.device, "dtype": ref.dtype}
        if self.tau_init is None:
            tau = 1.0 + torch.rand(ms, generator=generator).to(**kw)
        else:
            tau = torch.full((ms,), self.tau_init, **kw)
        self.tau.append(nn.Parameter(tau, requires_grad=self.train_tau))
        self.W_in.append(nn.Parameter(uniform_(torch.empty(ms, self.input_dim), linear_bound(self.input_dim),
                                               generator).to(**kw)))
        self.bias.append(nn.Parameter(uniform_(torch.empty(ms), linear_bound(ms), generator).to(**kw)))
        if W_rec is None:
            W_rec = uniform_(torch.empty(ms, ms), linear_bound(ms), generator).to(**kw)
        W_rec = W_rec.detach().clone()
        with torch.no_grad():
            W_rec.fill_diagonal_(0.0)
        self.W_rec.append(nn.Parameter(W_rec))
        if len(self.W_rec) > 1:
            if W_ff is None:
                W_ff = uniform_(torch.empty(ms, ms), linear_bound(ms), generator).to(**kw)
            self.W_ff.append(nn.Parameter(W_ff.detach().clone()))

    def add_module(self, duplicate_recurrent: Any, duplicate_feedforward: Any = None,  # type: ignore[override]
                   generator: torch.Generator | None = None) -> None:
        """Grow the network by one module (004, "Modular networks"; Fig. 6b).

        (Called as ``add_module(name: str, module)``, it is ``torch.nn.Module.add_module``, which
        PyTorch utilities may use.)

        The new module N (0-based: index ``n_modules``) receives feed-forward input from the
        current LAST module N - 1. Its recurrent weights are an exact copy of the last module's
        ``W_rec`` when ``duplicate_recurrent`` (004: "a copy of the ... connectivity for the N-1
        module"), else fresh; its feed-forward weights (from module N - 1) are an exact copy of
        the last module's own ``W_ff`` when ``duplicate_feedforward`` and the last module has one
        (from one module, there is no ``W_ff`` to copy: it is drawn fresh), else fresh. Note the
        copy comes from the last existing module, not the one before it (the off-by-one of
        LevinaLab/rnn_timescale_public PR #3). Input weights, bias and tau are drawn fresh.

        A head reads the new module: a fresh head is appended when the model has no head of
        index ``n_modules`` yet; a head of that index built earlier (the engine builds the
        heads a curriculum needs) is kept and now reads the new module instead of the last one.

        New parameters are trainable and sit on the model's device and dtype. An optimizer
        built before growing does not know them: rebuild it (and after :meth:`freeze_modules`).
        """
        if isinstance(duplicate_recurrent, str):
            return super().add_module(duplicate_recurrent, duplicate_feedforward)
        if not isinstance(duplicate_recurrent, bool) or not isinstance(duplicate_feedforward, bool):
            raise TypeError(f"duplicate_recurrent and duplicate_feedforward must be True or False; found "
                            f"{duplicate_recurrent!r} and {duplicate_feedforward!r}.")
        W_rec = self.W_rec[-1] if duplicate_recurrent else None
        W_ff = self.W_ff[-1] if duplicate_feedforward and len(self.W_ff) else None
        self._append_module(W_rec, W_ff, generator)
        if self.heads.n_heads < self.n_modules:
            self.heads.append(generator)

    def freeze_modules(self, upto: int) -> None:
        """Freeze modules ``0 .. upto - 1`` and their heads (``requires_grad = False`` on their
        W_rec, W_ff, W_in, bias, tau and heads ``0 .. upto - 1``); every other module and head
        is made trainable (tau only with ``train_tau``, W_rec / W_ff not when
        :meth:`freeze_weights` froze them). ``freeze_modules(0)`` unfreezes all.

        004: at each curriculum step only the newest module is trained. Frozen parameters get no
        gradient (``grad`` stays None), so SGD with momentum, Adam or weight decay leave them
        bitwise unchanged; an optimizer keeps its param groups, so a growth curriculum rebuilds
        it after growing and freezing."""
        upto = check_positive_int("upto", upto, minimum=0)
        if upto > self.n_modules:
            raise ValueError(f"upto={upto} exceeds n_modules={self.n_modules}; give 0..{self.n_modules}.")
        for m in range(self.n_modules):
            train = m >= upto
            for p in (self.W_in[m], self.bias[m]):
                p.requires_grad_(train)
            self.W_rec[m].requires_grad_(train and not self.frozen_recurrent)
            self.tau[m].requires_grad_(train and self.train_tau)
            if m >= 1:
                self.W_ff[m - 1].requires_grad_(train and not self.frozen_feedforward)
        for k in range(self.heads.n_heads):
            self.heads.weight[k].requires_grad_(k >= upto)
            self.heads.bias[k].requires_grad_(k >= upto)
        self.frozen_modules = upto

    def freeze_weights(self, *, recurrent: bool | None = None, feedforward: bool | None = None) -> None:
        """Freeze (True) or release (False) the recurrent weights ``W_rec`` / the feed-forward
        weights ``W_ff`` of EVERY module, on top of :meth:`freeze_modules` (None leaves a setting
        as it is). 004's weight-freezing experiments (Fig. 6a): recurrent weights frozen after
        N = 2, or feed-forward weights frozen after N = 3, the rest of the newest module trains.
        Recorded in ``config()`` (``frozen_recurrent``, ``frozen_feedforward``); rebuild the
        optimizer afterwards."""
        if recurrent is not None:
            self.frozen_recurrent = bool(recurrent)
        if feedforward is not None:
            self.frozen_feedforward = bool(feedforward)
        self.freeze_modules(self.frozen_modules)

    def module_of_unit(self) -> np.ndarray:
        """Module index of every unit, ``(unit,)`` ints."""
        return np.repeat(np.arange(self.n_modules), self.module_size)

    # ------------------------------------------------------------------ assembled weights
    def effective_tau(self) -> torch.Tensor:
        """``clamp(tau, min=1)`` of every unit, ``(unit,)``: the timescales the dynamics use."""
        return torch.cat(list(self.tau)).clamp(min=1.0)

    def effective_W_rec(self) -> torch.Tensor:
        """The assembled recurrent matrix ``(unit, unit_pre)``: ``W_rec[m]`` (diagonal zero) on the
        block diagonal, module m's ``W_ff`` in block (m, m - 1), zeros elsewhere."""
        blocks = torch.block_diag(*[w * self.mask for w in self.W_rec])
        if not len(self.W_ff):
            return blocks
        ms, n = self.module_size, self.n_units
        ff = torch.block_diag(*self.W_ff)                    # (n - ms, n - ms)
        # ms zero rows on top and ms zero columns on the right put W_ff[m - 1] in block (m, m - 1)
        return blocks + nn.functional.pad(ff, (0, ms, ms, 0))

    def effective_W_in(self) -> torch.Tensor:
        """Input weights of every unit, ``(unit, input_dim)``."""
        return torch.cat(list(self.W_in))

    def effective_bias(self) -> torch.Tensor:
        """Bias of every unit, ``(unit,)``."""
        return torch.cat(list(self.bias))

    # ------------------------------------------------------------------ protocol (DESIGN.md)
    def config(self) -> dict[str, Any]:
        """Constructor arguments (JSON-serialisable) that rebuild this architecture, grown modules
        and frozen set included."""
        return {
            "model": self.name, "n_units": self.n_units, "input_dim": self.input_dim,
            "n_heads": self.heads.n_heads, "n_classes": self.n_classes, "n_modules": self.n_modules,
            "module_size": self.module_size, "frozen_modules": self.frozen_modules,
            "frozen_recurrent": self.frozen_recurrent, "frozen_feedforward": self.frozen_feedforward,
            "train_tau": self.train_tau, "nonlinearity": self.nonlinearity, "activation": self.activation,
            "negative_slope": self.negative_slope, "h0_scale": self.h0_scale,
        }

    def initial_state(self, batch: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``h0_scale * U(0, 1)``, shape ``(batch, unit)``, on the model's device and dtype."""
        p = self.W_rec[0]
        return self.h0_scale * torch.rand(batch, self.n_units, generator=generator,
                                          device=p.device, dtype=p.dtype)

    def _drive_input(self, u: torch.Tensor | None) -> torch.Tensor:
        if u is None:
            return self.effective_bias()
        return nn.functional.linear(u, self.effective_W_in(), self.effective_bias())

    def step(self, h: torch.Tensor, u: torch.Tensor | None) -> torch.Tensor:
        """One step of every module (004 Eq. 1, 4), ``h`` ``(batch, unit)``, ``u`` ``(batch,
        input_dim)`` or None (biases only). Differentiable to any order."""
        tau = self.effective_tau()
        drive = nn.functional.linear(h, self.effective_W_rec()) + self._drive_input(u)
        a = 1.0 - 1.0 / tau
        f = self.activation, self.negative_slope
        if self.nonlinearity == "outside":
            return activate(a * h + drive / tau, *f)
        return a * h + activate(drive / tau, *f)

    def jacobian(self, h: torch.Tensor, u: torch.Tensor | None) -> torch.Tensor:
        """Analytic ``d step(h, u) / d h``, ``(batch, unit, unit)``: inside (004 Eq. 1)
        ``diag(a) + diag(f'(z)) W / tau`` with z = C / tau; outside ``diag(f'(z)) (diag(a) +
        W / tau)`` with z = a h + C / tau; W the assembled block matrix."""
        return leaky_jacobian(self, h, u)

    def blocks(self, batch: int | None = None, device: torch.device | str | None = None) -> int:
        """Modules per block of the fused recurrence for a batch of ``batch`` sequences on
        ``device`` (default: the model's).

        ``block_modules`` when set (at most ``n_modules``). Otherwise ``n_modules`` (one dense
        block) on CUDA, or on CPU when the dense per-step product is small (``batch *
        n_units**2 < 5e5`` multiply-adds: the per-operation overhead then dominates, e.g. batch
        <= 5 at 30 modules of 10); else blocks of about 50 units (``round(50 / module_size)``
        modules, balanced so that the last block needs the fewest padding modules): the
        fastest measured on one CPU thread (``benchmarks/bench_modular.py``, docs/benchmarks.md).
        """
        nm = self.n_modules
        device = torch.device(self.W_rec[0].device if device is None else device)
        if self.block_modules is not None:
            return min(self.block_modules, nm)
        if device.type != "cpu" or (batch is not None and batch * self.n_units ** 2 < 500_000):
            return nm
        g = min(nm, max(1, round(50 / self.module_size)))
        return -(-nm // -(-nm // g))               # the same number of blocks, least padding

    def forward(self, u: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
        """States of every unit at every step, ``(batch, time, unit)``, for ``u`` of shape
        ``(batch, time, input_dim)`` from ``h0`` (default :meth:`initial_state`): one loop over
        time, one batched matmul per step for all modules (:class:`_ModularRecurrence`), or
        :meth:`step` by step with autograd when ``fused`` is False."""
        if not self.fused:
            return leaky_forward(self, u, h0)
        if u.ndim != 3 or u.shape[-1] != self.input_dim:
            raise ValueError(f"u has shape {tuple(u.shape)}; expected (batch, time, {self.input_dim}).")
        if h0 is None:
            h0 = self.initial_state(u.shape[0])
        check_state(h0, u, self.state_size)
        nm, ms = self.n_modules, self.module_size
        tau = self.effective_tau()
        tau_rows = tau.view(nm, ms, 1)                     # each row (post-synaptic unit) / its tau
        R = torch.stack(list(self.W_rec)) * self.mask / tau_rows
        F = torch.stack([self.W_rec[0].new_zeros(ms, ms), *self.W_ff]) / tau_rows
        H = _ModularRecurrence.apply(
            u.transpose(0, 1), h0, R, F, self.effective_W_in() / tau[:, None], self.effective_bias() / tau,
            1.0 - 1.0 / tau, self.blocks(u.shape[0], u.device), self.nonlinearity, self.activation, self.negative_slope,
            torch.is_grad_enabled())
        return H.transpose(0, 1)

    def readout(self, h: torch.Tensor, heads: int | slice | None = None) -> torch.Tensor:
        """Logits ``(..., head, class)`` of ``h`` ``(..., unit)``; head k reads only module
        ``min(k, n_modules - 1)``; ``heads=k`` keeps the first k heads."""
        idx = self.heads.select(heads)
        mods = torch.as_tensor([min(k, self.n_modules - 1) for k in idx], device=h.device)
        hm = h.unflatten(-1, (self.n_modules, self.module_size)).index_select(-2, mods)  # (..., K, ms)
        W = torch.stack([self.heads.weight[k] for k in idx])        # (K, class, ms)
        b = torch.stack([self.heads.bias[k] for k in idx])          # (K, class)
        return torch.einsum("...km,kcm->...kc", hm, W) + b

    def effective_W_out(self) -> torch.Tensor:
        """Readout weights over all units, ``(head, class, unit)``: head k's weights in module
        ``min(k, n_modules - 1)``'s columns, zero elsewhere."""
        ms = self.module_size
        W = self.W_rec[0].new_zeros(self.heads.n_heads, self.n_classes, self.n_units)
        for k in range(self.heads.n_heads):
            m = min(k, self.n_modules - 1)
            W[k, :, m * ms:(m + 1) * ms] = self.heads.weight[k]
        return W

    def recording_weights(self) -> dict[str, np.ndarray]:
        """Weights in the recording schema's names: ``W_rec`` the assembled block matrix
        (unit, unit_pre), ``W_in`` (unit, input_dim), ``W_out`` (head, class, unit), ``bias``."""
        with torch.no_grad():
            return schema_arrays(W_rec=self.effective_W_rec(), W_in=self.effective_W_in(),
                                 W_out=self.effective_W_out(), bias=self.effective_bias())

    def unit_coords(self) -> dict[str, np.ndarray]:
        """Per-unit labels for recordings: ``module`` (int) and ``tau`` (:meth:`effective_tau`, in
        steps)."""
        return {"module": self.module_of_unit(),
                "tau": self.effective_tau().detach().cpu().double().numpy()}


class ModuleHeads(nn.Module):
    """One linear readout per head on ``module_size`` units: ``weight[k]`` ``(class, module_size)``
    and ``bias[k]`` ``(class,)``, as ``nn.Linear(module_size, n_classes)`` (separate parameters,
    so a head can be frozen with its module)."""

    def __init__(self, module_size: int, n_classes: int) -> None:
        super().__init__()
        self.module_size, self.n_classes = module_size, n_classes
        self.weight = nn.ParameterList()
        self.bias = nn.ParameterList()

    @property
    def n_heads(self) -> int:
        return len(self.weight)

    def append(self, generator: torch.Generator | None) -> None:
        """Append a freshly initialised head (U(-1/sqrt(module_size), ...), as nn.Linear)."""
        bound = linear_bound(self.module_size)
        ref = self.weight[0] if len(self.weight) else None
        kw = {} if ref is None else {"device": ref.device, "dtype": ref.dtype}
        self.weight.append(nn.Parameter(uniform_(torch.empty(self.n_classes, self.module_size), bound,
                                                 generator).to(**kw)))
        self.bias.append(nn.Parameter(uniform_(torch.empty(self.n_classes), bound, generator).to(**kw)))

    def select(self, heads: int | slice | None) -> list[int]:
        """Indices of the heads ``heads`` (all; an int k = first k; a slice)."""
        if heads is None:
            return list(range(self.n_heads))
        if isinstance(heads, int):
            if not 1 <= heads <= self.n_heads:
                raise ValueError(f"heads={heads}: this readout has {self.n_heads} head(s); ask "
                                 f"for 1..{self.n_heads}.")
            return list(range(heads))
        return list(range(self.n_heads))[heads]


def _activation_backward(grad: torch.Tensor, y: torch.Tensor, activation: str, slope: float,
                         out: torch.Tensor) -> torch.Tensor:
    """``grad * f'(z)`` written into ``out``, with f'(z) read from the output ``y = f(z)`` (one
    fused op; the same values as ``grad * activation_grad_from_output(y)``)."""
    if activation == "leaky_relu":
        return torch.ops.aten.leaky_relu_backward.grad_input(grad, y, slope, True, grad_input=out)
    if activation == "relu":
        return torch.ops.aten.threshold_backward.grad_input(grad, y, 0.0, grad_input=out)
    return torch.ops.aten.tanh_backward.grad_input(grad, y, grad_input=out)


def _module_blocks(W: torch.Tensor, g: int, ms: int, shift: int) -> torch.Tensor:
    """Writable view ``(block, ms, ms, g)`` of the module-sized sub-blocks ``[shift + l, l]``
    (``l = 0 .. g - 1``) of ``W`` ``(block, (g + 1) * ms, g * ms)``: row block ``shift + l``,
    column block ``l``."""
    W5 = W.view(W.shape[0], g + 1, ms, g, ms)
    return W5[:, shift:shift + g].diagonal(dim1=1, dim2=3)


class _ModularRecurrence(torch.autograd.Function):
    r"""The modular recurrence (004 Eq. 1, 4) in one autograd node, with a hand-written BPTT
    that uses only the band of the block-bidiagonal recurrent matrix.

    Modules are grouped into ``G`` blocks of ``g`` consecutive modules (``S = g * ms`` units;
    modules beyond ``n_modules`` that fill the last block are zero padding: zero weights, zero
    state). The state lives in a buffer ``P`` ``(G, T + 1, batch, K)`` whose row for block j at
    step t is ``[1, u_t, halo, r_t of block j]``, ``K = 1 + input_dim + ms + S``, with the halo
    the previous step's state of the module before the block (zeros for block 0). One step is
    ``z = P[:, t] @ Wf`` (one ``bmm`` over blocks), where ``Wf`` ``(G, K, S)`` stacks bias,
    input weights, the blocks' :math:`W^{FF}` (halo rows and the shifted block sub-diagonal) and
    :math:`W^R` (block diagonal), all divided by the post-synaptic tau; then the leaky update
    (inside: ``r = a r + f(z)``; outside: ``r = f(a r + z)``) and the halo copy.

    Backward: per step the gradient on the window, ``dz @ Wf^T`` (one ``bmm``), with the halo
    part added to the last module of the block before; after the time loop ``dWf`` is ONE
    batched product over all steps, ``P[:, :T]^T dZ``, from which the module blocks, input
    weights and bias are read off (entries of ``Wf`` that are structurally zero are dropped).

    Inputs: ``u`` (time, batch, input_dim), ``h0`` (batch, unit), ``R`` (module, ms, ms) =
    :math:`W^R_m` (zero diagonal) / tau, ``F`` (module, ms, ms) = :math:`W^{FF}_m` / tau with
    ``F[0]`` zero, ``Win`` (unit, input_dim) and ``b`` (unit,) divided by tau, ``a = 1 - 1/tau``,
    then the block size ``g``, the placement, activation and slope, and whether autograd is
    recording (``torch.is_grad_enabled()`` of the caller: without it nothing is kept for a
    backward pass). Output: states (time, batch, unit).
    """

    @staticmethod
    def forward(ctx, u, h0, R, F, Win, b, a, g, placement, activation, slope,  # type: ignore[override]
                grad_enabled=True):
        T, B, I = u.shape
        nm, ms = R.shape[0], R.shape[1]
        n = nm * ms
        G = -(-nm // g)
        S = g * ms
        npad, c0 = G * S, 1 + I + ms              # padded units; first state column of a row
        K = c0 + S
        if npad > n:                              # zero padding modules fill the last block
            zero = R.new_zeros(G * g - nm, ms, ms)
            R, F = torch.cat([R, zero]), torch.cat([F, zero])
            Win = torch.cat([Win, Win.new_zeros(npad - n, I)])
            b, a = torch.cat([b, b.new_zeros(npad - n)]), torch.cat([a, a.new_zeros(npad - n)])
            h0 = torch.cat([h0, h0.new_zeros(B, npad - n)], 1)
        Wf = R.new_zeros(G, K, S)
        Wf[:, 0] = b.view(G, S)
        Wf[:, 1:1 + I] = Win.view(G, S, I).transpose(1, 2)
        blocks = Wf[:, 1 + I:]                    # (G, (g + 1) ms, S): halo and block rows
        _module_blocks(blocks, g, ms, 1).copy_(R.transpose(1, 2).reshape(G, g, ms, ms).permute(0, 2, 3, 1))
        _module_blocks(blocks, g, ms, 0).copy_(F.transpose(1, 2).reshape(G, g, ms, ms).permute(0, 2, 3, 1))

        P = R.new_empty(G, T + 1, B, K)
        P[..., 0] = 1.0
        P[:, :T, :, 1:1 + I] = u
        P[:, T, :, 1:1 + I] = 0.0
        P[0, :, :, 1 + I:c0] = 0.0
        P[:, 0, :, c0:] = h0.view(B, G, S).transpose(0, 1)
        P[1:, 0, :, 1 + I:c0] = P[:-1, 0, :, K - ms:]
        ag = a.view(G, 1, S)
        inside = placement == "inside"
        # inside: f(z) of every step is kept, so that f'(z) is exact in the backward pass (one
        # step's worth when no gradient is needed, e.g. a long recording under no_grad)
        needed = grad_enabled and any(ctx.needs_input_grad)
        keep = inside and needed
        Fz = R.new_empty(G, T if keep else 1, B, S)
        for t in range(T):
            z = Fz[:, t if keep else 0]
            torch.bmm(P[:, t], Wf, out=z)
            h, out = P[:, t, :, c0:], P[:, t + 1, :, c0:]
            if inside:
                activate_(z, activation, slope)
                torch.addcmul(z, h, ag, out=out)
            else:
                z.addcmul_(h, ag)
                activate_(z, activation, slope)
                out.copy_(z)
            if G > 1:
                P[1:, t + 1, :, 1 + I:c0].copy_(P[:-1, t + 1, :, K - ms:])
        if needed:
            ctx.save_for_backward(P, Fz if inside else P, Wf, a)
        ctx.cfg = (nm, g, ms, I, placement, activation, slope)
        H = P[:, 1:, :, c0:].permute(1, 2, 0, 3).reshape(T, B, npad)
        return H[..., :n] if npad > n else H

    @staticmethod
    def backward(ctx, gH):  # type: ignore[override]
        refuse_double_backward("ModularRNN")
        P, Fz, Wf, a = ctx.saved_tensors
        nm, g, ms, I, placement, activation, slope = ctx.cfg
        G, T1, B, K = P.shape
        T, n, S = T1 - 1, nm * ms, g * ms
        npad, c0 = G * S, 1 + I + ms
        inside = placement == "inside"
        if npad > n:
            gH = torch.cat([gH, gH.new_zeros(T, B, npad - n)], -1)
        gHg = gH.reshape(T, B, G, S).permute(2, 0, 1, 3)   # (G, T, B, S)
        Wb = Wf[:, 1 + I:].transpose(1, 2).contiguous()   # (G, S, ms + S): window gradient
        Gz = P.new_empty(G, T, B, S)                       # gradient with respect to z
        CB = P.new_zeros(G, B, ms + S)                     # gradient on [halo, block state]
        carry = CB[..., ms:]                               # ... on the block state r_{t-1}
        gh = P.new_empty(G, B, S)                          # total gradient on r_t
        acc = P.new_zeros(G, B, S)                         # for the gradient on a
        ag = a.view(G, 1, S)
        for t in range(T - 1, -1, -1):
            torch.add(carry, gHg[:, t], out=gh)
            gz = Gz[:, t]
            _activation_backward(gh, Fz[:, t] if inside else P[:, t + 1, :, c0:], activation, slope, gz)
            leak = gh if inside else gz
            acc.addcmul_(leak, P[:, t, :, c0:])
            torch.bmm(gz, Wb, out=CB)
            if G > 1:                                      # halo: the module before the block
                CB[:-1, :, -ms:] += CB[1:, :, :ms]
            carry.addcmul_(leak, ag)
        dWf = torch.bmm(P[:, :T].reshape(G, T * B, K).transpose(1, 2), Gz.reshape(G, T * B, S))
        blocks = dWf[:, 1 + I:]
        dR = _module_blocks(blocks, g, ms, 1).permute(0, 3, 2, 1).reshape(G * g, ms, ms)[:nm]
        dF = _module_blocks(blocks, g, ms, 0).permute(0, 3, 2, 1).reshape(G * g, ms, ms)[:nm]
        db = dWf[:, 0].reshape(npad)[:n]
        dWin = dWf[:, 1:1 + I].transpose(1, 2).reshape(npad, I)[:n]
        da = acc.sum(1).reshape(npad)[:n]
        dh0 = carry.transpose(0, 1).reshape(B, npad)[:, :n]
        du = torch.einsum("gtbs,gis->tbi", Gz, Wf[:, 1:1 + I]) if ctx.needs_input_grad[0] else None
        return du, dh0, dR, dF, dWin, db, da, None, None, None, None, None
