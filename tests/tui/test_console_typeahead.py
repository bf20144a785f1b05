"""Forms immune to type-ahead (issue #17): keys typed without a pause — a paste, a password
manager, a fast typist — after Enter land in the next field, never in the one Enter left. The
keys go to the driver one after another with no wait between them (what a terminal delivers),
and also through ``pilot.press(*keys)``."""

from __future__ import annotations

from demo_world import Demo
from test_app import SIZE, aio, app_for
from test_workflows import OneScreen, drive
from textual.events import Key
from textual.pilot import Pilot
from textual.widgets import Input

from tui.app import SignInScreen
from tui.screens.forms import FormModal
from tui.screens.issuers import IssuersScreen
from tui.screens.publication import PublicationScreen


async def burst(pilot: Pilot[None], text: list[str]) -> None:
    """Every key sent to the app's driver at once (no idle wait between them), then settle."""
    driver = pilot.app._driver
    assert driver is not None
    for key in text:
        char = key if len(key) == 1 else ("\r" if key == "enter" else None)
        event = Key(key, char)
        event.set_sender(pilot.app)
        driver.send_message(event)
    await pilot.pause()
    await pilot.pause()


@aio
async def test_sign_in_pin_typed_ahead_never_lands_in_the_officer_field(demo: Demo) -> None:
    app = app_for(demo)
    app.sign_in = lambda officer, pin: None  # type: ignore[method-assign]  # no sign-in: read the form
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, SignInScreen)
        await burst(pilot, [*"gd-1", "enter", *"123456"])
        assert screen.query_one("#officer", Input).value == "gd-1"
        assert screen.query_one("#pin", Input).value == "123456"


@aio
async def test_sign_in_with_pilot_press_without_pause(demo: Demo) -> None:
    app = app_for(demo)
    app.sign_in = lambda officer, pin: None  # type: ignore[method-assign]
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press(*"gd-1", "enter", *"123456")
        screen = app.screen
        assert isinstance(screen, SignInScreen)
        assert screen.query_one("#officer", Input).value == "gd-1"
        assert screen.query_one("#pin", Input).value == "123456"


def test_new_issuer_name_typed_ahead_lands_in_the_name_field(demo: Demo) -> None:
    async def step(pilot: Pilot[None], app: OneScreen) -> None:
        await pilot.press("n")
        await pilot.pause()
        form = app.screen
        assert isinstance(form, FormModal)
        await burst(pilot, [*"02113450", "enter", *"Issuer"])
        assert form.query_one("#field-issuer_id", Input).value == "02113450"
        assert form.query_one("#field-name", Input).value == "Issuer"
        await pilot.press("escape")

    drive(demo, "ca-op-1", IssuersScreen, step)


def test_publish_shares_typed_ahead_land_in_their_fields(demo: Demo) -> None:
    first, second = demo.credentials.shares[:2]

    async def step(pilot: Pilot[None], app: OneScreen) -> None:
        await pilot.press("s")
        await pilot.pause()
        form = app.screen
        assert isinstance(form, FormModal)
        await burst(pilot, [*first, "enter", *second])
        assert form.query_one("#field-share-1", Input).value == first
        assert form.query_one("#field-share-2", Input).value == second
        await pilot.press("escape")

    drive(demo, "publisher-1", PublicationScreen, step)
