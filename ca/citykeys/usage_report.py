"""Activation and usage reports from the data exchange (CSV or JSON), checked row by row.

A report says, per key, where and when it was used: ``key`` (the key's URI or label), ``city``
(the 6-digit GB/T 2260 code the key is granted to, as the reporter sees it), ``first_use`` and
``last_use`` (ISO-8601 UTC), and ``used_in`` (the GB/T 2260 code of the place it was used).
Malformed rows are refused one by one with their line number; good rows are kept whatever the
bad ones do. A key used outside its granted city's region is a scope violation (第十条: keys
are used only where granted, never across regions) and is flagged for suspension (第十一条).
The file is read by ``policies.bounded`` first (size, UTF-8, nesting depth, digits of a number,
CSV field size: issue #14): a hostile file is refused whole with the place named, as one
``RowError`` of field ``(file)`` (or the CSV column), never an exception; a CSV record with a
field over the limit or a NUL byte is refused alone, the good rows kept.
Pure: the caller reads the file and supplies the grants.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from policies.bounded import BadFile, load_json, read_csv

COLUMNS: Final = ("key", "city", "first_use", "last_use", "used_in")


@dataclass(frozen=True, slots=True)
class UsageRow:
    line: int
    key: str
    city: str
    first_use: int  # Unix seconds
    last_use: int
    used_in: str


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    field: str
    problem: str

    def __str__(self) -> str:
        return f"line {self.line}, {self.field}: {self.problem}"


@dataclass(frozen=True, slots=True)
class Violation:
    row: UsageRow
    granted_city: str
    reason: str  # scope-violation | unknown-key | city-mismatch | used-before-… | used-after-…


def parse_time(text: str) -> int:
    """ISO-8601 with a timezone (a trailing Z is UTC) to Unix seconds; ValueError otherwise."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError("needs a timezone (e.g. a trailing Z)")
    return int(moment.astimezone(UTC).timestamp())


def _code(text: str) -> bool:
    return len(text) == 6 and text.isdigit() and text.isascii()


MAX_KEY_REF: Final = 200  # a label (≤ 100) or a PKCS#11 URI naming one
SKEW: Final = 300  # seconds a reporter's clock may run ahead of ours


def _text(raw: Mapping[str, Any], field: str) -> str | RowError | None:
    value = raw.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        return RowError(0, field, f"must be text, got {type(value).__name__}")
    return str(value).strip()


def _row(line: int, raw: Mapping[str, Any], now: int | None = None) -> UsageRow | RowError:
    values: dict[str, str] = {}
    for column in COLUMNS:
        value = _text(raw, column)
        if isinstance(value, RowError):
            return RowError(line, value.field, value.problem)
        if not value:
            return RowError(line, column, "missing")
        values[column] = value
    key = values["key"]
    if len(key) > MAX_KEY_REF:
        return RowError(
            line, "key", f"{len(key)} characters: a key label or URI is at most {MAX_KEY_REF}"
        )
    if not key.isprintable():
        return RowError(line, "key", f"{key[:40]!r}: control characters are not allowed")
    for field in ("city", "used_in"):
        if not _code(values[field]):
            return RowError(line, field, f"{values[field][:40]!r} is not a 6-digit GB/T 2260 code")
    times = {}
    for field in ("first_use", "last_use"):
        try:
            times[field] = parse_time(values[field])
        except (ValueError, OverflowError) as exc:
            return RowError(line, field, f"{values[field][:40]!r}: not an ISO-8601 time ({exc})")
    if times["first_use"] > times["last_use"]:
        return RowError(line, "last_use", "earlier than first_use")
    if now is not None and times["last_use"] > now + SKEW:
        return RowError(
            line,
            "last_use",
            f"{values['last_use']} is after the import: a use cannot be reported before it happens",
        )
    return UsageRow(
        line,
        key,
        values["city"],
        times["first_use"],
        times["last_use"],
        values["used_in"],
    )


def refused(exc: BadFile) -> RowError:
    """A whole file refused by ``policies.bounded``, as the one row error that says where: its
    line is the row error's line, the column and byte offset lead the problem."""
    where = f"column {exc.column}" if exc.column is not None else ""
    if exc.offset is not None:
        where = f"{where} (byte offset {exc.offset})" if where else f"byte offset {exc.offset}"
    problem = f"{where}: {exc.problem}" if where else exc.problem
    return RowError(exc.line or 1, exc.field or "(file)", problem)


def parse_usage_report(
    text: str | bytes, kind: str, *, now: int | None = None, source: str = "(report)"
) -> tuple[list[UsageRow], list[RowError]]:
    """``kind`` is ``csv`` (header row with COLUMNS) or ``json`` (an array of objects). With
    ``now``, a use reported after it is refused (``last_use``)."""
    rows: list[UsageRow] = []
    errors: list[RowError] = []

    def keep(result: UsageRow | RowError) -> None:
        if isinstance(result, UsageRow):
            rows.append(result)
        else:
            errors.append(result)

    if kind == "csv":
        if not text.strip():
            return [], [
                RowError(1, COLUMNS[0], "column missing from the header (the file is empty)")
            ]
        try:
            table = read_csv(text, source=source)
        except BadFile as exc:
            return [], [refused(exc)]
        absent = [c for c in COLUMNS if c not in table.header]
        if absent:
            return [], [RowError(1, absent[0], "column missing from the header")]
        for row in table.rows:
            if row.problem is not None:  # this row alone: a field too long, a NUL, not CSV
                errors.append(refused(row.problem))
                continue
            if len(row.values) > len(table.header):
                errors.append(
                    RowError(row.line, "(row)", "more values than the header has columns")
                )
                continue
            keep(_row(row.line, table.record(row), now))
    elif kind == "json":
        try:
            items = load_json(text, source=source)
        except BadFile as exc:
            return [], [refused(exc)]
        if not isinstance(items, list):
            return [], [RowError(1, "(file)", "a JSON report is an array of objects")]
        for index, item in enumerate(items, 1):
            if not isinstance(item, dict):
                errors.append(RowError(index, "(row)", "not an object"))
                continue
            keep(_row(index, item, now))
    else:
        raise ValueError(f"report kind {kind!r}: csv or json")
    return rows, errors


def region_of(code: str) -> str:
    """The prefecture-level region a GB/T 2260 code belongs to (its first four digits + 00)."""
    return code[:4] + "00"


def scope_violations(rows: list[UsageRow], grants: Mapping[str, str]) -> list[Violation]:
    """Rows whose key was used outside the city it is granted to. ``grants`` maps a key's
    URI or label to its granted 6-digit city code. For a 直辖市 (a province-level city) the whole
    municipality is its region."""
    found = []
    for row in rows:
        granted = grants.get(row.key)
        if granted is None:
            found.append(Violation(row, "", "unknown-key"))
            continue
        if row.city != granted:
            found.append(Violation(row, granted, "city-mismatch"))
            continue
        municipality = granted.endswith("0000")
        inside = (
            (row.used_in[:2] == granted[:2])
            if municipality
            else (region_of(row.used_in) == region_of(granted))
        )
        if not inside:
            found.append(Violation(row, granted, "scope-violation"))
    return found
