"""Command line: ``trainers train | resume | list | record | evaluate``.

Run ``trainers --help`` or ``trainers SUBCOMMAND --help``; docs/training.md has examples.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from trainers.config import ENGINE_OPTIONS, SECTIONS, TrainConfig


def _registries():
    from trainers.curricula import CURRICULA
    from trainers.models import MODELS
    from trainers.tasks import TASKS

    return {"task": TASKS, "model": MODELS, "curriculum": CURRICULA}


def _declared_options() -> dict[str, tuple]:
    """Every option that a registered model, task or curriculum declares: name -> (Option,
    ["kind 'name'", ...] of its owners). Generated anew, so a newly registered class's options
    become flags without any edit here."""
    found: dict[str, tuple] = {}
    for kind, registry in _registries().items():
        for name in registry:
            for opt in registry[name].options:
                owners = found.setdefault(opt.name, (opt, []))[1]
                owners.append(name)
    return found


def _flag_kwargs(opt) -> dict:
    if opt.type is bool:
        return {"action": argparse.BooleanOptionalAction, "default": None}
    if opt.type is list:
        return {"type": int, "nargs": "+", "default": None, "metavar": "N"}
    kw = {"type": opt.type, "default": None}
    if opt.choices:
        kw["choices"] = opt.choices
    return kw


def _add_train_flags(p: argparse.ArgumentParser) -> None:
    registries = _registries()
    engine = p.add_argument_group("training", "the engine's settings (default: the task's and model's)")
    for opt in ENGINE_OPTIONS:
        names = f" (one of: {', '.join(registries[opt.name])})" if opt.name in registries else ""
        engine.add_argument("--" + opt.name.replace("_", "-"), dest=opt.name, help=opt.help + names,
                            **_flag_kwargs(opt))
    group = p.add_argument_group("options of models, tasks and curricula",
                                 "each applies to the classes named in brackets")
    for name, (opt, owners) in sorted(_declared_options().items()):
        default = "" if opt.default is None or opt.type is bool else f"; default {opt.default}"
        group.add_argument("--" + name.replace("_", "-"), dest=name,
                           help=f"{opt.help}{default} [{', '.join(owners)}]", **_flag_kwargs(opt))


def _cmd_train(args: argparse.Namespace) -> int:
    from trainers.engine import train

    base = TrainConfig.from_toml(args.config).to_dict() if args.config else {}
    base = {k: v for k, v in base.items() if v is not None and v != {}}
    for name in [o.name for o in ENGINE_OPTIONS] + list(_declared_options()):
        value = getattr(args, name)
        if value is not None:
            for section in SECTIONS:                # a flag overrides the TOML file's section entry
                base.get(section, {}).pop(name, None)
            base[name] = value
    run = train(TrainConfig.from_dict(base), args.out, progress=not args.quiet)
    _summary(run)
    return 0


def _summary(run) -> None:
    last = run.history[-1] if run.history else None
    metric = last["metric"] if last else ""
    value = f", last mean {metric} {last[f'mean_{metric}']:.4g}" if last else ""
    parts = []
    if run.config.classes()[0].uses_N:
        parts.append(f"largest solved N = {run.max_solved_N}" if run.max_solved_N is not None else "no N solved yet")
    elif last:
        ds = run.metrics()
        parts.append(f"best {metric} {ds.attrs['best']:.4g}")
        mp = ds.attrs.get("minimal_performance")
        if mp is not None:
            parts.append(f"minimal performance ({mp:g}) {'reached' if ds.attrs['reached_mp'] else 'not reached'} "
                         f"in {ds.attrs['iterations_to_mp']} iterations")
    print(f"{run.run_dir}: stopped ({run.stop_reason}) after {len(run.history)} epoch(s) of "
          f"{run.config.task}; {'; '.join(parts)}{value}")


def _cmd_resume(args: argparse.Namespace) -> int:
    from trainers.engine import resume

    run = resume(args.run_dir, max_epochs=args.max_epochs, time_budget=args.time_budget,
                 device=args.device, progress=not args.quiet)
    _summary(run)
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    for kind, registry in _registries().items():
        print({"task": "tasks:", "model": "models:", "curriculum": "curricula:"}[kind])
        for name in registry:
            cls = registry[name]
            doc = _first_sentence(cls.__doc__ or "")
            opts = ", ".join(o.name for o in cls.options)
            print(f"  {name:<12} {doc}" + (f"\n  {'':<12} options: {opts}" if opts else ""))
    return 0


def _first_sentence(doc: str) -> str:
    """The docstring's first sentence, on one line (``trainers list``)."""
    import re

    paragraph = " ".join(doc.strip().split("\n\n")[0].split())
    paragraph = re.sub(r":\w+:`~?([^`]*)`", r"\1", paragraph).replace("``", "")    # reST roles and literals
    end = re.search(r"(?<!Sec)(?<!Eq)(?<!App)(?<!Fig)(?<!i\.e)(?<!e\.g)\.\s+(?=[A-Z])", paragraph)
    sentence = paragraph if end is None else paragraph[: end.start() + 1]
    return sentence if len(sentence) <= 100 else sentence[:99] + "…"


def _load(run_dir: Path, N: int | None, device: str | None):
    """The network of a run's checkpoint, its configuration, the checkpoint and its path."""
    from trainers.engine import resolve_device
    from trainers.rundir import RunDir

    ck = RunDir(run_dir).checkpoint(N)
    return ck.model(resolve_device(device)), ck.config, ck, ck.path


def _cmd_record(args: argparse.Namespace) -> int:
    from trainers.record import record

    run_dir = Path(args.run_dir)
    model, cfg, ck, path = _load(run_dir, args.N, args.device)
    Ns = ck.Ns or None
    attrs = {"curriculum": cfg.curriculum, "config": cfg.to_dict(), "accuracy": ck.accuracy,
             "train_seed": cfg.seed, "checkpoint": str(path), "epoch": ck.epoch}
    try:
        p = None if args.p is None else args.p if args.p == "uniform" else float(args.p)
    except ValueError:
        raise ValueError(f"--p must be a probability in [0, 1] or 'uniform'; found {args.p!r}.") from None
    rec = record(model, cfg.make_task(), Ns=Ns, steps=args.steps, trials=args.trials,
                 burn_in=args.burn_in, out=args.output, p=p, seed=args.seed, attrs=attrs,
                 progress=not args.quiet)
    if not args.quiet:
        heads = f" (Ns {Ns[0]}..{Ns[-1]})" if Ns else ""
        print(f"wrote {args.output}: activity {dict(rec.activity.sizes)} from {path.name}{heads}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import torch

    from trainers.engine import evaluate

    model, cfg, ck, path = _load(Path(args.run_dir), args.N, args.device)
    Ns = ck.Ns
    task = cfg.make_task()
    dev = next(model.parameters()).device
    gen = torch.Generator(device=dev).manual_seed(args.seed)
    values = evaluate(model, task, Ns, batches=args.batches, batch=args.batch, generator=gen)
    labels = [str(n) for n in Ns] if Ns else ["test"]
    result = {lb: round(float(a), 4) for lb, a in zip(labels, values)}
    if args.json:
        print(json.dumps({"checkpoint": str(path), task.metric: result}))
    else:
        print(f"{path} ({cfg.task}, {cfg.curriculum}), {task.metric}{' in %' if task.metric == 'accuracy' else ''}:")
        for lb, a in result.items():
            print(f"  {'N=' + lb if Ns else lb:>6}: {a:9.4f}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trainers",
        description="Train any registered model on any registered task (the leaky RNN, GRU and LSTM "
                    "of the timescale paper on N-parity / N-DMS with its curricula; the WCRNN of the "
                    "fading-memory paper on the adding problem and sequential images); resume runs; "
                    "record activity for dynatools. 'trainers list' shows what is registered.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a network (flags and/or a TOML config file)",
                       description="Train a network. Flags override the TOML file's keys (same names, "
                                   "with underscores). Unset flags take the task's and model's defaults.")
    p.add_argument("--config", help="TOML file of TrainConfig keys (top level or [train] table; options "
                                    "at the top level or in [model_options], [task_options], "
                                    "[curriculum_options])")
    p.add_argument("--out", required=True, help="run directory (created; must not hold a run)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_train_flags(p)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("resume", help="continue a run from its latest checkpoint")
    p.add_argument("run_dir")
    p.add_argument("--max-epochs", type=int, help="raise the epoch limit")
    p.add_argument("--time-budget", type=float, help="raise the total training-time limit (s)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"))
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=_cmd_resume)

    p = sub.add_parser("list", help="the registered models, tasks and curricula, with their options")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("record", help="record a trained network's activity to netCDF")
    p.add_argument("run_dir")
    p.add_argument("--N", type=int, help="network saved when N was solved (default: the latest, "
                                         "with the heads of its last epoch)")
    p.add_argument("--steps", type=int, default=100_000, help="time steps per trial (default 1e5)")
    p.add_argument("--trials", type=int, default=10, help="trials (default 10)")
    p.add_argument("--burn-in", type=int, default=500, help="discarded initial steps (default 500)")
    p.add_argument("--p", metavar="P",
                   help="parity/DMS: probability of a 1 in the input bits: a number for every trial (default "
                        "0.5), or 'uniform' for p ~ U(0,1) drawn per trial (the authors' timescale protocol)")
    p.add_argument("--seed", type=int, help="seed of the input bits (default random)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("-o", "--output", required=True, help="output netCDF file")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=_cmd_record)

    p = sub.add_parser("evaluate", help="the test metric of a run's network (parity/DMS: accuracy on fresh batches)")
    p.add_argument("run_dir")
    p.add_argument("--N", type=int, help="network saved when N was solved (default: latest)")
    p.add_argument("--batches", type=int, default=50)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_evaluate)

    from trainers._cli_runs import add_parsers

    add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``trainers`` command."""
    from dynatools.cli import run

    return run(build_parser(), argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
