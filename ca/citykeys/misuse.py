"""Suspend, resume, revoke, dormant cleanup and material destruction (第十、十一条).

Each is asked for by one officer with a reason and carried out when the policy's number of
other officers (``[dual_control]``) have approved it; an action needing no approver runs at
once. One rejection rejects. The request, every decision and every key's change are audited.

- suspend (reversible) and revoke (final) a key, or all of a city's keys, for misuse (第十一条);
- cleanup-dormant: keys delivered but not activated within their class's dormancy threshold are
  revoked (第十条: 长期未使用的密钥…清理撤销); their material is destroyed after the grace
  period; their records stay until the retention period ends (``queries.purge_records``);
- destroy-material: keys revoked or deactivated whose grace period has passed have their
  material destroyed in every token that holds a copy; the record stays.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from ca import audit, dualcontrol
from ca.citykeys.common import CityKeyError, Vault, allowed, apply_event, get_key, key_flags
from ca.clock import iso_utc
from ca.dualcontrol import MAX_REASON as MAX_REASON  # re-exported: the longest reason
from ca.dualcontrol import record_decision
from ca.lifecycle import KeyEvent, KeyState, transition
from ca.signing import load_policy
from ca.store.db import transaction
from ca.store.models import Approval, CityKey, KeyCopy, PendingAction, UsageViolation
from hsm.pkcs11.keys import KeyNotFound
from hsm.pkcs11.uri import Pkcs11Uri
from policies.rules import Actor

SUSPEND: Final = "city-key.suspend"
RESUME: Final = "city-key.resume"
REVOKE: Final = "city-key.revoke"
CLEANUP: Final = "city-key.cleanup-dormant"
DESTROY: Final = "city-key.destroy-material"
EVENTS: Final = {
    SUSPEND: KeyEvent.SUSPEND,
    RESUME: KeyEvent.RESUME,
    REVOKE: KeyEvent.REVOKE,
    CLEANUP: KeyEvent.REVOKE,
    DESTROY: KeyEvent.DESTROY,
}
_NEEDS_REASON: Final = (SUSPEND, REVOKE, CLEANUP, RESUME)


def check_reason(reason: str) -> str:
    return dualcontrol.check_reason(reason, ActionError)


class ActionError(CityKeyError):
    title = "Key action"


@dataclass(frozen=True, slots=True)
class ActionOutcome:
    action_id: int | None  # None when it ran at once (no approver required)
    action: str
    state: str  # pending | done | rejected
    approvals: int
    required: int
    keys: tuple[str, ...]


def _precheck(key: CityKey, action: str, now: int) -> None:
    """Refuse, naming the key and why, what cannot be done to it now."""
    transition(KeyState(key.state), EVENTS[action])  # TransitionRefused says why
    if action == CLEANUP and "dormant" not in key_flags(key, now):
        raise ActionError(
            f"{key.label} is not dormant: dormant cleanup revokes only keys "
            "delivered and never activated within the dormancy threshold"
        )
    if action == DESTROY and (key.destroy_after is None or now < key.destroy_after):
        when = iso_utc(key.destroy_after) if key.destroy_after else "(not set)"
        raise ActionError(f"{key.label}: its grace period runs until {when}")


def _keys(session: Session, key_ids: Sequence[int]) -> list[CityKey]:
    if not key_ids:
        raise ActionError("name at least one key")
    twice = sorted({k for k in key_ids if list(key_ids).count(k) > 1})
    if twice:
        raise ActionError(f"key {twice[0]} is named twice")
    return [get_key(session, k) for k in key_ids]


def keys_of_city(session: Session, city: str, action: str) -> list[int]:
    """The keys of ``city`` the action applies to (a whole city's keys at once)."""
    states = {
        SUSPEND: [KeyState.ACTIVE],
        RESUME: [KeyState.SUSPENDED],
        REVOKE: [KeyState.PRE_ACTIVE, KeyState.ACTIVE, KeyState.SUSPENDED, KeyState.DEACTIVATED],
    }.get(action)
    if states is None:
        raise ActionError(f"{action} is not taken city-wide; name the keys")
    found = list(
        session.exec(
            select(CityKey.id)
            .where(CityKey.city == city)
            .where(col(CityKey.state).in_([s.value for s in states]))
            .order_by(col(CityKey.id))
        )
    )
    if not found:
        raise ActionError(f"city {city} has no key that can take {action}")
    return [k for k in found if k is not None]


def dormant_keys(session: Session, now: int, province: str | None = None) -> list[CityKey]:
    query = select(CityKey).where(CityKey.state == KeyState.PRE_ACTIVE.value)
    query = query.where(col(CityKey.delivered_at).is_not(None))
    if province is not None:
        query = query.where(CityKey.province == province)
    return [
        k for k in session.exec(query.order_by(col(CityKey.id))) if "dormant" in key_flags(k, now)
    ]


def destroy_due(session: Session, now: int, province: str | None = None) -> list[CityKey]:
    query = (
        select(CityKey)
        .where(col(CityKey.state).in_([KeyState.REVOKED.value, KeyState.DEACTIVATED.value]))
        .where(col(CityKey.destroy_after) <= now)
    )
    if province is not None:
        query = query.where(CityKey.province == province)
    return list(session.exec(query.order_by(col(CityKey.id))))


def request(
    engine: Engine,
    vault: Vault,
    actor: Actor,
    action: str,
    key_ids: Sequence[int],
    *,
    reason: str,
    now: int,
) -> ActionOutcome:
    if action not in EVENTS:
        raise ActionError(f"unknown action {action!r}")
    reason = check_reason(reason)
    if action in _NEEDS_REASON and not reason:
        raise ActionError(f"{action} needs a reason")
    reason = reason or "grace period ended"
    with transaction(engine) as session:
        keys = _keys(session, key_ids)
        required = 0
        for key in keys:
            required = max(required, allowed(actor, action, key.city, key.key_class, now))
            _precheck(key, action, now)
        open_actions = session.exec(
            select(PendingAction)
            .where(PendingAction.state == "pending")
            .where(PendingAction.action == action)
        ).all()
        for pending_action in open_actions:
            overlap = {int(k) for k in pending_action.key_ids.split(",")} & set(key_ids)
            if overlap:
                label = next(k.label for k in keys if k.id in overlap)
                raise ActionError(f"{label} already awaits {action} (action {pending_action.id})")
        labels = tuple(k.label for k in keys)
        if required == 0:
            _execute(session, vault, action, keys, reason, actor.id, [], now)
            return ActionOutcome(None, action, "done", 0, 0, labels)
        pending = PendingAction(
            action=action,
            key_ids=",".join(str(k.id) for k in keys),
            reason=reason,
            requested_by=actor.id,
            requested_at=now,
            required=required,
        )
        session.add(pending)
        session.flush()
        audit.append(
            session,
            actor=actor.id,
            action=f"{action}.request",
            subject=f"action {pending.id}",
            details={"keys": list(labels), "reason": reason, "approvers_required": required},
            at=now,
        )
        return ActionOutcome(pending.id, action, "pending", 0, required, labels)


def decide(
    engine: Engine,
    vault: Vault,
    actor: Actor,
    action_id: int,
    *,
    approve: bool,
    now: int,
    reason: str = "",
) -> ActionOutcome:
    """One officer's approval or rejection of a pending action; carried out on the last
    approval needed, in the same transaction."""
    subject = f"action {action_id}"
    with transaction(engine) as session:
        pending = session.exec(
            select(PendingAction).where(PendingAction.id == action_id).with_for_update()
        ).one_or_none()
        if pending is None:
            raise ActionError(f"no pending action {action_id}")
        if pending.state != "pending":
            raise ActionError(f"action {action_id} is already {pending.state}")
        keys = [get_key(session, int(k)) for k in pending.key_ids.split(",")]
        if actor.id != pending.requested_by:
            for key in keys:
                allowed(actor, pending.action, key.city, key.key_class, now)
        decided = record_decision(
            session,
            subject=subject,
            approver=actor.id,
            requester=pending.requested_by,
            approve=approve,
            reason=reason,
            required=pending.required,
            now=now,
            error=ActionError,
        )
        reason, approvers = decided.reason, list(decided.approvers)
        audit.append(
            session,
            actor=actor.id,
            action=f"{pending.action}.{'approve' if approve else 'reject'}",
            subject=subject,
            details={"approvals": len(approvers), "required": pending.required, "reason": reason},
            at=now,
        )
        if decided.state == "rejected":
            pending.state, pending.decided_at = "rejected", now
        elif decided.state == "approved":
            _execute(
                session,
                vault,
                pending.action,
                keys,
                pending.reason,
                pending.requested_by,
                approvers,
                now,
            )
            pending.state, pending.decided_at = "done", now
        session.add(pending)
        return ActionOutcome(
            action_id,
            pending.action,
            pending.state,
            len(approvers),
            pending.required,
            tuple(k.label for k in keys),
        )


def _execute(
    session: Session,
    vault: Vault,
    action: str,
    keys: list[CityKey],
    reason: str,
    requested_by: str,
    approvers: list[str],
    now: int,
) -> None:
    policy = load_policy()
    for key in keys:
        _precheck(key, action, now)  # still true now that the approvers have decided
    for key in keys:
        if action == DESTROY:
            _destroy_copies(session, vault, key, now)
        apply_event(
            session,
            key,
            EVENTS[action],
            actor=requested_by,
            now=now,
            reason=f"dormant: {reason}" if action == CLEANUP else reason,
            details={"action": action, "approvers": approvers},
            policy=policy,
        )
        if action in (SUSPEND, REVOKE, CLEANUP) and key.open_violations:
            for violation in session.exec(
                select(UsageViolation)
                .where(UsageViolation.city_key_id == key.id)
                .where(UsageViolation.status == "open")
            ):
                violation.status = "acted-on"
                session.add(violation)
            key.open_violations = 0
            session.add(key)


def _destroy_copies(session: Session, vault: Vault, key: CityKey, now: int) -> None:
    """Destroy the key's material in every token holding a copy. A copy already gone (an
    earlier attempt destroyed it, then the database refused) counts as destroyed."""
    copies = session.exec(
        select(KeyCopy)
        .where(KeyCopy.city_key_id == key.id)
        .where(col(KeyCopy.destroyed_at).is_(None))
    ).all()
    for copy in copies:
        store = vault.store(copy.token)
        with contextlib.suppress(KeyNotFound):
            store.destroy(Pkcs11Uri.parse(copy.uri))
        copy.destroyed_at = now
        session.add(copy)
        audit.append(
            session,
            actor="jtca",
            action="city-key.material-destroyed",
            subject=key.label,
            details={"holder": copy.holder, "token": copy.token, "uri": copy.uri},
            at=now,
        )


def pending_actions(session: Session) -> list[PendingAction]:
    return list(
        session.exec(
            select(PendingAction)
            .where(PendingAction.state == "pending")
            .where(col(PendingAction.action).in_(list(EVENTS)))  # city key actions only
            .order_by(col(PendingAction.id))
        )
    )


def action_of(session: Session, action_id: int) -> str | None:
    """What pending action ``action_id`` asks for (``city-key.suspend`` …), None if unknown."""
    return session.exec(select(PendingAction.action).where(PendingAction.id == action_id)).first()


def approvals_of(session: Session, action_ids: Sequence[int]) -> dict[int, int]:
    """How many officers have approved each of ``action_ids`` so far."""
    subjects = {f"action {a}": a for a in action_ids}
    counts = {a: 0 for a in action_ids}
    if not subjects:
        return counts
    for subject in session.exec(
        select(Approval.subject)
        .where(col(Approval.subject).in_(list(subjects)))
        .where(Approval.decision == "approve")
    ):
        counts[subjects[subject]] += 1
    return counts
