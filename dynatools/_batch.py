"""Batch dims: analyses run once per entry of the dims they do not use (e.g. an ensemble's
``member``) and keep those dims, leading, in their result (DESIGN: "Every analysis treats dims it
does not use as batch dims and keeps them in its result").

Analyses written with ``xarray.apply_ufunc`` get this for free; :func:`over_batch` is for those
whose kernel needs a whole (trial, time, unit) block or a whole matrix at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import xarray as xr

__all__ = ["over_batch", "batch_dims"]


def batch_dims(obj: xr.DataArray, used: Any) -> list[str]:
    """The dims of ``obj`` that are not in ``used``, in ``obj``'s order."""
    used = set(used)
    return [str(d) for d in obj.dims if d not in used]


def over_batch(da: xr.DataArray, batch: list[str], fn: Callable[[xr.DataArray, str], Any]) -> Any:
    """``fn(da_b, where)`` for every index b of the ``batch`` dims, stacked with those dims leading
    (coordinates on them kept; attrs those of the first result).

    ``where`` labels the entry for messages (``"member 2, "``; ``""`` without batch dims). Each
    ``da_b`` is a lazy ``isel``, so chunked reading is kept. Every result must have the same
    variables, dims and shapes."""
    if not batch:
        return fn(da, "")
    sizes = [da.sizes[d] for d in batch]
    outs = []
    for idx in np.ndindex(*sizes):
        sel = dict(zip(batch, idx))
        label = ", ".join(f"{d} {da[d].values[i].item() if d in da.coords else i}" for d, i in sel.items())
        outs.append(fn(da.isel(sel), f"{label}, "))
    coords = {str(c): v.variable for c, v in da.coords.items() if v.dims and set(v.dims) <= set(batch)}

    def stacked(first: xr.DataArray, name: Any) -> xr.Variable:
        values = np.stack([np.asarray(o[name].values if name is not None else o.values) for o in outs])
        return xr.Variable(batch + list(first.dims), values.reshape(sizes + list(first.shape)), first.attrs)

    first = outs[0]
    if isinstance(first, xr.Dataset):
        out = xr.Dataset({k: stacked(v, k) for k, v in first.data_vars.items()}, coords=first.coords,
                         attrs=first.attrs)
    else:
        out = xr.DataArray(stacked(first, None), coords=first.coords, name=first.name)
        out.attrs = first.attrs
    return out.assign_coords(coords).transpose(*batch, ...)
