"""Dynamics misalignment of the training-time methods (002 Sec. 3.4, Fig. 3B-C): how far a trained
network's activity under CD, SCTT or DASC lies from its true dynamics, and what that costs in task
performance.

The simulation side lives here (it runs networks); the comparison of two recordings is
:func:`dynatools.activity_nmse`. For each member of a trained ensemble, the true activity is the
plain network on fixed trials (evaluation mode, no noise); the modified activity is the same
network on the same trials under a :class:`trainers.skip.Simulation` (``beta = 0.5``,
``theta in {5, 10, 20, 30, 40}`` as in the paper). CD's coarse states are compared with the
true states at the same time: coarse step k ends at base step ``(k + 1) theta`` (state index
``(k + 1) theta - 1``); a last coarse step that ends after the trial is left out.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch

from trainers.skip import Simulation

#: The skip lengths / discretization factors of 002 Fig. 3B-C.
FIG3_THETAS = (5, 10, 20, 30, 40)


def _activity(H: torch.Tensor, ensemble, times: np.ndarray, dt_s: float):
    import xarray as xr

    rates = torch.stack([m.rates(H[k]) for k, m in enumerate(ensemble.members)])
    return xr.DataArray(rates.detach().cpu().double().numpy(), dims=("member", "trial", "time", "unit"),
                        coords={"member": np.arange(H.shape[0]), "time": times * dt_s},
                        name="activity")


def misalignment(model, task, *, thetas: Sequence[int] = FIG3_THETAS, beta: float = 0.5,
                 methods: Sequence[str] = ("cd", "sctt", "dasc"), trials: int = 64, seed: int = 0):
    """NMSE between true and modified dynamics, and the performance lost, for each method and theta.

    Parameters
    ----------
    model : RateRNN or trainers.ensemble.Ensemble
        A trained rate network or ensemble (e.g. ``RunDir(path).load().model``).
    task : TrialTask
        The open-loop trial task it was trained on.
    thetas : sequence of int, default=(5, 10, 20, 30, 40)
        Skip lengths (SCTT, DASC) and discretization factors (CD), 002 Fig. 3B.
    beta : float, default=0.5
        Mixing ratio of SCTT and DASC (kept constant, as in the paper).
    methods : sequence of {"cd", "sctt", "dasc"}
    trials : int, default=64
        Trials drawn once (fixed seed) and simulated under every variant.
    seed : int, default=0

    Returns
    -------
    xarray.Dataset
        ``nmse`` and ``performance_difference`` over ``(simulation, theta, member)``, and
        ``performance_true`` over ``member``. ``nmse`` is :func:`dynatools.activity_nmse` over
        trials, time and units; ``performance_difference`` = performance of the true dynamics
        minus that of the modified ones (fraction of correct trials; positive = the method's
        dynamics do worse). Attrs: ``beta``, ``tau_steps`` (the units' mean time constant in
        steps, for the shading of Fig. 3B), ``task``.

    Examples
    --------
    >>> import torch
    >>> from trainers.models import RateRNN
    >>> from trainers.tasks import TASKS
    >>> task = TASKS["go"]()
    >>> net = RateRNN(16, input_dim=task.input_dim, n_classes=task.n_classes, generator=torch.Generator().manual_seed(0))
    >>> ds = misalignment(net, task, thetas=(5, 10), trials=8)
    >>> ds["nmse"].dims, float(ds["nmse"].sel(simulation="cd", theta=5).min()) >= 0
    (('simulation', 'theta', 'member'), True)
    """
    import dynatools
    import xarray as xr

    from trainers.ensemble import Ensemble, member_performance, simulate_trials

    if getattr(task, "closed_loop", False):
        raise ValueError(f"misalignment compares open-loop trials; task {task.name!r} feeds back the network's "
                         f"responses, so its modified and true inputs differ: use a single-trial task (e.g. go, dgo).")
    ensemble = model if isinstance(model, Ensemble) else Ensemble([model])
    if not all(getattr(m, "simulations", False) for m in ensemble.members):
        raise ValueError("misalignment needs rate networks (trainers.models.RateRNN): only they have CD, SCTT "
                         "and DASC simulations (002 Sec. 3).")
    thetas = [int(t) for t in thetas]
    if not thetas or min(thetas) < 1:
        raise ValueError(f"thetas must be positive integers (steps); found {thetas}.")
    methods = list(methods)
    bad = [m for m in methods if m not in ("cd", "sctt", "dasc")]
    if bad:
        raise ValueError(f"methods must be among 'cd', 'sctt', 'dasc'; found {bad}.")
    param = next(ensemble.parameters())
    dtype, device = param.dtype, param.device
    gen = torch.Generator(device=device).manual_seed(int(seed))
    batch = task.sample(int(trials), generator=gen, device=device)
    from trainers.tasks.trials import stack_batches

    K = ensemble.size
    stacked = stack_batches([batch] * K)
    h0 = ensemble.initial_state(int(trials)).to(device=device, dtype=dtype)
    member0 = ensemble.members[0]
    dt_s = float(getattr(member0, "dt", 1.0)) / 1000.0
    T = batch.inputs.shape[1]
    was = ensemble.training
    ensemble.eval()
    try:
        with torch.no_grad():
            H, Y = ensemble.run(stacked.inputs.to(dtype), h0)
            true = _activity(H, ensemble, np.arange(T), dt_s)
            perf_true = member_performance(task, Y, stacked).mean(-1).cpu().numpy()
            nmse = np.full((len(methods), len(thetas), K), np.nan)
            lost = np.full((len(methods), len(thetas), K), np.nan)
            for i, method in enumerate(methods):
                for j, theta in enumerate(thetas):
                    sim = Simulation(method, theta=theta, beta=beta if method != "cd" else 1.0)
                    Hm, _ = ensemble.run(stacked.inputs.to(dtype), h0, simulation=sim)
                    Ym, scored = simulate_trials(ensemble, task, stacked, h0, simulation=sim)
                    # coarse state k is the state at the end of its step: base index (k + 1) theta - 1
                    times = np.arange(sim.coarse - 1, T, sim.coarse)
                    modified = _activity(Hm[..., : len(times), :], ensemble, times, dt_s)
                    finite = bool(np.isfinite(modified.values).all())
                    if finite:
                        nmse[i, j] = dynatools.activity_nmse(true, modified).values
                    lost[i, j] = perf_true - member_performance(task, Ym, scored).mean(-1).cpu().numpy()
    finally:
        ensemble.train(was)
    tau_ms = float(member0.effective_tau().mean()) if hasattr(member0, "effective_tau") else float("nan")
    coords = {"simulation": methods, "theta": thetas, "member": np.arange(K)}
    ds = xr.Dataset({"nmse": (("simulation", "theta", "member"), nmse),
                     "performance_difference": (("simulation", "theta", "member"), lost),
                     "performance_true": (("member",), perf_true)}, coords=coords,
                    attrs={"beta": float(beta), "tau_steps": tau_ms / float(getattr(member0, "dt", 1.0)),
                           "task": task.name, "trials": int(trials), "seed": int(seed),
                           "reference": "Soo, Goudar & Wang (NeurIPS 2023) Sec. 3.4, Fig. 3B-C"})
    ds["nmse"].attrs["description"] = ("normalised MSE between modified and true activity "
                                       "(dynatools.activity_nmse); NaN where the modified dynamics diverge")
    ds["performance_difference"].attrs["description"] = "performance of the true minus the modified dynamics"
    return ds


def misalignment_of_run(run_dir: str | os.PathLike, **kwargs):
    """:func:`misalignment` of the network in a run directory (its latest checkpoint)."""
    from trainers.rundir import RunDir

    net = RunDir(run_dir).load()
    return misalignment(net.model, net.task, **kwargs)


__all__ = ["misalignment", "misalignment_of_run", "FIG3_THETAS"]
