"""``trainers modular timescales | generalise | pareto`` (004 Figs. 4, 2c, 2b): each writes the
file that the Python function gives with the same settings, prints its table, and refuses bad
arguments with one line and exit status 2 before any long work.

The runs are tiny and their curriculum rule is patched (N = 2, 3, 4 "solved" after epochs 1, 2, 3,
then nothing more up to epoch 6), so that solved checkpoints exist after a second of training, as
in test_generalisation.py."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import trainers
from trainers.cli import main
from trainers.curricula import Growth, MultiHead

COMMON = {"task": "parity", "batch": 16, "steps_per_epoch": 20, "eval_batches": 2, "max_epochs": 6, "n_max": 5,
          "seed": 0, "device": "cpu"}
#: The re-training settings of the generalise tests (flags and keywords).
RETRAIN = {"steps_per_epoch": 3, "batch": 16, "eval_batches": 2}
RETRAIN_FLAGS = ["--steps-per-epoch", "3", "--batch", "16", "--eval-batches", "2", "--device", "cpu"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A growth run (modules of 4 units) and a multi-head leaky run (8 units) that "solved" N = 2, 3,
    4 at epochs 1, 2, 3 and stopped at max_epochs (6)."""
    root = tmp_path_factory.mktemp("modular-cli")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Growth, "solved", lambda self, acc: len(acc) < 4)
        mp.setattr(MultiHead, "solved", lambda self, acc: len(acc) < 4)
        trainers.train({**COMMON, "model": "modular", "curriculum": "growth", "units": 4, "module_size": 4},
                       root / "modular", progress=False)
        trainers.train({**COMMON, "model": "leaky", "curriculum": "multi-head", "units": 8}, root / "leaky",
                       progress=False)
    for name in ("modular", "leaky"):
        assert trainers.RunDir(root / name).solved() == [2, 3, 4]
    return {"modular": root / "modular", "leaky": root / "leaky"}


def _assert_same(written: xr.Dataset, direct: xr.Dataset, variables=None) -> None:
    """Every variable (or those named) and coordinate of ``direct`` equal in ``written``."""
    for name in variables or list(direct.data_vars):
        np.testing.assert_array_equal(written[name].values, direct[name].values, err_msg=name)
    for name in direct.coords:
        np.testing.assert_array_equal(written[name].values, direct[name].values, err_msg=name)


def _code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:                                   # argparse's usage errors
        return int(exc.code)


# ------------------------------------------------------------------------------------ --help
@pytest.mark.parametrize("name, words", [("timescales", "Fig. 4"), ("generalise", "Fig. 2c"),
                                         ("generalize", "Fig. 2c"), ("pareto", "Fig. 2b")])
def test_help(name, words, capsys):
    assert _code(["modular", name, "--help"]) == 0
    out = capsys.readouterr().out
    usage = f"trainers modular {name.replace('generalize', 'generalise')}"    # the alias shows its first name
    assert usage in out and "--threads" in out and "--plot" in out
    assert words in " ".join(out.split())
    assert _code(["modular", "--help"]) == 0
    top = capsys.readouterr().out
    assert all(n in top for n in ("timescales", "generalise", "pareto")), top


# ------------------------------------------------------------------------------------ timescales
def test_timescales_writes_what_module_timescales_gives(runs, tmp_path, capsys):
    from trainers.modular_timescales import module_timescales

    pytest.importorskip("matplotlib")
    out, fig = tmp_path / "t.nc", tmp_path / "fig4.png"
    settings = {"steps": 2000, "burn_in": 50, "fit_lag": 10, "seed": 3}
    argv = ["modular", "timescales", str(runs["modular"]), "--steps", "2000", "--burn-in", "50", "--fit-lag", "10",
            "--seed", "3", "--N", "2", "3", "-o", str(out), "--plot", str(fig), "--threads", "1"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    ds = xr.load_dataset(out)
    direct = module_timescales(runs["modular"], Ns=[2, 3], refresh=True, progress=False, **settings)
    _assert_same(ds, direct)
    assert ds.attrs["params"] == direct.attrs["params"] and ds.attrs["label"] == "modular"
    assert ds["solving_module"].values.tolist() == [0, 1]
    # the table: one row per N with the module counted from 1 and the two means
    rows = [line.split() for line in printed.splitlines() if line.split()[:1] in (["2"], ["3"])]
    assert [r[:3] for r in rows] == [["2", "1", "4"], ["3", "2", "4"]]
    for r, i in zip(rows, range(2)):
        assert float(r[3]) == pytest.approx(float(direct["tau_mean"][i]), abs=6e-4)
        assert float(r[4]) == pytest.approx(float(direct["tau_net_mean"][i]), abs=6e-4)
    assert f"wrote {out}, {fig}" in printed and fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_timescales_of_a_non_modular_run_average_all_units(runs, tmp_path, capsys):
    from trainers.modular_timescales import module_timescales

    out = tmp_path / "l.nc"
    assert main(["modular", "timescales", str(runs["leaky"]), "--steps", "2000", "--burn-in", "50", "--N", "4",
                 "-o", str(out), "-q"]) == 0
    assert capsys.readouterr().out == ""
    ds = xr.load_dataset(out)
    _assert_same(ds, module_timescales(runs["leaky"], steps=2000, burn_in=50, Ns=[4], progress=False))
    assert ds.attrs["units"] == "all units" and int(ds["n_units"][0]) == 8


# ------------------------------------------------------------------------------------ generalise
def test_generalise_writes_what_generalisation_gives(runs, tmp_path, capsys):
    from trainers.generalisation import generalisation

    pytest.importorskip("matplotlib")
    out, fig = tmp_path / "g.nc", tmp_path / "fig2c.svg"
    assert main(["modular", "generalise", str(runs["modular"]), "--N", "3", "--K", "1", "2", "--epochs", "1",
                 *RETRAIN_FLAGS, "--seed", "2", "-o", str(out), "--plot", str(fig)]) == 0
    printed = capsys.readouterr().out
    ds = xr.load_dataset(out)
    direct = generalisation(runs["modular"], 3, [1, 2], epochs=1, seed=2, device="cpu", **RETRAIN)
    _assert_same(ds, direct)
    assert ds.attrs["train"] == "module" and ds.attrs["settings"] == direct.attrs["settings"]
    assert ds.attrs["batch"] == 16 and ds.attrs["test_batches"] == 2
    rows = [line.split() for line in printed.splitlines() if line.split()[:2] in (["1", "4"], ["2", "5"])]
    assert len(rows) == 2
    for r, i in zip(rows, range(2)):
        assert float(r[3]) == pytest.approx(float(direct["accuracy"][i]), abs=0.051)
        assert int(r[4]) == int(direct["epochs_trained"][i])
    assert f"wrote {out}, {fig}" in printed and "<svg" in fig.read_text()


def test_generalize_alias_and_a_readout_of_a_non_modular_run(runs, tmp_path, capsys):
    from trainers.generalisation import generalisation

    out = tmp_path / "r.nc"
    assert main(["modular", "generalize", str(runs["leaky"]), "--N", "4", "--K", "1", "--train", "readout",
                 "--batch", "16", "--test-batches", "2", "-o", str(out), "-q", "--device", "cpu"]) == 0
    assert capsys.readouterr().out == ""
    ds = xr.load_dataset(out)
    direct = generalisation(runs["leaky"], 4, [1], train="readout", batch=16, test_batches=2)
    _assert_same(ds, direct, ["accuracy", "epochs_trained"])
    assert ds.attrs["train"] == "readout" and ds.attrs["architecture"] == "non-modular"


# ------------------------------------------------------------------------------------ pareto
def test_pareto_writes_the_table_and_marks_the_front(runs, tmp_path, capsys):
    from trainers.pareto import pareto_front, pareto_table

    pytest.importorskip("matplotlib")
    out, fig = tmp_path / "p.nc", tmp_path / "fig2b.pdf"
    paths = [str(runs["modular"]), str(runs["leaky"])]
    assert main(["modular", "pareto", *paths, "--epochs", "2", "-o", str(out), "--plot", str(fig)]) == 0
    printed = capsys.readouterr().out
    ds = xr.load_dataset(out)
    direct = pareto_table(paths, 2)
    _assert_same(ds, direct)
    assert ds["front"].values.tolist() == [r in set(pareto_front(direct)["run"].values) for r in direct["run"].values]
    assert ds["n_solved"].values.tolist() == [3, 3]           # N = 2, 3 solved by epoch 2 (the patched rule)
    assert ds.attrs["epochs"] == 2 and fig.read_bytes()[:4] == b"%PDF"
    rows = {line.split()[1]: line for line in printed.splitlines() if line[:1] in "* " and "modular" in line}
    assert set(rows) == {"modular", "leaky"}
    for name, i in (("modular", 0), ("leaky", 1)):
        cells = rows[name].split()
        assert cells[0] == "*"                                 # one run per architecture: each on its front
        assert cells[2] == str(direct["architecture"].values[i])
        assert [int(c) for c in cells[3:6]] == [int(direct[v][i]) for v in ("size", "n_solved", "parameters")]
        assert "max_epochs after 6 epoch(s)" in rows[name]
    # a longer limit than the runs trained: a lower bound, said in the table
    assert main(["modular", "pareto", *paths, "--epochs", "60", "-q"]) == 0
    assert capsys.readouterr().out == ""
    assert main(["modular", "pareto", str(runs["leaky"]), "--epochs", "60"]) == 0
    assert "N solved is a lower bound" in capsys.readouterr().out


# ------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("argv, message", [
    (["timescales", "{modular}", "--steps", "0"], "--steps must be an integer >= 1"),
    (["timescales", "{modular}", "--burn-in", "-1"], "--burn-in must be an integer >= 0"),
    (["timescales", "{modular}", "--plot", "{tmp}/fig.txt"], "the suffix sets the format"),
    (["timescales", "{modular}", "-o", "{tmp}/missing/t.nc"], "does not exist; create it first"),
    (["timescales", "{modular}", "--N", "9"], "not solved; {modular} has solved-N checkpoints for [2, 3, 4]. "
                                              "Give some of those (or leave --N out for all)."),
    (["timescales", "{modular}", "--steps", "30"], "--fit-lag 30 needs recordings of more than 30 steps"),
    (["timescales", "{tmp}/none"], "not a trainers run directory"),
    (["generalise", "{modular}", "--N", "3", "--K", "0"], "--K must be an integer >= 1"),
    (["generalise", "{modular}", "--N", "3", "--K", "1", "1"], "give each K once"),
    (["generalise", "{modular}", "--N", "3", "--epochs", "-1"], "--epochs must be an integer >= 0"),
    (["generalise", "{modular}", "--N", "3", "--batch", "0"], "--batch must be an integer >= 1"),
    (["generalise", "{modular}", "--N", "3", "--plot", "{tmp}/f.jpg"], "the suffix sets the format"),
    (["generalise", "{leaky}", "--N", "3", "--train", "module"], "--train 'module' is not a valid option"),
    (["generalise", "{leaky}", "--N", "3", "--fresh-head"], "--fresh-head is for modular runs"),
    (["generalise", "{modular}", "--N", "9"], "no checkpoint for N=9; solved: [2, 3, 4]"),
    (["pareto", "{tmp}/none"], "no such run directory"),
    (["pareto", "{modular}", "--epochs", "0"], "--epochs must be an integer >= 1"),
    (["pareto", "{modular}", "--strict"], "stopped before 60 epochs without finishing their curriculum; "
                                            "resume them (trainers resume RUN --max-epochs 60) or leave out --strict."),
    (["pareto", "{modular}", "-o", "{tmp}/missing/p.nc"], "does not exist; create it first"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_errors_are_one_line_and_exit_2(runs, tmp_path, capsys, argv, message):
    names = {"modular": runs["modular"], "leaky": runs["leaky"], "tmp": tmp_path}
    device = ["--device", "cpu"] if argv[0] == "generalise" else []       # the command that takes one
    assert main(["modular", *[a.format(**names) for a in argv], *device, "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"trainers modular {argv[0]}: error: ") and message.format(**names) in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not list(tmp_path.iterdir())                        # nothing written


def test_usage_errors(runs, capsys):
    for argv, message in ((["generalise", str(runs["modular"])], "--N"),
                          (["generalise", str(runs["modular"]), "--N", "3", "--train", "all"], "invalid choice"),
                          (["pareto"], "RUN_DIR"),
                          (["timescales", str(runs["modular"]), "--steps", "many"], "invalid int value")):
        assert _code(["modular", *argv]) == 2
        assert message in capsys.readouterr().err
