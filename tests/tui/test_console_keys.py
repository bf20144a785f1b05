"""The console's keys at 80×24 (issue #17): the footer never cuts ``^o Sign out`` and shows
``^p palette`` whole on every screen; actions the officer's roles do not allow are dimmed and,
pressed, say which role they need; ``j``/``k``, ``g``/``G`` move in tables; ``q`` closes a
screen (a modal, or back to the screen before), never the app."""

from __future__ import annotations

from demo_world import Demo
from test_app import SIZE, aio, app_for, settle, sign_in_as
from test_polish import screen_text
from textual.pilot import Pilot
from textual.widgets import DataTable

from tui.app import HelpScreen, JtcaApp
from tui.screens.base import ConsoleFooter
from tui.screens.dashboard import DashboardScreen
from tui.screens.keys import KeysScreen


async def shown(pilot: Pilot[None], key: str) -> str:
    await pilot.press(key)
    await settle(pilot)
    await pilot.pause(0.3)  # the footer fills in its keys a moment later
    await settle(pilot)
    return screen_text(pilot.app)


async def sign_out(pilot: Pilot[None]) -> None:
    await pilot.press("ctrl+o")
    await settle(pilot)


@aio
async def test_sign_out_and_the_palette_on_every_screen_at_80_columns(demo: Demo) -> None:
    app = app_for(demo)
    seen: set[str] = set()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        for officer in ("gd-1", "ca-op-1", "publisher-1", "mot-root-1"):
            await sign_in_as(pilot, officer, pin=demo.pin(officer))
            for entry in app.entries:
                text = await shown(pilot, entry.key)
                footer = text.splitlines()[-1]
                assert "^o Sign out" in footer, (officer, entry.title, footer)
                assert footer.rstrip().endswith("^p palette"), (officer, entry.title, footer)
                assert app.screen.query(ConsoleFooter)
                seen.add(entry.title)
            await sign_out(pilot)
    assert len(seen) == 9, seen


@aio
async def test_a_dimmed_action_says_which_role_it_needs(demo: Demo) -> None:
    app = app_for(demo)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await sign_in_as(pilot, "publisher-1", pin=demo.pin("publisher-1"))
        await shown(pilot, "2")
        screen = app.screen
        assert isinstance(screen, KeysScreen)
        dimmed = {b.binding.key for b in screen.active_bindings.values() if not b.enabled}
        assert {"u", "x"} <= dimmed  # suspend, revoke: shown, dimmed
        footer = screen.query_one(ConsoleFooter)
        assert any(k.has_class("-disabled") for k in footer.query("FooterKey"))
        await pilot.press("u")
        await settle(pilot)
        (said,) = [m for t, m in app.notices if t == "Not for your role"]
        assert "Suspend (city-key.suspend) needs one of the roles" in said
        assert "ministry-ca-operator" in said
        assert "provincial-officer" in said
        assert "you are publisher" in said
        assert isinstance(app.screen, KeysScreen)  # nothing else happened
        assert app.errors == []
        assert "(Suspend)" in app.help_text()


@aio
async def test_j_k_g_G_in_tables_and_q_goes_back(demo: Demo) -> None:
    app = app_for(demo)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await sign_in_as(pilot, "gd-1", pin=demo.pin("gd-1"))
        await shown(pilot, "2")
        screen = app.screen
        assert isinstance(screen, KeysScreen)
        for _ in range(50):
            if len(screen.page.keys) > 2:
                break
            await pilot.pause(0.1)
        table = screen.query_one("#keys", DataTable)
        table.focus()
        rows = table.row_count
        assert rows > 2
        await pilot.press("j", "j")
        assert table.cursor_row == 2
        await pilot.press("k")
        assert table.cursor_row == 1
        await pilot.press("G")
        assert table.cursor_row == rows - 1
        await pilot.press("g")
        assert table.cursor_row == 0
        # q: back to the screen before, then no further than the first; the app stays
        await pilot.press("q")
        await settle(pilot)
        assert isinstance(app.screen, DashboardScreen)
        await pilot.press("q")
        await settle(pilot)
        assert isinstance(app.screen, DashboardScreen)
        assert app.is_running
        # q closes a modal (help) and leaves the screen under it
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("q")
        await pilot.pause()
        assert isinstance(app.screen, DashboardScreen)
        assert isinstance(app, JtcaApp)
