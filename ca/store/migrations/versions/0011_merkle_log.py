"""Issue #13: the audit log becomes a witnessed Merkle log.

The hash chain is verified link by link first: a chain that does not verify is not migrated
(the upgrade stops, naming the row), because converting it would launder the tampering into a
tree. Then every event gets its leaf hash (``ca.log.entry``), the perfect subtrees are written to
``log_node``, and one more entry, ``log.migrate``, records the old chain's head and every old
checkpoint (sequence, hash, signature, key) so that evidence lives on inside the tree. The
chain's columns and its checkpoint table are then dropped. Checkpoints, cosignatures and
witnesses get their tables.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

from ca.log.entry import LogEntry, canonical
from ca.log.merkle import MemoryTree
from ca.store.db import StoreError
from hsm.sm.sm3 import sm3

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

GENESIS = "0" * 64


class ChainBroken(StoreError):
    """The old hash chain does not verify: the upgrade stops (exit 7), naming the row."""

    title = "Audit chain broken: not migrated"


def _legacy_hash(
    prev: str, seq: int, at: int, actor: str, action: str, subject: str, details: str
) -> str:
    content = json.dumps(
        [seq, at, actor, action, subject, details],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return sm3(bytes.fromhex(prev), content.encode("utf-8")).hex()


def upgrade() -> None:
    bind = op.get_bind()
    rows = bind.execute(
        sa.text(
            "SELECT seq, at, actor, action, subject, details, prev_hash, hash FROM audit_event "
            "ORDER BY seq"
        )
    ).all()
    previous, expected = GENESIS, 1
    for seq, at, actor, action, subject, details, prev_hash, digest in rows:
        if (
            seq != expected
            or prev_hash != previous
            or digest != _legacy_hash(prev_hash, seq, at, actor, action, subject, details)
        ):
            raise ChainBroken(
                f"the audit chain does not verify at row {seq} (expected row {expected}): it was "
                "tampered with before this upgrade; investigate with the previous jtca's "
                "`jtca audit verify` before migrating"
            )
        previous, expected = digest, seq + 1
    head = bind.execute(sa.text("SELECT seq, hash FROM audit_head WHERE id = 1")).first()
    if head is not None and (head[0], head[1]) != (expected - 1, previous):
        raise ChainBroken(
            f"the audit chain ends at row {expected - 1} but its head records row {head[0]}: "
            "rows were cut off before this upgrade"
        )
    old_checkpoints = [
        {
            "seq": r[0],
            "hash": r[1],
            "at": r[2],
            "key_uri": r[3],
            "public_key": r[4],
            "signing_path": r[5],
            "signature": r[6],
        }
        for r in bind.execute(
            sa.text(
                "SELECT seq, hash, at, key_uri, public_key, signing_path, signature "
                "FROM audit_checkpoint ORDER BY id"
            )
        ).all()
    ]

    with op.batch_alter_table("audit_event") as batch:
        batch.add_column(
            sa.Column("kind", sa.String(length=20), nullable=False, server_default="event")
        )
        batch.add_column(sa.Column("object_sm3", sa.String(length=64), nullable=True))
        batch.add_column(
            sa.Column("leaf_hash", sa.String(length=64), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("seal", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("seal_key", sa.BigInteger(), nullable=True))
    op.create_table(
        "log_node",
        sa.Column("level", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("idx", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
    )
    op.create_table(
        "log_checkpoint",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("root", sa.String(length=64), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("note", sa.String(), nullable=False),
        sa.Column("key_uri", sa.String(length=500), nullable=False),
        sa.Column("signing_path", sa.String(length=20), nullable=False),
    )
    op.create_index("ix_log_checkpoint_size", "log_checkpoint", ["size"])
    op.create_table(
        "log_witness",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(length=200), nullable=False, unique=True),
        sa.Column("public_key", sa.String(length=66), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("added_at", sa.BigInteger(), nullable=False),
        sa.Column("added_by", sa.String(length=100), nullable=False),
    )
    op.create_table(
        "log_cosignature",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("checkpoint_id", sa.Integer(), nullable=False),
        sa.Column("witness_id", sa.Integer(), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.Column("line", sa.String(), nullable=False),
        sa.Column("received_at", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("checkpoint_id", "witness_id"),
    )
    op.create_index("ix_log_cosignature_checkpoint_id", "log_cosignature", ["checkpoint_id"])

    tree = MemoryTree()
    update = sa.text("UPDATE audit_event SET leaf_hash = :leaf WHERE seq = :seq")
    for seq, at, actor, action, subject, details, _prev, _hash in rows:
        entry = LogEntry(seq, at, "event", actor, action, subject, None, details)
        leaf = entry.leaf_hash()
        tree.append_leaf_hash(leaf)
        bind.execute(update, {"leaf": leaf.hex(), "seq": seq})
    if rows:  # the old chain's evidence, kept inside the tree
        seq = expected
        at = max(int(r[1]) for r in rows)
        details = canonical(
            {
                "chain_head": {"seq": expected - 1, "hash": previous},
                "chain_checkpoints": old_checkpoints,
            }
        )
        entry = LogEntry(
            seq,
            at,
            "event",
            "jtca",
            "log.migrate",
            f"chain of {expected - 1} events",
            None,
            details,
        )
        leaf = entry.leaf_hash()
        tree.append_leaf_hash(leaf)
        bind.execute(
            sa.text(
                "INSERT INTO audit_event (seq, at, kind, actor, action, subject, object_sm3, "
                "details, prev_hash, hash, leaf_hash) VALUES (:seq, :at, 'event', 'jtca', "
                "'log.migrate', :subject, NULL, :details, '', '', :leaf)"
            ),
            {
                "seq": seq,
                "at": at,
                "subject": entry.subject,
                "details": details,
                "leaf": leaf.hex(),
            },
        )
        bind.execute(sa.text("UPDATE audit_head SET seq = :seq WHERE id = 1"), {"seq": seq})
    insert = sa.text("INSERT INTO log_node (level, idx, hash) VALUES (:level, :idx, :hash)")
    for level, idx, digest in tree.nodes():
        bind.execute(insert, {"level": level, "idx": idx, "hash": digest.hex()})

    with op.batch_alter_table("audit_event") as batch:
        batch.drop_column("prev_hash")
        batch.drop_column("hash")
        batch.alter_column("leaf_hash", server_default=None)
        batch.alter_column("kind", server_default=None)
    with op.batch_alter_table("audit_head") as batch:
        batch.drop_column("hash")
    op.drop_table("audit_checkpoint")


def downgrade() -> None:
    raise NotImplementedError(
        "the Merkle log cannot be turned back into the hash chain without losing its "
        "checkpoints and cosignatures: restore the database backup taken before the upgrade"
    )
