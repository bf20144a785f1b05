"""The checkpoint folder: checkpoints leave the database (issue #13, point 3).

Layout (any web server can serve it; a witness keeps the same layout for its own copies):

    <folder>/checkpoint              the newest checkpoint, with the cosignatures received
    <folder>/checkpoints/<size>      every checkpoint, by tree size (12 digits, zero-padded)

Files are written atomically (``ca.core.files.write_atomically``): a reader sees a whole note or the
previous one. A newer file never replaces ``checkpoint`` with a smaller tree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from ca.core.errors import BadInput
from ca.core.files import write_atomically

MAX_FILE: Final = 64 * 1024


def size_name(size: int) -> str:
    return f"{size:012d}"


class CheckpointFolder:
    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def newest(self) -> Path:
        return self.path / "checkpoint"

    def history(self, size: int) -> Path:
        return self.path / "checkpoints" / size_name(size)

    def write(self, note: str, size: int) -> Path:
        """Keep ``note`` (a checkpoint of ``size`` entries, with any cosignatures) as the file of
        its size, and as the newest unless a larger tree is already there."""
        try:
            (self.path / "checkpoints").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BadInput(
                f"cannot make the checkpoint folder {self.path}: {exc.strerror}"
            ) from None
        data = note.encode("utf-8")
        target = self.history(size)
        write_atomically(target, data)
        newest = self.newest_size()
        if newest is None or newest <= size:
            write_atomically(self.newest, data)
        return target

    def newest_size(self) -> int | None:
        try:
            lines = self.newest.read_bytes()[:MAX_FILE].split(b"\n")
            return int(lines[1])
        except (OSError, IndexError, ValueError):
            return None

    def read_all(self) -> list[tuple[Path, bytes]]:
        """Every checkpoint file here (unchecked bytes: the caller verifies their signatures)."""
        found: list[tuple[Path, bytes]] = []
        candidates = [self.newest]
        history = self.path / "checkpoints"
        if history.is_dir():
            candidates += sorted(p for p in history.iterdir() if p.is_file())
        for path in candidates:
            try:
                with path.open("rb") as f:
                    found.append((path, f.read(MAX_FILE + 1)))
            except OSError:
                continue
        return found
