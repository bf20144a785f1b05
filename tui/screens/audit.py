"""Audit: the Merkle audit log (第二十九条), newest first, a page at a time
(``console.audit-page``), filtered by actor, subject, action and time with the true count of what
the filter matches ('N of M events'); the highlighted event's details; and, for
officers the policy lets (``audit.verify``), verifying the whole log against its signed
checkpoints at the service (``audit.verify``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar, Final

from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.timer import Timer
from textual.widgets import DataTable, Input, Static
from textual.widgets.data_table import ColumnKey

from ca.client.console import Console
from ca.core.clock import iso_utc
from ca.ops.audit import VerifyResult
from ca.ops.console import AuditEventView, AuditPage
from tui.screens.forms import RowTable
from tui.screens.panels import ProgressScreen, ReportModal, WorkProgress, short_time

PAGE: Final = 100
DEBOUNCE: Final = 0.25  # seconds of quiet typing before the filter re-queries
VERIFY: Final = "audit.verify"
SUBJECT_WIDTH: Final = 12  # at 80 columns; it takes what a wider terminal adds
FIXED_WIDTHS: Final = (5, 16, 11, 24)  # Seq, Time, Actor, Action
FILTER_WORDS: Final = ("actor", "subject", "action", "since", "until")


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """What the filter line asks: ``actor:gd-1 subject:440100 since:2026-11-01 until:2026-11-18
    list.publish`` (words without a name filter the action; each text is contained; times are
    UTC dates or ISO times, ``until`` excluded)."""

    action: str = ""
    actor: str = ""
    subject: str = ""
    since: int | None = None
    until: int | None = None

    def describe(self) -> str:
        parts = [
            f"{name} contains “{value}”"
            for name, value in (
                ("actor", self.actor),
                ("subject", self.subject),
                ("action", self.action),
            )
            if value
        ]
        if self.since is not None:
            parts.append(f"since {iso_utc(self.since)[:16].replace('T', ' ')}")
        if self.until is not None:
            parts.append(f"until {iso_utc(self.until)[:16].replace('T', ' ')}")
        return " · ".join(parts)


def moment(name: str, text: str) -> int:
    """A UTC date (``2026-11-18``) or ISO time (``2026-11-18T09:30``) as Unix seconds."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise FilterError(
            f"{name}:{text}: a date (YYYY-MM-DD) or time (YYYY-MM-DDTHH:MM), UTC"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp())


class FilterError(ValueError):
    """A filter word the audit screen cannot read (named in the message)."""


def parse_filter(text: str) -> AuditFilter:
    """The filter line as an ``AuditFilter`` (``FilterError`` names the word it cannot read)."""
    found: dict[str, str] = {}
    action: list[str] = []
    for word in text.split():
        name, colon, value = word.partition(":")
        if colon and name.lower() in FILTER_WORDS:
            if not value:
                raise FilterError(f"{name}: give a value after the colon")
            found[name.lower()] = value
        else:
            action.append(word)
    if action:
        found["action"] = " ".join([found.get("action", ""), *action]).strip()
    since = moment("since", found["since"]) if "since" in found else None
    until = moment("until", found["until"]) if "until" in found else None
    return AuditFilter(
        action=found.get("action", ""),
        actor=found.get("actor", ""),
        subject=found.get("subject", ""),
        since=since,
        until=until,
    )


def event_detail(event: AuditEventView) -> str:
    try:
        details = json.dumps(json.loads(event.details), ensure_ascii=False, indent=2)
    except ValueError:  # shown as stored: verification names a broken row
        details = event.details
    return "\n".join(
        [
            f"#{event.seq}  {iso_utc(event.at)}  {event.actor}",
            f"{event.action}  ·  {event.subject}",
            f"entry {event.seq} ({event.kind}), leaf index {event.seq - 1}",
            f"leaf {event.leaf_hash}" + ("  sealed" if event.sealed else ""),
            *([f"object SM3 {event.object_sm3}"] if event.object_sm3 else []),
            details,
        ]
    )


def report_text(report: VerifyResult) -> str:
    head = f"{report.events} entr{'ies' if report.events != 1 else 'y'}"
    if report.newest_checkpoint is not None:
        witnessed = ", ".join(report.witnessed_by) or "no witness yet"
        head += f"; newest checkpoint {report.newest_checkpoint} (cosigned by {witnessed})"
    head += ": "
    if report.ok:
        return head + (
            "OK — the log matches every signed checkpoint found outside the database, and "
            f"the {report.sealed} newer entr{'ies are' if report.sealed != 1 else 'y is'} sealed."
        )
    count = len(report.findings)
    lines = [head + f"{count} finding{'s' if count != 1 else ''}"]
    lines += [f"  entry {f.seq}  {f.problem}: {f.message}" for f in report.findings]
    return "\n".join(lines)


class AuditScreen(ProgressScreen):
    """The audit log, newest first: filter by actor, subject, action, time; page, details;
    verify the log."""

    KEY = "8"
    TITLE = "Audit"
    ACTIONS = ()
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "focus_filter", "Filter"),
        Binding("escape", "focus_table", "Table", show=False),
        Binding("n", "older", "Older"),
        Binding("p", "newer", "Newer"),
        Binding("g", "newest", "Newest"),
        Binding("r", "reload", "Reload"),
        Binding("v", "verify", "Verify log"),
    ]
    DEFAULT_CSS = """
    AuditScreen #filter { height: 1; border: none; padding: 0 1; }
    AuditScreen #status { height: 1; padding: 0 1; color: $text-muted; }
    AuditScreen #events { height: 1fr; }
    AuditScreen #detail-box { height: 8; background: $boost; }
    AuditScreen #detail { padding: 0 1; }
    """

    def __init__(self, console: Console) -> None:
        super().__init__(console)
        self.may_verify = console.can(VERIFY)
        self.allowed = {"verify": self.may_verify}
        self.needs = {"verify": (VERIFY,)}
        self.action_text = ""  # the filter line as typed
        self.asked = AuditFilter()
        self.pages: list[int | None] = [None]  # the ``before`` of each page shown so far
        self.events: list[AuditEventView] = []
        self.total = 0
        self.matching = 0
        self.report: VerifyResult | None = None
        self._debounce: Timer | None = None

    def compose(self) -> ComposeResult:
        yield Input(
            placeholder="/ filter: actor:gd-1 subject:440100 since:2026-11-01 until:… action",
            id="filter",
        )
        yield Static("loading…", id="status", markup=False)
        yield RowTable(id="events")
        with VerticalScroll(id="detail-box"):
            yield Static("", id="detail", markup=False)
        yield WorkProgress()

    def on_mount(self) -> None:
        table = self.query_one("#events", DataTable)
        table.add_column("Seq", width=5)
        table.add_column("Time (UTC)", width=16)
        table.add_column("Actor", width=11)
        table.add_column("Action", width=24)
        table.add_column("Subject", width=SUBJECT_WIDTH, key="subject")
        table.focus()
        self.reload()

    def on_resize(self, event: events.Resize) -> None:
        """The Subject column takes what a terminal wider than 80 columns adds."""
        fixed = sum(width + 2 for width in FIXED_WIDTHS)
        width = max(SUBJECT_WIDTH, event.size.width - fixed - 2 - 2 - 2)
        table = self.query_one("#events", DataTable)
        column = table.columns.get(ColumnKey("subject"))
        if column is not None and column.width != width:
            column.width = width
            table._require_update_dimensions = True
            table.refresh()

    # -- the page -------------------------------------------------------------------------------
    def reload(self) -> None:
        console, before, asked = self.console, self.pages[-1], self.asked

        def job() -> AuditPage:
            return console.audit_page(
                before=before,
                size=PAGE,
                action=asked.action,
                actor=asked.actor,
                subject=asked.subject,
                since=asked.since,
                until=asked.until,
            )

        def done(found: AuditPage) -> None:
            if (before, asked) != (self.pages[-1], self.asked):
                return  # an answer to a question no longer asked
            self.events, self.total, self.matching = found.events, found.total, found.matching
            self.show_page()

        self.run_blocking(job, done=done, quiet=True)

    def show_page(self) -> None:
        table = self.query_one("#events", RowTable)
        table.fill(
            (
                str(e.seq),
                [str(e.seq), short_time(iso_utc(e.at)), e.actor, e.action, e.subject],
            )
            for e in self.events
        )
        asked = self.asked.describe()
        if self.events:
            span = f"seq {self.events[0].seq}–{self.events[-1].seq}"
        else:
            span = "no events" + (" match" if asked else "")
        count = f"{self.matching} of {self.total} events" if asked else f"{self.total} events"
        self.query_one("#status", Static).update(
            f"{count} · page {len(self.pages)} · {span} · newest first"
            + (f" · {asked}" if asked else "")
        )
        self.show_detail()

    @on(DataTable.RowHighlighted, "#events")
    def event_highlighted(self) -> None:
        self.show_detail()

    def highlighted(self) -> AuditEventView | None:
        key = self.query_one("#events", RowTable).current_key()
        return next((e for e in self.events if str(e.seq) == key), None)

    def show_detail(self) -> None:
        event = self.highlighted()
        self.query_one("#detail", Static).update(event_detail(event) if event else "")

    # -- paging and filtering ------------------------------------------------------------------
    def action_older(self) -> None:
        if len(self.events) < PAGE:
            self.app.notify("This is the oldest page.", title="Audit", timeout=3)
            return
        self.pages.append(self.events[-1].seq)
        self.query_one("#events", DataTable).move_cursor(row=0)
        self.reload()

    def action_newer(self) -> None:
        if len(self.pages) == 1:
            self.app.notify("This is the newest page.", title="Audit", timeout=3)
            return
        self.pages.pop()
        self.query_one("#events", DataTable).move_cursor(row=0)
        self.reload()

    def action_newest(self) -> None:
        self.pages = [None]
        self.query_one("#events", DataTable).move_cursor(row=0)
        self.reload()

    def action_reload(self) -> None:
        self.reload()

    def action_focus_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    def action_focus_table(self) -> None:
        self.query_one("#events", DataTable).focus()

    @on(Input.Changed, "#filter")
    def filter_changed(self, event: Input.Changed) -> None:
        self.action_text = event.value.strip()
        entry = self.query_one("#filter", Input)
        try:
            self.asked = parse_filter(self.action_text)
        except FilterError as exc:
            entry.add_class("-invalid")
            self.query_one("#status", Static).update(f"filter: {exc}")
            return
        entry.remove_class("-invalid")
        self.pages = [None]
        if self._debounce is not None:
            self._debounce.stop()
        self._debounce = self.set_timer(DEBOUNCE, self.reload)

    @on(Input.Submitted, "#filter")
    def filter_submitted(self) -> None:
        if self._debounce is not None:
            self._debounce.stop()
        self.reload()
        self.action_focus_table()

    # -- verification --------------------------------------------------------------------------
    def action_verify(self) -> None:
        def done(report: VerifyResult) -> None:
            self.report = report
            text = report_text(report)
            if report.ok:
                self.app.notify(text, title="Audit log verified", markup=False)
            else:
                self.app.notify(
                    text, title="Audit log tampered", severity="error", timeout=15, markup=False
                )
            self.app.push_screen(
                ReportModal(
                    "Audit log verified" if report.ok else "Audit log tampered",
                    text,
                    failed=not report.ok,
                )
            )

        self.work(self.console.audit_verify, done=done, busy="Verifying the audit log…")
