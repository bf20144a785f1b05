"""The Audit screen's filter (issue #17): by actor, subject, action and time, with the true count
of what it matches over every page ('N of M events', counted by the service); a word it cannot
read marks the filter; the Subject column grows with the terminal."""

from __future__ import annotations

from demo_world import NOW, Demo
from sqlmodel import Session, col, func, select
from test_app import SIZE, aio, app_for, settle, sign_in_as
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Static

from ca.core.clock import iso_utc
from ca.store.models import AuditEvent
from tui.app import JtcaApp
from tui.screens.audit import AuditScreen, parse_filter


def count(demo: Demo, *where: object) -> int:
    with Session(demo.runtime.engine) as session:
        return int(session.exec(select(func.count()).select_from(AuditEvent).where(*where)).one())


async def filtered(pilot: Pilot[None], screen: AuditScreen, text: str) -> str:
    screen.query_one("#filter", Input).value = text
    await pilot.pause(0.5)  # the filter re-queries after a quiet moment
    await settle(pilot)
    await pilot.pause(0.3)
    await settle(pilot)
    return str(screen.query_one("#status", Static).content)


async def audit_screen(pilot: Pilot[None], app: JtcaApp, demo: Demo) -> AuditScreen:
    await pilot.pause()
    await sign_in_as(pilot, "gd-1", pin=demo.pin("gd-1"))
    await pilot.press("8")
    await settle(pilot)
    screen = app.screen
    assert isinstance(screen, AuditScreen)
    return screen


@aio
async def test_filters_by_actor_subject_action_and_time_with_true_counts(demo: Demo) -> None:
    app = app_for(demo)
    async with app.run_test(size=SIZE) as pilot:
        screen = await audit_screen(pilot, app, demo)
        total = count(demo)
        status = await filtered(pilot, screen, "actor:gd-1")
        by_gd1 = count(demo, col(AuditEvent.actor).contains("gd-1"))
        assert 0 < by_gd1 < total
        assert status.startswith(f"{by_gd1} of {total} events"), status
        assert {e.actor for e in screen.events} == {"gd-1"}

        status = await filtered(pilot, screen, "subject:440100")
        subject = count(demo, col(AuditEvent.subject).contains("440100"))
        assert status.startswith(f"{subject} of {total} events"), status

        day = iso_utc(NOW)[:10]
        status = await filtered(pilot, screen, f"actor:gd-1 since:{day} sign")
        start = parse_filter(f"since:{day}").since
        both = count(
            demo,
            col(AuditEvent.actor).contains("gd-1"),
            col(AuditEvent.action).contains("sign"),
            col(AuditEvent.at) >= start,
        )
        assert status.startswith(f"{both} of {total} events"), status
        assert "action contains “sign”" in status
        assert len(screen.events) == min(both, 100)

        status = await filtered(pilot, screen, f"until:{day}T00:00 actor:nobody-at-all")
        assert status.startswith(f"0 of {total} events"), status
        assert screen.events == []

        status = await filtered(pilot, screen, "since:yesterday")
        assert status.startswith("filter: since:yesterday: a date")
        assert screen.query_one("#filter", Input).has_class("-invalid")


@aio
async def test_the_subject_column_grows_at_200_columns(demo: Demo) -> None:
    app = app_for(demo)
    async with app.run_test(size=(200, 50)) as pilot:
        screen = await audit_screen(pilot, app, demo)
        await pilot.pause(0.3)
        table = screen.query_one("#events", DataTable)
        width = next(c.width for c in table.columns.values() if str(c.key.value) == "subject")
        assert width > 100
    assert SIZE == (80, 24)
