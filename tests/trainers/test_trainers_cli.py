"""The `trainers` command: train from flags and TOML, resume, record, evaluate, errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import dynatools as dt
from trainers.cli import main

FLAGS = ["--units", "16", "--batch", "16", "--steps-per-epoch", "4", "--eval-batches", "2",
         "--max-epochs", "2", "--n-max", "4", "--device", "cpu", "--seed", "5", "-q"]


def test_train_record_evaluate_resume(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), *FLAGS]) == 0
    assert "stopped (max_epochs) after 2 epoch(s)" in capsys.readouterr().out
    assert main(["evaluate", str(run), "--json", "--batches", "2", "--batch", "8", "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["accuracy"]) == {"2"}
    out = tmp_path / "rec.nc"
    assert main(["record", str(run), "--steps", "200", "--trials", "2", "--burn-in", "10",
                 "--seed", "0", "-o", str(out), "-q", "--device", "cpu"]) == 0
    rec = dt.open_recording(out)
    assert rec.activity.shape == (2, 200, 16)
    assert rec.attrs["curriculum"] == "multi-head" and rec.attrs["config"]["units"] == 16
    assert rec.attrs["train_seed"] == 5
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert rec.attrs["N"] == last["Ns"] and rec.attrs["accuracy"] == last["accuracy"]
    assert main(["resume", str(run), "--max-epochs", "3", "-q"]) == 0
    assert "after 3 epoch(s)" in capsys.readouterr().out


def test_toml_config_and_flag_override(tmp_path):
    cfg = tmp_path / "cfg.toml"
    cfg.write_text('[train]\ntask = "dms"\nunits = 12\nbatch = 8\nsteps_per_epoch = 3\n'
                   'eval_batches = 1\nmax_epochs = 1\nn_max = 3\ndevice = "cpu"\nseed = 1\n')
    assert main(["train", "--config", str(cfg), "--units", "10", "--out", str(tmp_path / "r"), "-q"]) == 0
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    assert saved["task"] == "dms" and saved["units"] == 10 and saved["batch"] == 8


def test_fixed_tau_and_clip_zero_flags(tmp_path):
    assert main(["train", "--out", str(tmp_path / "r"), *FLAGS, "--no-train-tau", "--tau", "1",
                 "--clip", "0"]) == 0
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    assert saved["model_options"]["train_tau"] is False and saved["model_options"]["tau"] == 1.0
    assert saved["clip"] == 0


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--curriculum", "zigzag"], "curriculum='zigzag' is not a valid option"),
        (["train", "--n-start", "1"], "n_start must be >= 2"),
        (["train", "--task", "adding", "--tau", "2"], "'tau' is an option of model 'leaky'"),
        (["train", "--units", "0"], "units must be a positive integer"),
        (["resume", "{tmp}/missing"], "no run to resume"),
        (["record", "{tmp}/missing", "-o", "{tmp}/x.nc"], "not a trainers run directory"),
        (["evaluate", "{tmp}/missing"], "not a trainers run directory"),
    ],
)
def test_errors_are_one_line_messages(tmp_path, capsys, argv, message):
    argv = [a.format(tmp=tmp_path) for a in argv]
    if argv[0] == "train":
        i = FLAGS.index("--n-max")
        flags = FLAGS[:i] + FLAGS[i + 2:] if "--task" in argv else FLAGS   # no N in other tasks
        argv = ["train", "--out", str(tmp_path / "r"), *flags, *argv[1:]]  # later flags win
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_record_unknown_N(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "r"), *FLAGS]) == 0
    assert main(["record", str(tmp_path / "r"), "--N", "9", "-o", str(tmp_path / "x.nc")]) == 2
    assert "no checkpoint for N=9" in capsys.readouterr().err


def test_console_script_help_lists_the_issue_flags():
    out = subprocess.run([sys.executable, "-m", "trainers.cli", "train", "--help"],
                         capture_output=True, text=True, check=True).stdout
    for flag in ("--task", "--model", "--curriculum", "--units", "--batch", "--steps-per-epoch",
                 "--max-epochs", "--n-start", "--n-max", "--device", "--seed", "--out", "--config"):
        assert flag in out


def test_train_a_sequence_task_and_resume_it(tmp_path, capsys):
    """The adding problem through the same verb (train-sequence is gone): the WCRNN and the
    fading-memory paper's settings are the task's defaults; the model's options are flags."""
    run = tmp_path / "adding"
    assert main(["train", "--task", "adding", "--length", "10", "--units", "6", "--steps-per-epoch", "2",
                 "--max-epochs", "1", "--residual", "rotational", "--form", "B", "--gamma", "0.05",
                 "--device", "cpu", "--seed", "0", "--out", str(run), "-q"]) == 0
    out = capsys.readouterr().out
    assert "1 epoch(s) of adding" in out and "minimal performance (0.05) not reached" in out
    saved = json.loads((run / "config.json").read_text())
    assert saved["model"] == "wcrnn" and saved["curriculum"] == "fixed" and saved["momentum"] == 0.9
    assert saved["model_options"]["residual"] == "rotational" and saved["model_options"]["form"] == "B"
    assert main(["resume", str(run), "--max-epochs", "2", "-q"]) == 0
    assert "2 epoch(s) of adding" in capsys.readouterr().out
    assert main(["evaluate", str(run), "--json", "--device", "cpu"]) == 0
    assert set(json.loads(capsys.readouterr().out)["rms"]) == {"test"}
    assert main(["record", str(run), "--steps", "30", "--trials", "2", "--burn-in", "0",
                 "-o", str(tmp_path / "x.nc"), "-q", "--device", "cpu"]) == 0
    assert dt.open_recording(tmp_path / "x.nc").activity.shape == (2, 30, 6)
    assert main(["record", str(run), "--p", "0.3", "-o", str(tmp_path / "y.nc"), "--device", "cpu"]) == 2
    assert "leave p unset" in capsys.readouterr().err


def test_list_shows_every_registered_class_and_its_options(capsys):
    import trainers

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for registry in (trainers.MODELS, trainers.TASKS, trainers.CURRICULA):
        for name in registry:
            assert f"  {name} " in out
    assert "negative_slope" in out and "heads_per_step" in out


def test_record_with_per_trial_probabilities(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "r"), *FLAGS]) == 0
    out = tmp_path / "rec.nc"
    assert main(["record", str(tmp_path / "r"), "--steps", "50", "--trials", "3", "--burn-in", "5",
                 "--p", "uniform", "--seed", "0", "-o", str(out), "-q", "--device", "cpu"]) == 0
    rec = dt.open_recording(out)
    assert rec.attrs["input_p"] == "uniform" and len(set(rec.input_p.values.tolist())) == 3
    assert main(["record", str(tmp_path / "r"), "--p", "half", "-o", str(out), "--device", "cpu"]) == 2
    assert "--p must be a probability in [0, 1] or 'uniform'" in capsys.readouterr().err
