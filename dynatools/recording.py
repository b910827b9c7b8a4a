"""Recordings: the labeled activity datasets every analysis reads (schema version 1).

A recording is an :class:`xarray.Dataset` with a variable ``activity`` of dims
``("trial", "time", "unit")`` (with an optional leading ``member`` dim for an ensemble of networks
recorded together), coordinates for those dims, optional per-unit coordinates (``tau``,
``module``, ``population``, ``sign``), optional period labels (``period``) and trial lengths
(``trial_length``, for trials padded at the end), optional variables (inputs, outputs, weights)
and provenance attributes. See ``docs/recording-schema.md`` for the full description.

Padding rule: trials shorter than the ``time`` axis are padded at the end. The integer coordinate
``trial_length`` ``("trial",)`` gives each trial's number of valid samples; ``activity`` is NaN
after it, and a per-trial ``period`` ``("trial", "time")`` holds :data:`PAD` (``"pad"``) there.
Analyses use only the first ``trial_length`` samples of each trial.

netCDF cannot store dict, list, bool or None attributes; :func:`save_recording` encodes them as
JSON strings and lists their names in the attribute ``_json_attrs``, and :func:`open_recording`
decodes them. Strings, numbers, lists, dicts with string keys, bool and None round-trip exactly;
tuples come back as lists, non-string dict keys as strings, numpy bools and string arrays as
Python bools and lists. Values JSON cannot hold (e.g. dates) are refused with a message. Strings
with NUL characters (which netCDF would cut) are JSON-encoded too, and an attribute that xarray's
CF decoding would take on opening (``coordinates``) is stored as ``_dynatools_attr_coordinates``
and renamed back, so both round-trip. The names ``_json_attrs`` and ``_dynatools_attr_*`` are
reserved; a damaged ``_json_attrs`` or JSON attribute in a file is a :class:`RecordingError` that
names it.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

__all__ = [
    "SCHEMA",
    "SCHEMA_VERSION",
    "RecordingError",
    "from_array",
    "validate",
    "save_recording",
    "open_recording",
    "RecordingWriter",
    "select_period",
    "trial_lengths",
    "PAD",
]

SCHEMA_VERSION = 1
SCHEMA = f"dynatools.recording/{SCHEMA_VERSION}"
_SCHEMA_PREFIX = "dynatools.recording/"
_JSON_LIST_ATTR = "_json_attrs"

#: Dims of the required variable, in this order.
ACTIVITY_DIMS = ("trial", "time", "unit")
#: The optional leading dim of an ensemble of networks recorded together.
MEMBER_DIM = "member"
#: Dims of the activity of an ensemble.
ENSEMBLE_DIMS = (MEMBER_DIM,) + ACTIVITY_DIMS
#: Label of the padded steps of a trial in a per-trial ``period`` coordinate.
PAD = "pad"
#: Dims a ``period`` coordinate may have: the same labels for every trial, or per trial.
PERIOD_DIMS = (("time",), ("trial", "time"))
#: Optional variables and the dims each may have (alternatives in order of preference).
OPTIONAL_VARIABLES: dict[str, tuple[tuple[str, ...], ...]] = {
    "input": (("trial", "time", "input_dim"),),
    "target": (("trial", "time", "head"), ("trial", "head")),
    "output": (("trial", "time", "head"), ("trial", "head"), ("trial", "time", "head", "class")),
    "W_rec": (("unit", "unit_pre"),),
    "W_in": (("unit", "input_dim"),),
    "W_out": (("head", "class", "unit"),),
    "bias": (("unit",),),
}
#: Per-unit coordinates the schema knows.
UNIT_COORDS = ("tau", "module", "population", "sign")
TIME_UNITS = ("step", "s")


class RecordingError(ValueError):
    """A recording does not follow the schema, or a file could not be read as one."""


def _software_version() -> str:
    from dynatools import __version__

    return f"dynatools {__version__}"


def from_array(
    activity: Any,
    *,
    dt: float = 1.0,
    dims: Sequence[str] | None = None,
    time_units: str = "step",
    coords: Mapping[str, tuple[str, Any]] | None = None,
    **coords_and_attrs: Any,
) -> xr.Dataset:
    """Build a schema-1 recording from a plain array.

    Parameters
    ----------
    activity : array_like, float
        Activity with axes named by ``dims``. Integer data is rejected (convert it first).
    dt : float, default=1.0
        Time between samples, in ``time_units``. The ``time`` coordinate is ``arange(T) * dt``.
    dims : sequence of str, optional
        Names of the axes of ``activity``, any permutation of ``("trial", "time", "unit")``,
        optionally with ``"member"`` (an ensemble of networks recorded together; it is moved
        to the front); ``"trial"`` may be left out for a single trial (a trial axis of length 1
        is added). Default: the DataArray's own dims if ``activity`` is one, else
        ``("trial", "time", "unit")`` (``("member", "trial", "time", "unit")`` for a 4-D array).
    time_units : {"step", "s"}, default="step"
        Units of ``dt`` and of the ``time`` coordinate (and of ``tau``). Networks simulated in
        physical time (rate networks) use ``"s"``.
    coords : mapping, optional
        Further coordinates as ``{name: (dim, values)}``, e.g. the task size each readout head
        answers: ``{"N": ("head", [2, 3, 4])}``.
    **coords_and_attrs
        ``member``, ``trial``, ``time``, ``unit``: coordinate values for those dims (``unit``
        must be integers; ``member`` defaults to ``0..K-1``). ``tau``, ``module``,
        ``population``, ``sign``: per-unit coordinates, shape ``(unit,)``, or ``(member, unit)``
        for values that differ between members. ``period``: period labels (strings such as
        ``"fixation"``, ``"stimulus"``, ``"delay"``, ``"response"``), shape ``(time,)`` for
        the same labels in every trial or ``(trial, time)``. ``trial_length``: integers, shape
        ``(trial,)``, the number of valid samples of each trial when trials of different
        lengths are padded at the end: the activity after each trial's end is set to NaN (in a
        copy) and ``period`` to ``"pad"`` there. ``input``, ``target``, ``output``, ``W_rec``,
        ``W_in``, ``W_out``, ``bias``: optional variables as numpy arrays with the dims of the
        schema (with a leading ``member`` axis for an ensemble whose members differ). Anything
        else is stored as a global attribute (str, numbers, lists, dicts, bool and None are all
        allowed).

    Returns
    -------
    xarray.Dataset
        A recording that passes :func:`validate`.

    Examples
    --------
    >>> import numpy as np, dynatools as dt
    >>> rec = dt.from_array(np.zeros((2, 100, 3)), dt=1.0, tau=[1.0, 2.0, 5.0], model="mine")
    >>> rec.activity.dims
    ('trial', 'time', 'unit')
    >>> rec.attrs["schema"]
    'dynatools.recording/1'

    An ensemble of 4 rate networks in seconds, two trials of 3 and 5 samples, labelled periods:

    >>> act = np.ones((4, 2, 5, 3))                  # (member, trial, time, unit)
    >>> ens = dt.from_array(act, dt=0.005, time_units="s", tau=np.full((4, 3), 0.1),
    ...                     trial_length=[3, 5],
    ...                     period=[["stimulus", "delay", "response", "pad", "pad"],
    ...                             ["stimulus", "delay", "delay", "delay", "response"]])
    >>> ens.activity.dims, ens.sizes["member"]
    (('member', 'trial', 'time', 'unit'), 4)
    >>> bool(np.isnan(ens.activity[0, 0, 3:]).all())
    True
    """
    from dynatools._validation import as_activity, check_choice

    known = ENSEMBLE_DIMS
    if isinstance(activity, xr.DataArray):
        if dims is not None and tuple(dims) != tuple(activity.dims):
            raise ValueError(
                f"dims={tuple(dims)!r} differ from the DataArray's own dims {activity.dims!r}; "
                f"rename them with activity.rename(...) or pass activity.values."
            )
        dims = tuple(map(str, activity.dims))
    if dims is None:
        dims = ENSEMBLE_DIMS if np.ndim(activity) == 4 else ACTIVITY_DIMS
    dims = tuple(dims)
    bad = [d for d in dims if d not in known]
    if bad or len(set(dims)) != len(dims) or not {"time", "unit"} <= set(dims):
        raise ValueError(
            f"dims={dims!r}: expected a permutation of {ACTIVITY_DIMS} ('trial' may be left "
            f"out for one trial; 'member' may be added for an ensemble); found "
            f"{bad or 'duplicates or missing time/unit'}."
        )
    arr = np.asarray(activity)
    if arr.ndim != len(dims):
        raise ValueError(
            f"activity has {arr.ndim} axes (shape {arr.shape}) but dims={dims!r} names "
            f"{len(dims)}; pass dims naming every axis."
        )
    da = as_activity(xr.DataArray(arr, dims=dims))
    if "trial" not in dims:
        da = da.expand_dims("trial")
    ensemble = MEMBER_DIM in dims
    target_dims = ENSEMBLE_DIMS if ensemble else ACTIVITY_DIMS
    da = da.transpose(*target_dims)
    check_choice("time_units", time_units, TIME_UNITS)
    dt = _as_dt(dt)

    n_trial, n_time, n_unit = da.shape[-3:]
    n_member = da.shape[0] if ensemble else None
    kw = dict(coords_and_attrs)
    extra_coords = dict(coords or {})
    coords = {
        "trial": np.asarray(kw.pop("trial", np.arange(n_trial))),
        "time": np.asarray(kw.pop("time", np.arange(n_time) * dt)),
        "unit": np.asarray(kw.pop("unit", np.arange(n_unit))),
    }
    if ensemble:
        coords[MEMBER_DIM] = np.asarray(kw.pop(MEMBER_DIM, np.arange(n_member)))
    elif MEMBER_DIM in kw:
        raise ValueError(f"keyword 'member' gives member labels, but activity has no 'member' axis "
                         f"(dims {dims!r}); name the ensemble axis in dims=, e.g. dims=('member', 'trial', "
                         f"'time', 'unit').")
    for name, n in zip(target_dims, da.shape):
        if coords[name].shape != (n,):
            raise ValueError(
                f"coordinate {name!r} has shape {coords[name].shape}; expected ({n},) to match "
                f"the activity's {name} axis."
            )
    lengths = pad_da = None
    if "trial_length" in kw:
        lengths = np.asarray(kw.pop("trial_length"))
        if lengths.shape != (n_trial,) or not np.issubdtype(lengths.dtype, np.integer):
            raise ValueError(
                f"trial_length has shape {lengths.shape} and dtype {lengths.dtype}; expected ({n_trial},) "
                f"integers, the number of valid samples of each trial (padding follows at the end)."
            )
        if lengths.min() < 1 or lengths.max() > n_time:
            raise ValueError(f"trial_length must be in 1..{n_time} (the time axis); found "
                             f"{lengths.min()}..{lengths.max()}.")
        pad = np.arange(n_time)[None, :] >= lengths[:, None]          # (trial, time)
        if pad.any():
            pad_da = xr.DataArray(pad, dims=("trial", "time"))
            da = da.where(~pad_da)                                      # a copy: NaN after each trial
    ds = xr.Dataset({"activity": da.variable}, coords=coords)
    ds["time"].attrs["units"] = time_units
    if lengths is not None:
        ds = ds.assign_coords(trial_length=("trial", lengths.astype(np.int64)))

    if "period" in kw:
        labels = np.asarray(kw.pop("period"))
        if labels.shape == (n_time,):
            pdims: tuple[str, ...] = ("time",)
        elif labels.shape == (n_trial, n_time):
            pdims = ("trial", "time")
        else:
            raise ValueError(
                f"period has shape {labels.shape}; expected ({n_time},), one label per time step, or "
                f"({n_trial}, {n_time}), one per trial and time step (with {PAD!r} after each trial's end)."
            )
        labels = labels.astype(str)
        if lengths is not None and bool((lengths < n_time).any()):
            labels = np.broadcast_to(labels, (n_trial, n_time)).copy()
            labels[np.arange(n_time)[None, :] >= lengths[:, None]] = PAD
            pdims = ("trial", "time")
        ds = ds.assign_coords(period=(pdims, labels))

    for name in UNIT_COORDS:
        if name in kw:
            values = np.asarray(kw.pop(name))
            if values.shape == (n_unit,):
                ds = ds.assign_coords({name: ("unit", values)})
            elif ensemble and values.shape == (n_member, n_unit):
                ds = ds.assign_coords({name: ((MEMBER_DIM, "unit"), values)})
            else:
                raise ValueError(
                    f"per-unit coordinate {name!r} has shape {values.shape}; expected "
                    f"({n_unit},), one value per unit"
                    + (f", or ({n_member}, {n_unit}), one per member and unit." if ensemble else ".")
                )
    for name, alternatives in OPTIONAL_VARIABLES.items():
        if name in kw:
            values = np.asarray(kw.pop(name))
            options = list(alternatives) + ([(MEMBER_DIM,) + d for d in alternatives] if ensemble else [])
            match = [d for d in options if len(d) == values.ndim]
            if not match:
                raise ValueError(
                    f"variable {name!r} has {values.ndim} axes (shape {values.shape}); expected "
                    f"dims " + " or ".join(map(str, options)) + "."
                )
            ds[name] = (match[0], values)
            if pad_da is not None and {"trial", "time"} <= set(match[0]) and np.issubdtype(values.dtype, np.floating):
                ds[name] = ds[name].where(~pad_da).transpose(*match[0])       # padding rule: NaN

    for name, (dim, values) in extra_coords.items():
        values = np.asarray(values)
        if dim in ds.dims and values.shape != (ds.sizes[dim],):
            raise ValueError(
                f"coordinate {name!r} has shape {values.shape}; expected ({ds.sizes[dim]},) to "
                f"match dim {dim!r}."
            )
        ds = ds.assign_coords({name: (dim, values)})
    for name, value in kw.items():
        if isinstance(value, (np.ndarray, xr.DataArray)) and np.ndim(value) > 0:
            raise TypeError(
                f"keyword {name!r} is an array, but only the schema's names are turned into "
                f"variables or coordinates ({', '.join(UNIT_COORDS + ('period', 'trial_length') + tuple(OPTIONAL_VARIABLES))}). "
                f"Add other arrays afterwards, e.g. ds.assign_coords({name}=('unit', values)), "
                f"or pass a list to store it as an attribute."
            )
    attrs: dict[str, Any] = {
        "schema": SCHEMA,
        "dt": dt,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "software": _software_version(),
    }
    attrs.update(kw)
    ds.attrs = attrs
    validate(ds)
    return ds


def trial_lengths(activity: Any, *, trial_dim: str = "trial", time_dim: str = "time") -> np.ndarray | None:
    """Each trial's number of valid samples, from the ``trial_length`` coordinate, or None when no
    trial is padded (no coordinate, or every trial as long as the time axis).

    Parameters
    ----------
    activity : xarray.Dataset or xarray.DataArray
        A recording or its activity. Trials shorter than the time axis are padded at the end
        (docs/recording-schema.md, "Trials of different lengths").
    trial_dim, time_dim : str
        Names of the trial and time dims.

    Returns
    -------
    numpy.ndarray of int, dim ``trial_dim``, or None

    Examples
    --------
    >>> import numpy as np, dynatools as dt
    >>> rec = dt.from_array(np.ones((2, 5, 1)), trial_length=[3, 5])
    >>> dt.trial_lengths(rec).tolist()
    [3, 5]
    """
    if not isinstance(activity, (xr.Dataset, xr.DataArray)) or "trial_length" not in activity.coords:
        return None
    tl = activity["trial_length"]
    if time_dim not in activity.dims:
        return None
    if tuple(tl.dims) != (trial_dim,) or not np.issubdtype(tl.dtype, np.integer):
        raise ValueError(f"coordinate 'trial_length' has dims {tuple(map(str, tl.dims))} and dtype {tl.dtype}; "
                         f"expected integers on ({trial_dim!r},), each trial's number of valid samples.")
    lengths = np.asarray(tl.values).astype(np.int64)
    n_time = activity.sizes[time_dim]
    if lengths.size and (lengths.min() < 1 or lengths.max() > n_time):
        raise ValueError(f"coordinate 'trial_length' must be in 1..{n_time} (the {time_dim!r} axis); found "
                         f"{lengths.min()}..{lengths.max()}.")
    return None if bool((lengths == n_time).all()) else lengths


def select_period(rec: xr.Dataset, period: str | Sequence[str], *, trial_dim: str = "trial",
                  time_dim: str = "time") -> xr.Dataset:
    """The samples of one task period, each trial's moved to time 0 and padded at the end.

    Analyses of a recording with a ``period`` coordinate look at the whole trial; to analyse one
    period (e.g. the timescales during the delay), select it first. Each trial keeps the steps
    labelled ``period`` (which must be contiguous in every trial), shifted to start at time 0;
    shorter segments are padded at the end by the rule of docs/recording-schema.md (coordinate
    ``trial_length``, NaN activity and ``"pad"`` labels after it), so every analysis uses each
    trial's segment only.

    Parameters
    ----------
    rec : xarray.Dataset
        A recording with a ``period`` coordinate ``(time,)`` or ``(trial, time)``; an ensemble's
        ``member`` dim is kept.
    period : str or sequence of str
        The period label(s) to keep, e.g. ``"delay"`` or ``["stimulus", "delay"]`` (consecutive).
    trial_dim, time_dim : str
        Names of the trial and time dims.

    Returns
    -------
    xarray.Dataset
        A recording with the same variables; every variable over ``time`` is cut, others kept.
        ``time`` restarts at 0; attribute ``selected_period`` names the selection.

    Raises
    ------
    RecordingError
        No ``period`` coordinate, a trial without the period, or a period that is not contiguous.

    Examples
    --------
    >>> import numpy as np, dynatools as dt
    >>> labels = [["fixation", "delay", "delay", "response"], ["fixation", "fixation", "delay", "response"]]
    >>> rec = dt.from_array(np.arange(8.0).reshape(2, 4, 1), period=labels)
    >>> delay = dt.select_period(rec, "delay")
    >>> delay.trial_length.values.tolist(), delay.activity[:, :, 0].values.tolist()
    ([2, 1], [[1.0, 2.0], [6.0, nan]])
    """
    validate(rec)
    if "period" not in rec.coords:
        raise RecordingError("the recording has no 'period' coordinate; only recordings of tasks with "
                             "labelled periods can be cut by period (docs/recording-schema.md).")
    names = [period] if isinstance(period, str) else [str(p) for p in period]
    labels = np.broadcast_to(np.asarray(rec["period"].transpose(*[d for d in (trial_dim, time_dim)
                                                                  if d in rec["period"].dims]).values).astype(str),
                             (rec.sizes[trial_dim], rec.sizes[time_dim]))
    keep = np.isin(labels, names)
    if "trial_length" in rec.coords:
        keep &= np.arange(rec.sizes[time_dim])[None, :] < np.asarray(rec["trial_length"].values)[:, None]
    starts, lengths = np.argmax(keep, axis=1), keep.sum(axis=1)
    missing = np.flatnonzero(lengths == 0)
    if missing.size:
        found = sorted(set(np.unique(labels).tolist()) - {PAD})
        raise RecordingError(f"trials {missing[:5].tolist()} have no step labelled {names}; the periods found are "
                             f"{found}. Select the trials that have it first, e.g. rec.isel(trial=...).")
    gaps = [i for i in range(keep.shape[0]) if not keep[i, starts[i]:starts[i] + lengths[i]].all()]
    if gaps:
        raise RecordingError(f"the steps labelled {names} are not contiguous in trials {gaps[:5]}; select "
                             f"consecutive periods, or cut the recording yourself.")
    n_new = int(lengths.max())
    j = np.arange(n_new)
    time_idx = np.minimum(starts[:, None] + j[None, :], rec.sizes[time_dim] - 1)
    trial_idx = np.broadcast_to(np.arange(rec.sizes[trial_dim])[:, None], time_idx.shape)
    pad = j[None, :] >= lengths[:, None]
    body = rec.drop_vars([time_dim, "period", "trial_length"], errors="ignore")
    cut = body.isel({trial_dim: xr.DataArray(trial_idx, dims=(trial_dim, time_dim)),
                     time_dim: xr.DataArray(time_idx, dims=(trial_dim, time_dim))})
    mask = xr.DataArray(pad, dims=(trial_dim, time_dim))
    for name, var in rec.data_vars.items():
        if time_dim in var.dims:
            new = cut[name]
            if np.issubdtype(new.dtype, np.floating):
                new = new.where(~mask)
            cut[name] = new.transpose(*var.dims)
        else:
            cut[name] = var
    dt = float(rec.attrs["dt"])
    cut = cut.assign_coords({trial_dim: rec[trial_dim].values,
                             time_dim: (time_dim, np.arange(n_new) * dt, rec[time_dim].attrs),
                             "trial_length": (trial_dim, lengths.astype(np.int64)),
                             "period": ((trial_dim, time_dim), np.where(pad, PAD, labels[trial_idx, time_idx]))})
    for name, var in rec.data_vars.items():            # each variable keeps its own dim order
        cut[name] = cut[name].transpose(*var.dims)
    cut.attrs = dict(rec.attrs)
    cut.attrs["selected_period"] = ", ".join(names)
    return validate(cut)


def _describe_dims(dims: Sequence[Hashable]) -> str:
    return "(" + ", ".join(repr(str(d)) for d in dims) + ")"


def validate(ds: xr.Dataset) -> xr.Dataset:
    """Check that ``ds`` is a schema-1 recording; return it unchanged.

    Parameters
    ----------
    ds : xarray.Dataset
        The recording to check.

    Returns
    -------
    xarray.Dataset
        ``ds`` itself, so calls can be chained.

    Raises
    ------
    RecordingError
        Naming the variable or attribute at fault, what was expected and what was found.

    Examples
    --------
    >>> import numpy as np, dynatools as dt
    >>> rec = dt.validate(dt.from_array(np.ones((1, 10, 2))))
    """
    if not isinstance(ds, xr.Dataset):
        raise RecordingError(
            f"a recording is an xarray.Dataset; found {type(ds).__name__}. Build one from an "
            f"array with dynatools.from_array(activity, dims=...)."
        )
    schema = ds.attrs.get("schema")
    if schema is None:
        raise RecordingError(
            "attribute 'schema' is missing: this Dataset is not a dynatools recording. Build one "
            "with dynatools.from_array(...) or set ds.attrs['schema'] = "
            f"{SCHEMA!r} after checking it follows docs/recording-schema.md."
        )
    _check_schema_version(schema)
    if "activity" not in ds.data_vars:
        raise RecordingError(
            f"variable 'activity' is missing (variables found: "
            f"{sorted(map(str, ds.data_vars))}); a recording needs activity with dims "
            f"{_describe_dims(ACTIVITY_DIMS)}."
        )
    act = ds["activity"]
    if tuple(act.dims) not in (ACTIVITY_DIMS, ENSEMBLE_DIMS):
        if set(act.dims) == set(ENSEMBLE_DIMS):
            raise RecordingError(
                f"variable 'activity' has dims {_describe_dims(act.dims)}; the ensemble dim 'member' "
                f"must lead: fix with ds['activity'] = ds['activity'].transpose('member', 'trial', "
                f"'time', 'unit')."
            )
        raise RecordingError(
            f"variable 'activity' has dims {_describe_dims(act.dims)}; expected "
            f"{_describe_dims(ACTIVITY_DIMS)} (optionally with a leading 'member' dim). Fix with "
            f"ds['activity'] = ds['activity'].transpose('trial', 'time', 'unit') or rename the dims."
        )
    ensemble = act.dims[0] == MEMBER_DIM
    if act.dtype not in (np.float32, np.float64):
        raise RecordingError(
            f"variable 'activity' has dtype {act.dtype}; expected float32 or float64. "
            f"Convert with ds['activity'] = ds['activity'].astype('float32')."
        )
    for name in ACTIVITY_DIMS:
        if name not in ds.coords:
            raise RecordingError(
                f"coordinate {name!r} is missing; expected a 1-D coordinate on dim {name!r}."
            )
    time = ds["time"]
    if not np.issubdtype(time.dtype, np.number):
        raise RecordingError(
            f"coordinate 'time' has dtype {time.dtype}; expected numbers (steps or seconds), "
            f"not dates."
        )
    if time.attrs.get("units") not in TIME_UNITS:
        raise RecordingError(
            f"coordinate 'time' has units={time.attrs.get('units')!r}; expected one of "
            f"{TIME_UNITS}. Set ds['time'].attrs['units'] = 'step'."
        )
    if time.size > 1 and not bool(np.all(np.diff(time.values) > 0)):
        raise RecordingError("coordinate 'time' must be strictly increasing.")
    if not np.issubdtype(ds["unit"].dtype, np.integer):
        raise RecordingError(
            f"coordinate 'unit' has dtype {ds['unit'].dtype}; expected integer unit ids. "
            f"Keep labels in another per-unit coordinate, e.g. ds.assign_coords(label=('unit', ...))."
        )
    dt = ds.attrs.get("dt")
    if not isinstance(dt, (float, int, np.floating, np.integer)) or isinstance(dt, bool) or not dt > 0:
        raise RecordingError(f"attribute 'dt' must be a positive number; found {dt!r}. Set ds.attrs['dt'] to the "
                             f"time between samples, in the units of the 'time' coordinate.")
    dt_attr = ds.attrs.get("dt")
    if time.size > 1 and isinstance(dt_attr, (int, float, np.number)) and not isinstance(dt_attr, bool):
        from dynatools._validation import spacing_tolerance

        steps = np.diff(np.asarray(time.values, dtype=np.float64))
        if not np.allclose(steps, float(dt_attr), rtol=1e-6, atol=spacing_tolerance(time.values)):
            raise RecordingError(
                f"attribute 'dt' = {dt_attr} but the 'time' coordinate advances by "
                f"{steps[0]:g} per sample; make them agree (time = arange(T) * dt)."
            )
    for name in UNIT_COORDS:
        allowed = [("unit",)] + ([(MEMBER_DIM, "unit")] if ensemble else [])
        if name in ds.coords and tuple(ds[name].dims) not in allowed:
            raise RecordingError(
                f"coordinate {name!r} has dims {_describe_dims(ds[name].dims)}; expected "
                f"('unit',), one value per unit"
                + (", or ('member', 'unit')." if ensemble else ".")
            )
    for name, alternatives in OPTIONAL_VARIABLES.items():
        options = list(alternatives) + ([(MEMBER_DIM,) + d for d in alternatives] if ensemble else [])
        if name in ds.data_vars and tuple(ds[name].dims) not in options:
            raise RecordingError(
                f"variable {name!r} has dims {_describe_dims(ds[name].dims)}; expected "
                + " or ".join(_describe_dims(d) for d in options)
                + "."
            )
    if not ensemble and MEMBER_DIM in ds.dims:
        raise RecordingError(
            f"dim 'member' is used by {sorted(str(k) for k, v in ds.variables.items() if MEMBER_DIM in v.dims)} "
            f"but not by 'activity'; an ensemble's activity has dims ('member', 'trial', 'time', 'unit')."
        )
    _check_trials(ds)
    for name in ("time", "unit"):
        if ds.sizes[name] == 0:
            raise RecordingError(f"dim {name!r} has length 0; a recording needs at least one {name} step "
                                 f"or unit.")
    ids = np.asarray(ds["unit"].values)
    if np.unique(ids).size != ids.size:
        values, counts = np.unique(ids, return_counts=True)
        raise RecordingError(f"coordinate 'unit' repeats ids {values[counts > 1][:5].tolist()}; unit ids must "
                             f"be unique (ds.assign_coords(unit=np.arange(ds.sizes['unit']))).")
    if "unit_pre" in ds.dims and ds.sizes["unit_pre"] != ds.sizes["unit"]:
        raise RecordingError(f"dim 'unit_pre' has {ds.sizes['unit_pre']} entries but 'unit' has "
                             f"{ds.sizes['unit']}: recurrent weights (unit, unit_pre) connect the recorded "
                             f"units to each other, so W_rec must be square.")
    return ds


def _check_trials(ds: xr.Dataset) -> None:
    """The ``trial_length`` and ``period`` coordinates: dims, types, and the padding rule."""
    n_trial, n_time = ds.sizes["trial"], ds.sizes["time"]
    lengths = None
    if "trial_length" in ds.variables:
        tl = ds["trial_length"]
        if "trial_length" not in ds.coords or tuple(tl.dims) != ("trial",) or not np.issubdtype(tl.dtype, np.integer):
            raise RecordingError(
                f"'trial_length' has dims {_describe_dims(tl.dims)} and dtype {tl.dtype}; expected an integer "
                f"coordinate on ('trial',), each trial's number of valid samples: "
                f"ds.assign_coords(trial_length=('trial', lengths)).")
        lengths = np.asarray(tl.values)
        if lengths.size and (lengths.min() < 1 or lengths.max() > n_time):
            raise RecordingError(f"coordinate 'trial_length' must be in 1..{n_time} (the time axis); found "
                                 f"{lengths.min()}..{lengths.max()}.")
        if bool((lengths == n_time).all()):
            lengths = None                       # nothing padded
    if "period" not in ds.variables:
        return
    period = ds["period"]
    if "period" not in ds.coords:
        raise RecordingError("'period' is a data variable; it labels time steps, so make it a coordinate: "
                             "ds = ds.set_coords('period').")
    if tuple(period.dims) not in PERIOD_DIMS:
        raise RecordingError(
            f"coordinate 'period' has dims {_describe_dims(period.dims)} (shape {period.shape}); expected "
            f"('time',) = ({n_time},), one label per time step, or ('trial', 'time') = ({n_trial}, {n_time}) "
            f"with {PAD!r} after each trial's end.")
    if period.dtype.kind not in "USO":
        raise RecordingError(f"coordinate 'period' has dtype {period.dtype}; expected strings such as "
                             f"'fixation', 'stimulus', 'delay', 'response' (and {PAD!r} for padding).")
    labels = np.asarray(period.values).astype(str)
    if lengths is None:
        if (labels == PAD).any():
            raise RecordingError(
                f"coordinate 'period' marks padded steps {PAD!r} but no trial is shorter than the time axis: "
                f"add each trial's length with ds.assign_coords(trial_length=('trial', lengths)).")
        return
    if period.dims == ("time",):
        raise RecordingError(
            "coordinate 'period' has dims ('time',) but the trials have different lengths (trial_length); "
            f"give it dims ('trial', 'time') with {PAD!r} after each trial's end.")
    pad = np.arange(n_time)[None, :] >= lengths[:, None]
    wrong = np.flatnonzero(((labels == PAD) != pad).any(axis=1))
    if wrong.size:
        raise RecordingError(
            f"coordinate 'period' disagrees with 'trial_length' in trials {wrong[:5].tolist()}: the steps at and "
            f"after each trial's length must be {PAD!r}, and only those.")


def _as_dt(dt: Any) -> float:
    """``dt`` as a positive finite float, or an error naming it."""
    bad_type = isinstance(dt, (bool, np.bool_, str, bytes)) or np.ndim(dt) != 0
    if not bad_type:
        try:
            dt = float(dt)
        except (TypeError, ValueError):
            bad_type = True
    if bad_type:
        raise TypeError(f"dt must be a positive finite number (the time between samples, in time_units); found "
                        f"{dt!r} of type {type(dt).__name__}. Pass a number, e.g. dt=1.0 (steps) or dt=0.01 "
                        f"with time_units='s'.")
    if not np.isfinite(dt) or dt <= 0:
        raise ValueError(f"dt must be a positive finite number; found {dt}.")
    return dt


def _check_schema_version(schema: Any) -> None:
    if not isinstance(schema, str) or not schema.startswith(_SCHEMA_PREFIX):
        raise RecordingError(
            f"attribute 'schema' is {schema!r}; expected {SCHEMA!r}. This is not a dynatools "
            f"recording."
        )
    version = schema[len(_SCHEMA_PREFIX):]
    if version != str(SCHEMA_VERSION):
        raise RecordingError(
            f"the recording uses schema version {version!r}, but this dynatools reads version "
            f"{SCHEMA_VERSION} ({SCHEMA!r}). Install the dynatools version that wrote it, or "
            f"re-export the recording with this one."
        )


# -- attributes <-> netCDF -------------------------------------------------------------------------

#: Attribute names that xarray's CF decoding takes when a file is opened (a global ``coordinates``
#: names coordinate variables and disappears from ``attrs``). They are stored under
#: ``_ESCAPE + name`` and renamed back by :func:`open_recording`.
_CF_RESERVED = ("coordinates",)
_ESCAPE = "_dynatools_attr_"


def _needs_json(value: Any) -> bool:
    if value is None or isinstance(value, (dict, list, tuple, bool, np.bool_)):
        return True
    if isinstance(value, str) and "\x00" in value:
        return True  # netCDF ends a string at NUL; JSON writes it as \u0000
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        return True  # beyond netCDF's int64
    return isinstance(value, np.ndarray) and value.dtype.kind in "bUSO"


def _check_storable(key: str, value: Any) -> None:
    ok_scalar = isinstance(value, (str, int, float, np.integer, np.floating))
    ok_array = isinstance(value, np.ndarray) and value.dtype.kind in "iuf" and value.ndim <= 1
    if not (ok_scalar or ok_array):
        raise RecordingError(
            f"attribute {key!r} of type {type(value).__name__} cannot be stored in netCDF; use a "
            f"string, number, 1-D numeric array, or a JSON-compatible dict/list (dates as ISO "
            f"strings)."
        )


def _to_jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _encode_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    encoded: list[str] = []
    for key, value in attrs.items():
        if key == _JSON_LIST_ATTR or (isinstance(key, str) and key.startswith(_ESCAPE)):
            raise RecordingError(
                f"attribute {key!r} uses a name reserved for dynatools' own encoding of attributes (found in a "
                f"Dataset opened with xarray.open_dataset rather than dynatools.open_recording?). Open the "
                f"file with dynatools.open_recording, or rename or delete the attribute.")
        stored = _ESCAPE + key if key in _CF_RESERVED else key
        if _needs_json(value):
            try:
                out[stored] = json.dumps(_to_jsonable(value))
            except (TypeError, ValueError, RecursionError) as exc:
                raise RecordingError(
                    f"attribute {key!r} holds a value JSON cannot encode ({type(exc).__name__}: {exc}); use "
                    f"strings, numbers, lists and dicts of them (without cycles)."
                ) from exc
            encoded.append(stored)
        else:
            _check_storable(key, value)
            out[stored] = value
    if encoded:
        out[_JSON_LIST_ATTR] = json.dumps(encoded)
    return out


def _load_json(key: str, raw: Any) -> Any:
    try:
        return json.loads(raw)
    except (TypeError, ValueError, RecursionError) as exc:
        why = ("nested too deeply" if isinstance(exc, RecursionError) else
               f"found {type(raw).__name__}, not JSON text" if not isinstance(raw, (str, bytes)) else
               f"{type(exc).__name__}: {exc}")
        raise RecordingError(f"attribute {key!r} should hold JSON but could not be decoded ({why}): "
                             f"{str(raw)[:80]!r}. "
                             f"The file's attributes are damaged: fix or delete the attribute.") from exc


def _decode_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(attrs)
    raw = out.pop(_JSON_LIST_ATTR, None)
    if raw is not None:
        keys = _load_json(_JSON_LIST_ATTR, raw)
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise RecordingError(
                f"attribute {_JSON_LIST_ATTR!r} is {str(raw)[:80]!r}; expected a JSON list of the names of the "
                f"JSON-encoded attributes, e.g. '[\"config\"]'. The file's attributes are damaged: fix the "
                f"attribute, or delete it to read the listed attributes as plain strings.")
        for key in keys:
            if key in out:        # a listed attribute deleted since is no error
                out[key] = _load_json(key, out[key])
    for key in [k for k in out if isinstance(k, str) and k.startswith(_ESCAPE)]:
        out[key[len(_ESCAPE):]] = out.pop(key)
    return out


def _map_attrs(ds: xr.Dataset, fn) -> xr.Dataset:
    ds = ds.copy()
    ds.attrs = fn(ds.attrs)
    for var in ds.variables.values():
        var.attrs = fn(var.attrs)
    return ds


def save_recording(ds: xr.Dataset, path: str | os.PathLike, *, encoding: Mapping | None = None) -> Path:
    """Validate ``ds`` and write it to a netCDF4 file atomically.

    The data go to a temporary file in the destination folder, which is renamed over ``path``
    only once complete: a crash never leaves a partial file under the final name.

    Parameters
    ----------
    ds : xarray.Dataset
        A recording (checked with :func:`validate` first).
    path : str or path-like
        Destination, conventionally ``*.nc``.
    encoding : mapping, optional
        Per-variable netCDF encoding passed to :meth:`xarray.Dataset.to_netcdf`, e.g.
        ``{"activity": {"zlib": True, "complevel": 4}}``.

    Returns
    -------
    pathlib.Path
        The path written.

    Examples
    --------
    >>> import numpy as np, dynatools as dt, tempfile, os
    >>> rec = dt.from_array(np.ones((1, 10, 2)), config={"lr": 0.05}, fixed_tau=False)
    >>> p = dt.save_recording(rec, os.path.join(tempfile.mkdtemp(), "rec.nc"))
    >>> dt.open_recording(p).attrs["config"]
    {'lr': 0.05}
    """
    validate(ds)
    return write_netcdf_atomic(_map_attrs(ds, _encode_attrs), path, encoding=encoding)


def write_netcdf_atomic(ds: xr.Dataset, path: str | os.PathLike, *, encoding: Mapping | None = None) -> Path:
    """Write any Dataset to netCDF4 through a temporary file and an atomic rename."""
    from dynatools._atomic import write_atomic

    return write_atomic(path, lambda tmp: ds.to_netcdf(tmp, engine="netcdf4", format="NETCDF4",
                                                       encoding=dict(encoding or {})))


def open_recording(path: str | os.PathLike, *, chunks: Mapping[str, int] | str | None = None) -> xr.Dataset:
    """Open a recording written by :func:`save_recording` (or any schema-1 netCDF file).

    Parameters
    ----------
    path : str or path-like
        A netCDF4 file.
    chunks : mapping or "auto", optional
        Open lazily as dask arrays with these chunks (e.g. ``{"unit": 100}``); needs dask. Chunk
        over ``unit`` or ``trial``, never over ``time``, for the timescale analysis: with a
        mapping, ``time`` is one chunk unless you name it.

    Returns
    -------
    xarray.Dataset
        The recording, with JSON-encoded attributes decoded. Data are read lazily.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    RecordingError
        If the file is not readable netCDF (e.g. truncated), or not a schema-1 recording.

    Examples
    --------
    >>> import dynatools as dt
    >>> rec = dt.open_recording(dt.demo_path())
    >>> rec.activity.dims
    ('trial', 'time', 'unit')
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such recording: {str(path)!r}.")
    if path.is_dir():
        raise RecordingError(f"{str(path)!r} is a folder; expected a netCDF4 file (*.nc).")
    if isinstance(chunks, Mapping):
        # one chunk along time unless asked otherwise: files written in time blocks (the
        # RecordingWriter's) would otherwise be split along time, which the timescales refuse
        chunks = {"time": -1, **chunks}
    try:
        ds = xr.open_dataset(path, engine="netcdf4", chunks=chunks, decode_times=False)
    except (OSError, ValueError, RuntimeError) as exc:
        raise RecordingError(
            f"could not read {str(path)!r} as netCDF4 ({type(exc).__name__}: {exc}). The file "
            f"may be truncated or not a netCDF file; write it again with "
            f"dynatools.save_recording."
        ) from exc
    ds = _map_attrs(ds, _decode_attrs)
    validate(ds)
    return ds


class RecordingWriter:
    """Write a recording too large for memory, one time chunk at a time, atomically.

    The static part (coordinates, per-unit coordinates, weights, period labels, attributes) is
    written first; the time-long variables (``activity`` and any of ``input``, ``target``,
    ``output``) are then filled chunk by chunk with :meth:`write`. Everything goes to a temporary
    file that replaces ``path`` only in :meth:`close`, after the result passed :func:`validate`; an
    error or :meth:`abort` deletes it, so no partial file is ever left under ``path``; so does
    closing a writer before every time step of every streamed variable was written.

    Parameters
    ----------
    path : str or path-like
        Destination ``*.nc``; its folder must exist.
    n_trials, n_time, n_units : int
        Shape of ``activity``.
    n_members : int, optional
        Number of ensemble members: ``activity`` gets a leading ``member`` dim, and streamed
        variables may have one (name it in their dims).
    dt : float, default=1.0
    time_units : {"step", "s"}, default="step"
    dtype : str, default="float32"
        Type of ``activity`` (float32 or float64).
    streamed : mapping, optional
        Other time-long variables: ``name -> (dims, dtype)``, dims from the schema, e.g.
        ``{"input": (("trial", "time", "input_dim"), "float32")}``.
    sizes : mapping, optional
        Lengths of dims that only the streamed variables use (e.g. ``{"input_dim": 1}``).
    **coords_and_attrs
        As for :func:`from_array`: ``member``, ``trial``, ``unit``, per-unit coordinates,
        ``period`` (``(time,)`` or ``(trial, time)`` labels), ``trial_length`` (padded trials:
        float blocks written at padded steps are stored as NaN, and ``period`` as ``"pad"``
        there), static variables (``W_rec``, ...) and global attributes.

    Examples
    --------
    >>> import numpy as np, dynatools as dt, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "big.nc")
    >>> with dt.RecordingWriter(path, n_trials=2, n_time=6, n_units=3, model="demo") as w:
    ...     w.write("activity", 0, np.ones((2, 4, 3)))
    ...     w.write("activity", 4, np.zeros((2, 2, 3)))
    >>> dt.open_recording(path).activity.sum().item()
    24.0

    An ensemble of 2 members with padded trials:

    >>> path = os.path.join(tempfile.mkdtemp(), "ens.nc")
    >>> with dt.RecordingWriter(path, n_members=2, n_trials=2, n_time=4, n_units=3, trial_length=[4, 2],
    ...                         period=["delay"] * 4) as w:
    ...     w.write("activity", 0, np.ones((2, 2, 4, 3)))
    >>> rec = dt.open_recording(path)
    >>> rec.activity.dims, int(rec.activity.isnull().sum()), rec.period.values[1].tolist()
    (('member', 'trial', 'time', 'unit'), 12, ['delay', 'delay', 'pad', 'pad'])
    """

    def __init__(self, path: str | os.PathLike, *, n_trials: int, n_time: int, n_units: int,
                 n_members: int | None = None, dt: float = 1.0, time_units: str = "step",
                 dtype: str = "float32", streamed: Mapping[str, tuple[tuple[str, ...], str]] | None = None,
                 sizes: Mapping[str, int] | None = None, **coords_and_attrs: Any) -> None:
        import netCDF4

        from dynatools._atomic import temporary_beside

        self.path = Path(path)
        if np.dtype(dtype) not in (np.float32, np.float64):
            raise RecordingError(f"dtype={dtype!r}: activity must be float32 or float64.")
        kw = dict(coords_and_attrs)
        lengths = kw.pop("trial_length", None)
        labels = kw.pop("period", None)
        # the time-long coordinates are checked on a one-unit stand-in with the real time axis
        probe_shape = (n_trials, int(n_time), 1)
        probe = from_array(np.zeros(probe_shape, dtype="float32"), dt=dt, time_units=time_units,
                           **({"trial": kw["trial"]} if "trial" in kw else {}),
                           **({"trial_length": lengths} if lengths is not None else {}),
                           **({"period": labels} if labels is not None else {}))
        if n_members is not None:
            shape, dims = (int(n_members), n_trials, 1, n_units), ENSEMBLE_DIMS
        else:
            shape, dims = (n_trials, 1, n_units), ACTIVITY_DIMS
        static = from_array(np.zeros(shape, dtype=dtype), dt=dt, dims=dims, time_units=time_units, **kw)
        self.attrs = dict(static.attrs)
        static = static.drop_vars(["activity", "time"])
        self._lengths = None
        if "trial_length" in probe.coords:
            static = static.assign_coords(trial_length=probe["trial_length"].variable)
            self._lengths = np.asarray(probe["trial_length"].values)
        self.n_time = int(n_time)
        variables = {"activity": (dims, str(np.dtype(dtype)))}
        for name, (vdims, vtype) in dict(streamed or {}).items():
            base = tuple(vdims)[1:] if n_members is not None and tuple(vdims)[:1] == (MEMBER_DIM,) else tuple(vdims)
            if name not in OPTIONAL_VARIABLES or base not in OPTIONAL_VARIABLES[name] or "time" not in base:
                raise RecordingError(
                    f"streamed variable {name!r} with dims {tuple(vdims)}: only input, target and "
                    f"output with a 'time' dim of the schema can be streamed"
                    + (" (with a leading 'member' dim for an ensemble)." if n_members is not None else "."))
            variables[name] = (tuple(vdims), str(np.dtype(vtype)))
        self._tmp = temporary_beside(self.path)
        try:
            _map_attrs(static, _encode_attrs).to_netcdf(self._tmp, engine="netcdf4", format="NETCDF4")
            nc = netCDF4.Dataset(self._tmp, "a")
            self._nc = nc
            nc.createDimension("time", self.n_time)
            for dim, size in dict(sizes or {}).items():
                if dim not in nc.dimensions:
                    nc.createDimension(dim, int(size))
            tvar = nc.createVariable("time", "f8", ("time",))
            tvar[:] = np.arange(self.n_time) * float(dt)
            tvar.units = time_units
            if "period" in probe.coords:
                pvar = nc.createVariable("period", str, tuple(probe["period"].dims))
                pvar[:] = np.asarray(probe["period"].values, dtype=object)
            for name, (vdims, vtype) in variables.items():
                missing = [d for d in vdims if d not in nc.dimensions]
                if missing:
                    raise RecordingError(f"dims {missing} of {name!r} have no length; pass sizes=.")
                chunks = [1 if d in ("trial", MEMBER_DIM) else min(nc.dimensions[d].size, 4096) if d == "time"
                          else nc.dimensions[d].size for d in vdims]
                var = nc.createVariable(name, vtype, vdims, chunksizes=chunks)
                if "period" in probe.coords:
                    var.coordinates = "period"
            self._vars = variables
            self._written = {name: np.zeros(self.n_time, dtype=bool) for name in variables}
        except BaseException:
            self.abort()
            raise

    def write(self, name: str, start: int, values: Any) -> None:
        """Store ``values`` (the variable's dims, any length along time) at times ``start:...``.

        Float values at the padded steps of trials shorter than the time axis (``trial_length``)
        are stored as NaN."""
        if name not in self._vars:
            raise KeyError(f"{name!r} is not a streamed variable of this writer ({sorted(self._vars)}).")
        values = np.asarray(values)
        var = self._nc.variables[name]
        dims = self._vars[name][0]
        t = dims.index("time")
        expected = tuple(var.shape[:t]) + ("any",) + tuple(var.shape[t + 1:])
        if values.ndim != var.ndim or values.shape[:t] + values.shape[t + 1:] != var.shape[:t] + var.shape[t + 1:]:
            raise ValueError(f"{name}: block of shape {values.shape} does not fit {var.dimensions} "
                             f"= {expected} (any length along time).")
        stop = start + values.shape[t]
        if start < 0 or stop > self.n_time:
            raise ValueError(f"times {start}:{stop} fall outside 0:{self.n_time}.")
        if self._lengths is not None and np.issubdtype(values.dtype, np.floating) and "trial" in dims:
            pad = np.arange(start, stop)[None, :] >= self._lengths[:, None]        # (trial, time)
            if pad.any():
                shape = [1] * values.ndim
                shape[dims.index("trial")], shape[t] = pad.shape
                order = sorted([dims.index("trial"), t])
                mask = pad if order[0] == dims.index("trial") else pad.T
                values = np.where(mask.reshape(shape), np.nan, values)
        index = (slice(None),) * t + (slice(start, stop),)
        var[index] = values
        self._written[name][start:stop] = True

    def close(self) -> Path:
        """Finish the file, check it against the schema and move it to ``path``."""
        from dynatools._atomic import commit

        try:
            for name, done in self._written.items():
                if not done.all():
                    missing = np.flatnonzero(~done)
                    raise RecordingError(
                        f"{name}: times {missing[0]}..{missing[-1]} ({missing.size} of "
                        f"{self.n_time}) were never written; the file is discarded.")
            self._nc.close()
            with xr.open_dataset(self._tmp, engine="netcdf4", decode_times=False) as ds:
                validate(_map_attrs(ds, _decode_attrs))
            commit(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        return self.path

    def abort(self) -> None:
        """Discard the temporary file (nothing is written under ``path``)."""
        from dynatools._atomic import discard

        nc = getattr(self, "_nc", None)
        if nc is not None and nc.isopen():
            nc.close()
        discard(self._tmp)

    def __enter__(self) -> "RecordingWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
