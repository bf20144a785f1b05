"""A key's state in the console (issue #17): a glyph and a word in a colour, readable in
monochrome (the glyph and the word are there without the colour), a legend under the table; a
revoked key shows no days left and carries its flag; the Label column grows with the
terminal."""

from __future__ import annotations

from demo_world import Demo
from rich.text import Text
from sqlmodel import Session, select
from test_app import SIZE, aio, app_for, sign_in_as
from test_polish import open_screen
from textual.widgets import DataTable, Input, Static

from ca.store.models import CityKey
from tui.screens.keys import KeysScreen
from tui.screens.states import LEGEND, LEGEND_NARROW, flags_text, state_text

SUSPENDED = "city-card-440100-g1"
REVOKED = "city-qr-440100-g1"


def set_states(demo: Demo) -> None:
    """Guangzhou's card key suspended and its QR key revoked, as the service records them."""
    with Session(demo.runtime.engine) as session:
        for key in session.exec(select(CityKey).where(CityKey.city == "440100")):
            if key.label == SUSPENDED:
                key.state = "suspended"
            elif key.label == REVOKED:
                key.state = "revoked"
            session.add(key)
        session.commit()


def test_the_words_of_each_state_and_flag_are_there_without_colour() -> None:
    for state, glyph in [("active", "●"), ("suspended", "‖"), ("revoked", "✗"), ("destroyed", "⊘")]:
        assert state_text(state).plain == f"{glyph} {state}"
    assert state_text("revoked").style != state_text("active").style
    assert state_text("active", 30).style == "yellow"  # expiring: a colour and the E flag
    assert flags_text("active", [], 30).plain == "E"
    assert flags_text("active", ["dormant", "violation"], 400).plain == "DV"
    assert flags_text("revoked", [], 1426).plain == "K"
    for words in ("E expiring", "R renewal due", "X expired", "D dormant", "V violation"):
        assert words in LEGEND_NARROW
    for words in ("S suspended", "K revoked", "● active", "‖ suspended", "✗ revoked"):
        assert words in LEGEND_NARROW
    assert all(len(line) <= 78 for line in LEGEND_NARROW.splitlines())


@aio
async def test_keys_show_states_flags_and_a_legend_at_80_columns(demo: Demo) -> None:
    set_states(demo)
    app = app_for(demo)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await sign_in_as(pilot, "gd-1", pin=demo.pin("gd-1"))
        await open_screen(pilot, "2", LEGEND_NARROW[:20])
        screen = app.screen
        assert isinstance(screen, KeysScreen)
        screen.query_one("#filter", Input).value = "440100"  # Guangzhou's keys only
        shown = await open_screen(pilot, "2", SUSPENDED, REVOKED)
        assert all(line in shown for line in LEGEND_NARROW.splitlines())
        suspended = next(line for line in shown.splitlines() if SUSPENDED in line)
        revoked = next(line for line in shown.splitlines() if REVOKED in line)
        assert "‖ suspended" in suspended
        words = suspended.split()
        assert "S" in words[words.index("suspended") + 3]  # after the stage and the days
        assert "✗ revoked" in revoked
        words = revoked.split()
        at = words.index("revoked")
        assert words[at + 2] == "—"  # no days left
        assert "K" in words[at + 3]  # the revoked flag
        table = screen.query_one("#keys", DataTable)
        cells = table.get_row(str(next(k.id for k in screen.page.keys if k.label == REVOKED)))
        assert "red" in str(cells[3].style)  # the state column in its colour
        table.move_cursor(row=[k.label for k in screen.page.keys].index(REVOKED))
        await pilot.pause(0.3)
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        detail = str(screen.query_one("#detail").render())
        assert "(revoked)" in detail
        assert "days left" not in detail


@aio
async def test_the_label_column_grows_with_the_terminal(demo: Demo) -> None:
    app = app_for(demo)
    async with app.run_test(size=(200, 50)) as pilot:
        await pilot.pause()
        await sign_in_as(pilot, "gd-1", pin=demo.pin("gd-1"))
        shown = await open_screen(pilot, "2", SUSPENDED)
        screen = app.screen
        assert isinstance(screen, KeysScreen)
        label = screen.query_one("#keys", DataTable).columns
        width = next(c.width for c in label.values() if str(c.key.value) == "label")
        assert width > 100
        assert LEGEND in shown


@aio
async def test_the_dashboard_counts_states_with_their_glyphs_and_colours(demo: Demo) -> None:
    set_states(demo)
    app = app_for(demo)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await sign_in_as(pilot, "gd-1", pin=demo.pin("gd-1"))
        counts = app.screen.query_one("#counts", Static).content
        assert isinstance(counts, Text)
        with Session(demo.runtime.engine) as session:
            states = [k.state for k in session.exec(select(CityKey)) if k.province == "440000"]
        assert f"‖ suspended {states.count('suspended')}" in counts.plain
        assert f"✗ revoked {states.count('revoked')}" in counts.plain
        assert states.count("revoked") >= 1
        styled = {counts.plain[span.start : span.end]: str(span.style) for span in counts.spans}
        assert styled["✗ revoked"] == "bold red"
        assert styled["● active"] == "green"
