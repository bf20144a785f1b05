"""What the city key modules share: errors, the vault of tokens, policy checks and the one
place a key changes state (audited in the caller's transaction)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Protocol, TypeVar

from sqlmodel import Session, SQLModel, col, select

from ca.citykeys.expiry import DAY, Flag, KeyTimes, flags
from ca.citykeys.lifecycle import KeyEvent, KeyState, transition
from ca.core.errors import JtcaError
from ca.log import audit
from ca.policy.authorization import PolicyDenied
from ca.policy.in_force import load_policy
from ca.store.models import CityKey, TransportKey
from hsm.pkcs11.keys import KeyStore
from policies.rules import Actor, Policy, Subject, decide

MINISTRY: Final = "ministry"  # the holder name of the ministry's transport key and token

LIVE_STATES: Final = (KeyState.PRE_ACTIVE, KeyState.ACTIVE, KeyState.SUSPENDED)


class CityKeyError(JtcaError):
    title = "City key"
    exit_code = 6


class Vault(Protocol):
    """The tokens this process can reach, by label (the embedded SoftHSM2, or a site's HSMs)."""

    def store(self, token_label: str) -> KeyStore: ...


def allowed(actor: Actor, action: str, city: str, key_class: str | None, now: int) -> int:
    """The approvals the policy requires for ``actor`` to do ``action`` to a key of ``city``;
    PolicyDenied naming the reason code otherwise."""
    decision = decide(
        load_policy(),
        actor,
        action,
        Subject(city=city, key_class=key_class),
        datetime.fromtimestamp(now, UTC),
    )
    if not decision.allowed:
        raise PolicyDenied(f"{decision.reason}: {actor.id} may not {action} for city {city}")
    return decision.approvals_required


def is_ministry(actor: Actor) -> bool:
    """A ministry officer: one bound to no province."""
    return actor.province is None


def apply_event(
    session: Session,
    key: CityKey,
    event: KeyEvent,
    *,
    actor: str,
    now: int,
    reason: str = "",
    details: dict[str, Any] | None = None,
    policy: Policy | None = None,
) -> KeyState:
    """Move ``key`` through the lifecycle (TransitionRefused says why not) and audit it. A key
    entering deactivated or revoked gets its material-destruction date (the policy's grace)."""
    before = KeyState(key.state)
    after = transition(before, event)
    key.state = after.value
    key.state_changed_at = now
    if reason:
        key.reason = reason
    if after in (KeyState.DEACTIVATED, KeyState.REVOKED) and key.destroy_after is None:
        grace = (policy or load_policy()).retention.destroy_grace_days
        key.destroy_after = now + grace * DAY
    if after == KeyState.DESTROYED:
        key.destroyed_at = now
    session.add(key)
    audit.append(
        session,
        actor=actor,
        action=f"city-key.{event.value}",
        subject=key.label,
        details={"from": before.value, "to": after.value, "reason": reason} | (details or {}),
        at=now,
    )
    return after


def key_flags(key: CityKey, now: int, policy: Policy | None = None) -> list[str]:
    """The key's time flags (renewal-due, expired, dormant) and ``violation``."""
    chosen = policy or load_policy()
    cls = chosen.key_classes.get(key.key_class)
    found: list[str] = []
    if cls is not None:
        times = KeyTimes(KeyState(key.state), key.created_at, key.delivered_at, key.not_after)
        marks = flags(times, cls, now)
        if key.successor_id is not None:
            marks = marks - {Flag.RENEWAL_DUE}  # already renewed
        found.extend(sorted(f.value for f in marks))
    if key.open_violations:
        found.append("violation")
    return found


def transport_key(session: Session, holder: str) -> TransportKey:
    found = session.exec(
        select(TransportKey)
        .where(TransportKey.holder == holder)
        .where(TransportKey.status == "active")
        .order_by(col(TransportKey.id).desc())
    ).first()
    if found is None:
        who = "the ministry" if holder == MINISTRY else holder
        raise CityKeyError(
            f"{who} has no transport key: register one with "
            f"jtca city transport-key --holder {holder} --token LABEL",
            title="Transport key missing",
        )
    session.expunge(found)  # read-only here: usable after the transaction ends
    return found


def get_key(session: Session, key_id: int, *, lock: bool = True) -> CityKey:
    query = select(CityKey).where(CityKey.id == key_id)
    found = session.exec(query.with_for_update() if lock else query).one_or_none()
    if found is None:
        raise CityKeyError(f"no city key {key_id}", title="Unknown key")
    return found


@dataclass(frozen=True, slots=True)
class KeyRef:
    """A key as the officers name it: its id and label."""

    id: int
    label: str


R = TypeVar("R", bound=SQLModel)


def detached(session: Session, row: R) -> R:
    session.flush()
    session.refresh(row)
    session.expunge(row)
    return row
