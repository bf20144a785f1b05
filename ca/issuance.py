"""The central QR CA issuing interop certificates to QR issuers, and revoking them.

Serials are unique per CA key and never reused, not after a crash and not under concurrent
issuance: a serial is allocated in its own committed transaction (the counter row locked, the
allocation audited) before anything is signed, so a crash after allocation leaves a gap, never a
second certificate with the same serial; a unique constraint on (CA key, serial) backs it up.
The certificate is then signed with the CA key in the token and stored with its audit event in
one transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from ca import audit
from ca.errors import BadInput, JtcaError
from ca.qr.codec import MAX_UINT24, InteropCertificate
from ca.qr.issue import issue_interop_certificate
from ca.registry.issuers import active_issuer
from ca.requests import InteropCertRequest
from ca.store.db import transaction
from ca.store.models import CaKey, InteropCertificateRecord, SerialCounter
from hsm.signer import Signer
from hsm.sm.sm3 import sm3

ACTION_ISSUE: Final = "qr-ca.issue-interop-cert"
ACTION_REVOKE: Final = "qr-ca.revoke-interop-cert"


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


def issue(
    engine: Engine, request: InteropCertRequest, ctx: IssueContext
) -> InteropCertificateRecord:
    """Policy, serial, token signature, storage and audit: the whole issuance."""
    ctx.authorize(ACTION_ISSUE, request)
    with Session(engine) as session:
        active_issuer(session, request.issuer_id)  # registered and active, or refused
    ca_key_hex = ctx.ca_signer.public_key.compressed.hex()
    serial = allocate_serial(engine, ca_key_hex, ctx.ca_index, actor=ctx.actor, now=ctx.now)
    certificate: InteropCertificate = issue_interop_certificate(
        ctx.ca_signer,
        ca_index=ctx.ca_index,
        issuer_id=request.issuer_id,
        expiry=request.requested_expiry,
        serial=serial,
        issuer_public_key=request.public_key,
    )
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
