"""The audit chain on SQLite and PostgreSQL: appends commit with their change, verify names
every edited, deleted, inserted or reordered row, checkpoints are signed in the token, bundles
verify without the database."""

from __future__ import annotations

import itertools
import json

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from ca import audit
from ca.store.db import transaction
from ca.store.models import AuditEvent, SerialCounter
from hsm.signer import SoftwareSigner


def fill(engine: sa.engine.Engine, n: int) -> None:
    for i in range(n):
        with transaction(engine) as session:
            audit.append(
                session,
                actor=f"officer-{i % 3}",
                action="test.event",
                subject=f"thing {i}",
                details={"i": i, "中文": "交通联合"},
                at=1_790_000_000 + i,
            )


def report(engine: sa.engine.Engine) -> audit.VerifyReport:
    with Session(engine) as session:
        return audit.verify(session)


def test_chain_verifies_and_links(database) -> None:  # type: ignore[no-untyped-def]
    _, engine = database
    fill(engine, 5)
    result = report(engine)
    assert result.ok, result.findings
    assert result.events == 5
    with Session(engine) as session:
        rows = session.exec(select(AuditEvent).order_by(AuditEvent.seq)).all()
    assert [r.seq for r in rows] == [1, 2, 3, 4, 5]
    assert rows[0].prev_hash == audit.GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(rows))
    assert json.loads(rows[2].details) == {"i": 2, "中文": "交通联合"}


def test_change_and_event_commit_together(database) -> None:  # type: ignore[no-untyped-def]
    _, engine = database

    def change_that_fails() -> None:
        with transaction(engine) as session:
            session.add(SerialCounter(ca_key="02" + "00" * 32, ca_index=1, next_serial=7))
            audit.append(session, actor="op", action="serial.init", subject="ca 1", at=1)
            raise RuntimeError("the change fails after its event was written")

    with pytest.raises(RuntimeError):
        change_that_fails()
    with Session(engine) as session:
        assert session.exec(select(SerialCounter)).all() == []
        assert session.exec(select(AuditEvent)).all() == []
    assert report(engine).ok


def tamper(engine: sa.engine.Engine, sql: str) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(sql))


@pytest.mark.parametrize(
    ("sql", "seq", "problem"),
    [
        ("UPDATE audit_event SET actor = 'mallory' WHERE seq = 3", 3, "edited"),
        ("UPDATE audit_event SET details = '{}' WHERE seq = 5", 5, "edited"),
        ("DELETE FROM audit_event WHERE seq = 4", 4, "deleted"),
        ("DELETE FROM audit_event WHERE seq = 6", 6, "head"),
        ("UPDATE audit_event SET at = at + 1 WHERE seq = 1", 1, "edited"),
    ],
    ids=[
        "fail/edited-actor",
        "fail/edited-details",
        "fail/deleted-middle",
        "fail/deleted-last",
        "fail/edited-time",
    ],
)
def test_tampering_is_named(database, sql: str, seq: int, problem: str) -> None:  # type: ignore[no-untyped-def]
    _, engine = database
    fill(engine, 6)
    tamper(engine, sql)
    result = report(engine)
    assert not result.ok
    assert any(f.seq == seq and f.problem == problem for f in result.findings), result.findings


def test_rehashed_edit_is_caught_at_the_next_row(database) -> None:  # type: ignore[no-untyped-def]
    """An editor who also recomputes the edited row's hash breaks the link to the next row."""
    _, engine = database
    fill(engine, 4)
    with Session(engine) as session:
        row = session.get(AuditEvent, 2)
        assert row is not None
        new_hash = audit.event_hash(
            row.prev_hash, row.seq, row.at, "mallory", row.action, row.subject, row.details
        )
    tamper(engine, f"UPDATE audit_event SET actor = 'mallory', hash = '{new_hash}' WHERE seq = 2")
    findings = report(engine).findings
    assert [(f.seq, f.problem) for f in findings] == [(3, "inserted-or-reordered")]


def test_reordered_rows_are_named(database) -> None:  # type: ignore[no-untyped-def]
    _, engine = database
    fill(engine, 4)
    tamper(engine, "UPDATE audit_event SET seq = 100 WHERE seq = 2")
    tamper(engine, "UPDATE audit_event SET seq = 2 WHERE seq = 3")
    tamper(engine, "UPDATE audit_event SET seq = 3 WHERE seq = 100")
    problems = {(f.seq, f.problem) for f in report(engine).findings}
    assert (2, "edited") in problems
    assert (3, "edited") in problems


def test_inserted_row_is_named(database) -> None:  # type: ignore[no-untyped-def]
    _, engine = database
    fill(engine, 3)
    tamper(engine, "UPDATE audit_event SET seq = seq + 10")
    tamper(engine, "UPDATE audit_event SET seq = seq - 9 WHERE seq > 11")
    tamper(engine, "UPDATE audit_event SET seq = 1 WHERE seq = 11")
    # rows are 1, 3, 4 now; slip a forged row in at 2 that links to row 1
    with Session(engine) as session:
        first = session.get(AuditEvent, 1)
        assert first is not None
        forged_hash = audit.event_hash(first.hash, 2, 5, "mallory", "forged", "x", "{}")
    tamper(
        engine,
        "INSERT INTO audit_event (seq, at, actor, action, subject, details, prev_hash, hash) "
        f"VALUES (2, 5, 'mallory', 'forged', 'x', '{{}}', '{first.hash}', '{forged_hash}')",
    )
    problems = {(f.seq, f.problem) for f in report(engine).findings}
    assert (3, "edited") in problems  # the genuine row 2, now numbered 3, no longer hashes
    assert (4, "edited") in problems


def test_checkpoints_catch_a_rewritten_chain(database) -> None:  # type: ignore[no-untyped-def]
    _, engine = database
    audit_key = SoftwareSigner.generate()
    fill(engine, 3)
    with transaction(engine) as session:
        cp = audit.checkpoint(session, audit_key, at=1_790_000_100)
        assert cp.seq == 3
    fill(engine, 2)
    with Session(engine) as session:
        good = audit.verify(session, trusted_audit_keys=[audit_key.public_key])
    assert good.ok, good.findings
    assert good.checkpoints == 1
    assert good.events == 6  # 5 events and the checkpoint's own event

    # Rewrite the whole chain consistently (no key needed for SM3): only the checkpoint knows.
    with Session(engine) as session:
        rows = session.exec(select(AuditEvent).order_by(AuditEvent.seq)).all()
        prev = audit.GENESIS
        rewritten = []
        for r in rows:
            actor = "mallory" if r.seq == 2 else r.actor
            h = audit.event_hash(prev, r.seq, r.at, actor, r.action, r.subject, r.details)
            rewritten.append((r.seq, actor, prev, h))
            prev = h
    for seq, actor, prev_hash, h in rewritten:
        tamper(
            engine,
            f"UPDATE audit_event SET actor='{actor}', prev_hash='{prev_hash}', "
            f"hash='{h}' WHERE seq={seq}",
        )
    tamper(engine, f"UPDATE audit_head SET hash='{rewritten[-1][3]}'")
    problems = {(f.seq, f.problem) for f in report(engine).findings}
    assert problems == {(3, "bad-checkpoint")}


def test_forged_checkpoint_and_untrusted_key(database) -> None:  # type: ignore[no-untyped-def]
    _, engine = database
    fill(engine, 2)
    with transaction(engine) as session:
        audit.checkpoint(session, SoftwareSigner.generate(), at=10)
    tamper(engine, "UPDATE audit_checkpoint SET at = at + 1")
    assert {f.problem for f in report(engine).findings} == {"bad-checkpoint"}
    with Session(engine) as session:
        other = SoftwareSigner.generate().public_key
        result = audit.verify(session, trusted_audit_keys=[other])
    assert any("not trusted" in f.message for f in result.findings)


def test_bundle_verifies_without_the_database(database) -> None:  # type: ignore[no-untyped-def]
    _, engine = database
    key = SoftwareSigner.generate()
    fill(engine, 4)
    with transaction(engine) as session:
        audit.checkpoint(session, key, at=99)
    with Session(engine) as session:
        bundle = audit.export_bundle(session)
    assert audit.verify_bundle(bundle, [key.public_key]).ok
    doc = json.loads(bundle)
    doc["events"][1]["subject"] = "edited in the bundle"
    result = audit.verify_bundle(json.dumps(doc).encode(), [key.public_key])
    assert [(f.seq, f.problem) for f in result.findings] == [(2, "edited")]
    doc = json.loads(bundle)
    del doc["events"][-1]
    assert {f.problem for f in audit.verify_bundle(json.dumps(doc).encode()).findings} == {"head"}
    with pytest.raises(audit.AuditError, match="not a jtca audit bundle"):
        audit.verify_bundle(b"[]")
