"""Keys, central CA keys, certificates and ceremony runs.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "key_record",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uri", sa.String(length=500), nullable=False),
        sa.Column("token", sa.String(length=100), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("key_class", sa.String(length=50), nullable=False),
        sa.Column("public_key", sa.String(length=66), nullable=True),
        sa.Column("check_value", sa.String(length=32), nullable=True),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("not_after", sa.BigInteger(), nullable=False),
        sa.Column("origin", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("uri"),
    )
    op.create_index("ix_key_record_token", "key_record", ["token"])
    op.create_index("ix_key_record_key_class", "key_record", ["key_class"])
    op.create_table(
        "ca_key",
        sa.Column("public_key", sa.String(length=66), nullable=False),
        sa.Column("ca_index", sa.Integer(), nullable=False),
        sa.Column("key_uri", sa.String(length=500), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("verify_until", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("public_key"),
    )
    op.create_index("ix_ca_key_ca_index", "ca_key", ["ca_index"])
    op.create_table(
        "certificate",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=30), nullable=False),
        sa.Column("subject", sa.String(length=500), nullable=False),
        sa.Column("serial", sa.BigInteger(), nullable=False),
        sa.Column("der", sa.String(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("sm3", sa.String(length=64), nullable=False),
        sa.Column("not_before", sa.BigInteger(), nullable=False),
        sa.Column("not_after", sa.BigInteger(), nullable=False),
        sa.Column("key_uri", sa.String(length=500), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_certificate_role", "certificate", ["role"])
    op.create_table(
        "ceremony_run",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("file_sha256", sa.String(length=64), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("transcript", sa.String(), nullable=False),
        sa.Column("signature", sa.String(length=128), nullable=False),
        sa.Column("signer_public_key", sa.String(length=66), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("ceremony_run")
    op.drop_index("ix_certificate_role", table_name="certificate")
    op.drop_table("certificate")
    op.drop_index("ix_ca_key_ca_index", table_name="ca_key")
    op.drop_table("ca_key")
    op.drop_index("ix_key_record_key_class", table_name="key_record")
    op.drop_index("ix_key_record_token", table_name="key_record")
    op.drop_table("key_record")
