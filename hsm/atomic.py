"""Replacing a file so that a reader never sees a partial one, and naming its writer.

The one atomic writer of the tree: ``ca.core.files.write_atomically`` (lists, packages, reports) and
``hsm.pkcs11.token.write_secret_file`` (a token's trusted wrapping key beside its PIN file)
both call ``replace_atomically`` and translate its ``OSError`` into their own typed errors.

A temporary file is ``.<name>.<pid>-<start>.<random>.tmp`` in the target's folder: created
with ``O_EXCL`` (never a file or link planted there), mode 0600 until it is whole, fsync'd,
renamed over the target (a link in its place is replaced, never followed), the folder fsync'd.
``<pid>-<start>`` names the writer, so a sweep (``ca.core.files.sweep_temporary``) can tell a file a
dead process left from one a live writer is about to rename. Pure: no token, no database.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Final

TEMP_SUFFIX: Final = ".tmp"


def process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot, or None when it does not exist or
    is dead: a zombie (state Z or X) killed by SIGKILL and not yet reaped by its parent —
    in a container whose first process does not reap, it stays one for good."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            text = stat.read()
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may hold spaces or parentheses
    fields = text[text.rfind(")") + 2 :].split()
    if not fields or fields[0] in ("Z", "X", "x"):
        return None
    return fields[19] if len(fields) > 19 else None


# this process as a writer (computed once: the start time does not change)
WRITER: Final = f"{os.getpid()}-{process_start(os.getpid()) or 0}"


def replace_atomically(
    path: Path,
    data: bytes | bytearray,
    *,
    mode: int = 0o644,
    before_rename: Callable[[], None] | None = None,
) -> None:
    """Write ``data`` whole to a fresh temporary file beside ``path`` and rename it over
    ``path``; raises ``OSError`` (the temporary file removed). ``data`` is written from its own
    buffer (a ``bytearray`` secret is never copied into an immutable ``bytes``).
    ``before_rename`` runs between the whole temporary file and its rename (a crash point)."""
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{WRITER}.", suffix=TEMP_SUFFIX, dir=directory)
    try:
        with os.fdopen(fd, "wb", buffering=0) as out:
            view = memoryview(data)
            while view:
                view = view[out.write(view) or 0 :]
            os.fsync(out.fileno())
        os.chmod(tmp, mode)
        if before_rename is not None:
            before_rename()
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # not every filesystem lets a folder be fsync'd
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
