"""Command line: ``trainers train | train-sequence | resume | record | evaluate``.

Run ``trainers --help`` or ``trainers SUBCOMMAND --help``; docs/training.md has examples.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from trainers.config import TrainConfig

_HELP = {
    "task": "parity or dms (default parity)",
    "model": "leaky, gru or lstm (default leaky)",
    "curriculum": "none, single-head, multi-head, sliding or all-heads (default multi-head)",
    "units": "recurrent units (default 500)",
    "batch": "sequences per batch (default 256)",
    "steps_per_epoch": "optimizer steps per epoch (default 600)",
    "eval_batches": "fresh batches for the accuracy after each epoch (default 50)",
    "max_epochs": "stop after this many epochs (default 1000)",
    "time_budget": "stop after this many seconds of training (checked after each epoch)",
    "n_start": "first N (default 2)",
    "n_max": "target N that ends the run; 'none' trains it directly (default 101)",
    "heads_per_step": "multi-head: new heads per curriculum step (default 1)",
    "window": "sliding: number of heads H (default 10)",
    "shift": "sliding: shift w of the window (default 5)",
    "n_heads": "readout heads of the model (default: what the curriculum needs)",
    "k": "input time-rescaling: each bit held k steps (default 1)",
    "encoding": "input values: 01 or pm1 (default 01 for leaky, pm1 for gru/lstm)",
    "optimizer": "sgd (Nesterov) or adam (default sgd for leaky, adam for gru/lstm)",
    "lr": "learning rate (default 0.05 for sgd, 1e-3 for adam)",
    "momentum": "SGD momentum (default 0.1)",
    "clip": "gradient-norm clip (default 2.0; 0 disables)",
    "train_tau": "train the timescales tau (default); --no-train-tau keeps them fixed",
    "tau": "initial (or fixed) tau of every unit (default 1 + U(0,1) per unit)",
    "nonlinearity": "outside (Eq. 1) or inside (Eq. 5) (default outside)",
    "activation": "leaky_relu, relu or tanh (default leaky_relu)",
    "negative_slope": "leaky-ReLU slope (default 0.1, the paper; the authors' code used 0.01)",
    "device": "auto, cpu or cuda (default auto: CUDA when available)",
    "seed": "random seed (default: a random one, saved in the run)",
}


def _add_train_flags(p: argparse.ArgumentParser) -> None:
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=_HELP[f.name])
            continue
        kind = {"int": int, "float": float, "int | None": int, "float | None": float}.get(str(f.type), str)
        p.add_argument(flag, type=kind, default=None, help=_HELP[f.name])


def _cmd_train(args: argparse.Namespace) -> int:
    from trainers.training import train

    base = TrainConfig.from_toml(args.config).to_dict() if args.config else {}
    for f in dataclasses.fields(TrainConfig):
        value = getattr(args, f.name)
        if value is not None:
            base[f.name] = value
    if base.get("clip") == 0:
        base["clip"] = None
    run = train(TrainConfig.from_dict(base), args.out, progress=not args.quiet)
    _summary(run)
    return 0


def _summary(run) -> None:
    last = run.history[-1] if run.history else None
    acc = f", last mean accuracy {last['mean_accuracy']:.1f}%" if last else ""
    solved = f"largest solved N = {run.max_solved_N}" if run.max_solved_N is not None else "no N solved yet"
    print(f"{run.run_dir}: stopped ({run.stop_reason}) after {len(run.history)} epoch(s); {solved}{acc}")


def _cmd_resume(args: argparse.Namespace) -> int:
    from trainers.checkpoint import read_checkpoint
    from trainers.sequence_training import LATEST, resume_sequence
    from trainers.training import resume

    latest = Path(args.run_dir) / "checkpoints" / LATEST
    if latest.is_file() and read_checkpoint(latest)["meta"].get("kind") == "sequence":
        if args.time_budget is not None:
            raise ValueError("--time-budget applies to curriculum runs; a train-sequence run takes --max-epochs.")
        device = None if args.device in (None, "auto") else args.device
        _sequence_summary(args.run_dir, resume_sequence(args.run_dir, epochs=args.max_epochs, device=device,
                                                        progress=not args.quiet))
        return 0
    run = resume(args.run_dir, max_epochs=args.max_epochs, time_budget=args.time_budget,
                 device=args.device, progress=not args.quiet)
    _summary(run)
    return 0


def _sequence_model(args: argparse.Namespace, task):
    import torch

    from trainers.models import WCRNN, critical, heterogeneous, orthonormal, rotational

    n = args.units
    gen = torch.Generator().manual_seed(args.seed)
    if args.residual == "critical":
        R = critical(n, args.r)
    elif args.residual == "rotational":
        R = args.r * rotational(n, args.phi)
    else:
        R = heterogeneous(n, args.r, args.dr, generator=gen)
    if args.orthonormal:
        R = orthonormal(n, seed=args.seed) @ R
    return WCRNN(n, R, gamma=args.gamma, kind=args.kind, input_dim=task.input_dim,
                 n_outputs=task.n_outputs, generator=gen)


def _sequence_summary(out, res) -> None:
    a = res.attrs
    mp = f"reached in {a['iterations_to_mp']} iterations" if a["reached_mp"] else \
        f"not reached in {a['iterations_to_mp']} iterations"
    print(f"{out}: {res.sizes['epoch']} epoch(s) of {a['task']}; best {a['metric']} {a['best']:.4g}; "
          f"minimal performance ({a['minimal_performance']}) {mp}")


def _cmd_train_sequence(args: argparse.Namespace) -> int:
    from trainers.sequence_training import make_sequence_task, train_sequence
    from trainers.training import resolve_device

    task = make_sequence_task(args.task, length=args.length, data=args.data, seed=args.seed)
    model = _sequence_model(args, task)
    res = train_sequence(model, task, epochs=args.epochs, batch=args.batch, lr=args.lr,
                         momentum=args.momentum, optimizer=args.optimizer,
                         clip=args.clip or None, lr_milestones=args.lr_milestones, lr_factor=args.lr_factor,
                         steps_per_epoch=args.steps_per_epoch, seed=args.seed,
                         device=resolve_device(args.device), out=args.out, progress=not args.quiet)
    _sequence_summary(args.out, res)
    return 0


def _checkpoint_path(run_dir: Path, N: int | None) -> Path:
    from trainers.training import LATEST, solved_checkpoint_name

    if not (run_dir / "checkpoints").is_dir():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no checkpoints/ folder).")
    if N is None:
        return run_dir / "checkpoints" / LATEST
    path = run_dir / "checkpoints" / solved_checkpoint_name([N])
    if not path.is_file():
        have = sorted(p.stem for p in (run_dir / "checkpoints").glob("N*.pt"))
        raise FileNotFoundError(f"{run_dir} has no checkpoint for N={N}; solved: {have or 'none'}.")
    return path


def _load(run_dir: Path, N: int | None, device: str | None):
    from trainers.checkpoint import load_model, read_checkpoint
    from trainers.training import resolve_device

    path = _checkpoint_path(run_dir, N)
    meta = read_checkpoint(path)["meta"]
    if meta.get("kind") == "sequence":
        raise ValueError(f"{run_dir} is a train-sequence run (WCRNN on {meta['task']['name']}): its test "
                         f"metric per epoch is in {run_dir / 'result.nc'}; 'record' and 'evaluate' are for "
                         f"parity/DMS runs. Use 'dynatools lyapunov' or 'dynatools hessian' on it.")
    model = load_model(path, device=resolve_device(device))
    cfg = TrainConfig.from_dict(meta["config"])
    history = meta.get("history") or []
    if meta.get("kind") == "latest" and history:
        # the heads the latest network was last evaluated on (meta["Ns"] may already hold the
        # next curriculum step's new, untrained head)
        meta = {**meta, "Ns": history[-1]["Ns"], "accuracy": history[-1]["accuracy"]}
    return model, cfg, meta, path


def _cmd_record(args: argparse.Namespace) -> int:
    from trainers.record import record

    run_dir = Path(args.run_dir)
    model, cfg, meta, path = _load(run_dir, args.N, args.device)
    Ns = meta["Ns"]
    attrs = {"curriculum": cfg.curriculum, "config": cfg.to_dict(), "accuracy": meta.get("accuracy"),
             "train_seed": cfg.seed, "checkpoint": str(path), "epoch": meta.get("epoch")}
    rec = record(model, cfg.make_task(), Ns=Ns, steps=args.steps, trials=args.trials,
                 burn_in=args.burn_in, out=args.output, seed=args.seed, attrs=attrs,
                 progress=not args.quiet)
    if not args.quiet:
        print(f"wrote {args.output}: activity {dict(rec.activity.sizes)} from {path.name} (Ns {Ns[0]}..{Ns[-1]})")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import torch

    from trainers.training import evaluate

    model, cfg, meta, path = _load(Path(args.run_dir), args.N, args.device)
    Ns = meta["Ns"]
    dev = next(model.parameters()).device
    gen = torch.Generator(device=dev).manual_seed(args.seed)
    acc = evaluate(model, cfg.make_task(), Ns, batches=args.batches, batch=args.batch, generator=gen)
    result = {str(n): round(float(a), 3) for n, a in zip(Ns, acc)}
    if args.json:
        print(json.dumps({"checkpoint": str(path), "accuracy": result}))
    else:
        print(f"{path} ({cfg.task}, {cfg.curriculum}), accuracy in %:")
        for n, a in result.items():
            print(f"  N={n:>3}: {a:7.3f}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trainers",
        description="Train the leaky RNN, GRU and LSTM of the timescale paper on N-parity / N-DMS "
                    "with its curricula, or a WCRNN of the fading-memory paper on the adding problem "
                    "and sequential images; resume runs; record activity for dynatools.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a network (flags and/or a TOML config file)",
                       description="Train a network. Flags override the TOML file's keys "
                                   "(same names, with underscores).")
    p.add_argument("--config", help="TOML file of TrainConfig keys (top level or [train] table)")
    p.add_argument("--out", required=True, help="run directory (created; must not hold a run)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_train_flags(p)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser(
        "train-sequence", help="train a WCRNN on the adding problem or sequential images",
        description="Train a weakly coupled residual RNN (fading-memory paper, Eq. 11, 18, 19) on "
                    "a sequence benchmark (Sec. 4). Checkpointed after every epoch; continue with "
                    "'trainers resume RUN_DIR'. Results: RUN_DIR/result.nc.")
    p.add_argument("--task", required=True, choices=("adding", "digits", "pdigits", "smnist", "psmnist", "scifar10"),
                   help="adding problem, shipped 8x8 digits, (permuted) sequential MNIST, sequential CIFAR-10")
    p.add_argument("--length", type=int, default=100, help="adding problem length D (default 100)")
    p.add_argument("--data", help="MNIST folder/npz or CIFAR-10 npz (nothing is downloaded)")
    p.add_argument("--units", type=int, default=100, help="recurrent units (default 100, the paper's)")
    p.add_argument("--residual", choices=("critical", "rotational", "heterogeneous"), default="critical",
                   help="R = r I (default), r x 2x2 rotations by --phi (Eq. 16), or diag U(r +- dr/2) (Eq. 17)")
    p.add_argument("--r", type=float, default=1.0, help="residual strength r, or r0 for heterogeneous (default 1.0)")
    p.add_argument("--phi", type=float, default=0.22, help="rotation angle (default 0.22 = 2 pi / 28)")
    p.add_argument("--dr", type=float, default=0.0, help="heterogeneity width (default 0)")
    p.add_argument("--orthonormal", action="store_true", help="multiply R by a random orthonormal matrix (Sec. 4.3)")
    p.add_argument("--gamma", type=float, default=0.01, help="weak coupling (default 0.01)")
    p.add_argument("--kind", choices=("linear", "A", "B"), default="linear", help="Eq. 11, 18 or 19 (default linear)")
    p.add_argument("--epochs", type=int, default=10, help="epochs (default 10)")
    p.add_argument("--batch", type=int, default=128, help="batch size (default 128)")
    p.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd", help="sgd with momentum (default, the paper's) or adam")
    p.add_argument("--lr", type=float, default=0.01, help="learning rate (default 0.01)")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default 0.9)")
    p.add_argument("--clip", type=float, default=0.0, help="gradient-norm clip (default 0: none)")
    p.add_argument("--lr-milestones", type=int, nargs="+", default=(), metavar="ITER",
                   help="iterations after which lr is multiplied by --lr-factor (default: none)")
    p.add_argument("--lr-factor", type=float, default=0.3, help="learning-rate factor at each milestone (default 0.3)")
    p.add_argument("--steps-per-epoch", type=int, default=100, help="adding problem: iterations per epoch (default 100)")
    p.add_argument("--seed", type=int, default=0, help="seed of weights, batches and permutation (default 0)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train_sequence)

    p = sub.add_parser("resume", help="continue a run (curriculum or train-sequence) from its latest checkpoint")
    p.add_argument("run_dir")
    p.add_argument("--max-epochs", type=int, help="raise the epoch limit")
    p.add_argument("--time-budget", type=float, help="raise the total training-time limit (s)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"))
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=_cmd_resume)

    p = sub.add_parser("record", help="record a trained network's activity to netCDF")
    p.add_argument("run_dir")
    p.add_argument("--N", type=int, help="network saved when N was solved (default: the latest, "
                                         "with the heads of its last epoch)")
    p.add_argument("--steps", type=int, default=100_000, help="time steps per trial (default 1e5)")
    p.add_argument("--trials", type=int, default=10, help="trials (default 10)")
    p.add_argument("--burn-in", type=int, default=500, help="discarded initial steps (default 500)")
    p.add_argument("--seed", type=int, help="seed of the input bits (default random)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("-o", "--output", required=True, help="output netCDF file")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=_cmd_record)

    p = sub.add_parser("evaluate", help="accuracy of a run's network on fresh batches")
    p.add_argument("run_dir")
    p.add_argument("--N", type=int, help="network saved when N was solved (default: latest)")
    p.add_argument("--batches", type=int, default=50)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_evaluate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``trainers`` command."""
    from dynatools.cli import run

    return run(build_parser(), argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
