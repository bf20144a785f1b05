"""What every screen of the console shares: the signed-in ``Console``, blocking work in thread
workers with progress, and errors shown as notifications with a title and a message — never a
traceback. Screens hold no business rule: they call ``ca.client.console.Console``, a client of
the authority service."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, TypeVar, cast

from textual.message import Message
from textual.message_pump import MessagePump
from textual.screen import Screen
from textual.worker import Worker

from ca.client.console import Console, session_over
from ca.errors import JtcaError

T = TypeVar("T")


def describe_error(exc: BaseException) -> tuple[str, str]:
    """(title, message) for a notification: ours say what was wrong; anything else is an
    internal error named by its type, never a traceback."""
    if isinstance(exc, JtcaError):
        return exc.title, exc.message
    return "Internal error", f"{type(exc).__name__}: {exc}"


class Guarded:
    """Mixin for a message pump (the app, a screen): an exception raised by one of its message
    handlers becomes a notification (title + message) and the pump keeps running.

    Textual 8 hands such an exception to ``App._handle_exception``, which always exits the app,
    and the pump that raised stops processing messages (``_process_messages_loop`` breaks), so
    catching it later would leave a deaf screen; it is caught here, where it is raised."""

    async def _on_message(self, message: Message) -> None:
        try:
            await super()._on_message(message)  # type: ignore[misc]
        except Exception as exc:  # shown to the officer as title + message
            title, text = describe_error(exc)
            app = cast(MessagePump, self).app
            app.notify(text, title=title, severity="error", timeout=10, markup=False)


class ConsoleScreen(Guarded, Screen[None]):
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
        """Show ``exc``; when the service refused the session itself (it expired, or the
        officer was suspended), the console's app signs the officer out (``session_ended``)."""
        ended = getattr(self.app, "session_ended", None)
        if ended is not None and session_over(exc):
            ended(exc)
            return
        title, message = describe_error(exc)
        self.app.notify(message, title=title, severity="error", timeout=10, markup=False)

    def _finish(self, done: Callable[[T], Any], result: T) -> None:
        try:
            done(result)
        except Exception as exc:  # a failing result handler is shown, not raised in the thread
            self.fail(exc)

    def run_blocking(
        self,
        work: Callable[[], T],
        *,
        done: Callable[[T], Any] | None = None,
        busy: str = "Working…",
        quiet: bool = False,
    ) -> Worker[None]:
        """Run ``work`` in a thread worker (tokens and the database block); call ``done`` with
        its result on the UI thread, or show its error as a notification. ``quiet``: no "busy"
        notification (quick reads, refreshes)."""
        if not quiet:
            self.app.notify(busy, timeout=2)

        def job() -> None:
            try:
                result = work()
            except Exception as exc:  # shown to the officer as title + message
                self.app.call_from_thread(self.fail, exc)
                return
            if done is not None:
                self.app.call_from_thread(self._finish, done, result)

        return self.run_worker(job, thread=True, group="console-work", exit_on_error=False)
