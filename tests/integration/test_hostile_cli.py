"""Hostile files through the real console script and against a real database (issue #14,
point 3): ``jtca ceremony plan`` on a binary file, deep nesting, a 5,000-digit number, NUL
bytes, an empty and a huge file and key or token labels that are paths prints one line — a
title and a message naming the place — and exits 3, never a traceback or 'internal error';
acknowledgment and usage reports that are hostile are refused as rows naming the place and
record nothing; ``city approve`` of an id that is an emergency publication request is refused
by name (it was a ValueError)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from citykey_fixtures import GD1, OP1, T0, make_world
from sqlmodel import Session, select

from ca.citykeys import misuse, usage_import
from ca.publish import acks, emergency
from ca.store.models import ListAcknowledgment, PendingAction, UsageReport
from policies.rules import Actor

JTCA = str(Path(sys.executable).with_name("jtca"))
EXAMPLE = Path(__file__).resolve().parents[2] / "policies" / "ceremonies" / "root-example.toml"
PUBLISHER = Actor("publisher-1", frozenset({"publisher"}))
EM1 = Actor("em-1", frozenset({"emergency-publisher"}))
DIGITS = b"9" * 5000
USAGE_HEADER = "key,city,first_use,last_use,used_in\n"


def _example(**labels: str) -> bytes:
    text = EXAMPLE.read_text(encoding="utf-8")
    for old, new in labels.items():
        text = text.replace(f'label = "{old}"', f'label = "{new}"')
    return text.encode("utf-8")


PLANS = {
    "binary": (bytes(range(256)) * 8, "Ceremony refused", "not UTF-8"),
    "deep": (b"a = " + b"[" * 30_000 + b"]" * 30_000, "Ceremony refused", "byte offset 36"),
    "deep-100k": (b"a = " + b"[" * 100_000 + b"]" * 100_000, "Ceremony refused", "200,004 bytes"),
    "big-int": (b"[ceremony]\nname = " + DIGITS, "Ceremony refused", "line 2, column 8"),
    "nul": (b'[ceremony]\nname = "a\x00"', "Ceremony refused", "line 2, column 10"),
    "empty": (b"", "Ceremony refused", "ceremony: missing"),
    "huge": (b"#" * (10 << 20), "Ceremony refused", "10,485,760 bytes"),
    "key-label-path": (
        _example(**{"mot-root-2026": "../../../../tmp/evil"}),
        "Bad name",
        "root.label",
    ),
    "token-label-path": (_example(**{"MOT-ROOT": "../../trav/evil"}), "Bad name", "token.label"),
    "good": (EXAMPLE.read_bytes(), "", "MOT root key ceremony 2026-12"),
}


@pytest.mark.parametrize(("data", "title", "place"), PLANS.values(), ids=PLANS.keys())
def test_ceremony_plan_on_a_hostile_file(
    tmp_path: Path, data: bytes, title: str, place: str
) -> None:
    plan = tmp_path / "plan.toml"
    plan.write_bytes(data)
    env = dict(os.environ, JTCA_STATE=str(tmp_path / "state"))
    for variable in ("SOFTHSM2_CONF", "JTCA_URL", "JTCA_SERVER_CERT", "JTCA_DATABASE_URL"):
        env.pop(variable, None)
    before = sorted(p.name for p in tmp_path.iterdir())
    result = subprocess.run(
        [JTCA, "ceremony", "plan", str(plan)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert "Traceback" not in result.stderr
    assert "internal error" not in result.stderr
    if not title:
        assert result.returncode == 0, result.stderr
        assert place in result.stdout
        return
    assert result.returncode == 3, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"jtca: {title}: "), lines[0]
    assert place in lines[0], lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


# -- reports against a real database ----------------------------------------------------------
ACK_REPORTS = {
    "deep-json": ("[" * 100_000 + "]" * 100_000, "json", (1, "(file)"), "byte offset 32"),
    "big-int-json": ('[{"sequence": ' + "9" * 5000 + "}]", "json", (1, "(file)"), "5,000 digits"),
    "big-sequence-csv": (
        "operator,list,sequence,loaded_at\nop,city-list," + "9" * 5000 + ",2026-01-01T00:00:00Z\n",
        "csv",
        (2, "sequence"),
        "at most 18 digits",
    ),
    "field-1mb-csv": (
        "operator,list,sequence,loaded_at\n" + "a" * (1 << 20) + ",x,1,y\n",
        "csv",
        (2, "operator"),
        "a field over",
    ),
    "lone-surrogate-json": ('[{"operator": "\ud800"}]', "json", (1, "(file)"), "byte offset 15"),
}


@pytest.mark.parametrize(
    ("text", "kind", "where", "problem"), ACK_REPORTS.values(), ids=ACK_REPORTS.keys()
)
def test_hostile_acknowledgments_are_refused_rows(  # type: ignore[no-untyped-def]
    database, text: str, kind: str, where: tuple[int, str], problem: str
) -> None:
    _, engine = database
    acks.register_operator(engine, OP1, operator_id="op", name="", province=None, now=T0)
    result = acks.import_acks(engine, PUBLISHER, text, kind, source="acks", now=T0)
    assert result.accepted == []
    assert [(e.line, e.field) for e in result.refused] == [where]
    assert problem in result.refused[0].problem, result.refused[0].problem
    with Session(engine) as session:
        assert session.exec(select(ListAcknowledgment)).all() == []


def test_unicode_digits_are_not_a_number(database) -> None:  # type: ignore[no-untyped-def]
    _, engine = database
    acks.register_operator(engine, OP1, operator_id="op", name="", province=None, now=T0)
    text = "operator,list,sequence,loaded_at,terminals\nop,city-list,²,2026-01-01T00:00:00Z,1\n"
    result = acks.import_acks(engine, PUBLISHER, text, "csv", source="acks", now=T0)
    assert [(e.line, e.field) for e in result.refused] == [(2, "sequence")]


@pytest.mark.parametrize(
    ("text", "kind", "problem"),
    [
        ('[{"key": ' + "9" * 5000 + "}]", "json", "column 10 (byte offset 9): a number of 5,000"),
        ("[" * 100_000, "json", "byte offset 32): nested deeper than 32"),
        (USAGE_HEADER + "k" * (1 << 20) + ",1\n", "csv", "a field over"),
    ],
    ids=["big-int-json", "deep-json", "field-1mb-csv"],
)
def test_hostile_usage_reports_are_refused_rows(  # type: ignore[no-untyped-def]
    database, text: str, kind: str, problem: str
) -> None:
    _, engine = database
    result = usage_import.import_usage(engine, GD1, text, kind, source="usage", now=T0)
    assert result.accepted == 0
    assert len(result.refused) == 1
    assert problem in result.refused[0].problem, result.refused[0].problem
    with Session(engine) as session:  # the refusal is recorded; no key is touched
        assert len(session.exec(select(UsageReport)).all()) == 1


def test_city_approve_of_an_emergency_request_is_refused_by_name(  # type: ignore[no-untyped-def]
    database, new_token
) -> None:
    _, engine = database
    world = make_world(engine, new_token)
    asked = emergency.request(engine, EM1, reason="issuer key leaked", now=T0 + 60)
    assert asked.id is not None
    for approve in (True, False):
        with pytest.raises(
            misuse.ActionError, match=f"request #{asked.id} is not a city key action"
        ):
            misuse.decide(engine, world.vault, OP1, asked.id, approve=approve, now=T0 + 61)
    with Session(engine) as session:
        row = session.get(PendingAction, asked.id)
        assert row is not None
        assert row.state == "pending"  # untouched: still the emergency publishers' to decide
