"""Command line: ``trainers train | resume | list | record | evaluate`` and the subcommands of the
``_cli_*`` modules (``analyze``, ``report``, ``skip-table``, ``modular``, ``fixed-points``, ``sweep``,
``sweep-results``, ...).

Run ``trainers --help`` or ``trainers SUBCOMMAND --help``; docs/training.md has examples.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from dynatools.threads import add_threads_option
from trainers.config import ENGINE_OPTIONS, SECTIONS, TrainConfig


def _registries():
    from trainers.curricula import CURRICULA
    from trainers.models import MODELS
    from trainers.skip import METHODS
    from trainers.tasks import TASKS

    return {"task": TASKS, "model": MODELS, "curriculum": CURRICULA, "method": METHODS}


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
    group = p.add_argument_group("options of models, tasks, curricula and training methods",
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
    cfg = TrainConfig.from_dict(base).resolved()     # every check before anything is printed or written
    if not args.quiet:
        _announce_scale(cfg, given=base)
    try:
        run = train(cfg, args.out, progress=not args.quiet)
    except KeyboardInterrupt:
        return _interrupted("train", args.out)
    _summary(run)
    return 0


#: The sizes that set how long a run takes (the paper's defaults when not given).
_SCALE = ("units", "batch", "steps_per_epoch", "max_epochs")


def _announce_scale(cfg: TrainConfig, given: dict) -> None:
    """On a CPU, one line on stderr with the size of the run: steps per epoch x batch, epochs,
    units, and which of these are the paper's defaults (hours on a CPU for parity/DMS)."""
    from trainers.engine import epoch_steps, resolve_device

    if resolve_device(cfg.device).type != "cpu":
        return
    task = cfg.make_task()
    steps = epoch_steps(cfg, task)
    fixed_set = hasattr(task, "size")               # an epoch is one pass over a training set
    per_epoch = task.size("train") if fixed_set else steps * cfg.batch
    what = f"{steps} steps per epoch x batch {cfg.batch}" + (
        f" (one pass over {per_epoch:,} training sequences)" if fixed_set else f" = {per_epoch:,} sequences per epoch")
    line = (f"trainers train: {cfg.task} with {cfg.model} on the CPU: {what}, up to {cfg.max_epochs} epochs "
            f"({per_epoch * cfg.max_epochs:,} sequences), {cfg.units} units")
    if getattr(task, "time_resolved", False):
        line = (f"trainers train: {cfg.task} with {cfg.members} {cfg.model} network(s) on the CPU: batch "
                f"{cfg.batch} trials, up to {cfg.max_epochs * cfg.steps_per_epoch:,} steps (evaluated every "
                f"{cfg.steps_per_epoch}), {cfg.units} units")
    scale = [name for name in _SCALE if not (fixed_set and name == "steps_per_epoch")]
    defaults = [name for name in scale if name not in given]
    if defaults:
        line += "; the paper's defaults: " + ", ".join("--" + name.replace("_", "-") for name in defaults)
        if task.uses_N and defaults == scale:
            line += " (hours on a CPU; give smaller values for a quick run)"
    print(line, file=sys.stderr, flush=True)


def _interrupted(command: str, run_dir, options: Sequence[str] = ()) -> int:
    """Ctrl-C during training: one line with the command that continues the run; exit status 130."""
    import shlex

    from trainers.rundir import RunDir

    rd = RunDir(run_dir)
    if rd.latest_path.is_file():
        where = " ".join(shlex.quote(str(a)) for a in (run_dir, *options))
        try:
            done = f"{rd.latest.epoch} epoch(s) saved in {run_dir}"
        except (OSError, ValueError):
            done = f"the latest checkpoint is in {run_dir}"
        print(f"trainers {command}: interrupted; {done}; continue with: trainers resume {where}",
              file=sys.stderr)
    else:
        print(f"trainers {command}: interrupted before the first epoch was saved; nothing to resume: "
              f"start again with the same command (trainers train --out {shlex.quote(str(run_dir))} ...)",
              file=sys.stderr)
    return 130


def _summary(run) -> None:
    last = run.history[-1] if run.history else None
    metric = last["metric"] if last else ""
    value = f", last mean {metric} {last[f'mean_{metric}']:.4g}" if last else ""
    parts = []
    if last and "members_performance" in last:        # a trial task: one or more networks
        ds = run.metrics()
        k = ds.sizes["member"]
        reached = ds.attrs["steps_to_threshold"]
        rule = run.config.make_curriculum()
        print(f"{run.run_dir}: stopped ({run.stop_reason}) after {int(ds['epoch_step'][-1])} steps of "
              f"{run.config.task} ({k} network{'s' if k > 1 else ''}); performance "
              f"{'(10-90 percentile mean) ' if k > 1 else ''}{float(ds['score'][-1]):.4g}, threshold "
              f"{getattr(rule, 'threshold', float('nan')):g} "
              f"{f'reached after {reached} steps' if reached >= 0 else 'not reached'}")
        return
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

    try:
        run = resume(args.run_dir, max_epochs=args.max_epochs, time_budget=args.time_budget,
                     device=args.device, progress=not args.quiet)
    except KeyboardInterrupt:      # the limits given again: the latest checkpoint may predate them
        again = [part for name, value in (("--max-epochs", args.max_epochs), ("--time-budget", args.time_budget),
                                          ("--device", args.device)) if value is not None for part in (name, value)]
        return _interrupted("resume", args.run_dir, again)
    _summary(run)
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    for kind, registry in _registries().items():
        print({"task": "tasks:", "model": "models:", "curriculum": "curricula:", "method": "training methods:"}[kind])
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
    from trainers._cli_runs import is_trial_run, record_trial_run
    from trainers.record import record

    if is_trial_run(args.run_dir):                       # cognitive / multi-timescale tasks, ensembles
        return record_trial_run(args)
    run_dir = Path(args.run_dir)
    model, cfg, ck, path = _load(run_dir, args.N, args.device)
    Ns = ck.Ns or None
    attrs = {"curriculum": cfg.curriculum, "config": cfg.to_dict(), "accuracy": ck.accuracy,
             "train_seed": cfg.seed, "checkpoint": str(path), "epoch": ck.epoch}
    try:
        p = None if args.p is None else args.p if args.p == "uniform" else float(args.p)
    except ValueError:
        raise ValueError(f"--p must be a probability in [0, 1] or 'uniform'; found {args.p!r}.") from None
    rec = record(model, cfg.make_task(), Ns=Ns, steps=100_000 if args.steps is None else args.steps,
                 trials=args.trials, burn_in=500 if args.burn_in is None else args.burn_in, out=args.output,
                 p=p, seed=args.seed, attrs=attrs, progress=not args.quiet, noise=args.noise)
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
    if hasattr(model, "members"):          # an ensemble: every member on the same fresh trials
        from trainers.curricula import percentile_mean
        from trainers.ensemble import evaluate_members

        gens = [torch.Generator(device=dev).manual_seed(args.seed) for _ in model.members]
        values = evaluate_members(model, task, batch=args.batch, batches=args.batches, generators=gens, device=dev)
        labels = [f"member {k}" for k in range(len(values))] + ["10-90 %"]
        values = [*values, percentile_mean(values)]
    else:
        values = evaluate(model, task, Ns, batches=args.batches, batch=args.batch, generator=gen)
        labels = [str(n) for n in Ns] if Ns else ["test"]
    result = {lb: round(float(a), 4) for lb, a in zip(labels, values)}
    if args.json:
        print(json.dumps({"checkpoint": str(path), task.metric: result}))
    else:
        print(f"{path} ({cfg.task}, {cfg.curriculum}), {task.metric}{' in %' if task.metric == 'accuracy' else ''}:")
        for lb, a in result.items():
            print(f"  {'N=' + lb if Ns else lb:>9}: {a:9.4f}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trainers",
        description="Train any registered model on any registered task (the leaky RNN, GRU and LSTM "
                    "of the timescale paper on N-parity / N-DMS with its curricula; the WCRNN of the "
                    "fading-memory paper on the adding problem and sequential images); resume runs; "
                    "record activity for dynatools. 'trainers list' shows what is registered.")
    from dynatools import __version__   # one distribution, one version

    parser.add_argument("--version", action="version", version=f"trainers {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                help="what to do ('trainers COMMAND --help' for its options)")

    p = sub.add_parser(
        "train", help="train a network (flags and/or a TOML config file)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a network. Flags override the TOML file's keys (same names, with underscores).\n"
                    "Unset flags take the model's, task's and curriculum's defaults.",
        epilog="The defaults are the papers': parity/DMS train the timescale paper's 500 units with\n"
               "600 steps per epoch x batch 256 for up to 1000 epochs, which takes hours on a CPU (a run\n"
               "on the CPU prints its scale when it starts). A small CPU run, about half a minute:\n\n"
               "  trainers train --out runs/mh --units 64 --batch 64 --steps-per-epoch 100 \\\n"
               "      --eval-batches 10 --max-epochs 40 --n-max 30 --device cpu\n\n"
               "Ctrl-C stops a run and prints the 'trainers resume RUN_DIR' command that continues it.")
    p.add_argument("--config", help="TOML file of TrainConfig keys (top level or [train] table; options "
                                    "at the top level or in [model_options], [task_options], "
                                    "[curriculum_options])")
    p.add_argument("--out", required=True, help="run directory (created; must not hold a run)")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no progress bar and no scale line at the start; only the summary at the end")
    _add_train_flags(p)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("resume", help="continue a run from its latest checkpoint",
                       description="Continue a run from RUN_DIR/checkpoints/latest.pt with the same random "
                                   "streams: the losses and weights are those of an uninterrupted run.")
    p.add_argument("run_dir", help="the run directory of a 'trainers train' run")
    p.add_argument("--max-epochs", type=int, help="raise the epoch limit")
    p.add_argument("--time-budget", type=float, help="raise the total training-time limit (s)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"),
                   help="where to continue (default: the run's setting); the device type it was trained on")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar; only the summary at the end")
    p.set_defaults(func=_cmd_resume)

    p = sub.add_parser("list", help="the registered models, tasks and curricula, with their options")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("record", help="record a trained network's activity to netCDF")
    p.add_argument("run_dir", help="the run directory of a 'trainers train' run")
    p.add_argument("--N", type=int, help="network saved when N was solved (default: the latest, "
                                         "with the heads of its last epoch)")
    p.add_argument("--steps", type=int, help="time steps per trial (default 1e5; trial tasks: each trial's own "
                                             "length, padded to the longest; a number pads or cuts)")
    p.add_argument("--trials", type=int, default=10, help="trials (default 10)")
    p.add_argument("--burn-in", type=int, help="discarded initial steps (default 500; trial tasks: none)")
    p.add_argument("--noise", action="store_true",
                   help="trial tasks: simulate with the network's private noise (default: none, as evaluated)")
    p.add_argument("--p", metavar="P",
                   help="parity/DMS: probability of a 1 in the input bits: a number for every trial (default "
                        "0.5), or 'uniform' for p ~ U(0,1) drawn per trial (the authors' timescale protocol)")
    p.add_argument("--seed", type=int, help="seed of the input bits (default random)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where the network runs (default auto: CUDA when available)")
    p.add_argument("-o", "--output", required=True, help="output netCDF file")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary line")
    p.set_defaults(func=_cmd_record)

    p = sub.add_parser("evaluate", help="the test metric of a run's network (parity/DMS: accuracy on fresh batches)")
    p.add_argument("run_dir", help="the run directory of a 'trainers train' run")
    p.add_argument("--N", type=int, help="network saved when N was solved (default: latest)")
    p.add_argument("--batches", type=int, default=50,
                   help="fresh batches per head (default 50; parity/DMS, the sequence tasks use their test set)")
    p.add_argument("--batch", type=int, default=256, help="sequences per batch (default 256)")
    p.add_argument("--seed", type=int, default=0, help="seed of the fresh batches (default 0)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="where the network runs (default auto: CUDA when available)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_evaluate)

    from trainers._cli_fixed_points import add_parsers as add_fixed_point_parsers
    from trainers._cli_modular import add_parsers as add_modular_parsers
    from trainers._cli_runs import add_parsers
    from trainers._cli_skip import add_parsers as add_skip_parsers
    from trainers._cli_sweep import add_parsers as add_sweep_parsers

    add_parsers(sub)
    add_skip_parsers(sub)
    add_modular_parsers(sub)
    add_fixed_point_parsers(sub)
    add_sweep_parsers(sub)
    add_threads_option(sub, skip=("list",))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``trainers`` command."""
    from dynatools.cli import run

    try:
        return run(build_parser(), argv)
    except KeyboardInterrupt:        # train and resume say how to continue; other commands stop here
        print("trainers: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
