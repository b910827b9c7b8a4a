"""``trainers modular SUBCOMMAND``: analyses of 004's modular networks (Hamidi, Khajehabdollahi et
al., "Modular Growth of Hierarchical Networks", ``shared/seeds/004_*``).

* ``baseline``: the size-matched non-modular network of a module size (Fig. 1, 2b).
* ``perturb``: tasks solved and per-module accuracy under Eq. 5 perturbations of W^R, W^FF or
  tau of a run's network, modular or not (Fig. 3, 5a-b).
* ``timescales``: trained and effective timescale of the units solving each N (Fig. 4;
  :mod:`trainers.modular_timescales`).
* ``generalise`` (or ``generalize``): accuracy on N + K after at most a few epochs of re-training
  (Fig. 2c; :mod:`trainers.generalisation`).
* ``pareto``: N solved after a fixed number of epochs against trainable parameters, with the
  front of each architecture (Fig. 2b; :mod:`trainers.pareto`).

A new subcommand is one function ``_add_NAME(sub)`` that adds its parser (with
:func:`_parser`) and one line in :data:`SUBCOMMANDS`. docs/cli.md and docs/modular.md have
examples.
"""

from __future__ import annotations

import argparse
import contextlib
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

#: Figure formats ``--plot`` writes (by the file's suffix).
PLOT_FORMATS = ("png", "svg", "pdf")


def _parser(sub: argparse._SubParsersAction, name: str, **kw: Any) -> argparse.ArgumentParser:
    """A ``trainers modular NAME`` parser; its errors read ``trainers modular NAME: error: ...``."""
    p = sub.add_parser(name, **kw)
    p.set_defaults(command=f"modular {name}")
    return p


def _check_plot_path(path: Path | None, flag: str) -> None:
    if path is None:
        return
    fmt = path.suffix[1:].lower()
    if fmt not in PLOT_FORMATS:
        raise ValueError(f"{flag} {path}: the suffix sets the format; give a file ending in "
                         f"{', '.join('.' + f for f in PLOT_FORMATS)}.")


def _check_folder(path: Path | None, flag: str) -> None:
    if path is not None and not path.parent.is_dir():
        raise FileNotFoundError(f"{flag} {path}: the folder {path.parent} does not exist; create it first.")


def _save_figure(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    from dynatools.utils import write_atomic

    write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=130, format=path.suffix[1:].lower()))
    plt.close(fig)


@contextlib.contextmanager
def _flags(*keywords: str, phrases: tuple[tuple[str, str], ...] = ()) -> Iterator[None]:
    """Re-raise the library's one-argument errors with its keyword arguments spelled as this
    command's flags (``fit_lag=3000`` -> ``--fit-lag 3000``, ``fresh_head`` -> ``--fresh-head``);
    ``phrases`` are replaced first, verbatim."""
    try:
        yield
    except Exception as exc:
        if len(exc.args) == 1 and isinstance(exc.args[0], str):
            text = exc.args[0]
            for old, new in phrases:
                text = text.replace(old, new)
            for kw in keywords:
                flag = "--" + kw.replace("_", "-")
                text = re.sub(rf"(?<![\w-]){kw}=", flag + " ", text)
                if "_" in kw:                       # an identifier: unambiguous in prose
                    text = re.sub(rf"(?<![\w-]){kw}\b", flag, text)
            exc.args = (text,)
        raise


# ---------------------------------------------------------------------------- baseline
def _cmd_baseline(args: argparse.Namespace) -> int:
    from trainers.modular_analysis import (PAPER_PAIRS, baseline_parameters, matched_baseline_units,
                                           modular_parameters)

    kw = {"n_start": args.n_start, "task": args.task}
    modular = modular_parameters(args.module_size, args.n_max, **kw)
    units = matched_baseline_units(args.module_size, args.n_max, baseline_model=args.baseline_model, **kw)
    base = baseline_parameters(units, args.n_max, baseline_model=args.baseline_model, **kw)
    n_modules = args.n_max - args.n_start + 1
    if args.quiet:
        print(units)
        return 0
    print(f"modular: {n_modules} modules of {args.module_size} units (N = {args.n_start}..{args.n_max}), "
          f"{modular} trainable parameters")
    print(f"matched non-modular {args.baseline_model} network: {units} units with {n_modules} heads, {base} "
          f"trainable parameters ({base - modular:+d})")
    paper = PAPER_PAIRS.get(args.module_size) if (args.n_max, args.n_start) == (30, 2) else None
    if paper is not None:
        at_paper = baseline_parameters(paper, args.n_max, baseline_model=args.baseline_model, **kw)
        print(f"004's pair: {paper} units, {at_paper} trainable parameters counted here (docs/modular.md "
              f"explains the difference)")
    return 0


def _add_baseline(sub: argparse._SubParsersAction) -> None:
    p = _parser(sub, "baseline", help="the non-modular network size matched to a modular one (004 Fig. 1, 2b)",
                description="The number of units M of the non-modular multi-head network whose trainable-"
                            "parameter count is closest to that of the modular network of --module-size units "
                            "per module grown to --n-max (one module and head per N), both counted on the actual "
                            "models (trainers.modular_analysis.matched_baseline_units). 004 pairs module sizes "
                            "5, 10, 15, 20 with M = 20, 54, 91, 128.")
    p.add_argument("--module-size", type=int, required=True, help="units per module M_m (004: 5, 10, 15, 20)")
    p.add_argument("--n-max", type=int, default=30, help="largest N, where the counts are matched (default 30, "
                                                         "as 004)")
    p.add_argument("--n-start", type=int, default=2, help="first N (default 2)")
    p.add_argument("--baseline-model", choices=("leaky", "modular"), default="leaky",
                   help="the non-modular network: leaky (LeakyRNN, default) or modular (one module: 004 Eq. 3 "
                        "exactly, one bias per unit)")
    p.add_argument("--task", default="parity", help="task (sets the input and output sizes; default parity)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the matched number of units")
    p.set_defaults(func=_cmd_baseline)


# ---------------------------------------------------------------------------- perturb
def _cmd_perturb(args: argparse.Namespace) -> int:
    from dynatools.utils import check_positive_int, write_netcdf_atomic
    from trainers.engine import resolve_device
    from trainers.modular_analysis import perturbation_sweep, plot_module_accuracy, plot_tasks_solved
    from trainers.models import ModularRNN
    from trainers.rundir import RunDir

    # every check before the (long) sweep
    for path, flag in ((args.plot, "--plot"), (args.plot_modules, "--plot-modules")):
        _check_plot_path(path, flag)
    for path, flag in ((args.output, "--output"), (args.plot, "--plot"), (args.plot_modules, "--plot-modules")):
        _check_folder(path, flag)
    for name in ("repeats", "batches", "batch"):
        check_positive_int(f"--{name}", getattr(args, name))
    device = resolve_device(args.device)
    rd = RunDir(args.run_dir)
    ck = rd.checkpoint(args.N)
    cfg = ck.config
    task = cfg.make_task()
    if not getattr(task, "uses_N", False):
        raise ValueError(f"{args.run_dir} is a {cfg.task} run; tasks solved needs a multi-head task of sizes N "
                         f"(parity or dms, 004's N-parity).")
    model = ck.model(device)
    Ns = ck.Ns or None
    if args.plot_modules is not None and not isinstance(model, ModularRNN):
        raise ValueError(f"--plot-modules draws the accuracy per module (004 Fig. 5a-b); {args.run_dir} holds a "
                         f"non-modular {type(model).__name__}: use --plot.")
    ds = perturbation_sweep(model, task, args.eps, args.target, repeats=args.repeats, seed=args.seed,
                            threshold=args.threshold, Ns=Ns, batches=args.batches, batch=args.batch,
                            progress=not args.quiet)
    ds.attrs.update(run_dir=str(args.run_dir), checkpoint=str(ck.path), epoch=ck.epoch, device=str(device),
                    label=Path(args.run_dir).resolve().name)
    if args.output is not None:
        write_netcdf_atomic(ds, args.output)
    if args.plot is not None or args.plot_modules is not None:
        import matplotlib

        matplotlib.use("Agg")
        if args.plot is not None:
            _save_figure(plot_tasks_solved({ds.attrs["label"]: ds}), args.plot)
        if args.plot_modules is not None:
            _save_figure(plot_module_accuracy(ds), args.plot_modules)
    if not args.quiet:
        _print_sweep(ds, ck.path.name)
        written = [str(p) for p in (args.output, args.plot, args.plot_modules) if p is not None]
        if written:
            print("wrote " + ", ".join(written))
    return 0


def _print_sweep(ds: Any, source: str) -> None:
    """Tasks solved (mean ± SEM over repeats) per target and eps, and per-head accuracy at the
    largest eps."""
    import numpy as np

    Ns = ds["N"].values
    print(f"{source}: {ds.attrs['model']}, heads for N = {Ns.min()}..{Ns.max()}; unperturbed: "
          f"{int(ds['base_tasks_solved'])} of {len(Ns)} tasks solved (accuracy > {ds.attrs['threshold']:g}); "
          f"{ds.attrs['repeats']} repeat(s), seed {ds.attrs['seed']}")
    eps = ds["epsilon"].values
    print("tasks solved, mean ± SEM over repeats (004 Fig. 3):")
    print(f"  {'epsilon':>11}" + "".join(f"{e:>12g}" for e in eps))
    for t in ds["target"].values:
        d = ds.sel(target=t)
        cells = [f"{m:.2f}" + ("" if not np.isfinite(s) else f"±{s:.2f}")
                 for m, s in zip(d["tasks_solved_mean"].values, d["tasks_solved_sem"].values)]
        print(f"  {str(t):>11}" + "".join(f"{c:>12}" for c in cells))
    top = float(eps.max())
    label = "module" if "module" in ds.coords else "head"
    print(f"accuracy of each {label} on its N at epsilon = {top:g}, mean over repeats (004 Fig. 5a-b):")
    print(f"  {'N':>11}" + "".join(f"{int(n):>7d}" for n in Ns))
    print(f"  {'none':>11}" + "".join(f"{a:>7.3f}" for a in ds["base_accuracy"].values))
    for t in ds["target"].values:
        acc = ds["accuracy_mean"].sel(target=t, epsilon=top).values
        print(f"  {str(t):>11}" + "".join(f"{a:>7.3f}" for a in acc))


def _add_perturb(sub: argparse._SubParsersAction) -> None:
    from trainers.modular_analysis import TARGET_NAMES

    p = _parser(sub, "perturb", help="tasks solved and per-module accuracy under Eq. 5 perturbations (004 Fig. 3, "
                                     "5a-b)",
                description="Perturb W_rec, W_ff or tau of a run's network (modular, or a non-modular leaky one) as "
                            "004 Eq. 5 (W + eps xi/||xi|| ||W|| over the whole group; tau upward only), --repeats "
                            "random directions per target, each scaled by every --eps, and count the heads still "
                            "above --threshold (Fig. 3) with each head's accuracy (Fig. 5a-b). Every evaluation "
                            "sees the same fresh batches. Writes a labelled netCDF file and/or figures; prints a "
                            "table.")
    p.add_argument("run_dir", type=Path, help="a trainers run directory (growth or multi-head curriculum on parity)")
    p.add_argument("--N", type=int, help="the network saved when N was solved (default: the latest)")
    p.add_argument("--target", nargs="+", choices=list(TARGET_NAMES), metavar="TARGET",
                   help="W_rec, W_ff and/or tau (also: recurrent, feedforward); default every group the "
                        "network has (a non-modular network has no W_ff)")
    p.add_argument("--eps", type=float, nargs="+", default=[0.0, 0.1, 0.2, 0.5, 1.0], metavar="EPS",
                   help="relative strengths >= 0 (default 0 0.1 0.2 0.5 1)")
    p.add_argument("--repeats", type=int, default=10, help="random directions per target (default 10, as 004)")
    p.add_argument("--seed", type=int, default=0, help="seed of the directions and the batches (default 0)")
    p.add_argument("--threshold", type=float, default=0.9,
                   help="a head solves its N above this accuracy (fraction; default 0.9, as 004)")
    p.add_argument("--batches", type=int, default=10, help="fresh batches per evaluation (default 10)")
    p.add_argument("--batch", type=int, default=256, help="sequences per batch (default 256)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where the network runs (default auto: CUDA when available)")
    p.add_argument("-o", "--output", "--out", dest="output", type=Path,
                   help="write the result Dataset to this netCDF file (atomically)")
    p.add_argument("--plot", type=Path, help="write the tasks-solved figure (Fig. 3; PNG, SVG or PDF by suffix)")
    p.add_argument("--plot-modules", type=Path,
                   help="write the per-module accuracy figure (Fig. 5a-b; modular networks)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or table")
    p.set_defaults(func=_cmd_perturb)


def _check_outputs(args: argparse.Namespace) -> None:
    """``--plot``'s suffix and the folders of ``--output`` and ``--plot``: before any long work."""
    _check_plot_path(args.plot, "--plot")
    for path, flag in ((args.output, "--output"), (args.plot, "--plot")):
        _check_folder(path, flag)


def _check_ints(args: argparse.Namespace, names: dict[str, int]) -> None:
    """Each ``--NAME`` (``args.NAME``; None: unset) an integer >= its minimum."""
    from dynatools.utils import check_positive_int

    for name, minimum in names.items():
        value = getattr(args, name)
        for v in value if isinstance(value, list) else [value]:
            if v is not None:
                check_positive_int("--" + name.replace("_", "-"), v, minimum=minimum)


def _finish(args: argparse.Namespace, ds: Any, draw: Callable[[Any], Any], show: Callable[[Any], None]) -> int:
    """Label ``ds`` with its run folder, write it and its figure (:func:`_write`), print its table
    with ``show`` and what was written (unless ``-q``)."""
    ds.attrs["label"] = Path(args.run_dir).resolve().name
    written = _write(args, ds, draw)
    if not args.quiet:
        show(ds)
        if written:
            print("wrote " + ", ".join(written))
    return 0


def _write(args: argparse.Namespace, ds: Any, draw: Callable[[Any], Any]) -> list[str]:
    """Write ``ds`` to ``--output`` and ``draw(ds)`` (a Figure or Axes) to ``--plot``, atomically;
    the paths written."""
    from dynatools.utils import write_netcdf_atomic

    if args.output is not None:
        write_netcdf_atomic(ds, args.output)
    if args.plot is not None:
        import matplotlib

        matplotlib.use("Agg")
        fig = draw(ds)
        _save_figure(getattr(fig, "figure", fig), args.plot)
    return [str(p) for p in (args.output, args.plot) if p is not None]


def _add_outputs(p: argparse.ArgumentParser, figure: str) -> None:
    p.add_argument("-o", "--output", "--out", dest="output", type=Path,
                   help="write the result Dataset to this netCDF file (atomically)")
    p.add_argument("--plot", type=Path, help=f"write {figure} (PNG, SVG or PDF by suffix)")


# ---------------------------------------------------------------------------- timescales
def _cmd_timescales(args: argparse.Namespace) -> int:
    from trainers.modular_timescales import module_timescales, plot_module_timescales

    _check_outputs(args)
    _check_ints(args, {"steps": 1, "trials": 1, "burn_in": 0, "fit_lag": 1, "seed": 0, "N": 2})
    if args.fit_lag >= args.steps:
        raise ValueError(f"--fit-lag {args.fit_lag} needs recordings of more than {args.fit_lag} steps; found --steps "
                         f"{args.steps}. Raise --steps (004: 100000) or lower --fit-lag.")
    with _flags("steps", "trials", "burn_in", "fit_lag", "seed", "refresh",
                phrases=(("leave Ns unset", "leave --N out"), ("Ns=", "--N "), ("refresh=True", "--refresh"))):
        ds = module_timescales(args.run_dir, steps=args.steps, trials=args.trials, burn_in=args.burn_in,
                               fit_lag=args.fit_lag, seed=args.seed, Ns=args.N, refresh=args.refresh,
                               progress=not args.quiet)
    return _finish(args, ds, plot_module_timescales, _print_timescales)


def _print_timescales(ds: Any) -> None:
    """Mean trained and effective timescale per N (004 Fig. 4)."""
    import json

    params = json.loads(ds.attrs["params"])
    modular = "solving_module" in ds.coords
    print(f"{ds.attrs['run_dir']}: {ds.attrs['model']} ({ds.attrs['curriculum']}), averaged over the "
          f"{ds.attrs['units']}; {params['steps']} steps x {params['trials']} trial(s), fit lag {params['fit_lag']}, "
          f"seed {params['seed']} (004 Fig. 4)")
    print(f"  {'N':>4}" + (f"{'module':>8}" if modular else "") + f"{'units':>7}{'tau':>9}{'tau_net':>10}"
          f"{'left out':>10}{'epoch':>7}")
    for i, N in enumerate(ds["N"].values):
        d = ds.isel(N=i)
        module = f"{int(d['solving_module']) + 1:>8d}" if modular else ""      # 004 counts from 1
        print(f"  {int(N):>4d}{module}{int(d['n_units']):>7d}{float(d['tau_mean']):>9.3f}"
              f"{float(d['tau_net_mean']):>10.3f}{int(d['tau_net_excluded']):>10d}{int(d['epoch']):>7d}")
    if modular:
        print("  (module counted from 1, as 004; the file's solving_module counts from 0)")


def _add_timescales(sub: argparse._SubParsersAction) -> None:
    p = _parser(sub, "timescales", help="trained and effective timescale of the units solving each N (004 Fig. 4)",
                description="For every solved N (or those of --N), record the network saved when N was solved "
                            "(--steps steps per trial after --burn-in, input bits with p ~ U(0, 1) per trial) and "
                            "fit each unit's autocorrelation (one or two exponentials, AIC), then average the "
                            "trained timescale clamp(tau, 1) and the effective timescale tau_net (reliable fits) "
                            "over the module whose head answers N (modular run) or all units (non-modular run): "
                            "trainers.modular_timescales.module_timescales. The recordings and fits are cached in "
                            "the run's analysis folder (shared with 'trainers analyze' of the same settings).")
    p.add_argument("run_dir", type=Path, help="a trainers run directory (growth or multi-head curriculum on parity)")
    p.add_argument("--steps", type=int, default=100_000, help="recorded steps per trial (default 100000, as 004)")
    p.add_argument("--trials", type=int, default=1, help="input sequences per network (default 1)")
    p.add_argument("--burn-in", type=int, default=500, help="steps simulated and discarded first (default 500)")
    p.add_argument("--fit-lag", type=int, default=30, help="lags fitted (default 30)")
    p.add_argument("--seed", type=int, default=0, help="seed of the recordings (default 0)")
    p.add_argument("--N", type=int, nargs="+", metavar="N", help="the solved Ns to analyse (default all)")
    p.add_argument("--refresh", action="store_true", help="record and fit again even where the cache is valid")
    _add_outputs(p, "the figure (Fig. 4a-b: trained and effective timescale against N)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or table")
    p.set_defaults(func=_cmd_timescales)


# ---------------------------------------------------------------------------- generalise
#: Optional overrides of the run's training settings for the re-training (flag name = keyword).
_GENERALISE_SETTINGS = ("steps_per_epoch", "batch", "eval_batches")


def _cmd_generalise(args: argparse.Namespace) -> int:
    from trainers.engine import resolve_device
    from trainers.generalisation import generalisation, plot_generalisation

    _check_outputs(args)
    if len(set(args.K)) != len(args.K):
        raise ValueError(f"--K {' '.join(map(str, args.K))}: give each K once.")
    _check_ints(args, {"N": 2, "K": 1, "epochs": 0, "seed": 0, "steps_per_epoch": 1, "batch": 1,
                       "eval_batches": 1, "test_batches": 1})
    resolve_device(args.device)
    overrides = {k: getattr(args, k) for k in _GENERALISE_SETTINGS if getattr(args, k) is not None}
    with _flags("epochs", "train", "fresh_head", "seed", "test_batches", *_GENERALISE_SETTINGS):
        ds = generalisation(args.run_dir, args.N, args.K, epochs=args.epochs, train=args.train,
                            fresh_head=args.fresh_head, seed=args.seed, test_batches=args.test_batches,
                            progress=not args.quiet, device=args.device, **overrides)
    return _finish(args, ds, plot_generalisation, _print_generalisation)


def _print_generalisation(ds: Any) -> None:
    """Accuracy on N + K before and after the re-training, per K (004 Fig. 2c)."""
    a = ds.attrs
    what = "units" if a["architecture"] == "non-modular" else "units per module"
    print(f"{a['run']}: {a['architecture']} ({a['size']} {what}) trained to N = {a['N']}; re-training '{a['train']}' "
          f"({a['trainable_parameters']} parameters) for at most {a['epochs']} epoch(s), stop above "
          f"{a['threshold']:g}%; test: {a['test_batches']} batch(es) of {a['batch']}, seed {a['eval_seed']} "
          f"(004 Fig. 2c)")
    print(f"  {'K':>3}{'N+K':>5}{'before %':>10}{'after %':>9}{'epochs':>8}  solved")
    for i, K in enumerate(ds["K"].values):
        d = ds.isel(K=i)
        print(f"  {int(K):>3d}{int(d['N_new']):>5d}{float(d['initial_accuracy']):>10.1f}{float(d['accuracy']):>9.1f}"
              f"{int(d['epochs_trained']):>8d}  {'yes' if bool(d['solved']) else 'no'}")


def _add_generalise(sub: argparse._SubParsersAction) -> None:
    from trainers.curricula import THRESHOLD

    p = _parser(sub, "generalise", aliases=["generalize"],
                help="accuracy on N + K after at most --epochs epochs of re-training (004 Fig. 2c)",
                description="Take the network saved when N was solved and, for each K, re-train it on N + K for "
                            "at most --epochs epochs (stopping once the N + K head exceeds "
                            f"{THRESHOLD:g}%), then measure its accuracy on fresh N + K sequences "
                            "(trainers.generalisation.generalisation). Modular (growth) run: the module that "
                            "solved N re-trains with its head, every other module frozen ('module'). Non-modular "
                            "run: the whole network with a fresh head ('network', default) or only a fresh head "
                            "fitted to convergence ('readout'). The re-training keeps the run's training settings "
                            "unless overridden.")
    p.add_argument("run_dir", type=Path, help="a trainers run directory that solved --N")
    p.add_argument("--N", type=int, required=True, help="the N the network was trained to (004: 10)")
    p.add_argument("--K", type=int, nargs="+", default=[1, 2, 3, 4, 5], metavar="K",
                   help="offsets: tested on N + K (default 1 2 3 4 5)")
    p.add_argument("--epochs", type=int, default=10, help="at most this many epochs of re-training (default 10, as "
                                                          "004; 0: evaluate the network as it is)")
    p.add_argument("--train", choices=("module", "network", "readout"),
                   help="what re-trains: 'module' (modular runs, the default there), 'network' (non-modular "
                        "runs, default) or 'readout' (non-modular runs: a new head only)")
    p.add_argument("--fresh-head", action="store_true", help="modular runs: the module's head starts fresh "
                                                             "instead of from its N head")
    p.add_argument("--seed", type=int, default=0, help="seed of the re-training and the test sequences (default 0)")
    p.add_argument("--steps-per-epoch", type=int, help="override the run's steps per epoch")
    p.add_argument("--batch", type=int, help="override the run's batch size (also the test batches' size)")
    p.add_argument("--eval-batches", type=int, help="override the run's evaluation batches after each epoch")
    p.add_argument("--test-batches", type=int, help="batches of the final test (default: the evaluation batches)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where the re-training runs (default auto: CUDA when available)")
    _add_outputs(p, "the figure (Fig. 2c: accuracy against K)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or table")
    p.set_defaults(func=_cmd_generalise)


# ---------------------------------------------------------------------------- pareto
def _cmd_pareto(args: argparse.Namespace) -> int:
    import numpy as np

    from trainers.pareto import pareto_front, pareto_table, plot_pareto

    _check_outputs(args)
    _check_ints(args, {"epochs": 1})
    for r in args.run_dirs:
        if not Path(r).is_dir():
            raise FileNotFoundError(f"{r}: no such run directory; give the run directories of finished training "
                                    f"runs, or a sweep directory of them (trainers sweep).")
    with _flags("epochs", phrases=(("pass strict=False", "leave out --strict"),)):
        ds = pareto_table(args.run_dirs, args.epochs, strict=args.strict)
    front = set(pareto_front(ds)["run"].values.tolist())
    ds["front"] = ("run", np.asarray([r in front for r in ds["run"].values.tolist()]))
    ds["front"].attrs["description"] = "on its architecture's Pareto front (trainers.pareto.pareto_front)"
    written = _write(args, ds, plot_pareto)
    if not args.quiet:
        _print_pareto(ds)
        if written:
            print("wrote " + ", ".join(written))
    return 0


def _print_pareto(ds: Any) -> None:
    """One row per run; ``*`` marks the front of each architecture (004 Fig. 2b)."""
    epochs = ds.attrs["epochs"]
    names = [Path(str(r)).name or str(r) for r in ds["run"].values]
    width = max(len("run"), *map(len, names))
    print(f"N solved after {epochs} epochs against trainable parameters (004 Fig. 2b); * on the front")
    print(f"  {'run':<{width}}  {'architecture':<12}{'size':>6}{'N solved':>10}{'parameters':>12}  ended")
    for i, name in enumerate(names):
        d = ds.isel(run=i)
        stop = str(d["stop_reason"].values) or "?"
        ended = f"{stop} after {int(d['epochs_run'])} epoch(s)"
        if bool(d["capped"]):
            ended += ", curriculum finished (N solved capped)"
        elif not bool(d["complete"]):
            ended += f", before {epochs} epochs: N solved is a lower bound"
        mark = "*" if bool(d["front"]) else " "
        print(f"{mark} {name:<{width}}  {str(d['architecture'].values):<12}{int(d['size']):>6d}"
              f"{int(d['n_solved']):>10d}{int(d['parameters']):>12d}  {ended}")


def _add_pareto(sub: argparse._SubParsersAction) -> None:
    p = _parser(sub, "pareto", help="N solved after --epochs epochs against trainable parameters (004 Fig. 2b)",
                description="For each run directory (growth runs: modular; multi-head runs: non-modular), the "
                            "largest N solved at or before epoch --epochs and the parameters trained up to "
                            "solving it, with the Pareto front of each architecture (fewer parameters, larger N "
                            "solved): trainers.pareto.pareto_table, pareto_front. The file adds 'front' (on the "
                            "front) to pareto_table's Dataset.")
    p.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR",
                   help="trainers run directories; a sweep directory (trainers sweep) stands for its runs")
    p.add_argument("--epochs", type=int, default=60, help="the epoch limit (default 60, as 004)")
    p.add_argument("--strict", action="store_true",
                   help="refuse runs that stopped before --epochs epochs without finishing their curriculum")
    _add_outputs(p, "the figure (Fig. 2b: N solved against parameters, the fronts as lines)")
    p.add_argument("-q", "--quiet", action="store_true", help="no table")
    p.set_defaults(func=_cmd_pareto)


#: The subcommands of ``trainers modular``: (name, function adding its parser). One line each.
SUBCOMMANDS: list[tuple[str, Callable[[argparse._SubParsersAction], None]]] = [
    ("baseline", _add_baseline),
    ("perturb", _add_perturb),
    ("timescales", _add_timescales),
    ("generalise", _add_generalise),
    ("pareto", _add_pareto),
]
#: Subcommands that compute nothing worth threads (no ``--threads``).
NO_THREADS = ("baseline",)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add ``modular`` (with the subcommands of :data:`SUBCOMMANDS`) to the ``trainers`` command."""
    from dynatools.threads import add_threads_option

    names = ", ".join(name for name, _ in SUBCOMMANDS)
    p = sub.add_parser("modular", help=f"analyses of modular networks (004): {names}",
                       description="Analyses of 004's modular networks (Hamidi, Khajehabdollahi et al., 'Modular "
                                   "Growth of Hierarchical Networks'): 'trainers modular SUBCOMMAND --help'.")
    modular = p.add_subparsers(dest="modular_command", required=True, metavar="SUBCOMMAND",
                               help="what to do ('trainers modular SUBCOMMAND --help' for its options)")
    for _, add in SUBCOMMANDS:
        add(modular)
    # an alias names the same parser again: it has its --threads through its first name
    aliases = tuple(name for name in modular.choices if name not in dict(SUBCOMMANDS))
    add_threads_option(modular, skip=NO_THREADS + aliases)
