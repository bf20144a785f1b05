"""Dashboard: the officer's keys at a glance (counts, expiry, dormant, suspended, violations, by
state), the freshness of the published lists, overdue acknowledgments and pending approvals.
Every number comes from the service (``console.dashboard``; the soonest keys from ``city.page``)."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import Footer, Static

from ca.citykeys.lifecycle import KeyState
from ca.client.console import Console
from ca.core.clock import iso_utc
from ca.ops.city import KeyQuery, KeySummary, KeyView
from ca.ops.console import Dashboard, ListFreshness
from tui.screens.base import ConsoleScreen
from tui.screens.states import STATE_LOOK, state_text

SOONEST = 5  # keys shown under "Expiring soonest"
KEYS_SCREEN = "2"  # the Keys screen's navigation key

COUNTS: tuple[tuple[str, str], ...] = (
    ("total", "Keys in scope"),
    ("expiring_30", "Expiring ≤30 d"),
    ("expiring_90", "Expiring ≤90 d"),
    ("renewal_due", "Renewal due"),
    ("dormant", "Dormant"),
    ("suspended", "Suspended"),
    ("violations", "Violations"),
)


def counts_text(keys: KeySummary) -> str:
    """The key counts, three to a line, each as ``label  value``."""
    cells = [f"{label:<15}{getattr(keys, name):>6}" for name, label in COUNTS]
    rows = ["   ".join(cells[i : i + 3]) for i in range(0, len(cells), 3)]
    states = [f"{state_text(s.value).plain} {keys.states.get(s.value, 0)}" for s in KeyState]
    return "\n".join(
        [*rows, f"{'By state':<11}" + " · ".join(states[:3]), " " * 11 + " · ".join(states[3:])]
    )


def coloured(text: str) -> Text:
    """``text`` with each state's glyph and word in the state's colour (``STATE_LOOK``)."""
    shown = Text(text)
    for state, (glyph, style) in STATE_LOOK.items():
        if style:
            shown.highlight_words([f"{glyph} {state}"], style=style)
    return shown


def soonest_text(keys: list[KeyView]) -> str:
    """The keys expiring soonest: label, city, days left."""
    if not keys:
        return "none within 90 days"
    return "\n".join(
        f"{k.label:<22}{k.city_name} {k.city:<8}{k.days_left:>5} days left" for k in keys
    )


def lists_text(lists: list[ListFreshness]) -> str:
    lines = [f"{'List':<18}{'Seq':>5}  {'Next update':<22}Status"]
    for entry in lists:
        sequence = "—" if entry.sequence is None else str(entry.sequence)
        status = "STALE" if entry.stale else "fresh"
        next_update = iso_utc(entry.next_update) if entry.next_update is not None else "—"
        lines.append(f"{entry.list_type:<18}{sequence:>5}  {next_update:<22}{status}")
    return "\n".join(lines)


class DashboardScreen(ConsoleScreen):
    """Counts of keys (expiring, renewal due, dormant, suspended, violations), list freshness,
    overdue acknowledgments, pending approvals."""

    KEY = "1"
    TITLE = "Dashboard"
    SHORT = "Dash"  # the navigation bar at 80 columns
    ACTIONS = ()
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("e", "keys('e')", "Expiring"),
        Binding("d", "keys('d')", "Dormant"),
        Binding("s", "keys('s')", "Suspended"),
        Binding("v", "keys('v')", "Violations"),
        Binding("r", "refresh", "Refresh", show=False),  # 80 columns: "Sign out" stays
    ]
    DEFAULT_CSS = """
    DashboardScreen #board { padding: 0 1; }
    DashboardScreen .section { margin-top: 1; }
    DashboardScreen .heading { text-style: bold; color: $accent; }
    """

    def __init__(self, console: Console) -> None:
        super().__init__(console)
        self.board: Dashboard | None = None
        self.soonest: list[KeyView] = []

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="board"):
            yield Static("Keys  (e d s v: open them on Keys)", classes="heading")
            yield Static("loading…", id="counts", markup=False)
            yield Static("Expiring soonest (≤90 d)", classes="heading section")
            yield Static("", id="soonest", markup=False)
            yield Static("Published lists", classes="heading section")
            yield Static("", id="lists", markup=False)
            yield Static("Work waiting", classes="heading section")
            yield Static("", id="waiting", markup=False)
        yield Footer(compact=True)  # 80 columns: the four filters, help and "Sign out"

    def on_mount(self) -> None:
        self.action_refresh()

    def action_refresh(self) -> None:
        console = self.console

        def load() -> tuple[Dashboard, list[KeyView]]:
            soonest = console.find_page(KeyQuery(expiring=90), limit=SOONEST).keys
            return console.dashboard(), soonest

        def done(loaded: tuple[Dashboard, list[KeyView]]) -> None:
            self.board, self.soonest = loaded
            self.show(self.board)

        self.run_blocking(load, done=done, busy="Counting…", quiet=True)

    async def action_keys(self, quick: str) -> None:
        """The Keys screen with a quick filter (e expiring, d dormant, s suspended, v
        violations)."""
        go = getattr(self.app, "go", None)
        if go is None:
            return
        await go(KEYS_SCREEN)
        keys = self.app.screen
        if getattr(keys, "KEY", None) == KEYS_SCREEN:
            await self.app.run_action(f"quick({quick!r})", keys)

    def show(self, board: Dashboard) -> None:
        self.query_one("#counts", Static).update(coloured(counts_text(board.keys)))
        self.query_one("#soonest", Static).update(soonest_text(self.soonest))
        self.query_one("#lists", Static).update(lists_text(board.lists))
        stale = sum(1 for entry in board.lists if entry.stale)
        self.query_one("#waiting", Static).update(
            f"{'Overdue acknowledgments':<26}{board.overdue_acks:>4}\n"
            f"{'Pending approvals for you':<26}{board.pending_approvals:>4}\n"
            f"{'Stale lists':<26}{stale:>4}"
        )
