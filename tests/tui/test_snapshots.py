"""Snapshots of the console at 80×24 on the demo state with the clock frozen at the demo's
"now" (pytest-textual-snapshot; refresh with ``pytest tests/tui --snapshot-update`` and review
the SVGs in ``__snapshots__``)."""

from __future__ import annotations

from typing import Any

import pytest
from demo_world import Demo
from textual.pilot import Pilot
from textual.widgets import Input

from ca.ops.demo import CREDENTIALS
from tui.app import JtcaApp
from tui.screens.dashboard import DashboardScreen

SIZE = (80, 24)


async def settle(pilot: Pilot[None]) -> None:
    """Workers done, their results shown, and the footer composed."""
    for _ in range(4):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
    await pilot.pause(0.3)  # the footer fills in its keys on a bindings signal, a moment later
    await pilot.pause()


def still(app: JtcaApp) -> None:
    for field in app.screen.query(Input):
        field.cursor_blink = False


async def signed_in(pilot: Pilot[None], demo: Demo) -> None:
    screen = pilot.app.screen
    screen.query_one("#officer", Input).value = "gd-1"
    screen.query_one("#pin", Input).value = demo.credentials.pins["gd-1"]
    screen.query_one("#pin", Input).focus()
    await pilot.press("enter")
    for _ in range(200):  # the sign-in runs in a worker; the dashboard replaces the form
        if isinstance(pilot.app.screen, DashboardScreen):
            break
        await pilot.pause(0.02)
    await settle(pilot)


@pytest.fixture
def app(demo: Demo, monkeypatch: pytest.MonkeyPatch) -> JtcaApp:
    monkeypatch.chdir(demo.state.parent)  # the demo hint shows state/demo-credentials.json
    credentials = demo.state / CREDENTIALS
    return JtcaApp(demo.client, officer="gd-1", demo_credentials=credentials, clock=demo.clock)


def test_sign_in_screen(app: JtcaApp, snap_compare: Any) -> None:
    async def before(pilot: Pilot[None]) -> None:
        await settle(pilot)
        still(app)

    assert snap_compare(app, terminal_size=SIZE, run_before=before)


def test_dashboard(app: JtcaApp, demo: Demo, snap_compare: Any) -> None:
    async def before(pilot: Pilot[None]) -> None:
        await signed_in(pilot, demo)

    assert snap_compare(app, terminal_size=SIZE, run_before=before)


def test_keys_screen(app: JtcaApp, demo: Demo, snap_compare: Any) -> None:
    async def before(pilot: Pilot[None]) -> None:
        await signed_in(pilot, demo)
        await pilot.press("2")
        await settle(pilot)
        still(app)

    assert snap_compare(app, terminal_size=SIZE, run_before=before)
