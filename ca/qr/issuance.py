"""The central QR CA issuing interop certificates to QR issuers, and revoking them.

Serials are unique per CA key and never reused, not after a crash and not under concurrent
issuance: a serial is allocated in its own committed transaction (the counter row locked, the
allocation audited) before anything is signed, so a crash after allocation leaves a gap, never a
second certificate with the same serial; a unique constraint on (CA key, serial) backs it up.
The certificate is then signed with the CA key in the token and stored with its audit event in
one transaction.

Every reserved serial is accounted for (issue #14): the reservation and an intent
(``qr.issue``, subject ``ca-key <hex>``, its plan naming the CA key, index and serial) are
committed together; the intent is completed in the transaction that stores the certificate. A
serial whose issuance failed, or whose process died, before the certificate was stored is
voided: an audit entry ``qr.serial-void`` names the CA key and serial (by the failing run
itself, or by recovery, ``recover``), and the counter never hands it out again.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from ca.core.errors import BadInput, JtcaError
from ca.log import audit
from ca.qr.cert_request import InteropCertRequest
from ca.qr.codec import MAX_UINT24, InteropCertificate
from ca.qr.issue import issue_interop_certificate
from ca.registry.issuers import active_issuer
from ca.store import intents
from ca.store.db import transaction
from ca.store.intents import IntentRef
from ca.store.models import AuditEvent, CaKey, InteropCertificateRecord, SerialCounter
from hsm.crashpoints import crash_point
from hsm.signer import Signer
from hsm.sm.sm3 import sm3

ACTION_ISSUE: Final = "qr-ca.issue-interop-cert"
ACTION_REVOKE: Final = "qr-ca.revoke-interop-cert"
ACTION_VOID: Final = "qr.serial-void"  # a reserved serial no certificate was stored under
OPERATION: Final = "qr.issue"  # the intent's operation (issue #14)


def intent_subject(ca_key_hex: str) -> str:
    """The subject of issuance intents under one CA key (several run at once: not exclusive)."""
    return f"ca-key {ca_key_hex}"


class IssuanceError(JtcaError):
    title = "Issuance refused"
    exit_code = 6


@dataclass(frozen=True, slots=True)
class IssueContext:
    """Who issues, with which CA key, checked by ``authorize`` (the policy decision)."""

    actor: str
    ca_signer: Signer
    ca_index: int
    now: int
    authorize: Callable[[str, InteropCertRequest], None]  # raises on a denied decision


def allocate_serial(engine: Engine, ca_key_hex: str, ca_index: int, *, actor: str, now: int) -> int:
    """Reserve the next serial for a CA key, committed and audited before any signing."""
    with transaction(engine) as session:
        return _reserve(session, ca_key_hex, ca_index, actor=actor, now=now)


def reserve_serial(
    engine: Engine,
    ca_key_hex: str,
    ca_index: int,
    *,
    actor: str,
    now: int,
    plan: dict[str, object],
) -> tuple[int, IntentRef]:
    """Reserve the next serial and begin its ``qr.issue`` intent in one committed transaction:
    no serial is ever reserved without the intent that accounts for it."""
    with transaction(engine) as session:
        serial = _reserve(session, ca_key_hex, ca_index, actor=actor, now=now)
        intent = intents.begin_in(
            session,
            OPERATION,
            intent_subject(ca_key_hex),
            {**plan, "ca_key": ca_key_hex, "ca_index": ca_index, "serial": serial},
            actor=actor,
            now=now,
            exclusive=False,
        )
        return serial, intent


def _reserve(session: Session, ca_key_hex: str, ca_index: int, *, actor: str, now: int) -> int:
    counter = session.exec(
        select(SerialCounter).where(SerialCounter.ca_key == ca_key_hex).with_for_update()
    ).one_or_none()
    if counter is None:
        # First serial of this key: two issuers may race to create the counter; the loser's
        # insert fails inside its savepoint and it locks the winner's row instead.
        try:
            with session.begin_nested():
                session.add(SerialCounter(ca_key=ca_key_hex, ca_index=ca_index, next_serial=1))
        except IntegrityError:
            pass
        counter = session.exec(
            select(SerialCounter).where(SerialCounter.ca_key == ca_key_hex).with_for_update()
        ).one()
    serial = counter.next_serial
    if serial > MAX_UINT24:
        raise IssuanceError(
            f"CA key {ca_index} has used all {MAX_UINT24} serials: roll over to a new CA index"
        )
    counter.next_serial = serial + 1
    session.add(counter)
    audit.append(
        session,
        actor=actor,
        action="qr-ca.allocate-serial",
        subject=f"ca {ca_index}",
        details={"ca_key": ca_key_hex, "serial": serial},
        at=now,
    )
    return serial


def _stored(session: Session, ca_key_hex: str, serial: int) -> bool:
    return (
        session.exec(
            select(InteropCertificateRecord.id)
            .where(InteropCertificateRecord.ca_key == ca_key_hex)
            .where(InteropCertificateRecord.serial == serial)
        ).first()
        is not None
    )


def _void_subject(ca_index: int, serial: int) -> str:
    return f"ca {ca_index} serial {serial}"


def voided(session: Session, ca_key_hex: str, ca_index: int, serial: int) -> bool:
    """Whether a ``qr.serial-void`` entry already names this CA key's serial."""
    rows = session.exec(
        select(AuditEvent.details)
        .where(AuditEvent.action == ACTION_VOID)
        .where(AuditEvent.subject == _void_subject(ca_index, serial))
    ).all()
    return any(json.loads(d or "{}").get("ca_key") == ca_key_hex for d in rows)


def void_serial(
    session: Session, ca_key_hex: str, ca_index: int, serial: int, *, actor: str, now: int, why: str
) -> bool:
    """Record that ``serial`` of the CA key was reserved and no certificate stored under it
    (audit ``qr.serial-void``); it stays used (the counter is past it). False when it was
    voided already (recovery run twice)."""
    if voided(session, ca_key_hex, ca_index, serial):
        return False
    audit.append(
        session,
        actor=actor,
        action=ACTION_VOID,
        subject=_void_subject(ca_index, serial),
        details={"ca_key": ca_key_hex, "ca_index": ca_index, "serial": serial, "why": why},
        at=now,
    )
    return True


def recover(engine: Engine, intent: IntentRef, *, actor: str, now: int) -> None:
    """Recovery of a ``qr.issue`` intent whose process died (``ca.service.issuance``
    registers it): the certificate stored (the intent was completed with it, so only a
    recovery cut short finds that) is rolled forward; otherwise the serial is voided and the
    intent rolled back. Nothing is signed again: a certificate never stored never left the
    service."""
    plan = intent.plan
    ca_key_hex, ca_index, serial = str(plan["ca_key"]), int(plan["ca_index"]), int(plan["serial"])
    with transaction(engine) as session:
        if _stored(session, ca_key_hex, serial):
            intents.settle(
                session,
                intent,
                state=intents.ROLLED_FORWARD,
                outcome=f"serial {serial} was stored",
                now=now,
                actor=actor,
                details={"ca_key": ca_key_hex, "serial": serial},
            )
            return
        void_serial(
            session,
            ca_key_hex,
            ca_index,
            serial,
            actor=actor,
            now=now,
            why=f"the issuing process died before the certificate was stored (intent {intent.id})",
        )
        intents.settle(
            session,
            intent,
            state=intents.ROLLED_BACK,
            outcome=f"serial {serial} voided: no certificate was stored under it",
            now=now,
            actor=actor,
            details={"ca_key": ca_key_hex, "ca_index": ca_index, "serial": serial},
        )


def issue(
    engine: Engine, request: InteropCertRequest, ctx: IssueContext
) -> InteropCertificateRecord:
    """Policy, serial, token signature, storage and audit: the whole issuance."""
    ctx.authorize(ACTION_ISSUE, request)
    with Session(engine) as session:
        active_issuer(session, request.issuer_id)  # registered and active, or refused
    ca_key_hex = ctx.ca_signer.public_key.compressed.hex()
    serial, intent = reserve_serial(
        engine,
        ca_key_hex,
        ctx.ca_index,
        actor=ctx.actor,
        now=ctx.now,
        plan={"issuer_id": request.issuer_id, "key_uri": ctx.ca_signer.key_uri},
    )
    crash_point(f"{OPERATION}:after-reserve")
    try:
        record = _sign_and_store(engine, request, ctx, ca_key_hex, serial, intent)
    except BaseException as exc:
        _void_failed(engine, ctx, ca_key_hex, serial, intent, exc)
        raise
    crash_point(f"{OPERATION}:after-record")
    return record


def _void_failed(
    engine: Engine,
    ctx: IssueContext,
    ca_key_hex: str,
    serial: int,
    intent: IntentRef,
    error: BaseException,
) -> None:
    """A clean failure between the reservation and the record: the serial voided and the
    intent rolled back by its own run (a crash is recovery's, ``recover``)."""
    why = f"issuance failed before the certificate was stored: {error}"[:500]
    try:
        with transaction(engine) as session:
            found = intents.get(session, intent.id)
            if found is None or found.state != intents.OPEN:
                return
            if _stored(session, ca_key_hex, serial):
                return
            void_serial(
                session, ca_key_hex, ctx.ca_index, serial, actor=ctx.actor, now=ctx.now, why=why
            )
        intents.abandon(engine, intent.id, now=ctx.now, outcome=f"serial {serial} voided")
    except Exception:  # the failure being raised is the one to report; recovery voids it later
        return


def _sign_and_store(
    engine: Engine,
    request: InteropCertRequest,
    ctx: IssueContext,
    ca_key_hex: str,
    serial: int,
    intent: IntentRef,
) -> InteropCertificateRecord:
    certificate: InteropCertificate = issue_interop_certificate(
        ctx.ca_signer,
        ca_index=ctx.ca_index,
        issuer_id=request.issuer_id,
        expiry=request.requested_expiry,
        serial=serial,
        issuer_public_key=request.public_key,
    )
    crash_point(f"{OPERATION}:after-sign")
    encoded = certificate.encode()  # annex §三(五): the bytes the issuer receives
    record = InteropCertificateRecord(
        ca_index=ctx.ca_index,
        ca_key=ca_key_hex,
        serial=serial,
        issuer_id=request.issuer_id,
        expiry=request.requested_expiry,
        issuer_public_key=request.public_key.compressed.hex(),
        encoded=encoded.hex(),
        issued_at=ctx.now,
        issued_by=ctx.actor,
    )
    with transaction(engine) as session:
        session.add(record)
        session.flush()
        audit.append(
            session,
            actor=ctx.actor,
            action=ACTION_ISSUE,
            subject=f"issuer {request.issuer_id} serial {serial}",
            kind="certificate",  # issue #13: the certificate's bytes are in the log by digest
            object_sm3=sm3(encoded).hex(),
            details={
                "ca_index": ctx.ca_index,
                "ca_key": ca_key_hex,
                "serial": serial,
                "issuer_name": request.issuer_name,
                "expiry": request.requested_expiry,
                "issuer_public_key": record.issuer_public_key,
                "certificate": record.encoded,
                "key_uri": ctx.ca_signer.key_uri,
                "signing_path": ctx.ca_signer.path.value,
            },
            at=ctx.now,
        )
        intents.complete(session, intent.id, now=ctx.now, outcome=f"serial {serial} issued")
        session.refresh(record)
        session.expunge(record)
    return record


def revoke(
    engine: Engine, *, ca_key_hex: str, serial: int, reason: str, actor: str, now: int
) -> InteropCertificateRecord:
    if not reason.strip():
        raise IssuanceError("a revocation needs a reason")
    with transaction(engine) as session:
        record = session.exec(
            select(InteropCertificateRecord)
            .where(InteropCertificateRecord.ca_key == ca_key_hex)
            .where(InteropCertificateRecord.serial == serial)
            .with_for_update()
        ).one_or_none()
        if record is None:
            raise IssuanceError(f"no interop certificate with serial {serial} under that CA key")
        if record.status == "revoked":
            raise IssuanceError(f"serial {serial} was already revoked ({record.revocation_reason})")
        record.status, record.revoked_at, record.revocation_reason = "revoked", now, reason
        session.add(record)
        audit.append(
            session,
            actor=actor,
            action=ACTION_REVOKE,
            subject=f"issuer {record.issuer_id} serial {serial}",
            details={"ca_key": ca_key_hex, "reason": reason},
            at=now,
        )
        session.flush()
        session.expunge(record)
        return record


def certificates(session: Session, issuer_id: str | None = None) -> list[InteropCertificateRecord]:
    query = select(InteropCertificateRecord).order_by(InteropCertificateRecord.id)  # type: ignore[arg-type]
    if issuer_id is not None:
        query = query.where(InteropCertificateRecord.issuer_id == issuer_id)
    return list(session.exec(query))


def ca_keys(session: Session) -> list[CaKey]:
    """The central CA keys, by CA public key index."""
    return list(session.exec(select(CaKey).order_by(col(CaKey.ca_index))))


def active_ca_key(session: Session, ca_index: int) -> CaKey:
    """The active central CA key at ``ca_index`` (the one that issues under that index)."""
    key = session.exec(
        select(CaKey).where(CaKey.ca_index == ca_index).where(CaKey.status == "active")
    ).first()
    if key is None:
        raise BadInput(f"--ca-index {ca_index}: no active central CA key has that index")
    return key


def certificate_at(session: Session, ca_index: int, serial: int) -> InteropCertificateRecord:
    """The interop certificate with ``serial`` under the central CA key at ``ca_index``, in one
    query (the CA keys at that index, each with its certificate of that serial, if any). A
    serial is unique per CA key; the index names the key (annex 中心CA公钥索引)."""
    rows = session.exec(
        select(CaKey.public_key, InteropCertificateRecord)
        .outerjoin(
            InteropCertificateRecord,
            (col(InteropCertificateRecord.ca_key) == col(CaKey.public_key))
            & (col(InteropCertificateRecord.serial) == serial),
        )
        .where(CaKey.ca_index == ca_index)
        .order_by(col(CaKey.created_at).desc())
    ).all()
    if not rows:
        raise BadInput(f"--ca-index {ca_index}: no central CA key has that index")
    for _, record in rows:
        if record is not None:
            return record
    raise BadInput(f"--serial {serial}: no interop certificate under CA index {ca_index}")


def revoke_at(
    engine: Engine, *, ca_index: int, serial: int, reason: str, actor: str, now: int
) -> InteropCertificateRecord:
    """Revoke the interop certificate named by CA index and serial (``certificate_at``)."""
    with Session(engine) as session:
        found = certificate_at(session, ca_index, serial)
        ca_key_hex = found.ca_key
    return revoke(engine, ca_key_hex=ca_key_hex, serial=serial, reason=reason, actor=actor, now=now)
