"""``log_intact(session)``: the database's Merkle log verified as ``jtca audit verify`` does it,
against a checkpoint of its whole tree signed here by a throwaway audit key (tests that only
need to know every entry still gives its leaf hash, the stored subtrees fit and the sequence
has no gap)."""

from __future__ import annotations

from sqlmodel import Session

from ca.log import audit
from ca.log.note import Checkpoint, sign_checkpoint
from ca.log.verify import Report
from hsm.signer import SoftwareSigner
from hsm.sm.sm2 import raw_to_der


def log_report(session: Session) -> Report:
    key = SoftwareSigner.generate()
    size = audit.tree_size(session)
    note = sign_checkpoint(
        Checkpoint("test", size, audit.root(session, size)),
        "test",
        key.public_key,
        lambda message: raw_to_der(key.sign(message)),
    )
    return audit.verify(
        session,
        checkpoints=[("test checkpoint", note.text().encode())],
        audit_keys=[key.public_key],
    )


def log_intact(session: Session) -> bool:
    report = log_report(session)
    assert report.ok, report.findings
    return True
