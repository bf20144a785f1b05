"""A province applies for its cities' key sets; the ministry approves under dual control.

第九条: provinces apply to the ministry for their prefecture-level cities' card and QR keys.
A provincial officer may apply only for cities of their own province (``deny/other-province``);
every city must be a city of the registry (地级市 or 直辖市). Approval needs the policy's number of
distinct approvers besides the applicant (``[dual_control] "city-key.approve"``); one rejection
rejects. Every step is audited in the transaction that makes it. Generating and delivering the
keys (the rest of #5) builds on an approved application.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from ca.core.errors import JtcaError
from ca.log import audit
from ca.officers.dual_control import bind_request, record_decision
from ca.policy.authorization import PolicyDenied
from ca.policy.in_force import load_policy
from ca.registry.divisions import default_divisions
from ca.store.db import transaction
from ca.store.models import KeyApplication
from policies.rules import Actor, Subject, decide

APPLY: Final = "city-key.apply"
APPROVE: Final = "city-key.approve"


class ApplicationError(JtcaError):
    title = "Key application"
    exit_code = 6


def _decide(actor: Actor, action: str, subject: Subject, now: int) -> int:
    decision = decide(load_policy(), actor, action, subject, datetime.fromtimestamp(now, UTC))
    if not decision.allowed:
        place = subject.city or subject.province or ""
        raise PolicyDenied(f"{decision.reason}: {actor.id} may not {action} {place}".rstrip())
    return decision.approvals_required


def apply(engine: Engine, actor: Actor, cities: list[str], now: int) -> KeyApplication:
    if not cities:
        raise ApplicationError("name at least one city")
    twice = sorted({c for c in cities if cities.count(c) > 1})
    if twice:
        raise ApplicationError(f"city {twice[0]} is named twice")
    registry = default_divisions()
    for city in cities:
        if registry.city(city) is None:
            raise ApplicationError(f"{city} is not a city of the registry (地级市 or 直辖市)")
        _decide(actor, APPLY, Subject(city=city), now)
    province = cities[0][:2] + "0000"
    with transaction(engine) as session:
        application = KeyApplication(
            province=province, cities=",".join(cities), applicant=actor.id, created_at=now
        )
        session.add(application)
        session.flush()
        audit.append(
            session,
            actor=actor.id,
            action=APPLY,
            subject=f"application {application.id}",
            details={"province": province, "cities": cities},
            at=now,
        )
        bind_request(session, f"application {application.id}")
        session.refresh(application)
        session.expunge(application)
        return application


def decide_application(
    engine: Engine, actor: Actor, application_id: int, *, approve: bool, now: int, reason: str = ""
) -> KeyApplication:
    """Record one officer's approval or rejection; the application is approved when the
    policy's number of distinct approvers (not the applicant) have approved."""
    subject_name = f"application {application_id}"
    with transaction(engine) as session:
        application = session.exec(
            select(KeyApplication).where(KeyApplication.id == application_id).with_for_update()
        ).one_or_none()
        if application is None:
            raise ApplicationError(f"no application {application_id}")
        if application.state != "pending":
            raise ApplicationError(f"application {application_id} is already {application.state}")
        if actor.id == application.applicant:  # said before any policy reason
            raise ApplicationError(
                "dual control: the applicant cannot approve their own application"
            )
        required = max(
            _decide(actor, APPROVE, Subject(city=c), now) for c in application.cities.split(",")
        )
        decided = record_decision(
            session,
            subject=subject_name,
            approver=actor.id,
            requester=application.applicant,
            approve=approve,
            reason=reason,
            required=required,
            now=now,
            error=ApplicationError,
            own_request="dual control: the applicant cannot approve their own application",
        )
        reason = decided.reason
        approvals = decided.approvers
        if decided.state != "pending":
            application.state, application.decided_at = decided.state, now
        session.add(application)
        audit.append(
            session,
            actor=actor.id,
            action=APPROVE if approve else "city-key.reject",
            subject=subject_name,
            details={
                **decided.evidence,
                "approvals": len(approvals),
                "required": max(required, 1),
                "state": application.state,
                "reason": reason,
            },
            at=now,
        )
        session.flush()
        session.refresh(application)
        session.expunge(application)
        return application


def pending(session: Session, province: str | None = None) -> list[KeyApplication]:
    query = select(KeyApplication).where(KeyApplication.state == "pending")
    if province is not None:
        query = query.where(KeyApplication.province == province)
    return list(session.exec(query.order_by(col(KeyApplication.id))))


def listing(
    session: Session, *, province: str | None = None, state: str | None = None
) -> list[KeyApplication]:
    """Applications, oldest first; only ``province``'s and in ``state`` when given."""
    query = select(KeyApplication)
    if province is not None:
        query = query.where(KeyApplication.province == province)
    if state is not None:
        query = query.where(KeyApplication.state == state)
    return list(session.exec(query.order_by(col(KeyApplication.id))))
