"""Use cases of sign-in (issue #12) and the check every signed request passes.

- ``auth.challenge``: a fresh nonce, stored with its expiry, spent by the first sign-in that
  uses it;
- ``auth.sign-in``: the officer's token signature over ``ca.officers.statements.sign_in_message``,
  checked against their certificate in force, opens a session bound to the officer, that
  certificate and the client's session key (idle and absolute limits from the policy);
- ``authenticate``: for each request that carries a session, the session is open and not idle
  or past its absolute limit, the officer and their certificate are still in force (a suspended
  or revoked officer can do nothing from the next request on), the time is within the skew, the
  session key's signature over ``request_base`` verifies, and a state-changing request's nonce
  has not been spent in this session (no replay).

Every refusal is audited (``auth.refused`` with the reason; never a secret) and answered 401.
"""

from __future__ import annotations

import secrets
from contextvars import ContextVar
from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, delete, select

from ca.log import audit
from ca.officers.certificates import (
    OfficerCertificateError,
    certificate_in_force,
    officer_ca_record,
)
from ca.officers.statements import (
    NONCE_BYTES,
    AuthError,
    b64url,
    check_nonce,
    parse_signature_header,
    request_base,
    sign_in_message,
    verify,
)
from ca.ops import auth as ops
from ca.ops.base import Empty
from ca.policy.authorization import granted
from ca.policy.in_force import load_policy
from ca.service.context import Context
from ca.service.registry import handles
from ca.store.db import transaction
from ca.store.models import (
    Officer,
    OfficerCertificate,
    OfficerSession,
    RequestNonce,
    SignInChallenge,
)
from hsm.sm.sm2 import SM2PublicKey
from policies.rules import Actor


@dataclass(frozen=True, slots=True)
class Authenticated:
    actor: Actor
    session_id: str
    certificate_serial: int


def service_identity(session: Session) -> str:
    """The authority's identity in every sign-in: its officer CA's SM3 fingerprint."""
    record = officer_ca_record(session)
    if record is None:
        raise AuthError(
            "no officer is enrolled yet: enrol the first officers under the root share quorum "
            "(jtca officer enrol --quorum)",
            reason="no-officer-ca",
        )
    return f"jtca-authority:{record.sm3[:32]}"


# Set once a refusal of the request being served is audited, so the HTTP adapter audits each
# refusal once (ca.api.app audits those the use cases did not).
refusal_audited: ContextVar[bool] = ContextVar("refusal_audited", default=False)


def refuse(
    engine: Engine, *, officer: str, reason: str, message: str, where: str, now: int
) -> None:
    """Audit a refused sign-in or request (the reason and where; never a secret)."""
    with transaction(engine) as session:
        audit.append(
            session,
            actor=(officer.strip() or "anonymous")[:100],
            action="auth.refused",
            subject=where[:200],
            details={"reason": reason, "message": message[:300]},
            at=now,
        )
    refusal_audited.set(True)


def _actor(record: Officer) -> Actor:
    return Actor(record.officer_id, frozenset(record.roles.split(",")), record.province)


def _officer_view(record: Officer) -> ops.Officer:
    return ops.Officer(
        id=record.officer_id,
        name=record.name,
        roles=sorted(record.roles.split(",")),
        province=record.province,
    )


def _officer_in_force(session: Session, officer_id: str, now: int) -> tuple[Officer, int, bytes]:
    record = session.get(Officer, officer_id)
    if record is None:
        raise AuthError(f"officer {officer_id!r} is not registered", reason="unknown-officer")
    if record.status != "active":
        raise AuthError(f"officer {officer_id} is {record.status}", reason="officer-not-active")
    try:
        cert = certificate_in_force(session, officer_id, now)
    except OfficerCertificateError as exc:
        raise AuthError(exc.message, reason="certificate-not-in-force") from None
    return record, cert.serial, cert.public_key


@handles(ops.CHALLENGE)
def challenge(ctx: Context, _req: Empty) -> ops.Challenge:
    now = ctx.now()
    seconds = load_policy().officers.challenge_seconds
    nonce = b64url(secrets.token_bytes(NONCE_BYTES))
    with transaction(ctx.engine) as session:
        service = service_identity(session)
        # spent and expired challenges go: the table holds only live ones
        session.exec(delete(SignInChallenge).where(col(SignInChallenge.expires_at) < now))
        session.add(SignInChallenge(nonce=nonce, issued_at=now, expires_at=now + seconds))
    return ops.Challenge(nonce=nonce, service=service, now=now, expires_at=now + seconds)


@handles(ops.SIGN_IN)
def sign_in(ctx: Context, req: ops.SignInRequest) -> ops.Session:
    now = ctx.now()
    policy = load_policy().officers
    try:
        check_nonce(req.nonce)
        session_key = SM2PublicKey.from_bytes(req.session_key)
        with transaction(ctx.engine) as session:
            service = service_identity(session)
            row = session.exec(
                select(SignInChallenge).where(SignInChallenge.nonce == req.nonce).with_for_update()
            ).first()
            if row is None or row.spent_at is not None:
                raise AuthError("the challenge is unknown or already used", reason="bad-challenge")
            if now >= row.expires_at:
                raise AuthError(
                    "the challenge has expired: ask for a new one", reason="bad-challenge"
                )
            row.spent_at = now
            session.add(row)
        if abs(now - req.at) > policy.clock_skew_seconds:
            raise AuthError(
                f"the signed time {req.at} is {abs(now - req.at)} s from the service's; "
                f"at most {policy.clock_skew_seconds} s",
                reason="clock-skew",
            )
        with Session(ctx.engine, expire_on_commit=False) as session:
            record, serial, public = _officer_in_force(session, req.officer, now)
        message = sign_in_message(
            service=service,
            officer=req.officer,
            nonce=req.nonce,
            at=req.at,
            session_key=session_key.uncompressed,
        )
        verify(SM2PublicKey.from_bytes(public), req.signature, message, "sign-in")
    except AuthError as exc:
        refuse(
            ctx.engine,
            officer=req.officer,
            reason=exc.reason,
            message=exc.message,
            where="sign-in",
            now=now,
        )
        raise
    except ValueError as exc:  # an unusable session key
        refuse(
            ctx.engine,
            officer=req.officer,
            reason="bad-session-key",
            message=str(exc),
            where="sign-in",
            now=now,
        )
        raise AuthError(
            f"session_key: not an SM2 point ({exc})", reason="bad-session-key"
        ) from None
    session_id = secrets.token_hex(16)
    expires = now + policy.session_absolute_seconds
    actor = _actor(record)
    with transaction(ctx.engine) as session:
        session.add(
            OfficerSession(
                id=session_id,
                officer_id=record.officer_id,
                certificate_serial=serial,
                session_key=session_key.uncompressed,
                created_at=now,
                last_seen=now,
                expires_at=expires,
            )
        )
        audit.append(
            session,
            actor=record.officer_id,
            action="auth.sign-in",
            subject=f"session {session_id[:8]}",
            details={"certificate_serial": serial, "expires_at": expires},
            at=now,
        )
    return ops.Session(
        session=session_id,
        officer=_officer_view(record),
        certificate_serial=serial,
        actions=sorted(granted(actor)),
        service=service,
        now=now,
        idle_seconds=policy.session_idle_seconds,
        expires_at=expires,
    )


@handles(ops.SIGN_OUT)
def sign_out(ctx: Context, _req: Empty) -> Empty:
    now = ctx.now()
    with transaction(ctx.engine) as session:
        row = session.get(OfficerSession, ctx.session_id)
        if row is not None and row.ended_at is None:
            row.ended_at, row.ended_reason = now, "signed out"
            session.add(row)
            session.exec(delete(RequestNonce).where(col(RequestNonce.session_id) == row.id))
            audit.append(
                session,
                actor=row.officer_id,
                action="auth.sign-out",
                subject=f"session {row.id[:8]}",
                at=now,
            )
    return Empty()


@handles(ops.WHOAMI)
def whoami(ctx: Context, _req: Empty) -> ops.WhoAmI:
    actor = ctx.actor()
    with Session(ctx.engine) as session:
        row = session.get(OfficerSession, ctx.session_id)
        record = session.get(Officer, actor.id)
        cert = certificate_in_force(session, actor.id, ctx.now())
    if row is None or record is None:  # pragma: no cover - authenticate found both
        raise AuthError("no such session", reason="unknown-session")
    return ops.WhoAmI(
        session=row.id,
        officer=_officer_view(record),
        certificate_serial=cert.serial,
        certificate_not_after=cert.not_after,
        signed_in_at=row.created_at,
        last_seen=row.last_seen,
        expires_at=row.expires_at,
        idle_seconds=load_policy().officers.session_idle_seconds,
        actions=sorted(granted(actor)),
    )


def authenticate(
    engine: Engine,
    *,
    now: int,
    method: str,
    path: str,
    session_id: str,
    signature_header: str | None,
    body: bytes,
    mutating: bool,
) -> Authenticated:
    """The officer behind a signed request, or ``AuthError`` (audited by the caller)."""
    policy = load_policy().officers
    if not signature_header:
        raise AuthError("a signed-in request carries Jtca-Signature", reason="unsigned")
    signed = parse_signature_header(signature_header)
    if abs(now - signed.at) > policy.clock_skew_seconds:
        raise AuthError(
            f"the request's time {signed.at} is {abs(now - signed.at)} s from the service's; "
            f"at most {policy.clock_skew_seconds} s",
            reason="clock-skew",
        )
    with transaction(engine) as session:
        row = session.get(OfficerSession, session_id)
        if row is None:
            raise AuthError("no such session: sign in", reason="unknown-session")
        if row.ended_at is not None:
            raise AuthError(
                f"the session has ended ({row.ended_reason}): sign in again", reason="session-ended"
            )
        end = None
        if now >= row.expires_at:
            end = "absolute limit"
        elif now - row.last_seen > policy.session_idle_seconds:
            end = "idle"
        if end is not None:  # recorded as ended (committed), then refused below
            row.ended_at, row.ended_reason = now, end
            session.add(row)
    if end is not None:
        raise AuthError(f"the session has expired ({end}): sign in again", reason="session-expired")
    with transaction(engine) as session:
        row = session.get(OfficerSession, session_id)
        if row is None:  # pragma: no cover - read just above
            raise AuthError("no such session: sign in", reason="unknown-session")
        record, serial, public = _officer_in_force(session, row.officer_id, now)
        if serial != row.certificate_serial:
            opened_with = session.get(OfficerCertificate, row.certificate_serial)
            # a renewal certifies the same token key again: the session goes on under it; any
            # other change (a new key, a suspension or revocation in between) ends it
            if opened_with is None or opened_with.public_key != public:
                raise AuthError(
                    f"the session was opened with certificate {row.certificate_serial}, no "
                    "longer in force: sign in again",
                    reason="certificate-not-in-force",
                )
            row.certificate_serial = serial
        message = request_base(
            method=method,
            path=path,
            session=session_id,
            at=signed.at,
            nonce=signed.nonce,
            body=body,
        )
        verify(
            SM2PublicKey.from_bytes(row.session_key),
            signed.signature,
            message,
            "the request signature",
        )
        if mutating:
            session.add(RequestNonce(session_id=session_id, nonce=signed.nonce, at=now))
            try:
                session.flush()
            except IntegrityError:
                raise AuthError(
                    "this request was already served (its nonce is spent): a replay",
                    reason="replay",
                ) from None
            # nonces older than the skew window can no longer be replayed: drop them
            session.exec(
                delete(RequestNonce).where(
                    col(RequestNonce.at) < now - 2 * policy.clock_skew_seconds
                )
            )
        row.last_seen = now
        session.add(row)
        actor = _actor(record)
    return Authenticated(actor, session_id, serial)
