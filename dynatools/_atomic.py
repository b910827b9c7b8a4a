"""Atomic file writes shared by recordings and checkpoints: temporary file, fsync, rename."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def temporary_beside(path: Path) -> Path:
    """Create an empty hidden temporary file in ``path``'s folder and return its path."""
    if not path.parent.exists():
        raise FileNotFoundError(f"folder {str(path.parent)!r} does not exist; create it first.")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(tmp)


def commit(tmp: Path, path: Path) -> None:
    """fsync ``tmp``, give it the usual permissions (mkstemp makes 0600) and rename it to ``path``."""
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)


def discard(tmp: Path) -> None:
    """Remove ``tmp`` if it exists."""
    if os.path.exists(tmp):
        os.unlink(tmp)


def write_atomic(path: str | os.PathLike, writer) -> Path:
    """Call ``writer(tmp_path)`` to fill a temporary file, then move it over ``path``.

    A failure at any point (including KeyboardInterrupt) removes the temporary file, so no
    partial file is ever left under ``path``.
    """
    path = Path(path)
    tmp = temporary_beside(path)
    try:
        writer(tmp)
        commit(tmp, path)
    except BaseException:
        discard(tmp)
        raise
    return path
