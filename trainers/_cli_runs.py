"""Subcommands of ``trainers`` that work on run directories: ``analyze``, ``report``,
``lyapunov``, ``hessian``.

The analyses themselves are dynatools' (they take recordings, Datasets or a ``step`` function);
these commands load the networks (:class:`trainers.RunDir`), drive them as in training and hand
them over. docs/cli.md has examples.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def _cmd_analyze(args: argparse.Namespace) -> int:
    from trainers.analyze import SUMMARY, analyze_run
    from trainers.rundir import RunDir

    summary = analyze_run(args.run_dir, steps=args.steps, trials=args.trials, burn_in=args.burn_in,
                          threshold=args.threshold, fit_lag=args.fit_lag, seed=args.seed,
                          parallel="serial" if args.serial else "auto", workers=args.workers,
                          refresh=args.refresh, progress=not args.quiet)
    if not args.quiet:
        Ns = summary["N"].values
        print(f"wrote {RunDir(args.run_dir).analysis_path(SUMMARY)}: {len(Ns)} solved N ({Ns.min()}..{Ns.max()}); "
              f"recordings with input p {summary.attrs['input_p']}")
        print(f"  {'N':>4} {'tau mean':>9} {'tau_net median':>15} {'excluded':>9} {'PCs (90%)':>10} {'accuracy %':>11}")
        for N in Ns:
            s = summary.sel(N=N)
            print(f"  {int(N):>4} {float(s.tau_mean):>9.3f} {float(s.tau_net_median):>15.3f} "
                  f"{int(s.tau_net_excluded):>9d} {float(s.dimensionality):>10.1f} "
                  f"{float(s.accuracy):>11.1f}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from trainers.report import MANIFEST, make_report

    accuracy = {"burn_in": args.accuracy_burn_in, "steps": args.accuracy_steps, "trials": args.accuracy_trials}
    index = make_report(args.run_dirs, args.output, steps=args.steps, trials=args.trials,
                        robustness=not args.no_robustness, repeats=args.repeats, accuracy=accuracy,
                        n_ablate=args.ablate, retrain_Ns=args.retrain, retrain_epochs=args.retrain_epochs,
                        burn_in=args.burn_in, fit_lag=args.fit_lag, refresh=args.refresh,
                        parallel="serial" if args.serial else "auto", workers=args.workers,
                        fixed_points=args.fixed_points, progress=not args.quiet)
    if not args.quiet:
        n = sum(name.endswith(".png") for name in (index.parent / MANIFEST).read_text().split())
        print(f"wrote {index} with {n} figures (PNG and SVG); open it in a browser")
    return 0


def is_trial_run(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds a run of a trial task (``time_resolved``); False when it cannot
    tell (no run there: the caller reports that)."""
    from trainers.rundir import RunDir

    try:
        return bool(getattr(RunDir(run_dir).config.classes()[0], "time_resolved", False))
    except Exception:                    # noqa: BLE001 - not a run directory: the usual error path
        return False


def record_trial_run(args: argparse.Namespace) -> int:
    """``trainers record RUN_DIR`` for a trial-task run (one network or an ensemble): its
    latest network(s) on ``--trials`` fresh trials of the run's task (``trainers.record``)."""
    from trainers.engine import resolve_device
    from trainers.record import record
    from trainers.rundir import RunDir

    run_dir = Path(args.run_dir)
    rd = RunDir(run_dir)
    if args.N is not None:
        raise ValueError(f"{run_dir} is a {rd.config.task} run: it has no per-N networks; drop --N.")
    if args.p is not None:
        raise ValueError(f"--p sets the probability of a 1 in random-bit inputs; {rd.config.task} draws its "
                         f"own trials: drop --p.")
    ck = rd.checkpoint()
    cfg = ck.config
    model = ck.model(resolve_device(args.device))
    history = ck.meta.get("history") or []
    last = history[-1] if history else {}
    attrs = {"curriculum": cfg.curriculum, "config": cfg.to_dict(), "train_seed": cfg.seed,
             "checkpoint": str(ck.path), "epoch": ck.epoch, "train_step": int(last.get("iteration", 0)),
             "performance": list(last.get("members_performance", [])), "stop_reason": ck.meta.get("stop_reason", "")}
    rec = record(model, cfg.make_task(), steps=args.steps, trials=args.trials, burn_in=args.burn_in,
                 out=args.output, seed=args.seed, attrs=attrs, noise=args.noise)
    if not args.quiet:
        k = rec.sizes.get("member")
        who = f"{k} networks" if k else "1 network"
        lengths = rec["trial_length"].values
        print(f"wrote {args.output}: activity {dict(rec.activity.sizes)} (firing rates, time in s; trials of "
              f"{int(lengths.min())}..{int(lengths.max())} steps) of {who} from {ck.path.name}, "
              f"{'with' if args.noise else 'without'} private noise")
    return 0


def _load(source: Path, N: int | None, dtype: str) -> tuple[Any, Any, list[int] | None, Any]:
    """The network of a run directory (its latest checkpoint, or the one saved when N was solved)
    or of a checkpoint file: ``(model in dtype, task, Ns or None for a task without N, checkpoint)``."""
    import torch

    from trainers.checkpoint import read_checkpoint
    from trainers.rundir import Checkpoint, RunDir

    if source.is_dir():
        rd = RunDir(source)
        try:
            ck = rd.checkpoint(N)
        except FileNotFoundError:
            if N is not None and rd.config_path.is_file() and not rd.config.classes()[0].uses_N:
                raise ValueError(f"{source} is a {rd.config.task} run: it has no per-N networks; drop --N.") from None
            raise
    else:
        ck = Checkpoint(source, read_checkpoint(source))
    cfg = ck.config
    task = cfg.make_task()
    if task.uses_N:
        Ns = ck.Ns
        if N is not None and N not in Ns:
            raise ValueError(f"{ck.path} has no head for N={N} (its heads answer {Ns}); give another --N "
                             f"or a run directory.")
    else:
        if N is not None:
            raise ValueError(f"{ck.path} is a {cfg.task} run: it has no per-N networks; drop --N.")
        Ns = None
    return ck.model().to(getattr(torch, dtype)), task, Ns, ck


def _driving_inputs(task, trajectories: int, steps: int, gen, dtype):
    """Inputs for the Lyapunov command: the task's recording stream (``task.recording_stream``):
    Bernoulli(0.5) bits encoded as in training for parity/DMS, the task's sequences one after
    another for the others."""
    bits = bool(getattr(task, "bit_inputs", False))
    u, _ = task.recording_stream(trajectories, steps, p=0.5 if bits else None, generator=gen)
    what = "Bernoulli(0.5) bits, encoded as in training" if bits else f"{task.name} sequences one after another"
    return u.to(dtype), what


def _cmd_lyapunov(args: argparse.Namespace) -> int:
    import torch

    from dynatools.lyapunov import lyapunov_spectrum
    from dynatools.utils import check_positive_int, write_netcdf_atomic

    model, task, Ns, ck = _load(args.source, args.N, args.dtype)
    trajectories = check_positive_int("--trajectories", args.trajectories)
    gen = torch.Generator().manual_seed(args.seed)
    steps = args.steps
    if steps is None:                            # a sequence task: the length of one sequence
        steps = getattr(task, "length", 10_000) if Ns is None else 10_000
    steps = check_positive_int("--steps", steps)
    warmup = min(500, steps // 5) if args.warmup is None else args.warmup
    dtype = next(model.parameters()).dtype
    u, source = _driving_inputs(task, trajectories, steps, gen, dtype)
    h0 = model.initial_state(trajectories, generator=gen)    # drawn on the CPU: the same on every device
    if args.device is not None:
        from trainers.engine import resolve_device

        dev = resolve_device(args.device)
        model, h0, u = model.to(dev), h0.to(dev), u.to(dev)
    res = lyapunov_spectrum(model.step, h0, u, k=args.k, warmup=warmup, reortho_every=args.reortho_every,
                            device=args.device, dtype=dtype, seed=args.seed, progress=not args.quiet)
    res.attrs.update(source=str(ck.path), input=source, seed=args.seed)
    write_netcdf_atomic(res, args.output)
    if not args.quiet:
        top = ", ".join(f"{v:.4f}" for v in res["lyapunov"].values[:5])
        print(f"wrote {args.output}: {res.sizes['exponent']} exponents (per step), largest: {top}")
    return 0


def _cmd_hessian(args: argparse.Namespace) -> int:
    from dynatools.hessian import hessian_density, hessian_eigenvalues
    from dynatools.utils import write_netcdf_atomic
    from trainers.engine import loss_closure

    model, task, Ns, ck = _load(args.source, args.N, "float64")
    loss_fn, params = loss_closure(model, task, Ns, batch=args.batch, seed=args.seed)
    res = hessian_eigenvalues(loss_fn, params, k=args.k, which=args.which, seed=args.seed)
    if args.density:
        dens = hessian_density(loss_fn, params, n_probes=5, lanczos_steps=40, seed=args.seed)
        attrs = dict(res.attrs, density_n_hvp=dens.attrs["n_hvp"], density_sigma=dens.attrs["sigma"])
        res = res.merge(dens[["density", "ritz_value", "weight"]])
        res.attrs = attrs
    res.attrs.update(source=str(ck.path), Ns=str(Ns or "none"), batch=args.batch, seed=args.seed)
    write_netcdf_atomic(res, args.output)
    if not args.quiet:
        top = ", ".join(f"{v:.4g}" for v in res["hessian_eigenvalue"].values[:5])
        on = f"Ns {Ns[0]}..{Ns[-1]}" if Ns else f"{args.batch} test sequences"
        print(f"wrote {args.output}: {args.k} eigenvalues ({args.which}) of the loss Hessian on {on}: "
              f"{top} ... ({res.attrs['n_hvp']} Hessian-vector products)")
    return 0


def _add_recording_args(p: argparse.ArgumentParser) -> None:
    """The options of the per-checkpoint analysis (shared by analyze and report)."""
    p.add_argument("--steps", type=int, default=20_000, help="recorded steps per trial and checkpoint (default 20000)")
    p.add_argument("--trials", type=int, default=4, help="recorded trials per checkpoint (default 4)")
    p.add_argument("--burn-in", type=int, default=500, help="discarded steps before each recording (default 500)")
    p.add_argument("--fit-lag", type=int, default=30,
                   help="largest lag of the timescale fits, in steps (default 30, the authors' value)")
    p.add_argument("--refresh", action="store_true",
                   help="recompute everything instead of reusing the caches in RUN_DIR/analysis")
    p.add_argument("--serial", action="store_true", help="analyse checkpoints one after another (no dask)")
    p.add_argument("--workers", type=int,
                   help="analyse checkpoints on this many local worker processes (dask); default: one per "
                        "core when at least 3 cores are free (cores minus the load average), else one "
                        "after another")


def _source_parser(sub: argparse._SubParsersAction, name: str, help: str, description: str,
                   seed_help: str) -> argparse.ArgumentParser:
    """A subcommand on one network: SOURCE, -o, --N, --seed, -q."""
    p = sub.add_parser(name, help=help, description=description)
    p.add_argument("source", type=Path, help="run directory (latest network, or --N) or checkpoint file")
    p.add_argument("-o", "--output", type=Path, required=True, help="result file (netCDF4)")
    p.add_argument("--N", type=int, help="the network saved when N was solved")
    p.add_argument("--seed", type=int, default=0, help=seed_help)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary line")
    return p


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add the run-directory subcommands to the ``trainers`` command."""
    p = sub.add_parser(
        "analyze", help="timescales, dimensionality and weight balance of every solved-N network of a run",
        description="Record the network saved at each solved N (input bits with p ~ U(0, 1) drawn per trial, "
                    "the authors' protocol), fit every unit's timescales, and compute PCA dimensionality and "
                    "weight balance; one result over N in RUN_DIR/analysis/summary.nc (per-N results, with "
                    "autocorrelations, cached beside it).")
    p.add_argument("run_dir", type=Path, help="a trainers run directory (parity/DMS curriculum run)")
    _add_recording_args(p)
    p.add_argument("--threshold", type=float, default=0.9,
                   help="variance explained by the principal components counted as dimensionality (default 0.9)")
    p.add_argument("--seed", type=int, default=0, help="seed of the recordings' inputs (default 0)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or summary")
    p.set_defaults(func=_cmd_analyze)

    p = sub.add_parser(
        "report", help="every figure of the timescale paper for one or several runs (HTML)",
        description="Analyse each run directory's solved-N checkpoints (as 'trainers analyze'; cached in "
                    "RUN_DIR/analysis), the robustness of its largest-N network (ablation, perturbation) and "
                    "optionally re-training; write PNG and SVG figures and index.html. Several runs are "
                    "overlaid (e.g. single-head vs multi-head).")
    p.add_argument("run_dirs", nargs="+", type=Path, help="trainers run directories")
    p.add_argument("-o", "--output", type=Path, required=True, help="report folder (created)")
    _add_recording_args(p)
    p.add_argument("--no-robustness", action="store_true", help="skip ablation and perturbation")
    p.add_argument("--repeats", type=int, default=10, help="perturbation repeats (default 10)")
    p.add_argument("--ablate", type=int, default=20, help="units ablated from each end of the tau range (default 20)")
    p.add_argument("--accuracy-steps", type=int, default=1000, help="App. F evaluated steps (default 1000)")
    p.add_argument("--accuracy-burn-in", type=int, default=100, help="App. F burn-in steps (default 100)")
    p.add_argument("--accuracy-trials", type=int, default=10, help="App. F trials (default 10)")
    p.add_argument("--retrain", type=int, nargs="+", metavar="N", help="re-train the largest-N network on these Ns (Fig. 8c)")
    p.add_argument("--retrain-epochs", type=int, default=20, help="re-training epochs (default 20)")
    p.add_argument("--fixed-points", action="store_true",
                   help="add the fixed and slow points of each run's largest-N network with its trajectories "
                        "in PCA space (docs/fixed-points.md)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or summary")
    p.set_defaults(func=_cmd_report)

    p = _source_parser(sub, "lyapunov", "Lyapunov spectrum of a trained network (run directory or checkpoint)",
                       "QR Lyapunov spectrum of a trained network driven by its task's recording stream "
                       "(parity/DMS: Bernoulli(0.5) bits encoded as in training; a sequence task, e.g. the "
                       "adding problem: its sequences one after another); writes the labeled result "
                       "(exponents, running estimates) to netCDF.",
                       "inputs, initial states and tangent vectors (default 0)")
    p.add_argument("--steps", type=int,
                   help="time steps (default 10000; a sequence-task run: the length of its sequences)")
    p.add_argument("--trajectories", type=int, default=4, help="input sequences (default 4)")
    p.add_argument("--k", type=int, help="number of exponents (default all)")
    p.add_argument("--warmup", type=int, help="steps before averaging (default 500, at most a fifth of --steps)")
    p.add_argument("--reortho-every", type=int, default=1, help="steps between QRs (default 1)")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                   help="precision of the network and the QR steps (default float64)")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None,
                   help="where the spectrum is computed (default: the CPU)")
    p.set_defaults(func=_cmd_lyapunov)

    p = _source_parser(sub, "hessian", "extreme eigenvalues (and density) of a trained network's loss Hessian",
                       "Lanczos eigenvalues of the Hessian of the training loss (trainers.engine.loss_closure: "
                       "the sum of the active heads' cross-entropies; for a sequence-task run, its "
                       "cross-entropy or RMS loss on held-out sequences) on one fixed batch.",
                       "the fixed batch (default 0)")
    p.add_argument("--k", type=int, default=20, help="number of eigenvalues (default 20)")
    p.add_argument("--which", choices=("LA", "LM", "SA"), default="LA",
                   help="which eigenvalues: largest algebraic (LA, default), largest magnitude (LM) or "
                        "smallest algebraic (SA)")
    p.add_argument("--batch", type=int, default=256, help="sequences in the fixed batch (default 256; the "
                   "fading-memory paper used 1000 test samples)")
    p.add_argument("--density", action="store_true",
                   help="also the spectral density (stochastic Lanczos quadrature, 5 probes x 40 steps)")
    p.set_defaults(func=_cmd_hessian)
