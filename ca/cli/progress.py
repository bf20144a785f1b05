"""A progress bar on standard error for long work (verifying a long log, many keys), drawn only
when standard error is a terminal and the output is not ``--json``: piped or machine-read
output carries no progress noise. Pure standard library; the bar is erased when the work ends.

Work done here is ``tracked`` item by item (a token backup, a log bundle); work the service
does in one call (generating an application's keys, publishing the lists, verifying the log
in the database) is ``awaited``: the call carries a progress token and the bar draws what the
service reports under it.
"""

from __future__ import annotations

import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Final, Protocol, TextIO, TypeVar

T = TypeVar("T")

WIDTH: Final = 30  # characters of the bar itself
MIN_TOTAL: Final = 200  # less work than this is over before a bar would help
REDRAW_SECONDS: Final = 0.1


class Progress:
    """``update(done)`` redraws ``label [#####.....] 40% 400/1000`` at most every tenth of a
    second; ``close()`` erases it. Disabled (every call a no-op) unless ``stream`` is a TTY."""

    def __init__(
        self,
        label: str,
        total: int,
        *,
        stream: TextIO | None = None,
        enabled: bool = True,
        min_total: int = MIN_TOTAL,
    ) -> None:
        self.label = label
        self.total = max(total, 0)
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled and self.total >= min_total and _is_tty(self.stream)
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


# -- one long service call -----------------------------------------------------------------------
R = TypeVar("R")
POLL_SECONDS: Final = 0.2
QUIET_SECONDS: Final = 0.5  # a call answered sooner draws nothing


class Reported(Protocol):
    what: str
    done: int
    total: int | None


def awaited(
    call: Callable[[str], R],
    poll: Callable[[str], Reported | None],
    *,
    json_output: bool = False,
    stream: TextIO | None = None,
) -> R:
    """``call(token)`` — one service call sent with a fresh progress token — while, on a
    terminal and not with ``--json``, a bar draws what ``poll(token)`` says the service has done
    (``ca.service.progress``). The call runs in a thread; its result or its error is this
    function's. Without a terminal the call is made directly, with no token."""
    out = sys.stderr if stream is None else stream
    if json_output or not _is_tty(out):
        return call("")
    token = secrets.token_urlsafe(32)
    answer: list[R] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            answer.append(call(token))
        except BaseException as exc:  # handed to the caller's thread below
            failure.append(exc)

    worker = threading.Thread(target=run, name="jtca-call", daemon=True)
    started = time.monotonic()
    worker.start()
    bar: Progress | None = None
    try:
        while worker.is_alive():
            worker.join(POLL_SECONDS)
            if not worker.is_alive() or time.monotonic() - started < QUIET_SECONDS:
                continue
            step = poll(token)
            if step is None or not step.total:
                continue
            if bar is None or bar.total != step.total or bar.label != step.what:
                if bar is not None:
                    bar.close()
                bar = Progress(step.what, step.total, stream=out, min_total=1)
            bar.update(step.done)
    finally:
        if bar is not None:
            bar.close()
    if failure:
        raise failure[0]
    return answer[0]
