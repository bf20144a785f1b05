"""Published signed lists, the operators that load them, their acknowledgments.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "list_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("list_type", sa.String(length=30), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("this_update", sa.BigInteger(), nullable=False),
        sa.Column("next_update", sa.BigInteger(), nullable=False),
        sa.Column("entries", sa.Integer(), nullable=False),
        sa.Column("content_digest", sa.String(length=64), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("sm3", sa.String(length=64), nullable=False),
        sa.Column("file", sa.String(length=300), nullable=False),
        sa.Column("published_at", sa.BigInteger(), nullable=False),
        sa.Column("published_by", sa.String(length=100), nullable=False),
        sa.Column("emergency", sa.Boolean(), nullable=False),
        sa.Column("diff", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("list_type", "sequence", name="uq_list_sequence"),
    )
    op.create_index("ix_list_version_list_type", "list_version", ["list_type"])
    op.create_table(
        "list_operator",
        sa.Column("operator_id", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("province", sa.String(length=6), nullable=True),
        sa.Column("registered_at", sa.BigInteger(), nullable=False),
        sa.Column("registered_by", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("operator_id"),
    )
    op.create_table(
        "list_ack",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("operator_id", sa.String(length=100), nullable=False),
        sa.Column("list_type", sa.String(length=30), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("loaded_at", sa.BigInteger(), nullable=False),
        sa.Column("terminals", sa.Integer(), nullable=True),
        sa.Column("reported_at", sa.BigInteger(), nullable=False),
        sa.Column("report", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("operator_id", "list_type", "sequence", name="uq_one_ack_per_version"),
    )
    op.create_index("ix_list_ack_operator_id", "list_ack", ["operator_id"])


def downgrade() -> None:
    op.drop_index("ix_list_ack_operator_id", table_name="list_ack")
    op.drop_table("list_ack")
    op.drop_table("list_operator")
    op.drop_index("ix_list_version_list_type", table_name="list_version")
    op.drop_table("list_version")
