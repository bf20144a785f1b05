"""Writing files so that a reader never sees a partial one (lists, packages, reports)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from pathlib import Path

from ca.core.errors import BadInput
from hsm.atomic import TEMP_SUFFIX, process_start, replace_atomically
from hsm.crashpoints import crash_point


def write_atomically(
    path: Path, data: bytes, *, mode: int = 0o644, crash: str = "files.write:before-rename"
) -> None:
    """Write ``data`` to a fresh temporary file in ``path``'s directory, fsync it, rename it
    over ``path`` and fsync the directory (``hsm.atomic.replace_atomically``): a reader sees the
    old file or the new one, whole, and the new one survives a power cut once this returns.
    Two writers never share a temporary file; its name carries the writer
    (``.<name>.<pid>-<start>.<random>.tmp``). ``crash`` names the crash point between the
    temporary file written and its rename (an operation may give its own)."""
    try:
        replace_atomically(path, data, mode=mode, before_rename=lambda: crash_point(crash))
    except OSError as exc:
        raise BadInput(f"cannot write {path}: {exc.strerror}") from None


def _writer_alive(token: str) -> bool:
    pid_text, _, start = token.partition("-")
    if not pid_text.isdigit():
        return False
    found = process_start(int(pid_text))
    return found is not None and found == start


def _dead_writers(paths: Iterable[Path]) -> list[Path]:
    found = []
    for path in paths:
        if not path.is_file() or path.is_symlink():
            continue
        parts = path.name[1 : -len(TEMP_SUFFIX)].rsplit(".", 2)
        writer = parts[1] if len(parts) == 3 else ""
        if writer and _writer_alive(writer):
            continue  # a live writer about to rename it
        found.append(path)
    return sorted(found)


def stray_temporaries(folder: Path, name: str) -> list[Path]:
    """The temporary files of ``write_atomically`` for the file ``name`` that a dead writer left
    in ``folder`` (a process killed between the write and the rename); a live writer's are not
    listed. One whose name says no writer (an older jtca's) is listed too."""
    if not folder.is_dir():
        return []
    return _dead_writers(folder.glob(f".{name}.*{TEMP_SUFFIX}"))


def sweep_temporary(folder: Path, *, recursive: bool = True) -> list[Path]:
    """Remove every temporary file of ``write_atomically`` that a dead writer left in
    ``folder`` (``stray_temporaries`` of any name); returns what was removed. Writers on
    another host sharing the folder are not supported (pids are this host's)."""
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    pattern = f".*{TEMP_SUFFIX}"
    for path in _dead_writers(folder.rglob(pattern) if recursive else folder.glob(pattern)):
        with contextlib.suppress(OSError):
            path.unlink()
            removed.append(path)
    return removed
