"""Publication: each signed list's freshness and every version published (sequence, thisUpdate,
nextUpdate, entries, emergency mark); a dry-run preview of what publishing would change, entry by
entry; signing and publishing with the root token's share quorum; the operators' load
acknowledgments (import a report, who is overdue, 第十二条) and emergency publication requests
(第三十四条).

Everything is an operation of the service through ``Console`` (``lists.history``, ``lists.publish``
— a dry run for the preview —, ``lists.overdue``, ``lists.ack``, ``lists.operator-add``,
``lists.emergency``, ``console.emergency-requests``): policy, dual control and audit are the
service's, and so is the publication folder the lists are written to."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, Final

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import ContentSwitcher, DataTable, Static

from ca.client.console import Console
from ca.core.clock import iso_utc
from ca.ops import lists
from ca.ops.console import EmergencyRequestView
from tui.screens.forms import Field, FieldError, FormModal, RowTable
from tui.screens.panels import ProgressScreen, WorkProgress, short_time

PUBLISH: Final = "list.publish"
EMERGENCY: Final = "list.emergency-publish"  # 第三十四条
IMPORT: Final = "list.import-ack"  # 第十二条
REGISTER: Final = "list.register-operator"
LOAD_DEADLINE_DAYS: Final = 15  # 第十二条: operators load a new version within 15 days
HOUR: Final = 3600

VIEWS: Final = {
    "history": "History",
    "preview": "Preview",
    "acks": "Acknowledgments",
    "requests": "Emergency requests",
}


def until(seconds: int) -> str:
    """A span as ``3d 4h`` / ``5h 20m`` / ``12m``."""
    minutes = abs(seconds) // 60
    days, hours, mins = minutes // 1440, minutes // 60 % 24, minutes % 60
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {mins}m"
    return f"{mins}m"


def freshness_lines(history: Sequence[lists.HistoryEntry], now: int) -> list[str]:
    """One line per list type: its newest version and how long until its nextUpdate."""
    lines = []
    for name in lists.LIST_NAMES:
        versions = [v for v in history if v.list_type == name]
        if not versions:
            lines.append(f"{name:<17} never published")
            continue
        newest = max(versions, key=lambda v: v.sequence)
        left = newest.next_update - now
        state = f"fresh {until(left)}" if left >= 0 else f"STALE {until(left)}"
        lines.append(
            f"{name:<17}#{newest.sequence:<4}{count(newest.entries):>12}  "
            f"next {short_time(iso_utc(newest.next_update))}  {state}"
        )
    return lines


def diff_summary(diff: lists.Diff) -> str:
    added, removed, changed = diff.added, diff.removed, diff.changed
    parts = []
    if added:
        parts.append("+" + ", +".join(added))
    if removed:
        parts.append("-" + ", -".join(removed))
    for key, fields in changed.items():
        parts.append(
            f"~{key} (" + ", ".join(f"{f}: {o} → {n}" for f, (o, n) in fields.items()) + ")"
        )
    return "; ".join(parts) or "no entry changed"


def version_key(version: lists.HistoryEntry) -> str:
    return f"{version.list_type}#{version.sequence}"


def row_error(error: lists.RefusedRow) -> str:
    return f"line {error.line}, {error.field}: {error.problem}"


def count(n: int) -> str:
    return f"{n} {'entry' if n == 1 else 'entries'}"


def outcome_line(outcome: lists.ListOutcome) -> str:
    diff = outcome.diff
    counts = f"+{len(diff.added)} -{len(diff.removed)} ~{len(diff.changed)}"
    if outcome.action == "unchanged":
        return (
            f"{outcome.list_type:<17} unchanged at #{outcome.sequence} ({count(outcome.entries)})"
        )
    return (
        f"{outcome.list_type:<17} {outcome.action} #{outcome.sequence} ({outcome.why}), "
        f"{count(outcome.entries)}, {counts}"
    )


def diff_rows(outcomes: Sequence[lists.ListOutcome]) -> list[tuple[str, list[str]]]:
    """One table row per entry added, removed or changed, per list."""
    rows: list[tuple[str, list[str]]] = []
    for outcome in outcomes:
        name = outcome.list_type
        for key in outcome.diff.added:
            rows.append((f"{name}+{key}", [name, "added", key, ""]))
        for key in outcome.diff.removed:
            rows.append((f"{name}-{key}", [name, "removed", key, ""]))
        for key, fields in outcome.diff.changed.items():
            change = ", ".join(f"{f}: {old} → {new}" for f, (old, new) in fields.items())
            rows.append((f"{name}~{key}", [name, "changed", key, change]))
    return rows


def published_text(outcomes: Sequence[lists.ListOutcome]) -> str:
    new = [f"{o.list_type} #{o.sequence}" for o in outcomes if o.action == "published"]
    same = [o.list_type for o in outcomes if o.action != "published"]
    text = ("Published " + ", ".join(new)) if new else "Nothing needed publishing"
    return text + (f"; unchanged: {', '.join(same)}." if same else ".")


class PublicationScreen(ProgressScreen):
    """Lists: freshness, history, diff preview, sign and publish, acknowledgments, emergency
    requests."""

    KEY = "6"
    TITLE = "Publication"
    SHORT = "Pub"  # the navigation bar at 80 columns
    ACTIONS = (PUBLISH, EMERGENCY, IMPORT, REGISTER)
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("h", "view('history')", "History"),
        Binding("p", "preview", "Preview"),
        Binding("s", "publish", "Publish"),
        Binding("a", "view('acks')", "Acks"),
        Binding("i", "import_acks", "Import"),
        Binding("n", "add_operator", "Operator"),
        Binding("g", "view('requests')", "Requests"),
        Binding("e", "emergency", "Emergency"),
        Binding("r", "refresh", "Refresh", show=False),
    ]
    DEFAULT_CSS = """
    PublicationScreen #freshness { height: 3; padding: 0 1; background: $boost; }
    PublicationScreen #view-title { height: 1; padding: 0 1; text-style: bold; color: $accent; }
    PublicationScreen ContentSwitcher { height: 1fr; }
    PublicationScreen ContentSwitcher > Vertical { height: 1fr; }
    PublicationScreen DataTable { height: 1fr; }
    PublicationScreen .note { height: auto; max-height: 4; padding: 0 1; color: $text-muted; }
    """

    def __init__(self, console: Console) -> None:
        super().__init__(console)
        self.history: list[lists.HistoryEntry] = []
        self.outcomes: list[lists.ListOutcome] | None = None  # the last preview
        self.overdue_rows: list[lists.OverdueOperator] = []
        self.requests: list[EmergencyRequestView] = []
        self.last_import: lists.AckResult | None = None
        self.view = "history"
        may = {a: console.can(a) for a in self.ACTIONS}
        self.allowed = {
            "preview": may[PUBLISH],
            "publish": may[PUBLISH] or may[EMERGENCY],
            "import_acks": may[IMPORT],
            "add_operator": may[REGISTER],
            "emergency": may[EMERGENCY],
        }
        self.needs = {
            "preview": (PUBLISH,),
            "publish": (PUBLISH, EMERGENCY),
            "import_acks": (IMPORT,),
            "add_operator": (REGISTER,),
            "emergency": (EMERGENCY,),
        }

    def compose(self) -> ComposeResult:
        yield Static("loading…", id="freshness", markup=False)
        yield Static("", id="view-title", markup=False)
        with ContentSwitcher(initial="history"):
            with Vertical(id="history"):
                yield RowTable(id="history-table")
                yield Static("", id="history-note", classes="note", markup=False)
            with Vertical(id="preview"):
                yield Static(
                    "p: compare what is published with the records (nothing is signed)",
                    id="preview-note",
                    classes="note",
                    markup=False,
                )
                yield RowTable(id="preview-table")
            with Vertical(id="acks"):
                yield Static("", id="acks-note", classes="note", markup=False)
                yield RowTable(id="acks-table")
            with Vertical(id="requests"):
                yield RowTable(id="requests-table")
        yield WorkProgress()

    def on_mount(self) -> None:
        self.query_one("#history-table", DataTable).add_columns(
            "List", "Seq", "This update", "Next update", "Entries", "Emerg."
        )
        self.query_one("#preview-table", DataTable).add_columns("List", "Change", "Entry", "Fields")
        self.query_one("#acks-table", DataTable).add_columns(
            "Operator", "List", "Loaded", "Owes", "Published", "Days"
        )
        self.query_one("#requests-table", DataTable).add_columns(
            "Id", "State", "By", "Asked", "Needs", "Reason"
        )
        self.show_view("history")
        self.action_refresh()

    # -- which actions this officer has --------------------------------------------------------
    # -- views ---------------------------------------------------------------------------------
    def show_view(self, view: str) -> None:
        self.view = view
        self.query_one(ContentSwitcher).current = view
        self.query_one("#view-title", Static).update(
            f"{VIEWS[view]} · published by the service (r: refresh)"
        )
        self.query_one(f"#{view}-table", DataTable).focus()

    def action_view(self, view: str) -> None:
        self.show_view(view)
        if view == "acks":
            self.load_overdue()
        elif view == "requests":
            self.load_requests()

    def action_refresh(self) -> None:
        self.load_history()
        if self.view == "acks":
            self.load_overdue()
        elif self.view == "requests":
            self.load_requests()

    def load_history(self) -> None:
        def done(history: list[lists.HistoryEntry]) -> None:
            self.history = history
            self.show_history()

        self.run_blocking(self.console.list_history, done=done, quiet=True)

    def show_history(self) -> None:
        self.query_one("#freshness", Static).update(
            "\n".join(freshness_lines(self.history, self.console.now()))
        )
        newest_first = sorted(self.history, key=lambda v: (-v.published_at, v.list_type))
        self.query_one("#history-table", RowTable).fill(
            (
                version_key(v),
                [
                    v.list_type,
                    str(v.sequence),
                    short_time(iso_utc(v.this_update)),
                    short_time(iso_utc(v.next_update)),
                    str(v.entries),
                    "yes" if v.emergency else "",
                ],
            )
            for v in newest_first
        )
        self.show_version_note()

    @on(DataTable.RowHighlighted, "#history-table")
    def version_highlighted(self) -> None:
        self.show_version_note()

    def show_version_note(self) -> None:
        key = self.query_one("#history-table", RowTable).current_key()
        version = next((v for v in self.history if version_key(v) == key), None)
        note = ""
        if version is not None:
            note = (
                f"{version.list_type} #{version.sequence} by {version.published_by}, "
                f"SHA-256 {version.sha256[:16]}…: {diff_summary(version.diff)}"
            )
        self.query_one("#history-note", Static).update(note)

    # -- preview -------------------------------------------------------------------------------
    def action_preview(self) -> None:
        def done(result: lists.PublishResult) -> None:
            self.outcomes = result.outcomes
            self.show_preview()

        self.show_view("preview")
        self.work(self.console.preview, done=done, busy="Comparing lists…")

    def show_preview(self) -> None:
        outcomes = self.outcomes or []
        lines = [outcome_line(o) for o in outcomes]
        if outcomes and all(o.action == "unchanged" for o in outcomes):
            lines.append("Nothing to publish.")
        self.query_one("#preview-note", Static).update("\n".join(lines))
        self.query_one("#preview-table", RowTable).fill(diff_rows(outcomes))

    # -- sign and publish ------------------------------------------------------------------------
    def action_publish(self) -> None:
        fields = [
            Field("share-1", "Root token PIN share 1", password=True),
            Field("share-2", "Root token PIN share 2", password=True),
        ]
        if self.allowed["emergency"]:
            fields.append(
                Field(
                    "emergency",
                    "Approved emergency request # (empty: a scheduled publication)",
                    placeholder="e.g. 3",
                )
            )
        if self.outcomes is None:
            note = "No preview yet: p shows what would change."
        else:
            note = "\n".join(outcome_line(o) for o in self.outcomes)
        self.app.push_screen(
            FormModal(
                "Sign and publish the lists",
                fields,
                note=note,
                act=self.publish_with,
                done=self.published,
            )
        )

    def publish_with(self, answer: dict[str, str]) -> lists.PublishResult:
        """Sign and publish with the shares typed (run by the form: an error keeps it open,
        the share or the request number it is about marked)."""
        shares = [answer[k].strip() for k in ("share-1", "share-2") if answer[k].strip()]
        for name in ("share-1", "share-2"):
            if not answer[name].strip():
                raise FieldError(name, f"type PIN share {name[-1]} of the root token")
        raw = answer.get("emergency", "").strip()
        if raw and not raw.isdigit():
            raise FieldError("emergency", f"emergency request {raw!r}: a request number")
        emergency_id = int(raw) if raw else None
        return self.console.publish(shares, emergency_id=emergency_id)

    def published(self, result: lists.PublishResult) -> None:
        outcomes = result.outcomes
        self.outcomes = None
        self.show_preview()
        self.app.notify(published_text(outcomes), title="Published", markup=False)
        self.show_view("history")
        self.action_refresh()

    # -- acknowledgments --------------------------------------------------------------------------
    def load_overdue(self) -> None:
        def done(rows: list[lists.OverdueOperator]) -> None:
            self.overdue_rows = rows
            self.show_overdue()

        self.run_blocking(self.console.overdue, done=done, quiet=True)

    def show_overdue(self) -> None:
        rows = self.overdue_rows
        lines = [
            f"{len(rows)} overdue: operators that have not reported loading a version within "
            f"{LOAD_DEADLINE_DAYS} days (第十二条)"
            if rows
            else f"No operator is overdue (load within {LOAD_DEADLINE_DAYS} days, 第十二条)."
        ]
        if self.last_import is not None:
            result = self.last_import
            lines.append(
                f"Last import {result.report[:12]}…: {len(result.accepted)} accepted, "
                f"{len(result.refused)} refused"
            )
            lines += [f"  {row_error(error)}" for error in result.refused[:2]]
        self.query_one("#acks-note", Static).update("\n".join(lines))
        self.query_one("#acks-table", RowTable).fill(
            (
                f"{o.operator_id}/{o.list_type}",
                [
                    f"{o.operator_id} {o.name}"[:24],
                    o.list_type,
                    "—" if o.loaded is None else f"#{o.loaded}",
                    f"#{o.oldest_missing}",
                    short_time(iso_utc(o.published_at)),
                    str(o.days_since),
                ],
            )
            for o in rows
        )

    def action_import_acks(self) -> None:
        self.app.push_screen(
            FormModal(
                "Import an acknowledgment report",
                [Field("path", "Report file (.csv or .json)", placeholder="reports/acks.csv")],
                note="Columns: operator, list, sequence, loaded_at[, terminals]",
            ),
            self.import_answered,
        )

    def import_answered(self, answer: dict[str, str] | None) -> None:
        if answer is None or not answer["path"].strip():
            return
        path = Path(answer["path"].strip()).expanduser()
        console = self.console

        def job() -> lists.AckResult:
            return console.import_acks(path)

        def done(result: lists.AckResult) -> None:
            self.last_import = result
            refused = len(result.refused)
            message = f"{path.name}: {len(result.accepted)} rows accepted, {refused} refused."
            if refused:
                message += " " + "; ".join(row_error(e) for e in result.refused[:3])
            self.app.notify(
                message,
                title="Acknowledgments imported",
                severity="warning" if refused else "information",
                timeout=10 if refused else 5,
                markup=False,
            )
            self.show_view("acks")
            self.load_overdue()

        self.work(job, done=done, busy="Importing acknowledgments…")

    def action_add_operator(self) -> None:
        self.app.push_screen(
            FormModal(
                "Register an operator that loads the lists",
                [
                    Field("id", "Operator id"),
                    Field("name", "Name"),
                    Field("province", "Province code (empty: national)", placeholder="440000"),
                ],
            ),
            self.operator_answered,
        )

    def operator_answered(self, answer: dict[str, str] | None) -> None:
        if answer is None:
            return
        console = self.console
        province = answer["province"].strip() or None

        def job() -> lists.Operator:
            return console.add_operator(answer["id"], answer["name"].strip(), province)

        def done(row: lists.Operator) -> None:
            self.app.notify(f"Operator {row.operator_id} registered.", title="Operator")
            if self.view == "acks":
                self.load_overdue()

        self.work(job, done=done, busy="Registering…")

    # -- emergency publication (第三十四条) --------------------------------------------------------
    def load_requests(self) -> None:
        console = self.console

        def done(rows: list[EmergencyRequestView]) -> None:
            self.requests = rows
            self.query_one("#requests-table", RowTable).fill(
                (
                    str(r.id),
                    [
                        str(r.id),
                        r.state,
                        r.by,
                        short_time(iso_utc(r.at)),
                        str(r.required),
                        r.reason,
                    ],
                )
                for r in rows
            )

        self.run_blocking(console.emergency_requests, done=done, quiet=True)

    def action_emergency(self) -> None:
        self.app.push_screen(
            FormModal(
                "Request an emergency publication of every list (第三十四条)",
                [Field("reason", "Reason (goes to the audit log and to the approvers)")],
                note="Other emergency publishers approve it on the Approvals screen; then "
                "publish it here (s) with its request number.",
            ),
            self.emergency_answered,
        )

    def emergency_answered(self, answer: dict[str, str] | None) -> None:
        if answer is None:
            return
        console, reason = self.console, answer["reason"]

        def done(row: lists.EmergencyOutcome) -> None:
            if row.state == "pending":
                message = (
                    f"Request #{row.request} awaits {row.required} approval"
                    f"{'s' if row.required != 1 else ''} by another emergency publisher."
                )
            else:
                message = f"Request #{row.request} is {row.state}: publish it with s."
            self.app.notify(message, title="Emergency publication requested", markup=False)
            self.show_view("requests")
            self.load_requests()

        self.work(
            lambda: console.request_emergency(reason),
            done=done,
            busy="Requesting…",
        )
