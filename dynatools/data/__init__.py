"""The small data files shipped with the package: the demo recording and the 8x8 digits.

They live in this folder (``dynatools/data/``) so that every install mode (source checkout,
editable install, regular install, wheel) finds them through :mod:`importlib.resources`. The
scripts that regenerate them stay in the top-level ``datasets/`` folder of the source tree and
write here. Setting the environment variable ``DYNATOOLS_DATASETS`` to a folder makes that folder
take precedence (a file missing there falls back to the shipped copy).

Example
-------
>>> from dynatools.data import shipped_path
>>> shipped_path("digits_8x8.npz").name
'digits_8x8.npz'
"""
from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

#: the files this folder ships; the wheel must contain every one of them
SHIPPED_FILES: tuple[str, ...] = ("demo_timescales.nc", "digits_8x8.npz")

_REGENERATE = {
    "demo_timescales.nc": "python datasets/make_demo_recording.py",
    "digits_8x8.npz": "pip install scikit-learn && python datasets/make_digits.py",
}


def shipped_path(name: str) -> Path:
    """Path of a shipped data file, honouring ``DYNATOOLS_DATASETS``.

    Parameters
    ----------
    name : str
        File name, one of :data:`SHIPPED_FILES` (or any file in the ``DYNATOOLS_DATASETS`` folder).

    Returns
    -------
    pathlib.Path
        ``$DYNATOOLS_DATASETS/name`` when that variable is set and the file exists there, else the
        copy installed with the package (found through :func:`importlib.resources.files`).

    Raises
    ------
    FileNotFoundError
        When the file is in neither place; the message says how to regenerate it.

    Example
    -------
    >>> shipped_path("demo_timescales.nc").suffix
    '.nc'
    """
    env = os.environ.get("DYNATOOLS_DATASETS")
    if env and (Path(env) / name).is_file():
        return Path(env) / name
    resource = resources.files(__name__) / name
    if resource.is_file():
        # the package is installed as plain files (wheel, editable or checkout), so this is a real path
        return Path(str(resource))
    where = f"DYNATOOLS_DATASETS={env} nor " if env else ""
    raise FileNotFoundError(
        f"the shipped data file {name!r} was found in neither {where}the installed package folder "
        f"{Path(str(resources.files(__name__)))}; reinstall dynatools (pip install dynatools) or set "
        f"DYNATOOLS_DATASETS to a folder that holds it. Regenerate it from a source checkout with: "
        f"{_REGENERATE.get(name, 'the scripts in datasets/')}"
    )


__all__ = ["SHIPPED_FILES", "shipped_path"]
