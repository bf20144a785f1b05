"""Use cases of the console area: the dashboard, the approvals awaiting an officer, the audit log
a page at a time (see ``ca.ops.console``). Officers sign in to the console as to the command
line, with their own token (``ca.service.auth``)."""

from __future__ import annotations

from typing import Final

from sqlmodel import Session, col, func, select

from ca.citykeys import applications, misuse, queries
from ca.citykeys.common import get_key
from ca.lists.asn1 import ListType
from ca.ops import console as ops
from ca.ops.base import Empty
from ca.ops.city import KeySummary
from ca.policy.authorization import granted
from ca.publish import acks, emergency, publisher
from ca.service.city import key_view
from ca.service.context import Context
from ca.service.registry import handles
from ca.store.models import AuditEvent, CeremonyRun, OfficerEnrolment, PendingAction
from policies.rules import Action, Actor


# -- approvals ----------------------------------------------------------------------------------
def pending_for(session: Session, actor: Actor) -> list[ops.PendingItem]:
    """Applications, key actions, emergency publications and officer enrolments awaiting a
    decision ``actor`` may give: never their own requests (nor their own enrolment), a
    province's officer only for their province's keys. ``subject`` is what the decision's
    signature names (``ca.officers.statements.approval_statement``)."""
    may = granted(actor)
    items: list[ops.PendingItem] = []
    if applications.APPROVE in may:
        for app in applications.pending(session, actor.province):
            if app.applicant != actor.id:
                items.append(
                    ops.PendingItem(
                        kind="application",
                        id=app.id or 0,
                        subject=f"application {app.id}",
                        what=f"key sets for {app.cities}",
                        by=app.applicant,
                        at=app.created_at,
                        reason="",
                    )
                )
    for action in misuse.pending_actions(session):
        if action.requested_by == actor.id or action.action not in may:
            continue
        keys = [get_key(session, int(k), lock=False) for k in action.key_ids.split(",") if k]
        if actor.province is not None and any(k.province != actor.province for k in keys):
            continue
        items.append(
            ops.PendingItem(
                kind="action",
                id=action.id or 0,
                subject=f"action {action.id}",
                what=f"{action.action} of " + ", ".join(k.label for k in keys),
                by=action.requested_by,
                at=action.requested_at,
                reason=action.reason,
            )
        )
    if emergency.EMERGENCY in may:
        for request in session.exec(
            select(PendingAction)
            .where(PendingAction.action == emergency.EMERGENCY)
            .where(PendingAction.state == "pending")
            .order_by(col(PendingAction.id))
        ):
            if request.requested_by != actor.id:
                items.append(
                    ops.PendingItem(
                        kind="emergency",
                        id=request.id or 0,
                        subject=f"action {request.id}",
                        what="emergency publication of every list",
                        by=request.requested_by,
                        at=request.requested_at,
                        reason=request.reason,
                    )
                )
    if Action.OFFICER_APPROVE in may:
        for enrolment in session.exec(
            select(OfficerEnrolment)
            .where(OfficerEnrolment.state == "pending")
            .order_by(col(OfficerEnrolment.id))
        ):
            if actor.id in (enrolment.requested_by, enrolment.officer_id):
                continue
            where = f" of {enrolment.province}" if enrolment.province else ""
            items.append(
                ops.PendingItem(
                    kind="enrolment",
                    id=enrolment.id or 0,
                    subject=f"enrolment {enrolment.id}",
                    what=f"certify {enrolment.officer_id}'s token key ({enrolment.roles}{where})",
                    by=enrolment.requested_by,
                    at=enrolment.requested_at,
                    reason="",
                )
            )
    return items


@handles(ops.PENDING)
def pending(ctx: Context, _req: Empty) -> ops.Pending:
    actor = ctx.actor()
    with Session(ctx.engine) as session:
        return ops.Pending(items=pending_for(session, actor))


# -- dashboard ----------------------------------------------------------------------------------
@handles(ops.DASHBOARD)
def dashboard(ctx: Context, _req: Empty) -> ops.Dashboard:
    actor = ctx.actor()
    now = ctx.now()
    with Session(ctx.engine) as session:
        counts = queries.summary(session, now=now, province=actor.province)
        freshness = []
        for list_type in ListType:
            latest = publisher.latest(session, list_type)
            freshness.append(
                ops.ListFreshness(
                    list_type=list_type.value,
                    sequence=latest.sequence if latest else None,
                    next_update=latest.next_update if latest else None,
                    stale=latest is None or now > latest.next_update,
                )
            )
        overdue = acks.overdue(session, now=now)
        waiting = pending_for(session, actor)
    states = {k.removeprefix("state_"): v for k, v in counts.items() if k.startswith("state_")}
    return ops.Dashboard(
        now=now,
        keys=KeySummary(
            total=counts["total"],
            expiring_30=counts["expiring_30"],
            expiring_90=counts["expiring_90"],
            renewal_due=counts["renewal_due"],
            dormant=counts["dormant"],
            suspended=counts["suspended"],
            violations=counts["violations"],
            states=states,
        ),
        lists=freshness,
        overdue_acks=len(overdue),
        pending_approvals=len(waiting),
    )


# -- audit --------------------------------------------------------------------------------------
@handles(ops.AUDIT_PAGE)
def audit_page(ctx: Context, req: ops.AuditPageRequest) -> ops.AuditPage:
    ctx.actor()
    with Session(ctx.engine) as session:
        wanted = []  # the filters: the count of what they match, and the page
        if req.action:
            wanted.append(col(AuditEvent.action).contains(req.action))
        if req.actor:
            wanted.append(col(AuditEvent.actor).contains(req.actor))
        if req.subject:
            wanted.append(col(AuditEvent.subject).contains(req.subject))
        if req.since is not None:
            wanted.append(col(AuditEvent.at) >= req.since)
        if req.until is not None:
            wanted.append(col(AuditEvent.at) < req.until)
        query = select(AuditEvent).where(*wanted)
        if req.before is not None:
            query = query.where(col(AuditEvent.seq) < req.before)
        rows = session.exec(query.order_by(col(AuditEvent.seq).desc()).limit(req.size)).all()
        total = int(session.exec(select(func.count()).select_from(AuditEvent)).one())
        matching = int(
            session.exec(select(func.count()).select_from(AuditEvent).where(*wanted)).one()
        )
        return ops.AuditPage(
            events=[
                ops.AuditEventView(
                    seq=e.seq,
                    at=e.at,
                    actor=e.actor,
                    action=e.action,
                    subject=e.subject,
                    details=e.details,
                    kind=e.kind,
                    object_sm3=e.object_sm3,
                    leaf_hash=e.leaf_hash,
                    sealed=e.seal is not None,
                )
                for e in rows
            ],
            total=total,
            matching=matching,
        )


# -- cleanup ------------------------------------------------------------------------------------
@handles(ops.CLEANUP)
def cleanup(ctx: Context, _req: Empty) -> ops.CleanupView:
    actor = ctx.actor()
    now = ctx.now()
    with Session(ctx.engine) as session:
        dormant = misuse.dormant_keys(session, now, actor.province)
        due = misuse.destroy_due(session, now, actor.province)
        return ops.CleanupView(
            dormant=[key_view(k, now) for k in dormant],
            destroy_due=[key_view(k, now) for k in due],
        )


# -- ceremonies ---------------------------------------------------------------------------------
@handles(ops.CEREMONIES)
def ceremonies(ctx: Context, _req: Empty) -> ops.CeremonyRuns:
    ctx.actor()
    with Session(ctx.engine) as session:
        rows = session.exec(select(CeremonyRun).order_by(col(CeremonyRun.at))).all()
        return ops.CeremonyRuns(
            runs=[
                ops.CeremonyRunView(name=r.name, kind=r.kind, file_sha256=r.file_sha256, at=r.at)
                for r in rows
            ]
        )


# -- emergency publication requests ---------------------------------------------------------------
EMERGENCY_SHOWN: Final = 50


@handles(ops.EMERGENCY_REQUESTS)
def emergency_requests(ctx: Context, _req: Empty) -> ops.EmergencyRequests:
    ctx.actor()
    with Session(ctx.engine) as session:
        rows = session.exec(
            select(PendingAction)
            .where(PendingAction.action == emergency.EMERGENCY)
            .order_by(col(PendingAction.id).desc())
            .limit(EMERGENCY_SHOWN)
        ).all()
        return ops.EmergencyRequests(
            requests=[
                ops.EmergencyRequestView(
                    id=r.id or 0,
                    state=r.state,
                    by=r.requested_by,
                    at=r.requested_at,
                    required=r.required,
                    reason=r.reason,
                )
                for r in rows
            ]
        )
