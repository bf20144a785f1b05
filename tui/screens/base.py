"""What every screen of the console shares: the signed-in ``Console``, blocking work in thread
workers with progress, and errors shown as notifications with a title and a message — never a
traceback. Screens hold no business rule: they call ``ca.console.Console``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from textual.screen import Screen
from textual.worker import Worker

from ca.console import Console
from ca.errors import JtcaError

T = TypeVar("T")


def describe_error(exc: BaseException) -> tuple[str, str]:
    """(title, message) for a notification: ours say what was wrong; anything else is an
    internal error named by its type, never a traceback."""
    if isinstance(exc, JtcaError):
        return exc.title, exc.message
    return "Internal error", f"{type(exc).__name__}: {exc}"


class ConsoleScreen(Screen[None]):
    """A screen of the console, given the signed-in officer's ``Console``.

    ``KEY`` is its navigation key, ``TITLE`` its name in the navigation bar, ``ACTIONS`` the
    policy actions of which the officer needs at least one to see it (empty: everyone).
    """

    KEY: ClassVar[str] = ""
    TITLE: ClassVar[str] = ""
    ACTIONS: ClassVar[tuple[str, ...]] = ()

    def __init__(self, console: Console) -> None:
        super().__init__()
        self.console = console

    @classmethod
    def visible_to(cls, console: Console) -> bool:
        return not cls.ACTIONS or any(console.can(a) for a in cls.ACTIONS)

    def fail(self, exc: BaseException) -> None:
        title, message = describe_error(exc)
        self.app.notify(message, title=title, severity="error", timeout=10)

    def run_blocking(
        self,
        work: Callable[[], T],
        *,
        done: Callable[[T], Any] | None = None,
        busy: str = "Working…",
    ) -> Worker[None]:
        """Run ``work`` in a thread worker (tokens and the database block); call ``done`` with
        its result on the UI thread, or show its error as a notification."""
        self.app.notify(busy, timeout=2)

        def job() -> None:
            try:
                result = work()
            except Exception as exc:  # shown to the officer as title + message
                self.app.call_from_thread(self.fail, exc)
                return
            if done is not None:
                self.app.call_from_thread(done, result)

        return self.run_worker(job, thread=True, group="console-work", exit_on_error=False)
