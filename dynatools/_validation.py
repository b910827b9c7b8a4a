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
    "resolve_seed",
    "resolve_device",
    "same_device",
    "module_parameter",
    "user_stacklevel",
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
            f"Pass the names your data uses (e.g. time_dim='t'), or rename with "
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


def resolve_seed(seed: Any, name: str = "seed") -> int:
    """The seed to use: ``seed`` itself (an int >= 0), or a fresh one drawn from the operating
    system's entropy when ``seed`` is None. Results store the returned value in ``attrs["seed"]``,
    so passing it back reproduces them (it fits a netCDF int64 attribute)."""
    if seed is None:
        return int(np.random.SeedSequence().generate_state(1, dtype=np.uint32)[0])
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"{name} must be an int >= 0 or None (draw a fresh seed); found {seed!r}. To reproduce "
                        f"an earlier result pass its attrs['seed'].")
    if seed < 0 or seed >= 2**63:
        raise ValueError(f"{name} must be an int in [0, 2**63) or None; found {seed}.")
    return int(seed)


def module_parameter(obj: Any):
    """The first parameter of ``obj`` if it is a ``torch.nn.Module``, or of the module a bound
    method such as ``model.step`` belongs to; else None."""
    import torch

    for owner in (obj, getattr(obj, "__self__", None)):
        if isinstance(owner, torch.nn.Module):
            p = next(owner.parameters(), None)
            if p is not None:
                return p
    return None


def resolve_device(device: Any, model: Any = None, like: Any = None):
    """The device of a torch analysis: ``device`` if given; else where ``model``'s parameters
    are (``model`` a Module or a bound method of one such as ``model.step``); else, for a bare
    step function, where the state tensor ``like`` (the caller's ``h0``) is, so that a function
    closing over tensors runs where they are; else CUDA when available, else CPU.

    An explicit ``device`` that differs from the model's is refused: the analysis would move its
    data but not the model's parameters."""
    import torch

    p = module_parameter(model) if model is not None else None
    if device is None:
        if p is not None:
            return p.device
        if isinstance(like, torch.Tensor):
            return like.device
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device={device!r} is not a torch device; pass e.g. 'cpu', 'cuda', 'cuda:1' or None "
                         f"(the model's device, else CUDA when available, else CPU).") from exc
    if p is not None and not same_device(p.device, dev):
        raise ValueError(f"device={str(dev)!r} but the model's parameters are on {str(p.device)!r}; move the "
                         f"model first (model.to({str(dev)!r})) or pass device=None to use the model's device.")
    return dev


def same_device(a, b) -> bool:
    """``cuda`` and ``cuda:0`` (the current device) are the same place."""
    if a.type != b.type:
        return False
    if a.index is None or b.index is None:
        import torch

        current = torch.cuda.current_device() if a.type == "cuda" and torch.cuda.is_available() else 0
        return (a.index if a.index is not None else current) == (b.index if b.index is not None else current)
    return a.index == b.index


def user_stacklevel() -> int:
    """``stacklevel`` for a ``warnings.warn`` in the function that calls this one, such that the
    warning points at the first caller outside dynatools (the user's line), however deeply the
    library's functions call each other (``analyze_recording`` -> ``timescales`` -> ...)."""
    import sys

    frame = sys._getframe(1)
    level = 1
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if name != "dynatools" and not name.startswith("dynatools."):
            break
        frame = frame.f_back
        level += 1
    return level
