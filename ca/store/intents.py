"""Intents: what a multi-step operation is about to do, written before it touches a token or
the file system, settled when it is done (issue #14; ARCHITECTURE: every multi-step operation
survives a power cut).

The life of an intent::

    intent = intents.begin(engine, "city.generate", "application:7", plan, actor=…, now=…)
    …token and file work, each step noted with intents.note(engine, intent.id, …)…
    with transaction(engine) as session:
        …the records…
        intents.complete(session, intent.id, now=…)        # in the same transaction

If the process dies anywhere in between, the intent stays ``open`` with an owner that is gone;
``ca.service.recovery`` finds it (at service start, at the next run of the same operation, or
``jtca recover``) and rolls it forward or back with the recoverer registered for its operation,
settling it and auditing what it did in one transaction (``settle``).

An owner is ``host:pid:start`` where ``start`` is the process's start time in clock ticks since
boot (``/proc/PID/stat`` field 22): a pid reused by another process is not mistaken for the
owner. An owner on another host is taken as gone once its intent is older than the lease
(``LEASE_SECONDS``), which is longer than any operation's own timeout.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from ca.core.errors import JtcaError
from ca.core.owners import owner_alive as owner_alive
from ca.core.owners import this_owner
from ca.log.entry import canonical
from ca.store.db import transaction
from ca.store.models import Intent

OPEN: Final = "open"
COMPLETED: Final = "completed"
ROLLED_FORWARD: Final = "rolled-forward"
ROLLED_BACK: Final = "rolled-back"
ENDED: Final = (COMPLETED, ROLLED_FORWARD, ROLLED_BACK)


class IntentBusy(JtcaError):
    """The same operation on the same subject is under way in a live process."""

    title = "Operation under way"
    exit_code = 75


class IntentError(JtcaError):
    """An intent that cannot be settled as asked (already settled, unknown)."""

    title = "Intent"
    exit_code = 5


@dataclass(frozen=True, slots=True)
class IntentRef:
    """An intent as read: what recovery needs to finish or undo the operation."""

    id: int
    operation: str
    subject: str
    state: str
    owner: str
    actor: str
    plan: Mapping[str, Any]
    progress: Mapping[str, Any]
    began_at: int
    ended_at: int | None
    outcome: str | None


def _ref(row: Intent) -> IntentRef:
    return IntentRef(
        id=row.id or 0,
        operation=row.operation,
        subject=row.subject,
        state=row.state,
        owner=row.owner,
        actor=row.actor,
        plan=json.loads(row.plan),
        progress=json.loads(row.progress),
        began_at=row.began_at,
        ended_at=row.ended_at,
        outcome=row.outcome,
    )


def begin(
    engine: Engine,
    operation: str,
    subject: str,
    plan: Mapping[str, Any],
    *,
    actor: str,
    now: int,
    exclusive: bool = True,
) -> IntentRef:
    """Write the intent, committed, before anything is touched. With ``exclusive`` (the
    default), refused (IntentBusy) while another open intent exists for the same operation and
    subject: a live process is doing it, or a dead one left it for recovery (the message says
    which; ``ca.service.recovery.recover`` runs first in the use cases)."""
    with transaction(engine) as session:
        return begin_in(
            session, operation, subject, plan, actor=actor, now=now, exclusive=exclusive
        )


def begin_in(
    session: Session,
    operation: str,
    subject: str,
    plan: Mapping[str, Any],
    *,
    actor: str,
    now: int,
    exclusive: bool = True,
) -> IntentRef:
    """``begin`` inside the caller's transaction (a serial reserved and its intent together);
    the caller must commit before it touches a token or a file."""
    if exclusive:
        for other in session.exec(
            select(Intent)
            .where(Intent.operation == operation)
            .where(Intent.subject == subject)
            .where(Intent.state == OPEN)
            .with_for_update()
        ).all():
            alive = owner_alive(other.owner, began_at=other.began_at, now=now)
            raise IntentBusy(
                f"{operation} on {subject} is under way (intent {other.id}, begun by "
                f"{other.actor})" + ("" if alive else ": its process is gone; run `jtca recover`")
            )
    row = Intent(
        operation=operation,
        subject=subject,
        owner=this_owner(),
        actor=actor,
        plan=canonical(dict(plan)),
        began_at=now,
    )
    session.add(row)
    session.flush()
    return _ref(row)


def note(engine: Engine, intent_id: int, **progress: Any) -> None:
    """Record steps done (merged into ``progress``), committed, before the next step."""
    with transaction(engine) as session:
        note_in(session, intent_id, **progress)


def note_in(session: Session, intent_id: int, **progress: Any) -> None:
    """``note`` inside the caller's transaction."""
    row = session.get(Intent, intent_id, with_for_update=True)
    if row is None or row.state != OPEN:
        raise IntentError(f"intent {intent_id} is not open")
    merged = dict(json.loads(row.progress))
    merged.update(progress)
    row.progress = canonical(merged)
    session.add(row)


def complete(session: Session, intent_id: int, *, now: int, outcome: str = "done") -> None:
    """Mark the intent completed, in the transaction that writes the operation's records."""
    _end(session, intent_id, COMPLETED, outcome, now)


def _end(session: Session, intent_id: int, state: str, outcome: str, now: int) -> None:
    row = session.get(Intent, intent_id, with_for_update=True)
    if row is None:
        raise IntentError(f"no intent {intent_id}")
    if row.state != OPEN:
        raise IntentError(f"intent {intent_id} is already {row.state}")
    row.state = state
    row.ended_at = now
    row.outcome = outcome[:1000]
    session.add(row)


def abandon(engine: Engine, intent_id: int, *, now: int, outcome: str) -> None:
    """The operation failed cleanly and undid its own work (an error, not a crash): the intent
    is rolled back by its owner. A no-op when the intent is no longer open."""
    with transaction(engine) as session:
        row = session.get(Intent, intent_id, with_for_update=True)
        if row is not None and row.state == OPEN:
            _end(session, intent_id, ROLLED_BACK, outcome, now)


def settle(
    session: Session,
    intent: IntentRef,
    *,
    state: str,
    outcome: str,
    now: int,
    actor: str,
    details: Mapping[str, Any] | None = None,
) -> None:
    """Recovery's end of an intent: rolled forward or back, audited, in the caller's
    transaction (the one that writes or removes the records it recovered)."""
    from ca.log import audit

    if state not in (ROLLED_FORWARD, ROLLED_BACK):
        raise IntentError(f"recovery settles as rolled-forward or rolled-back, not {state}")
    _end(session, intent.id, state, outcome, now)
    audit.append(
        session,
        actor=actor,
        action="intent.recover",
        subject=f"intent {intent.id}",
        details={
            "operation": intent.operation,
            "subject": intent.subject,
            "result": state,
            "outcome": outcome,
            "owner": intent.owner,
            "began_by": intent.actor,
            "began_at": intent.began_at,
            **dict(details or {}),
        },
        at=now,
    )


def get(session: Session, intent_id: int) -> IntentRef | None:
    row = session.get(Intent, intent_id)
    return None if row is None else _ref(row)


def open_intents(
    session: Session, *, operation: str | None = None, subject: str | None = None
) -> list[IntentRef]:
    """Every open intent (of an operation, on a subject), oldest first."""
    query = select(Intent).where(Intent.state == OPEN)
    if operation is not None:
        query = query.where(Intent.operation == operation)
    if subject is not None:
        query = query.where(Intent.subject == subject)
    return [_ref(r) for r in session.exec(query.order_by(col(Intent.id))).all()]


def orphaned(
    session: Session, *, now: int, operation: str | None = None, subject: str | None = None
) -> list[IntentRef]:
    """The open intents whose owner is gone: what recovery is for."""
    return [
        i
        for i in open_intents(session, operation=operation, subject=subject)
        if not owner_alive(i.owner, began_at=i.began_at, now=now)
    ]


def recent(session: Session, *, limit: int = 50) -> list[IntentRef]:
    """The newest intents, open or settled (``jtca recover --list``)."""
    rows = session.exec(select(Intent).order_by(col(Intent.id).desc()).limit(limit)).all()
    return [_ref(r) for r in rows]
