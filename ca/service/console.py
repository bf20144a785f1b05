"""Use cases of the console area: sign-in, the dashboard, the approvals awaiting an officer, the
audit log a page at a time (see ``ca.ops.console``).

Signing in: a registered, active officer proves themselves with the PIN of a token they hold —
their province's key token for a provincial officer, the ministry key token otherwise — or with
the custodians' quorum of shares of the ministry root token. The service holds the tokens: the
PIN is checked by logging in to the token itself, and every attempt, good or bad, is audited
(never the secret). A refusal does not say which part was wrong.
"""

from __future__ import annotations

from typing import Final

from sqlmodel import Session, col, func, select

from ca import applications, audit
from ca.citykeys import misuse, queries
from ca.citykeys.common import MINISTRY, get_key
from ca.errors import JtcaError
from ca.lists.asn1 import ListType
from ca.officers import OfficerError, actor_of
from ca.ops import console as ops
from ca.ops.base import Empty
from ca.ops.city import KeySummary
from ca.publish import acks, emergency, publisher
from ca.service.city import key_view
from ca.service.context import Context
from ca.service.registry import handles
from ca.signing import load_policy
from ca.store.db import transaction
from ca.store.models import AuditEvent, CeremonyRun, Officer, PendingAction, TransportKey
from hsm.pkcs11.uri import Pkcs11Uri
from policies.rules import Actor

SIGN_IN: Final = "console.sign-in"  # the audit action (``….refused`` for a refusal)
REFUSED: Final = "unknown officer or wrong PIN"


class SignInRefused(JtcaError):
    title = "Sign-in refused"
    exit_code = 6


class _FixedPin:
    """The PIN typed at sign-in, handed to the token once."""

    def __init__(self, pin: str) -> None:
        self._pin = pin

    def pin(self) -> str:
        return self._pin

    def describe(self) -> str:
        return "the PIN typed at sign-in"


def granted(actor: Actor) -> set[str]:
    """Every policy action one of ``actor``'s roles grants (the scope is decided per subject
    when the action is taken)."""
    roles = load_policy().roles
    return {a for r in actor.roles if r in roles for a in roles[r].actions}


def _token_of_holder(session: Session, holder: str) -> str | None:
    return session.exec(
        select(TransportKey.token)
        .where(TransportKey.holder == holder)
        .where(TransportKey.status == "active")
        .order_by(col(TransportKey.id).desc())
    ).first()


def _root_token(session: Session, now: int) -> str | None:
    record = publisher.current_certificate(session, "root", now)
    return Pkcs11Uri.parse(record.key_uri).token if record else None


def _audit_attempt(ctx: Context, officer: str, ok: bool, how: str) -> None:
    with transaction(ctx.engine) as session:
        audit.append(
            session,
            actor=officer.strip()[:200] or "(empty)",
            action=SIGN_IN if ok else f"{SIGN_IN}.refused",
            subject="console",
            details={"how": how},
            at=ctx.now(),
        )


@handles(ops.SIGN_IN)
def sign_in(ctx: Context, req: ops.SignInRequest) -> ops.SignedIn:
    officer_id = req.officer.strip()
    try:
        actor = actor_of(ctx.engine, officer_id)
    except OfficerError:
        _audit_attempt(ctx, officer_id, False, "unknown officer")
        raise SignInRefused(REFUSED) from None
    shares = [s.strip() for s in req.shares if s.strip()]
    with Session(ctx.engine) as session:
        if shares:
            label = _root_token(session, ctx.now())
            how = "share quorum of the root token"
        else:
            holder = actor.province if actor.province is not None else MINISTRY
            label = _token_of_holder(session, holder)
            how = f"PIN of the {holder} key token"
        record = session.get(Officer, actor.id)
        name = record.name if record else actor.id
    if label is None:
        raise SignInRefused(
            "no token to sign in with yet: "
            + ("run the root ceremony first" if shares else "register the transport key first")
        )
    from hsm.pkcs11.token import PinSource, QuorumPin, Token, TokenError
    from hsm.softhsm import use_softhsm

    source: PinSource = QuorumPin(shares) if shares else _FixedPin(req.pin or "")
    try:
        with ctx.runtime.tokens():  # one caller at a time in the token module
            use_softhsm(ctx.runtime.state / "softhsm2")
            with Token(label, source) as token:
                token.run(lambda s: None)  # logs in: the token itself checks the PIN
    except (TokenError, JtcaError) as exc:
        _audit_attempt(ctx, actor.id, False, f"{how}: {exc.message}")
        raise SignInRefused(REFUSED) from None
    _audit_attempt(ctx, actor.id, True, how)
    return ops.SignedIn(
        officer=ops.Officer(
            id=actor.id, name=name, roles=sorted(actor.roles), province=actor.province
        ),
        actions=sorted(granted(actor)),
        how=how,
        now=ctx.now(),
    )


# -- approvals ----------------------------------------------------------------------------------
def pending_for(session: Session, actor: Actor) -> list[ops.PendingItem]:
    """Applications, key actions and emergency publications awaiting a decision ``actor`` may
    give: never their own requests, a province's officer only for their province's keys."""
    may = granted(actor)
    items: list[ops.PendingItem] = []
    if applications.APPROVE in may:
        for app in applications.pending(session, actor.province):
            if app.applicant != actor.id:
                items.append(
                    ops.PendingItem(
                        kind="application",
                        id=app.id or 0,
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
                        what="emergency publication of every list",
                        by=request.requested_by,
                        at=request.requested_at,
                        reason=request.reason,
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
        query = select(AuditEvent)
        if req.before is not None:
            query = query.where(col(AuditEvent.seq) < req.before)
        if req.action:
            query = query.where(col(AuditEvent.action).contains(req.action))
        rows = session.exec(query.order_by(col(AuditEvent.seq).desc()).limit(req.size)).all()
        total = int(session.exec(select(func.count()).select_from(AuditEvent)).one())
        return ops.AuditPage(
            events=[
                ops.AuditEventView(
                    seq=e.seq,
                    at=e.at,
                    actor=e.actor,
                    action=e.action,
                    subject=e.subject,
                    details=e.details,
                    hash=e.hash,
                    prev_hash=e.prev_hash,
                )
                for e in rows
            ],
            total=total,
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
