"""The `trainers` command under stress: a re-run after a kill, unsafe checkpoints, Ctrl-C, the help
of every option, and the scale line of a CPU run."""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import subprocess
import sys

import pytest
import torch

import trainers
from trainers.checkpoint import FORMAT, CheckpointError
from trainers.cli import build_parser, main

FLAGS = ["--units", "8", "--batch", "8", "--steps-per-epoch", "3", "--eval-batches", "1",
         "--max-epochs", "2", "--n-max", "4", "--device", "cpu", "--seed", "5", "-q"]
#: the same run as FLAGS, for trainers.train
CONFIG = dict(units=8, batch=8, steps_per_epoch=3, eval_batches=1, max_epochs=2, n_max=4, device="cpu", seed=5)


def _losses(run_dir) -> list[float]:
    return [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


# ---------------------------------------------------------------- item 6: stale temporary files

def test_a_rerun_of_train_removes_the_temporary_files_of_a_killed_first_attempt(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)        # what a kill during the first checkpoint write leaves
    (run / "config.json").write_text("{}")
    stale = [run / "checkpoints" / ".latest.pt.k2j4x9.tmp", run / ".metrics.jsonl.a8b1.tmp"]
    for p in stale:
        p.write_bytes(b"half a checkpoint")
    keep = run / "notes.txt"
    keep.write_text("mine")
    assert main(["train", "--out", str(run), *FLAGS]) == 0
    assert not list(run.rglob("*.tmp"))
    assert keep.read_text() == "mine"
    assert (run / "checkpoints" / "latest.pt").is_file() and len(_losses(run)) == 2


# ---------------------------------------------------------------- item 6: unsafe checkpoints

EXECUTED: list[str] = []


def _side_effect() -> None:      # what unpickling the payload below would call
    EXECUTED.append("ran")


class Payload:
    """An object whose unpickling runs code (``__reduce__``): never to be loaded."""

    def __reduce__(self):
        return (_side_effect, ())


class Plain:
    """A harmless custom class: still not tensors, numbers and strings."""


@pytest.fixture(params=[Payload, Plain])
def unsafe_run(request, tmp_path):
    """A run directory whose latest checkpoint pickles an object of a class defined here."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    torch.save({"format": FORMAT, "state_dict": {}, "meta": "{}", "extra": request.param()},
               run / "checkpoints" / "latest.pt")
    EXECUTED.clear()
    return run


@pytest.mark.parametrize("argv", [
    ["evaluate", "{run}"],
    ["resume", "{run}", "-q"],
    ["record", "{run}", "-o", "{run}/rec.nc", "-q"],
    ["lyapunov", "{run}/checkpoints/latest.pt", "-o", "{run}/ly.nc", "-q"],
])
def test_an_unsafe_checkpoint_is_refused_in_one_line(unsafe_run, capsys, argv):
    assert main([a.format(run=unsafe_run) for a in argv]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "latest.pt is not a trusted checkpoint" in line and "never unpickles" in line
    assert "weights_only" not in line and "trust the source" not in line
    assert EXECUTED == []


def test_load_model_refuses_an_unsafe_checkpoint_without_pytorchs_advice(unsafe_run):
    with pytest.raises(CheckpointError, match="not a trusted checkpoint") as info:
        trainers.load_model(unsafe_run / "checkpoints" / "latest.pt")
    assert "weights_only" not in str(info.value) and "\n" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__   # no chained PyTorch message
    assert EXECUTED == []


@pytest.mark.parametrize("content, found", [
    (b"", "EOFError"),
    (b"not a checkpoint", "Unsupported operand"),
    ("truncated", "failed reading zip archive"),
])
def test_a_damaged_checkpoint_is_one_line_without_pytorchs_advice(tmp_path, content, found):
    path = tmp_path / "bad.pt"
    if content == "truncated":
        torch.save({"format": FORMAT, "w": torch.zeros(100)}, path)
        path.write_bytes(path.read_bytes()[:200])
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match="not a readable trainers checkpoint") as info:
        trainers.load_model(path)
    assert found in str(info.value)
    assert "weights_only" not in str(info.value) and "\n" not in str(info.value)


# ---------------------------------------------------------------- item 7: Ctrl-C

_CTRL_C = r"""
import os, signal, sys
from trainers import rundir
from trainers.cli import main

# Ctrl-C as in a terminal: a suite started as a background job of a script ('pytest ... &') runs
# with SIGINT ignored, which its subprocesses inherit (and Python then leaves ignored)
signal.signal(signal.SIGINT, signal.default_int_handler)

original = rundir.atomic_write_text

def write_metrics(path, text):                 # Ctrl-C while epoch 1 is being saved
    if path.name == "metrics.jsonl" and text.count("\n") == 1:
        os.kill(os.getpid(), signal.SIGINT)
    original(path, text)

rundir.atomic_write_text = write_metrics
sys.exit(main(sys.argv[1:]))
"""


def test_ctrl_c_during_train_prints_the_resume_command_and_the_resume_continues(tmp_path, capsys):
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", _CTRL_C, "train", "--out", str(run), *FLAGS],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 130, proc.stderr
    line = _one_line(proc.stderr)
    assert "Traceback" not in line
    assert f"trainers resume {shlex.quote(str(run))}" in line and "1 epoch(s) saved" in line
    # the Ctrl-C waited for the epoch's files: checkpoint and metrics of epoch 1, no temporary file
    assert len(_losses(run)) == 1 and not list(run.rglob("*.tmp"))
    assert main(shlex.split(line.split("continue with: ")[1])[1:] + ["-q"]) == 0   # the printed command
    assert "after 2 epoch(s)" in capsys.readouterr().out
    assert _losses(run) == trainers.train(CONFIG, progress=False).losses           # as if never stopped


def test_ctrl_c_before_the_first_checkpoint_says_to_start_again(tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    run = tmp_path / "run"
    monkeypatch.setattr(trainers.RunDir, "save_latest", interrupted)
    assert main(["train", "--out", str(run), *FLAGS]) == 130
    line = _one_line(capsys.readouterr().err)
    assert "nothing to resume" in line and f"trainers train --out {run}" in line
    monkeypatch.undo()
    assert main(["train", "--out", str(run), *FLAGS]) == 0      # the same command starts again


def test_ctrl_c_during_resume_prints_the_resume_command(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), *FLAGS]) == 0
    original = trainers.RunDir.save_latest

    def save_then_interrupt(self, *args, **kwargs):
        original(self, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(trainers.RunDir, "save_latest", save_then_interrupt)
    assert main(["resume", str(run), "--max-epochs", "4", "-q"]) == 130
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("trainers resume: interrupted; 3 epoch(s) saved")
    assert line.endswith(f"continue with: trainers resume {run} --max-epochs 4")
    monkeypatch.undo()
    assert main(shlex.split(line.split("continue with: ")[1])[1:] + ["-q"]) == 0   # the printed command
    assert "after 4 epoch(s)" in capsys.readouterr().out


def test_ctrl_c_in_another_command_is_one_line(tmp_path, capsys, monkeypatch):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr("trainers.cli._cmd_list", interrupted)
    assert main(["list"]) == 130
    assert _one_line(capsys.readouterr().err) == "trainers: interrupted"


# ---------------------------------------------------------------- item 7: help of every option

def _undocumented(parser: argparse.ArgumentParser, path: str) -> list[str]:
    """Every action of ``parser`` and its subcommands (option or positional, not -h) without help."""
    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if isinstance(action, argparse._SubParsersAction):
            described = {choice.dest for choice in action._choices_actions if (choice.help or "").strip()}
            seen: set[int] = set()
            for name, sub in action.choices.items():
                if id(sub) in seen:          # an alias (trainers modular generalize): its parser is checked
                    continue
                seen.add(id(sub))
                if name not in described:
                    missing.append(f"{path} {name}")
                missing += _undocumented(sub, f"{path} {name}")
            continue
        if not (action.help or "").strip() or action.help == argparse.SUPPRESS:
            missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    return missing


def _dynatools_parser():
    from dynatools.cli import build_parser as dynatools_parser

    return dynatools_parser()


@pytest.mark.parametrize("name, make", [("trainers", build_parser), ("dynatools", _dynatools_parser)])
def test_every_option_and_positional_of_every_subcommand_has_help(name, make):
    assert _undocumented(make(), name) == []


def test_train_help_lists_the_registered_names_and_says_the_defaults_take_hours(capsys, monkeypatch):
    from trainers.curricula import CURRICULA

    monkeypatch.setenv("COLUMNS", "1000")                        # no names broken at their hyphens
    with pytest.raises(SystemExit) as info:
        main(["train", "--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for flag, registry in [("--task", trainers.TASKS), ("--model", trainers.MODELS), ("--curriculum", CURRICULA)]:
        entry = text.split(f" {flag} {flag[2:].upper()} ")[1].split(" --")[0]     # the flag's help
        assert f"(one of: {', '.join(registry)})" in entry, entry
    assert "hours on a CPU" in text


# ---------------------------------------------------------------- item 7: the scale of a CPU run

def test_a_cpu_run_prints_its_scale_when_it_starts(tmp_path, capsys):
    flags = [f for f in FLAGS if f != "-q"]
    assert main(["train", "--out", str(tmp_path / "r"), *flags]) == 0
    first = capsys.readouterr().err.splitlines()[0]
    assert first.startswith("trainers train: parity with leaky on the CPU: 3 steps per epoch x batch 8 = 24 "
                            "sequences per epoch, up to 2 epochs (48 sequences), 8 units"), first
    assert "paper" not in first                                  # every size was given


@pytest.mark.parametrize("argv, expected", [
    ([], "600 steps per epoch x batch 256 = 153,600 sequences per epoch, up to 1000 epochs (153,600,000 "
         "sequences), 500 units; the paper's defaults: --units, --batch, --steps-per-epoch, --max-epochs "
         "(hours on a CPU"),
    (["--units", "64"], "64 units; the paper's defaults: --batch, --steps-per-epoch, --max-epochs"),
    (["--task", "digits", "--batch", "100"], "digits with wcrnn on the CPU: 14 steps per epoch x batch 100 (one "
                                            "pass over 1,348 training sequences), up to 10 epochs (13,480 sequences)"),
])
def test_the_scale_line_names_the_papers_defaults(tmp_path, capsys, monkeypatch, argv, expected):
    def stop(*args, **kwargs):                                   # what the line says is all this test needs
        raise KeyboardInterrupt

    monkeypatch.setattr("trainers.engine.train", stop)
    assert main(["train", "--out", str(tmp_path / "r"), "--device", "cpu", "--seed", "0", *argv]) == 130
    first, second = capsys.readouterr().err.splitlines()
    assert expected in first, first
    assert ("hours" in first) == (argv == [])
    assert "nothing to resume" in second


def test_warnings_of_a_trainers_command_are_one_line_each(tmp_path, make_run, capsys):
    """Short recordings make the analysis warn ('short' fits); the command prints each warning as
    one 'trainers analyze: warning: ...' line, not Python's file:line form."""
    from trainers.cli import main

    run = make_run(tmp_path / "r", Ns=(2, 3), units=10)
    assert main(["analyze", str(run), "--steps", "40", "--trials", "2", "--burn-in", "20", "--fit-lag", "10",
                 "--serial", "-q"]) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "warning" in line.lower()]
    assert lines and all(line.startswith("trainers analyze: warning: ") for line in lines), err
    assert "Warning:" not in err and ".py:" not in err
