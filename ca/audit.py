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
export, never a delete.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from sqlmodel import Session, col, select

from ca.errors import JtcaError
from ca.store.models import AuditCheckpoint, AuditEvent, AuditHead
from hsm.errors import InvalidKey, InvalidSignature
from hsm.signer import Signer
from hsm.sm.sm2 import SM2PublicKey
from hsm.sm.sm3 import sm3

GENESIS: Final = "0" * 64
BUNDLE_FORMAT: Final = "jtca-audit-bundle/1"


class AuditError(JtcaError):
    title = "Audit log"
    exit_code = 8


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def event_hash(
    prev_hash: str, seq: int, at: int, actor: str, action: str, subject: str, details: str
) -> str:
    content = canonical([seq, at, actor, action, subject, details])
    return sm3(bytes.fromhex(prev_hash), content.encode("utf-8")).hex()


def checkpoint_message(seq: int, head_hash: str, at: int) -> bytes:
    return canonical(["jtca audit checkpoint", seq, head_hash, at]).encode("utf-8")


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


def checkpoint(session: Session, signer: Signer, *, at: int) -> AuditCheckpoint:
    """Sign the current head with the audit key (and audit that it was signed)."""
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
        actor="jtca",
        action="audit.checkpoint",
        subject=f"seq {head.seq}",
        details={"hash": head.hash, "key": signer.key_uri, "path": signer.path.value},
        at=at,
    )
    return record


# -- verification ------------------------------------------------------------------------------
@dataclass
class Finding:
    seq: int
    problem: str  # edited | deleted | inserted-or-reordered | bad-checkpoint | truncated | head

    message: str


@dataclass
class VerifyReport:
    events: int = 0
    checkpoints: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings


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


def verify_chain(
    events: Iterable[dict[str, Any]],
    checkpoints: Sequence[dict[str, Any]],
    *,
    head: tuple[int, str] | None = None,
    trusted_audit_keys: Sequence[SM2PublicKey] | None = None,
) -> VerifyReport:
    """Check a chain given as plain rows (from the database or a bundle)."""
    report = VerifyReport()
    expected_seq = 1
    previous_hash = GENESIS
    hashes: dict[int, str] = {0: GENESIS}
    for row in events:
        report.events += 1
        seq = int(row["seq"])
        if seq > expected_seq:
            missing = f"{expected_seq}" if seq == expected_seq + 1 else f"{expected_seq}-{seq - 1}"
            report.findings.append(
                Finding(expected_seq, "deleted", f"rows {missing} are missing before row {seq}")
            )
        recomputed = event_hash(
            row["prev_hash"],
            seq,
            int(row["at"]),
            row["actor"],
            row["action"],
            row["subject"],
            row["details"],
        )
        if recomputed != row["hash"]:
            report.findings.append(
                Finding(seq, "edited", f"row {seq} was edited: its content does not give its hash")
            )
        elif row["prev_hash"] != previous_hash and seq == expected_seq:
            report.findings.append(
                Finding(
                    seq,
                    "inserted-or-reordered",
                    f"row {seq} does not follow row {seq - 1}: a row was inserted, removed and "
                    "renumbered, or reordered here",
                )
            )
        hashes[seq] = row["hash"]
        previous_hash = row["hash"]
        expected_seq = seq + 1
    last_seq = expected_seq - 1
    if head is not None and head != (last_seq, previous_hash):
        report.findings.append(
            Finding(
                min(last_seq, head[0]) + 1,
                "head",
                f"the chain ends at row {last_seq} but its head records row {head[0]}: rows were "
                "cut off or the head was altered",
            )
        )
    trusted = {k.compressed.hex() for k in trusted_audit_keys or []}
    for cp in checkpoints:
        report.checkpoints += 1
        seq = int(cp["seq"])
        try:
            key = SM2PublicKey.from_bytes(bytes.fromhex(cp["public_key"]))
            if trusted and cp["public_key"] not in trusted:
                raise InvalidSignature("the checkpoint is signed by a key that is not trusted")
            key.verify(
                bytes.fromhex(cp["signature"]), checkpoint_message(seq, cp["hash"], int(cp["at"]))
            )
        except (InvalidSignature, InvalidKey, ValueError) as exc:
            report.findings.append(
                Finding(seq, "bad-checkpoint", f"checkpoint at row {seq} does not verify: {exc}")
            )
            continue
        if seq > last_seq:
            report.findings.append(
                Finding(
                    seq,
                    "truncated",
                    f"a signed checkpoint covers row {seq}, the chain ends at {last_seq}",
                )
            )
        elif hashes.get(seq) != cp["hash"]:
            report.findings.append(
                Finding(seq, "bad-checkpoint", f"row {seq} differs from what the checkpoint signed")
            )
    return report


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


def verify_bundle(
    data: bytes, trusted_audit_keys: Sequence[SM2PublicKey] | None = None
) -> VerifyReport:
    try:
        bundle = json.loads(data)
        if bundle.get("format") != BUNDLE_FORMAT:
            raise ValueError(f"format is not {BUNDLE_FORMAT}")
        head = (int(bundle["head"]["seq"]), str(bundle["head"]["hash"]))
        events, checkpoints = list(bundle["events"]), list(bundle["checkpoints"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise AuditError(f"not a jtca audit bundle: {exc}") from None
    return verify_chain(events, checkpoints, head=head, trusted_audit_keys=trusted_audit_keys)
