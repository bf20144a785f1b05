"""Importing activation and usage reports from the data exchange (第十条, 第十一条).

Rows are parsed by ``ca.citykeys.usage_report`` (malformed rows refused one by one with their line
numbers; a
use reported after the import is refused). Good rows are kept whatever the bad ones do: each
known key's first and last use are updated and an installed key's first use activates it. A
row is recorded as a violation, flagging the key for suspension, when it shows the key used
outside its granted city or region (the use still counts: the key is active, and suspendable),
used after it was revoked, deactivated or destroyed, used before it was generated, or used
before it reached the city (still in the ministry's or the province's token) — those last two
are not uses of the key as issued and change nothing on it but the flag. A provincial officer
imports only rows of their own province; other rows are refused (``deny/other-province``) like
malformed ones. One report is imported once (by its SHA-256); an empty one records nothing.
All of it is one transaction, audited.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Final

from sqlalchemy.engine import Engine
from sqlmodel import col, select

from ca.citykeys.common import CityKeyError, allowed, apply_event
from ca.citykeys.lifecycle import KeyEvent, KeyState
from ca.citykeys.usage_report import (
    RowError,
    UsageRow,
    Violation,
    parse_usage_report,
    scope_violations,
)
from ca.citykeys.workflow import INSTALLED
from ca.core.clock import iso_utc
from ca.log import audit
from ca.policy.authorization import PolicyDenied
from ca.store.db import transaction
from ca.store.models import CityKey, UsageReport, UsageViolation
from hsm.pkcs11.uri import Pkcs11Uri, UriError
from policies.rules import Actor, province_of

IMPORT_USAGE: Final = "city-key.usage-import"
_ENDED: Final = (KeyState.REVOKED.value, KeyState.DEACTIVATED.value, KeyState.DESTROYED.value)


@dataclass(slots=True)
class UsageImport:
    report: str  # SHA-256 of the file
    accepted: int = 0
    refused: list[RowError] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)
    activated: list[str] = field(default_factory=list)


def _label_of(ref: str) -> str:
    """A report names a key by its label or by a PKCS#11 URI of one of its copies."""
    if ref.startswith("pkcs11:"):
        try:
            return Pkcs11Uri.parse(ref).object or ref
        except UriError:
            return ref
    return ref


def _suspicious(key: CityKey, row: UsageRow) -> str | None:
    """Why a row of a known key is a violation by time or place in the key's life, if it is."""
    if row.first_use < key.created_at:
        return "used-before-generation"
    if key.stage != INSTALLED:
        return "used-before-installation"  # still in the ministry's or the province's token
    if key.state in _ENDED and row.last_use > key.state_changed_at:
        return f"used-after-{key.state}"
    return None


def import_usage(
    engine: Engine, actor: Actor, text: str, kind: str, *, source: str, now: int
) -> UsageImport:
    # surrogatepass: a lone surrogate is refused by the parser (naming its offset), not here
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    rows, errors = parse_usage_report(text, kind, now=now, source=source)
    result = UsageImport(digest, refused=list(errors))
    mine: list[UsageRow] = []
    for row in rows:
        try:
            allowed(actor, IMPORT_USAGE, row.city, None, now)
        except PolicyDenied as exc:  # the row is outside the officer's scope
            result.refused.append(RowError(row.line, "city", exc.message))
            continue
        mine.append(row)
    result.accepted = len(mine)
    if not rows and not errors:
        return result  # an empty report: nothing to import, nothing to record
    with transaction(engine) as session:
        earlier = session.exec(select(UsageReport).where(UsageReport.sha256 == digest)).first()
        if earlier is not None:
            raise CityKeyError(
                f"this report ({source}) was imported on {iso_utc(earlier.imported_at)} by "
                f"{earlier.imported_by}",
                title="Report already imported",
            )
        labels = {_label_of(r.key) for r in mine}
        keys = {
            k.label: k
            for k in session.exec(
                select(CityKey).where(col(CityKey.label).in_(sorted(labels))).with_for_update()
            )
        }
        grants = {r.key: keys[_label_of(r.key)].city for r in mine if _label_of(r.key) in keys}
        found = scope_violations(mine, grants)
        flagged = {id(v.row) for v in found}
        for row in sorted(mine, key=lambda r: r.first_use):
            key = keys.get(_label_of(row.key))
            if key is None:
                continue
            suspicious = _suspicious(key, row)
            if suspicious and id(row) not in flagged:
                found.append(Violation(row, key.city, suspicious))
                flagged.add(id(row))
            if suspicious in ("used-before-generation", "used-before-installation"):
                continue  # not a use of this key as issued: nothing of it is recorded on it
            key.first_use = min(key.first_use or row.first_use, row.first_use)
            key.last_use = max(key.last_use or row.last_use, row.last_use)
            if key.state == KeyState.PRE_ACTIVE.value:
                # a reported use is a use, in scope or not: the key is active (and, when out of
                # scope, flagged for suspension — which needs an active key)
                apply_event(
                    session,
                    key,
                    KeyEvent.ACTIVATE,
                    actor=actor.id,
                    now=now,
                    details={"first_use": iso_utc(row.first_use), "report": digest},
                )
                key.activated_at = row.first_use
                result.activated.append(key.label)
            session.add(key)
        for violation in found:
            row = violation.row
            key = keys.get(_label_of(row.key))
            session.add(
                UsageViolation(
                    city_key_id=key.id if key else None,
                    report=digest,
                    line=row.line,
                    key_ref=row.key,
                    city=row.city,
                    used_in=row.used_in,
                    first_use=row.first_use,
                    last_use=row.last_use,
                    reason=violation.reason,
                    found_at=now,
                )
            )
            if key is not None:
                key.open_violations += 1
                session.add(key)
            audit.append(
                session,
                actor=actor.id,
                action="city-key.violation",
                subject=key.label if key else row.key,
                details={
                    "reason": violation.reason,
                    "line": row.line,
                    "granted": violation.granted_city,
                    "reported_city": row.city,
                    "used_in": row.used_in,
                    "province_of_use": province_of(row.used_in),
                    "report": digest,
                },
                at=now,
            )
        result.violations = found
        session.add(
            UsageReport(
                sha256=digest,
                source=source[:500],
                imported_at=now,
                imported_by=actor.id,
                rows=len(rows) + len(errors),
                refused=len(result.refused),
                violations=len(found),
            )
        )
        audit.append(
            session,
            actor=actor.id,
            action=IMPORT_USAGE,
            subject=f"usage report {digest[:16]}",
            details={
                "source": source,
                "sha256": digest,
                "accepted": result.accepted,
                "refused": [str(e) for e in result.refused],
                "violations": len(found),
                "activated": result.activated,
            },
            at=now,
        )
    return result
