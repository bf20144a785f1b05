"""Keys: every city key in the officer's scope as a table filtered and sorted in SQL (a page of
at most ``PAGE`` rows and the count of all that match, so 100,000 keys stay one query), a detail
pane for the highlighted key, and its actions — renew, suspend, resume, revoke, destroy material —
through ``Console.renew`` and ``Console.request``: operations of the service (``city.page``,
``city.show``, ``city.renew``, ``city.suspend``…), whose policy, dual control and audit they are."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar, Final

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.timer import Timer
from textual.widgets import DataTable, Input, Static
from textual.widgets.data_table import ColumnKey

from ca.client.console import Console
from ca.core.clock import iso_utc
from ca.ops import city
from tui.screens.base import Guarded
from tui.screens.forms import ConsoleTable
from tui.screens.panels import ProgressScreen, WorkProgress, short_stage
from tui.screens.states import (
    LEGEND,
    LEGEND_NARROW,
    days_text,
    days_words,
    flags_text,
    key_flags,
    state_text,
)

PAGE: Final = 500
DEBOUNCE: Final = 0.2  # seconds of quiet typing before the filter re-queries

RENEW: Final = "city-key.renew"
SUSPEND: Final = "city-key.suspend"
RESUME: Final = "city-key.resume"
REVOKE: Final = "city-key.revoke"
DESTROY: Final = "city-key.destroy-material"

QUICK: Final[dict[str, tuple[str, city.KeyQuery]]] = {
    "a": ("all", city.KeyQuery()),
    "e": ("expiring ≤90 d", city.KeyQuery(expiring=90)),
    "d": ("dormant", city.KeyQuery(dormant=True)),
    "s": ("suspended", city.KeyQuery(suspended=True)),
    "v": ("violations", city.KeyQuery(violations=True)),
}

# (column key, header, width, the sort key of ``city.page`` or None). They fit 80 columns
# with a scroll bar: the class is in the label, the end date in the detail pane (Days sorts by
# it), stages and flags are abbreviated (``short_stage``, ``tui.screens.states``, the legend
# line); a state is a glyph and a word in its colour.
COLUMNS: Final[tuple[tuple[str, str, int, city.SortKey | None], ...]] = (
    ("id", "Id", 3, "id"),
    ("label", "Label", 19, "label"),
    ("city_name", "City", 6, "city_name"),
    ("state", "State", 13, "state"),
    ("stage", "Stage", 11, "stage"),
    ("days_left", "Days", 5, "days_left"),
    ("flags", "Flags", 5, None),
)
SORTABLE: Final = tuple(sort for _, _, _, sort in COLUMNS if sort is not None)
LABEL_WIDTH: Final = 19  # the Label column at 80 columns; it takes what a wider terminal adds


@dataclass(frozen=True, slots=True)
class KeyQuery:
    quick: str = "a"
    text: str = ""
    sort: city.SortKey = "not_after"
    descending: bool = False
    limit: int = PAGE


def find_page(console: Console, asked: KeyQuery) -> city.KeyPage:
    """One page of the keys matching ``asked`` in the officer's scope, and how many match."""
    return console.find_page(
        QUICK[asked.quick][1],
        text=asked.text,
        sort=asked.sort,
        descending=asked.descending,
        limit=asked.limit,
    )


def day(moment: int | None) -> str:
    return iso_utc(moment)[:10] if moment is not None else "—"


def cell(row: city.KeyView, name: str) -> str | Text:
    value = getattr(row, name, None)
    if name == "not_after" and isinstance(value, int):
        return day(value)
    if name == "stage" and isinstance(value, str):
        return short_stage(value)
    if name == "state":
        return state_text(row.state, row.days_left)
    if name == "days_left":
        return days_text(row.state, row.days_left)
    if name == "flags":
        return flags_text(row.state, row.flags, row.days_left)
    return "—" if value in (None, "") else str(value)


def detail_text(key: city.KeyView) -> str:
    flags = ", ".join(key_flags(key.state, key.flags, key.days_left)) or "none"
    return "\n".join(
        [
            f"{key.label}  #{key.id}  {key.city_name} ({key.city})  "
            f"{key.key_class} {key.kind} g{key.generation}",
            f"state {key.state} · stage {key.stage} · flags {flags} · "
            f"violations {key.open_violations}",
            f"valid {day(key.not_before)} → {day(key.not_after)} "
            f"({days_words(key.state, key.days_left)}) · "
            f"first use {day(key.first_use)}",
            f"delivered {day(key.delivered_at)} · installed {day(key.installed_at)} · "
            f"last use {day(key.last_use)}",
            f"predecessor {key.predecessor or '—'} · successor {key.successor or '—'} · "
            f"destroy after {day(key.destroy_after)} · destroyed {day(key.destroyed_at)} · "
            f"reason {key.reason or '—'}",
        ]
    )


class ReasonModal(Guarded, ModalScreen[str | None]):
    """Asks for the reason of an action (or, with ``needs_reason`` false, a confirmation)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = """
    ReasonModal { align: center middle; }
    ReasonModal #ask { width: 70; height: auto; border: round $warning; padding: 0 1;
                       background: $surface; }
    ReasonModal .hint { color: $text-muted; }
    """

    def __init__(self, question: str, *, needs_reason: bool = True) -> None:
        super().__init__()
        self.question = question
        self.needs_reason = needs_reason

    def compose(self) -> ComposeResult:
        with Vertical(id="ask"):
            yield Static(self.question, id="question", markup=False)
            if self.needs_reason:
                yield Input(placeholder="reason (required, goes to the audit log)", id="reason")
                yield Static("enter: submit · escape: cancel", classes="hint")
            else:
                yield Static("enter / y: confirm · escape / n / q: cancel", classes="hint")

    def on_mount(self) -> None:
        if self.needs_reason:
            self.query_one("#reason", Input).focus()

    def on_key(self, event: Any) -> None:
        if self.needs_reason:
            return
        if event.key in ("enter", "y"):
            event.stop()
            self.dismiss("")
        elif event.key in ("n", "q"):
            event.stop()
            self.dismiss(None)

    @on(Input.Submitted, "#reason")
    def submitted(self, event: Input.Submitted) -> None:
        reason = event.value.strip()
        if not reason:
            self.app.notify("A reason is required.", title="Reason", severity="warning")
            return
        self.dismiss(reason)

    def action_cancel(self) -> None:
        self.dismiss(None)


class KeysScreen(ProgressScreen):
    """Every key in your scope: filter, sort, details; renew, suspend, resume, revoke,
    destroy material."""

    KEY = "2"
    TITLE = "Keys"
    ACTIONS = ()
    BINDINGS: ClassVar[list[BindingType]] = [  # the actions first: the footer shows ~8 keys
        Binding("slash", "focus_filter", "Filter"),
        Binding("escape", "focus_table", "Table", show=False),
        Binding("n", "renew", "Renew"),
        Binding("u", "suspend", "Suspend"),
        Binding("y", "resume", "Resume"),
        Binding("x", "revoke", "Revoke"),
        Binding("m", "destroy", "Destroy"),
        Binding("o", "sort_next", "Sort"),
        Binding("O", "sort_reverse", "Reverse", show=False),
        Binding("e", "quick('e')", "Expiring"),
        Binding("d", "quick('d')", "Dormant"),
        Binding("s", "quick('s')", "Suspended"),
        Binding("v", "quick('v')", "Violations"),
        Binding("a", "quick('a')", "All"),
        Binding("r", "reload", "Reload", show=False),
    ]
    _NEEDS: ClassVar[dict[str, str]] = {  # key actions shown only to officers the policy allows
        "renew": RENEW,
        "suspend": SUSPEND,
        "resume": RESUME,
        "revoke": REVOKE,
        "destroy": DESTROY,
    }
    DEFAULT_CSS = """
    KeysScreen #filter { height: 1; border: none; padding: 0 1; }
    KeysScreen #status { height: 1; padding: 0 1; color: $text-muted; }
    KeysScreen #legend { height: auto; padding: 0 1; color: $text-muted; }
    KeysScreen #keys { height: 1fr; }
    KeysScreen #detail { height: 5; padding: 0 1; background: $boost; text-wrap: nowrap;
                         text-overflow: ellipsis; }
    """

    def __init__(self, console: Console) -> None:
        super().__init__(console)
        self.asked = KeyQuery()
        self.page = city.KeyPage(keys=[], total=0)
        self.loads = 0  # pages shown so far (tests and the benchmark wait on it)
        self._generation = 0
        self._debounce: Timer | None = None
        self._highlighted: int | None = None
        self.allowed = {name: console.can(action) for name, action in self._NEEDS.items()}
        self.needs = {name: (action,) for name, action in self._NEEDS.items()}

    def compose(self) -> ComposeResult:
        yield Input(placeholder="/ filter: label, city code or city name", id="filter")
        yield Static("loading…", id="status", markup=False)
        table: ConsoleTable[Any] = ConsoleTable(id="keys", cursor_type="row", zebra_stripes=True)
        for name, header, width, _ in COLUMNS:
            table.add_column(header, key=name, width=width)
        yield table
        yield Static(LEGEND_NARROW, id="legend", markup=False)
        yield Static("", id="detail", markup=False)
        yield WorkProgress()

    def on_mount(self) -> None:
        self.query_one("#keys", DataTable).focus()
        self.reload()

    def on_resize(self, event: events.Resize) -> None:
        """The Label column takes what a terminal wider than 80 columns adds; the legend says
        the words in full when there is room."""
        fixed = sum(width + 2 for name, _, width, _ in COLUMNS if name != "label")
        label = max(LABEL_WIDTH, event.size.width - fixed - 2 - 2 - 2)
        table: DataTable[str | Text] = self.query_one("#keys", DataTable)
        column = table.columns.get(ColumnKey("label"))
        if column is not None and column.width != label:
            column.width = label
            table._require_update_dimensions = True
            table.refresh()
        wide = event.size.width >= len(LEGEND) + 2
        self.query_one("#legend", Static).update(LEGEND if wide else LEGEND_NARROW)

    # -- querying ----------------------------------------------------------------------------
    def reload(self) -> None:
        """Re-query in a thread worker; only the newest query's answer is shown."""
        self._generation += 1
        generation, asked, console = self._generation, self.asked, self.console

        def job() -> None:
            try:
                page = find_page(console, asked)
            except Exception as exc:
                self.app.call_from_thread(self.fail, exc)
                return
            self.app.call_from_thread(self._show_page, generation, page)

        self.run_worker(job, thread=True, group="keys-query", exit_on_error=False)

    def _show_page(self, generation: int, page: city.KeyPage) -> None:
        if generation != self._generation:
            return  # a newer query is under way
        self.page = page
        table: DataTable[str | Text] = self.query_one("#keys", DataTable)
        keep = self._highlighted
        table.clear()
        for row in page.keys:
            table.add_row(*(cell(row, name) for name, *_ in COLUMNS), key=str(row.id))
        if keep is not None:
            ids = [row.id for row in page.keys]
            if keep in ids:
                table.move_cursor(row=ids.index(keep))
        self._update_status()
        if not page.keys:
            self._highlighted = None
            self.query_one("#detail", Static).update("no key matches")
        self.loads += 1

    def _update_status(self) -> None:
        arrow = "↓" if self.asked.descending else "↑"
        shown = len(self.page.keys)
        text = self.asked.text.strip()
        self.query_one("#status", Static).update(
            f"showing {shown} of {self.page.total} · {QUICK[self.asked.quick][0]}"
            + (f" · text “{text}”" if text else "")
            + f" · sorted by {self.asked.sort} {arrow}"
        )

    @on(Input.Changed, "#filter")
    def filter_changed(self, event: Input.Changed) -> None:
        self.asked = replace(self.asked, text=event.value)
        if self._debounce is not None:
            self._debounce.stop()
        self._debounce = self.set_timer(DEBOUNCE, self.reload)

    @on(Input.Submitted, "#filter")
    def filter_submitted(self) -> None:
        self.action_focus_table()

    def action_focus_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    def action_focus_table(self) -> None:
        self.query_one("#keys", DataTable).focus()

    def action_quick(self, which: str) -> None:
        self.asked = replace(self.asked, quick=which)
        self.reload()

    def action_sort_next(self) -> None:
        at = SORTABLE.index(self.asked.sort) if self.asked.sort in SORTABLE else -1
        self.asked = replace(
            self.asked,
            sort=SORTABLE[(at + 1) % len(SORTABLE)],
            descending=False,
        )
        self.reload()

    def action_sort_reverse(self) -> None:
        self.asked = replace(self.asked, descending=not self.asked.descending)
        self.reload()

    def action_reload(self) -> None:
        self.reload()

    @on(DataTable.HeaderSelected)
    def header_selected(self, event: DataTable.HeaderSelected) -> None:
        name = str(event.column_key.value)
        if name not in SORTABLE:
            return
        if name == self.asked.sort:
            self.asked = replace(self.asked, descending=not self.asked.descending)
        else:
            self.asked = replace(self.asked, sort=name, descending=False)
        self.reload()

    # -- detail ------------------------------------------------------------------------------
    @on(DataTable.RowHighlighted)
    def row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key.value is None:
            return
        key_id = int(event.row_key.value)
        self._highlighted = key_id
        self.show_detail(key_id)

    def show_detail(self, key_id: int) -> None:
        def done(key: city.KeyView) -> None:
            if self._highlighted == key_id:
                self.query_one("#detail", Static).update(detail_text(key))

        self.run_blocking(lambda: self.console.key(key_id), done=done, quiet=True)

    def highlighted_key(self) -> city.KeyView | None:
        return next((r for r in self.page.keys if r.id == self._highlighted), None)

    # -- actions -----------------------------------------------------------------------------
    def action_renew(self) -> None:
        key = self.highlighted_key()
        if key is None:
            return
        key_id = key.id

        def done(new: city.KeyView) -> None:
            self.app.notify(f"{key.label} renewed: its successor is {new.label}.", title="Renewed")
            self.reload()

        def answered(confirmed: str | None) -> None:
            if confirmed is not None:
                self.work(lambda: self.console.renew(key_id), done=done, busy="Renewing…")

        question = (
            f"Renew {key.label} ({key.city_name}, {key.state})?\n"
            "This generates a new key, its successor, to be delivered like the first."
        )
        self.app.push_screen(ReasonModal(question, needs_reason=False), answered)

    def action_suspend(self) -> None:
        self._ask(SUSPEND, "Suspend", needs_reason=True)

    def action_resume(self) -> None:
        self._ask(RESUME, "Resume", needs_reason=True)

    def action_revoke(self) -> None:
        self._ask(REVOKE, "Revoke (final)", needs_reason=True)

    def action_destroy(self) -> None:
        self._ask(DESTROY, "Destroy the material of", needs_reason=False)

    def _ask(self, action: str, verb: str, *, needs_reason: bool) -> None:
        key = self.highlighted_key()
        if key is None:
            return
        question = f"{verb} {key.label} ({key.city_name}, {key.state})?"

        def answered(reason: str | None) -> None:
            if reason is not None:
                self.request(action, key, reason)

        self.app.push_screen(ReasonModal(question, needs_reason=needs_reason), answered)

    def request(self, action: str, key: city.KeyView, reason: str) -> None:
        key_id = key.id

        def done(outcome: city.ActionOutcome) -> None:
            name = action.removeprefix("city-key.")
            if outcome.state == "done":
                self.app.notify(f"{name} of {key.label}: done.", title="Done")
            elif outcome.state == "pending":
                waiting = outcome.required - outcome.approvals
                self.app.notify(
                    f"{name} of {key.label} (request #{outcome.action_id}) awaits "
                    f"{waiting} approver{'s' if waiting != 1 else ''}.",
                    title="Awaiting approval",
                )
            else:
                self.app.notify(f"{name} of {key.label}: {outcome.state}.", title="Key action")
            self.reload()
            self.show_detail(key_id)

        self.work(
            lambda: self.console.request(action, [key_id], reason), done=done, busy="Requesting…"
        )
