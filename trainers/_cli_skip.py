"""Subcommands of ``trainers`` for the training-time methods of 002 (Sec. 3-4): ``misalignment``
(Fig. 3B-C of a trained network) and ``skip-table`` (Table 1 / Table 2). docs/skip-training.md has
examples."""

from __future__ import annotations

import argparse
from pathlib import Path


def _cmd_misalignment(args: argparse.Namespace) -> int:
    from dynatools.utils import write_atomic, write_netcdf_atomic
    from trainers.misalignment import misalignment_of_run

    ds = misalignment_of_run(args.run_dir, thetas=args.thetas, beta=args.beta, trials=args.trials, seed=args.seed)
    if args.output is not None:
        write_netcdf_atomic(ds, args.output)
    if args.plot is not None:
        import matplotlib

        matplotlib.use("Agg")
        from dynatools import plot

        axes = plot.misalignment(ds)
        fig = (axes[0] if isinstance(axes, tuple) else axes).figure
        write_atomic(args.plot, lambda tmp: fig.savefig(tmp, dpi=120, format=Path(args.plot).suffix[1:] or "png"))
    if not args.quiet:
        table = ds["nmse"].mean("member").to_pandas()
        print(f"NMSE between modified and true dynamics (beta={args.beta}; mean over {ds.sizes['member']} "
              f"member(s)); theta in steps:")
        print(table.to_string(float_format=lambda v: f"{v:.4g}"))
        print("performance lost (true minus modified):")
        print(ds["performance_difference"].mean("member").to_pandas().to_string(float_format=lambda v: f"{v:.3f}"))
    return 0


def _cmd_skip_table(args: argparse.Namespace) -> int:
    from trainers.skip_table import skip_table

    options = {k: v for k, v in {"units": args.units, "batch": args.batch, "device": args.device,
                                 "eval_batches": args.eval_batches}.items() if v is not None}
    ds = skip_table(args.out, args.tasks, configurations=args.configurations, members=args.members,
                    max_steps=args.max_steps, anneal_span=args.anneal_span, anneal_steps=args.anneal_steps,
                    beta0=args.beta0, seed=args.seed, steps_per_epoch=args.steps_per_epoch, options=options,
                    train=not args.read_only, scheduler=args.scheduler, workers=args.workers,
                    progress=not args.quiet, name=args.name)
    if not args.quiet:
        shown = ds["steps"].copy(data=ds["steps"].values.astype(object))
        for status in ("failed", "incomplete", "missing"):
            shown = shown.where(ds["status"] != status, status)
        print(f"training steps to the 10-90 percentile 0.99 rule ('failed': not within {ds.attrs['max_steps']}; "
              f"'incomplete': stopped earlier; 'missing': no run):")
        print(shown.to_pandas().to_string(formatters=None, float_format=None))
        print("proportion of members above 0.99:")
        print(ds["learned"].to_pandas().to_string(float_format=lambda v: f"{v:.2f}"))
        print(f"wrote {Path(args.out) / args.name}.nc, .csv and .png")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add ``misalignment`` and ``skip-table`` to the ``trainers`` command."""
    from trainers.misalignment import FIG3_THETAS
    from trainers.skip_table import LONG_DEPENDENCY_TASKS, TABLE1, TABLE2

    p = sub.add_parser(
        "misalignment", help="how far CD/SCTT/DASC move a trained rate network from its true dynamics (002 Fig. 3B-C)",
        description="Simulate a trained rate network (or ensemble) on fixed trials of its task, plainly and under "
                    "CD, SCTT and DASC for each theta, and report the normalised MSE between the activities "
                    "(dynatools.activity_nmse) and the performance lost.")
    p.add_argument("run_dir", type=Path, help="a trainers run directory of a rate network on an open-loop trial task")
    p.add_argument("--thetas", type=int, nargs="+", default=list(FIG3_THETAS), metavar="THETA",
                   help=f"skip lengths / discretization factors in steps (default {' '.join(map(str, FIG3_THETAS))})")
    p.add_argument("--beta", type=float, default=0.5, help="mixing ratio of SCTT and DASC (default 0.5)")
    p.add_argument("--trials", type=int, default=64, help="trials simulated under every variant (default 64)")
    p.add_argument("--seed", type=int, default=0, help="seed of the trials (default 0)")
    p.add_argument("-o", "--output", type=Path, help="write the result Dataset to this netCDF file")
    p.add_argument("--plot", type=Path, help="write the Fig. 3B-C figure (PNG, SVG, PDF by suffix)")
    p.add_argument("-q", "--quiet", action="store_true", help="no table")
    p.set_defaults(func=_cmd_misalignment)

    p = sub.add_parser(
        "skip-table", help="train and tabulate 002's Table 1/2 (control, CD, SCTT, DASC) at any scale",
        description="Train every configuration on every task as one ensemble (OUT/<task>/<configuration>, "
                    "resumed when it exists), then write OUT/<name>.nc, .csv and a figure laid out like Table 1: "
                    "steps to the 10-90 percentile 0.99 rule or 'failed', wall clock, FLOPs, and the proportion "
                    "of members above 0.99 (Table 2: --tasks rule-reversal with the '+SSC' configurations).")
    p.add_argument("out", type=Path, help="folder of the run directories and results")
    p.add_argument("--tasks", nargs="+", default=list(LONG_DEPENDENCY_TASKS),
                   help=f"trial tasks (default Table 1's: {' '.join(LONG_DEPENDENCY_TASKS)})")
    p.add_argument("--configurations", nargs="+", default=list(TABLE1), choices=list({**TABLE1, **TABLE2}),
                   metavar="NAME", help=f"of {', '.join({**TABLE1, **TABLE2})} (default Table 1's six)")
    p.add_argument("--members", type=int, default=100, help="networks per ensemble (default 100, as 002)")
    p.add_argument("--max-steps", type=int, default=40000, help="step limit (default 40000, as 002)")
    p.add_argument("--anneal-span", type=int, default=20000, help="annealing span in steps (default 20000)")
    p.add_argument("--anneal-steps", type=int, default=5, help="annealing step count (default 5)")
    p.add_argument("--beta0", type=float, default=0.5, help="initial mixing ratio (default 0.5)")
    p.add_argument("--steps-per-epoch", type=int, default=100, help="steps between checks of the rule (default 100)")
    p.add_argument("--seed", type=int, default=0, help="seed of every run (default 0)")
    p.add_argument("--units", type=int, help="units per network (default the task's: 50)")
    p.add_argument("--batch", type=int, help="trials per batch (default the task's)")
    p.add_argument("--eval-batches", type=int, help="batches of each evaluation (default the task's)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), help="default auto")
    p.add_argument("--name", default="table", help="stem of the result files (default table)")
    p.add_argument("--workers", type=int,
                   help="train the runs on a local dask cluster of this many processes (default: one after "
                        "another in this process; docs/sweeps.md)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="train the runs on the dask scheduler at this address (e.g. tcp://HOST:8786)")
    p.add_argument("--read-only", action="store_true", help="train nothing: tabulate the runs that exist")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or table")
    p.set_defaults(func=_cmd_skip_table)
