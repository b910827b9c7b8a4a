"""Command line: ``dynatools info | timescales | demo | lyapunov | hessian``.

Run ``dynatools --help`` or ``dynatools SUBCOMMAND --help``; docs/cli.md has examples.
"""

from __future__ import annotations

import argparse
import sys
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
    unit_coords = [str(k) for k, v in ds.coords.items() if v.dims == ("unit",) and k != "unit"]
    if unit_coords:
        print("  per-unit coordinates: " + ", ".join(unit_coords))
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
    ds = open_recording(args.file)
    res = timescales(
        ds, max_lag=args.max_lag, fit_lag=args.fit_lag, criterion=args.criterion,
        reference=args.reference, population=args.population, progress=not args.quiet,
    )
    res.attrs["source"] = str(args.file)
    out = write_netcdf_atomic(res, args.output)
    tau = res["tau_net"].values
    n_double = int(np.sum(res["selected_model"].values == "double"))
    if not args.quiet:
        print(
            f"wrote {out}: {tau.size} unit(s), tau_net median {np.nanmedian(tau):.4g} "
            f"({res['tau_net'].attrs['units']}), double model selected for {n_double}"
        )
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


def _load_trained(source: Path, N: int | None, dtype: str):
    """A network from a trainers run directory or checkpoint (imports trainers only here)."""
    import torch

    try:
        from trainers.checkpoint import load_model, read_checkpoint
    except ImportError as exc:  # pragma: no cover - same distribution
        raise RuntimeError("loading a trained network needs the trainers package (pip install -e .)") from exc
    if source.is_dir():
        ckpt = source / "checkpoints" / ("latest.pt" if N is None else f"N{N:03d}.pt")
        if not ckpt.is_file():
            raise FileNotFoundError(f"{ckpt} does not exist; give a run directory with checkpoints/ "
                                    f"(and an --N that was solved) or a checkpoint file.")
    else:
        ckpt = source
    meta = read_checkpoint(ckpt)["meta"]
    model = load_model(ckpt).to(getattr(torch, dtype))
    if meta.get("kind") == "sequence":  # a trainers train-sequence run (WCRNN)
        if N is not None:
            raise ValueError(f"{ckpt} is a train-sequence run: it has no per-N networks; drop --N.")
        return model, meta, None, ckpt
    history = meta.get("history") or []
    Ns = history[-1]["Ns"] if meta.get("kind") == "latest" and history else meta["Ns"]
    return model, meta, Ns, ckpt


def _task_of(meta):
    if meta.get("kind") == "sequence":
        from trainers.sequence_training import make_sequence_task

        return make_sequence_task(**meta["task"])
    from trainers.config import TrainConfig

    return TrainConfig.from_dict(meta["config"]).make_task()


def _driving_inputs(task, meta, trajectories: int, steps: int, gen, dtype):
    """Inputs for the Lyapunov command: Bernoulli(0.5) bits encoded as in training, or test
    sequences of a train-sequence task (``steps`` at most their length)."""
    import torch

    if meta.get("kind") == "sequence":
        from trainers.sequence_training import held_out_batch

        if steps > task.length:
            raise ValueError(f"--steps {steps} exceeds the {task.name} sequences' length {task.length}; "
                             f"use --steps {task.length} or fewer.")
        u = held_out_batch(task, trajectories, seed=int(gen.initial_seed())).inputs[:, :steps]
        return u.to(dtype), "test sequences of the training task"
    bits = (torch.rand(trajectories, -(-steps // task.k), generator=gen) < 0.5).float()
    return task.encode(bits)[:, :steps].to(dtype), "Bernoulli(0.5) bits, encoded as in training"


def _cmd_lyapunov(args: argparse.Namespace) -> int:
    import torch

    from dynatools.lyapunov import lyapunov_spectrum
    from dynatools.recording import write_netcdf_atomic

    model, meta, Ns, ckpt = _load_trained(args.source, args.N, args.dtype)
    task = _task_of(meta)
    gen = torch.Generator().manual_seed(args.seed)
    steps = args.steps
    if steps is None:                            # a sequence task: its whole length
        steps = task.length if meta.get("kind") == "sequence" else 10_000
    warmup = min(500, steps // 5) if args.warmup is None else args.warmup
    u, source = _driving_inputs(task, meta, args.trajectories, steps, gen, next(model.parameters()).dtype)
    h0 = model.initial_state(args.trajectories, generator=gen)
    res = lyapunov_spectrum(model.step, h0, u, k=args.k, warmup=warmup,
                            reortho_every=args.reortho_every, device=args.device,
                            dtype=next(model.parameters()).dtype, seed=args.seed, progress=not args.quiet)
    res.attrs.update(source=str(ckpt), input=source, seed=args.seed)
    write_netcdf_atomic(res, args.output)
    if not args.quiet:
        top = ", ".join(f"{v:.4f}" for v in res["lyapunov"].values[:5])
        print(f"wrote {args.output}: {res.sizes['exponent']} exponents (per step), largest: {top}")
    return 0


def _cmd_hessian(args: argparse.Namespace) -> int:
    from dynatools.hessian import hessian_density, hessian_eigenvalues
    from dynatools.recording import write_netcdf_atomic

    from trainers.training import loss_closure

    model, meta, Ns, ckpt = _load_trained(args.source, args.N, "float64")
    if Ns is None:
        from trainers.sequence_training import sequence_loss_closure

        loss_fn, params = sequence_loss_closure(model, _task_of(meta), batch=args.batch, seed=args.seed)
    else:
        loss_fn, params = loss_closure(model, _task_of(meta), Ns, batch=args.batch, seed=args.seed)
    res = hessian_eigenvalues(loss_fn, params, k=args.k, which=args.which)
    if args.density:
        dens = hessian_density(loss_fn, params, n_probes=5, lanczos_steps=40, seed=args.seed)
        attrs = dict(res.attrs, density_n_hvp=dens.attrs["n_hvp"], density_sigma=dens.attrs["sigma"])
        res = res.merge(dens[["density", "ritz_value", "weight"]])
        res.attrs = attrs
    res.attrs.update(source=str(ckpt), Ns=str(Ns or "none"), batch=args.batch, seed=args.seed)
    write_netcdf_atomic(res, args.output)
    if not args.quiet:
        top = ", ".join(f"{v:.4g}" for v in res["hessian_eigenvalue"].values[:5])
        on = f"Ns {Ns[0]}..{Ns[-1]}" if Ns else f"{args.batch} test sequences"
        print(f"wrote {args.output}: {args.k} eigenvalues ({args.which}) of the loss Hessian on {on}: "
              f"{top} ... ({res.attrs['n_hvp']} Hessian-vector products)")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from dynatools.report import make_report

    accuracy = {"burn_in": args.accuracy_burn_in, "steps": args.accuracy_steps, "trials": args.accuracy_trials}
    index = make_report(args.run_dirs, args.output, steps=args.steps, trials=args.trials,
                        robustness=not args.no_robustness, repeats=args.repeats, accuracy=accuracy,
                        n_ablate=args.ablate, retrain_Ns=args.retrain, retrain_epochs=args.retrain_epochs,
                        burn_in=args.burn_in, fit_lag=args.fit_lag, refresh=args.refresh,
                        parallel="serial" if args.serial else "auto", workers=args.workers,
                        progress=not args.quiet)
    if not args.quiet:
        from dynatools.report import MANIFEST

        n = sum(name.endswith(".png") for name in (index.parent / MANIFEST).read_text().split())
        print(f"wrote {index} with {n} figures (PNG and SVG); open it in a browser")
    return 0


def _add_source_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", type=Path, help="run directory (latest network, or --N) or checkpoint file")
    p.add_argument("-o", "--output", type=Path, required=True, help="result file (netCDF4)")
    p.add_argument("--N", type=int, help="the network saved when N was solved")


def build_parser() -> argparse.ArgumentParser:
    from dynatools import __version__

    parser = argparse.ArgumentParser(
        prog="dynatools",
        description="Measure the dynamics of recurrent networks on labeled activity recordings.",
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
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=_cmd_timescales)

    p = sub.add_parser(
        "demo",
        help="run the timescale analysis on the shipped demo recording and draw a figure",
    )
    p.add_argument("-o", "--output", type=Path, default=Path("dynatools-demo"), help="folder for the figure (default ./dynatools-demo)")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser(
        "report", help="every figure of the timescale paper for one or several trainers runs (HTML)",
        description="Analyse each run directory's solved-N checkpoints (timescales, dimensionality, weight "
                    "balance; cached in RUN_DIR/analysis), the robustness of its largest-N network (ablation, "
                    "perturbation) and optionally re-training; write PNG and SVG figures and index.html. "
                    "Several runs are overlaid (e.g. single-head vs multi-head).")
    p.add_argument("run_dirs", nargs="+", type=Path, help="trainers run directories")
    p.add_argument("-o", "--output", type=Path, required=True, help="report folder (created)")
    p.add_argument("--steps", type=int, default=20_000, help="recorded steps per trial and checkpoint (default 20000)")
    p.add_argument("--trials", type=int, default=4, help="recorded trials per checkpoint (default 4)")
    p.add_argument("--burn-in", type=int, default=500,
                   help="discarded steps before each recording (default 500)")
    p.add_argument("--fit-lag", type=int, default=30,
                   help="largest lag of the timescale fits, in steps (default 30, the authors' value)")
    p.add_argument("--refresh", action="store_true",
                   help="recompute everything instead of reusing the caches in RUN_DIR/analysis")
    p.add_argument("--no-robustness", action="store_true", help="skip ablation and perturbation")
    p.add_argument("--repeats", type=int, default=10, help="perturbation repeats (default 10)")
    p.add_argument("--ablate", type=int, default=20, help="units ablated from each end of the tau range (default 20)")
    p.add_argument("--accuracy-steps", type=int, default=1000, help="App. F evaluated steps (default 1000)")
    p.add_argument("--accuracy-burn-in", type=int, default=100, help="App. F burn-in steps (default 100)")
    p.add_argument("--accuracy-trials", type=int, default=10, help="App. F trials (default 10)")
    p.add_argument("--retrain", type=int, nargs="+", metavar="N", help="re-train the largest-N network on these Ns (Fig. 8c)")
    p.add_argument("--retrain-epochs", type=int, default=20, help="re-training epochs (default 20)")
    p.add_argument("--serial", action="store_true", help="analyse checkpoints one after another (no dask)")
    p.add_argument("--workers", type=int,
                   help="analyse checkpoints on this many local worker processes (dask); default: one per "
                        "core on machines with more than 2 cores, else one after another")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or summary")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("lyapunov", help="Lyapunov spectrum of a trained network (run directory or checkpoint)",
                       description="QR Lyapunov spectrum of a trainers network driven by Bernoulli(0.5) "
                                   "bits (a train-sequence WCRNN run: by held-out sequences of its task); "
                                   "writes the labeled result (exponents, running estimates) to netCDF.")
    _add_source_args(p)
    p.add_argument("--steps", type=int,
                   help="time steps (default 10000; a train-sequence run: the length of its sequences)")
    p.add_argument("--trajectories", type=int, default=4, help="input sequences (default 4)")
    p.add_argument("--k", type=int, help="number of exponents (default all)")
    p.add_argument("--warmup", type=int,
                   help="steps before averaging (default 500, at most a fifth of --steps)")
    p.add_argument("--reortho-every", type=int, default=1, help="steps between QRs (default 1)")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=_cmd_lyapunov)

    p = sub.add_parser("hessian", help="extreme eigenvalues (and density) of a trained network's loss Hessian",
                       description="Lanczos eigenvalues of the Hessian of the training loss (sum of the "
                                   "active heads' cross-entropies; for a train-sequence WCRNN run, its "
                                   "cross-entropy or RMS loss) on one fixed batch.")
    _add_source_args(p)
    p.add_argument("--k", type=int, default=20, help="number of eigenvalues (default 20)")
    p.add_argument("--which", choices=("LA", "LM", "SA"), default="LA")
    p.add_argument("--batch", type=int, default=256, help="sequences in the fixed batch (default 256; the "
                   "fading-memory paper used 1000 test samples)")
    p.add_argument("--density", action="store_true", help="also the spectral density (stochastic Lanczos quadrature, 5 probes x 40 steps)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=_cmd_hessian)
    return parser


#: Errors reported as one line (exit status 2) instead of a traceback.
USER_ERRORS = (ValueError, TypeError, OSError, RuntimeError, KeyError, ArithmeticError)


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    """Parse ``argv``, run the subcommand, and report user errors as ``PROG CMD: error: ...``
    with exit status 2 (shared by the ``dynatools`` and ``trainers`` commands)."""
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except USER_ERRORS as exc:
        print(f"{parser.prog} {args.command}: error: {exc}", file=sys.stderr)
        return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dynatools`` command."""
    return run(build_parser(), argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
