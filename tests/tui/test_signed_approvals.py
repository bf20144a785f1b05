"""Dual control in the real console (``tui.app.JtcaApp``) with officers who prove who they are
(issue #12): each officer signs in with the PIN of their own SoftHSM2 token, typed into the
sign-in form; each approval is signed by the approver's token over exactly the request it
approves, after the console has shown that request (operation, requester, SM3). At 80×24 on the
demo state served in-process over the HTTP API, driven by keys; outcomes are read back from the
service's database, and every signature is checked there with the approver's certificate key.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import pytest
from demo_world import Demo
from sqlmodel import Session, col, select
from test_done_when import (
    SIZE,
    action_on,
    answer_form,
    application_of,
    arrow_to,
    go,
    keys_of,
    settle,
    sign_in,
    sign_out,
    type_text,
    until,
)
from textual.pilot import Pilot
from textual.widgets import Static

from ca.client.console import TypedPin
from ca.core.errors import JtcaError
from ca.ops import officers as officer_ops
from ca.site.officer_token import OfficerToken, create_embedded_token
from ca.store.models import (
    Approval,
    AuditEvent,
    CityKey,
    ListVersion,
    OfficerCertificate,
    OfficerEnrolment,
    PendingRequest,
)
from tui.app import JtcaApp, SignInScreen
from tui.screens.approvals import ApprovalsScreen
from tui.screens.cities import CitiesScreen
from tui.screens.dashboard import DashboardScreen
from tui.screens.forms import FormModal, RowTable
from tui.screens.keys import KeysScreen

SHANTOU, GUANGZHOU = "440500", "440100"
Story = Callable[[Pilot[None], JtcaApp], Awaitable[None]]


def run(demo: Demo, story: Story) -> JtcaApp:
    app = JtcaApp(demo.client, clock=demo.clock)

    async def main() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            await story(pilot, app)

    asyncio.run(main())
    assert app.return_code in (None, 0)
    return app


def rows_of(pilot: Pilot[None], table_id: str) -> list[str]:
    table = pilot.app.screen.query_one(f"#{table_id}", RowTable)
    return [str(row.key.value) for row in table.ordered_rows]


async def open_decision(pilot: Pilot[None], item: str, key: str = "a") -> str:
    """On Approvals: the item's row, ``key`` (a: approve, x: reject); the form's note, which
    shows the signed request decided on."""
    await go(pilot, "4", ApprovalsScreen)
    await arrow_to(pilot, "pending", item)
    await pilot.press(key)
    await until(pilot, "the decision form", lambda: isinstance(pilot.app.screen, FormModal))
    return str(pilot.app.screen.query_one(".form-note", Static).content)


async def left_pending(pilot: Pilot[None], item: str) -> None:
    await until(pilot, f"{item} to leave the list", lambda: item not in rows_of(pilot, "pending"))


def signed_approval(demo: Demo, subject: str, approver: str) -> Approval:
    """The approver's decision on ``subject``, its signature checked with the key of the
    certificate it names — which must be the approver's."""
    with Session(demo.runtime.engine) as session:
        approval = session.exec(
            select(Approval).where(Approval.subject == subject).where(Approval.approver == approver)
        ).one()
        assert approval.statement is not None
        assert approval.signature is not None
        assert approval.certificate_serial is not None
        certificate = session.get(OfficerCertificate, approval.certificate_serial)
        assert certificate is not None
        request = session.get(PendingRequest, subject)
        assert request is not None
    assert certificate.officer_id == approver
    from hsm.sm.sm2 import SM2PublicKey

    SM2PublicKey.from_bytes(certificate.public_key).verify_der(
        approval.signature, approval.statement.encode()
    )
    assert f"subject: {subject}\n" in approval.statement
    assert f"request-sm3: {request.digest}\n" in approval.statement
    assert f"officer: {approver}\n" in approval.statement
    return approval


def digest_of(demo: Demo, subject: str) -> tuple[str, str, str]:
    with Session(demo.runtime.engine) as session:
        request = session.get(PendingRequest, subject)
        assert request is not None
        return request.officer_id, request.operation, request.digest


# -- gd-1 applies; a second officer approves, signed ------------------------------------------
def test_gd1_applies_and_a_second_officer_approves_with_a_signed_decision(demo: Demo) -> None:
    pins = demo.credentials.pins
    shown: list[str] = []

    async def story(pilot: Pilot[None], app: JtcaApp) -> None:
        await sign_in(pilot, "gd-1", pin=pins["gd-1"])
        await go(pilot, "3", CitiesScreen)
        await arrow_to(pilot, "cities", SHANTOU)
        await pilot.press("space", "a")
        await pilot.pause()
        await answer_form(pilot)  # the marked city: enter applies
        application = application_of(demo, SHANTOU)
        assert (application.applicant, application.state) == ("gd-1", "pending")
        await sign_out(pilot)

        await sign_in(pilot, "ca-op-1", pin=pins["ca-op-1"])
        item = f"application:{application.id}"
        shown.append(await open_decision(pilot, item))
        await pilot.press("enter")  # confirm: ca-op-1's token signs
        await left_pending(pilot, item)
        await sign_out(pilot)

    app = run(demo, story)
    assert app.errors == []
    application = application_of(demo, SHANTOU)
    assert application.state == "approved"
    subject = f"application {application.id}"
    requester, operation, digest = digest_of(demo, subject)
    assert (requester, operation) == ("gd-1", "city.apply")
    (note,) = shown
    assert note.splitlines()[0] == "key sets for 440500"
    assert note.splitlines()[1].startswith("asked by gd-1 at 2026-11-18T")
    assert note.splitlines()[1].endswith("(city.apply)")
    assert 'request: {"cities":["440500"]}' in note
    assert f"\nSM3 {digest}\n" in note
    assert note.endswith("Your token officer-ca-op-1 signs this approval.")
    approval = signed_approval(demo, subject, "ca-op-1")
    assert approval.decision == "approve"
    assert "decision: approve\n" in (approval.statement or "")
    with Session(demo.runtime.engine) as session:
        event = session.exec(
            select(AuditEvent)
            .where(AuditEvent.subject == subject)
            .where(AuditEvent.actor == "ca-op-1")
            .order_by(col(AuditEvent.seq).desc())
        ).first()
    assert event is not None
    details = json.loads(event.details)
    assert details["request_sm3"] == digest
    assert details["certificate_serial"] == approval.certificate_serial
    assert details["statement"] == approval.statement


# -- one person, one token: the requester cannot approve -------------------------------------
def test_the_requester_cannot_approve_their_own_request_in_the_console(demo: Demo) -> None:
    pins = demo.credentials.pins
    qr_gz = next(k for k in keys_of(demo, GUANGZHOU) if k.key_class == "city-qr")

    async def story(pilot: Pilot[None], app: JtcaApp) -> None:
        await sign_in(pilot, "gd-1", pin=pins["gd-1"])
        await go(pilot, "2", KeysScreen)
        await pilot.press("slash")
        await type_text(pilot, qr_gz.label)
        await pilot.pause(0.4)  # the filter's debounce
        await settle(pilot)
        await pilot.press("escape")
        await settle(pilot)
        await pilot.press("u")
        await pilot.pause()
        await answer_form(pilot, "used outside Guangdong (第十一条)")
        suspension = action_on(demo, "city-key.suspend")
        assert (suspension.state, suspension.requested_by) == ("pending", "gd-1")
        item = f"action:{suspension.id}"

        # gd-1's Approvals screen does not offer gd-1's own request
        await go(pilot, "4", ApprovalsScreen)
        assert item not in rows_of(pilot, "pending")
        # and gd-1's token signing a decision on it anyway is refused by the service
        console = app.signed_in
        assert console is not None
        with pytest.raises(JtcaError, match="requester cannot approve their own") as refused:
            console.decide("action", suspension.id or 0, approve=True)
        assert "Traceback" not in refused.value.message
        await sign_out(pilot)

        # gd-1's PIN does not open gd-2's token, whatever officer id is typed
        await until(pilot, "the sign-in form", lambda: isinstance(app.screen, SignInScreen))
        await type_text(pilot, "gd-2")
        await pilot.press("enter")
        await type_text(pilot, pins["gd-1"])
        await pilot.press("enter")
        await until(pilot, "the refusal", lambda: bool(app.errors))
        ((title, message),) = app.errors
        assert title == "Wrong PIN"
        assert message.startswith("wrong PIN for token 'officer-gd-2' (from the PIN typed")
        assert isinstance(app.screen, SignInScreen)
        assert app.signed_in is None
        await type_text(pilot, pins["gd-2"])  # the PIN field has the focus, cleared
        await pilot.press("enter")
        await until(pilot, "gd-2's dashboard", lambda: isinstance(app.screen, DashboardScreen))
        await settle(pilot)

        # gd-2, a second officer of the province, approves it
        note = await open_decision(pilot, item)
        assert "asked by gd-1" in note
        assert "reason: used outside Guangdong (第十一条)" in note
        await pilot.press("enter")
        await left_pending(pilot, item)

    app = run(demo, story)
    assert len(app.errors) == 1  # the wrong PIN, nothing else
    suspension = action_on(demo, "city-key.suspend")
    assert suspension.state == "done"
    with Session(demo.runtime.engine) as session:
        key = session.get(CityKey, qr_gz.id)
        assert key is not None
        assert key.state == "suspended"
        approvers = [
            a.approver
            for a in session.exec(
                select(Approval).where(Approval.subject == f"action {suspension.id}")
            )
        ]
    assert approvers == ["gd-2"]  # gd-1's own attempt left nothing behind
    signed_approval(demo, f"action {suspension.id}", "gd-2")


# -- an officer's enrolment, approved in the console ------------------------------------------
def test_an_enrolment_is_approved_in_the_console_and_the_new_officer_signs_in(
    demo: Demo,
) -> None:
    pins = demo.credentials.pins
    pin = "pin-of-gd-3"
    create_embedded_token(demo.state, "officer-gd-3", pin)  # gd-3's own token, at their desk
    with OfficerToken("officer-gd-3", TypedPin(pin), state=demo.state) as token:
        key = token.generate_key()
        proof = token.proof("gd-3")
    requester = demo.console("mot-root-1")
    try:
        enrolment = requester.client.call(
            officer_ops.ENROL,
            officer_ops.EnrolRequest(
                officer_id="gd-3",
                name="广东省密钥管理员 张三",
                roles=["provincial-officer"],
                province="440000",
                public_key=key.uncompressed,
                proof=proof,
                token_label="officer-gd-3",  # noqa: S106 - a label
            ),
        )
    finally:
        requester.close()
    assert (enrolment.state, enrolment.subject) == ("pending", f"enrolment {enrolment.id}")
    item = f"enrolment:{enrolment.id}"

    async def story(pilot: Pilot[None], app: JtcaApp) -> None:
        await sign_in(pilot, "mot-root-1", pin=pins["mot-root-1"])
        await go(pilot, "4", ApprovalsScreen)
        assert item not in rows_of(pilot, "pending")  # their own request
        await sign_out(pilot)

        await sign_in(pilot, "mot-root-2", pin=pins["mot-root-2"])
        note = await open_decision(pilot, item)
        assert note.splitlines()[0] == "certify gd-3's token key (provincial-officer of 440000)"
        assert "asked by mot-root-1" in note
        assert "(officer.enrol)" in note
        await pilot.press("enter")
        await left_pending(pilot, item)
        await sign_out(pilot)

        await sign_in(pilot, "gd-3", pin=pin)  # the new officer, with their own token
        bar = str(app.screen.query_one("#officer-bar", Static).content)
        assert bar == "gd-3 · provincial-officer · 广东省 (440000)"

    app = run(demo, story)
    assert app.errors == []
    with Session(demo.runtime.engine) as session:
        row = session.get(OfficerEnrolment, enrolment.id)
        assert row is not None
        assert (row.state, row.requested_by) == ("approved", "mot-root-1")
        certificate = session.get(OfficerCertificate, row.certificate_serial)
        assert certificate is not None
        assert (certificate.officer_id, certificate.public_key) == ("gd-3", key.uncompressed)
    signed_approval(demo, f"enrolment {enrolment.id}", "mot-root-2")


# -- an emergency publication: the approval that publishes ------------------------------------
def test_an_emergency_publication_is_approved_and_published_in_the_console(demo: Demo) -> None:
    pins, shares = demo.credentials.pins, demo.credentials.shares
    requester = demo.console("em-1")
    try:
        outcome = requester.request_emergency("issuer key leaked: publish now (第三十四条)")
    finally:
        requester.close()
    item = f"emergency:{outcome.request}"
    with Session(demo.runtime.engine) as session:
        before = len(session.exec(select(ListVersion)).all())

    async def story(pilot: Pilot[None], app: JtcaApp) -> None:
        await sign_in(pilot, "em-2", pin=pins["em-2"])
        note = await open_decision(pilot, item)
        assert "asked by em-1" in note
        assert "(lists.emergency)" in note
        assert "The last approval publishes every list: the root token's shares." in note
        await answer_form(pilot, *shares[:2])
        await left_pending(pilot, item)

    app = run(demo, story)
    assert app.errors == []
    with Session(demo.runtime.engine) as session:
        versions = session.exec(select(ListVersion)).all()
        assert len(versions) == before + 3  # every list, at once
        assert all(v.emergency for v in versions[before:])
    signed_approval(demo, f"action {outcome.request}", "em-2")
