"""The review's polish, in the real console at 80×24 on the demo state: every column of the
Keys, Cities and Cleanup tables on screen; the dashboard's counts open the Keys screen filtered
and it lists the keys expiring soonest; usage reports and transport keys from the Cities screen;
the ceremony's file in a visible form; Reject on ``x`` and Renew confirmed first; the console's
commands first in the command palette."""

from __future__ import annotations

from pathlib import Path

from demo_world import NOW, Demo
from officer_desk import enrol_directly
from sqlmodel import Session, col, select
from test_app import SIZE, aio, app_for, settle, sign_in_as
from textual.command import CommandList
from textual.widgets import Input, Static

from ca.client.console import open_token
from ca.store.models import CityKey, TransportKey
from tui.app import ConsoleCommands, JtcaApp
from tui.screens.approvals import ApprovalsScreen
from tui.screens.cities import CitiesScreen
from tui.screens.dashboard import DashboardScreen
from tui.screens.forms import FormModal
from tui.screens.keys import KeysScreen, ReasonModal
from tui.screens.panels import ReportModal
from tui.screens.states import LEGEND_NARROW

DAY = 86_400


def screen_text(app: JtcaApp) -> str:
    """What the terminal shows, line by line (wide characters take two cells)."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


async def open_screen(pilot, key: str, *shown: str) -> str:  # type: ignore[no-untyped-def]
    """Open a screen; with ``shown``, wait (up to 15 s) until all those texts are on it — its
    tables are filled by workers calling the service and re-laid out once measured, which a
    loaded machine may finish late."""
    await pilot.press(key)
    await settle(pilot)
    await pilot.pause(0.3)  # the footer fills in its keys a moment later
    await settle(pilot)  # and the tables repaint once their columns are measured (when idle)
    for _ in range(150):
        if all(text in screen_text(pilot.app) for text in shown):
            break
        await pilot.pause(0.1)
        await settle(pilot)
    return screen_text(pilot.app)


def keys_in_db(demo: Demo) -> list[CityKey]:
    with Session(demo.runtime.engine) as session:
        return list(session.exec(select(CityKey).order_by(col(CityKey.id))))


# -- 1. every column fits 80 columns ------------------------------------------------------------
@aio
async def test_keys_cities_and_cleanup_tables_fit_80_columns(demo: Demo) -> None:
    app = app_for(demo)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await sign_in_as(pilot, "gd-1", pin=demo.pin("gd-1"))

        keys = await open_screen(pilot, "2", "city-card-440300-g1", LEGEND_NARROW[:20])
        header = next(line for line in keys.splitlines() if "Label" in line)
        for name in ("Id", "Label", "City", "State", "Stage", "Days", "Flags"):
            assert f" {name} " in f"{header} ", (name, header)
        shenzhen = next(line for line in keys.splitlines() if "city-card-440300-g1" in line)
        # (a scrollbar may follow: more keys than rows at 80×24)
        assert shenzhen.split()[3:8] == ["○", "pre-active", "at-province", "1426", "D"]
        assert all(line in keys for line in LEGEND_NARROW.splitlines())

        cities = await open_screen(
            pilot,
            "3",
            "Key                  City",
            "card ○ pre-active · qr ○ pre-active",
            "5  generated  gd-1  3 ",
        )
        assert "Keys (state)" in cities
        assert "card ○ pre-active · qr ○ pre-active" in cities
        assert "广州市 440100: card active, installed · qr active, installed" in cities
        assert "#  State      By    Cities" in cities
        assert "5  generated  gd-1  3 " in cities  # application #5: three cities
        assert "Key                  City" in cities  # awaiting delivery
        assert "^o Sign out" in cities

        heading = "Key                  City    State         Stage        Delivered"
        dormant = "city-qr-440300-g1    深圳市  ○ pre-active  at-province  2025-10-18"
        cleanup = await open_screen(pilot, "7", heading, dormant)
        assert heading in cleanup, cleanup
        assert dormant in cleanup
        assert "^o Sign out" in cleanup
        assert max(len(line) for line in cleanup.splitlines()) <= 80


# -- 2. dashboard: from a count to the keys, and the keys expiring soonest -----------------------
@aio
async def test_dashboard_opens_keys_filtered(demo: Demo) -> None:
    app = app_for(demo)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await sign_in_as(pilot, "gd-1", pin=demo.pin("gd-1"))
        assert isinstance(app.screen, DashboardScreen)
        assert "city-card-441900-g1" in screen_text(app)  # Dongguan's: 20 days left
        await pilot.press("d")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, KeysScreen)
        assert screen.asked.quick == "d"
        assert [r.label for r in screen.page.keys] == [
            "city-card-440300-g1",
            "city-qr-440300-g1",
        ]
        await pilot.press("1")
        await settle(pilot)
        await pilot.press("s")
        await settle(pilot)
        assert app.screen is screen
        assert screen.asked.quick == "s"
        assert [r.label for r in screen.page.keys] == ["city-qr-440600-g1"]
        assert "^o Sign out" in await open_screen(pilot, "1")


@aio
async def test_dashboard_lists_the_keys_expiring_soonest(demo: Demo) -> None:
    later = NOW + (1426 - 60) * DAY  # the demo keys end 1426 days after the demo's "now"
    demo.clock.set(later)  # the service's clock: the keys' days left are counted there
    # gd-1's officer certificate (a year) has long ended by then: a new one for the same token
    # key, as a renewal at that time would give
    with open_token("gd-1", demo.pin("gd-1"), state=demo.state) as token:
        enrol_directly(demo.runtime, token, "gd-1", later)
    app = app_for(demo)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await sign_in_as(pilot, "gd-1", pin=demo.pin("gd-1"))
        text = screen_text(app)
        assert "Expiring soonest (≤90 d)" in text
        assert "city-card-440100-g1   广州市 440100     60 days left" in text
        assert len(app.screen.soonest) == 5  # type: ignore[attr-defined]
        await pilot.press("e")
        await settle(pilot)
        assert isinstance(app.screen, KeysScreen)
        assert app.screen.page.total == 6


# -- 3. usage reports and transport keys on the Cities screen -------------------------------------
REPORT = """key,city,first_use,last_use,used_in
city-card-440100-g1,440100,2026-11-01T00:00:00Z,2026-11-10T00:00:00Z,440100
city-qr-440100-g1,440100,not a time,2026-11-10T00:00:00Z,440100
city-card-110100-g1,110100,2026-11-01T00:00:00Z,2026-11-10T00:00:00Z,110100
"""


@aio
async def test_cities_imports_a_usage_report(demo: Demo, tmp_path: Path) -> None:
    report = tmp_path / "usage.csv"
    report.write_text(REPORT, encoding="utf-8")
    app = app_for(demo)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await sign_in_as(pilot, "gd-1", pin=demo.pin("gd-1"))
        await open_screen(pilot, "3")
        await pilot.press("u")
        await pilot.pause()
        form = app.screen
        assert isinstance(form, FormModal)
        form.query_one("#field-path", Input).value = str(report)
        await pilot.press("enter")
        await settle(pilot)
        popup = app.screen
        assert isinstance(popup, ReportModal)
        text = str(popup.query_one("#report-text").render())
        assert text.startswith("1 kept, 2 refused, 0 violations, 0 activated")
        assert "Refused rows:" in text
        assert "      3  first_use" in text
        assert "      4  city" in text
        assert ("Usage report imported", "1 kept, 2 refused, 0 violations, 0 activated") in (
            app.notices
        )
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, CitiesScreen)
        assert app.errors == []


@aio
async def test_cities_registers_a_transport_key(demo: Demo) -> None:
    with Session(demo.runtime.engine) as session:
        before = session.exec(
            select(TransportKey)
            .where(TransportKey.holder == "440000")
            .where(TransportKey.status == "active")
        ).one()
    app = app_for(demo)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await sign_in_as(pilot, "gd-1", pin=demo.pin("gd-1"))
        await open_screen(pilot, "3")
        await pilot.press("t")
        await pilot.pause()
        form = app.screen
        assert isinstance(form, FormModal)
        assert form.query_one("#field-holder", Input).value == "440000"
        # never pre-filled with the live key's token: Enter twice retires nothing
        assert form.query_one("#field-token", Input).value == ""
        assert before.token in str(form.query_one(".form-note", Static).content)
        await pilot.press("enter", "enter")
        await settle(pilot)
        assert isinstance(app.screen, FormModal)
        assert form.query_one("#field-token", Input).has_class("-invalid")
        assert not [m for t, m in app.notices if t == "Transport keys registered"]
        form.query_one("#field-token", Input).value = before.token
        form.query_one("#field-token", Input).focus()
        await pilot.press("enter")
        await settle(pilot)
        assert app.errors == [("Bad input", "type the label of the token for the new keys")]
        shown = [m for t, m in app.notices if t == "Transport keys registered"]
        assert len(shown) == 1
        assert "signing key pkcs11:" in shown[0]
        assert "encryption key pkcs11:" in shown[0]
    with Session(demo.runtime.engine) as session:
        rows = session.exec(
            select(TransportKey)
            .where(TransportKey.holder == "440000")
            .order_by(col(TransportKey.id))
        ).all()
    # the demo's first pair (renewed 400 days ago), that renewal, and the new one
    assert [r.status for r in rows] == ["retired", "retired", "active"]
    assert rows[-1].token == before.token
    assert rows[-1].public_key != before.public_key
    # both halves recorded, apart, and shown as the notice names them
    assert rows[-1].sign_public_key not in (None, rows[-1].public_key)
    assert rows[-1].legacy is False
    assert f"public {rows[-1].sign_public_key}" in shown[0]
    assert f"public {rows[-1].public_key}" in shown[0]


# -- 4, 5. the ceremony's file in a form; Reject on x; Renew confirmed ----------------------------
@aio
async def test_ceremony_load_is_a_form_with_the_path(demo: Demo) -> None:
    app = app_for(demo)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await sign_in_as(pilot, "mot-root-1", pin=demo.pin("mot-root-1"))
        text = await open_screen(pilot, "9")
        assert "root-example.toml · l: load another" in text
        await pilot.press("l")
        await pilot.pause()
        form = app.screen
        assert isinstance(form, FormModal)
        assert form.query_one("#field-path", Input).value.endswith("root-example.toml")
        assert "Ceremony file (TOML)" in screen_text(app)
        await pilot.press("escape")
        await settle(pilot)
        assert app.errors == []


@aio
async def test_reject_is_x_and_renew_asks_first(demo: Demo) -> None:
    app = app_for(demo)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await sign_in_as(pilot, "ca-op-1", pin=demo.pin("ca-op-1"))
        await open_screen(pilot, "4")
        assert isinstance(app.screen, ApprovalsScreen)
        await pilot.press("x")
        await pilot.pause()
        assert isinstance(app.screen, FormModal)
        assert app.screen.form_title.startswith("Reject ")
        await pilot.press("escape")
        await pilot.press("ctrl+o")
        await settle(pilot)
        await sign_in_as(pilot, "gd-1", pin=demo.pin("gd-1"))
        await open_screen(pilot, "2")
        before = len(keys_in_db(demo))
        await pilot.press("n")
        await pilot.pause()
        assert isinstance(app.screen, ReasonModal)
        assert "generates a new key" in str(app.screen.question)
        await pilot.press("n")  # no
        await settle(pilot)
        assert isinstance(app.screen, KeysScreen)
        assert len(keys_in_db(demo)) == before
        assert not [t for t, _ in app.notices if t in ("Renewed", "Too early to renew")]


# -- 6. our commands first in the palette -------------------------------------------------------
@aio
async def test_palette_lists_the_console_commands_first(demo: Demo) -> None:
    # one provider, ours: with Textual's SystemCommandsProvider beside it (a set, searched
    # concurrently) which commands came first was left to chance
    assert {ConsoleCommands} == JtcaApp.COMMANDS
    app = app_for(demo)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await sign_in_as(pilot, "gd-1", pin=demo.pin("gd-1"))
        await open_screen(pilot, "2")
        await pilot.press("ctrl+p")
        await pilot.pause(0.6)
        listed = app.screen.query_one(CommandList)
        prompts = [
            str(listed.get_option_at_index(i).prompt).split("\n")[0]
            for i in range(listed.option_count)
        ]
        assert prompts[0] == "Keys: Filter"
        assert "Theme" in prompts
        assert "Quit" in prompts
        ours = prompts.index("Sign out")
        assert prompts.index("Theme") > ours
        assert prompts.index("Quit") > ours
        await pilot.press("escape")
