"""Result files cached next to the data they were computed from (``RUN_DIR/analysis/``).

A cached netCDF file carries a ``cache_key`` attribute: the JSON of everything that determines it
(the source file's size and modification time, the parameters, the software version). A file is
reused only when its key equals the one asked for; it is (re)written atomically.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import xarray as xr

from dynatools import __version__


def file_stamp(path: str | Path) -> str:
    """Size and modification time of ``path``: changes when the file is rewritten."""
    st = Path(path).stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def cache_key(**parts: Any) -> str:
    """The JSON key of a result: ``parts`` plus the software version."""
    return json.dumps({**parts, "software": __version__}, sort_keys=True)


def is_valid(path: str | Path, key: str) -> bool:
    """True if ``path`` is a readable netCDF file whose ``cache_key`` equals ``key``."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        with xr.open_dataset(path) as ds:
            return ds.attrs.get("cache_key") == key
    except (OSError, ValueError):
        return False


def cached(path: str | Path, key: str, compute: Callable[[], xr.Dataset]) -> xr.Dataset:
    """The Dataset cached at ``path`` under ``key``, or ``compute()`` written there atomically."""
    from dynatools.recording import write_netcdf_atomic

    if is_valid(path, key):
        return xr.load_dataset(path)
    ds = compute()
    ds.attrs["cache_key"] = key
    write_netcdf_atomic(ds, path)
    return ds
