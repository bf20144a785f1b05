"""What every screen of the console shares: the signed-in ``Console``, blocking work in thread
workers with progress, and errors shown as notifications with a title and a message — never a
traceback. Screens hold no business rule: they call ``ca.client.console.Console``, a client of
the authority service."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, TypeVar, cast

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import HorizontalGroup
from textual.message import Message
from textual.message_pump import MessagePump
from textual.screen import Screen
from textual.widgets import Footer
from textual.widgets._footer import FooterKey
from textual.worker import Worker

from ca.client.console import Console, session_over
from ca.core.errors import JtcaError

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


class ConsoleFooter(Footer):
    """The footer of every console screen: the screen's keys (those the officer's roles do not
    allow dimmed), and on the right, never cut however many keys the screen has, ``^o Sign
    out`` and ``^p palette`` (Textual's footer lists the app's keys last, so at 80 columns a
    screen with many keys cut "Sign out" and squeezed the palette's hint)."""

    PINNED: ClassVar[tuple[str, ...]] = ("sign_out", "app.sign_out")
    DEFAULT_CSS = """
    ConsoleFooter #pinned { dock: right; width: auto; height: 1; }
    ConsoleFooter #pinned FooterKey { width: auto; }
    ConsoleFooter #pinned FooterKey.-command-palette { dock: none; }
    """

    def on_mount(self) -> None:
        super().on_mount()
        # mounted on a screen already shown (the console dresses its screens), the footer
        # would wait for the next change of bindings to show its keys: show them now
        self._bindings_ready = True
        self.call_after_refresh(self.recompose)

    def compose(self) -> ComposeResult:
        if not self._bindings_ready:
            return
        active = self.screen.active_bindings
        palette = self.app.COMMAND_PALETTE_BINDING
        pinned: list[FooterKey] = []
        seen: set[str] = set()
        for key, (_node, binding, enabled, tooltip) in active.items():
            if not binding.show or binding.action in seen:
                continue
            seen.add(binding.action)
            item = FooterKey(
                binding.key,
                self.app.get_key_display(binding),
                binding.description,
                binding.action,
                disabled=not enabled,
                tooltip=tooltip,
            )
            if binding.action in self.PINNED:
                pinned.append(item)
            elif key != palette:
                yield item.data_bind(compact=Footer.compact)
        if self.show_command_palette and self.app.ENABLE_COMMAND_PALETTE and palette in active:
            _node, binding, enabled, tooltip = active[palette]
            pinned.append(
                FooterKey(
                    binding.key,
                    self.app.get_key_display(binding),
                    binding.description,
                    binding.action,
                    classes="-command-palette",
                    disabled=not enabled,
                    tooltip=binding.tooltip or binding.description,
                )
            )
        with HorizontalGroup(id="pinned"):
            yield from pinned


class ConsoleScreen(Guarded, Screen[None]):
    """A screen of the console, given the signed-in officer's ``Console``.

    ``KEY`` is its navigation key, ``TITLE`` its name in the navigation bar, ``SHORT`` the
    abbreviation the bar uses when the terminal is too narrow for every title (empty: the
    title), ``ACTIONS`` the policy actions of which the officer needs at least one to see it
    (empty: everyone).
    """

    KEY: ClassVar[str] = ""
    TITLE: ClassVar[str] = ""
    SHORT: ClassVar[str] = ""
    ACTIONS: ClassVar[tuple[str, ...]] = ()
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "back", "Back", show=False),  # q closes this screen: back, not quit
    ]

    def __init__(self, console: Console) -> None:
        super().__init__()
        self.console = console
        # the screen's actions the officer's roles do not allow are shown dimmed (footer, help)
        # and say which role they need when pressed: ``allowed`` (action → may) and ``needs``
        # (action → the policy actions of which one is needed), filled by each screen
        self.allowed: dict[str, bool] = {}
        self.needs: dict[str, tuple[str, ...]] = {}

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """None (shown dimmed) for an action the officer's roles do not allow."""
        return self.permitted(action)

    def permitted(self, action: str) -> bool | None:
        return None if self.allowed.get(action) is False else True

    def denied(self, action: str) -> bool:
        return self.allowed.get(action) is False

    def action_back(self) -> None:
        """Back to the screen shown before this one (the console's app keeps the way)."""
        back = getattr(self.app, "back", None)
        if back is not None:
            self.run_worker(back(), group="navigation")

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
