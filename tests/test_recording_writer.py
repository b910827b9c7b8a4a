"""RecordingWriter: streamed recordings equal from_array + save_recording, and never leave a
partial or wrongly shaped file."""

from __future__ import annotations

import numpy as np
import pytest

import dynatools as dt


def _writer(path, **kw):
    return dt.RecordingWriter(path, n_trials=2, n_time=10, n_units=3,
                              streamed={"input": (("trial", "time", "input_dim"), "float32")},
                              sizes={"input_dim": 1}, tau=[1.0, 2.0, 3.0], model="m", config={"a": 1}, **kw)


def test_streamed_equals_saved(tmp_path, rng):
    act = rng.standard_normal((2, 10, 3)).astype(np.float32)
    inp = rng.random((2, 10, 1)).astype(np.float32)
    with _writer(tmp_path / "s.nc") as w:
        for start in (0, 4, 8):
            w.write("activity", start, act[:, start:start + 4])
            w.write("input", start, inp[:, start:start + 4])
    ref = dt.from_array(act, input=inp, tau=[1.0, 2.0, 3.0], model="m", config={"a": 1})
    got = dt.open_recording(tmp_path / "s.nc")
    np.testing.assert_array_equal(got.activity.values, ref.activity.values)
    np.testing.assert_array_equal(got.input.values, ref.input.values)
    np.testing.assert_array_equal(got.tau.values, ref.tau.values)
    assert got.attrs["config"] == {"a": 1} and got.time.attrs["units"] == "step"


def test_unfinished_writer_leaves_no_file(tmp_path):
    w = _writer(tmp_path / "s.nc")
    w.write("activity", 0, np.zeros((2, 4, 3)))
    with pytest.raises(dt.RecordingError, match=r"activity: times 4\.\.9 .* never written"):
        w.close()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("shape", [(1, 4, 3), (2, 4, 1), (2, 4)])
def test_wrongly_shaped_block_is_refused(tmp_path, shape):
    w = _writer(tmp_path / "s.nc")
    with pytest.raises(ValueError, match="does not fit"):
        w.write("activity", 0, np.zeros(shape))
    w.abort()
    assert list(tmp_path.iterdir()) == []


def test_error_inside_the_with_block_leaves_no_file(tmp_path):
    with pytest.raises(KeyError):
        with _writer(tmp_path / "s.nc") as w:
            w.write("output", 0, np.zeros((2, 1, 1)))
    assert list(tmp_path.iterdir()) == []


def test_a_long_written_file_opens_in_one_time_chunk(tmp_path):
    pytest.importorskip("dask")
    T = 10_000                                       # more than one of the writer's time blocks
    x = np.random.default_rng(0).standard_normal((2, T, 4)).astype("float32")
    with dt.RecordingWriter(tmp_path / "long.nc", n_trials=2, n_time=T, n_units=4, model="demo") as w:
        w.write("activity", 0, x)
    rec = dt.open_recording(tmp_path / "long.nc", chunks={"trial": 1})
    assert rec.activity.chunks[1] == (T,)            # time not split: the timescales accept it
    lazy = dt.timescales(rec)
    direct = dt.timescales(dt.from_array(x))
    np.testing.assert_allclose(lazy.tau_net, direct.tau_net, rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs, expectation",
    [
        ({"dt": "abc"}, pytest.raises(TypeError, match="dt must be a positive finite number .*found 'abc'")),
        ({"_json_attrs": "x"}, pytest.raises(dt.RecordingError, match="'_json_attrs' uses a name reserved")),
    ],
)
def test_bad_arguments_are_named_and_leave_no_file(tmp_path, kwargs, expectation):
    with expectation:
        _writer(tmp_path / "s.nc", **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_nul_characters_and_an_attribute_named_coordinates_are_kept(tmp_path):
    with _writer(tmp_path / "s.nc", note="a\x00b", coordinates="x y") as w:
        w.write("activity", 0, np.zeros((2, 10, 3)))
        w.write("input", 0, np.zeros((2, 10, 1)))
    back = dt.open_recording(tmp_path / "s.nc")
    assert back.attrs["note"] == "a\x00b" and back.attrs["coordinates"] == "x y"
