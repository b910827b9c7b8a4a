"""Effective vs intrinsic timescales of rate RNNs with 001's tau distributions.

Seed 001 (Higgs, Siddiqui & Langdon, a poster) trains rate RNNs whose single-unit time
constants follow four distributions (vanilla: all 1 s; normal N(1 s, 0.2 s); uniform
[0.1, 1.9] s; bimodal 0.5 / 1.5 s) and reports that "RNN training distributes the effective
timescales in the network, even for homogeneous intrinsic-timescale RNNs" (effective timescale:
decay of the autocorrelation of a unit's firing rate). This script measures, per distribution:

1. trains an ensemble of K networks on one of 001's tasks (``mtwm`` or ``intwm``,
   ``trainers.train``, 001's defaults except the size and the number of steps) for a fixed number
   of steps, and reads the final performance from the run's metrics;
2. records each member's firing rates (``model.rates``: f(x) of the currents), evaluation mode,
   no private noise, the same inputs for every distribution, in three conditions:

   - ``trials``: ``--trials`` trials of the task (``trainers.record``), each from the zero state
     as in training. A trial lasts only 1.4-3.2 s, far below dynatools' ``short`` rule
     (``T * dt >= 50 tau_net``), so the rule is off there and ``tau_net`` is biased low (capped
     near 1 s); fits on lags up to ``--trial-fit-lag`` steps;
   - ``task``: trials of the task drawn one after another and concatenated **without** resetting
     the state, ``--seconds`` per stream;
   - ``noise``: an endless zero-mean stimulus period: fixation input on, the evidence channels
     white noise of the task's own per-step std (``evidence_noise * sqrt(1000 / dt)``), no cue
     or item; what the network does with pure evidence noise;

   the long streams are sampled every ``--subsample`` Euler steps (50 ms by default) and become a
   recording (``dynatools.from_array``, time in s) with the intrinsic ``tau`` as a unit
   coordinate; the script reports when a network's rates diverge on them (above 1e6: trained
   networks do, after tens of seconds, so their long-stream rows measure no stationary
   timescale);
3. fits autocorrelation timescales (``dynatools.timescales``, AIC single/double exponential,
   ``tau_net`` = slowest timescale) and keeps only reliable fits (``dynatools.reliable_tau_net``:
   no ``short``, ``constant``, failed or upper-bound fits);
4. the same for the untrained networks (the members' initialisation, rebuilt from the seeds), to
   see what training changed.

The trials of the recordings are the same for every distribution (one recording seed).

Run from the repository root (one torch thread)::

    DYNATOOLS_THREADS=1 python docs/examples/tau_distributions_001.py --tasks mtwm intwm \
        --seconds 300 --out docs/images/tau_distributions_001.png

``--help`` lists the options. The table and the figure are described in docs/rate-rnn.md,
section "Effective vs intrinsic timescales (001)".
"""

from __future__ import annotations

import argparse
import math
import os
import pickle
import time
import warnings
from typing import Any

import numpy as np
import torch

import dynatools as dt
import trainers
from trainers.ensemble import Ensemble

DISTRIBUTIONS = ("vanilla", "normal", "uniform", "bimodal")
CONDITIONS = ("trials", "task", "noise")
#: Upper bound of every fitted timescale, in s (dynatools' default, 100 lags, would be 0.5 s at 5 ms).
TAU_MAX_S = 5.0


# ---------------------------------------------------------------------------- training
def train_config(distribution: str, *, task: str = "mtwm", members: int = 4, units: int = 64, steps: int = 400,
                 steps_per_epoch: int = 50, batch: int = 64, eval_batches: int = 4, seed: int = 0) -> dict[str, Any]:
    """The ``trainers.train`` configuration: 001's defaults of the task (rate model, current form,
    tau 1 s for vanilla, sigmoid outputs, Adam 1e-3, percentile rule), ``steps`` training steps
    in epochs of ``steps_per_epoch``."""
    return {"task": task, "members": members, "units": units, "tau_distribution": distribution,
            "batch": batch, "steps_per_epoch": min(steps_per_epoch, steps),
            "max_epochs": max(1, math.ceil(steps / steps_per_epoch)), "eval_batches": eval_batches,
            "seed": seed, "device": "cpu"}


def initial_ensemble(config: dict[str, Any]) -> Ensemble:
    """The untrained members of the run ``config`` describes (member k initialised from seed
    ``seed + k`` as ``trainers.train`` does)."""
    cfg = trainers.TrainConfig.from_dict(config).resolved()
    task = cfg.make_task()
    members = []
    for k in range(cfg.members):
        init_seed = int(np.random.SeedSequence(cfg.seed + k).generate_state(3)[0])   # engine._seeds
        members.append(cfg.make_model(task, generator=torch.Generator().manual_seed(init_seed)))
    return Ensemble(members).eval()


def as_ensemble(model: torch.nn.Module) -> Ensemble:
    return model if isinstance(model, Ensemble) else Ensemble([model])


# ---------------------------------------------------------------------------- inputs
def task_stream(task, streams: int, steps: int, generator: torch.Generator) -> torch.Tensor:
    """``(streams, steps, input_dim)``: fresh trials of ``task``, each cut to its own length and
    concatenated, until every stream holds ``steps`` steps (the last trial is cut)."""
    out = []
    for _ in range(streams):
        parts, n = [], 0
        while n < steps:
            b = task.sample(32, generator=generator)
            for i, length in enumerate(b.info["length"].tolist()):
                parts.append(b.inputs[i, :length])
                n += length
        out.append(torch.cat(parts)[:steps])
    return torch.stack(out)


def evidence_columns(task) -> list[int]:
    """Input columns that carry evidence: 1..n_channels (``mtwm``) or 1 (``intwm``)."""
    return list(range(1, 1 + int(getattr(task, "n_channels", 1))))


def noise_stream(task, streams: int, steps: int, generator: torch.Generator) -> torch.Tensor:
    """``(streams, steps, input_dim)``: fixation on, zero-mean white evidence of the task's
    per-step std on every evidence channel, all other inputs 0."""
    u = torch.zeros(streams, steps, task.input_dim)
    u[..., 0] = 1.0
    cols = evidence_columns(task)
    u[..., cols] = torch.randn(streams, steps, len(cols), generator=generator) * task.noise_std()
    return u


# ---------------------------------------------------------------------------- recording and fits
@torch.no_grad()
def record_rates(ens: Ensemble, u: torch.Tensor, *, subsample: int) -> tuple[np.ndarray, np.ndarray]:
    """Firing rates ``(member, stream, time, unit)`` of every member driven by ``u`` (shared),
    from the initial state, evaluation mode, every ``subsample``-th step kept; and the time in s
    (on the Euler grid) at which each ``(member, stream)`` first has a rate above 1e6 or not
    finite (inf: never), i.e. where the network diverges."""
    ens = ens.eval()
    U = u.unsqueeze(0).expand(ens.size, *u.shape).contiguous()
    H, _ = ens.run(U)
    R = torch.stack([m.rates(H[k]) for k, m in enumerate(ens.members)])
    bad = ~(R.abs() <= 1e6).all(-1)                                        # (member, stream, time)
    first = torch.where(bad.any(-1), bad.float().argmax(-1).double(), torch.tensor(float("inf"), dtype=torch.float64))
    return (R[:, :, subsample - 1::subsample].numpy().astype(np.float32),
            first.numpy() * float(ens.members[0].dt) / 1000.0)


def intrinsic_tau(ens: Ensemble) -> np.ndarray:
    """``(member, unit)`` intrinsic timescales in s (``unit_coords()["tau"]``)."""
    return np.stack([np.asarray(m.unit_coords()["tau"], dtype=float) for m in ens.members])


def effective_timescales(rec, *, fit_lag: int, min_length_ratio: float | None = 50.0):
    """``dynatools.timescales`` of a recording (time in s) with timescales bounded by
    :data:`TAU_MAX_S`; returns ``(tau_net, reliable_tau_net, status)`` as ``(member, unit)``
    arrays (s)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # constant (silent) units, short fits: in status
        ts = dt.timescales(rec, fit_lag=fit_lag, tau_max=TAU_MAX_S, min_length_ratio=min_length_ratio)
    order = ("member", "unit")
    return (ts.tau_net.transpose(*order).values, dt.reliable_tau_net(ts).transpose(*order).values,
            ts.status.transpose(*order).values)


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation of the finite pairs; NaN when either side is constant."""
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return float("nan")
    from scipy.stats import spearmanr
    return float(spearmanr(x[ok], y[ok]).statistic)


def summarize(tau: np.ndarray, reliable: np.ndarray, status: np.ndarray) -> dict[str, float]:
    """Quantiles of the reliable ``tau_net``, the fraction of reliable fits, of silent units
    (status ``constant``: a ReLU unit at 0 throughout) and of ``short`` fits (tau_net above 1/50 of
    the stream), of units whose activity diverged (``nonfinite``), and the Spearman correlation
    of intrinsic tau and reliable tau_net over units."""
    eff = reliable[np.isfinite(reliable)]
    q = np.quantile(eff, [0.25, 0.5, 0.75]) if eff.size else np.full(3, np.nan)
    return {"eff_q25": q[0], "eff_median": q[1], "eff_q75": q[2], "reliable": float(np.isfinite(reliable).mean()),
            "silent": float((status == "constant").mean()), "short": float((status == "short").mean()),
            "diverged": float((status == "nonfinite").mean()),
            "rho": spearman(tau.ravel(), reliable.ravel())}


# ---------------------------------------------------------------------------- one distribution
def compare_distribution(distribution: str, *, task: str = "mtwm", members: int = 4, units: int = 64,
                         steps: int = 400, steps_per_epoch: int = 50, batch: int = 64, eval_batches: int = 4,
                         seed: int = 0, streams: int = 4, seconds: float = 300.0, subsample: int = 10,
                         fit_lag: int = 60, trials: int = 64, trial_fit_lag: int = 100,
                         record_seed: int = 1234) -> dict[str, Any]:
    """Train, record and fit one distribution; returns the row of the table (keys below), the
    per-unit arrays (``tau``; ``effective`` and ``status``: ``trained`` / ``initial`` -> condition
    -> reliable ``tau_net`` / fit status) and the trained weights (``state_dict``, ``config``).

    Conditions: ``trials``: ``trials`` trials of the task recorded with ``trainers.record``, each
    from the initial state as in training (1.4-3.2 s each, so the short-trial rule is off and
    tau_net is biased low), fitted on lags up to ``trial_fit_lag`` steps; ``task`` and ``noise``:
    ``streams`` long streams of ``seconds`` each (module docstring), sampled every ``subsample``
    steps, fitted on ``fit_lag`` samples with the 50-tau rule."""
    config = train_config(distribution, task=task, members=members, units=units, steps=steps,
                          steps_per_epoch=steps_per_epoch, batch=batch, eval_batches=eval_batches, seed=seed)
    initial = initial_ensemble(config)
    t0 = time.perf_counter()
    run = trainers.train(config, progress=False)
    train_s = time.perf_counter() - t0
    trained = as_ensemble(run.model).eval()
    tau = intrinsic_tau(trained)
    if not np.allclose(tau, intrinsic_tau(initial)):
        raise RuntimeError("the rebuilt initial networks have other timescales than the trained ones")
    m = run.metrics()
    final = m.eval_performance.isel(epoch=-1).values            # (member,)

    task_obj = run.config.make_task()
    dt_ms = float(trained.members[0].dt)
    n_steps = int(round(seconds * 1000.0 / dt_ms))
    n_steps -= n_steps % subsample
    g = torch.Generator().manual_seed(record_seed)
    inputs = {"task": task_stream(task_obj, streams, n_steps, g), "noise": noise_stream(task_obj, streams, n_steps, g)}
    effective: dict[str, dict[str, np.ndarray]] = {"trained": {}, "initial": {}}
    status: dict[str, dict[str, np.ndarray]] = {"trained": {}, "initial": {}}
    blowup: dict[str, float] = {}
    t1 = time.perf_counter()
    for which, ens in (("trained", trained), ("initial", initial)):
        rec = trainers.record(ens, task_obj, trials=trials, seed=record_seed, outputs=False)
        _, rel, st = effective_timescales(rec[["activity"]], fit_lag=trial_fit_lag, min_length_ratio=None)
        effective[which]["trials"], status[which]["trials"] = rel, st
        for cond, u in inputs.items():
            rates, first = record_rates(ens, u, subsample=subsample)
            rec = dt.from_array(rates, dims=("member", "trial", "time", "unit"), dt=dt_ms * subsample / 1000.0,
                                time_units="s", tau=tau)
            _, rel, st = effective_timescales(rec, fit_lag=fit_lag)
            effective[which][cond], status[which][cond] = rel, st
            blowup[f"{which}_{cond}_diverged_streams"] = float(np.isfinite(first).mean())
            blowup[f"{which}_{cond}_first_divergence_s"] = float(first.min())
    analysis_s = time.perf_counter() - t1
    row = {"distribution": distribution, "task": task, "tau_mean": tau.mean(), "tau_sd": tau.std(),
           "tau_q10": np.quantile(tau, 0.1), "tau_q50": np.quantile(tau, 0.5), "tau_q90": np.quantile(tau, 0.9),
           "perf_mean": float(final.mean()), "perf_min": float(final.min()), "perf_max": float(final.max()),
           "score": float(m.score.isel(epoch=-1)), "steps": int(m.step.size),
           "reached": int(m.attrs.get("steps_to_threshold", -1)), "train_s": train_s, "analysis_s": analysis_s,
           **blowup}
    for which in effective:
        for cond in CONDITIONS:
            for k, v in summarize(tau, effective[which][cond], status[which][cond]).items():
                row[f"{which}_{cond}_{k}"] = v
    return {"row": row, "tau": tau, "effective": effective, "status": status, "config": config,
            "state_dict": {k: v.clone() for k, v in trained.state_dict().items()}}


# ---------------------------------------------------------------------------- output
def table(rows: list[dict[str, Any]]) -> str:
    """Markdown tables: intrinsic tau and performance; effective tau_net per condition."""
    lines = ["| task | distribution | intrinsic tau mean ± sd (s) | q10 / q50 / q90 (s) | steps | eval performance "
             "mean (min-max) | score (rule: 0.99) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['task']} | {r['distribution']} | {r['tau_mean']:.3f} ± {r['tau_sd']:.3f} | "
                     f"{r['tau_q10']:.2f} / {r['tau_q50']:.2f} / {r['tau_q90']:.2f} | {r['steps']} | "
                     f"{r['perf_mean']:.3f} ({r['perf_min']:.3f}-{r['perf_max']:.3f}) | {r['score']:.3f} |")
    lines += ["", "| task | distribution | input | network | tau_net median [IQR] (s) | reliable | silent | "
              "diverged | Spearman rho (intrinsic, tau_net) |", "|---|---|---|---|---|---|---|---|---|"]

    def fmt(x: float) -> str:
        return "n/a" if not np.isfinite(x) else f"{x:.2f}"

    for r in rows:
        for cond in CONDITIONS:
            for which in ("initial", "trained"):
                p = f"{which}_{cond}_"
                eff = ("n/a" if not np.isfinite(r[p + "eff_median"]) else
                       f"{r[p + 'eff_median']:.3f} [{r[p + 'eff_q25']:.3f}, {r[p + 'eff_q75']:.3f}]")
                lines.append(f"| {r['task']} | {r['distribution']} | {cond} | {which} | {eff} | "
                             f"{r[p + 'reliable']:.2f} | {r[p + 'silent']:.2f} | {r[p + 'diverged']:.2f} | "
                             f"{fmt(r[p + 'rho'])} |")
    return "\n".join(lines)


def figure(results: list[dict[str, Any]], path: str, conditions: tuple[str, ...] = ("trials",)) -> None:
    """Per task and condition (row) and distribution (column): reliable tau_net against
    intrinsic tau, log axes, initial (grey) and trained (colour) networks, the identity line."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(r["row"]["task"] for r in results))
    rows = [(t, c) for t in tasks for c in conditions]
    fig, axes = plt.subplots(len(rows), len(DISTRIBUTIONS), figsize=(3.0 * len(DISTRIBUTIONS), 2.9 * len(rows)),
                             squeeze=False, sharex=True, sharey=True)
    rng = np.random.default_rng(0)
    for (res, condition) in ((res, c) for res in results for c in conditions):
        r = res["row"]
        ax = axes[rows.index((r["task"], condition)), DISTRIBUTIONS.index(r["distribution"])]
        tau = res["tau"].ravel()
        jitter = tau * np.exp(rng.normal(0, 0.02, tau.size)) if np.ptp(tau) == 0 else tau
        for which, style in (("initial", dict(color="0.6", s=7, marker="x", lw=0.6)),
                             ("trained", dict(color="C3", s=9, alpha=0.7, edgecolor="none"))):
            eff = res["effective"][which][condition].ravel()
            ok = np.isfinite(eff) & (eff > 0)
            ax.scatter(jitter[ok], eff[ok], label=f"{which} ({ok.mean():.0%} reliable)", **style)
        ax.plot([0.05, 20], [0.05, 20], "k--", lw=0.7)
        ax.set(xscale="log", yscale="log", xlim=(0.07, 3), ylim=(0.01, 20))
        ax.set_title(f"{r['task']}, {r['distribution']}, {condition} (perf {r['perf_mean']:.2f})", fontsize=9)
        ax.legend(fontsize=6.5, loc="upper left", frameon=False)
        ax.tick_params(labelsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("intrinsic tau (s)", fontsize=8)
    for ax, (_, condition) in zip(axes[:, 0], rows):
        ax.set_ylabel(f"effective tau_net (s), {condition}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=["mtwm"], choices=["mtwm", "intwm"])
    p.add_argument("--distributions", nargs="+", default=list(DISTRIBUTIONS), choices=DISTRIBUTIONS)
    p.add_argument("--members", type=int, default=4, help="networks per distribution (K)")
    p.add_argument("--units", type=int, default=64)
    p.add_argument("--steps", type=int, default=400, help="training steps (fixed budget)")
    p.add_argument("--steps-per-epoch", type=int, default=50)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--eval-batches", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--streams", type=int, default=4, help="recorded streams (trials of the recording)")
    p.add_argument("--seconds", type=float, default=300.0, help="length of each recorded stream in s")
    p.add_argument("--subsample", type=int, default=10, help="Euler steps between recorded samples")
    p.add_argument("--fit-lag", type=int, default=60, help="lags (samples) in the exponential fits")
    p.add_argument("--trials", type=int, default=64, help="trials of the 'trials' recording")
    p.add_argument("--trial-fit-lag", type=int, default=100, help="lags (steps) of the fits on single trials")
    p.add_argument("--conditions", nargs="+", default=["trials"], choices=CONDITIONS, help="inputs drawn in the figure")
    p.add_argument("--out", default=None, help="figure path (PNG)")
    p.add_argument("--cache", default=None, help="folder: keep each distribution's result there (pickle) and "
                   "reuse it on a later call with the same options (to redraw the figure or the table)")
    a = p.parse_args(argv)
    threads = int(os.environ.get("DYNATOOLS_THREADS", "0") or 0)
    if threads:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    results = []
    for task in a.tasks:
        for dist in a.distributions:
            opts = dict(task=task, members=a.members, units=a.units, steps=a.steps, steps_per_epoch=a.steps_per_epoch,
                        batch=a.batch, eval_batches=a.eval_batches, seed=a.seed, streams=a.streams,
                        seconds=a.seconds, subsample=a.subsample, fit_lag=a.fit_lag, trials=a.trials,
                        trial_fit_lag=a.trial_fit_lag)
            cached = None
            if a.cache:
                key = "_".join(f"{k}={v}" for k, v in sorted(opts.items()))
                cached = os.path.join(a.cache, f"{dist}_{key}.pkl")
            if cached and os.path.exists(cached):
                with open(cached, "rb") as fh:
                    res = pickle.load(fh)
            else:
                res = compare_distribution(dist, **opts)
                if cached:
                    os.makedirs(a.cache, exist_ok=True)
                    with open(cached, "wb") as fh:
                        pickle.dump(res, fh)
            r = res["row"]
            print(f"[{time.perf_counter() - t0:6.0f} s] {task} {dist}: trained {r['steps']} steps in "
                  f"{r['train_s']:.0f} s, performance {r['perf_mean']:.3f}, analysis {r['analysis_s']:.0f} s; "
                  + "; ".join(f"{w} {c}: {r[f'{w}_{c}_diverged_streams']:.0%} of (member, stream) diverge, first "
                              f"after {r[f'{w}_{c}_first_divergence_s']:.1f} s"
                              for w in ("initial", "trained") for c in ("task", "noise")), flush=True)
            results.append(res)
    print(table([r["row"] for r in results]))
    if a.out:
        figure(results, a.out, tuple(a.conditions))
        print(f"figure: {a.out} ({os.path.getsize(a.out) / 1024:.0f} kB)")
    print(f"total wall-clock: {time.perf_counter() - t0:.0f} s on {torch.get_num_threads()} torch thread(s)")
    return results


if __name__ == "__main__":
    main()
