"""Migration 0011 (issue #13): the old hash chain becomes the Merkle log, on SQLite and
PostgreSQL. A database at revision 0010 holding a valid chain (hashes computed here as the old
jtca did: SM3(previous hash ‖ canonical JSON of the row)) and an old checkpoint upgrades to
entries whose leaf hashes are the byte-exact entry encodings, one final ``log.migrate`` entry
keeping the old head and checkpoint, ``log_node`` equal to an in-memory tree's, and no
``audit_checkpoint`` table. A chain tampered with before the upgrade is not laundered into a
tree: the upgrade stops naming the row, and the database stays at 0010, untouched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from db_fixtures import postgres_server_url
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from ca.log import audit
from ca.log.entry import LogEntry
from ca.log.merkle import MemoryTree, leaf_hash
from ca.store.db import make_engine, migrate
from ca.store.models import AuditEvent, LogNode
from ca.store.schema import check_schema
from hsm.signer import SoftwareSigner
from hsm.sm.sm3 import sm3

GENESIS = "0" * 64
T0 = 1_780_000_000
JTCA = str(Path(sys.executable).with_name("jtca"))


# -- the old chain, as the jtca before issue #13 wrote it ---------------------------------------
def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def chain_hash(
    prev: str, seq: int, at: int, actor: str, action: str, subject: str, details: str
) -> str:
    content = canonical([seq, at, actor, action, subject, details])
    return sm3(bytes.fromhex(prev), content.encode("utf-8")).hex()


def old_checkpoint_message(seq: int, head: str, at: int) -> bytes:
    return canonical(["jtca audit checkpoint", seq, head, at]).encode("utf-8")


OldRow = tuple[int, int, str, str, str, str]  # seq, at, actor, action, subject, details


def old_rows() -> list[OldRow]:
    """Nine events of the old log; the seventh is the old checkpoint's own event."""
    rows: list[OldRow] = [
        (
            1,
            T0,
            "jtca",
            "ceremony.run",
            "MOT root ceremony 2026",
            canonical({"witnesses": ["赵六 (公证员)"]}),
        ),
        (
            2,
            T0 + 5,
            "mot-root-1",
            "officer.register",
            "officer gd-1",
            canonical({"role": "province_officer", "province": "44"}),
        ),
        (
            3,
            T0 + 9,
            "gd-1",
            "citykey.generate",
            "city 4401 key 1",
            canonical({"tab": "a\tb", "quote": '"x"'}),
        ),
        (
            4,
            T0 + 10,
            "ca-op-1",
            "certificate.issue",
            "interop 02113450/7",
            canonical({"serial": 7}),
        ),
        (5, T0 + 60, "publisher", "list.publish", "issuer whitelist v3", canonical({"version": 3})),
        (6, T0 + 61, "gd-1", "citykey.package", "city 4401 package", canonical({})),
    ]
    return rows


def write_old_chain(engine: Engine, rows: list[OldRow], signer: SoftwareSigner) -> dict[str, Any]:
    """Insert ``rows`` as a valid chain, an old checkpoint of the head at row 6 with its
    ``audit.checkpoint`` event (row 7), then two more events; returns what the old checkpoint
    recorded."""
    prev = GENESIS
    checkpoint: dict[str, Any] = {}
    every = list(rows)
    with engine.begin() as conn:

        def put(row: OldRow) -> None:
            nonlocal prev
            seq, at, actor, action, subject, details = row
            digest = chain_hash(prev, seq, at, actor, action, subject, details)
            conn.execute(
                sa.text(
                    "INSERT INTO audit_event (seq, at, actor, action, subject, details, prev_hash,"
                    " hash) VALUES (:seq, :at, :actor, :action, :subject, :details, :prev, :hash)"
                ),
                {
                    "seq": seq,
                    "at": at,
                    "actor": actor,
                    "action": action,
                    "subject": subject,
                    "details": details,
                    "prev": prev,
                    "hash": digest,
                },
            )
            prev = digest

        for row in rows:
            put(row)
        at = T0 + 100
        checkpoint = {
            "seq": rows[-1][0],
            "hash": prev,
            "at": at,
            "key_uri": signer.key_uri,
            "public_key": signer.public_key.compressed.hex(),
            "signing_path": "software",
            "signature": signer.sign(old_checkpoint_message(rows[-1][0], prev, at)).hex(),
        }
        conn.execute(
            sa.text(
                "INSERT INTO audit_checkpoint (seq, hash, at, key_uri, public_key, signing_path,"
                " signature) VALUES (:seq, :hash, :at, :key_uri, :public_key, :signing_path,"
                " :signature)"
            ),
            checkpoint,
        )
        n = rows[-1][0]
        more: list[OldRow] = [
            (
                n + 1,
                at,
                "jtca",
                "audit.checkpoint",
                f"seq {n}",
                canonical({"hash": checkpoint["hash"], "key": signer.key_uri, "path": "software"}),
            ),
            (n + 2, at + 30, "auditor-1", "audit.export", "bundle", canonical({"events": n + 1})),
            (n + 3, at + 31, "gd-1", "officer.login", "session 5", canonical({"中文": "交通联合"})),
        ]
        for row in more:
            put(row)
        every += more
        conn.execute(
            sa.text("UPDATE audit_head SET seq = :seq, hash = :hash WHERE id = 1"),
            {"seq": every[-1][0], "hash": prev},
        )
    return {"checkpoint": checkpoint, "head": {"seq": every[-1][0], "hash": prev}, "rows": every}


# -- databases at revision 0010 -----------------------------------------------------------------
@contextmanager
def database_at_0010(kind: str, folder: Path) -> Iterator[tuple[str, Engine]]:
    if kind == "sqlite":
        url = f"sqlite:///{folder / 'jtca.db'}"
        engine = make_engine(url)
        migrate(engine, "0010")
        try:
            yield url, engine
        finally:
            engine.dispose()
        return
    server = postgres_server_url()
    name = f"jtca_mig_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = server.rsplit("/", 1)[0] + "/" + name
    engine = make_engine(url)
    migrate(engine, "0010")
    try:
        yield url, engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def old_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Engine]]:
    with database_at_0010(request.param, tmp_path) as pair:
        assert check_schema(pair[1]).current == "0010"
        yield pair


def columns(engine: Engine, table: str) -> set[str]:
    return {c["name"] for c in sa.inspect(engine).get_columns(table)}


def tables(engine: Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def snapshot(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        events = conn.execute(sa.text("SELECT * FROM audit_event ORDER BY seq")).all()
        head = conn.execute(sa.text("SELECT * FROM audit_head")).all()
        checkpoints = conn.execute(sa.text("SELECT * FROM audit_checkpoint ORDER BY id")).all()
    return [tuple(r) for r in [*events, *head, *checkpoints]]


# -- the upgrade ----------------------------------------------------------------------------------
def test_a_valid_chain_becomes_the_tree(old_database) -> None:  # type: ignore[no-untyped-def]
    _, engine = old_database
    signer = SoftwareSigner.generate()
    old = write_old_chain(engine, old_rows(), signer)
    migrate(engine)
    assert check_schema(engine).current_is_head
    assert "audit_checkpoint" not in tables(engine)
    assert {"log_node", "log_checkpoint", "log_witness", "log_cosignature"} <= tables(engine)
    assert not {"prev_hash", "hash"} & columns(engine, "audit_event")
    assert "hash" not in columns(engine, "audit_head")

    rows: list[OldRow] = old["rows"]
    with Session(engine) as session:
        events = list(session.exec(select(AuditEvent).order_by(col(AuditEvent.seq))))
        assert [e.seq for e in events] == list(range(1, len(rows) + 2))
        assert audit.tree_size(session) == len(rows) + 1
        for event, (seq, at, actor, action, subject, details) in zip(events, rows, strict=False):
            assert (
                event.seq,
                event.at,
                event.actor,
                event.action,
                event.subject,
                event.details,
            ) == (
                seq,
                at,
                actor,
                action,
                subject,
                details,
            )
            assert (event.kind, event.object_sm3, event.seal, event.seal_key) == (
                "event",
                None,
                None,
                None,
            )
            entry = LogEntry(seq, at, "event", actor, action, subject, None, details)
            assert event.leaf_hash == entry.leaf_hash().hex()
        # entry 3 byte by byte, as docs/audit.md specifies it, hashed with SM3 directly
        seq, at, actor, action, subject, details = rows[2]
        encoded = (
            f'jtca-log-entry/1\nseq 3\nat {at}\nkind event\nactor "gd-1"\n'
            f'action "citykey.generate"\nsubject "city 4401 key 1"\nobject -\n'
            f"details {details}\n"
        ).encode()
        assert details == '{"quote":"\\"x\\"","tab":"a\\tb"}'
        assert events[2].leaf_hash == sm3(b"\x00" + encoded).hex() == leaf_hash(encoded).hex()

        last = events[-1]
        assert (last.seq, last.kind, last.actor, last.action) == (
            len(rows) + 1,
            "event",
            "jtca",
            "log.migrate",
        )
        assert last.subject == f"chain of {len(rows)} events"
        assert last.at == max(r[1] for r in rows)
        recorded = json.loads(last.details)
        assert recorded == {"chain_head": old["head"], "chain_checkpoints": [old["checkpoint"]]}
        # the old checkpoint's signature still verifies over what it signed, from the entry alone
        cp = recorded["chain_checkpoints"][0]
        signer.public_key.verify(
            bytes.fromhex(cp["signature"]), old_checkpoint_message(cp["seq"], cp["hash"], cp["at"])
        )
        assert cp["hash"] == chain_hash_of(rows[: cp["seq"]])
        assert recorded["chain_head"]["hash"] == chain_hash_of(rows)

        tree = MemoryTree()
        for event in events:
            tree.append(audit.entry(session, event.seq).encode())
        stored = {(n.level, n.idx): n.hash for n in session.exec(select(LogNode))}
        assert stored == {(lv, ix): h.hex() for lv, ix, h in tree.nodes()}
        assert audit.root(session) == tree.root()

    # the migrated log goes on: the next entry extends the tree, a checkpoint verifies it
    key = SoftwareSigner.generate()
    with Session(engine) as session, session.begin():
        audit.append(session, actor="jtca", action="test.after", subject="x", at=T0 + 999)
        audit.checkpoint(session, key, at=T0 + 1000, origin="jtca.test/audit")
    with Session(engine) as session:
        tree.append(audit.entry(session, len(rows) + 2).encode())
        assert audit.root(session) == tree.root()
        report = audit.verify(session, checkpoints=[], audit_keys=[key.public_key])
    assert report.ok, report.findings
    assert report.entries == len(rows) + 2


def chain_hash_of(rows: list[OldRow]) -> str:
    prev = GENESIS
    for seq, at, actor, action, subject, details in rows:
        prev = chain_hash(prev, seq, at, actor, action, subject, details)
    return prev


def test_an_empty_log_migrates_to_an_empty_tree(old_database) -> None:  # type: ignore[no-untyped-def]
    _, engine = old_database
    migrate(engine)
    with Session(engine) as session:
        assert audit.tree_size(session) == 0
        assert session.exec(select(AuditEvent)).all() == []
        assert session.exec(select(LogNode)).all() == []
    assert "audit_checkpoint" not in tables(engine)


TAMPERED = [
    pytest.param(
        "UPDATE audit_event SET actor = 'mallory' WHERE seq = 4",
        "at row 4 (expected row 4)",
        id="fail/edited",
    ),
    pytest.param(
        "DELETE FROM audit_event WHERE seq = 5", "at row 6 (expected row 5)", id="fail/deleted"
    ),
    pytest.param(
        "UPDATE audit_event SET seq = 100 WHERE seq = 2;"
        "UPDATE audit_event SET seq = 2 WHERE seq = 3;"
        "UPDATE audit_event SET seq = 3 WHERE seq = 100",
        "at row 2 (expected row 2)",
        id="fail/swapped",
    ),
    pytest.param(
        "DELETE FROM audit_event WHERE seq = 9",
        "ends at row 8 but its head records row 9",
        id="fail/tail-cut-head-fixed",
    ),
]


@pytest.mark.parametrize(("sql", "named"), TAMPERED)
def test_a_tampered_chain_is_not_migrated(old_database, sql: str, named: str) -> None:  # type: ignore[no-untyped-def]
    _, engine = old_database
    write_old_chain(engine, old_rows(), SoftwareSigner.generate())
    with engine.begin() as conn:
        for statement in sql.split(";"):
            conn.execute(sa.text(statement))
    before = snapshot(engine)
    with pytest.raises(
        Exception, match=r"tampered with before this upgrade|rows were cut off"
    ) as caught:
        migrate(engine)
    assert named in str(caught.value), caught.value
    assert check_schema(engine).current == "0010"
    assert "log_node" not in tables(engine)
    assert {"prev_hash", "hash"} <= columns(engine, "audit_event")
    assert snapshot(engine) == before


def test_a_rehashed_edit_is_caught_at_the_next_row(old_database) -> None:  # type: ignore[no-untyped-def]
    """Recomputing the edited row's own hash is not enough: the next row links to the old one."""
    _, engine = old_database
    old = write_old_chain(engine, old_rows(), SoftwareSigner.generate())
    seq, at, _actor, action, subject, details = old["rows"][2]
    with engine.connect() as conn:
        prev = conn.execute(sa.text("SELECT prev_hash FROM audit_event WHERE seq = 3")).scalar_one()
    forged = chain_hash(prev, seq, at, "mallory", action, subject, details)
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE audit_event SET actor = 'mallory', hash = :h WHERE seq = 3"),
            {"h": forged},
        )
    with pytest.raises(Exception, match=r"at row 4 \(expected row 4\)"):
        migrate(engine)
    assert check_schema(engine).current == "0010"


def test_jtca_db_upgrade_names_the_row(tmp_path: Path) -> None:
    """The operator's own command: a tampered chain stops ``jtca db upgrade`` with the row
    named, no traceback, a failing exit status, and the database left at 0010."""
    state = tmp_path / "state"
    state.mkdir()
    with database_at_0010("sqlite", state) as (_, engine):
        write_old_chain(engine, old_rows(), SoftwareSigner.generate())
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE audit_event SET subject = 'edited' WHERE seq = 5"))
    env = {k: v for k, v in os.environ.items() if k not in ("JTCA_DATABASE_URL", "JTCA_DEBUG")}
    env["JTCA_STATE"] = str(state)
    result = subprocess.run(
        [JTCA, "db", "upgrade", "--state", str(state)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 7, result.stderr  # StoreError's exit status, not "internal error"
    assert "Traceback" not in result.stderr
    assert "internal error" not in result.stderr
    assert "Audit chain broken: not migrated" in result.stderr
    assert "at row 5 (expected row 5)" in result.stderr, result.stderr
    engine = make_engine(f"sqlite:///{state / 'jtca.db'}")
    try:
        assert check_schema(engine).current == "0010"
    finally:
        engine.dispose()
