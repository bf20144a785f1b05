"""Usage reports: malformed rows refused one by one with their line; good rows kept; keys used
outside their granted city flagged (第十条)."""

from __future__ import annotations

import calendar
import json

import pytest

from ca.citykeys.usage_report import parse_usage_report, scope_violations

CSV = """key,city,first_use,last_use,used_in
gz-card,440100,2026-11-01T00:00:00Z,2026-11-20T00:00:00Z,440106
sz-card,440300,2026-11-02T00:00:00Z,2026-11-21T00:00:00Z,440100
bad-city,4401,2026-11-01T00:00:00Z,2026-11-02T00:00:00Z,440100
bad-time,440100,yesterday,2026-11-02T00:00:00Z,440100
backwards,440100,2026-11-05T00:00:00Z,2026-11-02T00:00:00Z,440100
,440100,2026-11-01T00:00:00Z,2026-11-02T00:00:00Z,440100
bj-card,110000,2026-11-01T00:00:00Z,2026-11-02T00:00:00Z,110105
"""


def test_csv_rows_are_judged_one_by_one() -> None:
    rows, errors = parse_usage_report(CSV, "csv")
    assert [r.key for r in rows] == ["gz-card", "sz-card", "bj-card"]
    assert [(e.line, e.field) for e in errors] == [
        (4, "city"),
        (5, "first_use"),
        (6, "last_use"),
        (7, "key"),
    ]
    assert "line 5, first_use" in str(errors[1])


def test_scope_violations() -> None:
    rows, _ = parse_usage_report(CSV, "csv")
    grants = {"gz-card": "440100", "sz-card": "440300", "bj-card": "110000"}
    violations = scope_violations(rows, grants)
    assert [(v.row.key, v.reason) for v in violations] == [("sz-card", "scope-violation")]
    assert [(v.row.key, v.reason) for v in scope_violations(rows, {"gz-card": "440300"})] == [
        ("gz-card", "city-mismatch"),
        ("sz-card", "unknown-key"),
        ("bj-card", "unknown-key"),
    ]


def test_json_report() -> None:
    report = [
        {
            "key": "gz-card",
            "city": "440100",
            "first_use": "2026-11-01T00:00:00+08:00",
            "last_use": "2026-11-02T00:00:00Z",
            "used_in": "440100",
        },
        "not an object",
        {
            "key": "x",
            "city": "440100",
            "first_use": "2026-11-01T00:00:00",
            "last_use": "2026-11-02T00:00:00Z",
            "used_in": "440100",
        },
    ]
    rows, errors = parse_usage_report(json.dumps(report), "json")
    assert [r.key for r in rows] == ["gz-card"]
    assert rows[0].first_use == calendar.timegm((2026, 10, 31, 16, 0, 0))  # +08:00 -> UTC
    assert [(e.line, e.field) for e in errors] == [(2, "(row)"), (3, "first_use")]
    assert "timezone" in errors[1].problem


@pytest.mark.parametrize(
    ("text", "kind", "field"),
    [
        ("key,city\nx,440100\n", "csv", "first_use"),
        ("{}", "json", "(file)"),
        ("[1, 2", "json", "(file)"),
    ],
    ids=["fail/header", "fail/not-array", "fail/not-json"],
)
def test_whole_file_errors(text: str, kind: str, field: str) -> None:
    rows, errors = parse_usage_report(text, kind)
    assert rows == []
    assert errors[0].field == field
