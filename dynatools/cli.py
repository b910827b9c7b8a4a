"""Command line: ``dynatools info | timescales | spectrum | demo``, on recordings.

Run ``dynatools --help`` or ``dynatools SUBCOMMAND --help``; docs/cli.md has examples. Commands
that load trained networks from run directories (analyze, report, lyapunov, hessian) are
``trainers`` subcommands: dynatools never imports trainers.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _cmd_info(args: argparse.Namespace) -> int:
    from dynatools.recording import open_recording

    ds = open_recording(args.file)
    act = ds["activity"]
    print(f"{args.file}: {ds.attrs['schema']}")
    print(f"  activity {tuple(act.dims)} = {tuple(act.shape)} {act.dtype}, dt = {ds.attrs['dt']} {ds['time'].attrs['units']}")
    others = [f"{k} {tuple(v.dims)}" for k, v in ds.data_vars.items() if k != "activity"]
    if others:
        print("  variables: " + ", ".join(others))
    if "member" in act.dims:
        print(f"  ensemble of {ds.sizes['member']} member(s); every analysis gives one result per member")
    unit_coords = [str(k) for k, v in ds.coords.items() if v.dims in (("unit",), ("member", "unit")) and k != "unit"]
    if unit_coords:
        print("  per-unit coordinates: " + ", ".join(unit_coords))
    if "trial_length" in ds.coords:
        lengths = np.asarray(ds["trial_length"].values)
        print(f"  trial lengths {lengths.min()}..{lengths.max()} samples (padded at the end to {ds.sizes['time']})")
    if "period" in ds.coords:
        labels = [str(x) for x in dict.fromkeys(np.asarray(ds["period"].values).ravel().astype(str)) if x != "pad"]
        print("  periods: " + ", ".join(labels) + " (select one with dynatools.select_period)")
    for key, value in ds.attrs.items():
        if key in ("schema", "dt"):
            continue
        text = str(value)
        print(f"  {key}: {text if len(text) <= 100 else text[:97] + '...'}")
    return 0


def _cmd_timescales(args: argparse.Namespace) -> int:
    from dynatools.recording import open_recording, write_netcdf_atomic
    from dynatools.timescales import timescales

    if args.max_lag is not None and args.max_lag < args.fit_lag:
        raise ValueError(f"--max-lag {args.max_lag} is below --fit-lag {args.fit_lag}: the fits need the "
                         f"autocorrelation up to lag {args.fit_lag}; raise --max-lag or lower --fit-lag.")
    if args.min_length_ratio is not None and not args.min_length_ratio >= 0:
        raise ValueError(f"--min-length-ratio must be >= 0 (0 turns the rule off); found {args.min_length_ratio}.")
    ds = open_recording(args.file)
    if args.period:
        from dynatools.recording import select_period

        ds = select_period(ds, args.period)
    with _one_line_warnings(f"dynatools {args.command}"):
        try:
            res = timescales(
                ds, max_lag=args.max_lag, fit_lag=args.fit_lag, criterion=args.criterion,
                reference=args.reference, population=args.population, dtype=args.dtype, errors=args.errors,
                min_length_ratio=args.min_length_ratio or None, lag0=None if args.reference else args.lag0,
                min_timescale=args.min_timescale, progress=not args.quiet,
            )
        except ValueError as exc:
            raise ValueError(_flag_spelling(str(exc))) from exc
    if "member" in res.dims and "member" not in res.coords:        # label the members 0..K-1
        res = res.assign_coords(member=np.arange(res.sizes["member"]))
    res.attrs["source"] = str(args.file)
    if args.period:
        res.attrs["selected_period"] = ", ".join(args.period)
    out = write_netcdf_atomic(res, args.output)
    tau = res["tau_net"].values
    n_double = int(np.sum(res["selected_model"].values == "double"))
    if not args.quiet:
        names, counts = np.unique(np.asarray(res["status"].values).ravel(), return_counts=True)
        flagged = [f"{n} {name}" for name, n in zip(names, counts)
                   if name in ("nonfinite", "constant", "short", "failed", "lag0_noise")]
        median = f"{np.nanmedian(tau):.4g}" if np.isfinite(tau).any() else "nan"
        members = f"{res.sizes['member']} member(s) x {res.sizes.get('unit', 1)} unit(s)" if "member" in res.dims else None
        print(
            f"wrote {out}: {members or f'{tau.size} unit(s)'}, tau_net median {median} "
            f"({res['tau_net'].attrs['units']}), double model selected for {n_double}"
            + (f"; status: {', '.join(flagged)}" if flagged else "")
        )
    return 0


#: How the messages of the timescale functions spell an option, and the flag that sets it here.
_FLAGS = (("min_length_ratio=None", "--min-length-ratio 0"), ("errors='ignore'", "--errors ignore"),
          ("errors='raise'", "--errors raise"))


def _flag_spelling(text: str) -> str:
    """A library message with its keyword arguments spelled as this command's flags."""
    for keyword, flag in _FLAGS:
        text = text.replace(keyword, flag)
    return text


@contextlib.contextmanager
def _one_line_warnings(prefix: str, spell_flags: bool = True):
    """Report the warnings raised inside as ``PREFIX: warning: message`` lines on stderr (not
    Python's two-line ``file:line: Category: message`` form with the source line); with
    ``spell_flags``, keyword arguments are named as the ``dynatools timescales`` flags."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            seen = set()
            for w in caught:
                text = " ".join(str(w.message).split())
                text = _flag_spelling(text) if spell_flags else text
                if text not in seen:
                    seen.add(text)
                    print(f"{prefix}: warning: {text}", file=sys.stderr)


def _cmd_spectrum(args: argparse.Namespace) -> int:
    from dynatools.recording import open_recording, write_netcdf_atomic
    from dynatools.spectra import plot_power_spectrum, power_spectrum

    if args.output is None and args.plot is None and args.quiet:
        raise ValueError("nothing to do: -q hides the summary and neither --out nor --plot was given; pass "
                         "--out spectrum.nc and/or --plot spectrum.png.")
    ds = open_recording(args.file)
    if args.period:
        from dynatools.recording import select_period

        ds = select_period(ds, args.period)
    try:
        res = power_spectrum(ds, var=args.var, nperseg=args.nperseg, noverlap=args.noverlap, detrend=args.detrend)
    except ValueError as exc:       # name this command's flags, not the keywords
        import re

        text = re.sub(r"\b(nperseg|noverlap)=(\d+)", r"--\1 \2", str(exc)).replace("pass var=", "pass --var")
        text = text.replace("Lower nperseg", "Lower --nperseg")
        raise ValueError(text) from exc
    if "member" in res.dims and "member" not in res.coords:        # label the members 0..K-1
        res = res.assign_coords(member=np.arange(res.sizes["member"]))
    res.attrs["source"] = str(args.file)
    if args.period:
        res.attrs["selected_period"] = ", ".join(args.period)
    if args.output is not None:
        out = write_netcdf_atomic(res, args.output)
    if args.plot is not None:
        import matplotlib

        matplotlib.use("Agg")
        fig = plot_power_spectrum(res)
        fig.savefig(args.plot, dpi=120)
    if not args.quiet:
        units = res["frequency"].attrs["units"]
        fc = np.atleast_1d(res["mean_characteristic_frequency"].values)
        per_unit = res["characteristic_frequency"].values
        median = f"{np.nanmedian(per_unit):.4g}" if np.isfinite(per_unit).any() else "nan"
        channels = res["characteristic_frequency"].sizes
        shape = " x ".join(f"{n} {d}(s)" for d, n in channels.items())
        print(f"{args.file}: Welch spectra of {args.var} for {shape}, nperseg {res.attrs['nperseg']} "
              f"(resolution {res.attrs['frequency_resolution']:.4g} {units}, {res.attrs['n_segments']} segments)")
        print(f"  characteristic frequency (peak of the unit-averaged spectrum): "
              f"{', '.join(f'{v:.4g}' for v in fc)} {units}; per unit median {median} {units}")
        if args.output is not None:
            print(f"  wrote {out}")
        if args.plot is not None:
            print(f"  figure: {args.plot}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    import dynatools as dt
    from dynatools import plot

    rec = dt.open_recording(dt.demo_path())
    res = dt.timescales(rec)
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    true_n = rec["true_n_timescales"].values
    units = list(rec["unit"].values[true_n == 1][:2]) + list(rec["unit"].values[true_n == 2][:2])
    fig = plot.timescales_summary(res, units=units)
    png = out_dir / "demo_timescales.png"
    fig.savefig(png, dpi=120)
    sel = res["n_timescales"].values
    true_tau = rec["true_tau_net"].values
    err = np.abs(res["tau_net"].values / true_tau - 1)
    print(f"demo recording: {rec.sizes['unit']} units, {rec.sizes['trial']} trials x {rec.sizes['time']} steps")
    print(f"  model selected correctly for {np.mean(sel == true_n):.0%} of units "
          f"(one-timescale units: {np.mean(sel[true_n == 1] == 1):.0%}, two-timescale units: {np.mean(sel[true_n == 2] == 2):.0%})")
    print(f"  tau_net vs true: median relative error {np.nanmedian(err):.1%}")
    print(f"  figure: {png}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from dynatools import __version__
    from dynatools.threads import add_threads_option

    parser = argparse.ArgumentParser(
        prog="dynatools",
        description="Measure the dynamics of recurrent networks on labeled activity recordings.",
        epilog="Trained networks of a trainers run directory are analysed by 'trainers analyze | report | "
               "lyapunov | hessian' (see 'trainers --help').",
    )
    parser.add_argument("--version", action="version", version=f"dynatools {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("info", help="describe what is in a recording")
    p.add_argument("file", type=Path, help="a recording (netCDF4)")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser(
        "timescales",
        help="autocorrelations and timescales (single/double exponential, AIC) of every unit",
        description="Compute each unit's autocorrelation, fit single and double exponentials, "
        "select by AIC/BIC, and write the labeled result (tau_net per unit) to netCDF.",
    )
    p.add_argument("file", type=Path, help="a recording (netCDF4)")
    p.add_argument("-o", "--output", type=Path, required=True, help="result file (netCDF4)")
    p.add_argument("--max-lag", type=int, default=None, help="lags to compute (default max(fit_lag, 200))")
    p.add_argument("--fit-lag", type=int, default=30, help="largest lag used in the fits (default 30)")
    p.add_argument("--criterion", choices=("aic", "bic"), default="aic", help="model selection criterion")
    p.add_argument("--reference", action="store_true", help="reproduce the authors' fitting procedure exactly")
    p.add_argument("--population", action="store_true", help="timescale of the summed population activity")
    p.add_argument("--lag0", choices=("auto", "include", "exclude"), default="auto",
                   help="the drop at lag 0 from observation noise or subsampling (docs/timescales.md, 'Subsampled "
                        "and noisy data'): auto (default: a lag-0 noise term where AIC and the noise test want "
                        "it), include (lag 0 is a data point), exclude (fit from lag 1); ignored with --reference")
    p.add_argument("--min-timescale", type=float, default=None, metavar="T",
                   help="a fitted fast component below T (in the recording's time units; default one step) is "
                        "never reported as a timescale: such units get the single model and status lag0_noise")
    p.add_argument("--dtype", choices=("float32", "float64"), default=None,
                   help="precision of the autocorrelation's FFT (default: the recording's; the result does not "
                        "depend on the units of the data either way)")
    p.add_argument("--errors", choices=("ignore", "raise"), default="ignore",
                   help="a unit with NaN or inf activity: NaN results and status 'nonfinite' (ignore, default), "
                        "or stop with an error naming it (raise)")
    p.add_argument("--min-length-ratio", type=float, default=50.0, metavar="R",
                   help="status 'short' where the trial length is below R x tau_net (default 50: shorter trials bias "
                        "tau_net low by about 10%% or more); 0 turns the rule off")
    p.add_argument("--period", action="append", default=None, metavar="NAME",
                   help="analyse only the steps of this task period (e.g. delay; repeat for consecutive periods), "
                        "each trial's segment from its start (needs a 'period' coordinate)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=_cmd_timescales)

    p = sub.add_parser(
        "spectrum",
        help="Welch power spectra per unit and of the population, with the characteristic frequency",
        description="Welch power spectra of a recording variable (activity or input) per unit, averaged over "
        "trials, their average over units and the spectrum of the population-averaged signal, in cycles/step "
        "(or Hz for recordings in seconds), with the characteristic frequency (the maximal peak, Dubinin & "
        "Effenberger 2024, Sec. 4.2); optionally written to netCDF and drawn.",
    )
    p.add_argument("file", type=Path, help="a recording (netCDF4)")
    p.add_argument("-o", "--output", "--out", type=Path, default=None, metavar="FILE",
                   help="result file (netCDF4); default: print the summary only")
    p.add_argument("--var", default="activity", help="the variable to analyse: activity (default) or input")
    p.add_argument("--nperseg", type=int, default=None, metavar="N",
                   help="samples per Welch segment (default 256, or the shortest trial); resolution 1/(N dt)")
    p.add_argument("--noverlap", type=int, default=None, metavar="N", help="overlap of segments (default N/2)")
    p.add_argument("--detrend", choices=("constant", "linear"), default="constant",
                   help="removed from each segment before its periodogram (default: its mean)")
    p.add_argument("--plot", type=Path, default=None, metavar="FIG", help="draw the spectra to this image file")
    p.add_argument("--period", action="append", default=None, metavar="NAME",
                   help="analyse only the steps of this task period (repeat for consecutive periods)")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary")
    p.set_defaults(func=_cmd_spectrum)

    p = sub.add_parser(
        "demo",
        help="run the timescale analysis on the shipped demo recording and draw a figure",
    )
    p.add_argument("-o", "--output", type=Path, default=Path("dynatools-demo"), help="folder for the figure (default ./dynatools-demo)")
    p.set_defaults(func=_cmd_demo)
    add_threads_option(sub, skip=("info",))
    return parser


#: Errors reported as one line (exit status 2) instead of a traceback.
USER_ERRORS = (ValueError, TypeError, OSError, RuntimeError, KeyError, ArithmeticError)


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    """Parse ``argv``, run the subcommand, and report user errors as ``PROG CMD: error: ...``
    with exit status 2 and warnings as ``PROG CMD: warning: ...`` lines (shared by the
    ``dynatools`` and ``trainers`` commands)."""
    args = parser.parse_args(argv)
    try:
        # warnings as one line each, like the errors (dynatools timescales names its own flags)
        with _one_line_warnings(f"{parser.prog} {args.command}", spell_flags=False):
            return args.func(args)
    except USER_ERRORS as exc:
        print(f"{parser.prog} {args.command}: error: {exc}", file=sys.stderr)
        return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dynatools`` command."""
    return run(build_parser(), argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
