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
import json
from dataclasses import dataclass, field
from typing import Any, Final

from pydantic import ValidationError
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from ca.citykeys.usage_report import RowError, parse_time, refused
from ca.core.clock import iso_utc
from ca.core.errors import JtcaError
from ca.lists.asn1 import ListType
from ca.log import audit
from ca.ops.operators import (
    STATEMENT_VERSION,
    AckReceipt,
    AckStatement,
    SignedAck,
    possession_message,
    signed_message,
    statement_text,
)
from ca.policy.authorization import require
from ca.store.db import transaction
from ca.store.models import ListAcknowledgment, ListOperator, ListVersion
from hsm.errors import InvalidSignature
from hsm.sm.sm2 import SM2PublicKey
from hsm.sm.sm3 import sm3
from policies.bounded import BadFile, load_json, read_csv
from policies.rules import Actor, Subject, is_division_code, is_province_code, province_of

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


# -- operators with a key and their signed acknowledgments (issue #16, point 2) --------------------
SIGNED_ACK: Final = "list.signed-ack"  # the audit action of an acknowledgment posted and verified
STATEMENT_WINDOW: Final = 86400  # a statement signed longer ago than this is refused as stale


class AckRefused(AckError):
    """A signed acknowledgment the service will not take: the title says which check."""

    exit_code = 4

    def __init__(self, message: str, title: str, *, status: int = 422) -> None:
        super().__init__(message, title)
        self.http_status = status


def _point(public_key: str, field_name: str) -> SM2PublicKey:
    try:
        data = bytes.fromhex(public_key)
        if len(data) != 65 or data[0] != 4:
            raise ValueError("not an uncompressed point (65 bytes starting 04)")
        return SM2PublicKey.from_bytes(data)
    except (ValueError, JtcaError) as exc:
        raise AckError(
            f"{field_name} {_shown(public_key)}: not an SM2 public key ({exc})"
        ) from None


def _der_signature(text: str, field_name: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise AckError(f"{field_name}: not hex ({_shown(text)})") from None


def register_operator_key(
    engine: Engine,
    actor: Actor,
    *,
    operator_id: str,
    name: str,
    province: str,
    cities: list[str],
    public_key: str,
    proof: str,
    now: int,
) -> ListOperator:
    """Register an operator that signs its acknowledgments: its SM2 key (with the proof that
    whoever registers it holds the key) and the cities it serves, all in ``province``."""
    operator_id = operator_id.strip()
    if not operator_id or len(operator_id) > 100 or not operator_id.isprintable():
        raise AckError(f"operator id {_shown(operator_id)}: 1-100 printable characters")
    if not is_province_code(province):
        raise AckError(f"province {_shown(province)}: a GB/T 2260 province code (NN0000)")
    for city in cities:
        if not is_division_code(city) or city.endswith("0000"):
            raise AckError(f"city {_shown(city)}: a GB/T 2260 city code (six digits, not NN0000)")
        if province_of(city) != province:
            raise AckError(f"city {city} is not in province {province}")
    if len(set(cities)) != len(cities):
        raise AckError("cities: a city is named twice")
    require(actor, REGISTER, Subject(province=province), now)
    public_key = public_key.lower()
    key = _point(public_key, "public key")
    try:
        key.verify_der(_der_signature(proof, "proof"), possession_message(operator_id, public_key))
    except InvalidSignature:
        raise AckRefused(
            f"the proof does not verify under public key {public_key[:18]}…: the key's holder "
            "signs the operator id and the key (jtca operator keygen prints the proof)",
            "Proof of possession refused",
        ) from None
    with transaction(engine) as session:
        if session.get(ListOperator, operator_id) is not None:
            raise AckError(f"operator {operator_id} is already registered")
        taken = session.exec(
            select(ListOperator.operator_id).where(ListOperator.public_key == public_key)
        ).first()
        if taken is not None:
            raise AckError(f"this public key is already operator {taken}'s")
        row = ListOperator(
            operator_id=operator_id,
            name=name or operator_id,
            province=province,
            registered_at=now,
            registered_by=actor.id,
            public_key=public_key,
            cities=",".join(cities),
        )
        session.add(row)
        audit.append(
            session,
            actor=actor.id,
            action=REGISTER,
            subject=f"operator {operator_id}",
            details={
                "name": row.name,
                "province": province,
                "cities": cities,
                "public_key": public_key,
                "key_sm3": sm3(bytes.fromhex(public_key)).hex(),
            },
            at=now,
        )
        session.flush()
        session.expunge(row)
        return row


def cities_of(row: ListOperator) -> list[str]:
    return [c for c in (row.cities or "").split(",") if c]


def _statement(text: str) -> AckStatement:
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise AckRefused(f"statement: not JSON ({exc})", "Bad statement") from None
    except RecursionError:
        raise AckRefused("statement: not JSON (nested too deep)", "Bad statement") from None
    if not isinstance(raw, dict):
        raise AckRefused("statement: a JSON object", "Bad statement")
    try:
        statement = AckStatement.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "(statement)"
        value = _shown(str(first.get("input", "")))
        raise AckRefused(
            f"statement field {where} = {value}: {first.get('msg', '')}", "Bad statement"
        ) from None
    if statement.v != STATEMENT_VERSION:
        raise AckRefused(f"statement field v = {statement.v}: version 1 only", "Bad statement")
    if statement_text(statement) != text:
        raise AckRefused(
            "statement: not in its canonical form (sorted keys, no spaces, ASCII, every field): "
            "sign and post exactly the text ca.ops.operators.statement_text makes",
            "Bad statement",
        )
    return statement


def accept_signed_ack(engine: Engine, body: SignedAck, *, now: int) -> AckReceipt:
    """Check a signed acknowledgment and keep it with its audit entry, or refuse it whole."""
    statement = _statement(body.statement)
    try:
        return _keep(engine, body, statement, now=now)
    except IntegrityError:  # the same nonce or version posted at the same moment, twice
        raise AckRefused(
            f"operator {statement.operator} posted {statement.list_type} {statement.sequence} "
            "(or this nonce) twice at once; the first was kept",
            "Already acknowledged",
            status=409,
        ) from None


def _keep(engine: Engine, body: SignedAck, statement: AckStatement, *, now: int) -> AckReceipt:
    digest = sm3(body.statement.encode()).hex()
    with transaction(engine) as session:
        operator = session.get(ListOperator, statement.operator)
        if operator is None or operator.public_key is None:
            raise AckRefused(
                f"operator {_shown(statement.operator)} is not registered with a key",
                "Unknown operator",
                status=403,
            )
        try:
            SM2PublicKey.from_bytes(bytes.fromhex(operator.public_key)).verify_der(
                _der_signature(body.signature, "signature"), signed_message(body.statement)
            )
        except (InvalidSignature, AckError):
            raise AckRefused(
                f"the signature does not verify under operator {operator.operator_id}'s key",
                "Invalid signature",
                status=403,
            ) from None
        if statement.signed_at > now + SKEW:
            raise AckRefused(
                f"signed_at {iso_utc(statement.signed_at)} is in the future (now {iso_utc(now)})",
                "Statement from the future",
            )
        if statement.signed_at < now - STATEMENT_WINDOW:
            raise AckRefused(
                f"signed_at {iso_utc(statement.signed_at)} is more than a day ago: sign a new "
                "statement",
                "Stale statement",
            )
        if statement.loaded_at > statement.signed_at + SKEW:
            raise AckRefused(
                f"loaded_at {iso_utc(statement.loaded_at)} is after the statement was signed",
                "Load in the future",
            )
        served = set(cities_of(operator))
        outside = [c for c in statement.cities if c not in served]
        if outside:
            raise AckRefused(
                f"city {outside[0]} is not among the cities operator {operator.operator_id} "
                f"serves ({', '.join(sorted(served)) or 'none registered'})",
                "Outside the operator's scope",
                status=403,
            )
        replay = session.exec(
            select(ListAcknowledgment.id)
            .where(ListAcknowledgment.operator_id == operator.operator_id)
            .where(ListAcknowledgment.nonce == statement.nonce)
        ).first()
        if replay is not None:
            raise AckRefused(
                f"nonce {statement.nonce} was already used by operator {operator.operator_id}",
                "Replayed statement",
                status=409,
            )
        version = session.exec(
            select(ListVersion)
            .where(ListVersion.list_type == statement.list_type)
            .where(ListVersion.sequence == statement.sequence)
        ).first()
        if version is None:
            raise AckRefused(
                f"{statement.list_type} {statement.sequence} was never published", "Unknown version"
            )
        if version.sm3 != statement.sm3:
            raise AckRefused(
                f"sm3 {statement.sm3} is not that of {statement.list_type} {statement.sequence} "
                f"({version.sm3}): the terminals loaded other bytes",
                "Not the published list",
            )
        if statement.loaded_at < version.published_at:
            raise AckRefused(
                f"loaded_at {iso_utc(statement.loaded_at)} is before {statement.list_type} "
                f"{statement.sequence} was published ({iso_utc(version.published_at)})",
                "Load before publication",
            )
        already = session.exec(
            select(ListAcknowledgment.id)
            .where(ListAcknowledgment.operator_id == operator.operator_id)
            .where(ListAcknowledgment.list_type == statement.list_type)
            .where(ListAcknowledgment.sequence == statement.sequence)
        ).first()
        if already is not None:
            raise AckRefused(
                f"operator {operator.operator_id} already acknowledged {statement.list_type} "
                f"{statement.sequence}",
                "Already acknowledged",
                status=409,
            )
        session.add(
            ListAcknowledgment(
                operator_id=operator.operator_id,
                list_type=statement.list_type,
                sequence=statement.sequence,
                loaded_at=statement.loaded_at,
                terminals=statement.terminals,
                reported_at=now,
                report=digest,
                nonce=statement.nonce,
                list_sm3=statement.sm3,
                signed_at=statement.signed_at,
                signature=body.signature.lower(),
            )
        )
        audit.append(
            session,
            actor=f"operator:{operator.operator_id}",
            action=SIGNED_ACK,
            subject=f"{statement.list_type} {statement.sequence}",
            details={
                "statement": body.statement,
                "signature": body.signature.lower(),
                "statement_sm3": digest,
            },
            at=now,
        )
    return AckReceipt(
        operator_id=statement.operator,
        list_type=statement.list_type,
        sequence=statement.sequence,
        terminals=statement.terminals,
        loaded_at=statement.loaded_at,
        received_at=now,
        statement_sm3=digest,
    )
