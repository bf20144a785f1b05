"""The officers' console (issue #7): sign in, then the screens of ``tui.screens.SCREENS`` that the
officer's policy lets them see, keys 1–9 to switch, ``?`` for help, ctrl+p for the command
palette, ctrl+q to quit.

Signing in is ``jtca login``'s (issue #12): the officer id and the PIN of the officer's own
token (``officer-<id>`` in the embedded SoftHSM2 unless ``--token``/``--module`` say
otherwise) open that token, which signs the service's challenge; the session's requests are
signed, and the token stays open to sign the officer's approvals until they sign out, quit or
the session ends (the service answers 401: back to the sign-in form, saying why).

Blocking work (the officer's token, the service) runs in thread workers. Errors reach the officer
as a notification with a title and a message, never a traceback: message handlers and actions
are guarded where they run (``Guarded``, ``run_action``), and ``_handle_exception`` — which
Textual 8 calls for anything else and which would print a traceback and exit — is overridden to
notify instead. The console holds no business rule: it is a client of the authority service
(``ca.client.console``), given its ``Client`` by whoever starts it (``jtca tui`` connects to
the configured service; tests pass one over the in-process application).
"""

from __future__ import annotations

import importlib
import textwrap
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, Final

from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.containers import Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, Input, Static
from textual.worker import WorkerFailed

from ca.client.console import Console, session_over
from ca.client.http import Client
from ca.core.clock import Clock
from tui.demo_credentials import DemoOfficer, read_demo_officers
from tui.screens import SCREENS
from tui.screens.base import ConsoleFooter, ConsoleScreen, Guarded, describe_error
from tui.screens.forms import FormInput
from tui.screens.panels import WorkProgress

APP_NAME: Final = "jtca — officers' console"
HELP_WIDTH: Final = 70  # the help box's text width


@dataclass(frozen=True, slots=True)
class ScreenEntry:
    key: str
    title: str
    about: str
    cls: type[ConsoleScreen]
    short: str = ""  # the title abbreviated for a narrow terminal (empty: the title)


def load_screens() -> list[type[ConsoleScreen]]:
    """The screen classes of ``SCREENS`` whose modules exist, in navigation order (a module not
    written yet is skipped, so the console runs while the others are built)."""
    found: list[type[ConsoleScreen]] = []
    for module_name, class_name in SCREENS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue
            raise
        found.append(getattr(module, class_name))
    return found


def first_line(doc: str | None) -> str:
    text = " ".join((doc or "").strip().split("\n\n")[0].split())
    return text


def granting_roles(console: Console) -> dict[str, list[str]]:
    """policy action → the roles of the policy in force that grant it (``policy.show``); the
    shipped policy's when the service does not show it to this officer."""
    import tomllib

    from ca.ops import policy

    try:
        text = console.client.call(policy.SHOW, policy.ShowRequest()).text
    except Exception:  # not shown to this officer: the roles of the shipped policy
        import policies

        text = (Path(policies.__file__).parent / "authority.toml").read_text(encoding="utf-8")
    roles = tomllib.loads(text).get("roles", {})
    granting: dict[str, list[str]] = {}
    for role, spec in roles.items():
        for action in spec.get("actions", []) if isinstance(spec, dict) else []:
            granting.setdefault(str(action), []).append(str(role))
    return granting


def display_path(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


# -- chrome shown on every console screen -------------------------------------------------------
class Chrome(Vertical):
    """The two top lines of every console screen (one docked container: Textual overlaps
    widgets docked at the same edge)."""

    DEFAULT_CSS = """
    Chrome { dock: top; height: 2; }
    """


class OfficerBar(Static):
    """Who is signed in: officer id, roles, province."""

    DEFAULT_CSS = """
    OfficerBar { height: 1; background: $primary; color: $text; padding: 0 1; }
    """


def nav_text(entries: list[ScreenEntry], current: str, width: int) -> str:
    """The navigation bar in ``width`` columns: every title if they fit; else the others
    abbreviated (``SHORT``: words, never a cut like 'Cleanu'), then all of them, then the
    numbers with the current title, then the numbers alone."""
    parts: list[str] = []
    for level in range(5):
        parts = []
        for entry in entries:
            here = entry.key == current
            if level == 0 or (here and level in (1, 3)):
                title = entry.title
            elif level < 3:
                title = entry.short or entry.title
            else:
                title = ""
            label = f"{entry.key} {title}".strip()
            parts.append(f"[reverse] {label} [/]" if here else f" {label} ")
        plain = sum(len(p.replace("[reverse]", "").replace("[/]", "")) for p in parts)
        if plain <= width:
            break
    return "".join(parts)


class NavBar(Static):
    """The screens this officer may open, the current one highlighted."""

    DEFAULT_CSS = """
    NavBar { height: 1; background: $boost; padding: 0 1; }
    """

    def __init__(self, entries: list[ScreenEntry], current: str) -> None:
        super().__init__(id="nav")
        self.entries = entries
        self.current = current

    def render(self) -> str:
        return nav_text(self.entries, self.current, max(self.size.width - 2, 20))

    def point_at(self, key: str) -> None:
        self.current = key
        self.refresh()


# -- sign-in ------------------------------------------------------------------------------------
class SignInScreen(Guarded, Screen[None]):
    """Sign in with your officer id and the PIN of your own token."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+t", "demo_pin", "Demo PIN"),
    ]
    DEFAULT_CSS = """
    SignInScreen { align: center middle; }
    SignInScreen #form { width: 64; height: auto; border: round $primary; padding: 0 1; }
    SignInScreen #form Input { margin: 0; }
    SignInScreen .hint { color: $text-muted; }
    """

    def __init__(
        self, officer: str | None, demo_hint: str | None, demo: dict[str, DemoOfficer]
    ) -> None:
        super().__init__()
        self.officer = officer or ""
        self.demo_hint = demo_hint
        self.demo = demo

    def compose(self) -> ComposeResult:
        with Vertical(id="form"):
            yield Static(f"[b]{APP_NAME}[/b]", id="form-title")
            yield Static(
                "Sign in with your officer id and the PIN of your own token.", classes="hint"
            )
            yield FormInput(self.officer, placeholder="officer id", id="officer")
            yield FormInput(placeholder="PIN of your token", password=True, id="pin")
            yield Static("enter: sign in · ctrl+q: quit", classes="hint")
            if self.demo_hint:
                yield Static(
                    f"Demo: credentials in {self.demo_hint}\n"
                    "ctrl+t: the PIN of the demo officer typed",
                    id="demo-hint",
                    markup=False,
                )
            yield WorkProgress()
        yield ConsoleFooter()

    def on_mount(self) -> None:
        self.query_one("#pin" if self.officer else "#officer", Input).focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "demo_pin":
            return bool(self.demo)
        return True

    def action_demo_pin(self) -> None:
        """Fill in the PIN the demo credentials list for the officer typed."""
        officer = self.query_one("#officer", Input).value.strip()
        found = self.demo.get(officer)
        if found is None:
            known = ", ".join(sorted(self.demo))
            self.app.notify(
                f"Type a demo officer's id first ({known}).",
                title="Demo PIN",
                severity="warning",
                markup=False,
            )
            self.query_one("#officer", Input).focus()
            return
        self.query_one("#pin", Input).value = found.pin
        self.query_one("#pin", Input).focus()

    def next_field(self, field: Input) -> Input | None:
        """Where Enter goes, at once (``FormInput``): from the officer id to an empty PIN;
        otherwise it signs in."""
        pin = self.query_one("#pin", Input)
        if field.id == "officer" and not pin.value:
            return pin
        return None

    @on(Input.Submitted)
    def next_or_submit(self, event: Input.Submitted) -> None:
        if event.input.id == "officer" and not self.query_one("#pin", Input).value:
            self.query_one("#pin", Input).focus()
            return
        self.submit()

    def submit(self) -> None:
        officer = self.query_one("#officer", Input).value.strip()
        if not officer:
            self.query_one("#officer", Input).focus()
            self.app.notify("Type your officer id.", title="Sign in", severity="warning")
            return
        pin = self.query_one("#pin", Input).value
        if not pin:
            self.query_one("#pin", Input).focus()
            self.app.notify("Type the PIN of your token.", title="Sign in", severity="warning")
            return
        app = self.app
        if not isinstance(app, JtcaApp):
            return
        progress = self.query_one(WorkProgress)
        if progress.has_class("running"):
            return  # a sign-in is under way
        progress.show("Signing in: your token checks the PIN and signs the challenge…")
        app.sign_in(officer, pin=pin)

    def clear_secrets(self) -> None:
        self.query_one(WorkProgress).hide()
        self.query_one("#pin", Input).value = ""
        self.query_one("#pin", Input).focus()


# -- help ---------------------------------------------------------------------------------------
class HelpScreen(Guarded, ModalScreen[None]):
    """Keys, screens and what each does."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark,f1", "dismiss", "Close"),
    ]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen #help { width: 76; max-height: 22; border: round $primary; padding: 0 1;
                       background: $surface; }
    """

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Static(self.text, id="help-text", markup=False)

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)


# -- command palette ------------------------------------------------------------------------------
class ConsoleCommands(Provider):
    """The current screen's actions ("Keys: Suspend"), "Go to <screen>" for each screen the
    officer may open, "Sign out" — then Textual's own commands (theme, keys, screenshot, quit).

    The console's only provider (``JtcaApp.COMMANDS``): Textual 8 keeps its providers in a set
    and runs them concurrently, and ``SystemCommandsProvider`` sorts its commands by name, so
    with both the built-in commands could come first; one provider yielding ours first keeps
    that order (the palette sorts hits by score, stably: discovery hits all score alike)."""

    def _commands(self) -> Iterable[tuple[str, Callable[[], Any], str]]:
        app = self.app
        if not isinstance(app, JtcaApp):
            return
        if app.signed_in is not None:
            current = app.current_screen
            if current is not None:
                for keys, binding in app.screen_keys(current):
                    yield (
                        f"{current.TITLE}: {binding.description}",
                        partial(app.run_on, current, binding.action),
                        f"key {keys}",
                    )
            for entry in app.entries:
                yield (
                    f"Go to {entry.title}",
                    partial(app.go, entry.key),
                    f"{entry.key}: {entry.about}",
                )
            yield "Sign out", app.action_sign_out, "Close this officer's session"
        for name, about, callback, discover in app.get_system_commands(self.screen):
            if discover:
                yield name, callback, about

    async def discover(self) -> Hits:
        for name, command, about in self._commands():
            yield DiscoveryHit(name, command, help=about)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, command, about in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), command, text=name, help=about)


# -- the app --------------------------------------------------------------------------------------
class JtcaApp(Guarded, App[None]):
    """The officers' console."""

    TITLE = APP_NAME
    COMMANDS: ClassVar[set[type[Provider] | Callable[[], type[Provider]]]] = {ConsoleCommands}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("question_mark,f1", "help", "Help"),
        Binding("ctrl+o", "sign_out", "Sign out"),
        *[Binding(str(n), f"go('{n}')", f"Screen {n}", show=False) for n in range(1, 10)],
    ]
    DEFAULT_CSS = """
    Toast { max-width: 60; }
    """

    def __init__(
        self,
        client: Client,
        *,
        officer: str | None = None,
        demo_credentials: Path | None = None,
        clock: Clock | None = None,
        token_label: str | None = None,
        token_module: str | None = None,
    ) -> None:
        super().__init__()
        self.client = client  # the service, spoken to before sign-in (the sign-in itself)
        self.officer = officer
        self.demo_credentials = demo_credentials
        self.token_label = token_label  # None: officer-<id> (or the demo's label)
        self.token_module = token_module  # None: the embedded SoftHSM2 under the state folder
        self.clock = clock  # None: the service's time (``ca.client.console.ServiceClock``)
        self.signed_in: Console | None = None  # the officer signed in (App.console is Rich's)
        self.entries: list[ScreenEntry] = []
        self.notices: list[tuple[str, str]] = []  # (title, message) of every notification
        self.errors: list[tuple[str, str]] = []  # (title, message) of the error notifications
        self._screens: dict[str, ConsoleScreen] = {}
        self._current = ""
        self._way: list[str] = []  # the screens shown before the current one (q goes back)
        self._granting: dict[str, list[str]] | None = None  # policy action → roles granting it

    def on_mount(self) -> None:
        self.push_screen(self._sign_in_screen())

    def _sign_in_screen(self) -> SignInScreen:
        return SignInScreen(self.officer, self._demo_hint(), self.demo_officers())

    def _demo_hint(self) -> str | None:
        return display_path(self.demo_credentials) if self.demo_credentials else None

    def demo_officers(self) -> dict[str, DemoOfficer]:
        """The demo officers the credentials file lists (none outside the demo)."""
        return read_demo_officers(self.demo_credentials) if self.demo_credentials else {}

    # -- notifications, errors -------------------------------------------------------------
    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: Any = "information",
        timeout: float | None = None,
        markup: bool = True,
    ) -> None:
        self.notices.append((title, message))
        if severity == "error":
            self.errors.append((title, message))
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    def report(self, exc: BaseException) -> None:
        if session_over(exc) and self.signed_in is not None:
            self.session_ended(exc)
            return
        title, text = describe_error(exc)
        self.notify(text, title=title, severity="error", timeout=10, markup=False)

    def _handle_exception(self, error: Exception) -> None:
        """Anything not caught where it was raised (a worker that exits on error, a timer):
        a notification, not Textual's traceback-and-exit."""
        cause = error.error if isinstance(error, WorkerFailed) else error
        try:
            self.report(cause)
        except Exception:  # no screen to notify on: let Textual end the app
            super()._handle_exception(error)

    async def run_action(
        self,
        action: Any,
        default_namespace: Any = None,
        namespaces: Any = None,
    ) -> bool:
        """Actions (key bindings, the palette, links) run here: an error becomes a notification;
        an action of a console screen the officer's roles do not allow (shown dimmed) says which
        roles would allow it instead of doing nothing."""
        if (
            isinstance(action, str)
            and isinstance(default_namespace, ConsoleScreen)
            and default_namespace.denied(action.split("(")[0])
        ):
            self.refuse(default_namespace, action.split("(")[0])
            return True
        try:
            return await super().run_action(action, default_namespace, namespaces)
        except Exception as exc:
            self.report(exc)
            return True

    def refuse(self, screen: ConsoleScreen, action: str) -> None:
        """Say which roles a screen's action needs (the policy in force, read from the service
        once per session in a thread worker)."""
        description = next(
            (
                b.description
                for b in screen.BINDINGS
                if isinstance(b, Binding) and b.action.split("(")[0] == action
            ),
            action,
        )
        needs = screen.needs.get(action, ())

        def work() -> dict[str, list[str]]:
            if self._granting is None:
                self._granting = granting_roles(screen.console)
            return self._granting

        def told(granting: dict[str, list[str]]) -> None:
            roles = sorted({role for need in needs for role in granting.get(need, [])})
            what = " or ".join(needs) or action
            who = (
                f"the role {roles[0]}"
                if len(roles) == 1
                else "one of the roles " + ", ".join(roles)
                if roles
                else "a role that grants it"
            )
            self.notify(
                f"{description} ({what}) needs {who}; you are "
                f"{', '.join(sorted(screen.console.actor.roles))}.",
                title="Not for your role",
                severity="warning",
                markup=False,
            )

        screen.run_blocking(work, done=told, quiet=True)

    # -- sign in / out --------------------------------------------------------------------------
    def sign_in(self, officer: str, *, pin: str) -> None:
        """Open the officer's token with ``pin`` and sign in with it (a thread worker)."""
        client, clock, module = self.client, self.clock, self.token_module
        label = self.token_label
        if label is None:
            demo = self.demo_officers().get(officer)
            label = demo.token_label if demo else None

        def work() -> None:
            from ca.client.console import open_token, sign_in

            try:
                token = open_token(officer, pin, label=label, module=module)
            except Exception as exc:  # a wrong or locked PIN, no such token, no officer key
                self.call_from_thread(self._refused, exc)
                return
            try:
                console = sign_in(client, token, officer, clock=clock)
            except Exception as exc:
                token.close()
                self.call_from_thread(self._refused, exc)
                return
            self.call_from_thread(self.signed_in_as, console)

        self.run_worker(work, thread=True, group="sign-in", exclusive=True, exit_on_error=False)

    def _refused(self, exc: BaseException) -> None:
        title, text = describe_error(exc)
        self.notify(text, title=title, severity="error", timeout=10, markup=False)
        if isinstance(self.screen, SignInScreen):
            self.screen.clear_secrets()

    def signed_in_as(self, console: Console) -> None:
        self.signed_in = console
        self.entries = [
            ScreenEntry(cls.KEY, cls.TITLE, first_line(cls.__doc__), cls, cls.SHORT or cls.TITLE)
            for cls in load_screens()
            if cls.visible_to(console)
        ]
        self.sub_title = console.actor.id
        if self.entries:
            self.run_worker(self.go(self.entries[0].key), group="navigation")

    def officer_line(self, console: Console) -> str:
        actor = console.actor
        where = "ministry"
        if actor.province:
            from ca.registry.divisions import default_divisions

            province = default_divisions().province(actor.province)
            where = f"{province.name if province else ''} ({actor.province})".strip()
        return f"{actor.id} · {', '.join(sorted(actor.roles))} · {where}"

    async def action_sign_out(self) -> None:
        console = await self._leave()
        if console is None:
            return
        self._close(console, sign_out=True)
        self.notify("Signed out.", title="Sign out", timeout=3)

    def session_ended(self, exc: BaseException) -> None:
        """The service refused the session (401: it expired, ended, or the officer or their
        certificate is no longer in force): back to the sign-in form, saying why. A refusal
        arriving after that (another worker's) is not shown again."""
        if self.signed_in is None:
            return
        console, self.signed_in = self.signed_in, None
        _title, text = describe_error(exc)
        self.notify(
            text,
            title="Session ended: sign in again",
            severity="warning",
            timeout=15,
            markup=False,
        )
        self._close(console, sign_out=False)
        self.run_worker(self._leave(console), group="navigation")

    async def _leave(self, console: Console | None = None) -> Console | None:
        """Back to the sign-in form, the officer's screens gone; the console left."""
        console = console or self.signed_in
        if console is None:
            return None
        self.signed_in = None
        self.entries = []
        self.sub_title = ""
        while isinstance(self.screen, ModalScreen):  # help, a form: closed with the session
            await self.pop_screen()
        await self.switch_screen(self._sign_in_screen())
        for key, screen in list(self._screens.items()):
            self.uninstall_screen(screen)
            del self._screens[key]
        self._current = ""
        self._way = []
        self._granting = None
        return console

    def _close(self, console: Console, *, sign_out: bool) -> None:
        """End the session at the service (``sign_out``) and close the officer's token, in a
        thread worker."""

        def work() -> None:
            try:
                if sign_out:
                    console.sign_out()
                else:
                    console.close()
            except Exception as exc:
                self.call_from_thread(self.report, exc)

        self.run_worker(work, thread=True, group="sign-out", exit_on_error=False)

    def on_unmount(self) -> None:
        if self.signed_in is not None:
            self.signed_in.close()  # the token; the session key dies with this process

    # -- navigation -------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "go":
            return self.signed_in is not None and any(e.key == parameters[0] for e in self.entries)
        if action == "sign_out":
            return self.signed_in is not None
        return True

    async def action_go(self, key: str) -> None:
        await self.go(key)

    async def go(self, key: str, *, going_back: bool = False) -> None:
        """Show the screen with navigation key ``key`` (if this officer may see it)."""
        entry = next((e for e in self.entries if e.key == key), None)
        if entry is None or self.signed_in is None:
            return
        screen = self._screens.get(key)
        if screen is None:
            screen = entry.cls(self.signed_in)
            self._screens[key] = screen
            self.install_screen(screen, name=f"console-{key}")
        if isinstance(self.screen, HelpScreen):
            self.screen.dismiss()
        if self.screen is not screen:
            await self.switch_screen(screen)
        await self._dress(screen, key)
        if self._current and self._current != key and not going_back:
            self._way.append(self._current)
        self._current = key

    async def back(self) -> None:
        """``q`` on a console screen: back to the screen shown before it (the first screen
        when there is none); the console stays (ctrl+q quits)."""
        if self.signed_in is None or not self.entries:
            return
        while self._way and self._way[-1] == self._current:
            self._way.pop()
        key = self._way.pop() if self._way else self.entries[0].key
        if key == self._current:
            self.notify("This is the first screen: ctrl+q quits.", title="Back", timeout=3)
            return
        await self.go(key, going_back=True)

    async def _dress(self, screen: ConsoleScreen, key: str) -> None:
        """Put the officer bar, the navigation bar and the footer on ``screen`` once."""
        try:
            screen.query_one(NavBar).point_at(key)
            return
        except NoMatches:
            pass
        chrome = Chrome(
            OfficerBar(self.officer_line(screen.console), id="officer-bar", markup=False),
            NavBar(self.entries, key),
            id="chrome",
        )
        await screen.mount(chrome, before=0)
        for footer in screen.query(Footer):
            if not isinstance(footer, ConsoleFooter):
                await footer.remove()
        if not screen.query(ConsoleFooter):
            await screen.mount(ConsoleFooter())

    @property
    def current_key(self) -> str:
        return self._current

    @property
    def current_screen(self) -> ConsoleScreen | None:
        """The console screen shown (under any modal), if an officer is signed in."""
        return self._screens.get(self._current) if self.signed_in is not None else None

    # -- help ---------------------------------------------------------------------------------
    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        self.push_screen(HelpScreen(self.help_text()))

    def help_text(self) -> str:
        """The current screen's keys first (what the officer came for), then the screens this
        officer may open, then the keys that work everywhere."""
        lines = [APP_NAME, ""]
        current = self.current_screen
        if current is not None:
            lines.append(f"Keys on {current.KEY} {current.TITLE}")
            lines += [f"  {key:<9} {b.description}" for key, b in self.screen_keys(current)]
            denied = self.screen_keys(current, denied=True)
            if denied:
                lines.append("  not for your roles (dimmed in the footer; pressed, they say why):")
                lines += [f"  {key:<9} ({b.description})" for key, b in denied]
            lines.append("")
        if self.signed_in is None:
            lines += ["Sign in", "  your officer id, then the PIN of your own token"]
            if self.demo_credentials:
                lines.append("  ctrl+t    the typed demo officer's PIN (demo credentials)")
            lines.append("")
        else:
            lines.append(f"Screens for {self.signed_in.actor.id}")
            for entry in self.entries:
                lines += textwrap.wrap(
                    f"{entry.key}  {entry.title:<12} {entry.about}",
                    width=HELP_WIDTH,
                    initial_indent="  ",
                    subsequent_indent=" " * 18,
                )
            lines.append("")
        lines += [
            "Keys everywhere",
            "  1-9       switch to a screen",
            "  ? / F1    this help (escape closes it)",
            "  ctrl+p    command palette: this screen's actions, screens, sign out, quit",
            "  ctrl+o    sign out",
            "  q         close this screen: back to the one before (a form: escape)",
            "  ctrl+q    quit",
            "  j / k     down / up in a table; g / G first / last row (when the screen",
            "            has no g of its own)",
            "  tab       next field or table; enter submits a form; escape cancels it",
            "  space     mark a row (tables marked with ✓)",
        ]
        return "\n".join(lines)

    def screen_keys(
        self, screen: ConsoleScreen, *, denied: bool = False
    ) -> list[tuple[str, Binding]]:
        """(keys, binding) of ``screen``'s bindings that this officer may use (``denied``:
        those the officer's roles do not allow)."""
        found = []
        for binding in screen.BINDINGS:
            if not isinstance(binding, Binding) or not binding.description:
                continue
            if binding.action == "back":
                continue  # listed under the keys everywhere
            name = binding.action.split("(")[0]
            if screen.check_action(name, ()) is False:
                continue
            if screen.denied(name) != denied:
                continue
            keys = " / ".join(
                self.get_key_display(Binding(key.strip(), binding.action))
                for key in binding.key.split(",")
            )
            found.append((keys, binding))
        return found

    async def run_on(self, screen: ConsoleScreen, action: str) -> None:
        """Run one of ``screen``'s actions (from the command palette)."""
        if self.current_screen is screen:  # not signed out meanwhile
            await self.run_action(action, screen)
