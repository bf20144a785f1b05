"""Issue #14: intents — an operation that touches a token or files is written down before it
starts and settled after, so that recovery can roll it forward or back after a crash.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "intent",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("operation", sa.String(length=50), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("plan", sa.String(), nullable=False),
        sa.Column("progress", sa.String(), nullable=False),
        sa.Column("began_at", sa.BigInteger(), nullable=False),
        sa.Column("ended_at", sa.BigInteger(), nullable=True),
        sa.Column("outcome", sa.String(length=1000), nullable=True),
    )
    op.create_index("ix_intent_operation", "intent", ["operation"])
    op.create_index("ix_intent_state", "intent", ["state"])


def downgrade() -> None:
    op.drop_index("ix_intent_state", table_name="intent")
    op.drop_index("ix_intent_operation", table_name="intent")
    op.drop_table("intent")
