"""``trainers modular SUBCOMMAND``: analyses of 004's modular networks (Hamidi, Khajehabdollahi et
al., "Modular Growth of Hierarchical Networks", ``shared/seeds/004_*``).

* ``baseline``: the size-matched non-modular network of a module size (Fig. 1, 2b).
* ``perturb``: tasks solved and per-module accuracy under Eq. 5 perturbations of W^R, W^FF or
  tau of a run's network, modular or not (Fig. 3, 5a-b).

A new subcommand is one function ``_add_NAME(sub)`` that adds its parser (with
:func:`_parser`) and one line in :data:`SUBCOMMANDS`. docs/cli.md and docs/modular.md have
examples.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
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


#: The subcommands of ``trainers modular``: (name, function adding its parser). One line each.
SUBCOMMANDS: list[tuple[str, Callable[[argparse._SubParsersAction], None]]] = [
    ("baseline", _add_baseline),
    ("perturb", _add_perturb),
]
#: Subcommands that compute nothing worth threads (no ``--threads``).
NO_THREADS = ("baseline",)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add ``modular`` (with the subcommands of :data:`SUBCOMMANDS`) to the ``trainers`` command."""
    from dynatools.threads import add_threads_option

    p = sub.add_parser("modular", help="analyses of modular networks (004): baseline, perturb",
                       description="Analyses of 004's modular networks (Hamidi, Khajehabdollahi et al., 'Modular "
                                   "Growth of Hierarchical Networks'): 'trainers modular SUBCOMMAND --help'.")
    modular = p.add_subparsers(dest="modular_command", required=True, metavar="SUBCOMMAND",
                               help="what to do ('trainers modular SUBCOMMAND --help' for its options)")
    for _, add in SUBCOMMANDS:
        add(modular)
    add_threads_option(modular, skip=NO_THREADS)
