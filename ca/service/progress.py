"""Progress of long operations, for the client's progress bar (issue #17, point 1).

A use case reports ``ctx.progress(what, done, total)`` as it goes; when the request carried a
progress token (``Jtca-Progress``, see ``ca.ops.system``), the board keeps the newest report
under that token, and ``GET /v1/progress/<token>`` answers it without touching the database (so
a poll is never queued behind the operation's own transaction, on SQLite or PostgreSQL).

The board is per process and bounded: at most ``CAPACITY`` tokens (the oldest finished go first,
then the oldest), each forgotten ``KEEP_SECONDS`` after its last report. A token that does not
have the form of 32 random bytes (43 base64url characters) is refused with the request."""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

from ca.core.errors import BadInput
from ca.ops.system import PROGRESS_HEADER, PROGRESS_ID_PATTERN, ProgressView

CAPACITY: Final = 256
KEEP_SECONDS: Final = 600.0
_TOKEN: Final = re.compile(PROGRESS_ID_PATTERN)


class BadProgressToken(BadInput):
    """A ``Jtca-Progress`` header that is not a token (400, naming the header)."""

    field = PROGRESS_HEADER


def check_token(value: str) -> str:
    """The header's token, or '' when none was sent; a malformed one is refused by name."""
    token = value.strip()
    if token and not _TOKEN.fullmatch(token):
        raise BadProgressToken(
            f"{PROGRESS_HEADER}: {token[:20]!r} is not a progress token (43 base64url "
            "characters: 32 random bytes)"
        )
    return token


@dataclass(slots=True)
class _Step:
    what: str
    done: int
    total: int | None
    finished: bool
    at: float


class Board:
    """The newest report of each token (thread-safe: use cases run in worker threads)."""

    def __init__(self, capacity: int = CAPACITY, keep: float = KEEP_SECONDS) -> None:
        self._steps: OrderedDict[str, _Step] = OrderedDict()
        self._lock = threading.Lock()
        self.capacity = capacity
        self.keep = keep

    def report(self, token: str, what: str, done: int, total: int | None) -> None:
        if not token:
            return
        with self._lock:
            self._forget_old(time.monotonic())
            step = self._steps.get(token)
            if step is None:
                self._make_room()
                self._steps[token] = _Step(what, done, total, False, time.monotonic())
            else:
                step.what, step.done, step.total, step.at = what, done, total, time.monotonic()

    def finish(self, token: str) -> None:
        if not token:
            return
        with self._lock:
            step = self._steps.get(token)
            if step is None:
                self._make_room()
                step = self._steps[token] = _Step("", 0, None, True, 0.0)
            step.finished, step.at = True, time.monotonic()

    def read(self, token: str) -> ProgressView | None:
        with self._lock:
            self._forget_old(time.monotonic())
            step = self._steps.get(token)
            if step is None:
                return None
            return ProgressView(
                what=step.what, done=step.done, total=step.total, finished=step.finished
            )

    def __len__(self) -> int:
        return len(self._steps)

    def _forget_old(self, now: float) -> None:
        for token in [t for t, s in self._steps.items() if now - s.at > self.keep]:
            del self._steps[token]

    def _make_room(self) -> None:
        while len(self._steps) >= self.capacity:
            finished = next((t for t, s in self._steps.items() if s.finished), None)
            del self._steps[finished if finished is not None else next(iter(self._steps))]


BOARD: Final = Board()
