"""Packaging (issue 19, docs/packaging.md): the shipped data files are package data found through
``importlib.resources`` whatever the install mode, ``DYNATOOLS_DATASETS`` overrides them, the built
wheel and sdist contain them and no tests, benchmarks or docs, and the version has one source.

The ground truth here is the file system and the archive's own file list (``zipfile``/``tarfile``),
not our lookup code. The wheel is built from a copy of the sources with setuptools' PEP 517 backend
in a subprocess (about a second, no network, nothing written into the checkout).
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

import dynatools as dt
from dynatools.data import SHIPPED_FILES, shipped_path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "dynatools" / "data"


def test_every_data_file_of_the_folder_is_listed_and_resolves_through_the_package_resources(monkeypatch):
    monkeypatch.delenv("DYNATOOLS_DATASETS", raising=False)
    on_disk = sorted(p.name for p in DATA.iterdir() if p.suffix in (".nc", ".npz"))
    assert on_disk == sorted(SHIPPED_FILES)
    for name in SHIPPED_FILES:
        resource = resources.files("dynatools.data") / name
        assert resource.is_file(), name
        assert shipped_path(name) == Path(str(resource))
        assert shipped_path(name).read_bytes() == (DATA / name).read_bytes()
    assert dt.demo_path() == shipped_path("demo_timescales.nc")


def test_the_regenerating_scripts_stay_in_datasets_and_write_into_the_package():
    for script, name in (("make_demo_recording.py", "demo_timescales.nc"), ("make_digits.py", "digits_8x8.npz")):
        text = (ROOT / "datasets" / script).read_text()
        assert f'"dynatools" / "data" / "{name}"' in text, script
    assert not (ROOT / "datasets" / "__init__.py").exists()      # not an importable package (DESIGN.md)


def test_DYNATOOLS_DATASETS_overrides_the_shipped_files(tmp_path, monkeypatch):
    shutil.copy(dt.demo_path(), tmp_path / "demo_timescales.nc")
    images = np.full((4, 64), 16, dtype=np.uint8)
    labels = np.array([0, 1, 2, 3], dtype=np.uint8)
    np.savez(tmp_path / "digits_8x8.npz", images=images, labels=labels)
    monkeypatch.setenv("DYNATOOLS_DATASETS", str(tmp_path))
    assert dt.demo_path() == tmp_path / "demo_timescales.nc"
    assert shipped_path("digits_8x8.npz") == tmp_path / "digits_8x8.npz"

    from trainers.tasks.sequence import _digits_arrays

    x_tr, y_tr, x_te, y_te = _digits_arrays()
    assert len(y_tr) + len(y_te) == 4                           # the override's four images, not 1797
    assert np.all(np.concatenate([x_tr, x_te]) == 1.0)
    assert sorted(np.concatenate([y_tr, y_te]).tolist()) == [0, 1, 2, 3]


def test_a_file_missing_from_the_override_falls_back_to_the_shipped_copy(tmp_path, monkeypatch):
    monkeypatch.setenv("DYNATOOLS_DATASETS", str(tmp_path))   # an empty folder
    assert dt.demo_path() == Path(str(resources.files("dynatools.data") / "demo_timescales.nc"))


def test_a_missing_file_names_both_places_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("DYNATOOLS_DATASETS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"neither DYNATOOLS_DATASETS=.* nor the installed package "
                                                r"folder .*reinstall dynatools"):
        shipped_path("no_such_file.nc")


def test_both_commands_print_the_one_version(capsys):
    from dynatools.cli import main as dynatools_main
    from trainers.cli import main as trainers_main

    for main, prog in ((dynatools_main, "dynatools"), (trainers_main, "trainers")):
        with pytest.raises(SystemExit) as exit_:
            main(["--version"])
        assert exit_.value.code == 0
        assert capsys.readouterr().out.strip() == f"{prog} {dt.__version__}"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in pyproject["project"] and "version" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "dynatools.__version__"}


def _build(tmp_path: Path, what: str) -> Path:
    """Build a wheel or an sdist from a copy of the sources with setuptools' PEP 517 backend."""
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "dist")
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    for name in ("dynatools", "trainers", "tests", "benchmarks", "docs", "datasets"):
        if (ROOT / name).is_dir():                               # the last four must stay out of the wheel
            shutil.copytree(ROOT / name, src / name, ignore=ignore)
    out = tmp_path / "dist"
    out.mkdir()
    code = f"import setuptools.build_meta as b; print(b.build_{what}({str(out)!r}))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=src, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0 and "No module named" in proc.stderr:
        pytest.skip(f"setuptools cannot build here: {proc.stderr.splitlines()[-1]}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out / proc.stdout.strip().splitlines()[-1]


def test_the_wheel_holds_the_data_files_and_no_tests_benchmarks_or_docs(tmp_path):
    wheel = _build(tmp_path, "wheel")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        metadata = z.read(f"dynatools-{dt.__version__}.dist-info/METADATA").decode()
        for name in SHIPPED_FILES:
            assert z.read(f"dynatools/data/{name}") == (DATA / name).read_bytes(), name
    tops = {n.split("/")[0] for n in names}
    assert tops == {"dynatools", "trainers", f"dynatools-{dt.__version__}.dist-info"}, tops
    assert not [n for n in names if "/tests/" in n or n.endswith((".png", ".svg"))]
    assert f"\nVersion: {dt.__version__}\n" in metadata and "\nLicense: MIT\n" in metadata
    assert "\nLicense-File: LICENSE\n" in metadata
    assert f"dynatools-{dt.__version__}.dist-info/licenses/LICENSE" in names     # the licence file itself
    assert "# dynatools" in metadata.split("\n\n", 1)[1]         # the README is the long description
    assert wheel.stat().st_size < 6e6                             # docs/packaging.md states the size


def test_the_sdist_holds_the_data_files(tmp_path):
    sdist = _build(tmp_path, "sdist")
    with tarfile.open(sdist) as t:
        names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    assert {f"dynatools/data/{name}" for name in SHIPPED_FILES} <= names
    assert {"README.md", "pyproject.toml", "PKG-INFO"} <= names
