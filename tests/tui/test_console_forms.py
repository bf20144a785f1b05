"""A form the service (or the form's own check) refuses stays open (issue #17): the field the
error is about marked (CSS class ``-invalid``) with the message under it, and what was typed
kept — Cities ``a`` with a bad code, Issuers ``n`` with a bad id, Publication ``s`` with a
mistyped share. Nothing is done."""

from __future__ import annotations

from demo_world import Demo
from sqlmodel import Session, select
from test_workflows import OneScreen, drive, settle, submit
from textual.pilot import Pilot
from textual.widgets import Input, Static

from ca.store.models import KeyApplication
from tui.screens.cities import CitiesScreen
from tui.screens.forms import FormModal
from tui.screens.issuers import IssuersScreen
from tui.screens.publication import PublicationScreen


def marked(form: FormModal, field: str) -> str:
    """The message under ``field`` if it is marked invalid (and shown), else ''."""
    entry = form.query_one(f"#field-{field}", Input)
    shown = form.query_one(f"#error-{field}", Static)
    if not entry.has_class("-invalid") or not shown.has_class("-shown"):
        return ""
    return str(shown.content)


def test_cities_apply_with_a_bad_code_keeps_the_form(demo: Demo) -> None:
    async def step(pilot: Pilot[None], app: OneScreen) -> None:
        await pilot.press("a")
        await pilot.pause()
        await submit(pilot, cities="440100,12345X")
        form = app.screen
        assert isinstance(form, FormModal), "the refused form was closed"
        assert form.query_one("#field-cities", Input).value == "440100,12345X"
        message = marked(form, "cities")
        assert message
        assert message == app.errors()[-1][1]
        # corrected, the same form applies and closes
        await submit(pilot, cities="440100")
        assert not isinstance(app.screen, FormModal)
        assert app.said("Applied")

    app = drive(demo, "gd-1", CitiesScreen, step)
    assert len(app.errors()) == 1
    with Session(demo.runtime.engine) as session:
        applied = session.exec(select(KeyApplication)).all()
        assert not [a for a in applied if "12345X" in a.cities]


def test_new_issuer_with_a_bad_id_keeps_the_form(demo: Demo) -> None:
    async def step(pilot: Pilot[None], app: OneScreen) -> None:
        await pilot.press("n")
        await pilot.pause()
        await submit(pilot, issuer_id="0211345X", name="某发行机构")
        form = app.screen
        assert isinstance(form, FormModal)
        assert form.query_one("#field-issuer_id", Input).value == "0211345X"
        assert form.query_one("#field-name", Input).value == "某发行机构"
        assert marked(form, "issuer_id")
        assert marked(form, "name") == ""
        assert app.screen.focused is form.query_one("#field-issuer_id", Input)

    app = drive(demo, "ca-op-1", IssuersScreen, step)
    assert len(app.errors()) == 1
    assert not app.said("Issuer registered")


def test_publish_with_a_mistyped_share_keeps_both_shares(demo: Demo) -> None:
    good = demo.credentials.shares
    body = good[1][-12]
    wrong = good[1][:-12] + ("A" if body != "A" else "B") + good[1][-11:]

    async def step(pilot: Pilot[None], app: OneScreen) -> None:
        await pilot.press("s")
        await pilot.pause()
        await submit(pilot, **{"share-1": good[0], "share-2": wrong})
        form = app.screen
        assert isinstance(form, FormModal)
        assert form.query_one("#field-share-1", Input).value == good[0]
        assert form.query_one("#field-share-2", Input).value == wrong
        assert "share 2" in marked(form, "share-2")
        assert marked(form, "share-1") == ""
        await pilot.press("escape")
        await settle(pilot)

    app = drive(demo, "publisher-1", PublicationScreen, step)
    assert len(app.errors()) == 1
    assert not app.said("Published")
