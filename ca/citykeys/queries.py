"""What officers ask of the city keys: expiring within N days, renewal due, dormant, suspended,
with open violations — filtered in SQL, so a scan of 100,000 keys stays a query, not a loop —
and the purge of records past their retention (第二十九条), which deletes nothing younger.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import ColumnElement, and_, false, func, or_
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from ca.citykeys.common import allowed, key_flags
from ca.citykeys.expiry import DAY
from ca.citykeys.lifecycle import KeyState
from ca.core.clock import iso_utc
from ca.log import audit
from ca.policy.in_force import load_policy
from ca.registry.divisions import default_divisions
from ca.store.db import transaction
from ca.store.models import CityKey, KeyCopy, KeyPackageRecord, UsageReport, UsageViolation
from policies.rules import Actor, Policy

LIVE: Final = [KeyState.PRE_ACTIVE.value, KeyState.ACTIVE.value, KeyState.SUSPENDED.value]
PURGE: Final = "city-key.purge-records"


@dataclass(frozen=True, slots=True)
class KeyFilter:
    province: str | None = None
    city: str | None = None
    key_class: str | None = None
    state: str | None = None
    expiring_days: int | None = None  # still valid and ending within N days
    renewal_due: bool = False
    dormant: bool = False
    suspended: bool = False
    violations: bool = False


def _dormant(policy: Policy, now: int) -> ColumnElement[bool]:
    per_class = [
        and_(
            col(CityKey.key_class) == c.name,
            col(CityKey.delivered_at) <= now - c.dormancy_days * DAY,
        )
        for c in policy.city_key_classes
        if c.dormancy_days is not None
    ]
    thresholds = [c.dormancy_days for c in policy.key_classes.values() if c.dormancy_days]
    loosest = (
        now - min(thresholds, default=0) * DAY
    )  # a range the (state, delivered_at) index serves
    return and_(
        col(CityKey.state) == KeyState.PRE_ACTIVE.value,
        col(CityKey.delivered_at) <= loosest,
        or_(false(), *per_class),
    )


def _renewal_due(policy: Policy, now: int) -> ColumnElement[bool]:
    per_class = [
        and_(
            col(CityKey.key_class) == c.name,
            col(CityKey.not_after) <= now + c.renewal_window_days * DAY,
        )
        for c in policy.city_key_classes
    ]
    widest = max((c.renewal_window_days for c in policy.city_key_classes), default=0)
    return and_(
        col(CityKey.state).in_(LIVE),
        col(CityKey.not_after).between(now, now + widest * DAY),  # one index range
        col(CityKey.successor_id).is_(None),
        or_(false(), *per_class),
    )


def conditions(chosen: KeyFilter, now: int) -> list[ColumnElement[bool]]:
    """The SQL conditions of ``chosen`` (all must hold)."""
    policy = load_policy()
    found: list[ColumnElement[bool]] = []
    if chosen.province is not None:
        found.append(col(CityKey.province) == chosen.province)
    if chosen.city is not None:
        found.append(col(CityKey.city) == chosen.city)
    if chosen.key_class is not None:
        found.append(col(CityKey.key_class) == chosen.key_class)
    if chosen.state is not None:
        found.append(col(CityKey.state) == chosen.state)
    if chosen.expiring_days is not None:
        found.append(col(CityKey.state).in_(LIVE))
        found.append(col(CityKey.not_after).between(now, now + chosen.expiring_days * DAY))
    if chosen.renewal_due:
        found.append(_renewal_due(policy, now))
    if chosen.dormant:
        found.append(_dormant(policy, now))
    if chosen.suspended:
        found.append(col(CityKey.state) == KeyState.SUSPENDED.value)
    if chosen.violations:
        found.append(col(CityKey.open_violations) > 0)
    return found


def find_keys(
    session: Session, chosen: KeyFilter, *, now: int, limit: int | None = None
) -> list[CityKey]:
    """The keys matching ``chosen``, soonest end first. Without a limit the rows are sorted
    here, not in SQL: a planner without statistics would otherwise walk the whole not_after
    index to avoid a sort and ignore the selective filter."""
    query = select(CityKey).where(*conditions(chosen, now))
    if limit is not None:
        return list(
            session.exec(query.order_by(col(CityKey.not_after), col(CityKey.id)).limit(limit))
        )
    return sorted(session.exec(query), key=lambda k: (k.not_after, k.id or 0))


SORT_COLUMNS: Final[dict[str, Any]] = {
    "id": CityKey.id,
    "label": CityKey.label,
    "city": CityKey.city,
    "city_name": CityKey.city,
    "class": CityKey.key_class,
    "state": CityKey.state,
    "stage": CityKey.stage,
    "not_after": CityKey.not_after,
    "days_left": CityKey.not_after,
}


def text_condition(text: str) -> ColumnElement[bool] | None:
    """Free text over the label, the city code and the city's name (names resolved to codes)."""
    needle = text.strip()
    if not needle:
        return None
    codes = [d.code for d in default_divisions().by_code.values() if d.is_city and needle in d.name]
    found: list[ColumnElement[bool]] = [
        col(CityKey.label).contains(needle, autoescape=True),
        col(CityKey.city).contains(needle, autoescape=True),
    ]
    if codes:
        found.append(col(CityKey.city).in_(codes))
    return or_(*found)


def find_page(
    session: Session,
    chosen: KeyFilter,
    *,
    now: int,
    text: str = "",
    sort: str = "not_after",
    descending: bool = False,
    limit: int = 500,
) -> tuple[list[CityKey], int]:
    """One page of the keys matching ``chosen`` and ``text``, sorted by ``sort`` (a key of
    SORT_COLUMNS; ties by id), and how many match in all — both in SQL."""
    if sort not in SORT_COLUMNS:
        raise ValueError(f"sort {sort!r}: one of {', '.join(SORT_COLUMNS)}")
    where = conditions(chosen, now)
    extra = text_condition(text)
    if extra is not None:
        where.append(extra)
    column = col(SORT_COLUMNS[sort])
    order = [column.desc() if descending else column]
    if sort != "id":
        order.append(col(CityKey.id).desc() if descending else col(CityKey.id))
    total = int(session.exec(select(func.count()).select_from(CityKey).where(*where)).one())
    keys = list(session.exec(select(CityKey).where(*where).order_by(*order).limit(limit)))
    return keys, total


def keys_by_id(session: Session, key_ids: Sequence[int]) -> dict[int, CityKey]:
    """The keys of ``key_ids`` that exist, by id (one query)."""
    if not key_ids:
        return {}
    found = session.exec(select(CityKey).where(col(CityKey.id).in_(list(set(key_ids)))))
    return {k.id: k for k in found if k.id is not None}


def count_keys(session: Session, chosen: KeyFilter, *, now: int) -> int:
    query = select(func.count()).select_from(CityKey).where(*conditions(chosen, now))
    return int(session.exec(query).one())


def summary(session: Session, *, now: int, province: str | None = None) -> dict[str, int]:
    """The dashboard's counts, each one SQL count."""
    base = KeyFilter(province=province)
    counts = {
        "total": count_keys(session, base, now=now),
        "expiring_30": count_keys(session, KeyFilter(province=province, expiring_days=30), now=now),
        "expiring_90": count_keys(session, KeyFilter(province=province, expiring_days=90), now=now),
        "renewal_due": count_keys(session, KeyFilter(province=province, renewal_due=True), now=now),
        "dormant": count_keys(session, KeyFilter(province=province, dormant=True), now=now),
        "suspended": count_keys(session, KeyFilter(province=province, suspended=True), now=now),
        "violations": count_keys(session, KeyFilter(province=province, violations=True), now=now),
    }
    by_state = dict(
        session.exec(
            select(CityKey.state, func.count())
            .where(*conditions(base, now))
            .group_by(col(CityKey.state))
        ).all()
    )
    for state in KeyState:
        counts[f"state_{state.value}"] = int(by_state.get(state.value, 0))
    return counts


def key_view(key: CityKey, now: int) -> dict[str, Any]:
    """A key as JSON for people and scripts (times ISO-8601 UTC)."""
    city = default_divisions().city(key.city)

    def when(value: int | None) -> str | None:
        return iso_utc(value) if value is not None else None

    return {
        "id": key.id,
        "label": key.label,
        "city": key.city,
        "city_name": city.name if city else "",
        "province": key.province,
        "class": key.key_class,
        "kind": key.kind,
        "generation": key.generation,
        "application": key.application_id,
        "state": key.state,
        "stage": key.stage,
        "flags": key_flags(key, now),
        "not_before": when(key.not_before),
        "not_after": when(key.not_after),
        "days_left": (key.not_after - now) // DAY,
        "delivered_at": when(key.delivered_at),
        "installed_at": when(key.installed_at),
        "activated_at": when(key.activated_at),
        "first_use": when(key.first_use),
        "last_use": when(key.last_use),
        "predecessor": key.predecessor_id,
        "successor": key.successor_id,
        "supersede_at": when(key.supersede_at),
        "reason": key.reason,
        "destroy_after": when(key.destroy_after),
        "destroyed_at": when(key.destroyed_at),
        "open_violations": key.open_violations,
        "public_key": key.public_key,
        "check_value": key.check_value,
    }


# -- retention (第二十九条) -----------------------------------------------------------------
def add_years(moment: int, years: int) -> int:
    """The same calendar day ``years`` later (29 February → 28 February)."""
    when = datetime.fromtimestamp(moment, UTC)
    try:
        later = when.replace(year=when.year + years)
    except ValueError:
        later = when.replace(year=when.year + years, day=28)
    return int(later.timestamp())


def retained_until(key: CityKey, policy: Policy | None = None) -> int:
    """A key record is kept ``record_years`` after the later of its end and its destruction."""
    years = (policy or load_policy()).retention.record_years
    return add_years(max(key.not_after, key.destroyed_at or 0, key.state_changed_at), years)


@dataclass(frozen=True, slots=True)
class Purged:
    keys: tuple[str, ...]
    usage_reports: int


def purge_records(engine: Engine, actor: Actor, *, now: int) -> Purged:
    """Delete the records whose retention has ended: key records (with their copies, packages
    and violations) of keys whose material is destroyed, ``record_years`` after; usage reports
    (transaction data) ``transaction_years`` after import. Nothing younger is touched; the
    audit log itself is never purged. Audited."""
    policy = load_policy()
    allowed(actor, PURGE, "110000", None, now)
    with transaction(engine) as session:
        destroyed = session.exec(
            select(CityKey).where(CityKey.state == KeyState.DESTROYED.value).with_for_update()
        ).all()
        due = [k for k in destroyed if retained_until(k, policy) < now]
        for key in due:
            for table in (KeyCopy, KeyPackageRecord, UsageViolation):
                for row in session.exec(select(table).where(table.city_key_id == key.id)):
                    session.delete(row)
            session.delete(key)
        reports = [
            r
            for r in session.exec(select(UsageReport))
            if add_years(r.imported_at, policy.retention.transaction_years) < now
        ]
        for report in reports:
            session.delete(report)
        audit.append(
            session,
            actor=actor.id,
            action=PURGE,
            subject="records past retention",
            details={
                "keys": [k.label for k in due],
                "usage_reports": [r.sha256 for r in reports],
                "record_years": policy.retention.record_years,
                "transaction_years": policy.retention.transaction_years,
            },
            at=now,
        )
        return Purged(tuple(k.label for k in due), len(reports))
