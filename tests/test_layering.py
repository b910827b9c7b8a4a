"""One-way layering: dynatools never imports trainers, at import time or at call time.

A static check reads every module of dynatools for imports of trainers; a subprocess in which
trainers cannot be imported imports every dynatools module, runs every dynatools command and calls
every public function of ``dynatools.__all__``.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import dynatools

PACKAGE = Path(dynatools.__file__).parent


def _imports_of_trainers(path: Path) -> list[str]:
    """``line: statement`` of every import of trainers in one file, wherever it is (module level,
    inside functions, ``importlib.import_module("trainers...")``, ``__import__``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []

    def is_trainers(name: str | None) -> bool:
        return bool(name) and (name == "trainers" or name.startswith("trainers."))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [f"{node.lineno}: import {a.name}" for a in node.names if is_trainers(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and is_trainers(node.module):
            found.append(f"{node.lineno}: from {node.module} import ...")
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("import_module", "__import__") and is_trainers(str(node.args[0].value)):
                found.append(f"{node.lineno}: {name}({node.args[0].value!r})")
    return found


def test_no_dynatools_module_imports_trainers():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 10
    offending = {str(p.relative_to(PACKAGE.parent)): hits for p in files if (hits := _imports_of_trainers(p))}
    assert offending == {}


@pytest.mark.parametrize("source, expected", [
    ("import trainers", 1),
    ("def f():\n    from trainers.engine import train\n", 1),
    ("import importlib\nimportlib.import_module('trainers.rundir')", 1),
    ("from . import trainers_like\nimport trainersx\nfrom dynatools import utils", 0),
])
def test_the_static_check_finds_imports_anywhere(tmp_path, source, expected):
    path = tmp_path / "m.py"
    path.write_text(source)
    assert len(_imports_of_trainers(path)) == expected


#: Run in a fresh interpreter in which ``import trainers`` fails. Prints a JSON report.
SCRIPT = r'''
import importlib, importlib.abc, json, pkgutil, sys, warnings
from pathlib import Path


class _NoTrainers(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "trainers" or name.startswith("trainers."):
            raise ImportError(f"dynatools imported {name!r}: dynatools must never import trainers")
        return None


sys.meta_path.insert(0, _NoTrainers())
for name in [m for m in sys.modules if m == "trainers" or m.startswith("trainers.")]:
    del sys.modules[name]

import matplotlib
matplotlib.use("Agg")
import numpy as np
import torch

import dynatools as dt
from dynatools import cli

tmp = Path(sys.argv[1])
report = {"modules": [], "commands": {}, "called": []}

# every submodule
for info in pkgutil.walk_packages(dt.__path__, "dynatools."):
    importlib.import_module(info.name)
    report["modules"].append(info.name)

# every command of the dynatools CLI
demo = str(dt.demo_path())
for argv in (["info", demo], ["timescales", demo, "-o", str(tmp / "ts.nc"), "--max-lag", "40", "-q"],
             ["spectrum", demo, "--nperseg", "128", "-q", "-o", str(tmp / "sp.nc")],
             ["demo", "-o", str(tmp / "demo")]):
    report["commands"][argv[0]] = cli.main(argv)
report["subcommands"] = sorted(cli.build_parser()._subparsers._group_actions[0].choices)

# every public function, on the demo recording, tiny arrays and tiny torch maps
rec = dt.open_recording(demo).isel(unit=slice(0, 6), time=slice(0, 2000)).load()
small = dt.from_array(np.random.default_rng(0).standard_normal((2, 300, 4)),
                      W_rec=np.random.default_rng(1).standard_normal((4, 4)), tau=np.arange(1.0, 5.0))
W = np.array([[0.0, 2.0, -1.0], [1.0, 0.0, -1.0], [-3.0, -1.0, 0.0]])
A = torch.diag(torch.tensor([0.9, 0.5, 0.2], dtype=torch.float64))
Q = torch.diag(torch.arange(1.0, 7.0, dtype=torch.float64))


__TINY__


def score(model):
    h = model(torch.ones(2, 4, 3, dtype=torch.float64))
    return [0.9 - 0.01 * float(torch.tanh(h[0, -1].abs().sum())), 0.85]


net = Tiny()
ts = dt.timescales(rec, fit_lag=10, max_lag=20)
path = tmp / "small.nc"
calls = {
    "SCHEMA": lambda: dt.SCHEMA,
    "__version__": lambda: dt.__version__,
    "RecordingError": lambda: dt.RecordingError("x"),
    "from_array": lambda: dt.from_array(np.ones((2, 5, 3))),
    "validate": lambda: dt.validate(small),
    "save_recording": lambda: dt.save_recording(small, tmp / "saved.nc"),
    "open_recording": lambda: dt.open_recording(dt.save_recording(small, path)).load(),
    "RecordingWriter": lambda: _write(tmp / "big.nc"),
    "demo_path": dt.demo_path,
    "trial_lengths": lambda: dt.trial_lengths(dt.from_array(np.ones((2, 5, 3)), trial_length=[3, 5])),
    "select_period": lambda: dt.select_period(dt.from_array(np.ones((1, 3, 2)), period=["a", "b", "b"]), "b"),
    "autocorrelation": lambda: dt.autocorrelation(rec, max_lag=10),
    "fit_timescales": lambda: dt.fit_timescales(dt.autocorrelation(rec, max_lag=20), fit_lag=10),
    "timescales": lambda: ts,
    "pca_dimensionality": lambda: dt.pca_dimensionality(rec),
    "participation_ratio": lambda: dt.participation_ratio(rec),
    "activity_nmse": lambda: dt.activity_nmse(small, small.activity + 0.1),
    "power_spectrum": lambda: dt.power_spectrum(rec, nperseg=64),
    "fixed_points": lambda: dt.fixed_points(lambda h, u: h @ A.T + 1.0, torch.ones(3, 3, dtype=torch.float64),
                                            device="cpu"),
    "weight_balance": lambda: dt.weight_balance(W),
    "weight_change": lambda: dt.weight_change(W, 2 * W),
    "weight_conservation": lambda: dt.weight_conservation([W, 2 * W + 1]),
    "weight_spectrum": lambda: dt.weight_spectrum(W),
    "analyze_recording": lambda: dt.analyze_recording(small, fit_lag=10),
    "reliable_tau_net": lambda: dt.reliable_tau_net(ts),
    "lyapunov_spectrum": lambda: _check_lyapunov(dt.lyapunov_spectrum(lambda h, u: h @ A.T,
                                                                      torch.ones(2, 3, dtype=torch.float64),
                                                                      steps=20, device="cpu")),
    "hessian_eigenvalues": lambda: dt.hessian_eigenvalues(lambda x: 0.5 * x @ Q @ x,
                                                          torch.zeros(6, dtype=torch.float64), k=2),
    "hessian_density": lambda: dt.hessian_density(lambda x: 0.5 * x @ Q @ x, torch.zeros(6, dtype=torch.float64),
                                                  n_probes=2, lanczos_steps=5),
    "hessian_trace": lambda: dt.hessian_trace(lambda x: 0.5 * x @ Q @ x, torch.zeros(6, dtype=torch.float64),
                                              n_samples=4),
    "gradient_norms": lambda: dt.gradient_norms(lambda h, u: 0.5 * h, 3, h0=torch.ones(1, 2, dtype=torch.float64)),
    "relative_accuracy": lambda: dt.relative_accuracy(0.8, 0.9),
    "ablate": lambda: dt.ablate(net, [0]),
    "ablation_by_tau": lambda: dt.ablation_by_tau(net, score, n=1, progress=False),
    "perturb": lambda: dt.perturb(net, [0.0, 0.1], score, target="W_rec", repeats=2, progress=False),
}


def _write(p):
    with dt.RecordingWriter(p, n_trials=1, n_time=2, n_units=2) as w:
        w.write("activity", 0, np.ones((1, 2, 2)))
    return dt.open_recording(p)


def _check_lyapunov(res):
    # a linear map: the exponents sum to log|det A| (exactly, at any length), largest first
    np.testing.assert_allclose(res.lyapunov.values.sum(), np.log(0.9 * 0.5 * 0.2), rtol=1e-10)
    assert np.all(np.diff(res.lyapunov.values) <= 0)
    return res


report["public"] = sorted(dt.__all__)
report["missing"] = sorted(set(dt.__all__) - set(calls))
with warnings.catch_warnings():
    warnings.simplefilter("error")              # a dynatools warning would be an error in the tests
    warnings.filterwarnings("ignore", module="(?!dynatools)")
    for name in sorted(set(calls) & set(dt.__all__)):
        calls[name]()
        report["called"].append(name)
report["trainers_loaded"] = sorted(m for m in sys.modules if m == "trainers" or m.startswith("trainers."))
print("REPORT " + json.dumps(report))
'''


def test_every_command_and_public_function_works_without_trainers(tmp_path):
    import inspect

    from tiny_model import Tiny

    script = SCRIPT.replace("__TINY__", inspect.getsource(Tiny))
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("REPORT "))
    report = json.loads(line[len("REPORT "):])
    assert report["missing"] == []                  # a new public name needs a call above
    assert report["called"] == sorted(dynatools.__all__)
    expected_modules = {f"dynatools.{p.stem}" for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert expected_modules <= set(report["modules"])
    assert report["commands"] == {"info": 0, "timescales": 0, "spectrum": 0, "demo": 0}
    assert report["subcommands"] == ["demo", "info", "spectrum", "timescales"]
    assert report["trainers_loaded"] == []
    assert (tmp_path / "ts.nc").is_file() and (tmp_path / "demo" / "demo_timescales.png").is_file()


def test_the_blocker_does_block():
    code = SCRIPT.split("import matplotlib", 1)[0] + "import trainers\n"
    proc = subprocess.run([sys.executable, "-c", code, "."], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "must never import trainers" in proc.stderr


def test_trainers_uses_only_public_dynatools_modules():
    """trainers imports dynatools only through public modules (dynatools.utils and the analyses),
    never a private ``dynatools._*`` one."""
    import ast

    root = Path(__file__).resolve().parents[1] / "trainers"
    private = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            private += [f"{path.name}: {n}" for n in names
                        if n.startswith("dynatools.") and any(part.startswith("_") for part in n.split(".")[1:])]
    assert not private, private
