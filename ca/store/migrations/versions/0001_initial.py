"""The first tables: the audit chain and its checkpoints, serial counters, interop certificates.

Revision ID: 0001
Revises: none
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_event",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=100), nullable=False),
        sa.Column("subject", sa.String(length=500), nullable=False),
        sa.Column("details", sa.String(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index("ix_audit_event_action", "audit_event", ["action"])
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    head = sa.table(
        "audit_head",
        sa.column("id", sa.Integer),
        sa.column("seq", sa.Integer),
        sa.column("hash", sa.String),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": "0" * 64}])
    op.create_table(
        "audit_checkpoint",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("key_uri", sa.String(length=500), nullable=False),
        sa.Column("public_key", sa.String(length=66), nullable=False),
        sa.Column("signing_path", sa.String(length=20), nullable=False),
        sa.Column("signature", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_checkpoint_seq", "audit_checkpoint", ["seq"])
    op.create_table(
        "serial_counter",
        sa.Column("ca_key", sa.String(length=66), nullable=False),
        sa.Column("ca_index", sa.Integer(), nullable=False),
        sa.Column("next_serial", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("ca_key"),
    )
    op.create_table(
        "interop_certificate",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ca_index", sa.Integer(), nullable=False),
        sa.Column("ca_key", sa.String(length=66), nullable=False),
        sa.Column("serial", sa.Integer(), nullable=False),
        sa.Column("issuer_id", sa.String(length=8), nullable=False),
        sa.Column("expiry", sa.String(length=4), nullable=False),
        sa.Column("issuer_public_key", sa.String(length=66), nullable=False),
        sa.Column("encoded", sa.String(), nullable=False),
        sa.Column("issued_at", sa.BigInteger(), nullable=False),
        sa.Column("issued_by", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("revoked_at", sa.BigInteger(), nullable=True),
        sa.Column("revocation_reason", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("ca_key", "serial", name="uq_interop_serial_per_ca_key"),
    )
    op.create_index("ix_interop_certificate_ca_key", "interop_certificate", ["ca_key"])
    op.create_index("ix_interop_certificate_issuer_id", "interop_certificate", ["issuer_id"])


def downgrade() -> None:
    raise RuntimeError("jtca keeps its records (第二十九条): the first migration is not undone")
