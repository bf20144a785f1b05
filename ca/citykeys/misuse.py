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

Where the copies are destroyed (issue #11, point 5: tokens stay at their sites): the service
holds the ministry's token only, so when it carries out destroy-material
(``destroy_site_copies=False``) it destroys the ministry's copy and records each province's and
city's copy as awaiting destruction at its holder's site (audited: holder, token, URI); the key
is destroyed in its lifecycle at once, as before. The holder's site client then destroys each such
copy in its own token and reports it (``copies_awaiting_destruction``, ``record_copy_destroyed``).
A process that holds every token (the domain tests) may destroy every copy itself
(``destroy_site_copies=True``, the default of the domain functions).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from ca.citykeys.common import (
    MINISTRY,
    CityKeyError,
    Vault,
    allowed,
    apply_event,
    get_key,
    key_flags,
)
from ca.citykeys.lifecycle import KeyEvent, KeyState, transition
from ca.core.clock import iso_utc
from ca.core.errors import BadInput
from ca.core.vocabulary import request_ref
from ca.log import audit
from ca.officers import dual_control
from ca.officers.dual_control import MAX_REASON as MAX_REASON  # re-exported: the longest reason
from ca.officers.dual_control import bind_request, record_decision
from ca.policy.authorization import PolicyDenied
from ca.policy.in_force import load_policy
from ca.registry.divisions import default_divisions
from ca.store.db import transaction
from ca.store.models import Approval, CityKey, KeyCopy, PendingAction, UsageViolation
from hsm.pkcs11.keys import KeyNotFound
from hsm.pkcs11.uri import Pkcs11Uri
from policies.rules import Action, Actor, is_province_code, province_of

SUSPEND: Final = "city-key.suspend"
RESUME: Final = "city-key.resume"
REVOKE: Final = "city-key.revoke"
CLEANUP: Final = "city-key.cleanup-dormant"
DESTROY: Final = "city-key.destroy-material"
MATERIAL_DESTROYED: Final = "city-key.material-destroyed"  # a copy's material is gone
AWAITS_DESTRUCTION: Final = "city-key.material-awaits-destruction"  # at its holder's site
# the roles that handle a site's copies: those that install keys in a site's tokens, and those
# that order material destroyed (the policy decides the scope of each)
SITE_COPY_ACTIONS: Final = ("city-key.import", DESTROY)
EVENTS: Final = {
    SUSPEND: KeyEvent.SUSPEND,
    RESUME: KeyEvent.RESUME,
    REVOKE: KeyEvent.REVOKE,
    CLEANUP: KeyEvent.REVOKE,
    DESTROY: KeyEvent.DESTROY,
}
_NEEDS_REASON: Final = (SUSPEND, REVOKE, CLEANUP, RESUME)


def check_reason(reason: str) -> str:
    return dual_control.check_reason(reason, ActionError)


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


def key_ids_of(pending: PendingAction) -> list[int]:
    """The keys a pending city key action names (``key_ids`` is "3,7"; an emergency
    publication's row in the same table names none)."""
    return [int(k) for k in pending.key_ids.split(",") if k.isascii() and k.strip().isdigit()]


def request(
    engine: Engine,
    vault: Vault,
    actor: Actor,
    action: str,
    key_ids: Sequence[int],
    *,
    reason: str,
    now: int,
    destroy_site_copies: bool = True,
) -> ActionOutcome:
    """Ask for ``action`` on the keys; carried out at once when no approver is required.
    ``destroy_site_copies``: see the module's note (the service passes False)."""
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
            overlap = set(key_ids_of(pending_action)) & set(key_ids)
            if overlap:
                label = next(k.label for k in keys if k.id in overlap)
                raise ActionError(
                    f"{label} already awaits {action} ({request_ref(pending_action.id or 0)})"
                )
        labels = tuple(k.label for k in keys)
        if required == 0:
            _execute(session, vault, action, keys, reason, actor.id, [], now, destroy_site_copies)
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
        bind_request(session, f"action {pending.id}")
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
    destroy_site_copies: bool = True,
) -> ActionOutcome:
    """One officer's approval or rejection of a pending action; carried out on the last
    approval needed, in the same transaction (``destroy_site_copies``: the module's note)."""
    subject = f"action {action_id}"
    with transaction(engine) as session:
        pending = session.exec(
            select(PendingAction).where(PendingAction.id == action_id).with_for_update()
        ).one_or_none()
        if pending is None:
            raise ActionError(f"no pending {request_ref(action_id)}")
        if pending.action not in EVENTS:  # the table also holds emergency publications
            raise ActionError(
                f"{request_ref(action_id)} is not a city key action but a {pending.action} request"
                + (
                    f" (jtca lists approve {action_id})"
                    if pending.action == Action.LIST_EMERGENCY_PUBLISH
                    else ""
                )
            )
        if pending.state != "pending":
            raise ActionError(f"{request_ref(action_id)} is already {pending.state}")
        keys = [get_key(session, k) for k in key_ids_of(pending)]
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
            details={
                **decided.evidence,
                "approvals": len(approvers),
                "required": pending.required,
                "reason": reason,
            },
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
                destroy_site_copies,
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
    destroy_site_copies: bool,
) -> None:
    policy = load_policy()
    for key in keys:
        _precheck(key, action, now)  # still true now that the approvers have decided
    for key in keys:
        if action == DESTROY:
            _destroy_copies(session, vault, key, now, destroy_site_copies=destroy_site_copies)
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


def _destroy_copies(
    session: Session, vault: Vault, key: CityKey, now: int, *, destroy_site_copies: bool
) -> None:
    """Destroy the key's material in the ministry's token, and in the province's and the city's
    when ``destroy_site_copies`` (a process holding every token); otherwise record those copies
    as awaiting destruction at their holders' sites. A copy already gone (an earlier attempt
    destroyed it, then the database refused) counts as destroyed."""
    copies = session.exec(
        select(KeyCopy)
        .where(KeyCopy.city_key_id == key.id)
        .where(col(KeyCopy.destroyed_at).is_(None))
        .order_by(col(KeyCopy.id))
    ).all()
    for copy in copies:
        where = {"holder": copy.holder, "token": copy.token, "uri": copy.uri}
        if copy.holder != MINISTRY and not destroy_site_copies:
            copy.destroy_requested_at = now
            session.add(copy)
            audit.append(
                session,
                actor="jtca",
                action=AWAITS_DESTRUCTION,
                subject=key.label,
                details=where,
                at=now,
            )
            continue
        store = vault.store(copy.token)
        with contextlib.suppress(KeyNotFound):
            store.destroy(Pkcs11Uri.parse(copy.uri))
        copy.destroyed_at = now
        session.add(copy)
        audit.append(
            session,
            actor="jtca",
            action=MATERIAL_DESTROYED,
            subject=key.label,
            details=where,
            at=now,
        )


# -- copies awaiting destruction at their holders' sites ----------------------------------------
class DestructionRefused(CityKeyError):
    """A report of a copy destroyed at a site that does not match a copy awaiting it (409)."""

    title = "Destruction refused"
    http_status = 409


@dataclass(frozen=True, slots=True)
class SiteCopy:
    """A copy of a city key in a province's or a city's token, destroyed or awaiting it."""

    key_id: int
    label: str
    city: str
    province: str
    key_class: str
    kind: str
    holder: str
    token: str
    uri: str
    requested_at: int  # when destroy-material was carried out
    destroyed_at: int | None


def _site_copy(copy: KeyCopy, key: CityKey) -> SiteCopy:
    return SiteCopy(
        key_id=key.id or 0,
        label=key.label,
        city=key.city,
        province=key.province,
        key_class=key.key_class,
        kind=key.kind,
        holder=copy.holder,
        token=copy.token,
        uri=copy.uri,
        requested_at=copy.destroy_requested_at or 0,
        destroyed_at=copy.destroyed_at,
    )


def check_site_officer(actor: Actor, holder: str, now: int, key_class: str | None = None) -> None:
    """May ``actor`` handle ``holder``'s copies at its site? ``holder`` is a province or a city
    of the registry (the ministry's copies are the service's); a provincial officer handles
    their own province's and its cities' (``deny/other-province`` otherwise); the policy must
    grant one of ``SITE_COPY_ACTIONS`` for the holder."""
    if holder == MINISTRY:
        raise BadInput(
            "holder ministry: the ministry's copies are destroyed by the service when "
            "destroy-material is carried out; a site destroys its own"
        )
    divisions = default_divisions()
    known = (
        divisions.province(holder) if is_province_code(holder) else divisions.city(holder)
    ) is not None
    if not known:
        raise BadInput(f"holder {holder!r}: a province code or a city code of the registry")
    province = holder if is_province_code(holder) else province_of(holder)
    if actor.province is not None and actor.province != province:
        raise PolicyDenied(
            f"deny/other-province: {actor.id} handles the copies of province {actor.province} "
            f"and its cities, not {holder}'s"
        )
    refusal: PolicyDenied | None = None
    for action in SITE_COPY_ACTIONS:
        try:
            allowed(actor, action, holder, key_class, now)
            return
        except PolicyDenied as exc:
            refusal = refusal or exc
    raise refusal or PolicyDenied(f"deny/no-role: {actor.id} may not handle {holder}'s copies")


def copies_awaiting_destruction(
    engine: Engine, actor: Actor, holder: str, *, now: int
) -> list[SiteCopy]:
    """``holder``'s copies that destroy-material left for its site to destroy, oldest first."""
    check_site_officer(actor, holder, now)
    with Session(engine) as session:
        rows = session.exec(
            select(KeyCopy, CityKey)
            .join(CityKey, col(CityKey.id) == col(KeyCopy.city_key_id))
            .where(KeyCopy.holder == holder)
            .where(col(KeyCopy.destroy_requested_at).is_not(None))
            .where(col(KeyCopy.destroyed_at).is_(None))
            .order_by(col(KeyCopy.destroy_requested_at), col(KeyCopy.id))
        ).all()
        return [_site_copy(copy, key) for copy, key in rows]


def record_copy_destroyed(
    engine: Engine, actor: Actor, key_id: int, *, holder: str, uri: str, now: int
) -> SiteCopy:
    """Record a site's report that ``holder``'s copy of key ``key_id`` (at ``uri``) is gone
    from its token, audited. Refused: another province's officer, a key the holder has no copy
    of, a URI that is not the copy's, a copy not awaiting destruction (never ordered, or
    reported before)."""
    with transaction(engine) as session:
        key = get_key(session, key_id)
        check_site_officer(actor, holder, now, key.key_class)
        copy = session.exec(
            select(KeyCopy)
            .where(KeyCopy.city_key_id == key_id)
            .where(KeyCopy.holder == holder)
            .with_for_update()
        ).one_or_none()
        if copy is None:
            raise DestructionRefused(f"{key.label}: {holder} holds no copy of it")
        if copy.uri != uri:
            raise DestructionRefused(f"{key.label}: {holder}'s copy is {copy.uri}, not {uri}")
        if copy.destroyed_at is not None:
            raise DestructionRefused(
                f"{key.label}: {holder}'s copy was recorded destroyed "
                f"at {iso_utc(copy.destroyed_at)}"
            )
        if copy.destroy_requested_at is None:
            raise DestructionRefused(
                f"{key.label}: {holder}'s copy does not await destruction (its material is "
                f"destroyed only after destroy-material is carried out; the key is {key.state})"
            )
        copy.destroyed_at = now
        session.add(copy)
        audit.append(
            session,
            actor=actor.id,
            action=MATERIAL_DESTROYED,
            subject=key.label,
            details={"holder": holder, "token": copy.token, "uri": copy.uri, "at": "site"},
            at=now,
        )
        session.flush()
        return _site_copy(copy, key)


def awaiting_holders(session: Session, key_ids: Sequence[int]) -> dict[int, list[str]]:
    """For each of ``key_ids`` with copies awaiting destruction at a site, their holders."""
    found: dict[int, list[str]] = {}
    if not key_ids:
        return found
    for key_id, holder in session.exec(
        select(KeyCopy.city_key_id, KeyCopy.holder)
        .where(col(KeyCopy.city_key_id).in_(list(key_ids)))
        .where(col(KeyCopy.destroy_requested_at).is_not(None))
        .where(col(KeyCopy.destroyed_at).is_(None))
        .order_by(col(KeyCopy.holder))
    ):
        found.setdefault(key_id, []).append(holder)
    return found


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
