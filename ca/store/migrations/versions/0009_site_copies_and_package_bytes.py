"""Issue #11, point 5: copies of city keys held at a province's or a city's site await their
destruction there (the service never opens those tokens); the bytes of every key package are kept
with its record, so its addressee can fetch it again when its file was lost.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("key_copy", sa.Column("destroy_requested_at", sa.BigInteger(), nullable=True))
    op.add_column("key_package", sa.Column("data", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("key_package") as batch:
        batch.drop_column("data")
    with op.batch_alter_table("key_copy") as batch:
        batch.drop_column("destroy_requested_at")
