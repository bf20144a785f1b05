"""Validity and renewal (第十条: keys have a validity period and are renewed before it ends).

``renew`` makes the successor of an active key inside its renewal window: a fresh key of the
same class for the same city, generation + 1, generated in the ministry token and delivered
like the first. Both are valid during the class's overlap; the old key is superseded when the
overlap ends (or at its own end, whichever comes first) — never before the successor is
installed at the city: until then the old key stays active, up to its own end, so a city is
never left without a working key. ``sweep`` applies what time has
decided: superseded keys and keys past their end become deactivated. The publisher's timer
runs it; running it twice changes nothing the second time.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy.engine import Engine
from sqlmodel import col, or_, select

from ca.citykeys.common import (
    MINISTRY,
    CityKeyError,
    Vault,
    allowed,
    apply_event,
    detached,
    get_key,
    transport_key,
)
from ca.citykeys.expiry import DAY
from ca.citykeys.lifecycle import KeyEvent, KeyState, transition
from ca.citykeys.workflow import (
    INSTALLED,
    RENEW_INTENT,
    begin_city_key_intent,
    destroy_stale,
    make_planned_key,
    planned_key,
    record_generated,
    undo_city_key_intent,
)
from ca.core.clock import iso_utc
from ca.log import audit
from ca.policy.in_force import load_policy
from ca.store import intents
from ca.store.db import transaction
from ca.store.models import CityKey
from hsm.crashpoints import crash_point
from policies.rules import Actor

RENEW: Final = "city-key.renew"
SWEEPER: Final = "jtca-sweep"  # the actor of time-driven transitions


def renewal_subject(key_id: int) -> str:
    """The subject of a key's renewal intent: the key renewed (its successor is one per key)."""
    return f"key {key_id}"


def renew(engine: Engine, vault: Vault, actor: Actor, key_id: int, *, now: int) -> CityKey:
    """The successor of key ``key_id`` (see the module docstring); returns the new key.

    Crash-safe (issue #14): the intent ``city.renew`` on ``key N`` names the ministry token and
    the successor's label before the token is touched; the key is noted (id, URI) once made;
    the successor's record, the predecessor's link and the intent's completion are one
    transaction. A failure destroys the new object; a crash leaves it to
    ``ca.citykeys.workflow.recover_city_key_intent``, which leaves the predecessor untouched."""
    policy = load_policy()
    with transaction(engine) as session:
        old = get_key(session, key_id, lock=False)
        allowed(actor, RENEW, old.city, old.key_class, now)
        transition(KeyState(old.state), KeyEvent.SUPERSEDE)  # only an active key is renewed
        if old.successor_id is not None:
            raise CityKeyError(f"{old.label} is already renewed (successor {old.successor_id})")
        cls = policy.key_classes[old.key_class]
        window_opens = old.not_after - cls.renewal_window_days * DAY
        if now < window_opens:
            raise CityKeyError(
                f"{old.label} enters its renewal window on {iso_utc(window_opens)} "
                f"({cls.renewal_window_days} days before its end, {iso_utc(old.not_after)})",
                title="Too early to renew",
            )
        ministry = transport_key(session, MINISTRY)
        generation = old.generation + 1
        session.expunge(old)
    label = f"{old.key_class}-{old.city}-g{generation}"
    plan = {
        "token": ministry.token,
        "key": key_id,
        "predecessor": old.label,
        "objects": [
            planned_key(
                label=label,
                kind=cls.algorithm,
                city=old.city,
                key_class=old.key_class,
                generation=generation,
            )
        ],
    }
    store = vault.store(ministry.token)
    intent = begin_city_key_intent(
        engine, RENEW_INTENT, renewal_subject(key_id), plan, actor=actor.id, now=now
    )
    try:
        destroy_stale(engine, store, intent, actor=actor.id, now=now)
        made = make_planned_key(engine, store, intent, intent.plan["objects"][0], {})
        crash_point(f"{RENEW_INTENT}:before-record")
        with transaction(engine) as session:
            old = get_key(session, key_id)
            if old.successor_id is not None or old.state != KeyState.ACTIVE.value:
                raise CityKeyError(f"{old.label} changed meanwhile ({old.state})")
            new = record_generated(
                session,
                made,
                city=old.city,
                province=old.province,
                key_class=cls,
                generation=generation,
                application_id=old.application_id,
                ministry_token=ministry.token,
                actor=actor.id,
                now=now,
                predecessor_id=old.id,
            )
            old.successor_id = new.id
            old.supersede_at = min(old.not_after, now + cls.overlap_days * DAY)
            session.add(old)
            audit.append(
                session,
                actor=actor.id,
                action=RENEW,
                subject=old.label,
                details={
                    "successor": new.label,
                    "public_key": new.public_key,
                    "check_value": new.check_value,
                    "successor_not_after": new.not_after,
                    "supersede_at": old.supersede_at,
                },
                at=now,
            )
            intents.complete(session, intent.id, now=now)
            result = detached(session, new)
        crash_point(f"{RENEW_INTENT}:after-record")
        return result
    except BaseException as exc:
        undo_city_key_intent(engine, store, intent, now=now, error=exc)
        raise


def sweep(engine: Engine, *, now: int, actor: str = SWEEPER) -> list[tuple[str, str]]:
    """Supersede renewed keys whose overlap has ended and deactivate keys past their end.
    Returns (label, new state) for each key changed; each change audited."""
    policy = load_policy()
    live = [KeyState.PRE_ACTIVE.value, KeyState.ACTIVE.value, KeyState.SUSPENDED.value]
    changed: list[tuple[str, str]] = []
    with transaction(engine) as session:
        due = session.exec(
            select(CityKey)
            .where(col(CityKey.state).in_(live))
            .where(
                or_(
                    col(CityKey.not_after) < now,
                    (col(CityKey.supersede_at) <= now)
                    & (CityKey.state == KeyState.ACTIVE.value)
                    & col(CityKey.successor_id).in_(
                        select(CityKey.id).where(CityKey.stage == INSTALLED)
                    ),
                )
            )
            .order_by(col(CityKey.id))
            .with_for_update()
        ).all()
        for key in due:
            if key.not_after < now:
                event, why = KeyEvent.EXPIRE, f"validity ended {iso_utc(key.not_after)}"
            else:
                event, why = KeyEvent.SUPERSEDE, f"successor {key.successor_id} took over"
            apply_event(session, key, event, actor=actor, now=now, reason=why, policy=policy)
            changed.append((key.label, key.state))
    return changed
