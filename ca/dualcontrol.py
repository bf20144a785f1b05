"""Dual control (双人控制): one officer asks, others decide. The one place a decision on a
pending subject is recorded — an application, a key action, an emergency publication — so the
rules are the same everywhere:

- the requester never decides on their own request;
- each officer decides once (a unique row per subject and officer: two concurrent clicks by the
  same officer cannot both count);
- a rejection needs a reason; any reason is at most ``MAX_REASON`` characters;
- one rejection rejects; the request is approved once ``required`` distinct officers approved.

The caller locks the subject's row, checks the officer's policy scope, then records here in
the same transaction, and audits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from ca.errors import JtcaError
from ca.store.models import Approval

MAX_REASON: Final = 400


@dataclass(frozen=True, slots=True)
class Decided:
    approvers: tuple[str, ...]  # who has approved so far, in order
    state: str  # pending | approved | rejected
    reason: str  # the decision's reason, stripped


def check_reason(reason: str, error: type[JtcaError]) -> str:
    reason = reason.strip()
    if len(reason) > MAX_REASON:
        raise error(f"reason: at most {MAX_REASON} characters, got {len(reason)}")
    return reason


def record_decision(
    session: Session,
    *,
    subject: str,
    approver: str,
    requester: str,
    approve: bool,
    reason: str,
    required: int,
    now: int,
    error: type[JtcaError],
    own_request: str = "dual control: the requester cannot approve their own request",
) -> Decided:
    """Record ``approver``'s decision on ``subject``; raise ``error`` for a refused one."""
    if approver == requester:
        raise error(own_request)
    reason = check_reason(reason, error)
    if not approve and not reason:
        raise error("a rejection needs a reason")
    session.add(
        Approval(
            subject=subject,
            approver=approver,
            decision="approve" if approve else "reject",
            reason=reason,
            at=now,
        )
    )
    try:
        session.flush()
    except IntegrityError:
        raise error(f"{approver} has already decided on {subject}") from None
    approvers = tuple(
        session.exec(
            select(Approval.approver)
            .where(Approval.subject == subject)
            .where(col(Approval.decision) == "approve")
            .order_by(col(Approval.id))
        )
    )
    if not approve:
        state = "rejected"
    elif len(approvers) >= max(required, 1):
        state = "approved"
    else:
        state = "pending"
    return Decided(approvers, state, reason)
