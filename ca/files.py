"""Writing files so that a reader never sees a partial one (lists, packages, reports)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from ca.errors import BadInput
from hsm.crashpoints import crash_point


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to a fresh temporary file in ``path``'s directory, fsync it, rename it
    over ``path`` and fsync the directory: a reader sees the old file or the new one, whole,
    and the new one survives a power cut once this returns. Two writers never share a
    temporary file."""
    directory = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise BadInput(f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        crash_point("files.write:before-rename")  # the temporary file whole, not yet in place
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise BadInput(f"cannot write {path}: {exc.strerror}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be fsync'd
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
