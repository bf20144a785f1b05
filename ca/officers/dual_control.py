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

Issue #12: a request that opens a pending subject is kept exactly as the officer signed it
(``bind_request``, from the ``serving`` request the HTTP adapter verified), and a decision
served by the authority carries the approver's token signature over a statement naming the
SM3 of that request (``signed_decision``, verified by ``ca.service.approvals``): the Approval
row and the decision's audit event keep statement, signature and certificate serial.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from ca.core.errors import JtcaError
from ca.store.models import Approval, PendingRequest

MAX_REASON: Final = 400


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """The verified, signed request the authority is serving (set by the HTTP adapter)."""

    officer: str
    operation: str
    body: bytes
    digest: str  # hex SM3 of body
    session_id: str
    signature: str  # the Jtca-Signature header
    at: int


@dataclass(frozen=True, slots=True)
class SignedDecision:
    """An approver's verified signature over ``ca.officers.statements.approval_statement``."""

    subject: str
    officer: str
    approve: bool
    statement: str
    signature_der: bytes
    certificate_serial: int
    request_digest: str

    def evidence(self) -> dict[str, Any]:
        import base64

        return {
            "statement": self.statement,
            "signature": base64.b64encode(self.signature_der).decode(),
            "certificate_serial": self.certificate_serial,
            "request_sm3": self.request_digest,
        }


serving: ContextVar[SignedRequest | None] = ContextVar("serving", default=None)
signed_decision: ContextVar[SignedDecision | None] = ContextVar("signed_decision", default=None)


@contextmanager
def deciding(decision: SignedDecision) -> Iterator[None]:
    token = signed_decision.set(decision)
    try:
        yield
    finally:
        signed_decision.reset(token)


def bind_request(session: Session, subject: str) -> None:
    """Keep the request being served as the one that opened ``subject`` (same transaction)."""
    request = serving.get()
    if request is None:
        return
    session.add(
        PendingRequest(
            subject=subject,
            officer_id=request.officer,
            operation=request.operation,
            body=request.body,
            digest=request.digest,
            session_id=request.session_id,
            signature=request.signature,
            at=request.at,
        )
    )


@dataclass(frozen=True, slots=True)
class Decided:
    approvers: tuple[str, ...]  # who has approved so far, in order
    state: str  # pending | approved | rejected
    reason: str  # the decision's reason, stripped
    evidence: dict[str, Any] = field(default_factory=dict)  # the signed decision, for audit


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
    signed = signed_decision.get()
    if signed is not None and (
        signed.subject != subject or signed.officer != approver or signed.approve != approve
    ):
        raise error(
            f"the signed decision is for {signed.subject} by {signed.officer}, "
            f"not for {subject} by {approver}"
        )
    session.add(
        Approval(
            subject=subject,
            approver=approver,
            decision="approve" if approve else "reject",
            reason=reason,
            at=now,
            statement=signed.statement if signed else None,
            signature=signed.signature_der if signed else None,
            certificate_serial=signed.certificate_serial if signed else None,
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
    return Decided(approvers, state, reason, signed.evidence() if signed else {})
