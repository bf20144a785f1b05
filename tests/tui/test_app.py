"""The console end to end with Pilot at 80×24 on the demo state (real SoftHSM tokens, SQLite,
policy, dual control) served in-process through the HTTP API: sign-in, what each officer sees,
help, the command palette, the keys table, and key actions from the Keys screen."""

from __future__ import annotations

import asyncio
import functools
import importlib
import importlib.util
import re
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from demo_world import Demo
from sqlmodel import Session, select
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Static

from ca.client.http import ServiceError
from ca.ops.demo import CREDENTIALS
from ca.store.models import AuditEvent, CityKey, OfficerSession
from tui.app import JtcaApp, NavBar, ScreenEntry, SignInScreen, load_screens, nav_text
from tui.screens import SCREENS
from tui.screens.dashboard import DashboardScreen
from tui.screens.keys import SORTABLE, KeysScreen, ReasonModal

SIZE = (80, 24)


def aio(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test body on a fresh event loop (Pilot is async; no pytest plugin
    needed)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


async def settle(pilot: Pilot[None]) -> None:
    """Wait until the workers are done and their results are on screen."""
    for _ in range(4):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()


async def sign_in_as(pilot: Pilot[None], officer: str, *, pin: str) -> None:
    """The officer id typed, then the PIN of the officer's own token, then enter."""
    screen = pilot.app.screen
    assert isinstance(screen, SignInScreen)
    await pilot.click("#officer")
    await pilot.press(*officer)
    screen.query_one("#pin", Input).value = pin
    screen.query_one("#pin", Input).focus()
    await pilot.press("enter")
    await settle(pilot)


def app_for(world: Demo, *, demo: bool = False, **kwargs: Any) -> JtcaApp:
    """The console on the test's service (in-process, over its HTTP API)."""
    credentials = world.state / CREDENTIALS if demo else None
    return JtcaApp(world.client, clock=world.clock, demo_credentials=credentials, **kwargs)


def text_of(app: JtcaApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).content)


def test_all_nine_screen_modules_exist() -> None:
    missing = [name for name, _ in SCREENS if importlib.util.find_spec(name) is None]
    assert missing == []


@aio
async def test_sign_in_shows_the_dashboard(demo: Demo) -> None:
    app = app_for(demo, demo=True)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert "demo-credentials.json" in text_of(app, "#demo-hint")
        await sign_in_as(pilot, "gd-1", pin=demo.pin("gd-1"))
        assert isinstance(app.screen, DashboardScreen)
        counts = text_of(app, "#counts")
        assert "Dormant             2" in counts
        assert "Suspended           1" in counts
        assert text_of(app, "#officer-bar") == "gd-1 · provincial-officer · 广东省 (440000)"
        assert "sequence" not in counts
        assert "ca-key-list" in text_of(app, "#lists")
        assert app.notices == []


@aio
async def test_a_wrong_pin_says_so_and_stays_on_the_form(demo: Demo) -> None:
    app = app_for(demo)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await sign_in_as(pilot, "gd-1", pin="000000")
        assert isinstance(app.screen, SignInScreen)
        ((title, message),) = app.errors
        assert title == "Wrong PIN"
        assert message.startswith(
            "wrong PIN for token 'officer-gd-1' (from the PIN typed at sign-in)"
        )  # and what the token's retry counter says, if anything
        assert "Traceback" not in message
        assert app.screen.query_one("#pin", Input).value == ""  # the secret is cleared
        assert app.screen.query_one("#pin", Input).has_focus
        assert app.signed_in is None
        # another officer's PIN does not open gd-1's token either
        await sign_in_as(pilot, "", pin=demo.pin("gd-2"))
        assert app.errors[-1][0] == "Wrong PIN"
        assert app.signed_in is None
        # the right one does
        await sign_in_as(pilot, "", pin=demo.pin("gd-1"))
        assert isinstance(app.screen, DashboardScreen)
        assert app.signed_in is not None
        assert app.signed_in.actor.id == "gd-1"
    assert app.return_code in (None, 0)  # no traceback, no crash
    with Session(demo.runtime.engine) as session:
        actions = [e.action for e in session.exec(select(AuditEvent))]
    assert "console.sign-in" not in actions  # the old sign-in by a shared token is gone
    assert actions.count("auth.sign-in") >= 1


@aio
async def test_an_officer_without_a_token_here_is_told_so(demo: Demo) -> None:
    app = app_for(demo)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await sign_in_as(pilot, "nobody", pin="123456")
        assert isinstance(app.screen, SignInScreen)
        ((title, message),) = app.errors
        assert title == "Token missing"
        assert message.startswith("no token labelled 'officer-nobody'")
        assert app.signed_in is None


@aio
async def test_demo_pin_fills_the_form_from_the_demo_credentials(demo: Demo) -> None:
    app = app_for(demo, demo=True)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert "ctrl+t" in text_of(app, "#demo-hint")
        await pilot.press("ctrl+t")  # no officer typed yet
        assert app.notices[-1][0] == "Demo PIN"
        await pilot.press(*"ca-op-2", "ctrl+t", "enter")
        await settle(pilot)
        assert isinstance(app.screen, DashboardScreen)
        assert app.signed_in is not None
        assert app.signed_in.actor.id == "ca-op-2"
    plain = app_for(demo)  # not the demo: no such key
    async with plain.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert plain.screen.check_action("demo_pin", ()) is False


@aio
async def test_an_expired_session_returns_to_the_sign_in_form(demo: Demo) -> None:
    app = app_for(demo)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await sign_in_as(pilot, "gd-1", pin=demo.pin("gd-1"))
        assert isinstance(app.screen, DashboardScreen)
        demo.clock.advance(16 * 60)  # the service's clock: past the 15 idle minutes
        await pilot.press("2")  # the Keys screen asks the service: 401
        await settle(pilot)
        assert isinstance(app.screen, SignInScreen)
        assert app.signed_in is None
        assert (
            "Session ended: sign in again",
            "the session has expired (idle): sign in again",
        ) in app.notices
        assert app.errors == []
        await sign_in_as(pilot, "gd-1", pin=demo.pin("gd-1"))  # and in again
        assert isinstance(app.screen, DashboardScreen)


@aio
async def test_sign_out_ends_the_session_at_the_service(demo: Demo) -> None:
    app = app_for(demo)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await sign_in_as(pilot, "gd-1", pin=demo.pin("gd-1"))
        console = app.signed_in
        assert console is not None
        assert console.token is not None
        assert console.client.signer is not None
        session_id = console.client.signer.data.session
        await pilot.press("ctrl+o")
        await settle(pilot)
        assert isinstance(app.screen, SignInScreen)
        assert console.closed
        assert console.token is None  # the officer's token is closed
    with Session(demo.runtime.engine) as session:
        ended = session.get(OfficerSession, session_id)
    assert ended is not None
    assert ended.ended_reason == "signed out"
    with pytest.raises(ServiceError) as refused:
        console.dashboard()
    assert refused.value.status == 401


@aio
async def test_what_each_officer_sees(demo: Demo) -> None:
    app = app_for(demo)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await sign_in_as(pilot, "gd-1", pin=demo.pin("gd-1"))
        titles = {e.title for e in app.entries}
        assert {"Dashboard", "Keys"} <= titles
        assert not titles & {"Issuers", "Ceremony"}
        await pilot.press("ctrl+o")  # sign out
        await settle(pilot)
        assert isinstance(app.screen, SignInScreen)
        await sign_in_as(pilot, "mot-root-1", pin=demo.pin("mot-root-1"))
        assert isinstance(app.screen, DashboardScreen)
        root = {e.title for e in app.entries}
        assert "Issuers" not in root  # the policy gives interop certificates to CA operators
        if importlib.util.find_spec("tui.screens.ceremony"):  # helper C's screen
            assert "Ceremony" in root
        await pilot.press("ctrl+o")
        await settle(pilot)
        await sign_in_as(pilot, "ca-op-1", pin=demo.pin("ca-op-1"))
        assert "Issuers" in {e.title for e in app.entries}
        assert app.screen.query_one(NavBar).current == "1"


@aio
async def test_help_and_command_palette(demo: Demo) -> None:
    app = app_for(demo)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await sign_in_as(pilot, "gd-1", pin=demo.pin("gd-1"))
        await pilot.press("question_mark")
        await pilot.pause()
        help_text = text_of(app, "#help-text")
        assert "ctrl+p" in help_text
        assert "2  Keys" in help_text
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, DashboardScreen)
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"go to keys")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, KeysScreen)


@aio
async def test_keys_filter_sort_and_detail(demo: Demo) -> None:
    with Session(demo.runtime.engine) as session:
        ids = {k.label: k.id for k in session.exec(select(CityKey)).all()}
    app = app_for(demo)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await sign_in_as(pilot, "gd-1", pin=demo.pin("gd-1"))
        await pilot.press("2")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, KeysScreen)
        assert text_of(app, "#status").startswith(f"showing {len(ids)} of {len(ids)}")
        # the soonest end first: Dongguan's card key
        assert f"city-card-441900-g1  #{ids['city-card-441900-g1']}  东莞市" in text_of(
            app, "#detail"
        )
        await pilot.press("d")  # dormant: Shenzhen's two keys
        await settle(pilot)
        assert {r.city for r in screen.page.keys} == {"440300"}
        await pilot.press("a", "slash", *"佛山")  # text matches the city's name
        await pilot.pause(0.4)
        await settle(pilot)
        assert [r.label for r in screen.page.keys] == [
            "city-card-440600-g1",
            "city-qr-440600-g1",
        ]
        assert text_of(app, "#status").startswith("showing 2 of 2")
        await pilot.press("escape", "down")
        await settle(pilot)
        assert f"city-qr-440600-g1  #{ids['city-qr-440600-g1']}" in text_of(app, "#detail")
        await pilot.press("ctrl+a", "backspace")  # clear the filter
        screen.query_one("#filter", Input).value = ""
        await pilot.pause(0.4)
        await settle(pilot)
        await pilot.press("escape")
        for _ in range(len(SORTABLE)):  # o cycles the sort column: up to the label
            if screen.asked.sort == "label":
                break
            await pilot.press("o")
        await settle(pilot)
        labels = [r.label for r in screen.page.keys]
        assert labels == sorted(labels)
        assert screen.asked.sort == "label"
        await pilot.press("O")
        await settle(pilot)
        assert [r.label for r in screen.page.keys] == sorted(labels, reverse=True)
        table = screen.query_one("#keys", DataTable)
        assert table.row_count == len(ids)


@aio
async def test_suspend_from_the_keys_screen_under_dual_control(demo: Demo) -> None:
    app = app_for(demo)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await sign_in_as(pilot, "gd-1", pin=demo.pin("gd-1"))
        await pilot.press("2")
        await settle(pilot)
        await pilot.press("slash", *"city-qr-440100")
        await pilot.pause(0.4)
        await settle(pilot)
        await pilot.press("escape")
        await settle(pilot)
        await pilot.press("u")
        await pilot.pause()
        assert isinstance(app.screen, ReasonModal)
        await pilot.press(*"misused in Fujian", "enter")
        await settle(pilot)
        titles = [title for title, _ in app.notices]
        assert "Awaiting approval" in titles, app.notices
    op = demo.console("ca-op-1")
    pending = [p for p in op.pending() if p.kind == "action"]
    assert [p.what for p in pending] == ["city-key.suspend of city-qr-440100-g1"]
    assert op.decide("action", pending[0].id, approve=True) == "done"
    with Session(demo.runtime.engine) as session:
        key = session.exec(select(CityKey).where(CityKey.label == "city-qr-440100-g1")).one()
        assert key.state == "suspended"


@aio
async def test_renew_refused_is_a_notification(demo: Demo) -> None:
    app = app_for(demo)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await sign_in_as(pilot, "gd-1", pin=demo.pin("gd-1"))
        await pilot.press("2")
        await settle(pilot)
        await pilot.press("slash", *"广州")  # Guangzhou's keys
        await pilot.pause(0.4)
        await settle(pilot)
        await pilot.press("escape")
        await pilot.press("n")  # Guangzhou's card key: years before its renewal window
        await settle(pilot)
        assert isinstance(app.screen, ReasonModal)  # renewing makes a new key: confirm first
        await pilot.press("y")
        await settle(pilot)
        refused = [(t, m) for t, m in app.notices if t == "Too early to renew"]
        assert refused
        assert "enters its renewal window on" in refused[0][1]
        assert isinstance(app.screen, KeysScreen)
    assert app.return_code in (None, 0)


@aio
async def test_an_error_in_a_handler_is_a_notification(demo: Demo) -> None:
    app = app_for(demo)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await sign_in_as(pilot, "gd-1", pin=demo.pin("gd-1"))
        screen = app.screen

        def broken() -> None:
            raise RuntimeError("boom")

        screen.action_refresh = broken  # type: ignore[method-assign]
        await pilot.press("r")
        await pilot.pause()
        assert ("Internal error", "RuntimeError: boom") in app.notices
        await pilot.press("2")  # still alive
        await settle(pilot)
        assert isinstance(app.screen, KeysScreen)


@aio
async def test_palette_runs_screen_actions_and_keys_shows_only_allowed_ones(demo: Demo) -> None:
    app = app_for(demo)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await sign_in_as(pilot, "publisher-1", pin=demo.pin("publisher-1"))
        await pilot.press("2")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, KeysScreen)
        assert screen.check_action("suspend", ()) is None  # not a city key officer: dimmed
        assert "  u         Suspend" not in app.help_text()
        await pilot.press("ctrl+o")
        await settle(pilot)
        await sign_in_as(pilot, "gd-1", pin=demo.pin("gd-1"))
        await pilot.press("2")
        await settle(pilot)
        help_text = app.help_text()
        assert help_text.index("Keys on 2 Keys") < help_text.index("Keys everywhere")
        assert "  u         Suspend" in help_text
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"keys: suspend")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ReasonModal)
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, KeysScreen)
        assert app.errors == []


def test_the_navigation_bar_abbreviates_by_words_never_by_cutting() -> None:
    """At 80 columns (78 inside the bar's padding) the nine screens' titles do not fit: the bar
    shows each screen's ``SHORT`` word (the current one in full while that fits), never a title
    cut at six letters ('Cleanu', 'Public'); at 160 columns every title in full."""
    entries = [ScreenEntry(c.KEY, c.TITLE, "", c, c.SHORT or c.TITLE) for c in load_screens()]
    assert len(entries) == 9
    allowed = {e.key: {e.title, e.short} for e in entries}

    def labels(text: str) -> dict[str, str]:
        plain = text.replace("[reverse]", "").replace("[/]", "")
        found = dict(re.findall(r"(\d) ([A-Z][a-z]*)", plain))
        assert len(plain) <= width
        return found

    width = 158
    wide = labels(nav_text(entries, "1", width))
    assert wide == {e.key: e.title for e in entries}
    for current in [e.key for e in entries]:
        width = 78
        shown = labels(nav_text(entries, current, width))
        assert set(shown) == set(allowed)  # every screen is named at 80 columns
        for key, word in shown.items():
            assert word in allowed[key], (key, word)
        assert shown["7"] != "Cleanu"
    width = 78
    provincial = [e for e in entries if e.title not in {"Issuers", "Ceremony"}]  # gd-1's screens
    assert labels(nav_text(provincial, "1", width))["1"] == "Dashboard"  # the current in full
    assert labels(nav_text(provincial, "1", width))["7"] == "Clean"
    width = 30
    assert labels(nav_text(entries, "1", width)) == {}  # only the numbers are left
