"""A key's state on the Cities and Cleanup tables (issue #17) as on Keys and the Dashboard: its
glyph and word (readable in monochrome) in its colour (``tui.screens.states``)."""

from __future__ import annotations

from demo_world import Demo
from rich.text import Text
from test_app import SIZE, aio, app_for, sign_in_as
from test_console_states import REVOKED, SUSPENDED, set_states
from test_polish import open_screen

from tui.screens.cities import CitiesScreen
from tui.screens.cleanup import CleanupScreen
from tui.screens.forms import MarkTable

GUANGZHOU = "440100"
HUIZHOU_REVOKED = "city-qr-441300-g1"  # the demo's revoked key, past its grace period


def styles(cell: object) -> dict[str, str]:
    """A cell's styled parts: its text → its style."""
    assert isinstance(cell, Text), cell
    parts = {cell.plain: str(cell.style)} if cell.style else {}
    parts.update({cell.plain[s.start : s.end]: str(s.style) for s in cell.spans})
    return parts


@aio
async def test_cities_show_each_keys_state_with_its_glyph_and_colour(demo: Demo) -> None:
    set_states(demo)  # Guangzhou's card key suspended, its QR key revoked
    assert SUSPENDED.startswith("city-card-")
    assert REVOKED.startswith("city-qr-")
    app = app_for(demo)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await sign_in_as(pilot, "gd-1", pin=demo.pin("gd-1"))
        shown = await open_screen(pilot, "3", "card ‖ suspended · qr ✗ revoked")
        screen = app.screen
        assert isinstance(screen, CitiesScreen)
        line = next(line for line in shown.splitlines() if GUANGZHOU in line and "广州市" in line)
        assert "card ‖ suspended · qr ✗ revoked" in line  # the words, without colour
        assert "card ○ pre-active · qr ○ pre-active" in shown  # Shenzhen's
        cell = screen.query_one("#cities", MarkTable).get_row(GUANGZHOU)[4]
        assert isinstance(cell, Text)
        assert cell.plain == "card ‖ suspended · qr ✗ revoked"
        parts = styles(cell)
        assert parts["‖ suspended"] == "bold yellow"
        assert parts["✗ revoked"] == "bold red"


@aio
async def test_cleanup_shows_each_keys_state_with_its_glyph_and_colour(demo: Demo) -> None:
    app = app_for(demo)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await sign_in_as(pilot, "gd-1", pin=demo.pin("gd-1"))
        shown = await open_screen(pilot, "7", HUIZHOU_REVOKED, "○ pre-active")
        screen = app.screen
        assert isinstance(screen, CleanupScreen)
        revoked = next(line for line in shown.splitlines() if HUIZHOU_REVOKED in line)
        assert "✗ revoked" in revoked
        destroy = screen.query_one("#destroy", MarkTable)
        [key] = [str(row.key.value) for row in destroy.ordered_rows]
        assert screen.labels[key] == HUIZHOU_REVOKED
        state = destroy.get_row(key)[3]
        assert isinstance(state, Text)
        assert state.plain == "✗ revoked"
        assert str(state.style) == "bold red"
        dormant = screen.query_one("#dormant", MarkTable)
        states = [dormant.get_row(str(row.key.value))[3] for row in dormant.ordered_rows]
        assert len(states) == 2  # Shenzhen's two keys, delivered and never activated
        assert all(isinstance(s, Text) and s.plain == "○ pre-active" for s in states)
