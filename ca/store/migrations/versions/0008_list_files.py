"""The signed bytes of every published list version, beside its record (issue #11: several
service processes on one database each serve and repair any version).

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "list_version_file",
        sa.Column("list_version_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("der", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["list_version_id"], ["list_version.id"]),
        sa.PrimaryKeyConstraint("list_version_id"),
    )


def downgrade() -> None:
    op.drop_table("list_version_file")
