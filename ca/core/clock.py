"""Time is passed in, so a test can stand in 2031 and watch a certificate expire."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> int:
        """Unix seconds, UTC."""
        ...


class SystemClock:
    def now(self) -> int:
        return int(time.time())


class FixedClock:
    """A clock that stands still until moved; for tests and for inspecting at a given time."""

    def __init__(self, at: int | datetime) -> None:
        self._at = to_unix(at)

    def now(self) -> int:
        return self._at

    def set(self, at: int | datetime) -> None:
        self._at = to_unix(at)

    def advance(self, seconds: int) -> None:
        self._at += seconds


def to_unix(at: int | datetime) -> int:
    if isinstance(at, datetime):
        if at.tzinfo is None:
            raise ValueError("a datetime given to a clock must carry a timezone")
        return int(at.timestamp())
    return int(at)


def iso_utc(seconds: int) -> str:
    """ISO-8601 UTC with a Z, as the JSON contract writes times."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
