"""Small file-system helpers shared by the savers (checkpoints, trainer state, spaCy components)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically.

    The bytes go to a temporary file in the same folder, which is flushed, fsynced and then
    moved over ``path`` with ``os.replace``. A crash mid-write therefore leaves either the
    old file or the new one, never a half-written file. The temp file is removed on failure.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, _file_mode(path))  # mkstemp's 0600 -> what a plain open() would give
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    fsync_path(directory)


def _file_mode(path: Path) -> int:
    """The permission bits of the existing file at `path`, else 0o666 less the umask."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        pass
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf8") -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write_bytes`)."""
    atomic_write_bytes(path, text.encode(encoding))


def fsync_path(path: str | Path) -> None:
    """Best-effort fsync of a file or folder (a folder's fsync makes renames in it durable);
    a no-op where the platform does not support it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
