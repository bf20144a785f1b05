"""The Merkle audit log at the ``ca.log.audit`` level, on SQLite and PostgreSQL (issue #13): every
entry's leaf hash and every stored subtree (``log_node``) are exactly what an in-memory tree of
the same entries gives; roots and proofs served from the database verify with the pure RFC 9162
verifiers at every size; concurrent appenders still give that tree; checkpoints are C2SP notes
signed by the signer's key; cosignatures are stored only when they verify, once; an exported
bundle is judged exactly as the database is; sealed entries verify and a row added behind the
service's back (an honest forgery: correct leaf hash and nodes, no seal) is found."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import Session, col, select

from ca.log import audit
from ca.log.entry import LogEntry
from ca.log.merkle import MemoryTree, ProofError, verify_consistency, verify_inclusion
from ca.log.note import (
    COSIGNATURE_TYPE,
    NoteError,
    SignedNote,
    Verifier,
    cosign,
    verify_checkpoint,
    verify_cosignature,
)
from ca.log.verify import seal_key_statement, verify_bundle
from ca.store.db import transaction
from ca.store.models import AuditEvent, LogCosignature, LogNode, LogWitness, SerialCounter
from hsm.signer import SoftwareSigner
from hsm.sm.sm2 import raw_to_der
from hsm.sm.sm3 import sm3

ORIGIN = "jtca.test/audit"
T0 = 1_790_000_000


@pytest.fixture(autouse=True)
def no_sealer() -> Iterator[None]:
    """The sealer is process-wide: no test leaves one behind, none starts with one."""
    previous = audit.current_sealer()
    audit.install_sealer(None)
    yield
    audit.install_sealer(previous)


def append_one(session: Session, i: int) -> AuditEvent:
    """Entry ``i`` of a mixed log: events, and every third a certificate with its digest."""
    if i % 3 == 2:
        return audit.append(
            session,
            actor=f"officer-{i % 4}",
            action="certificate.issue",
            subject=f"certificate {i}",
            details={"serial": i},
            at=T0 + i,
            kind="certificate",
            object_sm3=sm3(f"certificate bytes {i}".encode()).hex(),
        )
    return audit.append(
        session,
        actor=f"officer-{i % 4}",
        action="test.event",
        subject=f"thing {i}",
        details={"i": i, "中文": "交通联合", "line": "a\tb"},
        at=T0 + i,
    )


def fill(engine: sa.engine.Engine, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        with transaction(engine) as session:
            append_one(session, i)


def entries(session: Session) -> list[AuditEvent]:
    return list(session.exec(select(AuditEvent).order_by(col(AuditEvent.seq))))


def memory_tree(session: Session) -> MemoryTree:
    """The tree an auditor builds from the rows alone (their content, not their leaf_hash)."""
    tree = MemoryTree()
    for row in entries(session):
        tree.append(audit.entry(session, row.seq).encode())
    return tree


def stored_nodes(session: Session) -> dict[tuple[int, int], str]:
    return {(n.level, n.idx): n.hash for n in session.exec(select(LogNode))}


def tamper(engine: sa.engine.Engine, sql: str, **params: Any) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(sql), params)


def verifier(signer: SoftwareSigner) -> Verifier:
    return Verifier(ORIGIN, signer.public_key)


def problems(report: audit.Report) -> set[tuple[int, str]]:
    return {(f.seq, f.problem) for f in report.findings}


# -- the tree in the database is the tree of its entries -----------------------------------------
def test_leaves_and_nodes_are_the_memory_tree(database) -> None:  # type: ignore[no-untyped-def]
    _, engine = database
    fill(engine, 45)
    with Session(engine) as session:
        rows = entries(session)
        tree = memory_tree(session)
        assert [r.seq for r in rows] == list(range(1, 46))
        assert audit.tree_size(session) == 45
        for row in rows:
            entry = LogEntry(
                row.seq,
                row.at,
                row.kind,
                row.actor,
                row.action,
                row.subject,
                row.object_sm3,
                row.details,
            )
            assert row.leaf_hash == entry.leaf_hash().hex() == tree.perfect(0, row.seq - 1).hex()
            assert (row.seal, row.seal_key) == (None, None)  # no sealer installed
        assert stored_nodes(session) == {(lv, ix): h.hex() for lv, ix, h in tree.nodes()}
        assert audit.root(session) == tree.root()
        certificate = rows[2]
        assert (certificate.kind, certificate.object_sm3) == (
            "certificate",
            sm3(b"certificate bytes 2").hex(),
        )
        assert json.loads(rows[0].details) == {"i": 0, "中文": "交通联合", "line": "a\tb"}
        assert audit.entry(session, 1).encode().startswith(b"jtca-log-entry/1\nseq 1\n")


def test_empty_log_has_the_empty_root(database) -> None:  # type: ignore[no-untyped-def]
    _, engine = database
    with Session(engine) as session:
        assert audit.tree_size(session) == 0
        assert audit.root(session) == sm3(b"") == MemoryTree().root()
        assert audit.latest_checkpoint(session) is None
        with pytest.raises(ProofError, match="outside the log"):
            audit.inclusion_proof(session, 0, 1)


def test_roots_and_proofs_verify_at_every_size(database) -> None:  # type: ignore[no-untyped-def]
    _, engine = database
    n = 70
    fill(engine, n)
    with Session(engine) as session:
        tree = memory_tree(session)
        roots = {size: audit.root(session, size) for size in range(1, n + 1)}
        assert roots == {size: tree.root(size) for size in range(1, n + 1)}
        for size in (1, 2, 3, 7, 8, 9, 31, 32, 33, 64, 69, 70):
            for index in sorted({0, size // 2, size - 1, (size * 3) // 4}):
                proof = audit.inclusion_proof(session, index, size)
                verify_inclusion(index, size, tree.perfect(0, index), proof, roots[size])
        for first in (1, 2, 3, 5, 8, 13, 16, 17, 32, 33, 50, 64, 70):
            for second in (first, first + 1, 33, 64, 65, 70):
                if second < first or second > n:
                    continue
                proof = audit.consistency_proof(session, first, second)
                verify_consistency(first, second, roots[first], roots[second], proof)
        # a proof from the database is a proof: any flipped bit fails
        proof = audit.inclusion_proof(session, 21, 70)
        bent = [proof[0], bytes([proof[1][0] ^ 1]) + proof[1][1:], *proof[2:]]
        with pytest.raises(ProofError, match="is not in the tree"):
            verify_inclusion(21, 70, tree.perfect(0, 21), bent, roots[70])
        proof = audit.consistency_proof(session, 13, 70)
        bent = [*proof[:-1], bytes([proof[-1][0] ^ 0x80]) + proof[-1][1:]]
        with pytest.raises(ProofError):
            verify_consistency(13, 70, roots[13], roots[70], bent)
        with pytest.raises(ProofError, match="outside the log"):
            audit.consistency_proof(session, 3, 71)


def test_change_and_entry_commit_together(database) -> None:  # type: ignore[no-untyped-def]
    _, engine = database
    fill(engine, 3)

    def change_that_fails() -> None:
        with transaction(engine) as session:
            session.add(SerialCounter(ca_key="02" + "00" * 32, ca_index=1, next_serial=7))
            audit.append(session, actor="op", action="serial.init", subject="ca 1", at=T0)
            raise RuntimeError("the change fails after its entry was written")

    with pytest.raises(RuntimeError):
        change_that_fails()
    with Session(engine) as session:
        assert session.exec(select(SerialCounter)).all() == []
        assert audit.tree_size(session) == 3
        assert len(entries(session)) == 3
        assert stored_nodes(session) == {
            (lv, ix): h.hex() for lv, ix, h in memory_tree(session).nodes()
        }
    fill(engine, 1, start=3)  # the next entry takes seq 4 and completes the subtree (2, 0)
    with Session(engine) as session:
        assert (2, 0) in stored_nodes(session)


def test_an_entry_that_cannot_be_encoded_is_refused(database) -> None:  # type: ignore[no-untyped-def]
    _, engine = database
    with (
        pytest.raises(audit.AuditError, match="needs an object digest"),
        transaction(engine) as session,
    ):
        audit.append(session, actor="op", action="list.publish", subject="x", at=T0, kind="list")
    with pytest.raises(audit.AuditError, match="not one of"), transaction(engine) as session:
        audit.append(session, actor="op", action="x", subject="x", at=T0, kind="secret")
    with Session(engine) as session:
        assert audit.tree_size(session) == 0


def test_concurrent_appenders_give_one_tree(database) -> None:  # type: ignore[no-untyped-def]
    """Eight threads append at once: one writer at a time (the head is locked), no seq lost or
    repeated, and every stored subtree is the one the entries give."""
    _, engine = database
    threads, each = 8, 15
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def worker(t: int) -> None:
        try:
            start.wait()
            for i in range(each):
                with transaction(engine) as session:
                    audit.append(
                        session,
                        actor=f"thread-{t}",
                        action="test.concurrent",
                        subject=f"{t}/{i}",
                        details={"t": t, "i": i},
                        at=T0 + i,
                    )
        except BaseException as exc:  # reported below, with the thread's name
            errors.append(exc)

    running = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for thread in running:
        thread.start()
    for thread in running:
        thread.join()
    assert errors == []
    with Session(engine) as session:
        rows = entries(session)
        assert [r.seq for r in rows] == list(range(1, threads * each + 1))
        assert sorted(r.subject for r in rows) == sorted(
            f"{t}/{i}" for t in range(threads) for i in range(each)
        )
        tree = memory_tree(session)
        assert [r.leaf_hash for r in rows] == [tree.perfect(0, i).hex() for i in range(len(rows))]
        assert stored_nodes(session) == {(lv, ix): h.hex() for lv, ix, h in tree.nodes()}
        assert audit.root(session) == tree.root()


# -- checkpoints and cosignatures --------------------------------------------------------------
def test_checkpoint_is_a_signed_note_of_the_tree(database) -> None:  # type: ignore[no-untyped-def]
    _, engine = database
    signer, other = SoftwareSigner.generate(), SoftwareSigner.generate()
    fill(engine, 5)
    with transaction(engine) as session:
        first = audit.checkpoint(session, signer, at=T0 + 100, origin=ORIGIN)
        first_id = first.id
    fill(engine, 6, start=5)
    with transaction(engine) as session:
        audit.checkpoint(session, signer, at=T0 + 200, origin=ORIGIN)
    with Session(engine) as session:
        latest = audit.latest_checkpoint(session)
        assert latest is not None
        assert (latest.size, latest.root) == (11, audit.root(session).hex())
        assert (latest.key_uri, latest.signing_path) == (signer.key_uri, "software")
        checkpoint, note = verify_checkpoint(latest.note, [verifier(signer)])
        assert (checkpoint.origin, checkpoint.size, checkpoint.root) == (
            ORIGIN,
            11,
            audit.root(session, 11),
        )
        assert latest.note.startswith(f"{ORIGIN}\n11\n")
        assert [s.name for s in note.signatures] == [ORIGIN]
        at_five = audit.checkpoint_at(session, 5)
        assert at_five is not None
        assert at_five.id == first_id
        assert verify_checkpoint(at_five.note, [verifier(signer)])[0].root == audit.root(session, 5)
        assert audit.checkpoint_at(session, 7) is None
        with pytest.raises(NoteError, match="no trusted audit key"):
            verify_checkpoint(latest.note, [verifier(other)])
        # the checkpoints are consistent with each other: a proof from the database joins them
        proof = audit.consistency_proof(session, 5, 11)
        verify_consistency(
            5,
            11,
            verify_checkpoint(at_five.note, [verifier(signer)])[0].root,
            checkpoint.root,
            proof,
        )


def add_witness(
    engine: sa.engine.Engine, name: str, key: SoftwareSigner, state: str = "active"
) -> None:
    with transaction(engine) as session:
        session.add(
            LogWitness(
                name=name,
                public_key=key.public_key.compressed.hex(),
                state=state,
                added_at=T0,
                added_by="test",
            )
        )


def cosignature(record_note: str, name: str, key: SoftwareSigner, at: int) -> Any:
    note = SignedNote.parse(record_note)
    return cosign(note, name, key.public_key, at, lambda m: raw_to_der(key.sign(m)))


def test_cosignatures_are_checked_and_stored_once(database) -> None:  # type: ignore[no-untyped-def]
    _, engine = database
    log_key = SoftwareSigner.generate()
    gd, sc, gone = (SoftwareSigner.generate() for _ in range(3))
    fill(engine, 4)
    with transaction(engine) as session:
        audit.checkpoint(session, log_key, at=T0 + 10, origin=ORIGIN)
    add_witness(engine, "witness.gd", gd)
    add_witness(engine, "witness.sc", sc)
    add_witness(engine, "witness.gone", gone, state="removed")

    def witness(session: Session, name: str) -> LogWitness:
        return session.exec(select(LogWitness).where(LogWitness.name == name)).one()

    with transaction(engine) as session:
        record = audit.latest_checkpoint(session)
        assert record is not None
        good = cosignature(record.note, "witness.gd", gd, T0 + 20)
        stored = audit.add_cosignature(
            session, record, witness(session, "witness.gd"), good, T0 + 21
        )
        assert (stored.timestamp, stored.received_at) == (T0 + 20, T0 + 21)
        again = audit.add_cosignature(
            session,
            record,
            witness(session, "witness.gd"),
            cosignature(record.note, "witness.gd", gd, T0 + 30),
            T0 + 31,
        )
        assert (again.id, again.timestamp) == (stored.id, T0 + 20)
        # signed by another key under sc's name: its key ID is not sc's
        forged = cosignature(record.note, "witness.sc", gd, T0 + 20)
        with pytest.raises(NoteError, match=r"not the witness witness\.sc"):
            audit.add_cosignature(session, record, witness(session, "witness.sc"), forged, T0)
        # right key ID, wrong signature bytes
        bad = cosignature(record.note, "witness.sc", sc, T0 + 20)
        bad = type(bad)(
            bad.name, bad.key_id, bad.signature[:8] + b"\x30\x06\x02\x01\x01\x02\x01\x01"
        )
        with pytest.raises(NoteError, match="does not verify"):
            audit.add_cosignature(session, record, witness(session, "witness.sc"), bad, T0)
        # a cosignature of another tree head does not verify on this one
        fill_note = record.note.replace(f"{ORIGIN}\n4\n", f"{ORIGIN}\n5\n")
        other_tree = cosignature(fill_note, "witness.sc", sc, T0 + 20)
        with pytest.raises(NoteError, match="does not verify"):
            audit.add_cosignature(session, record, witness(session, "witness.sc"), other_tree, T0)
        # a witness that was removed: refused even with a good cosignature
        with pytest.raises(audit.AuditError, match="was removed"):
            audit.add_cosignature(
                session,
                record,
                witness(session, "witness.gone"),
                cosignature(record.note, "witness.gone", gone, T0 + 20),
                T0,
            )
    with Session(engine) as session:
        assert len(session.exec(select(LogCosignature)).all()) == 1
        record = audit.latest_checkpoint(session)
        assert record is not None
        text = audit.cosigned_note(session, record)
        note = SignedNote.parse(text)
        assert [s.name for s in note.signatures] == [ORIGIN, "witness.gd"]
        assert (
            verify_cosignature(note, Verifier("witness.gd", gd.public_key, COSIGNATURE_TYPE))
            == T0 + 20
        )
        verify_checkpoint(text, [verifier(log_key)])
        # verification counts the stored cosignature on the newest checkpoint
        report = audit.verify(session, checkpoints=[], audit_keys=[log_key.public_key])
        assert report.ok, report.findings
        assert report.witnesses == ["witness.gd"]


# -- verification, in the database and over an exported bundle ----------------------------------
def both_reports(
    engine: sa.engine.Engine, key: SoftwareSigner, outside: list[tuple[str, bytes]]
) -> tuple[audit.Report, audit.Report]:
    with Session(engine) as session:
        in_db = audit.verify(session, checkpoints=outside, audit_keys=[key.public_key])
        bundle = audit.export_bundle(session)
    return in_db, verify_bundle(bundle, checkpoints=outside, audit_keys=[key.public_key])


def checkpoint_outside(engine: sa.engine.Engine, key: SoftwareSigner, at: int) -> tuple[str, bytes]:
    with transaction(engine) as session:
        record = audit.checkpoint(session, key, at=at, origin=ORIGIN)
        return f"folder/{record.size:012d}", record.note.encode()


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (
            "UPDATE audit_event SET actor = 'mallory' WHERE seq = 3",
            {(3, "edited"), (3, "node"), (1, "node"), (1, "rewritten")},
        ),
        (
            "UPDATE audit_event SET details = '{}' WHERE seq = 9",
            {(9, "edited"), (9, "node"), (1, "rewritten")},
        ),
        (
            "UPDATE audit_event SET at = at + 1 WHERE seq = 1",
            {(1, "edited"), (1, "node"), (1, "rewritten")},
        ),
        # an entry that cannot be encoded any more: named, its stored leaf kept for the rest
        ("UPDATE audit_event SET kind = 'list' WHERE seq = 4", {(4, "edited")}),
        (
            "UPDATE log_node SET hash = '" + "ab" * 32 + "' WHERE level = 2 AND idx = 1",
            {(5, "node")},
        ),
        (
            "DELETE FROM audit_event WHERE seq = 6",
            {
                (6, "deleted"),
                (10, "rolled-back"),
                (1, "node"),
                (5, "node"),
                (7, "node"),
                (9, "node"),
            },
        ),
        ("DELETE FROM log_checkpoint", {(0, "unanchored")}),
    ],
    ids=[
        "edited-actor",
        "edited-details",
        "edited-time",
        "edited-kind",
        "node",
        "deleted",
        "unanchored",
    ],
)
def test_bundle_and_database_agree(database, sql: str, expected: set[tuple[int, str]]) -> None:  # type: ignore[no-untyped-def]
    _, engine = database
    key = SoftwareSigner.generate()
    fill(engine, 10)
    with transaction(engine) as session:
        audit.checkpoint(session, key, at=T0 + 50, origin=ORIGIN)
    intact, intact_bundle = both_reports(engine, key, [])
    assert intact.ok, intact.findings
    assert intact_bundle.ok, intact_bundle.findings
    assert (intact.entries, intact.checkpoints, intact.newest.checkpoint.size) == (10, 1, 10)  # type: ignore[union-attr]
    tamper(engine, sql)
    in_db, in_bundle = both_reports(engine, key, [])
    assert [(f.seq, f.problem) for f in in_db.findings] == [
        (f.seq, f.problem) for f in in_bundle.findings
    ]
    assert problems(in_db) == expected, in_db.findings


def test_a_bundle_that_is_not_one_is_refused() -> None:
    from ca.core.errors import BadInput

    key = SoftwareSigner.generate()
    for data in (b"[]", b"{", json.dumps({"format": "jtca-log-bundle/1"}).encode()):
        with pytest.raises(BadInput, match="not a jtca log bundle"):
            verify_bundle(data, checkpoints=[], audit_keys=[key.public_key])


def test_checkpoints_found_outside_anchor_the_log(database) -> None:  # type: ignore[no-untyped-def]
    """Checkpoints handed in from outside count; the database's own notes only when a trusted
    key signed them; without any, the log is unanchored."""
    _, engine = database
    key, stranger = SoftwareSigner.generate(), SoftwareSigner.generate()
    fill(engine, 6)
    outside = checkpoint_outside(engine, key, T0 + 60)
    fill(engine, 3, start=6)
    with Session(engine) as session:
        report = audit.verify(session, checkpoints=[outside], audit_keys=[key.public_key])
    # entries 7–9 are newer than every checkpoint and were written with no sealer
    assert problems(report) == {(7, "unsealed"), (8, "unsealed"), (9, "unsealed")}
    assert "has no seal" in report.findings[0].message
    assert report.checkpoints == 2  # outside + its database copy
    assert report.newest is not None
    assert (report.newest.checkpoint.size, report.entries) == (6, 9)
    with transaction(engine) as session:
        audit.checkpoint(session, key, at=T0 + 90, origin=ORIGIN)  # in the database only
    with Session(engine) as session:
        good = audit.verify(session, checkpoints=[outside], audit_keys=[key.public_key])
        assert good.ok, good.findings
        assert good.newest is not None
        assert good.newest.checkpoint.size == 9
        assert good.newest.source == "database checkpoint 2 (size 9)"
        strange = audit.verify(session, checkpoints=[outside], audit_keys=[stranger.public_key])
    assert problems(strange) == {(0, "bad-checkpoint"), (0, "unanchored")}
    sources = sorted(
        f.message.split(":")[0] for f in strange.findings if f.problem == "bad-checkpoint"
    )
    assert sources == [
        "database checkpoint 1 (size 6)",
        "database checkpoint 2 (size 9)",
        "folder/000000000006",
    ]
    assert all("not signed by a trusted audit key" in f.message for f in strange.findings[:3])


# -- sealing ------------------------------------------------------------------------------------
def test_sealed_entries_verify_and_a_forged_row_does_not(database) -> None:  # type: ignore[no-untyped-def]
    _, engine = database
    audit_key = SoftwareSigner.generate()
    session_key = SoftwareSigner.generate()
    fill(engine, 4)
    with transaction(engine) as session:
        key_seq = audit.register_seal_key(session, audit_key, session_key.public_key, T0 + 5)
    assert key_seq == 5
    outside = checkpoint_outside(engine, audit_key, T0 + 6)  # covers 1–5
    audit.install_sealer(audit.SessionSealer(key_seq, session_key))
    fill(engine, 7, start=10)
    with Session(engine) as session:
        rows = entries(session)
        for row in rows[5:]:
            assert row.seal_key == key_seq
            assert row.seal is not None
            session_key.public_key.verify(
                bytes.fromhex(row.seal), b"jtca-log-seal/1\n" + bytes.fromhex(row.leaf_hash)
            )
        registered = json.loads(rows[4].details)
        assert registered["public_key"] == session_key.public_key.compressed.hex()
        assert set(registered) == {"public_key", "signature"}  # the rest is bound, not stored
        audit_key.public_key.verify_der(
            bytes.fromhex(registered["signature"]),
            seal_key_statement(5, T0 + 5, registered["public_key"]),
        )
        assert audit.unsealed_since(session, 5, audit_key.public_key) == []
        report = audit.verify(session, checkpoints=[outside], audit_keys=[audit_key.public_key])
        assert report.ok, report.findings
        assert report.sealed == 7
    # a row added behind the service's back: the code run by hand, with no sealer, gives a
    # correct leaf hash and correct nodes — but no seal
    audit.install_sealer(None)
    with transaction(engine) as session:
        audit.append(session, actor="mallory", action="forged", subject="x", at=T0 + 99)
    # and a row sealed by a key the audit key never registered
    audit.install_sealer(audit.SessionSealer(key_seq, SoftwareSigner.generate()))
    fill(engine, 1, start=20)
    with Session(engine) as session:
        found = audit.unsealed_since(session, 5, audit_key.public_key)
        assert [(f.seq, f.problem) for f in found] == [(13, "unsealed"), (14, "unsealed")]
        assert "has no seal" in found[0].message
        assert "does not verify under seal key 5" in found[1].message
        # a session key that the audit key did not sign is no seal key at all
        assert [
            f.seq for f in audit.unsealed_since(session, 5, SoftwareSigner.generate().public_key)
        ] == list(range(6, 15))
        report = audit.verify(session, checkpoints=[outside], audit_keys=[audit_key.public_key])
        assert problems(report) == {(13, "unsealed"), (14, "unsealed")}
        assert "newer than the newest checkpoint (5)" in report.findings[0].message
        bundle = audit.export_bundle(session)
    assert (
        verify_bundle(bundle, checkpoints=[outside], audit_keys=[audit_key.public_key]).findings
        == report.findings
    )
    # an edited sealed row: its content no longer gives the leaf hash the seal covers
    tamper(engine, "UPDATE audit_event SET subject = 'edited' WHERE seq = 8")
    with Session(engine) as session:
        assert (8, "edited") in {
            (f.seq, f.problem) for f in audit.unsealed_since(session, 5, audit_key.public_key)
        }


def test_a_seal_key_registration_needs_the_audit_key(database) -> None:  # type: ignore[no-untyped-def]
    """A ``log.seal-key`` entry written by someone without the audit key registers nothing:
    it is itself a row the service did not write, and rows sealed with its key are unsealed —
    for the verifier and for the checkpointer's own check (``unsealed_since``)."""
    _, engine = database
    audit_key, mallory = SoftwareSigner.generate(), SoftwareSigner.generate()
    session_key = SoftwareSigner.generate()
    fill(engine, 2)
    outside = checkpoint_outside(engine, audit_key, T0 + 3)
    with transaction(engine) as session:
        key_seq = audit.register_seal_key(session, mallory, session_key.public_key, T0 + 4)
    assert key_seq == 3
    audit.install_sealer(audit.SessionSealer(key_seq, session_key))
    fill(engine, 2, start=2)
    with Session(engine) as session:
        report = audit.verify(session, checkpoints=[outside], audit_keys=[audit_key.public_key])
        unsealed = audit.unsealed_since(session, 2, audit_key.public_key)
    assert problems(report) == {(3, "unsealed"), (4, "unsealed"), (5, "unsealed")}
    assert "has no seal" in report.findings[0].message
    assert all("no seal key the audit key registered" in f.message for f in report.findings[1:])
    assert [(f.seq, f.problem) for f in unsealed] == [
        (3, "unsealed"),
        (4, "unsealed"),
        (5, "unsealed"),
    ]


def test_a_registration_after_the_newest_checkpoint_is_sealed_by_the_audit_key(database) -> None:  # type: ignore[no-untyped-def]
    """A service that starts after the newest checkpoint registers its seal key in an entry of
    its own (written before its sealer exists): the audit key's signature in it seals it, so an
    intact log verifies. The same registration copied into a later row registers nothing."""
    _, engine = database
    audit_key = SoftwareSigner.generate()
    fill(engine, 3)
    outside = checkpoint_outside(engine, audit_key, T0 + 4)
    session_key = SoftwareSigner.generate()
    with transaction(engine) as session:
        key_seq = audit.register_seal_key(session, audit_key, session_key.public_key, T0 + 5)
    audit.install_sealer(audit.SessionSealer(key_seq, session_key))
    fill(engine, 2, start=3)
    with Session(engine) as session:
        report = audit.verify(session, checkpoints=[outside], audit_keys=[audit_key.public_key])
        assert report.ok, report.findings
        assert report.sealed == 3
        assert audit.unsealed_since(session, 3, audit_key.public_key) == []
        registration = entries(session)[key_seq - 1]
    audit.install_sealer(None)
    with transaction(engine) as session:  # the registration replayed, under another subject
        audit.append(
            session,
            actor="jtca",
            action=registration.action,
            subject="forged text riding on a replayed registration",
            details=json.loads(registration.details),
            at=registration.at,
        )
    with Session(engine) as session:
        report = audit.verify(session, checkpoints=[outside], audit_keys=[audit_key.public_key])
        unsealed = audit.unsealed_since(session, 3, audit_key.public_key)
    assert problems(report) == {(7, "unsealed")}
    assert [(f.seq, f.problem) for f in unsealed] == [(7, "unsealed")]
