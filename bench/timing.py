"""What every benchmark of ``bench/`` times with: operations per second of a callable, run for
a given number of seconds (these machines are shared and noisy: only ratios against a baseline
measured in the same run mean anything)."""

from __future__ import annotations

import time
from collections.abc import Callable


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls of ``fn`` per second, over at least ``seconds``."""
    return rate_and_count(fn, seconds)[0]


def rate_and_count(fn: Callable[[], object], seconds: float) -> tuple[float, int]:
    """Calls of ``fn`` per second over at least ``seconds``, and how many calls were made."""
    n, start = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return n / elapsed, n
