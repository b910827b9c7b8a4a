"""Command line: info, timescales, demo, and errors reported without a traceback; the commands
on run directories are trainers'."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
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


@pytest.fixture
def nan_recording(tmp_path):
    """AR(1) units (tau 3, 5, 8; 2 x 20000 steps) with one NaN sample in unit 1, trial 0."""
    from processes import ar1

    x = ar1(np.random.default_rng(0), [3.0, 5.0, 8.0], 2, 20_000)
    x[0, 10, 1] = np.nan
    path = tmp_path / "nan.nc"
    dt.save_recording(dt.from_array(x), path)
    return path


def test_timescales_flags_a_nonfinite_unit_and_carries_on(nan_recording, tmp_path, capsys):
    out = tmp_path / "res.nc"
    assert main(["timescales", str(nan_recording), "-o", str(out)]) == 0
    captured = capsys.readouterr()
    warned = [line for line in captured.err.splitlines() if "warning:" in line]
    assert warned == ["dynatools timescales: warning: the activity contains NaN or inf values (in unit [1], "
                      "trial [0]); their timescales are NaN with status 'nonfinite' for those units, the other "
                      "units are unaffected. Remove or interpolate them (e.g. da.interpolate_na('time')) to "
                      "analyse them."]
    assert "Traceback" not in captured.err and "status: 1 nonfinite" in captured.out
    import xarray as xr

    res = xr.load_dataset(out)
    assert res.status.values[1] == "nonfinite" and np.isnan(res.tau_net.values[1])
    np.testing.assert_allclose(res.tau_net.values[[0, 2]], [3.0, 8.0], rtol=0.1)      # the true taus


def test_timescales_errors_raise_stops_with_one_line_naming_the_unit(nan_recording, tmp_path, capsys):
    out = tmp_path / "res.nc"
    assert main(["timescales", str(nan_recording), "-o", str(out), "--errors", "raise", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error: the activity contains NaN or inf values (in unit [1], trial [0])" in err
    assert "pass --errors ignore" in err and not out.exists()


def test_timescales_dtype_and_short_rule_flags(tmp_path, capsys):
    from processes import ar1

    x = ar1(np.random.default_rng(1), [2.0, 40.0], 2, 1500)          # T / tau = 750 and 37.5
    for name, data in (("ref", x.astype(np.float64)), ("tiny", (x * np.float32(1e-26)).astype(np.float32))):
        dt.save_recording(dt.from_array(data), tmp_path / f"{name}.nc")
    assert main(["timescales", str(tmp_path / "ref.nc"), "-o", str(tmp_path / "a.nc"), "-q"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("dynatools timescales: warning: 1 unit(s) (unit [1]) have tau_net > 1/50") and "--min-length-ratio 0" in err
    assert main(["timescales", str(tmp_path / "tiny.nc"), "-o", str(tmp_path / "b.nc"), "-q", "--dtype", "float64",
                 "--min-length-ratio", "0"]) == 0
    assert capsys.readouterr().err == ""
    import xarray as xr

    a, b = xr.load_dataset(tmp_path / "a.nc"), xr.load_dataset(tmp_path / "b.nc")
    assert a.status.values.tolist() == ["ok", "short"] and "short" not in b.status.values
    np.testing.assert_allclose(b.tau_net, a.tau_net, rtol=1e-4)


def test_timescales_lag0_flags_equal_the_python_call(tmp_path, capsys):
    """--lag0 / --min-timescale reach fit_timescales: AR(1) of tau 10 plus white observation noise
    (noise fraction 0.5) comes out single with the noise term, as timescales(...) gives it."""
    import xarray as xr
    from processes import ar1

    rng = np.random.default_rng(3)
    x = ar1(rng, [10.0] * 4, 1, 20_000)
    x = x / x.std() + rng.standard_normal(x.shape)                     # equal signal and noise variance
    dt.save_recording(dt.from_array(x), tmp_path / "noisy.nc")
    for mode in ("exclude", "auto"):
        assert main(["timescales", str(tmp_path / "noisy.nc"), "-o", str(tmp_path / f"{mode}.nc"), "-q",
                     "--lag0", mode, "--min-timescale", "1"]) == 0
        res = xr.load_dataset(tmp_path / f"{mode}.nc")
        ref = dt.timescales(dt.open_recording(tmp_path / "noisy.nc"), lag0=mode, min_timescale=1.0)
        assert res.attrs["lag0"] == mode
        np.testing.assert_allclose(res.tau_net, ref.tau_net, rtol=1e-6)
        np.testing.assert_allclose(res.noise_fraction, 0.5, atol=0.05)
        assert (res.selected_model.values == "single").all()
    with pytest.raises(SystemExit) as exc:
        main(["timescales", str(tmp_path / "noisy.nc"), "-o", str(tmp_path / "x.nc"), "--lag0", "never"])
    assert exc.value.code == 2 and "--lag0" in capsys.readouterr().err


@pytest.fixture
def sine_recording(tmp_path):
    """Two trials x 2048 steps of 3 units oscillating at 0.125 cycles/step (dt = 0.01 s), plus noise."""
    t = np.arange(2048)
    x = np.sin(2 * np.pi * 0.125 * t)[None, :, None] + 0.1 * np.random.default_rng(0).standard_normal((2, 2048, 3))
    path = tmp_path / "sine.nc"
    dt.save_recording(dt.from_array(x, dt=0.01, time_units="s"), path)
    return path


def test_spectrum_writes_the_spectra_and_a_figure(sine_recording, tmp_path, capsys):
    out, fig = tmp_path / "spectrum.nc", tmp_path / "spectrum.png"
    assert main(["spectrum", str(sine_recording), "--nperseg", "128", "--out", str(out), "--plot", str(fig)]) == 0
    printed = capsys.readouterr().out
    assert "characteristic frequency (peak of the unit-averaged spectrum): 12.5 Hz" in printed and "wrote" in printed
    import xarray as xr

    res = xr.load_dataset(out)
    assert res.power.dims == ("unit", "frequency") and res.sizes["frequency"] == 65
    assert res.frequency.attrs["units"] == "Hz" and float(res.mean_characteristic_frequency) == 12.5
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_spectrum_names_its_flags_in_errors(sine_recording, tmp_path, capsys):
    assert main(["spectrum", str(sine_recording), "--nperseg", "4096", "-o", str(tmp_path / "s.nc")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error: --nperseg 4096 is longer than the data" in err
    assert not (tmp_path / "s.nc").exists()
    assert main(["spectrum", str(sine_recording), "--var", "input"]) == 2
    assert "no variable 'input'" in capsys.readouterr().err


def test_spectrum_of_an_ensemble_period(tmp_path, capsys):
    """--period cuts the trials to the delay (padded at the end); each member gets its spectra and
    the Welch segments are those of the valid parts (9 + 6 + 8 at nperseg 64)."""
    lengths = np.array([400, 300, 350])
    period = np.full((3, 400), "pad", dtype="<U8")
    for i, n in enumerate(lengths):
        period[i, :50], period[i, 50:n] = "fixation", "delay"
    x = np.random.default_rng(0).standard_normal((2, 3, 400, 4))
    ens = dt.from_array(x, dt=0.01, time_units="s", dims=("member", "trial", "time", "unit"), trial_length=lengths,
                        period=period)
    dt.save_recording(ens, tmp_path / "ens.nc")
    out, fig = tmp_path / "s.nc", tmp_path / "s.png"
    assert main(["spectrum", str(tmp_path / "ens.nc"), "--period", "delay", "--nperseg", "64", "-o", str(out),
                 "--plot", str(fig), "-q"]) == 0
    import xarray as xr

    res = xr.load_dataset(out)
    assert res.characteristic_frequency.dims == ("member", "unit") and res.attrs["n_segments"] == 23
    assert res.attrs["selected_period"] == "delay" and fig.stat().st_size > 10_000
    assert main(["spectrum", str(tmp_path / "ens.nc"), "--period", "delay", "--nperseg", "300"]) == 2
    assert "shortest trial has 250 valid samples" in capsys.readouterr().err
