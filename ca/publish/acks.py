"""Operators report that they loaded a list version into their terminals (第十二条: within 15
days of publication, and report back); who is overdue.

A report is CSV (header ``operator,list,sequence,loaded_at[,terminals]``) or JSON (an array of
objects with those keys). ``list`` is ``issuer-whitelist``, ``city-list`` or ``ca-key-list``;
``loaded_at`` ISO-8601 with a timezone. Rows are checked one by one — unknown operator, unknown
list or version, a load before the version was published or in the future, a version already
reported — and refused with their line number; good rows are kept. Loading version N counts for
every earlier version of that list. One report file is imported once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from ca import audit
from ca.authorization import require
from ca.clock import iso_utc
from ca.errors import JtcaError
from ca.lists.asn1 import ListType
from ca.store.db import transaction
from ca.store.models import ListAcknowledgment, ListOperator, ListVersion
from ca.usage import RowError, parse_time, refused
from policies.bounded import BadFile, load_json, read_csv
from policies.rules import Actor, Subject, is_province_code

LOAD_DEADLINE_DAYS: Final = 15  # 第十二条
DAY: Final = 86400
SKEW: Final = 300
REGISTER: Final = "list.register-operator"
IMPORT: Final = "list.import-ack"
COLUMNS: Final = ("operator", "list", "sequence", "loaded_at")
MAX_NUMBER: Final = 18  # digits of a sequence or a terminal count (a database integer is 64 bits)


class AckError(JtcaError):
    title = "Acknowledgments"
    exit_code = 3


def register_operator(
    engine: Engine, actor: Actor, *, operator_id: str, name: str, province: str | None, now: int
) -> ListOperator:
    require(actor, REGISTER, Subject(), now)
    operator_id = operator_id.strip()
    if not operator_id or len(operator_id) > 100 or not operator_id.isprintable():
        raise AckError(f"operator id {operator_id!r}: 1-100 printable characters")
    if province is not None and not is_province_code(province):
        raise AckError(f"--province {province!r}: a GB/T 2260 province code (NN0000)")
    with transaction(engine) as session:
        if session.get(ListOperator, operator_id) is not None:
            raise AckError(f"operator {operator_id} is already registered")
        row = ListOperator(
            operator_id=operator_id,
            name=name or operator_id,
            province=province,
            registered_at=now,
            registered_by=actor.id,
        )
        session.add(row)
        audit.append(
            session,
            actor=actor.id,
            action=REGISTER,
            subject=f"operator {operator_id}",
            details={"name": row.name, "province": province},
            at=now,
        )
        session.flush()
        session.expunge(row)
        return row


@dataclass(slots=True)
class AckImport:
    report: str
    accepted: list[tuple[str, str, int]] = field(default_factory=list)
    refused: list[RowError] = field(default_factory=list)


def _rows(text: str, kind: str) -> tuple[list[tuple[int, dict[str, Any]]], list[RowError]]:
    """The report's rows with their line (CSV) or position (JSON), read by ``policies.bounded``:
    a file too big, not UTF-8, nested too deep, with a number too long or a field over the limit
    is refused whole, as one row error naming the place (issue #14)."""
    if kind == "csv":
        try:
            table = read_csv(text, source="(report)")
        except BadFile as exc:
            return [], [refused(exc)]
        absent = [c for c in COLUMNS if c not in table.header]
        if absent:
            return [], [RowError(1, absent[0], "column missing from the header")]
        good = [(row.line, table.record(row)) for row in table.rows if row.problem is None]
        bad = [refused(row.problem) for row in table.rows if row.problem is not None]
        return good, bad
    if kind == "json":
        try:
            items = load_json(text, source="(report)")
        except BadFile as exc:
            return [], [refused(exc)]
        if not isinstance(items, list):
            return [], [RowError(1, "(file)", "a JSON report is an array of objects")]
        rows, errors = [], []
        for index, item in enumerate(items, 1):
            if isinstance(item, dict):
                rows.append((index, item))
            else:
                errors.append(RowError(index, "(row)", "not an object"))
        return rows, errors
    raise AckError(f"report kind {_shown(kind)}: csv or json")


def _number(text: str) -> int | None:
    """A whole number in ASCII digits that fits the database, else None."""
    if not (text.isascii() and text.isdigit()) or len(text) > MAX_NUMBER:
        return None
    return int(text)


def _value(raw: Any) -> str:
    """A row's value as text: JSON numbers as their digits, anything else that is not text
    (a list, an object, true) as an empty value, refused as missing or not a number."""
    if isinstance(raw, bool) or raw is None:
        return ""
    if isinstance(raw, int | float | str):
        return str(raw).strip()  # a number has at most 40 digits (policies.bounded)
    return ""


def _shown(value: str) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def import_acks(
    engine: Engine, actor: Actor, text: str, kind: str, *, source: str, now: int
) -> AckImport:
    require(actor, IMPORT, Subject(), now)
    if kind not in ("csv", "json"):
        raise AckError(f"report kind {_shown(kind)}: csv or json")
    # surrogatepass: a lone surrogate is refused by the parser (naming its offset), not here
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    rows, errors = _rows(text, kind)
    result = AckImport(digest, refused=list(errors))
    with transaction(engine) as session:
        earlier = session.exec(
            select(ListAcknowledgment).where(ListAcknowledgment.report == digest)
        ).first()
        if earlier is not None:
            raise AckError(
                f"this report ({source}) was imported on {iso_utc(earlier.reported_at)}",
                title="Report already imported",
            )
        operators = {o.operator_id for o in session.exec(select(ListOperator))}
        seen: set[tuple[str, str, int]] = set()
        for line, raw in rows:
            values = {c: _value(raw.get(c)) for c in (*COLUMNS, "terminals")}
            missing = next((c for c in COLUMNS if not values[c]), None)
            if missing is not None:
                result.refused.append(RowError(line, missing, "missing"))
                continue
            if values["operator"] not in operators:
                result.refused.append(
                    RowError(line, "operator", f"{_shown(values['operator'])} is not registered")
                )
                continue
            try:
                list_type = ListType(values["list"])
            except ValueError:
                known = ", ".join(t.value for t in ListType)
                result.refused.append(
                    RowError(line, "list", f"{_shown(values['list'])} is not one of {known}")
                )
                continue
            sequence = _number(values["sequence"])
            if sequence is None:
                result.refused.append(
                    RowError(
                        line,
                        "sequence",
                        f"{_shown(values['sequence'])} is not a whole number of at most "
                        f"{MAX_NUMBER} digits",
                    )
                )
                continue
            try:
                loaded_at = parse_time(values["loaded_at"])
            except (ValueError, OverflowError) as exc:
                result.refused.append(
                    RowError(
                        line, "loaded_at", f"{_shown(values['loaded_at'])}: not ISO-8601 ({exc})"
                    )
                )
                continue
            terminals = None
            if values["terminals"]:
                terminals = _number(values["terminals"])
                if terminals is None:
                    result.refused.append(
                        RowError(
                            line,
                            "terminals",
                            f"{_shown(values['terminals'])}: a whole number of at most "
                            f"{MAX_NUMBER} digits",
                        )
                    )
                    continue
            version = session.exec(
                select(ListVersion)
                .where(ListVersion.list_type == list_type.value)
                .where(ListVersion.sequence == sequence)
            ).first()
            if version is None:
                result.refused.append(
                    RowError(line, "sequence", f"{list_type.value} {sequence} was never published")
                )
                continue
            if loaded_at < version.published_at:
                result.refused.append(
                    RowError(
                        line,
                        "loaded_at",
                        f"{values['loaded_at']} is before {list_type.value} {sequence} was "
                        f"published ({iso_utc(version.published_at)})",
                    )
                )
                continue
            if loaded_at > now + SKEW:
                result.refused.append(
                    RowError(line, "loaded_at", f"{values['loaded_at']} is in the future")
                )
                continue
            ident = (values["operator"], list_type.value, sequence)
            already = session.exec(
                select(ListAcknowledgment.id)
                .where(ListAcknowledgment.operator_id == ident[0])
                .where(ListAcknowledgment.list_type == ident[1])
                .where(ListAcknowledgment.sequence == sequence)
            ).first()
            if already is not None or ident in seen:
                result.refused.append(
                    RowError(line, "sequence", f"{ident[0]} already reported {ident[1]} {sequence}")
                )
                continue
            seen.add(ident)
            session.add(
                ListAcknowledgment(
                    operator_id=ident[0],
                    list_type=ident[1],
                    sequence=sequence,
                    loaded_at=loaded_at,
                    terminals=terminals,
                    reported_at=now,
                    report=digest,
                )
            )
            result.accepted.append(ident)
        audit.append(
            session,
            actor=actor.id,
            action=IMPORT,
            subject=f"acknowledgments {digest[:16]}",
            details={
                "source": source,
                "sha256": digest,
                "accepted": [list(a) for a in result.accepted],
                "refused": [str(e) for e in result.refused],
            },
            at=now,
        )
    return result


@dataclass(frozen=True, slots=True)
class Overdue:
    operator_id: str
    name: str
    list_type: str
    loaded: int | None  # the newest version it reported loading
    oldest_missing: int  # the oldest published version it has not loaded
    published_at: int
    days_since: int


def overdue(session: Session, *, now: int, days: int = LOAD_DEADLINE_DAYS) -> list[Overdue]:
    """Operators that have not reported loading a version published more than ``days`` ago."""
    loaded = {
        (op, lt): seq
        for op, lt, seq in session.exec(
            select(
                ListAcknowledgment.operator_id,
                ListAcknowledgment.list_type,
                func.max(ListAcknowledgment.sequence),
            ).group_by(col(ListAcknowledgment.operator_id), col(ListAcknowledgment.list_type))
        )
    }
    found = []
    operators = session.exec(select(ListOperator).order_by(col(ListOperator.operator_id))).all()
    for list_type in ListType:
        versions = session.exec(
            select(ListVersion)
            .where(ListVersion.list_type == list_type.value)
            .order_by(col(ListVersion.sequence))
        ).all()
        for operator in operators:
            have = loaded.get((operator.operator_id, list_type.value))
            for index, version in enumerate(versions):
                if have is not None and version.sequence <= have:
                    continue
                following = versions[index + 1] if index + 1 < len(versions) else None
                if following is not None and following.published_at <= operator.registered_at:
                    continue  # replaced before the operator joined: not theirs to load
                owed_from = max(version.published_at, operator.registered_at)
                if owed_from + days * DAY <= now:
                    found.append(
                        Overdue(
                            operator.operator_id,
                            operator.name,
                            list_type.value,
                            have,
                            version.sequence,
                            version.published_at,
                            (now - owed_from) // DAY,
                        )
                    )
                break  # the oldest version owed is the one to name
    return found
