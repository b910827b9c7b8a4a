"""Hessian eigenspectra of a loss: extreme eigenvalues by Lanczos, the spectral density by
stochastic Lanczos quadrature, the trace by Hutchinson's estimator.

Fading-memory paper (Dubinin & Effenberger 2024, ``shared/seeds/003_*``), Sec. 2.2 (Eq. 6-10) and
Fig. 2C: the eigenvalues of the loss Hessian are effective learning rates. Everything is built on
Hessian-vector products ``H v`` from ``torch.func`` (forward-over-reverse), so the Hessian is never
formed except by ``method="dense"``. The loss must be twice differentiable: cuDNN RNNs
(``torch.nn.RNN/GRU/LSTM`` on CUDA) have no double backward; use trainers' GRU/LSTM cells, or a
LeakyRNN or WCRNN with ``fused = False``.

This module imports torch; ``import dynatools`` does not.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
import xarray as xr

from dynatools._validation import (
    check_choice,
    check_finite_parameters,
    check_positive_int,
    resolve_device,
    resolve_seed,
)

__all__ = ["hessian_eigenvalues", "hessian_density", "hessian_trace"]

WHICH = ("LA", "LM", "SA")


class _Flat:
    """A loss of (a tensor | tuple/list of tensors | dict of tensors) seen as a function of one
    flat float64 vector, with counted Hessian-vector products."""

    def __init__(self, loss_fn: Callable, params: Any, device: Any = None) -> None:
        if isinstance(params, torch.nn.Module):
            raise TypeError("params is a Module; pass a dict such as dict(model.named_parameters()) "
                            "and a loss_fn(params) that calls torch.func.functional_call(model, params, ...).")
        if isinstance(params, torch.Tensor):
            names, tensors, kind = [None], [params], "tensor"
        elif isinstance(params, dict):
            names, tensors, kind = list(params), list(params.values()), "dict"
        elif isinstance(params, (list, tuple)):
            names, tensors, kind = list(range(len(params))), list(params), "tuple"
        else:
            raise TypeError(f"params must be a tensor, a tuple/list or a dict of tensors; found {type(params).__name__}.")
        if not tensors or not all(isinstance(t, torch.Tensor) and t.is_floating_point() for t in tensors):
            raise TypeError("params must hold floating-point tensors.")
        self.loss_fn, self.kind, self.names = loss_fn, kind, names
        self.shapes = [t.shape for t in tensors]
        self.sizes = [t.numel() for t in tensors]
        self.dtype = tensors[0].dtype
        self.device = tensors[0].device if device is None else resolve_device(device)   # default: the model's
        self.x0 = torch.cat([t.detach().reshape(-1).to(device=self.device, dtype=self.dtype) for t in tensors])
        check_finite_parameters(zip(names, tensors), what="params")
        self.n = self.x0.numel()
        self.n_hvp = 0
        self.tick: Callable[[], Any] | None = None        # progress: called once per HVP
        from torch.func import grad

        self._grad = grad(self._f)
        self._graph: tuple[torch.Tensor, torch.Tensor] | None = None
        self._use_graph: bool | None = None       # decided by the first product
        loss = self._call(self._f, self.x0).detach()
        if not torch.isfinite(loss):
            raise ValueError(f"loss_fn(params) is {float(loss)} at params; the Hessian of a non-finite loss "
                             f"is meaningless. Check the batch and the parameters.")

    @staticmethod
    def _call(fn: Callable, *args: Any) -> Any:
        """Run ``fn``; a custom autograd Function (a fused recurrence) gets a clear message."""
        try:
            return fn(*args)
        except RuntimeError as exc:
            if "setup_context" in str(exc) or "functorch" in str(exc):
                raise RuntimeError(
                    "loss_fn runs a custom autograd Function that torch.func cannot differentiate "
                    "twice, such as the fused recurrence of a trainers model: set model.fused = False "
                    "(trainers.engine.loss_closure does this on a copy).") from exc
            raise

    def _unflatten(self, x: torch.Tensor):
        parts = [p.reshape(s) for p, s in zip(torch.split(x, self.sizes), self.shapes)]
        if self.kind == "tensor":
            return parts[0]
        if self.kind == "dict":
            return dict(zip(self.names, parts))
        return tuple(parts)

    def _f(self, x: torch.Tensor) -> torch.Tensor:
        out = self.loss_fn(self._unflatten(x))
        if not isinstance(out, torch.Tensor) or out.numel() != 1:
            raise ValueError("loss_fn must return a scalar tensor.")
        return out.reshape(())

    def _hvp_func(self, v: torch.Tensor) -> torch.Tensor:
        """Forward-over-reverse with torch.func: refuses custom autograd Functions it cannot
        differentiate twice (the reference the stored graph is checked against)."""
        from torch.func import jvp

        return self._call(lambda: jvp(self._grad, (self.x0,), (v,))[1])

    def _hvp_graph(self, v: torch.Tensor) -> torch.Tensor:
        """Double backward through the gradient's graph, built once and kept (one backward pass
        per product: 3-6x cheaper than forward-over-reverse, benchmarks/bench_hessian.py)."""
        if self._graph is None:
            x = self.x0.detach().clone().requires_grad_(True)
            with torch.enable_grad():
                (g,) = torch.autograd.grad(self._f(x), x, create_graph=True)
            self._graph = (x, g)
        x, g = self._graph
        if not g.requires_grad:                 # the loss is linear in the parameters
            return torch.zeros_like(x)
        (hv,) = torch.autograd.grad(g, x, grad_outputs=v, retain_graph=True, allow_unused=True)
        return torch.zeros_like(x) if hv is None else hv

    def hvp(self, v: torch.Tensor) -> torch.Tensor:
        self.n_hvp += 1
        if self.tick is not None:
            self.tick()
        v = v.to(self.dtype)
        if self._use_graph is None:
            # the first product both ways: the stored graph is used only where it agrees with
            # torch.func (a custom autograd Function whose backward is not differentiable, or is
            # differentiated wrongly, would give another product; then torch.func is used throughout)
            ref = self._hvp_func(v)
            try:
                fast = self._hvp_graph(v)
                tol = torch.finfo(self.dtype).eps ** 0.5          # 1.5e-8 in float64, 3.5e-4 in float32
                scale = max(float(ref.abs().max()), torch.finfo(self.dtype).tiny)
                self._use_graph = bool(torch.allclose(fast, ref, rtol=tol, atol=tol * scale)
                                       or not torch.isfinite(ref).all())
            except RuntimeError:
                self._use_graph = False
            if not self._use_graph:
                self._graph = None                # free it
            return ref
        return self._hvp_graph(v) if self._use_graph else self._hvp_func(v)

    def hvp_numpy(self, v: np.ndarray) -> np.ndarray:
        out = self.hvp(torch.as_tensor(np.ascontiguousarray(v).reshape(-1), device=self.device))
        out = out.detach().to(torch.float64).cpu().numpy()
        if not np.isfinite(out).all():            # O(n), next to the HVP's own cost
            raise _not_twice_differentiable("Hessian-vector product", int((~np.isfinite(out)).sum()), out.size)
        return out

    def dense(self) -> np.ndarray:
        from torch.func import hessian

        H = self._call(hessian(self._f), self.x0)
        H = H.detach().to(torch.float64).cpu().numpy()
        if not np.isfinite(H).all():
            raise _not_twice_differentiable("Hessian", int((~np.isfinite(H)).sum()), H.size)
        return H


def _not_twice_differentiable(what: str, bad: int, size: int) -> ValueError:
    """The error for a NaN/inf Hessian at a point where the loss itself is finite."""
    return ValueError(
        f"the {what} at params holds NaN or inf ({bad} of {size} entries) although loss_fn(params) is "
        f"finite: loss_fn is not twice differentiable at params (e.g. sqrt or a norm at 0, x ** 0.5, a "
        f"division by a quantity that is 0 there). Take the Hessian at another point, or smooth the loss "
        f"(e.g. sqrt(x + 1e-12)).")


def _bar(progress: bool, iterable: Any, desc: str, unit: str):
    """A tqdm bar (over ``iterable``, or counting updates when it is None), disabled unless
    ``progress``."""
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, unit=unit, disable=not progress)


def hessian_eigenvalues(loss_fn: Callable, params: Any, *, k: int = 10, which: str = "LA",
                        method: str = "lanczos", tol: float = 0.0, maxiter: int | None = None,
                        return_eigenvectors: bool = False, seed: int | None = None, device: Any = None,
                        progress: bool = False) -> xr.Dataset:
    """The k extreme eigenvalues of the Hessian of ``loss_fn`` at ``params``.

    Parameters
    ----------
    loss_fn : callable
        ``loss_fn(params) -> scalar tensor``, twice differentiable with ``torch.func`` (see the
        module note on cuDNN and fused models).
    params : tensor, tuple/list of tensors or dict of tensors
        The point at which the Hessian is taken, in the structure ``loss_fn`` expects. For a
        module: ``dict(model.named_parameters())`` with ``torch.func.functional_call`` inside
        ``loss_fn``.
    k : int, default=10
    which : {"LA", "LM", "SA"}, default="LA"
        Largest algebraic, largest magnitude or smallest algebraic eigenvalues.
    method : {"lanczos", "dense"}, default="lanczos"
        Implicitly restarted Lanczos (``scipy.sparse.linalg.eigsh`` on a LinearOperator of
        Hessian-vector products, float64), or the full Hessian and ``numpy.linalg.eigvalsh`` (for
        small problems and for checking).
    tol : float, default=0.0
        Relative accuracy for Lanczos (0: machine precision).
    maxiter : int, optional
        Lanczos restarts limit (scipy's default when None).
    return_eigenvectors : bool, default=False
        Also return the eigenvectors as ``eigenvector`` (``eigenvalue``, ``param``).
    seed : int or None, default=None
        Seeds Lanczos' start vector; None draws a fresh seed. The seed used is stored in the
        attribute ``seed`` (pass it back to reproduce the result exactly).
    device : str or torch.device, optional
        Where the Hessian-vector products run. Default: the device of ``params`` (the model's).
        Another device moves ``params`` there; ``loss_fn`` must then accept them there (its data
        on that device too).
    progress : bool, default=False
        Show a progress bar counting Hessian-vector products (Lanczos' total is not known ahead).

    Returns
    -------
    xarray.Dataset
        ``hessian_eigenvalue`` over dim ``eigenvalue`` (rank 0 = the most extreme in ``which``'s
        sense: descending for LA/LM, ascending for SA) and attrs ``n_params``, ``n_hvp`` (number of
        Hessian-vector products used), ``method``, ``which``, ``tol``, ``seed``.

    Examples
    --------
    The Hessian of 0.5 x^T A x is A:

    >>> import torch
    >>> from dynatools.hessian import hessian_eigenvalues
    >>> A = torch.diag(torch.arange(1.0, 21.0, dtype=torch.float64))
    >>> res = hessian_eigenvalues(lambda x: 0.5 * x @ A @ x, torch.zeros(20, dtype=torch.float64), k=3)
    >>> res.hessian_eigenvalue.values.round(6).tolist()
    [20.0, 19.0, 18.0]
    """
    check_choice("which", which, WHICH)
    check_choice("method", method, ("lanczos", "dense"))
    k = check_positive_int("k", k)
    seed = resolve_seed(seed)
    flat = _Flat(loss_fn, params, device)
    n = flat.n
    if k > n:
        raise ValueError(f"k={k} exceeds the number of parameters {n}.")
    vecs = None
    if method == "dense" or (method == "lanczos" and k >= n - 1):
        H = flat.dense()
        w, V = np.linalg.eigh((H + H.T) / 2)
        order = {"LA": np.argsort(-w), "SA": np.argsort(w), "LM": np.argsort(-np.abs(w))}[which][:k]
        vals, vecs = w[order], V[:, order].T
        used = "dense"
    else:
        from scipy.sparse.linalg import ArpackError, ArpackNoConvergence, LinearOperator, eigsh

        op = LinearOperator((n, n), matvec=flat.hvp_numpy, dtype=np.float64)
        rng = np.random.default_rng(seed)
        bar = _bar(progress, None, "hessian_eigenvalues", "hvp")
        flat.tick = bar.update
        try:
            vals, V = eigsh(op, k=k, which=which, tol=tol, maxiter=maxiter, v0=rng.standard_normal(n))
        except ArpackNoConvergence:   # its own type and message; exc.eigenvalues holds what converged
            raise
        except ArpackError as exc:
            raise _lanczos_failed(exc, flat.n_hvp, n, k) from exc
        finally:
            bar.close()
        order = {"LA": np.argsort(-vals), "SA": np.argsort(vals), "LM": np.argsort(-np.abs(vals))}[which]
        vals, vecs = vals[order], V[:, order].T
        used = "lanczos"
    ds = xr.Dataset({"hessian_eigenvalue": ("eigenvalue", vals)},
                    coords={"eigenvalue": np.arange(k)},
                    attrs={"n_params": n, "n_hvp": flat.n_hvp, "method": used, "which": which,
                           "tol": tol, "seed": seed})
    if return_eigenvectors:
        ds["eigenvector"] = (("eigenvalue", "param"), vecs)
    return ds


def _lanczos_failed(exc: Exception, n_hvp: int, n: int, k: int) -> RuntimeError:
    """ARPACK's error said in terms of the Hessian and with what to try."""
    why = ("the Hessian-vector products are zero: the Hessian is most likely zero at params (a loss linear "
           "or constant in params)" if "error -9:" in str(exc) else "Lanczos did not build its Krylov basis")
    return RuntimeError(f"hessian_eigenvalues: ARPACK failed after {n_hvp} Hessian-vector product(s) ({exc}); {why}. "
                        f"Check loss_fn at params; for {n} parameters method='dense' "
                        f"({'feasible' if n <= 5000 else 'needs n^2 memory'}) or another seed may help "
                        f"(k={k}).")


def _lanczos(matvec: Callable[[np.ndarray], np.ndarray], v0: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """m steps of Lanczos with full reorthogonalisation; returns the tridiagonal (alpha, beta)."""
    n = v0.size
    m = min(m, n)
    V = np.zeros((m, n))
    alpha, beta = np.zeros(m), np.zeros(max(m - 1, 0))
    v = v0 / np.linalg.norm(v0)
    for j in range(m):
        V[j] = v
        w = matvec(v)
        alpha[j] = w @ v
        w = w - V[: j + 1].T @ (V[: j + 1] @ w)       # full reorthogonalisation (twice is enough)
        w = w - V[: j + 1].T @ (V[: j + 1] @ w)
        if j == m - 1:
            break
        b = np.linalg.norm(w)
        if b < 1e-12 * max(1.0, abs(alpha[j])):      # invariant subspace found
            return alpha[: j + 1], beta[:j]
        beta[j] = b
        v = w / b
    return alpha, beta


def hessian_density(loss_fn: Callable, params: Any, *, n_probes: int = 10, lanczos_steps: int = 80,
                    grid: np.ndarray | int = 400, sigma: float | None = None,
                    seed: int | None = None, device: Any = None, progress: bool = False) -> xr.Dataset:
    """Spectral density of the Hessian by stochastic Lanczos quadrature (Ghorbani et al. 2019).

    For each of ``n_probes`` random unit vectors, ``lanczos_steps`` Lanczos steps give Ritz values
    ``theta_i`` (nodes) and weights ``w_i`` (squared first components, summing to 1); the density is
    the average over probes of ``sum_i w_i N(lambda; theta_i, sigma^2)``.

    Parameters
    ----------
    loss_fn, params
        As for :func:`hessian_eigenvalues`.
    n_probes : int, default=10
    lanczos_steps : int, default=80
    grid : array_like or int, default=400
        Eigenvalue grid, or its number of points spanning the nodes with a 5-sigma margin.
    sigma : float, optional
        Gaussian smoothing width; default 1% of the spectral range.
    seed : int or None, default=None
        Seeds the probe vectors; None draws a fresh seed, stored in the attribute ``seed``.
    device : str or torch.device, optional
        Where the Hessian-vector products run, as for :func:`hessian_eigenvalues`.
    progress : bool, default=False
        Show a progress bar over the probes.

    Returns
    -------
    xarray.Dataset
        ``density`` over ``lambda`` (integrates to 1), and the quadrature itself: ``ritz_value``
        (nodes) and ``weight`` over ``(probe, node)``; attrs include ``seed``.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from dynatools.hessian import hessian_density
    >>> A = torch.diag(torch.tensor([1.0] * 10 + [5.0] * 10, dtype=torch.float64))
    >>> d = hessian_density(lambda x: 0.5 * x @ A @ x, torch.zeros(20, dtype=torch.float64), seed=0)
    >>> round(float(d.weight.where(d.ritz_value < 3).sum() / d.sizes["probe"]), 2)
    0.5
    """
    n_probes = check_positive_int("n_probes", n_probes)
    m = check_positive_int("lanczos_steps", lanczos_steps)
    seed = resolve_seed(seed)
    flat = _Flat(loss_fn, params, device)
    rng = np.random.default_rng(seed)
    m = min(m, flat.n)
    nodes = np.full((n_probes, m), np.nan)
    weights = np.zeros((n_probes, m))
    for p in _bar(progress, range(n_probes), "hessian_density", "probe"):
        v0 = rng.choice([-1.0, 1.0], size=flat.n)
        alpha, beta = _lanczos(flat.hvp_numpy, v0, m)
        T = np.diag(alpha) + np.diag(beta, 1) + np.diag(beta, -1)
        theta, S = np.linalg.eigh(T)
        nodes[p, : theta.size] = theta
        weights[p, : theta.size] = S[0] ** 2
    valid = np.isfinite(nodes)
    lo, hi = nodes[valid].min(), nodes[valid].max()
    span = max(hi - lo, 1e-12 * max(1.0, abs(hi)))
    sigma = 0.01 * span if sigma is None else float(sigma)
    if not sigma > 0:
        raise ValueError(f"sigma must be positive; found {sigma}.")
    if np.isscalar(grid):
        grid = np.linspace(lo - 5 * sigma, hi + 5 * sigma, check_positive_int("grid", int(grid)))
    grid = np.asarray(grid, dtype=float)
    z = (grid[:, None, None] - np.where(valid, nodes, 0.0)[None]) / sigma
    kernel = np.exp(-0.5 * z**2) / (sigma * np.sqrt(2 * np.pi))
    density = (kernel * weights[None]).sum(-1).mean(-1)
    ds = xr.Dataset(
        {"density": ("lambda", density), "ritz_value": (("probe", "node"), nodes),
         "weight": (("probe", "node"), weights)},
        coords={"lambda": grid, "probe": np.arange(n_probes), "node": np.arange(m)},
        attrs={"method": "stochastic Lanczos quadrature", "sigma": sigma, "lanczos_steps": m,
               "n_probes": n_probes, "n_hvp": flat.n_hvp, "n_params": flat.n, "seed": seed},
    )
    ds["density"].attrs["description"] = "integrates to 1 over lambda"
    return ds


def hessian_trace(loss_fn: Callable, params: Any, *, n_samples: int = 100, confidence: float = 0.95,
                  seed: int | None = None, device: Any = None, progress: bool = False) -> xr.Dataset:
    """Trace of the Hessian by Hutchinson's estimator ``E[v^T H v]`` with Rademacher ``v``, and a
    Student-t confidence interval over the samples.

    Parameters
    ----------
    loss_fn, params
        As for :func:`hessian_eigenvalues`.
    n_samples : int, default=100
        Rademacher vectors (at least 2).
    confidence : float, default=0.95
        Level of the Student-t interval.
    seed, device, progress
        As for :func:`hessian_density` (``seed`` draws the Rademacher vectors; the progress bar
        runs over the samples).

    Returns
    -------
    xarray.Dataset
        ``trace`` (the mean), ``ci_low``, ``ci_high`` and the individual ``samples`` (dim
        ``sample``); attrs ``method``, ``confidence``, ``n_hvp``, ``n_params``, ``seed``.

    Examples
    --------
    >>> import torch
    >>> from dynatools.hessian import hessian_trace
    >>> A = torch.diag(torch.arange(1.0, 11.0, dtype=torch.float64))
    >>> r = hessian_trace(lambda x: 0.5 * x @ A @ x, torch.zeros(10, dtype=torch.float64))
    >>> float(r.trace)   # diagonal Hessian: every Rademacher sample is exact
    55.0
    """
    from scipy import stats

    n_samples = check_positive_int("n_samples", n_samples, minimum=2)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1); found {confidence}.")
    seed = resolve_seed(seed)
    flat = _Flat(loss_fn, params, device)
    rng = np.random.default_rng(seed)
    samples = np.empty(n_samples)
    for i in _bar(progress, range(n_samples), "hessian_trace", "sample"):
        v = rng.choice([-1.0, 1.0], size=flat.n)
        samples[i] = v @ flat.hvp_numpy(v)
    mean = samples.mean()
    half = stats.t.ppf(0.5 + confidence / 2, n_samples - 1) * samples.std(ddof=1) / np.sqrt(n_samples)
    return xr.Dataset(
        {"trace": mean, "ci_low": mean - half, "ci_high": mean + half, "samples": ("sample", samples)},
        attrs={"method": "Hutchinson (Rademacher)", "confidence": confidence, "n_hvp": flat.n_hvp,
               "n_params": flat.n, "seed": seed},
    )
