"""Command line: info, timescales, demo, and errors reported without a traceback; the commands
on run directories are trainers'."""

from __future__ import annotations

import subprocess
import sys

import pytest

import dynatools as dt
from dynatools.cli import main


def test_info_describes_the_demo_recording(capsys):
    assert main(["info", str(dt.demo_path())]) == 0
    out = capsys.readouterr().out
    assert "dynatools.recording/1" in out and "(4, 10000, 48)" in out and "true_tau_net" in out


def test_timescales_writes_a_labeled_result(tmp_path, capsys):
    out = tmp_path / "res.nc"
    assert main(["timescales", str(dt.demo_path()), "-o", str(out), "--max-lag", "60"]) == 0
    import xarray as xr

    res = xr.open_dataset(out)
    assert res.tau_net.dims == ("unit",) and res.sizes["unit"] == 48 and res.sizes["lag"] == 61
    assert "wrote" in capsys.readouterr().out


def test_timescales_names_the_cli_flags_in_its_errors(tmp_path, capsys):
    assert main(["timescales", str(dt.demo_path()), "-o", str(tmp_path / "r.nc"), "--max-lag", "10"]) == 2
    err = capsys.readouterr().err
    assert "--max-lag 10 is below --fit-lag 30" in err and not (tmp_path / "r.nc").exists()


def test_demo_writes_a_png(tmp_path, capsys):
    assert main(["demo", "-o", str(tmp_path)]) == 0
    png = tmp_path / "demo_timescales.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert "model selected correctly" in capsys.readouterr().out


def test_errors_are_one_line_messages(tmp_path, capsys):
    bad = tmp_path / "bad.nc"
    bad.write_text("not netcdf")
    assert main(["timescales", str(bad), "-o", str(tmp_path / "o.nc")]) == 2
    err = capsys.readouterr().err
    assert "error: could not read" in err and "Traceback" not in err


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "dynatools.cli", "--help"], capture_output=True, text=True, check=True)
    assert "timescales" in out.stdout and "demo" in out.stdout


def test_import_does_not_load_torch_or_matplotlib():
    code = "import sys, dynatools; print('torch' in sys.modules, 'matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_dynatools_never_imports_trainers():
    code = "import sys, dynatools, dynatools.cli, dynatools.plot; print('trainers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False"]


@pytest.mark.parametrize("command", ["report", "lyapunov", "hessian", "analyze"])
def test_run_directory_commands_belong_to_trainers(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "runs/x", "-o", "out"])
    assert exc.value.code == 2 and "invalid choice" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "trainers analyze | report | lyapunov | hessian" in " ".join(capsys.readouterr().out.split())


def test_output_to_a_directory_is_a_one_line_error(tmp_path, capsys):
    assert main(["timescales", str(dt.demo_path()), "-o", str(tmp_path)]) == 2
    assert "error:" in capsys.readouterr().err
