"""Recording schema: construction, validation, atomic save and exact round trip."""

from __future__ import annotations

import os
from contextlib import nullcontext as does_not_raise

import numpy as np
import pytest
import xarray as xr

import dynatools as dt
from dynatools.recording import RecordingError


def _rec(**kw):
    rng = np.random.default_rng(0)
    return dt.from_array(rng.standard_normal((2, 50, 4)).astype(np.float32), **kw)


def test_from_array_builds_schema_dims_coords_and_attrs():
    rec = _rec(dt=0.5, time_units="s", tau=[1.0, 2, 3, 4], module=[0, 0, 1, 1], model="leaky", N=[2, 3])
    assert rec.activity.dims == ("trial", "time", "unit")
    assert rec.attrs["schema"] == "dynatools.recording/1"
    np.testing.assert_allclose(rec.time.values, np.arange(50) * 0.5)
    assert rec.time.attrs["units"] == "s"
    assert rec.tau.dims == ("unit",) and rec.module.dims == ("unit",)
    assert rec.attrs["model"] == "leaky" and rec.attrs["N"] == [2, 3]
    assert rec.attrs["software"].startswith("dynatools ")


@pytest.mark.parametrize("dims", [("time", "unit"), ("unit", "time"), ("unit", "trial", "time")])
def test_from_array_accepts_any_axis_order(dims):
    shape = {"trial": 2, "time": 30, "unit": 3}
    arr = np.arange(np.prod([shape[d] for d in dims]), dtype=float).reshape([shape[d] for d in dims])
    rec = dt.from_array(arr, dims=dims)
    expected = xr.DataArray(arr, dims=dims)
    if "trial" not in dims:
        expected = expected.expand_dims("trial")
    np.testing.assert_array_equal(rec.activity.values, expected.transpose("trial", "time", "unit").values)


def test_from_array_optional_variables_get_schema_dims():
    rec = _rec(W_rec=np.eye(4), W_in=np.ones((4, 1)), bias=np.zeros(4), input=np.zeros((2, 50, 1)),
               output=np.zeros((2, 50, 3)), W_out=np.zeros((3, 2, 4)))
    assert rec.W_rec.dims == ("unit", "unit_pre")
    assert rec.output.dims == ("trial", "time", "head")
    assert rec.W_out.dims == ("head", "class", "unit")


@pytest.mark.parametrize(
    "kwargs, expectation",
    [
        ({"dims": ("trial", "time", "neuron")}, pytest.raises(ValueError, match="permutation")),
        ({"dims": ("trial", "time")}, pytest.raises(ValueError, match="permutation|axes")),
        ({"tau": [1.0, 2.0]}, pytest.raises(ValueError, match="per-unit coordinate 'tau'.*\\(4,\\)")),
        ({"W_rec": np.zeros(4)}, pytest.raises(ValueError, match="variable 'W_rec'")),
        ({"dt": -1.0}, pytest.raises(ValueError, match="dt must be a positive")),
        ({"dt": "abc"}, pytest.raises(TypeError, match=r"dt must be a positive finite number .*found 'abc' of type "
                                                       r"str\. Pass a number, e\.g\. dt=1\.0")),
        ({"dt": None}, pytest.raises(TypeError, match="dt must be a positive finite number .*found None")),
        ({"dt": True}, pytest.raises(TypeError, match="dt must be .*found True of type bool")),
        ({"dt": np.array([1.0, 2.0])}, pytest.raises(TypeError, match="dt must be .*ndarray")),
        ({"dt": np.float32(0.5)}, does_not_raise()),
        ({"time_units": "ms"}, pytest.raises(ValueError, match="time_units.*'step', 's'")),
        ({"weights": np.zeros((4, 4))}, pytest.raises(TypeError, match="assign_coords")),
        ({"config": {"a": 1}}, does_not_raise()),
    ],
)
def test_from_array_errors(kwargs, expectation):
    with expectation:
        _rec(**kwargs)


@pytest.mark.parametrize(
    "activity, expectation",
    [
        (np.zeros((2, 10, 3), dtype=np.int64), pytest.raises(TypeError, match="integer.*astype")),
        (np.zeros((2, 0, 3)), pytest.raises(ValueError, match="empty")),
        (np.zeros((2, 10, 3), dtype=complex), pytest.raises(TypeError, match="float32 or float64")),
    ],
)
def test_from_array_rejects_bad_data(activity, expectation):
    with expectation:
        dt.from_array(activity)


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda ds: ds.drop_vars("activity"), "variable 'activity' is missing"),
        (lambda ds: ds.assign(activity=ds.activity.transpose("unit", "time", "trial")), "dims \\('unit', 'time', 'trial'\\); expected \\('trial', 'time', 'unit'\\)"),
        (lambda ds: ds.assign_attrs(schema="other/1"), "not a dynatools recording"),
        (lambda ds: ds.assign_attrs(schema="dynatools.recording/2"), "schema version '2'"),
        (lambda ds: ds.assign(activity=ds.activity.astype(int)), "dtype int"),
        (lambda ds: ds.assign_coords(unit=ds.unit.astype(float)), "integer unit ids"),
        (lambda ds: ds.assign_coords(tau=(("unit", "unit_pre"), np.zeros((4, 4)))), "coordinate 'tau'"),
        (lambda ds: ds.assign(bias=("trial", np.zeros(2))), "variable 'bias' has dims \\('trial'\\)"),
        (lambda ds: ds.assign_attrs(dt=0), "'dt' must be a positive"),
        (lambda ds: ds.assign_coords(unit=[0, 1, 1, 2]), "repeats ids \\[1\\]"),
        (lambda ds: ds.assign(W_rec=(("unit", "unit_pre"), np.zeros((4, 5)))), "W_rec must be square"),
        (lambda ds: ds.isel(time=slice(0, 0)), "'time' has length 0"),
    ],
)
def test_validate_names_variable_expected_and_found(mutate, match):
    with pytest.raises(RecordingError, match=match):
        dt.validate(mutate(_rec()))


def test_validate_requires_schema_attribute():
    ds = _rec()
    del ds.attrs["schema"]
    with pytest.raises(RecordingError, match="'schema' is missing.*from_array"):
        dt.validate(ds)


def test_save_open_round_trips_data_coords_and_attrs_exactly(tmp_path):
    rec = _rec(tau=np.array([1.5, 2.0, 3.0, 4.0]), config={"lr": 0.05, "heads": [2, 3], "opt": None},
               fixed_tau=False, N=[2, 3, 4], note=None, seed=7, curriculum="multi-head",
               W_rec=np.random.default_rng(1).standard_normal((4, 4)))
    rec["activity"].attrs["flag"] = True
    path = dt.save_recording(rec, tmp_path / "rec.nc")
    back = dt.open_recording(path).load()
    xr.testing.assert_identical(back, rec)
    assert back.attrs["config"] == {"lr": 0.05, "heads": [2, 3], "opt": None}
    assert back.attrs["fixed_tau"] is False and back.attrs["note"] is None
    assert back.activity.attrs["flag"] is True
    assert back.activity.dtype == np.float32
    assert "_json_attrs" not in rec.attrs  # the caller's dataset is not mutated


def test_save_is_atomic_and_leaves_no_temporary_file_on_failure(tmp_path, monkeypatch):
    rec = _rec()
    path = tmp_path / "rec.nc"
    dt.save_recording(rec, path)
    before = path.read_bytes()

    def boom(self, *a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", boom)
    with pytest.raises(OSError, match="disk full"):
        dt.save_recording(rec.assign_attrs(model="new"), path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["rec.nc"]


def test_open_truncated_file_gives_clear_error(tmp_path):
    path = dt.save_recording(_rec(), tmp_path / "rec.nc")
    data = path.read_bytes()
    bad = tmp_path / "truncated.nc"
    bad.write_bytes(data[: len(data) // 3])
    with pytest.raises(RecordingError, match="truncated or not a netCDF"):
        dt.open_recording(bad)


def test_open_non_netcdf_and_missing_files(tmp_path):
    txt = tmp_path / "notes.nc"
    txt.write_text("hello")
    with pytest.raises(RecordingError, match="could not read"):
        dt.open_recording(txt)
    with pytest.raises(FileNotFoundError, match="no such recording"):
        dt.open_recording(tmp_path / "absent.nc")


def test_open_other_schema_version_is_refused(tmp_path):
    rec = _rec()
    path = tmp_path / "v2.nc"
    rec.assign_attrs(schema="dynatools.recording/2").to_netcdf(path)
    with pytest.raises(RecordingError, match="schema version '2'.*reads version 1"):
        dt.open_recording(path)


def test_open_with_chunks_is_lazy_and_equal(tmp_path):
    pytest.importorskip("dask")
    rec = _rec()
    path = dt.save_recording(rec, tmp_path / "rec.nc")
    lazy = dt.open_recording(path, chunks={"unit": 2})
    assert lazy.activity.chunks is not None
    np.testing.assert_array_equal(lazy.activity.values, rec.activity.values)


def test_demo_recording_is_valid_and_small():
    path = dt.demo_path()
    assert path.stat().st_size <= 5 * 2**20
    rec = dt.open_recording(path)
    assert {"true_tau_fast", "true_tau_slow", "true_n_timescales"} <= set(rec.coords)


def test_from_array_uses_a_dataarrays_own_dims():
    a = np.random.default_rng(0).standard_normal((5, 100, 2))
    rec = dt.from_array(xr.DataArray(a, dims=("unit", "time", "trial")))
    assert dict(rec.sizes) == {"trial": 2, "time": 100, "unit": 5}
    np.testing.assert_array_equal(rec.activity.values, a.transpose(2, 1, 0))
    with pytest.raises(ValueError, match="differ from the DataArray's own dims"):
        dt.from_array(xr.DataArray(a, dims=("unit", "time", "trial")), dims=("trial", "time", "unit"))


def test_saved_file_has_usual_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        path = dt.save_recording(_rec(), tmp_path / "rec.nc")
    finally:
        os.umask(umask)
    assert (path.stat().st_mode & 0o777) == 0o644


def test_attributes_netcdf_cannot_hold_are_refused_or_encoded(tmp_path):
    import datetime

    with pytest.raises(RecordingError, match="attribute 'when'.*ISO"):
        dt.save_recording(_rec(when=datetime.datetime(2024, 1, 1)), tmp_path / "a.nc")
    rec = _rec(big=2**70).assign_attrs(flags=np.array([True, False]), names=np.array(["a", "b"]))
    back = dt.open_recording(dt.save_recording(rec, tmp_path / "b.nc"))
    assert back.attrs["flags"] == [True, False] and back.attrs["names"] == ["a", "b"]
    assert back.attrs["big"] == 2**70


def test_time_coordinate_must_agree_with_dt():
    with pytest.raises(RecordingError, match="'dt' = 1.0 but the 'time' coordinate advances by 5"):
        _rec(time=np.arange(50) * 5.0)


def test_save_does_not_mutate_variable_or_coordinate_attrs(tmp_path):
    rec = _rec(tau=[1.0, 2, 3, 4])
    rec["tau"].attrs["meta"] = {"a": 1}
    rec["activity"].attrs["flag"] = True
    dt.save_recording(rec, tmp_path / "rec.nc")
    assert rec["tau"].attrs == {"meta": {"a": 1}} and rec["activity"].attrs == {"flag": True}


def test_a_damaged_json_attribute_is_named(tmp_path):
    path = dt.save_recording(_rec(config={"lr": 0.05}), tmp_path / "rec.nc")
    import netCDF4

    with netCDF4.Dataset(path, "a") as nc:
        nc.setncattr("config", "{not json")
    with pytest.raises(RecordingError, match="attribute 'config' should hold JSON"):
        dt.open_recording(path)


DEEP = "[" * 100_000 + "]" * 100_000


def _nested(depth):
    value = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    "attrs, expectation",
    [   # the list of JSON-encoded attributes is damaged
        ({"_json_attrs": "5"}, pytest.raises(RecordingError, match=r"attribute '_json_attrs' is '5'; expected a JSON "
                                                                    r"list of the names.*delete it")),
        ({"_json_attrs": '"config"'}, pytest.raises(RecordingError, match=r"'_json_attrs' is '\"config\"'; expected "
                                                                          r"a JSON list")),
        ({"_json_attrs": "[1, 2]"}, pytest.raises(RecordingError, match=r"'_json_attrs' is '\[1, 2\]'")),
        ({"_json_attrs": DEEP}, pytest.raises(RecordingError, match=r"attribute '_json_attrs' should hold JSON but "
                                                                    r"could not be decoded \(nested too deeply\)")),
        ({"_json_attrs": "[config"}, pytest.raises(RecordingError, match="attribute '_json_attrs' should hold JSON")),
        # a listed attribute is damaged
        ({"config": "{not json"}, pytest.raises(RecordingError, match="attribute 'config' should hold JSON")),
        ({"config": DEEP}, pytest.raises(RecordingError, match=r"attribute 'config' .*\(nested too deeply\)")),
        ({"config": 5}, pytest.raises(RecordingError, match=r"'config' should hold JSON .*\(found int64, not JSON text\)")),
        ({"config": "5"}, does_not_raise()),                                # JSON text for 5: it reads as 5
        ({"_json_attrs": '["config", "gone"]'}, does_not_raise()),          # a listed attribute deleted since
    ],
)
def test_damaged_json_attributes_are_named(tmp_path, attrs, expectation):
    path = dt.save_recording(_rec(config={"lr": 0.05}), tmp_path / "rec.nc")
    import netCDF4

    with netCDF4.Dataset(path, "a") as nc:
        for key, value in attrs.items():
            nc.setncattr(key, value)
    with expectation:
        dt.open_recording(path)


@pytest.mark.parametrize(
    "attrs, expectation",
    [   # names dynatools' encoding uses cannot be user attributes (they would be dropped or renamed)
        ({"_json_attrs": '["x"]'}, pytest.raises(RecordingError, match=r"attribute '_json_attrs' uses a name reserved "
                                                                       r".*dynatools.open_recording")),
        ({"_dynatools_attr_coordinates": "x"}, pytest.raises(RecordingError, match="'_dynatools_attr_coordinates' uses")),
        ({"deep": _nested(100_000)}, pytest.raises(RecordingError, match=r"attribute 'deep' holds a value JSON cannot "
                                                                         r"encode \(RecursionError")),
        ({"deep": _nested(20)}, does_not_raise()),
    ],
)
def test_reserved_attribute_names_are_refused_at_write(tmp_path, attrs, expectation):
    with expectation:
        dt.save_recording(_rec().assign_attrs(attrs), tmp_path / "rec.nc")


def test_nul_characters_and_cf_names_round_trip_on_variables_too(tmp_path):
    rec = _rec(note="a\x00b", coordinates="activity", cfg={"x": "y\x00"})
    rec["activity"].attrs.update(coordinates="time", label="\x00")
    back = dt.open_recording(dt.save_recording(rec, tmp_path / "rec.nc"))
    assert back.attrs["note"] == "a\x00b" and back.attrs["cfg"] == {"x": "y\x00"}
    assert back.attrs["coordinates"] == "activity" and "activity" in back.data_vars   # not made a coordinate
    assert back.activity.attrs == {"coordinates": "time", "label": "\x00"}
    xr.testing.assert_identical(back, rec)
