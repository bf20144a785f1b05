"""Emergency publication outside the schedule (第三十四条), under dual control.

An emergency publisher asks with a reason; the policy's number of other emergency publishers
(``[dual_control] "list.emergency-publish"``) approve; on the last approval every list is
published at once, whether its content changed or not. The request, each decision and the
publication are audited; an approved request that could not be published (the token was
unreachable, say) stays ``approved`` and is run again with ``jtca publish emergency N``.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy.engine import Engine
from sqlmodel import select

from ca.core.errors import JtcaError
from ca.core.vocabulary import request_ref
from ca.log import audit
from ca.officers.dual_control import bind_request, record_decision
from ca.policy.authorization import require
from ca.policy.in_force import load_policy
from ca.store.db import transaction
from ca.store.models import PendingAction
from policies.rules import Actor, Subject

EMERGENCY: Final = "list.emergency-publish"


class EmergencyError(JtcaError):
    title = "Emergency publication"
    exit_code = 6


def request(engine: Engine, actor: Actor, *, reason: str, now: int) -> PendingAction:
    require(actor, EMERGENCY, Subject(), now)
    if not reason.strip():
        raise EmergencyError("an emergency publication needs a reason")
    required = load_policy().approvals_required(EMERGENCY)
    with transaction(engine) as session:
        row = PendingAction(
            action=EMERGENCY,
            key_ids="",
            reason=reason.strip(),
            requested_by=actor.id,
            requested_at=now,
            required=required,
            state="pending" if required else "approved",
        )
        session.add(row)
        session.flush()
        audit.append(
            session,
            actor=actor.id,
            action=f"{EMERGENCY}.request",
            subject=f"action {row.id}",
            details={"reason": row.reason, "approvers_required": required},
            at=now,
        )
        bind_request(session, f"action {row.id}")
        session.refresh(row)
        session.expunge(row)
        return row


def decide(
    engine: Engine, actor: Actor, action_id: int, *, approve: bool, now: int, reason: str = ""
) -> PendingAction:
    require(actor, EMERGENCY, Subject(), now)
    subject = f"action {action_id}"
    with transaction(engine) as session:
        row = session.exec(
            select(PendingAction).where(PendingAction.id == action_id).with_for_update()
        ).one_or_none()
        if row is None or row.action != EMERGENCY:
            raise EmergencyError(f"no emergency publication {request_ref(action_id)}")
        if row.state != "pending":
            raise EmergencyError(f"{request_ref(action_id)} is already {row.state}")
        decided = record_decision(
            session,
            subject=subject,
            approver=actor.id,
            requester=row.requested_by,
            approve=approve,
            reason=reason,
            required=row.required,
            now=now,
            error=EmergencyError,
        )
        approvals = decided.approvers
        if decided.state != "pending":
            row.state = decided.state
        row.decided_at = now
        session.add(row)
        audit.append(
            session,
            actor=actor.id,
            action=f"{EMERGENCY}.{'approve' if approve else 'reject'}",
            subject=subject,
            details={
                **decided.evidence,
                "approvals": len(approvals),
                "required": row.required,
                "state": row.state,
            },
            at=now,
        )
        session.flush()
        session.refresh(row)
        session.expunge(row)
        return row


def approved(engine: Engine, action_id: int) -> PendingAction:
    with transaction(engine) as session:
        row = session.get(PendingAction, action_id)
        if row is None or row.action != EMERGENCY:
            raise EmergencyError(f"no emergency publication {request_ref(action_id)}")
        if row.state != "approved":
            raise EmergencyError(f"{request_ref(action_id)} is {row.state}, not approved")
        session.expunge(row)
        return row


def mark_done(
    engine: Engine, action_id: int, actor: Actor, sequences: dict[str, int], now: int
) -> None:
    with transaction(engine) as session:
        row = session.exec(
            select(PendingAction).where(PendingAction.id == action_id).with_for_update()
        ).one()
        row.state, row.decided_at = "done", now
        session.add(row)
        audit.append(
            session,
            actor=actor.id,
            action=f"{EMERGENCY}.done",
            subject=f"action {action_id}",
            details={"published": sequences},
            at=now,
        )
