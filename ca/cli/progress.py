"""A progress bar on standard error for long work (verifying a long log, many keys), drawn only
when standard error is a terminal and the output is not ``--json``: piped or machine-read
output carries no progress noise. Pure standard library; the bar is erased when the work ends.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Final, TextIO, TypeVar

T = TypeVar("T")

WIDTH: Final = 30  # characters of the bar itself
MIN_TOTAL: Final = 200  # less work than this is over before a bar would help
REDRAW_SECONDS: Final = 0.1


class Progress:
    """``update(done)`` redraws ``label [#####.....] 40% 400/1000`` at most every tenth of a
    second; ``close()`` erases it. Disabled (every call a no-op) unless ``stream`` is a TTY."""

    def __init__(
        self, label: str, total: int, *, stream: TextIO | None = None, enabled: bool = True
    ) -> None:
        self.label = label
        self.total = max(total, 0)
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled and self.total >= MIN_TOTAL and _is_tty(self.stream)
        self.done = 0
        self._drawn_at = 0.0
        self._width = 0

    def update(self, done: int) -> None:
        self.done = done
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._drawn_at < REDRAW_SECONDS and done < self.total:
            return
        self._drawn_at = now
        share = min(done / self.total, 1.0) if self.total else 1.0
        filled = int(share * WIDTH)
        line = (
            f"{self.label} [{'#' * filled}{'.' * (WIDTH - filled)}] "
            f"{int(share * 100):3d}% {done}/{self.total}"
        )
        self._width = max(self._width, len(line))
        self.stream.write(f"\r{line}")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self._width:
            self.stream.write(f"\r{' ' * self._width}\r")
            self.stream.flush()
        self._width = 0

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or a fake stream
        return False


def tracked(
    items: Iterable[T], total: int, label: str, *, json_output: bool = False
) -> Iterator[T]:
    """``items``, drawing a bar on standard error as they are consumed (not with ``--json``)."""
    with Progress(label, total, enabled=not json_output) as bar:
        for done, item in enumerate(items, 1):
            yield item
            bar.update(done)
