"""The policy in force's use cases (issue #16, point 4).

A service starts with a policy file (``jtca serve --policy PATH``, $JTCA_POLICY, else the
shipped ``policies/authority.toml``), validated first. On a database that has no policy yet the
file is adopted (``policy.adopt``, audited with its SM3); after that a service starts only with
the policy in force: any other file is refused, naming ``jtca policy propose``. A change is
dual-controlled: an officer proposes the new file (a signed request, ``policy.propose``), the
number of other officers ``[dual_control] "policy.change"`` asks for approve it with their
token's signature (``ca.service.approvals``); the last approval puts it in force
(``policy.change``, naming the SM3 before and after). Every service process on the database
switches at its next policy look-up (``Runtime.policy_refresh``, at most ``REFRESH_SECONDS``
apart) without a restart; every event appended names the SM3 of the policy it was decided under
(``ca.log.audit.name_policy``).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Final

from sqlmodel import Session, col, select

from ca.core.errors import JtcaError
from ca.log import audit
from ca.officers.dual_control import bind_request, deciding, record_decision
from ca.ops import policy as ops
from ca.ops.base import Empty
from ca.policy.authorization import require
from ca.policy.in_force import (
    PolicyError,
    PolicyInForce,
    load_policy,
    policy_from_bytes,
    read_policy,
    set_policy_in_force,
    set_policy_refresher,
)
from ca.service.approvals import verify_decision
from ca.service.context import Context
from ca.service.registry import handles
from ca.service.runtime import Runtime
from ca.store.db import transaction
from ca.store.models import AuditHead, PolicyVersion
from policies.rules import Action, Subject

CHANGE: Final = Action.POLICY_CHANGE
REFRESH_SECONDS: Final = 2.0
log = logging.getLogger(__name__)
SERVICE: Final = "jtca"  # the actor of a service's own entries


class PolicyNotInForce(JtcaError):
    """The service was started with a file that is not the approved policy in force."""

    title = "Not the policy in force"
    exit_code = 6


class PolicyChangeError(JtcaError):
    title = "Policy change"
    exit_code = 6


class NoSuchProposal(JtcaError):
    title = "No such policy version"
    exit_code = 3
    http_status = 404


def _subject(version: int) -> str:
    return f"policy {version}"


def _in_force_row(session: Session) -> PolicyVersion | None:
    return session.exec(
        select(PolicyVersion)
        .where(PolicyVersion.state == "in-force")
        .order_by(col(PolicyVersion.id).desc())
    ).first()


def _switch(runtime: Runtime, chosen: PolicyInForce) -> None:
    set_policy_in_force(chosen)
    audit.name_policy(runtime.engine, chosen.sm3)
    runtime.policy_sm3 = chosen.sm3


def adopt_or_check(runtime: Runtime, path: Path | None, now: int | None = None) -> PolicyInForce:
    """Validate the policy file and run under it: adopted (audited) on a database with no
    policy yet; refused unless it is the policy in force otherwise.

    A file the operator named (``--policy``, ``$JTCA_POLICY``) that is not the policy in force
    is refused. The shipped default named by nobody is not: after an upgrade whose shipped
    ``authority.toml`` changed, the service runs under the policy in force (the database's
    approved text, the same on every node), says so in its log, and the new default waits for
    ``jtca policy propose`` like any other change. Refusing there would leave no service to
    propose it through."""
    chosen = read_policy(path)  # PolicyError names the file, the field and the value
    named = path is not None or bool(os.environ.get("JTCA_POLICY", "").strip())
    at = int(time.time()) if now is None else now
    with Session(runtime.engine) as session:
        adopting = _in_force_row(session) is None
    if adopting:  # the adoption entry is sealed like every entry the service appends
        from ca.service.logkeys import start_sealing_quietly

        start_sealing_quietly(runtime, at)
    with transaction(runtime.engine) as session:
        # the audit head's lock: two services starting together adopt one file, not two
        session.exec(select(AuditHead).where(AuditHead.id == 1).with_for_update()).one()
        row = _in_force_row(session)
        if row is None:
            row = PolicyVersion(
                sm3=chosen.sm3,
                text=chosen.text.decode("utf-8"),
                state="in-force",
                proposed_by=SERVICE,
                proposed_at=at,
                required=0,
                reason="adopted at the first start",
                decided_at=at,
            )
            session.add(row)
            session.flush()
            audit.append(
                session,
                actor=SERVICE,
                action="policy.adopt",
                subject=_subject(row.id or 0),
                details={"policy_sm3": chosen.sm3, "file": str(chosen.path)},
                at=at,
            )
        elif row.sm3 != chosen.sm3 and not named:
            log.warning(
                "the shipped policy %s (SM3 %s) is not the policy in force (version %s, SM3 %s): "
                "running under the policy in force; propose the shipped one with `jtca policy "
                "propose %s` if it is wanted",
                chosen.path, chosen.sm3, row.id, row.sm3, chosen.path,
            )  # fmt: skip
            chosen = policy_from_bytes(row.text.encode("utf-8"))
        elif row.sm3 != chosen.sm3:
            raise PolicyNotInForce(
                f"{chosen.path} (SM3 {chosen.sm3}) is not the policy in force (version "
                f"{row.id}, SM3 {row.sm3}): start with that file (`jtca policy show --out "
                f"FILE`), or propose this one with `jtca policy propose {chosen.path}` and "
                "have another officer approve it (`jtca policy approve N`)"
            )
    _switch(runtime, chosen)
    set_policy_refresher(lambda: refresh(runtime))
    return chosen


def refresh(runtime: Runtime) -> None:
    """Switch to the policy in force if another process put a new one in force (throttled)."""
    now = time.monotonic()
    if now - runtime.policy_checked < REFRESH_SECONDS:
        return
    runtime.policy_checked = now
    try:
        with Session(runtime.engine) as session:
            row = _in_force_row(session)
    except Exception:  # the database away: keep the policy we run under
        log.warning("could not check the policy in force; still under %s", runtime.policy_sm3)
        return
    if row is not None and row.sm3 != runtime.policy_sm3:
        _switch(runtime, policy_from_bytes(row.text.encode("utf-8")))


def _view(row: PolicyVersion, runtime: Runtime) -> ops.PolicyView:
    return ops.PolicyView(
        version=row.id or 0,
        sm3=row.sm3,
        state=row.state,
        text=row.text,
        proposed_by=row.proposed_by,
        proposed_at=row.proposed_at,
        required=row.required,
        decided_at=row.decided_at,
        running_sm3=runtime.policy_sm3,
    )


def _put_in_force(session: Session, row: PolicyVersion, actor: str, now: int) -> str:
    """``row`` in force, the one before superseded, audited naming both SM3s; the old SM3."""
    before = _in_force_row(session)
    old = before.sm3 if before is not None else ""
    if before is not None:
        before.state = "superseded"
        session.add(before)
    row.state, row.decided_at = "in-force", now
    session.add(row)
    audit.append(
        session,
        actor=actor,
        action="policy.change",
        subject=_subject(row.id or 0),
        details={"from_sm3": old, "to_sm3": row.sm3, "policy_sm3": row.sm3},
        at=now,
    )
    return old


@handles(ops.PROPOSE)
def propose(ctx: Context, req: ops.ProposeRequest) -> ops.PolicyView:
    actor = ctx.actor()
    now = ctx.now()
    require(actor, CHANGE, Subject(), now)
    try:
        proposed = policy_from_bytes(req.text.encode("utf-8"), Path("the proposed policy"))
    except PolicyError as exc:
        raise PolicyError(f"text: {exc.message}") from None
    if not any(CHANGE in role.actions for role in proposed.policy.roles.values()):
        raise PolicyError(
            f"text: roles: no role is granted {CHANGE}: no one could ever change this policy"
        )
    # a change is always dual-controlled, whatever [dual_control] says: at least one other
    required = max(1, load_policy().approvals_required(CHANGE))
    with transaction(ctx.engine) as session:
        session.exec(select(AuditHead).where(AuditHead.id == 1).with_for_update()).one()
        current = _in_force_row(session)
        if current is not None and current.sm3 == proposed.sm3:
            raise PolicyChangeError(
                f"this policy (SM3 {proposed.sm3}) is already in force (version {current.id})"
            )
        row = PolicyVersion(
            sm3=proposed.sm3,
            text=req.text,
            state="proposed",
            proposed_by=actor.id,
            proposed_at=now,
            required=required,
            reason=req.reason.strip(),
        )
        session.add(row)
        session.flush()
        audit.append(
            session,
            actor=actor.id,
            action="policy.propose",
            subject=_subject(row.id or 0),
            details={
                "proposed_sm3": proposed.sm3,
                "reason": row.reason,
                "approvers_required": required,
            },
            at=now,
        )
        bind_request(session, _subject(row.id or 0))
        session.flush()
        session.refresh(row)
        session.expunge(row)
    return _view(row, ctx.runtime)


def _decide(ctx: Context, req: ops.DecideRequest, *, approve: bool) -> ops.PolicyView:
    """A decision counts only with the approver's token signature over the proposal's signed
    request (``ca.service.approvals.verify_decision``: refused and audited otherwise)."""
    actor = ctx.actor()
    now = ctx.now()
    require(actor, CHANGE, Subject(), now)
    subject = _subject(req.proposal)
    signed = verify_decision(
        ctx, subject=subject, approve=approve, at=req.at, signature=req.signature
    )
    with deciding(signed), transaction(ctx.engine) as session:
        row = session.exec(
            select(PolicyVersion).where(PolicyVersion.id == req.proposal).with_for_update()
        ).one_or_none()
        if row is None:
            raise NoSuchProposal(f"proposal: no policy version {req.proposal}")
        if row.state != "proposed":
            raise PolicyChangeError(f"policy version {req.proposal} is {row.state}, not proposed")
        decided = record_decision(
            session,
            subject=subject,
            approver=actor.id,
            requester=row.proposed_by,
            approve=approve,
            reason=req.reason,
            required=row.required,
            now=now,
            error=PolicyChangeError,
        )
        audit.append(
            session,
            actor=actor.id,
            action=f"policy.{'approve' if approve else 'reject'}",
            subject=subject,
            details={
                **decided.evidence,
                "proposed_sm3": row.sm3,
                "reason": decided.reason,
                "approvals": len(decided.approvers),
                "required": row.required,
                "state": decided.state,
            },
            at=now,
        )
        if decided.state == "approved":
            _put_in_force(session, row, actor.id, now)
        elif decided.state == "rejected":
            row.state, row.decided_at = "rejected", now
            session.add(row)
        session.flush()
        session.refresh(row)
        session.expunge(row)
    if row.state == "in-force":
        _switch(ctx.runtime, policy_from_bytes(row.text.encode("utf-8")))
    return _view(row, ctx.runtime)


@handles(ops.APPROVE)
def approve(ctx: Context, req: ops.DecideRequest) -> ops.PolicyView:
    return _decide(ctx, req, approve=True)


@handles(ops.REJECT)
def reject(ctx: Context, req: ops.DecideRequest) -> ops.PolicyView:
    return _decide(ctx, req, approve=False)


@handles(ops.SHOW)
def show(ctx: Context, req: ops.ShowRequest) -> ops.PolicyView:
    ctx.actor()
    with Session(ctx.engine) as session:
        if req.proposal is None:
            row = _in_force_row(session)
            if row is None:
                raise NoSuchProposal(
                    "no policy has been adopted on this database yet (the service adopts its "
                    "file at its first start with `jtca serve`)"
                )
        else:
            row = session.get(PolicyVersion, req.proposal)
            if row is None:
                raise NoSuchProposal(f"proposal: no policy version {req.proposal}")
        return _view(row, ctx.runtime)


@handles(ops.HISTORY)
def history(ctx: Context, _req: Empty) -> ops.PolicyVersions:
    ctx.actor()
    with Session(ctx.engine) as session:
        rows = session.exec(select(PolicyVersion).order_by(col(PolicyVersion.id))).all()
        return ops.PolicyVersions(versions=[_view(r, ctx.runtime) for r in rows])
