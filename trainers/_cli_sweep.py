"""``trainers sweep SWEEP.toml -o SWEEP_DIR`` and ``trainers sweep-results SWEEP_DIR``: a grid of
training runs on dask.distributed (:mod:`trainers.sweep`); docs/sweeps.md has examples."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _resources(items: list[str] | None) -> dict[str, float] | None:
    """``["GPU=1", "MEMORY=8e9"]`` -> ``{"GPU": 1.0, "MEMORY": 8e9}``."""
    if not items:
        return None
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise ValueError(f"--resources takes NAME=AMOUNT (e.g. GPU=1); found {item!r}.")
    return out


def _cmd_sweep(args: argparse.Namespace) -> int:
    from trainers import sweep as sw

    plan = sw.Sweep.from_toml(args.sweep)
    if args.dry_run:
        runs, states = sw.prepare(plan, args.out, write=False)
        for run in runs:
            print(f"{states[run.name]:8s} {run.name}")
        print(f"{len(runs)} runs over {' x '.join(f'{d} ({len(v)})' for d, v in plan.coords().items())} "
              f"in {args.out}")
        return 0
    try:
        report = sw.run_sweep(plan, args.out, scheduler=args.scheduler, workers=args.workers,
                              resources=_resources(args.resources), retries=args.retries,
                              connect_timeout=args.connect_timeout, progress=not args.quiet)
    except KeyboardInterrupt:
        print(f"trainers sweep: interrupted; run the same command again to continue (finished runs are kept, "
              f"interrupted ones continue from their latest checkpoint)", file=sys.stderr)
        return 130
    for name, error in report.failed.items():
        print(f"trainers sweep: run {name} failed: {error}", file=sys.stderr)
    if not args.quiet:
        print(f"{report.summary()} in {args.out}; gather the metrics with 'trainers sweep-results {args.out}'")
    return 0 if report.ok else 1


def _cmd_sweep_results(args: argparse.Namespace) -> int:
    from trainers.sweep import RESULTS, sweep_results

    if args.plot is not None and args.plot.suffix[1:].lower() not in ("png", "svg", "pdf"):
        raise ValueError(f"--plot {args.plot}: the suffix sets the format; give a file ending in .png, .svg or .pdf.")

    ds = sweep_results(args.sweep_dir, save=args.output is None)
    out = args.sweep_dir / RESULTS
    if args.output is not None:
        from dynatools.utils import write_netcdf_atomic

        out = write_netcdf_atomic(ds, args.output)
    if not args.quiet:
        dims = ds.attrs["dims"].split()
        counts = {s: int((ds["status"] == s).sum()) for s in ("done", "partial", "missing")}
        print(f"{ds['status'].size} runs over {' x '.join(f'{d} ({ds.sizes[d]})' for d in dims)}: "
              + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
        table = _summary(ds, dims)
        if table is not None:
            print(table)
    if args.plot is not None:
        import matplotlib

        matplotlib.use("Agg")
        from dynatools.utils import write_atomic
        from trainers.sweep import plot_sweep

        fig = plot_sweep(ds, args.variable).figure
        write_atomic(args.plot, lambda tmp: fig.savefig(tmp, dpi=120, format=args.plot.suffix[1:] or "png",
                                                        bbox_inches="tight"))
    if not args.quiet:
        print(f"wrote {out}" + ("" if args.plot is None else f" and {args.plot}"))
    return 0


def _summary(ds, dims: list[str]) -> str | None:
    """Each grid point's headline number as a table: the best mean metric of a run (tasks trained
    per epoch) or its last 10-90 percentile score (trial tasks), averaged over ``seed`` when seed
    is one of several grid keys."""
    if "best" in ds:
        value, what = ds["best"], f"best mean {ds.attrs.get('metric', 'metric')}"
    elif "score" in ds:
        value, what = ds["score"].ffill("epoch").isel(epoch=-1), "last score (10-90 percentile mean performance)"
    else:
        return None
    if "seed" in dims and len(dims) > 1:
        value, what = (value.mean("seed"), what + f", mean over {ds.sizes['seed']} seeds") if ds.sizes["seed"] > 1 \
            else (value.isel(seed=0, drop=True), what)
    shown = value.to_pandas() if value.ndim <= 2 else value.to_series()
    text = shown.to_string(float_format=lambda v: f"{v:.4g}") if hasattr(shown, "to_string") else f"{float(shown):.4g}"
    return f"{what}:\n{text}"


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add ``sweep`` and ``sweep-results`` to the ``trainers`` command."""
    p = sub.add_parser(
        "sweep", help="train a grid of configurations as resumable tasks on dask.distributed",
        description="Expand SWEEP.toml (a [base] training configuration and a [grid] of values per key) into "
                    "one run directory per grid point under SWEEP_DIR and train them on a dask cluster: a "
                    "local one by default, or the scheduler at --scheduler. Finished runs are skipped and "
                    "interrupted ones continue from their latest checkpoint, so running the same command "
                    "again finishes a sweep; a run is never trained by two workers at once. Exit status 1 "
                    "if a run failed.")
    p.add_argument("sweep", type=Path, help="the sweep file (TOML: [base] and [grid] tables; docs/sweeps.md)")
    p.add_argument("-o", "--out", type=Path, required=True, help="the sweep directory (sweep.json and the runs)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="a running dask scheduler, e.g. tcp://HOST:8786 (default: a local cluster)")
    p.add_argument("--workers", type=int,
                   help="worker processes of the local cluster (default: one per core); each trains one run at "
                        "a time. 0: no cluster, the runs one after another in this process")
    p.add_argument("--resources", nargs="+", metavar="NAME=AMOUNT",
                   help="what each run needs, e.g. GPU=1: runs go only to workers started with "
                        "'dask worker ADDRESS --resources GPU=1' (needs --scheduler)")
    p.add_argument("--retries", type=int, default=1,
                   help="times a run that raised is tried again (default 1; a lost worker's run is "
                        "rescheduled anyway)")
    p.add_argument("--connect-timeout", type=float, default=10.0,
                   help="seconds to wait for the scheduler (default 10)")
    p.add_argument("--dry-run", action="store_true",
                   help="check the sweep and list the runs with their status; write and train nothing")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=_cmd_sweep)

    p = sub.add_parser(
        "sweep-results", help="gather a sweep's metrics into one netCDF file with a dimension per grid key",
        description="Read every run of SWEEP_DIR (trainers.RunDir.metrics) into one xarray Dataset with one "
                    "dimension per grid key (plus epoch and N, or member and step for ensembles), a status "
                    "per run (done, partial, missing), and write it to SWEEP_DIR/results.nc.")
    p.add_argument("sweep_dir", type=Path, help="a sweep directory of 'trainers sweep'")
    p.add_argument("-o", "--output", type=Path, help="netCDF file (default SWEEP_DIR/results.nc)")
    p.add_argument("--plot", type=Path, help="learning curves, one line per grid point (PNG, SVG, PDF by suffix)")
    p.add_argument("--variable", help="what --plot draws (default the task's metric; score for trial tasks)")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary")
    p.set_defaults(func=_cmd_sweep_results)
