"""City key applications and dual-control approvals.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "key_application",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("province", sa.String(length=6), nullable=False),
        sa.Column("cities", sa.String(), nullable=False),
        sa.Column("applicant", sa.String(length=100), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("decided_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_key_application_province", "key_application", ["province"])
    op.create_table(
        "approval",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subject", sa.String(length=100), nullable=False),
        sa.Column("approver", sa.String(length=100), nullable=False),
        sa.Column("decision", sa.String(length=10), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("subject", "approver", name="uq_one_decision_per_officer"),
    )
    op.create_index("ix_approval_subject", "approval", ["subject"])


def downgrade() -> None:
    op.drop_index("ix_approval_subject", table_name="approval")
    op.drop_table("approval")
    op.drop_index("ix_key_application_province", table_name="key_application")
    op.drop_table("key_application")
