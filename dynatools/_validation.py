"""Checks of user input, done once at the boundary of each public function.

Every check raises ``ValueError`` or ``TypeError`` with a message that names the argument, what
was expected, what was found, and how to fix it. Kernels behind these checks handle one canonical
case only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import xarray as xr

__all__ = [
    "check_choice",
    "check_positive_int",
    "as_activity",
    "check_core_dims",
    "is_dask",
]


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``choices``, else raise a ValueError listing them."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(
            f"{name}={value!r} is not a valid option; choose one of "
            + ", ".join(repr(c) for c in choices)
            + "."
        )
    return value


def check_positive_int(name: str, value: Any, *, minimum: int = 1) -> int:
    """Return ``value`` as an int if it is an integer >= ``minimum``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer >= {minimum}; found {value!r}.")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; found {value}.")
    return int(value)


def is_dask(obj: xr.DataArray | xr.Dataset) -> bool:
    """True if the DataArray is backed by a dask array."""
    data = obj.data if isinstance(obj, xr.DataArray) else None
    return data is not None and type(data).__module__.startswith("dask")


def as_activity(
    activity: Any,
    *,
    variable: str = "activity",
    default_dims: Sequence[str] = ("trial", "time", "unit"),
) -> xr.DataArray:
    """Normalise what users pass as activity to a float DataArray.

    Accepts a recording Dataset (its ``variable`` is used), a DataArray, or a plain array whose
    axes are named ``default_dims`` (a 2-D array is taken as ``default_dims[1:]``, one trial).
    Rejects empty, integer, boolean and complex data with a message saying how to convert.
    """
    if isinstance(activity, xr.Dataset):
        if variable not in activity.data_vars:
            raise ValueError(
                f"the Dataset has no variable {variable!r} (found: "
                f"{sorted(map(str, activity.data_vars))}); pass the DataArray to analyse, "
                f"e.g. ds['name'], or build a recording with dynatools.from_array."
            )
        da = activity[variable]
    elif isinstance(activity, xr.DataArray):
        da = activity
    elif isinstance(activity, (np.ndarray, list, tuple)) or hasattr(activity, "__array__"):
        arr = np.asarray(activity)
        dims = tuple(default_dims)
        if arr.ndim == len(dims) - 1:
            dims = dims[1:]
        if arr.ndim != len(dims):
            raise ValueError(
                f"a plain array of activity must have {len(default_dims)} axes "
                f"{tuple(default_dims)} (or {len(default_dims) - 1} axes {tuple(default_dims[1:])}); "
                f"found shape {arr.shape}. Wrap it with dynatools.from_array(arr, dims=...) to name "
                f"its axes."
            )
        da = xr.DataArray(arr, dims=dims, name=variable)
    else:
        raise TypeError(
            f"activity must be an xarray Dataset or DataArray or a numpy array; "
            f"found {type(activity).__name__}."
        )
    dtype = da.dtype
    if dtype == bool or np.issubdtype(dtype, np.integer):
        raise TypeError(
            f"activity has integer/boolean dtype {dtype}; the analyses need floating point "
            f"data. Convert it first, e.g. activity.astype('float64')."
        )
    if not np.issubdtype(dtype, np.floating):
        raise TypeError(
            f"activity has dtype {dtype}; expected float32 or float64 (real-valued activity)."
        )
    if da.size == 0:
        raise ValueError(
            f"activity is empty (shape {dict(da.sizes)}); every dimension needs at least one "
            f"element."
        )
    return da


def check_core_dims(da: xr.DataArray, required: Sequence[str]) -> None:
    """Raise a ValueError naming the missing dims, the dims found, and how to rename."""
    missing = [d for d in required if d not in da.dims]
    if missing:
        raise ValueError(
            f"Dimension(s) {missing} not found in the data's dimensions {tuple(map(str, da.dims))}. "
            f"Pass the names your data uses (e.g. dim='t'), or rename with "
            f"da.rename({{'your_name': '{missing[0]}'}})."
        )


def spacing_tolerance(values: Any) -> float:
    """Absolute tolerance for the steps of a sampled coordinate: the rounding of its dtype at its
    largest value (float32 times such as ``arange(T) * 0.001`` are not exactly even)."""
    arr = np.asarray(values)
    if not np.issubdtype(arr.dtype, np.floating) or arr.size == 0:
        return 0.0
    return float(8 * np.finfo(arr.dtype).eps * np.max(np.abs(arr)))


def nonfinite_names(named: Iterable[tuple[Any, Any]]) -> list[str]:
    """Names of the tensors in ``(name, tensor)`` pairs that hold NaN or inf."""
    import torch

    return [str(name) for name, t in named if not bool(torch.isfinite(t).all())]


def check_finite_parameters(named: Iterable[tuple[Any, Any]], what: str = "the model's parameters") -> None:
    """Raise a ValueError naming the parameters that hold NaN or inf."""
    broken = nonfinite_names(named)
    if broken:
        raise ValueError(f"{what} {broken} contain NaN or inf; the network's training diverged or the "
                         f"checkpoint is damaged. Load an earlier checkpoint.")
