"""Activation and usage reports from the data exchange (CSV or JSON), checked row by row.

A report says, per key, where and when it was used: ``key`` (the key's URI or label), ``city``
(the 6-digit GB/T 2260 code the key is granted to, as the reporter sees it), ``first_use`` and
``last_use`` (ISO-8601 UTC), and ``used_in`` (the GB/T 2260 code of the place it was used).
Malformed rows are refused one by one with their line number; good rows are kept whatever the
bad ones do. A key used outside its granted city's region is a scope violation (第十条: keys
are used only where granted, never across regions) and is flagged for suspension (第十一条).
Pure: the caller reads the file and supplies the grants.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

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
    reason: str  # scope-violation | unknown-key | city-mismatch


def _time(text: str) -> int:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError("needs a timezone (e.g. a trailing Z)")
    return int(moment.astimezone(UTC).timestamp())


def _code(text: str) -> bool:
    return len(text) == 6 and text.isdigit() and text.isascii()


def _row(line: int, raw: Mapping[str, Any]) -> UsageRow | RowError:
    missing = [c for c in COLUMNS if not str(raw.get(c) or "").strip()]
    if missing:
        return RowError(line, missing[0], "missing")
    values = {c: str(raw[c]).strip() for c in COLUMNS}
    for field in ("city", "used_in"):
        if not _code(values[field]):
            return RowError(line, field, f"{values[field]!r} is not a 6-digit GB/T 2260 code")
    times = {}
    for field in ("first_use", "last_use"):
        try:
            times[field] = _time(values[field])
        except ValueError as exc:
            return RowError(line, field, f"{values[field]!r}: not an ISO-8601 time ({exc})")
    if times["first_use"] > times["last_use"]:
        return RowError(line, "last_use", "earlier than first_use")
    return UsageRow(
        line,
        values["key"],
        values["city"],
        times["first_use"],
        times["last_use"],
        values["used_in"],
    )


def parse_usage_report(text: str, kind: str) -> tuple[list[UsageRow], list[RowError]]:
    """``kind`` is ``csv`` (header row with COLUMNS) or ``json`` (an array of objects)."""
    rows: list[UsageRow] = []
    errors: list[RowError] = []
    if kind == "csv":
        reader = csv.DictReader(io.StringIO(text))
        header = tuple(reader.fieldnames or ())
        absent = [c for c in COLUMNS if c not in header]
        if absent:
            return [], [RowError(1, absent[0], "column missing from the header")]
        for record in reader:
            result = _row(reader.line_num, record)
            (rows if isinstance(result, UsageRow) else errors).append(result)  # type: ignore[arg-type]
    elif kind == "json":
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            return [], [RowError(exc.lineno, "(file)", f"not JSON: {exc.msg}")]
        if not isinstance(items, list):
            return [], [RowError(1, "(file)", "a JSON report is an array of objects")]
        for index, item in enumerate(items, 1):
            if not isinstance(item, dict):
                errors.append(RowError(index, "(row)", "not an object"))
                continue
            result = _row(index, item)
            (rows if isinstance(result, UsageRow) else errors).append(result)  # type: ignore[arg-type]
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
