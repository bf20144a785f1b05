"""The tamper-evident audit log: a hash chain of events, checkpoints signed in the token.

Every state change calls ``append`` inside its own transaction, so the change and its event
commit together or not at all. Each event's hash is ``SM3(prev_hash ‖ canonical content)``;
the single-row head is locked while appending, so the chain has one writer at a time on
PostgreSQL (row lock) and on SQLite (the write transaction begins immediately).

``verify`` walks the chain and names every edited, deleted, inserted or reordered row;
checkpoints (the head at a sequence number, signed by the audit key) catch a rewrite of the
whole chain and a cut-off tail before the last checkpoint. ``export_bundle`` writes a file that
``verify_bundle`` checks without the database. Retention (第二十九条: at least 10 years): jtca
has no way to delete an event at all; a deleted row is a finding of ``verify``. Archiving is an
export, never a delete. The hashing and the verification of plain rows are pure and live in
``ca.audit_chain`` (an auditor verifies a bundle with no database); they are re-exported here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlmodel import Session, col, select

from ca.audit_chain import (  # the chain's pure part, re-exported
    BUNDLE_FORMAT,
    GENESIS,
    AuditError,
    Finding,
    VerifyReport,
    canonical,
    checkpoint_message,
    event_hash,
    trusted_keys,
    verify_bundle,
    verify_chain,
)
from ca.errors import BadInput
from ca.store.models import AuditCheckpoint, AuditEvent, AuditHead, KeyRecord
from hsm.signer import Signer
from hsm.sm.sm2 import SM2PublicKey

__all__ = [
    "BUNDLE_FORMAT",
    "GENESIS",
    "AuditError",
    "Finding",
    "VerifyReport",
    "active_audit_key",
    "append",
    "canonical",
    "checkpoint",
    "checkpoint_message",
    "event_hash",
    "export_bundle",
    "trusted_keys",
    "verify",
    "verify_bundle",
    "verify_chain",
]


def append(
    session: Session,
    *,
    actor: str,
    action: str,
    subject: str,
    details: dict[str, Any] | None = None,
    at: int,
) -> AuditEvent:
    """Add an event to the chain in the caller's transaction (it commits with the change)."""
    if not actor or not action:
        raise AuditError("an audit event needs an actor and an action")
    head = session.exec(select(AuditHead).where(AuditHead.id == 1).with_for_update()).one()
    text = canonical(details or {})
    seq = head.seq + 1
    digest = event_hash(head.hash, seq, at, actor, action, subject, text)
    event = AuditEvent(
        seq=seq,
        at=at,
        actor=actor,
        action=action,
        subject=subject,
        details=text,
        prev_hash=head.hash,
        hash=digest,
    )
    head.seq, head.hash = seq, digest
    session.add(event)
    session.add(head)
    session.flush()
    return event


def checkpoint(
    session: Session, signer: Signer, *, at: int, actor: str = "jtca"
) -> AuditCheckpoint:
    """Sign the current head with the audit key (and audit that it was signed, by ``actor``:
    the officer who asked, or the ceremony's own ``jtca``)."""
    head = session.exec(select(AuditHead).where(AuditHead.id == 1).with_for_update()).one()
    signature = signer.sign(checkpoint_message(head.seq, head.hash, at))
    record = AuditCheckpoint(
        seq=head.seq,
        hash=head.hash,
        at=at,
        key_uri=signer.key_uri,
        public_key=signer.public_key.compressed.hex(),
        signing_path=signer.path.value,
        signature=signature.hex(),
    )
    session.add(record)
    session.flush()
    append(
        session,
        actor=actor,
        action="audit.checkpoint",
        subject=f"seq {head.seq}",
        details={"hash": head.hash, "key": signer.key_uri, "path": signer.path.value},
        at=at,
    )
    return record


def _event_dict(e: AuditEvent) -> dict[str, Any]:
    return {
        "seq": e.seq,
        "at": e.at,
        "actor": e.actor,
        "action": e.action,
        "subject": e.subject,
        "details": e.details,
        "prev_hash": e.prev_hash,
        "hash": e.hash,
    }


def _checkpoint_dict(c: AuditCheckpoint) -> dict[str, Any]:
    return {
        "seq": c.seq,
        "hash": c.hash,
        "at": c.at,
        "key_uri": c.key_uri,
        "public_key": c.public_key,
        "signing_path": c.signing_path,
        "signature": c.signature,
    }


def verify(
    session: Session, trusted_audit_keys: Sequence[SM2PublicKey] | None = None
) -> VerifyReport:
    head = session.exec(select(AuditHead).where(AuditHead.id == 1)).one()
    events = (
        _event_dict(e) for e in session.exec(select(AuditEvent).order_by(col(AuditEvent.seq)))
    )
    checkpoints = [
        _checkpoint_dict(c)
        for c in session.exec(select(AuditCheckpoint).order_by(col(AuditCheckpoint.seq)))
    ]
    return verify_chain(
        events, checkpoints, head=(head.seq, head.hash), trusted_audit_keys=trusted_audit_keys
    )


def export_bundle(session: Session) -> bytes:
    """Every event and checkpoint, and the head, in one JSON file ``verify_bundle`` checks."""
    head = session.exec(select(AuditHead).where(AuditHead.id == 1)).one()
    bundle = {
        "format": BUNDLE_FORMAT,
        "head": {"seq": head.seq, "hash": head.hash},
        "events": [
            _event_dict(e) for e in session.exec(select(AuditEvent).order_by(col(AuditEvent.seq)))
        ],
        "checkpoints": [
            _checkpoint_dict(c)
            for c in session.exec(select(AuditCheckpoint).order_by(col(AuditCheckpoint.seq)))
        ],
    }
    return json.dumps(bundle, ensure_ascii=False, indent=1).encode("utf-8")


def active_audit_key(session: Session) -> KeyRecord:
    """The audit key's record (made by the root ceremony); refused when there is none yet."""
    record = session.exec(
        select(KeyRecord).where(KeyRecord.key_class == "audit").where(KeyRecord.state == "active")
    ).first()
    if record is None:
        raise BadInput("no audit key: run the root ceremony first")
    return record
