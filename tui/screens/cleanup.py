"""Cleanup (7): dormant keys — delivered but never activated within their class's dormancy
threshold — reviewed and revoked (第十条: 长期未使用的密钥…清理撤销), and keys whose grace
period after revocation or deactivation has ended, whose material is destroyed (the record
stays, 第二十九条). The lists are ``console.cleanup``; both actions are requested through
``Console.request`` (``city.cleanup``, ``city.destroy-material``); the policy's dual control
decides whether they run at once or await approvers (Approvals, 4). Destroy-material destroys the
ministry's copy; a province's or a city's copy awaits destruction at its site, where an officer
destroys it in the site's own token (``Console.destroy_copies``, key d)."""

from __future__ import annotations

from typing import ClassVar, Final

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Static

from ca.client.console import Console
from ca.core.clock import iso_utc
from ca.core.errors import JtcaError
from ca.core.vocabulary import request_ref
from ca.ops.city import ActionOutcome
from ca.ops.console import CleanupView
from ca.ops.packages import SiteCopy
from tui.screens.base import ConsoleFooter
from tui.screens.forms import Field, FormModal, MarkTable
from tui.screens.panels import ProgressScreen, WorkProgress, short_stage
from tui.screens.states import state_text

GRACE_ENDED: Final = "grace period ended"
CLEANUP: Final = "city-key.cleanup-dormant"
DESTROY: Final = "city-key.destroy-material"
SITE_COPIES: Final = ("city-key.import", DESTROY)  # the roles that handle a site's copies


def day(moment: int | None) -> str:
    return iso_utc(moment)[:10] if moment is not None else ""


def outcome_text(outcome: ActionOutcome) -> tuple[str, str]:
    """(title, message) of a requested action's outcome: done, or awaiting approvers."""
    keys = ", ".join(outcome.keys)
    if outcome.state == "done":
        return "Done", f"{outcome.action} of {keys}: done"
    if outcome.state == "pending":
        return (
            "Awaiting approvers",
            f"{outcome.action} of {keys} is {request_ref(outcome.action_id or 0)}: "
            f"{outcome.approvals} of {outcome.required} approvals (Approvals, 4)",
        )
    return outcome.state.capitalize(), f"{outcome.action} of {keys}: {outcome.state}"


class CleanupScreen(ProgressScreen):
    """Dormant keys: review and revoke; keys past their grace period: destroy the
    material."""

    KEY: ClassVar[str] = "7"
    TITLE: ClassVar[str] = "Cleanup"
    SHORT: ClassVar[str] = "Clean"  # the navigation bar at 80 columns
    ACTIONS: ClassVar[tuple[str, ...]] = (CLEANUP, DESTROY)

    DEFAULT_CSS = """
    CleanupScreen #cleanup-title { height: 1; background: $boost; text-style: bold; }
    CleanupScreen #dormant, CleanupScreen #destroy { height: 1fr; border: round $primary; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("c", "cleanup", "Clean up"),
        Binding("x", "destroy", "Destroy material"),
        Binding("d", "destroy_copies", "Site copies"),
        Binding("r,f5", "refresh", "Refresh"),
    ]

    def __init__(self, console: Console) -> None:
        super().__init__(console)
        self.allowed = {
            "cleanup": console.can(CLEANUP),
            "destroy": console.can(DESTROY),
            # a province's officer, at its site or its cities' (the ministry's copies are the
            # service's to destroy)
            "destroy_copies": console.province is not None
            and any(console.can(a) for a in SITE_COPIES),
        }
        self.needs = {
            "cleanup": (CLEANUP,),
            "destroy": (DESTROY,),
            "destroy_copies": tuple(SITE_COPIES),
        }
        self.labels: dict[str, str] = {}

    def compose(self) -> ComposeResult:
        yield Static(id="cleanup-title", markup=False)
        dormant = MarkTable(id="dormant")
        dormant.border_title = "Dormant: delivered, never activated (space marks)"
        yield dormant
        destroy = MarkTable(id="destroy")
        destroy.border_title = "Grace period ended: material to destroy"
        yield destroy
        yield WorkProgress()
        yield ConsoleFooter()

    def on_mount(self) -> None:
        dormant = self.query_one("#dormant", MarkTable)
        dormant.add_mark_column()
        dormant.add_columns("Key", "City", "State", "Stage", "Delivered")  # 80 columns: the
        # city by name (its code is in the key's label), the stage abbreviated (short_stage)
        destroy = self.query_one("#destroy", MarkTable)
        destroy.add_mark_column()
        destroy.add_columns("Key", "City", "State", "Destroy after")
        dormant.focus()

    def on_screen_resume(self) -> None:
        self.action_refresh()  # shown again: another officer or screen may have changed things

    def action_refresh(self) -> None:
        self.run_blocking(self.console.cleanup, done=self._show, quiet=True)

    def _show(self, loaded: CleanupView) -> None:
        dormant, due = loaded.dormant, loaded.destroy_due
        self.labels = {str(k.id): k.label for k in [*dormant, *due]}
        self.query_one("#cleanup-title", Static).update(
            f" {len(dormant)} dormant · {len(due)} past their grace period"
            + (f" · province {self.console.province}" if self.console.province else "")
        )
        self.query_one("#dormant", MarkTable).fill(
            (
                str(k.id),
                [
                    k.label,
                    k.city_name,
                    state_text(k.state, k.days_left),
                    short_stage(k.stage),
                    day(k.delivered_at),
                ],
            )
            for k in dormant
        )
        self.query_one("#destroy", MarkTable).fill(
            (
                str(k.id),
                [
                    k.label,
                    f"{k.city_name} {k.city}",
                    state_text(k.state, k.days_left),
                    day(k.destroy_after),
                ],
            )
            for k in due
        )

    def action_cleanup(self) -> None:
        ids = self.query_one("#dormant", MarkTable).chosen()
        if not ids:
            self.fail(JtcaError("no dormant key to clean up", title="Dormant cleanup"))
            return
        labels = ", ".join(self.labels.get(i, i) for i in ids)

        def given(result: dict[str, str] | None) -> None:
            if result is not None:
                self._request(CLEANUP, ids, result["reason"])

        self.app.push_screen(
            FormModal(
                f"Revoke {len(ids)} dormant key{'s' if len(ids) != 1 else ''}",
                [Field("reason", "Reason", placeholder="e.g. never activated (第十条)")],
                note=f"{labels}\nRevoked keys' material is destroyed after the grace period.",
            ),
            given,
        )

    def action_destroy(self) -> None:
        table = self.query_one("#destroy", MarkTable)
        every = [str(row.key.value) for row in table.ordered_rows]
        ids = [k for k in every if k in table.marked] or every  # marked, or all that are due
        if not ids:
            self.fail(JtcaError("no key past its grace period", title="Destroy material"))
            return
        labels = ", ".join(self.labels.get(i, i) for i in ids)

        def confirmed(result: dict[str, str] | None) -> None:
            if result is not None:
                self._request(DESTROY, ids, GRACE_ENDED)

        self.app.push_screen(
            FormModal(
                f"Destroy the material of {len(ids)} key{'s' if len(ids) != 1 else ''}",
                note=f"{labels}\nThe material is destroyed in the ministry's token; each "
                "province's and city's copy awaits destruction at its site (key d there); "
                "the records stay."
                + ("" if table.marked else "\n(No key marked: all keys listed.)"),
            ),
            confirmed,
        )

    def action_destroy_copies(self) -> None:
        """At a province's or a city's site: destroy the holder's copies awaiting destruction
        in this site's token."""

        def given(result: dict[str, str] | None) -> None:
            if result is None:
                return
            holder = result["holder"].strip()

            def done(copies: list[SiteCopy]) -> None:
                if copies:
                    tokens = ", ".join(sorted({c.token for c in copies}))
                    message = f"{len(copies)} cop{'ies' if len(copies) != 1 else 'y'} of " + (
                        f"{holder} destroyed in {tokens}: " + ", ".join(c.label for c in copies)
                    )
                else:
                    message = f"no copy of {holder} awaits destruction"
                self.app.notify(message, title="Site copies", timeout=8, markup=False)
                self.action_refresh()

            self.work(lambda: self.console.destroy_copies(holder), done=done, busy="Destroying…")

        self.app.push_screen(
            FormModal(
                "Destroy this site's copies awaiting destruction",
                [
                    Field(
                        "holder",
                        "Holder (the province or the city whose token is here)",
                        value=self.console.province or "",
                    )
                ],
                note="Each copy that destroy-material left for this site is destroyed in its "
                "token here and reported to the service.",
            ),
            given,
        )

    def _request(self, action: str, ids: list[str], reason: str) -> None:
        key_ids = [int(i) for i in ids]

        def done(outcome: ActionOutcome) -> None:
            title, message = outcome_text(outcome)
            for table in self.query(MarkTable):
                table.marked.clear()
            self.app.notify(message, title=title, timeout=8, markup=False)
            self.action_refresh()

        self.work(
            lambda: self.console.request(action, key_ids, reason),
            done=done,
            busy="Requesting…",
        )
