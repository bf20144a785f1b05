"""Issue #16, point 4: the policy in force, its SM3 and its dual-controlled changes
(``policy_version``: the file adopted at the first start and every proposal since).

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "policy_version",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("sm3", sa.String(length=64), nullable=False),
        sa.Column("text", sa.String(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("proposed_by", sa.String(length=100), nullable=False),
        sa.Column("proposed_at", sa.BigInteger(), nullable=False),
        sa.Column("required", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("decided_at", sa.BigInteger(), nullable=True),
    )
    op.create_index("ix_policy_version_sm3", "policy_version", ["sm3"])
    op.create_index("ix_policy_version_state", "policy_version", ["state"])


def downgrade() -> None:
    op.drop_index("ix_policy_version_state", table_name="policy_version")
    op.drop_index("ix_policy_version_sm3", table_name="policy_version")
    op.drop_table("policy_version")
