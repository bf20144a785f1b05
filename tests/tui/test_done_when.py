"""Issue #7's "Done when", as one officer's day in the real console (``tui.app.JtcaApp``) at
80×24 on the demo state (real SoftHSM2 tokens, SQLite, the policy, dual control, audit) served
in-process through the HTTP API (the console is a client of the service), with the demo's frozen
clock, driven only by keys a person presses — the sign-in form, ``1``–``9``,
the screens' bindings, the arrow keys, typing into forms, enter — and officers signing out
(ctrl+o) and in between steps. Each officer signs in with the PIN of their own token (issue
#12), and each approval is signed by the approver's token over the request it approves:

a. gd-1 applies for 汕头 (440500)'s keys on Cities;
b. ca-op-1 approves the application on Approvals;
c. mot-root-1 generates the keys and delivers them on Cities; gd-1 imports the packages;
d. gd-1 asks to suspend Guangzhou's misused QR key on Keys; ca-op-1 approves: suspended;
e. gd-1 cleans up Shenzhen's two dormant keys on Cleanup; mot-root-1 approves: revoked;
f. publisher-1 previews and publishes on Publication (root token shares): a new city list,
   signed, that says Guangzhou's QR interop is suspended.

Each step's outcome is read back from the service's database (and the file it published)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from demo_world import NOW, Demo
from sqlmodel import Session, col, select
from textual import events
from textual.keys import _character_to_key
from textual.pilot import Pilot
from textual.widgets import DataTable, Input

from ca.lists.asn1 import CityEntry, InteropStatus, ListType
from ca.lists.verify import load_list
from ca.ops.demo import CREDENTIALS
from ca.store.models import (
    CertificateRecord,
    CityKey,
    KeyApplication,
    ListVersion,
    PendingAction,
)
from tui.app import JtcaApp, SignInScreen
from tui.screens.approvals import ApprovalsScreen
from tui.screens.cities import CitiesScreen
from tui.screens.cleanup import CleanupScreen
from tui.screens.dashboard import DashboardScreen
from tui.screens.forms import FormModal, RowTable
from tui.screens.keys import KeysScreen, ReasonModal
from tui.screens.publication import PublicationScreen

SIZE = (80, 24)
SHANTOU, GUANGZHOU, SHENZHEN = "440500", "440100", "440300"


# -- waiting -----------------------------------------------------------------------------------
async def settle(pilot: Pilot[None]) -> None:
    """Until the workers are done and their results (and the refreshes they start) are shown."""
    for _ in range(6):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()


async def until(pilot: Pilot[None], what: str, check: Callable[[], bool]) -> None:
    for _ in range(300):
        if check():
            return
        await pilot.pause(0.02)
        await pilot.app.workers.wait_for_complete()
    raise AssertionError(f"timed out waiting for {what}; on screen: {pilot.app.screen!r}")


# -- what a person does --------------------------------------------------------------------------
async def type_text(pilot: Pilot[None], text: str) -> None:
    """Type ``text`` as key presses, as a quick typist does: the keys are sent one after the
    other and the console catches up once (``pilot.press`` waits for idle after each key,
    which makes an 88-character PIN share take five seconds)."""
    field = pilot.app.focused
    assert isinstance(field, Input), f"typing {text!r} into {field!r}"
    before = field.value
    for character in text:
        name = character if character.isalnum() else _character_to_key(character)
        pilot.app.post_message(events.Key(name, character))
    await until(pilot, f"{text!r} typed", lambda: field.value == before + text)


async def sign_in(pilot: Pilot[None], officer: str, *, pin: str) -> None:
    """Type the officer id and the PIN of their own token into the sign-in form; enter moves
    on and submits."""
    app = pilot.app
    assert isinstance(app, JtcaApp)
    await until(pilot, "the sign-in form", lambda: isinstance(app.screen, SignInScreen))
    await type_text(pilot, officer)
    await pilot.press("enter")  # on to the PIN
    await type_text(pilot, pin)
    await pilot.press("enter")
    await until(pilot, f"{officer}'s dashboard", lambda: isinstance(app.screen, DashboardScreen))
    assert app.signed_in is not None
    assert app.signed_in.actor.id == officer
    await settle(pilot)


async def sign_out(pilot: Pilot[None]) -> None:
    await pilot.press("ctrl+o")
    await settle(pilot)
    assert isinstance(pilot.app.screen, SignInScreen)


async def go(pilot: Pilot[None], key: str, screen: type) -> None:
    await pilot.press(key)
    await until(pilot, screen.__name__, lambda: isinstance(pilot.app.screen, screen))
    await settle(pilot)


async def arrow_to(pilot: Pilot[None], table_id: str, row_key: str) -> None:
    """Move the focused table's cursor to the row ``row_key`` with the arrow keys."""
    table = pilot.app.screen.query_one(f"#{table_id}", DataTable)
    assert table.has_focus, f"#{table_id} has no focus ({pilot.app.focused!r})"
    keys = [str(row.key.value) for row in table.ordered_rows]
    assert row_key in keys, f"{row_key} not in #{table_id}: {keys}"
    steps = keys.index(row_key) - table.cursor_row
    await pilot.press(*(["down"] * steps if steps > 0 else ["up"] * -steps))
    await pilot.pause()
    assert str(table.ordered_rows[table.cursor_row].key.value) == row_key


async def answer_form(pilot: Pilot[None], *answers: str) -> None:
    """Type each answer into the open form's fields in turn, enter after each (enter on a form
    without fields confirms it)."""
    await until(pilot, "a form", lambda: isinstance(pilot.app.screen, FormModal | ReasonModal))
    if not answers:
        await pilot.press("enter")
    for answer in answers:
        await type_text(pilot, answer)
        await pilot.press("enter")
    await settle(pilot)
    assert not isinstance(pilot.app.screen, FormModal | ReasonModal)


async def approve(pilot: Pilot[None], item: str) -> None:
    """On Approvals: the item's row, ``a``, and confirm."""
    await go(pilot, "4", ApprovalsScreen)
    await arrow_to(pilot, "pending", item)
    await pilot.press("a")
    await pilot.pause()
    await answer_form(pilot)

    def gone() -> bool:
        rows = pilot.app.screen.query_one("#pending", RowTable).ordered_rows
        return item not in [str(r.key.value) for r in rows]

    # the decision runs in a worker and the list reloads after it: wait for that, bounded
    await until(pilot, f"{item} to leave the pending list", gone)


# -- what the database says ------------------------------------------------------------------------
def keys_of(demo: Demo, city: str) -> list[CityKey]:
    with Session(demo.runtime.engine) as session:
        return list(
            session.exec(select(CityKey).where(CityKey.city == city).order_by(col(CityKey.id)))
        )


def application_of(demo: Demo, cities: str) -> KeyApplication:
    with Session(demo.runtime.engine) as session:
        return session.exec(select(KeyApplication).where(KeyApplication.cities == cities)).one()


def action_on(demo: Demo, action: str) -> PendingAction:
    with Session(demo.runtime.engine) as session:
        return (
            session.exec(
                select(PendingAction)
                .where(PendingAction.action == action)
                .order_by(col(PendingAction.id).desc())
            ).first()
            or PendingAction()
        )


def city_lists(demo: Demo) -> list[int]:
    with Session(demo.runtime.engine) as session:
        return sorted(
            v.sequence
            for v in session.exec(
                select(ListVersion).where(ListVersion.list_type == ListType.CITIES.value)
            )
        )


def root_der(demo: Demo) -> bytes:
    with Session(demo.runtime.engine) as session:
        root = session.exec(select(CertificateRecord).where(CertificateRecord.role == "root"))
        return bytes.fromhex(root.one().der)


# -- the story ---------------------------------------------------------------------------------
def test_an_officers_day_in_the_console(demo: Demo) -> None:
    pins, shares = demo.credentials.pins, demo.credentials.shares[:2]
    qr_gz = next(k for k in keys_of(demo, GUANGZHOU) if k.key_class == "city-qr")
    dormant = keys_of(demo, SHENZHEN)
    assert len(dormant) == 2
    city_list_before = city_lists(demo)
    app = JtcaApp(demo.client, demo_credentials=demo.state / CREDENTIALS, clock=demo.clock)

    async def day(pilot: Pilot[None]) -> None:
        # a. gd-1 applies for Shantou's keys (Cities: mark the city, a, enter)
        await sign_in(pilot, "gd-1", pin=pins["gd-1"])
        await go(pilot, "3", CitiesScreen)
        await arrow_to(pilot, "cities", SHANTOU)
        await pilot.press("space", "a")
        await pilot.pause()
        await answer_form(pilot)  # the marked city is filled in: enter applies
        application = application_of(demo, SHANTOU)
        assert (application.applicant, application.state) == ("gd-1", "pending")
        applied = f"application #{application.id} for 汕头市 (440500) awaits approval"
        assert ("Applied", applied) in app.notices
        await sign_out(pilot)

        # b. ca-op-1, a second officer, approves it (Approvals)
        await sign_in(pilot, "ca-op-1", pin=pins["ca-op-1"])
        await approve(pilot, f"application:{application.id}")
        assert application_of(demo, SHANTOU).state == "approved"
        await sign_out(pilot)

        # c. mot-root-1 generates the keys and delivers them; gd-1 imports them
        await sign_in(pilot, "mot-root-1", pin=pins["mot-root-1"])
        await go(pilot, "3", CitiesScreen)
        await pilot.press("tab")  # the applications table
        await arrow_to(pilot, "applications", str(application.id))
        await pilot.press("g")
        await pilot.pause()
        await answer_form(pilot)  # confirm
        generated = keys_of(demo, SHANTOU)
        assert sorted(k.key_class for k in generated) == ["city-card", "city-qr"]
        await pilot.press("d")  # every key awaiting delivery
        await pilot.pause()
        await answer_form(pilot)  # enter: the day's default folder
        assert {k.stage for k in keys_of(demo, SHANTOU)} == {"delivered-to-province"}
        await sign_out(pilot)
        await sign_in(pilot, "gd-1", pin=pins["gd-1"])
        await go(pilot, "3", CitiesScreen)
        await pilot.press("i")
        await pilot.pause()
        await answer_form(pilot)  # enter: the same day's folder
        assert {k.stage for k in keys_of(demo, SHANTOU)} == {"held-by-province"}

        # d. gd-1 asks to suspend Guangzhou's misused QR key (Keys: filter, u, a reason)
        await go(pilot, "2", KeysScreen)
        await pilot.press("slash")
        await type_text(pilot, qr_gz.label)
        await pilot.pause(0.4)  # the filter's debounce
        await settle(pilot)
        await pilot.press("escape")  # back to the table
        await settle(pilot)
        keys = app.screen
        assert isinstance(keys, KeysScreen)
        assert [row.label for row in keys.page.keys] == [qr_gz.label]
        await pilot.press("u")
        await pilot.pause()
        await answer_form(pilot, "used outside Guangdong (第十一条)")
        suspension = action_on(demo, "city-key.suspend")
        assert (suspension.state, suspension.key_ids, suspension.reason) == (
            "pending",
            str(qr_gz.id),
            "used outside Guangdong (第十一条)",
        )

        # e. gd-1 cleans up Shenzhen's two dormant keys (Cleanup: mark both, c, a reason)
        await go(pilot, "7", CleanupScreen)
        await arrow_to(pilot, "dormant", str(dormant[0].id))
        await pilot.press("space")
        await arrow_to(pilot, "dormant", str(dormant[1].id))
        await pilot.press("space", "c")
        await pilot.pause()
        await answer_form(pilot, "never activated in 400 days (第十条)")
        cleanup = action_on(demo, "city-key.cleanup-dormant")
        assert cleanup.state == "pending"
        assert sorted(cleanup.key_ids.split(",")) == sorted(str(k.id) for k in dormant)
        await sign_out(pilot)

        # d. (cont.) ca-op-1 approves the suspension: the key is suspended
        await sign_in(pilot, "ca-op-1", pin=pins["ca-op-1"])
        await approve(pilot, f"action:{suspension.id}")
        assert next(k for k in keys_of(demo, GUANGZHOU) if k.id == qr_gz.id).state == "suspended"
        await sign_out(pilot)

        # e. (cont.) mot-root-1 approves the cleanup: both dormant keys are revoked
        await sign_in(pilot, "mot-root-1", pin=pins["mot-root-1"])
        await approve(pilot, f"action:{cleanup.id}")
        assert {k.state for k in keys_of(demo, SHENZHEN)} == {"revoked"}
        await sign_out(pilot)

        # f. publisher-1 previews and publishes (Publication: p, s, the root token's shares)
        await sign_in(pilot, "publisher-1", pin=pins["publisher-1"])
        await go(pilot, "6", PublicationScreen)
        await pilot.press("p")
        await settle(pilot)
        table = app.screen.query_one("#preview-table", RowTable)
        preview = [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]
        (change,) = [row for row in preview if row[:3] == ["city-list", "changed", GUANGZHOU]]
        assert change[3].startswith("qr_interop: connected → suspended"), preview
        await pilot.press("s")
        await pilot.pause()
        await answer_form(pilot, *shares)
        published = [m for t, m in app.notices if t == "Published"]
        assert len(published) == 1, app.notices
        assert "city-list #" in published[0]
        await sign_out(pilot)

    async def run() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            await day(pilot)

    asyncio.run(run())
    assert app.errors == []
    assert app.return_code in (None, 0)

    after = city_lists(demo)
    assert after[-1] == city_list_before[-1] + 1
    history = demo.console("publisher-1").list_history()
    assert (ListType.CITIES.value, after[-1]) in {(v.list_type, v.sequence) for v in history}
    verified = load_list(
        (demo.runtime.published / "city-list.der").read_bytes(),
        trusted_root_der=root_der(demo),
        expected_type=ListType.CITIES,
        previous_sequence=city_list_before[-1],
        now=NOW,
        grace_seconds=0,
    )
    assert verified.sequence == after[-1]
    entries = {e.city_code: e for e in verified.entries if isinstance(e, CityEntry)}
    assert entries[GUANGZHOU].qr_interop is InteropStatus.SUSPENDED
    assert entries[GUANGZHOU].card_interop is InteropStatus.CONNECTED
    assert SHENZHEN not in entries  # never installed in the city
