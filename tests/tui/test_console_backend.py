"""The console's client (ca/client/console.py) through the service's HTTP API on the demo state:
sign-in with the officer's own token (its PIN checked by the token, challenge and response with
the service, audited as ``auth.sign-in``), the province's scope, the dashboard's counts, pending
approvals for the right officers with the signed request behind each, decisions signed over the
request shown, the audit page; problem details for refusals."""

from __future__ import annotations

import pytest
from demo_world import Demo
from sqlmodel import Session, select

from ca.client.console import RequestChanged, open_token, session_over, sign_in
from ca.client.http import ServiceError
from ca.demo.seed import ELDER_BATCHES, RECENT, REVOKED
from ca.ops import console as ops
from ca.ops import demo as demo_ops
from ca.ops.base import Empty
from ca.store.models import Approval, KeyApplication, OfficerSession
from hsm.pkcs11.token import TokenError


def test_sign_in_and_scope(demo: Demo) -> None:
    gd = demo.console("gd-1")
    assert gd.province == "440000"
    assert gd.actor.name == "广东省密钥管理员 陈一"
    assert gd.token is not None
    assert gd.token.label == "officer-gd-1"
    assert gd.certificate_serial == demo.credentials.officer("gd-1").certificate_serial
    assert {k.city for k in gd.find_keys()} == {
        city for _, cities in (*ELDER_BATCHES, (0, RECENT)) for city in cities
    }
    assert gd.can("city-key.apply")
    assert not gd.can("city-key.revoke")
    root = demo.console("mot-root-1")
    assert root.can("city-key.revoke")
    assert root.can("officer.approve")
    board = root.dashboard()
    assert board.keys.dormant == 2  # Shenzhen: delivered 399 days ago, never used
    assert board.keys.suspended == 1  # Foshan's QR key
    assert board.keys.states["suspended"] == 1
    assert [entry.sequence for entry in board.lists] == [2, 2, 2]  # six weeks ago and today
    assert not any(entry.stale for entry in board.lists)
    assert board.pending_approvals == 1  # Zhuhai's application
    op = demo.console("ca-op-1")
    (zhuhai,) = op.pending()
    assert (zhuhai.kind, zhuhai.by, zhuhai.subject) == (
        "application",
        "gd-2",
        f"application {zhuhai.id}",
    )
    assert gd.pending() == []  # a province does not approve applications
    assert demo.console("gd-2").pending() == []  # nor anything of its own
    page = root.audit_page(action="auth.sign-in")
    assert [e.actor for e in page.events][:4] == ["gd-2", "ca-op-1", "mot-root-1", "gd-1"]
    assert page.total > len(page.events)
    assert all(b.seq < a.seq for a, b in zip(page.events, page.events[1:], strict=False))
    assert root.audit_page(action="console.sign-in").events == []  # the old sign-in is gone
    # no PIN, share or session key reaches the audit log
    details = " ".join(e.details for e in root.audit_page(size=1000).events)
    for pin in demo.credentials.pins.values():
        assert pin not in details
    assert demo.credentials.shares[0] not in details
    older = root.audit_page(before=page.events[-1].seq, size=3)
    assert [e.seq for e in older.events] == sorted((e.seq for e in older.events), reverse=True)
    assert older.events[0].seq < page.events[-1].seq


def test_a_wrong_pin_another_officers_token_or_no_token_is_refused(demo: Demo) -> None:
    with pytest.raises(TokenError) as wrong:
        demo.console("gd-1", pin="000000")
    assert wrong.value.title == "Wrong PIN"
    assert wrong.value.message.startswith(
        "wrong PIN for token 'officer-gd-1' (from the PIN typed at sign-in)"
    )
    with pytest.raises(TokenError) as missing:
        open_token("nobody", "123456", state=demo.state)
    assert missing.value.title == "Token missing"
    # gd-2's token, opened with gd-2's PIN, does not sign gd-1 in: the service checks the
    # signature against gd-1's certificate
    token = open_token("gd-2", demo.pin("gd-2"), state=demo.state)
    try:
        with pytest.raises(ServiceError) as refused:
            sign_in(demo.client, token, "gd-1", clock=demo.clock)
    finally:
        token.close()
    assert (refused.value.status, refused.value.title) == (401, "Not authenticated")
    assert refused.value.message == "sign-in: the signature does not verify"
    with Session(demo.runtime.engine) as session:
        gd1 = select(OfficerSession).where(OfficerSession.officer_id == "gd-1")
        assert [s for s in session.exec(gd1) if s.ended_at is None] == []  # none opened


def test_decisions_are_signed_over_the_request_shown(demo: Demo) -> None:
    op = demo.console("ca-op-1")
    (zhuhai,) = op.pending()
    request = op.signed_request(zhuhai.kind, zhuhai.id)
    assert (request.subject, request.officer, request.operation) == (
        zhuhai.subject,
        "gd-2",
        "city.apply",
    )
    assert request.body == b'{"cities":["440400"]}'
    # a decision on another request than the one shown is not sent
    with pytest.raises(RequestChanged, match="not the one you were shown"):
        op.decide(zhuhai.kind, zhuhai.id, approve=True, digest="0" * 64)
    with Session(demo.runtime.engine) as session:
        assert session.exec(select(Approval).where(Approval.subject == zhuhai.subject)).all() == []
    assert op.decide(zhuhai.kind, zhuhai.id, approve=True, digest=request.digest) == "approved"
    with Session(demo.runtime.engine) as session:
        (approval,) = session.exec(select(Approval).where(Approval.subject == zhuhai.subject))
        application = session.get(KeyApplication, zhuhai.id)
    assert application is not None
    assert application.state == "approved"
    assert approval.approver == "ca-op-1"
    assert approval.certificate_serial == op.certificate_serial
    assert approval.statement is not None
    assert f"request-sm3: {request.digest}\n" in approval.statement


def test_sign_out_and_an_expired_session(demo: Demo) -> None:
    gd = demo.console("gd-1")
    gd.sign_out()
    assert gd.closed
    assert gd.token is None
    with pytest.raises(ServiceError) as ended:
        gd.dashboard()
    assert session_over(ended.value)
    assert ended.value.message == "the session has ended (signed out): sign in again"
    gd.sign_out()  # again: nothing to do, no error
    auditor = demo.console("auditor-1")
    demo.clock.advance(15 * 60 + 1)  # the service's clock: past the idle limit
    with pytest.raises(ServiceError) as expired:
        auditor.audit_page()
    assert session_over(expired.value)
    assert expired.value.message == "the session has expired (idle): sign in again"
    auditor.close()
    assert demo.console("auditor-1").audit_page(size=1).events  # a fresh sign-in works


def test_views_need_an_officer_and_the_demo_is_seeded_once(demo: Demo) -> None:
    with pytest.raises(ServiceError) as anonymous:
        demo.client.call(ops.DASHBOARD, Empty())
    assert (anonymous.value.status, anonymous.value.title) == (401, "Not signed in")
    auditor = demo.console("auditor-1")
    with pytest.raises(ServiceError) as field:
        auditor.client.call(
            ops.AUDIT_PAGE, ops.AuditPageRequest.model_construct(size=0, before=None, action="")
        )
    assert (field.value.status, field.value.field) == (422, "size")
    status = demo.client.call(demo_ops.STATUS, Empty())
    assert status.seeded
    assert status.credentials == str(demo.state / demo_ops.CREDENTIALS)
    with pytest.raises(ServiceError, match="not empty") as again:
        demo.client.call(demo_ops.SEED, Empty())
    assert again.value.title == "Demo refused"


def test_cleanup_view_and_ceremony_runs(demo: Demo) -> None:
    gd = demo.console("gd-1")
    view = gd.cleanup()
    assert sorted(k.city for k in view.dormant) == ["440300", "440300"]
    assert [k.label for k in view.destroy_due] == [REVOKED]  # revoked 200 days ago
    runs = gd.ceremonies()
    assert [r.kind for r in runs] == ["root"]
