"""``trainers fixed-points RUN [--N]``: fixed and slow points of a trained run's network
(:func:`trainers.fixed_points.fixed_points_of_run`); docs/fixed-points.md has examples."""

from __future__ import annotations

import argparse
from pathlib import Path


def _cmd_fixed_points(args: argparse.Namespace) -> int:
    from trainers.fixed_points import fixed_points_of_run, summary_lines

    if args.tol is not None and not args.tol > 0:
        raise ValueError(f"--tol must be > 0 (a threshold on q = 0.5 ||F(h) - h||^2, e.g. 1e-12); found {args.tol}.")
    if args.n_init < 1:
        raise ValueError(f"--n-init must be >= 1 (initial states of the search); found {args.n_init}.")
    options = {k: v for k, v in {"tol": args.tol, "slow_q": args.slow_q, "max_iter": args.max_iter}.items()
               if v is not None}
    res = fixed_points_of_run(args.run_dir, args.N, n_init=args.n_init, steps=args.steps, trials=args.trials,
                              seed=args.seed, inputs=args.input, device=args.device, progress=not args.quiet,
                              **options)
    out = args.output
    if out is None:
        from trainers.rundir import RunDir

        out = RunDir(args.run_dir).analysis_path("fixed_points", args.N) if Path(args.run_dir).is_dir() else \
            Path(args.run_dir).with_suffix(".fixed_points.nc")
    from dynatools.utils import write_atomic, write_netcdf_atomic

    write_netcdf_atomic(res.result, out)
    if args.plot is not None:
        import matplotlib

        matplotlib.use("Agg")
        from dynatools.fixed_points import plot_fixed_points

        ax = plot_fixed_points(res.result, res.states)
        ax.set_title(f"{res.result.attrs['task']} ({res.result.attrs['model']}), N={res.result.attrs['N']}")
        fig = ax.figure
        write_atomic(args.plot, lambda tmp: fig.savefig(tmp, dpi=120, format=Path(args.plot).suffix[1:] or "png"))
    if not args.quiet:
        for line in summary_lines(res.result):
            print(line)
        print(f"wrote {out}" + ("" if args.plot is None else f" and {args.plot}"))
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add ``fixed-points`` to the ``trainers`` command."""
    p = sub.add_parser(
        "fixed-points", help="fixed and slow points of a run's network, with their stability (Sussillo & Barak 2013)",
        description="Record the run's network on its task, start a batched search for the minima of "
                    "q(h) = 0.5 ||F(h) - h||^2 of its autonomous map from the recorded states "
                    "(dynatools.fixed_points), and write the points, their Jacobians, eigenvalues and "
                    "stability classes to a netCDF file (default RUN/analysis/fixed_points[_N011].nc).")
    p.add_argument("run_dir", help="a trainers run directory (or a checkpoint file)")
    p.add_argument("--N", type=int, help="network saved when N was solved (default: latest)")
    p.add_argument("--n-init", type=int, default=1000, help="initial states from the recording (default 1000)")
    p.add_argument("--trials", type=int, default=8, help="recorded trials (default 8)")
    p.add_argument("--steps", type=int, help="recorded steps per trial (default 200; trial tasks: their lengths)")
    p.add_argument("--seed", type=int, default=0, help="seed of the recording (default 0)")
    p.add_argument("--input", type=float, nargs="+", metavar="U",
                   help="constant input u* (input_dim values; default none: the bias only)")
    p.add_argument("--tol", type=float, help="q below which a point is fixed (default 1e-12)")
    p.add_argument("--slow-q", type=float, help="also keep slow points with q up to this")
    p.add_argument("--max-iter", type=int, help="Adam iterations at most (default 2000)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where the network runs (default auto: CUDA when available)")
    p.add_argument("-o", "--output", type=Path, help="netCDF file of the result")
    p.add_argument("--plot", type=Path, help="figure of trajectories and points in PCA space (PNG, SVG, PDF)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=_cmd_fixed_points)
