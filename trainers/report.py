"""The paper report: every figure of the timescale paper for one or several curriculum runs.

For each run directory: :func:`trainers.analyze.analyze_run` (cached; recordings with p ~ U(0, 1)
drawn per trial, the authors' protocol), then, on the network of the largest solved N, ablation by
tau and perturbations of W_rec and tau (App. F accuracy; cached), and optionally re-training on new
Ns. Figures (:mod:`dynatools.plot`, which takes the result Datasets) are written as PNG and SVG with
an ``index.html`` that shows them all; several runs are overlaid in one figure where the paper
compares curricula. Needs matplotlib. Command line: ``trainers report``.

Modular runs (model ``modular``; 004, Hamidi, Khajehabdollahi et al., "Modular Growth of
Hierarchical Networks") get a section of their own: tasks solved under Eq. 5 perturbations of W^R,
W^FF and tau (Fig. 3, with every leaky run of the report overlaid as the non-modular comparison),
the accuracy of each module on its N (Fig. 5a-b) and the weight conservation across modules
(Fig. 5c), from :mod:`trainers.modular_analysis`.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from dynatools.utils import cache_key, cached, check_choice, check_positive_int, write_atomic
from trainers.analyze import _analyze, _check_params, _Run, load_checkpoint_analysis

#: Default perturbation strengths (relative, Eq. 4) for W_rec and tau.
EPS_W = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5)
EPS_TAU = (0.0, 0.5, 1.0, 2.0, 4.0)
#: Part of the cache keys of the robustness and re-training results; raise it when the same inputs
#: give other results (2: independent bit / initial-state streams in the App. F accuracy, a fresh
#: head for single-head re-training, ties of the clamped tau broken by the raw tau).
METHOD = 2


#: Perturbation strengths of the modular section (004 Eq. 5, relative to the group's norm).
EPS_MODULAR = (0.0, 0.1, 0.2, 0.5, 1.0, 2.0)
#: Evaluation of the modular section's sweeps: fresh batches x sequences per evaluation (the
#: task's per-sequence evaluation, as in training).
MODULAR_EVALUATION = {"batches": 10, "batch": 256}


#: Initial states of the report's fixed-point search (``trainers fixed-points`` uses 1000).
FIXED_POINT_STATES = 500

#: Below this App. F accuracy a network is too close to chance (0.5) for relative accuracies.
MIN_BASE_ACCURACY = 0.55
#: The list of figure files a report wrote, kept in the report folder (so that a later report into
#: the same folder removes the figures it no longer makes).
MANIFEST = "figures.txt"


def _cached(path: Path, key: str, compute: Any, refresh: bool) -> xr.Dataset:
    if refresh:
        path.unlink(missing_ok=True)
    return cached(path, key, compute)


def _too_close_to_chance(base: float, N: int) -> str:
    return (f"the network saved at N={N} scores {base:.3f} on the App. F accuracy, too close to chance (0.5) "
            f"for relative accuracies; train the run further.")


def _network(run: _Run, N: int) -> tuple[Any, Any, int, str]:
    """The network saved when N was solved, its task, the head that answers N, and the stamp of
    the checkpoint file it was read from (the checkpoint is read once per report)."""
    ck = run.checkpoint(N)
    return ck.model(), ck.config.make_task(), ck.Ns.index(N), run.stamp(N)


def _base_accuracy(run: _Run, N: int, accuracy: dict[str, Any]) -> float:
    """App. F accuracy of the network saved when N was solved, on N."""
    from trainers.evaluation import continuous_accuracy

    model, task, head, _ = _network(run, N)
    return float(np.mean(continuous_accuracy(model, task, N, head=head, **accuracy)))


def _robustness(run: _Run, N: int, *, repeats: int, accuracy: dict[str, Any], n_ablate: int,
                progress: bool, refresh: bool = False) -> dict[str, Any]:
    """Ablation (longest / shortest tau) and perturbation (W_rec, tau) of the network solving N."""
    from dynatools.robustness import ablation_by_tau, perturb
    from trainers.evaluation import accuracy_scorer

    model, task, head, stamp = _network(run, N)
    scorer = accuracy_scorer(task, N, head=head, **accuracy)
    base_scores = scorer(model)

    def score(m: Any) -> Any:
        # the unmodified network is scored once, not again by each ablation / perturbation sweep
        # (neither changes ``model``: ablate wraps a copy, perturb perturbs a deep copy)
        return base_scores if m is model else scorer(m)

    base = float(np.mean(base_scores))
    out: dict[str, Any] = {"N": N, "base_accuracy": base}
    if not (hasattr(model, "unit_axes") and hasattr(model, "effective_tau")):
        out["skipped"] = (f"ablation by tau and perturbation of W_rec / tau need a leaky RNN (trained tau "
                          f"per unit); this run's model is {type(model).__name__}.")
        if getattr(model, "name", "") == "modular":
            out["skipped"] += " Its Eq. 5 perturbations are in the modular section below."
        return out
    if base <= MIN_BASE_ACCURACY:
        out["skipped"] = _too_close_to_chance(base, N)
        return out
    key = {"checkpoint": stamp, "N": N, "repeats": repeats, "method": METHOD, **accuracy}
    # at most half the units from each end, so that the longest- and shortest-tau sets never overlap
    n = max(1, min(n_ablate, int(model.n_units) // 2))
    if n < n_ablate:
        out["note"] = (f"{n} units ablated from each end of the τ range (half of the network's "
                       f"{int(model.n_units)} units), not {n_ablate}, so that the two sets do not overlap.")
    for which in ("longest", "shortest"):
        out[f"ablation_{which}"] = _cached(run.dir.analysis_path(f"ablation_{which}", N), cache_key(**key, n=n, which=which),
                                           lambda w=which: ablation_by_tau(model, score, n=n, which=w, progress=progress),
                                           refresh)
    for target, eps in (("W_rec", EPS_W), ("tau", EPS_TAU)):
        out[f"perturb_{target}"] = _cached(run.dir.analysis_path(f"perturb_{target}", N), cache_key(**key, target=target, eps=eps),
                                           lambda t=target, e=eps: perturb(model, e, score, target=t, repeats=repeats, seed=0,
                                                                           progress=progress), refresh)
    return out


def _retrain(run: _Run, N: int, new_Ns: Sequence[int], epochs: int, accuracy: dict[str, Any],
             progress: bool, refresh: bool = False) -> xr.Dataset:
    from trainers.retrain import retrain_sweep

    model, task, head, stamp = _network(run, N)
    cfg = run.checkpoint(N).config
    key = cache_key(checkpoint=stamp, new_Ns=list(new_Ns), epochs=epochs, method=METHOD, **accuracy)
    training = {k: getattr(cfg, k) for k in ("batch", "steps_per_epoch", "eval_batches", "optimizer", "lr",
                                            "momentum", "clip", "device")}
    return _cached(run.dir.analysis_path("retrain", N), key,
                   lambda: retrain_sweep(model, list(new_Ns), base_N=N, base_head=head, epochs=epochs, task=task,
                                         accuracy=accuracy, progress=progress, **training), refresh)


def _is_modular(run: _Run, N: int) -> bool:
    """Whether a run trains 004's modular network: the model of its configuration
    (``config.json``, else the checkpoint saved when N was solved) is ``modular``."""
    cfg = run.dir.config if run.dir.config_path.is_file() else run.checkpoint(N).config
    return cfg.model == "modular"


def _perturbation_sweep(run: _Run, N: int, *, repeats: int, evaluation: dict[str, int], progress: bool,
                        refresh: bool = False) -> xr.Dataset | str:
    """004 Eq. 5 sweep (:func:`trainers.modular_analysis.perturbation_sweep`) of the network saved
    when N was solved, over its heads; cached. A string says why there is none (a model without
    W_rec and tau)."""
    from trainers.modular_analysis import model_targets, perturbation_sweep

    model, task, _, stamp = _network(run, N)
    try:
        model_targets(model)
    except TypeError:
        return f"the Eq. 5 sweep needs a modular or leaky network (W_rec and tau); this run's model is " \
               f"{type(model).__name__}."
    Ns = run.checkpoint(N).Ns or None
    key = cache_key(checkpoint=stamp, N=N, repeats=repeats, eps=list(EPS_MODULAR), Ns=Ns, method=METHOD,
                    **evaluation)
    return _cached(run.dir.analysis_path("perturbation_sweep", N), key,
                   lambda: perturbation_sweep(model, task, EPS_MODULAR, repeats=repeats, seed=0, Ns=Ns,
                                              progress=progress, **evaluation), refresh)


def _fixed_points(run: _Run, N: int, refresh: bool) -> tuple[xr.Dataset, xr.Dataset] | str:
    """Fixed and slow points of the network saved when N was solved
    (:func:`trainers.fixed_points.fixed_points_of_run`, ``FIXED_POINT_STATES`` initial states
    along a recording), and the recorded states they started from (the figure's trajectories);
    both cached. On the CPU, as the rest of the report: the same points on every machine, and a
    cache that does not depend on whether a GPU is present. A string says why there are none."""
    from trainers.fixed_points import fixed_points_of_run

    stamp = _network(run, N)[3]
    key = cache_key(checkpoint=stamp, N=N, n_init=FIXED_POINT_STATES, method="fixed_points_of_run", device="cpu")
    states: dict[str, xr.DataArray] = {}

    def compute() -> xr.Dataset:
        res = fixed_points_of_run(run.path, N, n_init=FIXED_POINT_STATES, device="cpu")
        states["activity"] = res.states
        return res.result

    try:
        result = _cached(run.dir.analysis_path("fixed_points_report", N), key, compute, refresh)
        traj = _cached(run.dir.analysis_path("fixed_point_states", N), key,
                       lambda: xr.Dataset({"activity": states["activity"] if states else
                                           fixed_points_of_run(run.path, N, n_init=1, device="cpu").states}),
                       refresh)
    except (TypeError, ValueError) as exc:          # a model without a step map, a task without states
        return str(exc).splitlines()[0]
    return result, traj


def _conservation(run: _Run, N: int) -> xr.Dataset | str:
    """Weight conservation across the modules of the network saved when N was solved (cheap: not
    cached); a string says why there is none."""
    from trainers.modular_analysis import module_weight_conservation

    model = _network(run, N)[0]
    if getattr(model, "n_modules", 0) < 2:
        return f"the network saved at N={N} has one module; weight conservation compares consecutive modules."
    return module_weight_conservation(model)


def _modular_rows(extra: dict[str, dict[str, Any]]) -> str:
    """The modular section's table (HTML): per modular run, its modules, tasks solved and mean
    weight conservation."""
    esc = html.escape
    rows = []
    for label, e in extra.items():
        if not e.get("modular"):
            continue
        sweep, cons = e.get("sweep"), e.get("conservation")
        solved = (f"{int(sweep['base_tasks_solved'])} of {sweep.sizes['N']}" if isinstance(sweep, xr.Dataset)
                  else "–")
        if isinstance(cons, xr.Dataset):
            rec = f"{cons.attrs['recurrent_mean']:.3g}"
            ff = f"{cons.attrs['feedforward_mean']:.3g}" if np.isfinite(cons.attrs["feedforward_mean"]) else "–"
        else:
            rec = ff = "–"
        rows.append(f"<tr><td>{esc(label)}</td><td>{e['top']}</td><td>{e['n_modules']} × {e['module_size']}</td>"
                    f"<td>{solved}</td><td>{rec}</td><td>{ff}</td></tr>")
    if not rows:
        return ""
    return ("<h2>Modular networks (Hamidi, Khajehabdollahi et al., “Modular Growth of Hierarchical "
            "Networks”)</h2>\n"
            "<p>Each modular network is the one saved at its largest solved N. Tasks solved: heads above 0.9 "
            "accuracy on fresh batches (readout at the end of each sequence, as in training). Weight "
            "conservation: variance of the normalised change of W<sup>R</sup> (off-diagonal) and W<sup>FF</sup> "
            "between consecutive modules, mean over modules (004 Fig. 5c; lower = more conserved).</p>\n"
            "<table><tr><th>label</th><th>largest solved N</th><th>modules × units</th><th>tasks solved "
            "(unperturbed)</th><th>W<sup>R</sup> conservation</th><th>W<sup>FF</sup> conservation</th></tr>"
            + "".join(rows) + "</table>")


def _labels(run_dirs: Sequence[Path]) -> list[str]:
    labels: list[str] = []
    for d in run_dirs:
        base = d.resolve().name or str(d)
        label, i = base, 2
        while label in labels:
            label, i = f"{base} ({i})", i + 1
        labels.append(label)
    return labels


def make_report(run_dirs: Sequence[str | os.PathLike], out_dir: str | os.PathLike, *, steps: int = 20_000,
                trials: int = 4, robustness: bool = True, repeats: int = 10,
                accuracy: dict[str, Any] | None = None, n_ablate: int = 20,
                retrain_Ns: Sequence[int] | None = None, retrain_epochs: int = 20, burn_in: int = 500,
                fit_lag: int = 30, refresh: bool = False, parallel: str = "auto", workers: int | None = None,
                modular_evaluation: dict[str, int] | None = None, fixed_points: bool = False,
                progress: bool = True) -> Path:
    """Analyse the runs (what is not cached yet) and write every figure and ``index.html``.

    Parameters
    ----------
    run_dirs : sequence of paths
        ``trainers train`` run directories; their figures are overlaid.
    out_dir : path
        Created if needed; receives ``*.png``, ``*.svg`` and ``index.html``.
    steps, trials : int
        Recording length and trials per checkpoint (:func:`trainers.analyze.analyze_run`).
    robustness : bool, default=True
        Ablation and perturbation of the network of each run's largest solved N (Figs. 7, 8a-b).
    repeats : int, default=10
        Perturbation repeats.
    accuracy : dict, optional
        ``burn_in``, ``steps``, ``trials``, ``seed`` of the App. F accuracy (default 100, 1000, 10, 0).
    n_ablate : int, default=20
        Units ablated (one at a time) from each end of the tau distribution; at most half the
        units, so that the two sets do not overlap (the page says so when this lowers it).
    retrain_Ns : sequence of int, optional
        Re-train each run's largest-N network on these Ns (Fig. 8c); skipped when None, and for a
        network too close to chance (App. F accuracy <= 0.55).
    retrain_epochs : int, default=20
    burn_in, fit_lag : int, default 500, 30
        Discarded steps of each recording, and the largest lag of the timescale fits
        (:func:`trainers.analyze.analyze_run`).
    refresh : bool, default=False
        Recompute every analysis instead of reusing the caches in ``RUN_DIR/analysis``.
    parallel, workers : see :func:`trainers.analyze.analyze_run`.
    modular_evaluation : dict, optional
        ``batches`` and ``batch`` of every evaluation of the modular section's perturbation sweeps
        (default 10 x 256). The modular section (runs of model ``modular``): tasks solved under
        Eq. 5 perturbations of W^R, W^FF and tau (``EPS_MODULAR``, ``repeats`` directions; 004
        Fig. 3, every leaky run of the report overlaid as non-modular), the accuracy of each
        module (Fig. 5a-b), both with ``robustness``, and weight conservation across modules
        (Fig. 5c). The sweeps are cached in ``RUN_DIR/analysis/perturbation_sweep_N{N:03d}.nc``.
    fixed_points : bool, default=False
        Add the fixed and slow points of each run's network at its largest solved N
        (:func:`trainers.fixed_points.fixed_points_of_run`, ``FIXED_POINT_STATES`` initial states
        along a recording): a table of what was found and the trajectories with the points in PCA
        space (:func:`dynatools.fixed_points.plot_fixed_points`); cached in
        ``RUN_DIR/analysis/fixed_points_report_N{N:03d}.nc`` (docs/fixed-points.md).
    progress : bool, default=True

    Returns
    -------
    pathlib.Path
        The ``index.html`` written. ``figures.txt`` beside it lists the figure files; figures of
        an earlier report into the same folder that this one does not make are removed.

    Raises
    ------
    FileNotFoundError, ValueError
        Before any work: a run directory without solved checkpoints, or an invalid option.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from dynatools import plot as dplot

    run_paths = [Path(d) for d in run_dirs]
    if not run_paths:
        raise ValueError("give at least one run directory.")
    # every check before any work: a bad option or the last run directory must not fail an hour in
    runs = [_Run(d) for d in run_paths]
    for run in runs:
        run.solved()
    for name, value in (("repeats", repeats), ("n_ablate", n_ablate), ("retrain_epochs", retrain_epochs)):
        check_positive_int(name, value)
    params = _check_params(steps, trials, burn_in, 0.9, fit_lag, 0)
    check_choice("parallel", parallel, ("auto", "dask", "serial"))
    if workers is not None:
        check_positive_int("workers", workers)
    if retrain_Ns is not None:
        bad = [n for n in retrain_Ns if int(n) < 2]
        if bad:
            raise ValueError(f"retrain_Ns must be task sizes N >= 2; found {bad}.")
    modular_evaluation = {**MODULAR_EVALUATION, **(modular_evaluation or {})}
    for name in ("batches", "batch"):
        check_positive_int(f"modular_evaluation {name}", modular_evaluation[name])
    accuracy = {"burn_in": 100, "steps": 1000, "trials": 10, "seed": 0, **(accuracy or {})}
    for name in ("burn_in", "steps", "trials"):
        check_positive_int(f"accuracy {name}", accuracy[name], minimum=0 if name == "burn_in" else 1)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    labels = _labels(run_paths)
    summaries: dict[str, xr.Dataset] = {}
    extra: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    for label, run in zip(labels, runs):
        s = _analyze(run, params, parallel, workers, refresh, progress)
        s.attrs["label"] = label
        summaries[label] = s
        top = int(s["N"].values.max())
        extra[label] = {"top": top, "timescales": load_checkpoint_analysis(run.path, top)}
        base = None
        if robustness:
            rob = _robustness(run, top, repeats=repeats, accuracy=accuracy, n_ablate=n_ablate, progress=progress,
                              refresh=refresh)
            extra[label]["robustness"] = rob
            base = rob["base_accuracy"]
            if "skipped" in rob:
                notes.append(f"{label}: robustness skipped: {rob['skipped']}")
            if "note" in rob:
                notes.append(f"{label}: {rob['note']}")
        if retrain_Ns:
            base = _base_accuracy(run, top, accuracy) if base is None else base
            if base <= MIN_BASE_ACCURACY:
                notes.append(f"{label}: re-training skipped: {_too_close_to_chance(base, top)}")
            else:
                extra[label]["retrain"] = _retrain(run, top, retrain_Ns, retrain_epochs, accuracy, progress, refresh)

    if any(_is_modular(run, extra[label]["top"]) for label, run in zip(labels, runs)):
        for label, run in zip(labels, runs):
            top = extra[label]["top"]
            modular = _is_modular(run, top)
            if modular:
                model = _network(run, top)[0]
                extra[label].update(modular=True, n_modules=int(model.n_modules), module_size=int(model.module_size))
                cons = _conservation(run, top)
                if isinstance(cons, str):
                    notes.append(f"{label}: weight conservation skipped: {cons}")
                else:
                    extra[label]["conservation"] = cons
            if robustness:
                sweep = _perturbation_sweep(run, top, repeats=repeats, evaluation=modular_evaluation,
                                            progress=progress, refresh=refresh)
                if isinstance(sweep, str):
                    if modular:
                        notes.append(f"{label}: Eq. 5 perturbation skipped: {sweep}")
                else:
                    extra[label]["sweep"] = sweep

    if fixed_points:
        for label, run in zip(labels, runs):
            fp = _fixed_points(run, extra[label]["top"], refresh)
            if isinstance(fp, str):
                notes.append(f"{label}: fixed points skipped: {fp}")
            else:
                extra[label]["fixed_points"] = fp

    def having(*names: str) -> dict[str, xr.Dataset]:
        return {lb: ds for lb, ds in summaries.items() if all(n in ds for n in names)}

    figures: list[tuple[str, str, Any]] = [
        ("timescales_vs_N", "Trained single-neuron timescales τ and network timescales τ_net against N "
                            "(line: median over units, band: interquartile range; τ_net over the units with a reliable "
                            "fit; dotted: one time step, below which the recording does not resolve τ_net; "
                            "timescale paper Figs. 4b, 5c-d).",
         lambda: dplot.timescales_vs_N(summaries)),
        ("dimensionality_vs_N", "Principal components needed for 90% of the variance against N, with a "
                                "linear fit up to N = 30 (Fig. 6b); mean ± std over the recorded trials.",
         lambda: dplot.dimensionality_vs_N(summaries)),
    ]
    balanced = having("positive_sum", "negative_sum")
    if balanced:
        figures.insert(1, ("weight_balance_vs_N", "Summed incoming positive and negative recurrent weight per unit "
                                                  "against N (Fig. 6a); median over units, error bars: interquartile "
                                                  "range.", lambda: dplot.weight_balance_vs_N(balanced)))
    untrained_tau = [lb for lb, ds in summaries.items() if not np.isfinite(ds["tau"].values).any()]
    if untrained_tau:
        notes.append(f"trained τ: {', '.join(untrained_tau)} have no per-unit timescale parameter (gated "
                     f"models), so the left panel of the timescales figure has no line for them.")
    missing = sorted(set(summaries) - set(balanced))
    if missing:
        notes.append(f"weight balance: the recordings of {', '.join(missing)} carry no W_rec (gated models), "
                     f"so Fig. 6a leaves them out.")
    for label in labels:
        figures.append((f"tau_net_distribution_{label}",
                        f"{label}: distributions of τ_net across units, reliable fits only (Fig. 5b); up to four "
                        f"solved N spread over the run, the legend names the others.",
                        lambda lb=label: dplot.tau_net_distributions(summaries[lb])))
        figures.append((f"autocorrelation_fits_{label}",
                        f"{label}: autocorrelations of example units at N = {extra[label]['top']} with single- "
                        f"and double-exponential fits (Figs. 1b, S10); a red title marks a τ_net that is not a "
                        f"valid timescale (below one step, two equal timescales, or an unreliable fit).",
                        lambda lb=label: dplot.autocorrelation_fits(extra[lb]["timescales"])))
    rob = {lb: e["robustness"] for lb, e in extra.items() if "robustness" in e and "skipped" not in e["robustness"]}

    def tested_at(labels_: Sequence[str]) -> str:
        return "Each network is tested on its largest solved N (" + ", ".join(
            f"{lb}: N = {extra[lb]['top']}" for lb in labels_) + ")."

    if rob:
        figures.append(("ablation", "Relative accuracy after removing, one at a time, each of the units with the "
                                    "longest and the shortest trained τ (Fig. 7); bars: median over the ablated units, "
                                    "whiskers: interquartile range, dots: one per unit. " + tested_at(list(rob)),
                        lambda: dplot.ablation_bars({lb: {"longest": r["ablation_longest"], "shortest": r["ablation_shortest"]}
                                                     for lb, r in rob.items()})))
        for target, fig_ref in (("W_rec", "8a"), ("tau", "8b")):
            figures.append((f"perturbation_{target}", f"Relative accuracy under random perturbations of {target} of "
                                                      f"strength ε (Eq. 4; Fig. {fig_ref}); median and "
                                                      f"interquartile range over repeats. " + tested_at(list(rob)),
                            lambda t=target: dplot.perturbation_curves({lb: r[f"perturb_{t}"] for lb, r in rob.items()},
                                                                       title=f"perturbation of {t}")))
    retrained = [lb for lb, e in extra.items() if "retrain" in e]
    if retrained:
        figures.append(("retraining", "Relative accuracy after re-training on a new N without curriculum "
                                      f"for {retrain_epochs} epochs (Fig. 8c), relative to the accuracy on the "
                                      f"largest solved N; median and interquartile range over trials ("
                                      + ", ".join(f"{lb}: N = {extra[lb]['top']}" for lb in retrained) + ").",
                        lambda: dplot.retraining_curves({lb: extra[lb]["retrain"] for lb in retrained})))
    figures.extend(_modular_figures(extra, repeats))
    figures.extend(_fixed_point_figures(extra))
    written = []
    for name, caption, make in figures:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        fig = make()
        for ext in ("png", "svg"):
            write_atomic(out / f"{safe}.{ext}",
                         lambda tmp, e=ext: fig.savefig(tmp, format=e, dpi=130 if e == "png" else None))
        plt.close(fig)
        written.append((safe, caption))
    files = [f"{safe}.{ext}" for safe, _ in written for ext in ("png", "svg")]
    manifest = out / MANIFEST
    if manifest.is_file():                       # figures an earlier report made and this one does not
        for old in set(manifest.read_text(encoding="utf-8").split()) - set(files):
            if "/" not in old and old.endswith((".png", ".svg")):
                (out / old).unlink(missing_ok=True)
    write_atomic(manifest, lambda tmp: tmp.write_text("\n".join(files) + "\n", encoding="utf-8"))
    index = out / "index.html"
    text = _html(summaries, extra, written, notes, _modular_rows(extra))
    write_atomic(index, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return index


def _modular_figures(extra: dict[str, dict[str, Any]], repeats: int) -> list[tuple[str, str, Any]]:
    """The modular section's figures: Fig. 3 (every sweep overlaid), and per modular run Fig. 5a-b
    and Fig. 5c."""
    from trainers.modular_analysis import plot_module_accuracy, plot_tasks_solved, plot_weight_conservation

    figures: list[tuple[str, str, Any]] = []
    sweeps = {lb: e["sweep"] for lb, e in extra.items() if "sweep" in e}
    where = ", ".join(f"{lb}: N = {extra[lb]['top']}" for lb in sweeps)
    if sweeps:
        figures.append(("modular_tasks_solved",
                        "Tasks still solved (accuracy > 0.9) under random perturbations of the recurrent weights "
                        "W^R, the feed-forward weights W^FF (modular networks) and the timescales τ (upward only) "
                        "of strength ε relative to the group's Frobenius norm (004 Eq. 5, Fig. 3; non-modular "
                        f"leaky runs overlaid); mean over {repeats} random directions, band: SEM. Each network is "
                        f"the one saved at its largest solved N ({where}).",
                        lambda: plot_tasks_solved(sweeps)))
    for label, e in extra.items():
        if e.get("modular") and "sweep" in e:
            figures.append((f"modular_module_accuracy_{label}",
                            f"{label}: accuracy of each module on its N under perturbations of W^FF, W^R and τ "
                            f"(004 Fig. 5a-b; darker: larger N; a perturbation reaches only the modules "
                            f"downstream); mean over {repeats} directions, band: SEM; dotted: 0.9.",
                            lambda s=e["sweep"]: plot_module_accuracy(s)))
        if e.get("modular") and "conservation" in e:
            figures.append((f"modular_weight_conservation_{label}",
                            f"{label}: variance of the normalised weight change between consecutive modules, "
                            f"W^R (off-diagonal) and W^FF (004 Fig. 5c; lower = more conserved; an exact copy "
                            f"gives 0, independent weights about 2).",
                            lambda c=e["conservation"]: plot_weight_conservation(c)))
    return figures


def _fixed_point_figures(extra: dict[str, dict[str, Any]]) -> list[tuple[str, str, Any]]:
    """One figure per run with fixed points: the recorded trajectories and the points in the
    PCA space of the activity, coloured by stability, unstable modes as short lines."""
    from dynatools.fixed_points import plot_fixed_points
    from trainers.fixed_points import summary_lines

    figures: list[tuple[str, str, Any]] = []
    for label, e in extra.items():
        if "fixed_points" not in e:
            continue
        result, traj = e["fixed_points"]

        def make(r: xr.Dataset = result, a: xr.Dataset = traj, lb: str = label) -> Any:
            ax = plot_fixed_points(r, a["activity"])
            ax.set_title(f"{lb}, N = {e['top']}", fontsize=9)
            return ax.figure

        figures.append((f"fixed_points_{label}",
                        f"{label}: fixed and slow points of the network at N = {e['top']} (Sussillo & Barak "
                        f"2013; docs/fixed-points.md) with the recorded trajectories, in the PCA space of the "
                        f"activity; stable blue, saddle orange, unstable red, marginal green, slow points "
                        f"hollow; lines: unstable modes. " + " ".join(summary_lines(result)), make))
    return figures


def _html(summaries: dict[str, xr.Dataset], extra: dict[str, dict[str, Any]], figures: list[tuple[str, str]],
          notes: list[str], modular: str = "") -> str:
    esc = html.escape
    rows = []
    for label, s in summaries.items():
        rob = extra[label].get("robustness", {})
        base = f"{rob['base_accuracy']:.3f}" if "base_accuracy" in rob else "–"
        rows.append(f"<tr><td>{esc(label)}</td><td>{esc(s.attrs.get('run_dir', ''))}</td>"
                    f"<td>{esc(str(s.attrs.get('curriculum', '')))}</td><td>{esc(str(s.attrs.get('task', '')))}</td>"
                    f"<td>{esc(str(s.attrs.get('model', '')))}</td><td>{s.sizes['N']}</td>"
                    f"<td>{int(s['N'].values.min())}–{int(s['N'].values.max())}</td><td>{base}</td></tr>")
    body = "\n".join(
        f'<figure id="{esc(name)}"><a href="{esc(name)}.svg"><img src="{esc(name)}.png" alt="{esc(caption)}"></a>'
        f'<figcaption>{esc(caption)} <a href="{esc(name)}.png">PNG</a> · <a href="{esc(name)}.svg">SVG</a>'
        f'</figcaption></figure>' for name, caption in figures)
    toc = "".join(f'<li><a href="#{esc(n)}">{esc(n)}</a></li>' for n, _ in figures)
    note_html = "".join(f"<p class=note>{esc(n)}</p>" for n in notes)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>trainers report</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;font-size:14px}}
figure{{margin:2em 0}}img{{max-width:100%;border:1px solid #eee}}figcaption{{font-size:14px;color:#444}}
.note{{color:#a33}}</style></head><body>
<h1>trainers report</h1>
<p>Figures of the timescale paper (Khajehabdollahi, Zeraati et al., ICLR 2024) for these runs; made by
<code>trainers report</code>. Timescales, dimensionality and weight balance: each network recorded on input bits
with p ~ U(0, 1) drawn per trial (the authors' protocol). Accuracy: App. F (one long sequence per trial, read out at
every step).</p>
<table><tr><th>label</th><th>run directory</th><th>curriculum</th><th>task</th><th>model</th><th>checkpoints</th>
<th>N</th><th>App. F accuracy at largest N</th></tr>
{''.join(rows)}</table>
{modular}
{note_html}
<ul>{toc}</ul>
{body}
</body></html>
"""


__all__ = ["make_report", "EPS_W", "EPS_TAU", "EPS_MODULAR", "FIXED_POINT_STATES"]
