"""Approvals (4): dual control in the console. The items awaiting this officer's decision —
key applications (第九条), key actions (suspend, revoke, dormant cleanup, material destruction;
第十、十一条), emergency publications (第三十四条) and officers' enrolments (issue #12) — never
the officer's own requests.

Before approving or rejecting, the officer is shown exactly what they decide on: the signed
request that opened the item (``approvals.request``: operation, requester, time, its SM3). The
decision is then signed by the officer's own token over that request (``Console.decide``:
``city.decide``, the lists' emergency decision, ``officer.decide``); the service checks the
signature, counts the approvers the policy requires and carries the action out on the last
one."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Static

from ca.client.console import Console
from ca.core.clock import iso_utc
from ca.core.errors import JtcaError
from ca.core.vocabulary import item_ref
from ca.ops.approvals import PendingRequestView
from ca.ops.console import PendingItem
from tui.screens.base import ConsoleFooter
from tui.screens.forms import Field, FormModal, RowTable
from tui.screens.panels import ProgressScreen, WorkProgress


class ApprovalsScreen(ProgressScreen):
    """What awaits your decision (dual control): approve, or reject with a reason."""

    KEY: ClassVar[str] = "4"
    TITLE: ClassVar[str] = "Approvals"
    SHORT: ClassVar[str] = "Appr"  # the navigation bar at 80 columns
    ACTIONS: ClassVar[tuple[str, ...]] = (
        "city-key.approve",
        "city-key.suspend",
        "city-key.revoke",
        "city-key.cleanup-dormant",
        "city-key.destroy-material",
        "list.emergency-publish",
        "officer.approve",
    )

    DEFAULT_CSS = """
    ApprovalsScreen #approvals-title { height: 1; background: $boost; text-style: bold; }
    ApprovalsScreen #pending { height: 1fr; border: round $primary; }
    ApprovalsScreen #detail { height: 4; border-top: solid $primary; padding: 0 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "approve", "Approve"),
        Binding("x", "reject", "Reject"),
        Binding("r,f5", "refresh", "Refresh"),
    ]

    def __init__(self, console: Console) -> None:
        super().__init__(console)
        self.items: dict[str, PendingItem] = {}

    def compose(self) -> ComposeResult:
        yield Static(id="approvals-title", markup=False)
        table = RowTable(id="pending")
        table.border_title = "Awaiting your decision"
        yield table
        yield Static(id="detail", markup=False)
        yield WorkProgress()
        yield ConsoleFooter()

    def on_mount(self) -> None:
        table = self.query_one("#pending", RowTable)
        table.add_columns("Kind", "#", "What", "By", "At", "Reason")
        table.focus()

    def on_screen_resume(self) -> None:
        self.action_refresh()  # shown again: another officer or screen may have changed things

    def action_refresh(self) -> None:
        self.run_blocking(self.console.pending, done=self._show, quiet=True)

    def _show(self, rows: list[PendingItem]) -> None:
        self.items = {f"{row.kind}:{row.id}": row for row in rows}
        self.query_one("#approvals-title", Static).update(
            f" {len(rows)} awaiting the decision of {self.console.actor.id}"
        )
        self.query_one("#pending", RowTable).fill(
            (
                key,
                [row.kind, str(row.id), row.what, row.by, iso_utc(row.at), row.reason],
            )
            for key, row in self.items.items()
        )
        self._describe()

    def on_data_table_row_highlighted(self, event: RowTable.RowHighlighted) -> None:
        self._describe()

    def _describe(self) -> None:
        item = self._current()
        self.query_one("#detail", Static).update(
            f"{item_ref(item.kind, item.id)}: {item.what}\n"
            f"asked by {item.by} at {iso_utc(item.at)}"
            + (f"\nreason: {item.reason}" if item.reason else "")
            if item
            else "Nothing awaits your decision."
        )

    def _current(self) -> PendingItem | None:
        key = self.query_one("#pending", RowTable).current_key()
        return self.items.get(key) if key else None

    def action_approve(self) -> None:
        item = self._current()
        if item is None:
            self.fail(JtcaError("nothing to approve", title="Approve"))
            return
        self._show_request(item, approve=True)

    def action_reject(self) -> None:
        item = self._current()
        if item is None:
            self.fail(JtcaError("nothing to reject", title="Reject"))
            return
        self._show_request(item, approve=False)

    def _show_request(self, item: PendingItem, *, approve: bool) -> None:
        """Fetch the signed request behind ``item``, then ask: what is decided is shown."""
        console = self.console
        self.work(
            lambda: console.signed_request(item.kind, item.id),
            done=lambda request: self._ask(item, request, approve=approve),
            busy="Fetching the request you decide on…",
        )

    def _ask(self, item: PendingItem, request: PendingRequestView, *, approve: bool) -> None:
        note = describe_request(item, request)
        token = self.console.token.label if self.console.token else "your token"
        fields: list[Field] = []
        if not approve:
            fields = [Field("reason", "Why is it rejected?", placeholder="reason (required)")]
        elif item.kind == "emergency":  # the last approval publishes: the signing key is opened
            fields = [
                Field(f"share-{i}", f"Root token PIN share {i}", password=True) for i in (1, 2)
            ]
            note += "\nThe last approval publishes every list: the root token's shares."
        note += f"\nYour token {token} signs this {'approval' if approve else 'rejection'}."

        def answered(result: dict[str, str] | None) -> None:
            if result is None:
                return
            reason = result.pop("reason", "")
            shares = [v.strip() for _, v in sorted(result.items()) if v.strip()]
            self._decide(item, approve=approve, reason=reason, shares=shares, digest=request.digest)

        verb = "Approve" if approve else "Reject"
        self.app.push_screen(
            FormModal(f"{verb} {item_ref(item.kind, item.id)}", fields, note=note), answered
        )

    def _decide(
        self,
        item: PendingItem,
        *,
        approve: bool,
        reason: str,
        shares: list[str],
        digest: str,
    ) -> None:
        kind, item_id, console = item.kind, item.id, self.console

        def done(state: str) -> None:
            verdict = "approved" if approve else "rejected"
            self.app.notify(
                f"{item_ref(kind, item_id)} {verdict}: now {state}",
                title="Decision recorded",
                markup=False,
            )
            self.action_refresh()

        self.work(
            lambda: console.decide(
                kind, item_id, approve=approve, reason=reason, shares=shares, digest=digest
            ),
            done=done,
            busy="Your token signs the decision…",
        )


def describe_request(item: PendingItem, request: PendingRequestView) -> str:
    """What the officer decides on: the item, and the signed request that opened it."""
    body = request.body.decode("utf-8", errors="replace")
    lines = [
        item.what,
        f"asked by {request.officer} at {iso_utc(request.at)} ({request.operation})",
        f"request: {body if len(body) <= 64 else body[:63] + '…'}",
        f"SM3 {request.digest}",
    ]
    if item.reason:
        lines.insert(2, f"reason: {item.reason}")
    return "\n".join(lines)
