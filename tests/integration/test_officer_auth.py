"""Refused and audited (issue #12, point 6): every way a request, a sign-in or a decision can
be wrong, tried against the real HTTP API in-process with officers signed in for real (one
SoftHSM2 token each, ``tests/officer_desk.py``). Forged and replayed requests are made by hand
over raw HTTP with the headers a client would send.

Each refusal is asserted twice: the answer (401 or 403, problem details naming what was wrong,
never a traceback) and the audit log, read through the ORM (an ``auth.refused`` event with its
reason, or the domain's own refusal)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from officer_desk import DeskClient, officer_pin
from service_fixtures import in_process
from sqlmodel import Session, col, select

from ca.client.http import ServiceError
from ca.client.session import RequestSigner
from ca.core.clock import FixedClock
from ca.officers.roster import add_officer_in
from ca.officers.statements import (
    NONCE_BYTES,
    SESSION_HEADER,
    SIGNATURE_HEADER,
    RequestSignature,
    b64url,
    request_base,
    sign_in_message,
)
from ca.ops import auth as auth_ops
from ca.ops import city as city_ops
from ca.ops import officers as officer_ops
from ca.ops.base import Empty, Model, Operation
from ca.policy.in_force import load_policy
from ca.service.runtime import Runtime
from ca.store.db import transaction
from ca.store.models import AuditEvent, OfficerSession
from hsm.sm.sm2 import SM2PrivateKey

T0 = 1_790_000_000  # 2026-09-21T14:13:20Z
OFFICERS = (
    ("mot-root-1", "ministry-root-officer", None),
    ("mot-root-2", "ministry-root-officer", None),
    ("ca-op-1", "ministry-ca-operator", None),
    ("gd-1", "provincial-officer", "440000"),
    ("gd-2", "provincial-officer", "440000"),
    ("fj-1", "provincial-officer", "350000"),
)
MINISTRY_TOKEN = "MOT-KEYS"  # noqa: S105 - a token label, not a secret
APPLY_440100 = city_ops.ApplyRequest(cities=["440100"])


@dataclass
class Desk:
    client: DeskClient
    runtime: Runtime
    clock: FixedClock

    def as_(self, officer: str) -> DeskClient:
        return self.client.as_officer(officer)

    def last_seq(self) -> int:
        with Session(self.runtime.engine) as session:
            row = session.exec(select(AuditEvent).order_by(col(AuditEvent.seq).desc())).first()
            return row.seq if row else 0

    def events(self, since: int, action: str | None = None) -> list[AuditEvent]:
        with Session(self.runtime.engine) as session:
            query = select(AuditEvent).where(AuditEvent.seq > since)
            if action is not None:
                query = query.where(AuditEvent.action == action)
            return list(session.exec(query.order_by(col(AuditEvent.seq))))

    def refusals(self, since: int) -> list[tuple[str, str, str]]:
        """``(actor, subject, reason)`` of each ``auth.refused`` event after ``since``."""
        return [
            (e.actor, e.subject, json.loads(e.details)["reason"])
            for e in self.events(since, "auth.refused")
        ]


@contextmanager
def desk_on(state: Path, url: str | None = None) -> Iterator[Desk]:
    clock = FixedClock(T0)
    with in_process(state, url=url, clock=clock) as (client, runtime):
        with transaction(runtime.engine) as session:
            for officer_id, role, province in OFFICERS:
                add_officer_in(
                    session,
                    officer_id=officer_id,
                    name=officer_id,
                    roles=[role],
                    province=province,
                    actor="test",
                    now=T0,
                )
        yield Desk(client, runtime, clock)


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Desk]:
    with desk_on(tmp_path / "state") as made:
        yield made


# -- helpers: requests made by hand -----------------------------------------------------------


def body_of(request: Model) -> bytes:
    return request.model_dump_json().encode()


def signed_headers(
    signer: RequestSigner,
    op: Operation[Any, Any],
    body: bytes,
    *,
    at: int | None = None,
    nonce: str | None = None,
    key: SM2PrivateKey | None = None,
    session: str | None = None,
) -> dict[str, str]:
    """The headers of a request signed as a client signs it, with any part chosen by hand."""
    session = session or signer.data.session
    at = signer.clock() if at is None else at
    nonce = nonce or b64url(secrets.token_bytes(NONCE_BYTES))
    key = key or SM2PrivateKey.from_pem(signer.data.session_key.encode())
    base = request_base(method="POST", path=op.path, session=session, at=at, nonce=nonce, body=body)
    signature = RequestSignature(at, nonce, key.sign(base))
    return {
        SESSION_HEADER: session,
        SIGNATURE_HEADER: signature.header(),
        "Content-Type": "application/json",
    }


def post(desk: Desk, op: Operation[Any, Any], body: bytes, headers: dict[str, str]) -> Any:
    return desk.client.http.post(op.path, content=body, headers=headers)


def assert_problem(response: httpx.Response, status: int, *needles: str) -> dict[str, Any]:
    """A refusal as problem details: the status, the words naming what was wrong, no trace."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    for needle in needles:
        assert needle in problem["detail"], problem
    assert "Traceback" not in response.text
    return problem


def signer_of(client: DeskClient) -> RequestSigner:
    assert client.signer is not None
    return client.signer


def refused_call(call: Any, status: int, *needles: str) -> ServiceError:
    with pytest.raises(ServiceError) as caught:
        call()
    error = caught.value
    assert error.status == status, error.problem
    for needle in needles:
        assert needle in error.message, error.message
    assert "Traceback" not in json.dumps(error.problem)
    return error


# -- no session, expired sessions ----------------------------------------------------------


def test_a_state_changing_request_without_a_session_is_refused(desk: Desk) -> None:
    since = desk.last_seq()
    response = desk.client.http.post(
        city_ops.APPLY.path,
        content=body_of(APPLY_440100),
        headers={"Content-Type": "application/json"},
    )
    problem = assert_problem(response, 401, "sign in")
    assert problem["title"] == "Not signed in"
    assert desk.refusals(since) == [("anonymous", "city.apply", "no-session")]
    assert desk.events(since, "city-key.apply") == []


def test_an_idle_session_ends(desk: Desk) -> None:
    gd1 = desk.as_("gd-1")
    gd1.call(auth_ops.WHOAMI, Empty())
    idle = load_policy().officers.session_idle_seconds
    desk.clock.advance(idle + 1)
    since = desk.last_seq()
    refused_call(lambda: gd1.call(auth_ops.WHOAMI, Empty()), 401, "expired (idle)", "sign in")
    assert desk.refusals(since) == [
        (f"session {signer_of(gd1).data.session[:8]}", "auth.whoami", "session-expired")
    ]
    # the session stays ended: the next request is refused as such, not served
    refused_call(lambda: gd1.call(auth_ops.WHOAMI, Empty()), 401, "ended (idle)")
    with Session(desk.runtime.engine) as session:
        row = session.get(OfficerSession, signer_of(gd1).data.session)
        assert row is not None
        assert (row.ended_at, row.ended_reason) == (T0 + idle + 1, "idle")
    desk.client.forget("gd-1")  # signing in again opens a new session
    assert desk.as_("gd-1").call(auth_ops.WHOAMI, Empty()).officer.id == "gd-1"


def test_a_session_ends_at_its_absolute_limit_however_busy(desk: Desk) -> None:
    policy = load_policy().officers
    gd1 = desk.as_("gd-1")
    step = policy.session_idle_seconds - 60
    elapsed = 0
    while elapsed + step < policy.session_absolute_seconds:
        desk.clock.advance(step)
        elapsed += step
        assert gd1.call(auth_ops.WHOAMI, Empty()).last_seen == T0 + elapsed
    desk.clock.set(T0 + policy.session_absolute_seconds)  # busy to the end, never idle
    since = desk.last_seq()
    refused_call(
        lambda: gd1.call(auth_ops.WHOAMI, Empty()), 401, "expired (absolute limit)", "sign in"
    )
    assert [r[2] for r in desk.refusals(since)] == ["session-expired"]


# -- forged, altered, replayed, late or borrowed signatures ------------------------------------


def test_a_forged_signature_is_refused(desk: Desk) -> None:
    signer = signer_of(desk.as_("gd-1"))
    body = body_of(APPLY_440100)
    headers = signed_headers(signer, city_ops.APPLY, body)
    forged = RequestSignature(T0, b64url(secrets.token_bytes(NONCE_BYTES)), secrets.token_bytes(64))
    headers[SIGNATURE_HEADER] = forged.header()
    since = desk.last_seq()
    problem = assert_problem(
        post(desk, city_ops.APPLY, body, headers), 401, "the request signature", "does not verify"
    )
    assert (problem["title"], problem["reason"]) == ("Not authenticated", "bad-signature")
    assert desk.refusals(since) == [
        (f"session {signer.data.session[:8]}", "city.apply", "bad-signature")
    ]
    assert desk.events(since, "city-key.apply") == []


def test_a_request_altered_after_signing_is_refused(desk: Desk) -> None:
    signer = signer_of(desk.as_("gd-1"))
    headers = signed_headers(signer, city_ops.APPLY, body_of(APPLY_440100))
    altered = body_of(city_ops.ApplyRequest(cities=["440300"]))  # 深圳, not 广州
    since = desk.last_seq()
    assert_problem(post(desk, city_ops.APPLY, altered, headers), 401, "does not verify")
    assert [r[2] for r in desk.refusals(since)] == ["bad-signature"]
    # a signature over one operation does not carry to another path either
    body = body_of(APPLY_440100)
    moved = signed_headers(signer, city_ops.APPLY, body)
    assert_problem(post(desk, city_ops.SUSPEND, body, moved), 401, "does not verify")
    assert desk.events(since, "city-key.apply") == []


def test_a_replayed_request_is_refused(database: Any, tmp_path: Path) -> None:
    url, _ = database
    with desk_on(tmp_path / "state", url) as desk:
        replayed(desk)


def replayed(desk: Desk) -> None:
    signer = signer_of(desk.as_("gd-1"))
    body = body_of(APPLY_440100)
    headers = signed_headers(signer, city_ops.APPLY, body)
    since = desk.last_seq()
    first = post(desk, city_ops.APPLY, body, headers)
    assert first.status_code == 200, first.text
    assert first.json()["cities"] == ["440100"]
    again = post(desk, city_ops.APPLY, body, headers)
    problem = assert_problem(again, 401, "already served", "replay")
    assert problem["reason"] == "replay"
    assert desk.refusals(since) == [(f"session {signer.data.session[:8]}", "city.apply", "replay")]
    assert len(desk.events(since, "city-key.apply")) == 1  # one application, not two
    # a reading request may be repeated (no state changes), still signed
    read = signed_headers(signer, auth_ops.WHOAMI, b"{}")
    for _ in range(2):
        assert post(desk, auth_ops.WHOAMI, b"{}", read).status_code == 200


def test_a_request_signed_outside_the_clock_skew_is_refused(desk: Desk) -> None:
    signer = signer_of(desk.as_("gd-1"))
    skew = load_policy().officers.clock_skew_seconds
    body = body_of(APPLY_440100)
    since = desk.last_seq()
    for at in (T0 - skew - 1, T0 + skew + 1):
        headers = signed_headers(signer, city_ops.APPLY, body, at=at)
        assert_problem(post(desk, city_ops.APPLY, body, headers), 401, f"at most {skew} s", str(at))
    assert [r[2] for r in desk.refusals(since)] == ["clock-skew", "clock-skew"]
    inside = signed_headers(signer, city_ops.APPLY, body, at=T0 - skew)
    assert post(desk, city_ops.APPLY, body, inside).status_code == 200


def test_a_request_signed_with_another_officers_session_key_is_refused(desk: Desk) -> None:
    gd1, gd2 = signer_of(desk.as_("gd-1")), signer_of(desk.as_("gd-2"))
    body = body_of(APPLY_440100)
    gd2_key = SM2PrivateKey.from_pem(gd2.data.session_key.encode())
    headers = signed_headers(gd1, city_ops.APPLY, body, key=gd2_key)  # gd-1's session id
    since = desk.last_seq()
    assert_problem(post(desk, city_ops.APPLY, body, headers), 401, "does not verify")
    assert desk.refusals(since) == [
        (f"session {gd1.data.session[:8]}", "city.apply", "bad-signature")
    ]
    assert desk.events(since, "city-key.apply") == []
    # and gd-1's own key over gd-2's session id is no better
    headers = signed_headers(
        gd2, city_ops.APPLY, body, key=SM2PrivateKey.from_pem(gd1.data.session_key.encode())
    )
    assert_problem(post(desk, city_ops.APPLY, body, headers), 401, "does not verify")


def test_an_unknown_session_or_a_missing_signature_is_refused(desk: Desk) -> None:
    signer = signer_of(desk.as_("gd-1"))
    body = body_of(APPLY_440100)
    since = desk.last_seq()
    unknown = signed_headers(signer, city_ops.APPLY, body, session="0" * 32)
    assert_problem(post(desk, city_ops.APPLY, body, unknown), 401, "no such session")
    unsigned = {SESSION_HEADER: signer.data.session, "Content-Type": "application/json"}
    assert_problem(post(desk, city_ops.APPLY, body, unsigned), 401, "Jtca-Signature")
    assert [r[2] for r in desk.refusals(since)] == ["unknown-session", "unsigned"]


# -- sign-in ------------------------------------------------------------------------------------


def sign_in_by_hand(
    desk: Desk, officer: str, *, signed_by: str, nonce: str | None = None
) -> tuple[httpx.Response, str]:
    """A sign-in as ``officer`` whose token signature is made by ``signed_by``'s token."""
    anonymous = desk.client.signed_in(None)
    challenge = anonymous.call(auth_ops.CHALLENGE, Empty())
    nonce = nonce or challenge.nonce
    session_key = SM2PrivateKey.generate().public_key.uncompressed
    message = sign_in_message(
        service=challenge.service, officer=officer, nonce=nonce, at=desk.clock.now(),
        session_key=session_key,
    )  # fmt: skip
    request = auth_ops.SignInRequest(
        officer=officer,
        nonce=nonce,
        at=desk.clock.now(),
        session_key=session_key,
        signature=desk.client.token(signed_by).sign(message),
    )
    response = desk.client.http.post(
        auth_ops.SIGN_IN.path,
        content=body_of(request),
        headers={"Content-Type": "application/json"},
    )
    return response, nonce


def test_a_sign_in_signed_with_another_officers_token_is_refused(desk: Desk) -> None:
    desk.as_("gd-1"), desk.as_("gd-2")  # both enrolled, each with their own token
    since = desk.last_seq()
    response, _ = sign_in_by_hand(desk, "gd-1", signed_by="gd-2")
    problem = assert_problem(response, 401, "sign-in: the signature does not verify")
    assert problem["reason"] == "bad-signature"
    assert desk.refusals(since) == [("gd-1", "sign-in", "bad-signature")]
    assert desk.events(since, "auth.sign-in") == []
    ok, _ = sign_in_by_hand(desk, "gd-1", signed_by="gd-1")
    assert ok.status_code == 200, ok.text


def test_a_sign_in_with_a_spent_or_expired_challenge_is_refused(desk: Desk) -> None:
    desk.as_("gd-1")
    ok, spent = sign_in_by_hand(desk, "gd-1", signed_by="gd-1")
    assert ok.status_code == 200, ok.text
    since = desk.last_seq()
    again, _ = sign_in_by_hand(desk, "gd-1", signed_by="gd-1", nonce=spent)
    assert_problem(again, 401, "the challenge is unknown or already used")
    made_up, _ = sign_in_by_hand(
        desk, "gd-1", signed_by="gd-1", nonce=b64url(secrets.token_bytes(NONCE_BYTES))
    )
    assert_problem(made_up, 401, "the challenge is unknown or already used")

    challenge = desk.client.signed_in(None).call(auth_ops.CHALLENGE, Empty())
    desk.clock.advance(load_policy().officers.challenge_seconds)
    late, _ = sign_in_by_hand(desk, "gd-1", signed_by="gd-1", nonce=challenge.nonce)
    assert_problem(late, 401, "the challenge has expired")
    assert desk.refusals(since) == [("gd-1", "sign-in", "bad-challenge")] * 3
    assert desk.events(since, "auth.sign-in") == []


def test_a_wrong_pin_is_refused_by_the_token(desk: Desk) -> None:
    """The token itself refuses the PIN (C_Login: CKR_PIN_INCORRECT), before anything is
    signed or sent. SoftHSM2 never locks a user PIN (it has no retry limit: its C_Login never
    answers CKR_PIN_LOCKED, whatever the token's flags say), so the lock after a retry limit
    that a USB key applies cannot be shown with it; hsm.pkcs11.token maps CKR_PIN_LOCKED to
    "PIN locked … the security officer must reset it" for the tokens that do."""
    from officer_desk import FixedPinSource
    from pkcs11 import TokenFlag

    from ca.site.officer_token import OfficerToken, default_label, sign_in
    from hsm.pkcs11.token import TokenError, find_module, load_module

    desk.as_("gd-1")  # gd-1's token exists and is enrolled
    desk.client.token("gd-1").close()  # logged out: the next PIN goes to the token itself

    def flags() -> TokenFlag:
        return load_module(find_module()).get_token(token_label=default_label("gd-1")).flags

    assert not flags() & TokenFlag.USER_PIN_COUNT_LOW
    since = desk.last_seq()
    for attempt in range(5):
        wrong = OfficerToken(
            "officer-gd-1",
            FixedPinSource(f"not-{officer_pin('gd-1')}-{attempt}"),
            state=desk.runtime.state,
        )
        with pytest.raises(TokenError) as caught:
            sign_in(desk.client.signed_in(None), wrong, "gd-1", clock=desk.clock.now)
        assert caught.value.title == "Wrong PIN"
        assert "wrong PIN for token 'officer-gd-1'" in caught.value.message
        # what the token's retry counter says is said with it (read afresh after the failure)
        assert "the token has counted failed logins" in caught.value.message
        assert "only its security officer can reset it" in caught.value.message
        assert officer_pin("gd-1") not in caught.value.message
        wrong.close()
    assert flags() & TokenFlag.USER_PIN_COUNT_LOW  # the token counted the failures
    assert not flags() & TokenFlag.USER_PIN_LOCKED  # and SoftHSM2 never locks
    # the PIN never left this machine: the service saw challenges asked for, no sign-in
    assert desk.events(since, "auth.sign-in") == []
    assert desk.refusals(since) == []
    right = OfficerToken(
        "officer-gd-1", FixedPinSource(officer_pin("gd-1")), state=desk.runtime.state
    )
    assert sign_in(desk.client.signed_in(None), right, "gd-1", clock=desk.clock.now).officer == (
        "gd-1"
    )
    assert not flags() & TokenFlag.USER_PIN_COUNT_LOW  # cleared by the right PIN


# -- suspended and revoked officers ----------------------------------------------------------


def test_a_suspended_officer_is_refused_from_the_next_request_and_reinstated(desk: Desk) -> None:
    gd1 = desk.as_("gd-1")
    gd1.call(auth_ops.WHOAMI, Empty())
    root = desk.as_("mot-root-1")
    suspended = root.call(
        officer_ops.SUSPEND, officer_ops.OfficerAction(officer_id="gd-1", reason="token lost")
    )
    assert suspended.certificate is not None
    assert suspended.certificate.status == "suspended"
    since = desk.last_seq()
    refused_call(
        lambda: gd1.call(city_ops.APPLY, APPLY_440100), 401, "session has ended", "suspended"
    )
    refused_call(lambda: gd1.call(auth_ops.WHOAMI, Empty()), 401, "certificate suspended")
    response, _ = sign_in_by_hand(desk, "gd-1", signed_by="gd-1")
    assert_problem(response, 401, "is suspended (token lost)")
    assert [r[2] for r in desk.refusals(since)] == [
        "session-ended",
        "session-ended",
        "certificate-not-in-force",
    ]
    assert desk.events(since, "city-key.apply") == []
    # an officer cannot lift their own suspension, even with a session of their own
    reinstated = root.call(officer_ops.REINSTATE, officer_ops.OfficerAction(officer_id="gd-1"))
    assert reinstated.certificate is not None
    assert reinstated.certificate.status == "active"
    desk.client.forget("gd-1")
    assert desk.as_("gd-1").call(city_ops.APPLY, APPLY_440100).cities == ["440100"]


def test_a_revoked_officer_is_refused_from_the_next_request_for_good(desk: Desk) -> None:
    from ca.site.officer_token import sign_in

    gd1 = desk.as_("gd-1")
    gd1.call(auth_ops.WHOAMI, Empty())
    revoked = desk.as_("mot-root-1").call(
        officer_ops.REVOKE, officer_ops.OfficerAction(officer_id="gd-1", reason="left the post")
    )
    assert revoked.certificate is not None
    assert revoked.certificate.status == "revoked"
    since = desk.last_seq()
    refused_call(lambda: gd1.call(city_ops.APPLY, APPLY_440100), 401, "certificate revoked")
    with pytest.raises(ServiceError) as caught:
        sign_in(
            desk.client.signed_in(None), desk.client.token("gd-1"), "gd-1", clock=desk.clock.now
        )
    assert caught.value.status == 401
    assert "is revoked (left the post)" in caught.value.message
    assert [r[2] for r in desk.refusals(since)] == ["session-ended", "certificate-not-in-force"]
    # no way back: reinstating a revoked certificate is refused
    refused_call(
        lambda: desk.as_("mot-root-1").call(
            officer_ops.REINSTATE, officer_ops.OfficerAction(officer_id="gd-1")
        ),
        403,
        "is revoked: cannot reinstate it",
    )
    assert desk.events(since, "city-key.apply") == []


# -- policy and dual control, signed decisions ---------------------------------------------------


def decide(
    desk: Desk, officer: str, kind: str, id: int, *, approve: bool = True, reason: str = ""
) -> city_ops.Decision:
    """``officer``'s decision on ``"{kind} {id}"``, signed with their own token."""
    signed = desk.as_(officer)
    at, signature = signed.decision(f"{kind} {id}", approve=approve)
    request = city_ops.DecideRequest(
        kind=kind,  # type: ignore[arg-type]
        id=id,
        approve=approve,
        reason=reason,
        at=at,
        signature=signature,
    )
    return signed.call(city_ops.DECIDE, request)


@pytest.fixture
def keyed(desk: Desk) -> Desk:
    """``desk`` with Guangzhou's keys generated: gd-1 applied, ca-op-1 approved (signed),
    mot-root-1 generated into the ministry token."""
    from ca.citykeys import workflow
    from policies.rules import Actor

    root = Actor("mot-root-1", frozenset({"ministry-root-officer"}))
    with desk.runtime.tokens(create=True) as vault:
        workflow.register_transport_key(
            desk.runtime.engine, vault, root, holder="ministry", token=MINISTRY_TOKEN, now=T0
        )
    application = desk.as_("gd-1").call(city_ops.APPLY, APPLY_440100)
    assert decide(desk, "ca-op-1", "application", application.id).state == "approved"
    generated = desk.as_("mot-root-1").call(
        city_ops.GENERATE, city_ops.GenerateRequest(application=application.id)
    )
    assert len(generated.keys) == 2
    return desk


def test_a_cross_province_action_is_refused_by_policy(keyed: Desk) -> None:
    fj1 = keyed.as_("fj-1")
    since = keyed.last_seq()
    error = refused_call(lambda: fj1.call(city_ops.APPLY, APPLY_440100), 403, "deny/other-province")
    assert error.title == "Not allowed by policy"
    error = refused_call(
        lambda: fj1.call(city_ops.SUSPEND, city_ops.KeyActionRequest(city="440100", reason="x")),
        403,
        "deny/other-province",
    )
    assert keyed.refusals(since) == [
        ("fj-1", "city.apply", "deny/other-province"),
        ("fj-1", "city.suspend", "deny/other-province"),
    ]
    assert keyed.events(since, "city-key.apply") == []
    assert keyed.events(since, "city-key.suspend.request") == []


def city_card(desk: Desk, city: str) -> city_ops.KeyView:
    keys = desk.as_("mot-root-1").call(city_ops.KEYS, city_ops.KeysRequest(city=city)).keys
    return next(k for k in keys if k.key_class == "city-card")


def test_self_approval_is_refused_whatever_token_signs_it(keyed: Desk) -> None:
    # gd-1's application, approved by gd-1 with gd-1's own token
    application = keyed.as_("gd-1").call(city_ops.APPLY, city_ops.ApplyRequest(cities=["440300"]))
    since = keyed.last_seq()
    refused_call(
        lambda: decide(keyed, "gd-1", "application", application.id),
        403,
        "dual control: the applicant cannot approve their own application",
    )
    # mot-root-1's revocation, approved by mot-root-1 with mot-root-1's own token
    requested = keyed.as_("mot-root-1").call(
        city_ops.REVOKE,
        city_ops.KeyActionRequest(keys=[city_card(keyed, "440100").id], reason="lost token"),
    )
    assert (requested.state, requested.required) == ("pending", 2)
    action = requested.action_id or 0
    error = refused_call(lambda: decide(keyed, "mot-root-1", "action", action), 403, "dual control")
    assert error.exit_code == 6
    assert keyed.refusals(since) == [
        ("gd-1", "city.decide", "key-application"),
        ("mot-root-1", "city.decide", "key-action"),
    ]
    assert keyed.events(since, "city-key.approve") == []
    assert keyed.events(since, "city-key.revoke.approve") == []
    # a second officer's decision counts
    assert decide(keyed, "mot-root-2", "action", action).state == "pending"


def test_a_second_approval_by_the_same_officer_is_refused(keyed: Desk) -> None:
    card = city_card(keyed, "440100")
    requested = keyed.as_("mot-root-1").call(
        city_ops.REVOKE, city_ops.KeyActionRequest(keys=[card.id], reason="lost token")
    )
    assert (requested.state, requested.required) == ("pending", 2)
    action = requested.action_id or 0
    first = decide(keyed, "mot-root-2", "action", action)
    assert first.outcome is not None
    assert first.outcome.approvals == 1
    since = keyed.last_seq()
    refused_call(lambda: decide(keyed, "mot-root-2", "action", action), 403, "already decided")
    assert keyed.refusals(since) == [("mot-root-2", "city.decide", "key-action")]
    listed = keyed.as_("mot-root-1").call(city_ops.ACTIONS, city_ops.ActionsRequest()).actions
    assert [(a.id, a.approvals) for a in listed] == [(action, 1)]


def test_a_decision_signed_over_another_request_or_by_another_key_is_refused(
    keyed: Desk,
) -> None:
    from ca.officers.statements import approval_statement
    from ca.ops import approvals as approval_ops

    gd1 = keyed.as_("gd-1")
    one = gd1.call(city_ops.APPLY, city_ops.ApplyRequest(cities=["440300"])).id
    two = gd1.call(city_ops.APPLY, city_ops.ApplyRequest(cities=["440600"])).id
    operator = keyed.as_("ca-op-1")
    serial = signer_of(operator).data.certificate_serial

    def submit(id: int, at: int, signature: bytes) -> city_ops.Decision:
        request = city_ops.DecideRequest(
            kind="application", id=id, approve=True, at=at, signature=signature
        )
        return operator.call(city_ops.DECIDE, request)

    since = keyed.last_seq()
    # a real signature by ca-op-1's token, but over application two, sent for application one
    at, signature = operator.decision(f"application {two}")
    refused_call(
        lambda: submit(one, at, signature), 401, f"on application {one}", "does not verify"
    )
    # the statement names application one but the SM3 of application two's request
    digest_two = operator.call(
        approval_ops.REQUEST, approval_ops.SubjectRequest(subject=f"application {two}")
    ).digest
    statement = approval_statement(
        subject=f"application {one}", request_digest=digest_two, approve=True,
        officer="ca-op-1", serial=serial, at=keyed.clock.now(),
    )  # fmt: skip
    refused_call(
        lambda: submit(one, keyed.clock.now(), keyed.client.token("ca-op-1").sign(statement)),
        401,
        "does not verify",
    )
    # the right statement, signed by another officer's token (mot-root-1's)
    digest_one = operator.call(
        approval_ops.REQUEST, approval_ops.SubjectRequest(subject=f"application {one}")
    ).digest
    statement = approval_statement(
        subject=f"application {one}", request_digest=digest_one, approve=True,
        officer="ca-op-1", serial=serial, at=keyed.clock.now(),
    )  # fmt: skip
    keyed.as_("mot-root-1")
    refused_call(
        lambda: submit(one, keyed.clock.now(), keyed.client.token("mot-root-1").sign(statement)),
        401,
        "does not verify",
    )
    # random bytes, and a good signature made too long ago
    refused_call(lambda: submit(one, keyed.clock.now(), secrets.token_bytes(64)), 401)
    skew = load_policy().officers.clock_skew_seconds
    keyed.clock.advance(skew + 1)
    refused_call(lambda: submit(one, at, signature), 401, f"at most {skew} s")
    assert keyed.refusals(since) == [
        ("ca-op-1", f"application {one}", "bad-signature"),
        ("ca-op-1", f"application {one}", "bad-signature"),
        ("ca-op-1", f"application {one}", "bad-signature"),
        ("ca-op-1", f"application {one}", "bad-signature"),
        ("ca-op-1", f"application {one}", "clock-skew"),
    ]
    assert keyed.events(since, "city-key.approve") == []
    # and the honest decision, signed over the right request, is taken
    assert decide(keyed, "ca-op-1", "application", one).state == "approved"
