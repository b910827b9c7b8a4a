"""Fixed points of a trained run's network: :func:`dynatools.fixed_points` on the network saved in
a run directory, from states sampled from a recording of it (:func:`trainers.record`).

Sussillo & Barak (2013) search from the network's own activity, so the points found are the ones
its trajectories visit. Here the network (the latest checkpoint, or the one saved when N was
solved) is recorded on its task (``trainers.record``: random bits for parity/DMS, fresh trials for
the trial tasks), the recorded states are the initial states, and the search runs on the
autonomous map ``h -> step(h, u*)`` (``u*`` = no input: the bias only, or a given constant input)
in float64. Rate networks (002 Eq. 1, 5) are classified by their flow (module docstring of
:mod:`dynatools.fixed_points`). Ensembles (trial-task runs of several members) give a ``member``
dim.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np
import torch
import xarray as xr

__all__ = ["fixed_points_of_run", "RunFixedPoints", "summary_lines"]


class RunFixedPoints(NamedTuple):
    """What :func:`fixed_points_of_run` returns."""

    #: the result of :func:`dynatools.fixed_points`, with the run's provenance in its attrs
    result: xr.Dataset
    #: the states the search started from (``(trial, time, unit)``, ``member`` first for an
    #: ensemble): the network's state along the recording (the PCA space of the figure)
    states: xr.DataArray


def _activity_is_state(model: Any) -> bool:
    """Whether a recording's ``activity`` is the network's state (what ``step`` maps): the rate
    form's rates and plain RNNs yes; the current form (activity f(x)) and LSTMs (hidden part)
    no."""
    members = getattr(model, "members", None)
    m = members[0] if members is not None else model
    if hasattr(m, "rates"):
        return getattr(m, "form", "rate") == "rate"
    return not hasattr(m, "hidden")


def _recorded_states(model: Any, rec: xr.Dataset) -> xr.DataArray:
    """The network's state at every recorded step: ``activity`` when it is the state, else the
    states of a rerun of the recorded inputs from the initial state (the recording then has no
    burn-in)."""
    if _activity_is_state(model):
        return rec["activity"].astype(np.float64)
    p = next(model.parameters())
    u = torch.as_tensor(np.nan_to_num(rec["input"].values), dtype=p.dtype, device=p.device)
    with torch.no_grad():
        if getattr(model, "members", None) is not None:
            if u.ndim == 3:
                u = u.expand(len(model.members), *u.shape)
            H = model.run(u)[0]
        else:
            H = model(u)
    dims = rec["activity"].dims[:-1] + ("unit",)
    H = H.cpu().numpy()
    valid = np.isfinite(rec["activity"].values).all(-1)          # padded trials stay NaN
    H[~np.broadcast_to(valid, H.shape[:-1])] = np.nan
    return xr.DataArray(H, dims=dims, coords={d: rec[d] for d in dims[:-1] if d in rec.coords})


def fixed_points_of_run(run_dir: str | os.PathLike, N: int | None = None, *, n_init: int = 1000,
                        steps: int | None = None, trials: int = 8, seed: int = 0,
                        inputs: Sequence[float] | None = None, device: str | None = None,
                        **options: Any) -> RunFixedPoints:
    """Fixed and slow points of the network of a run directory.

    Parameters
    ----------
    run_dir : path-like
        A ``trainers train`` run directory (or a checkpoint file).
    N : int, optional
        The network saved when N was solved (default: the latest); tasks without N take none.
    n_init : int, default=1000
        Initial states, evenly spaced through the recording.
    steps : int, optional
        Recorded steps per trial: parity/DMS default 200 (after a burn-in of 100 steps); trial
        tasks default their trials' lengths.
    trials : int, default=8
        Recorded trials (input sequences).
    seed : int, default=0
        Seed of the recording.
    inputs : sequence of float, optional
        The constant input ``u*`` (``input_dim`` values); default none (``step(h, None)``: the
        bias only).
    device : {"auto", "cpu", "cuda"}, optional
        Where the network runs (default auto: CUDA when available).
    **options
        Passed to :func:`dynatools.fixed_points` (``tol``, ``slow_q``, ``max_iter``, ...).

    Returns
    -------
    RunFixedPoints
        ``(result, states)``; the result's attrs add ``run``, ``checkpoint``, ``N``, ``task``,
        ``model``, ``record_seed`` and ``inputs``.

    Examples
    --------
    >>> import tempfile, trainers
    >>> from trainers.fixed_points import fixed_points_of_run
    >>> d = tempfile.mkdtemp()
    >>> _ = trainers.train({"units": 6, "batch": 8, "steps_per_epoch": 2, "eval_batches": 1, "max_epochs": 1,
    ...                     "n_max": 3, "device": "cpu", "seed": 0}, d, progress=False)
    >>> fp = fixed_points_of_run(d, n_init=50, trials=2, steps=40, device="cpu").result
    >>> fp.state.dims, fp.attrs["task"]
    (('point', 'unit'), 'parity')
    """
    import dynatools.fixed_points as fpmod
    from trainers._cli_runs import _load
    from trainers.engine import resolve_device
    from trainers.record import record

    source = Path(run_dir)
    if not source.exists():
        raise FileNotFoundError(f"no run directory or checkpoint at {str(source)!r}; train one with "
                                f"'trainers train --out {source}'.")
    model, task, Ns, ck = _load(source, N, "float64")
    dev = resolve_device(device)
    model = model.to(dev).eval()
    rerun = not _activity_is_state(model)
    if getattr(task, "time_resolved", False):
        rec = record(model, task, steps=steps, trials=trials, seed=seed, outputs=False)
    else:
        rec = record(model, task, steps=200 if steps is None else steps, trials=trials,
                     burn_in=0 if rerun else 100, seed=seed, outputs=False)
    states = _recorded_states(model, rec)
    result = fpmod.fixed_points(model, states, inputs=None if inputs is None else np.asarray(inputs, float),
                                n_init=n_init, **options)
    result.attrs.update({"run": str(source), "checkpoint": str(ck.path), "N": "latest" if N is None else int(N),
                         "task": str(task.name), "model": str(ck.config.model), "record_seed": int(seed),
                         "record_trials": int(trials), "inputs": "none" if inputs is None else
                         " ".join(f"{float(v):g}" for v in inputs)})
    return RunFixedPoints(result, states)


def summary_lines(result: xr.Dataset) -> list[str]:
    """A few lines that say what was found: per member, the number of points of each stability
    class, the slowest fixed point's q, and the counts of dropped candidates.

    Examples
    --------
    >>> import numpy as np
    >>> from dynatools.fixed_points import fixed_points
    >>> fp = fixed_points(lambda h, u: 0.5 * h, np.ones((3, 2)), device="cpu")
    >>> summary_lines(fp)[0].split("; ")[0]
    '1 fixed point(s): 1 stable'
    """
    out = []
    members = range(result.sizes["member"]) if "member" in result.dims else [None]
    for k in members:
        r = result if k is None else result.isel(member=k)
        live = r["count"].values > 0
        cls = r["stability"].values[live].astype(str)
        kind = r["kind"].values[live].astype(str)
        counts = ", ".join(f"{int((cls == c).sum())} {c}" for c in ("stable", "saddle", "unstable", "marginal")
                           if (cls == c).any())
        n_fixed, n_slow = int((kind == "fixed").sum()), int((kind == "slow").sum())
        qmax = float(r["q"].values[live][kind == "fixed"].max()) if n_fixed else float("nan")

        def attr(name: str) -> int:
            return int(r[f"{name}_per_member"].values) if k is not None else int(r.attrs[name])

        tol = float(r.attrs["tol"]) if k is None else float(r["tol_per_member"])
        line = (f"{n_fixed} fixed point(s)" + (f" and {n_slow} slow point(s)" if n_slow else "")
                + (f": {counts}" if counts else "") + f"; max q {qmax:.3g} (tol {tol:g}); "
                + f"{attr('n_initial')} initial states, {attr('n_not_converged')} not converged, "
                + f"{attr('n_outliers')} outliers")
        out.append(line if k is None else f"member {k}: {line}")
    return out
