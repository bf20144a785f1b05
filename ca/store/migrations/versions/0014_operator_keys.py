"""Issue #16, point 2: operators' SM2 keys, cities served and signed acknowledgments.

``list_operator`` gains the operator's SM2 public key (uncompressed point, hex; registered with a
proof of possession) and the cities it serves (GB/T 2260 codes, comma-separated). ``list_ack``
gains what a signed acknowledgment (``POST /acks``) carries: its nonce (unique per operator:
a replay is refused), the SM3 of the list version loaded, the time it was signed and the
signature. Rows imported from CSV or JSON reports leave these empty.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("list_operator") as batch:
        batch.add_column(sa.Column("public_key", sa.String(length=130), nullable=True))
        batch.add_column(sa.Column("cities", sa.String(length=2000), nullable=True))
        batch.create_unique_constraint("uq_list_operator_public_key", ["public_key"])
    with op.batch_alter_table("list_ack") as batch:
        batch.add_column(sa.Column("nonce", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("list_sm3", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("signed_at", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("signature", sa.String(length=200), nullable=True))
        batch.create_unique_constraint("uq_list_ack_nonce", ["operator_id", "nonce"])


def downgrade() -> None:
    with op.batch_alter_table("list_ack") as batch:
        batch.drop_constraint("uq_list_ack_nonce", type_="unique")
        batch.drop_column("signature")
        batch.drop_column("signed_at")
        batch.drop_column("list_sm3")
        batch.drop_column("nonce")
    with op.batch_alter_table("list_operator") as batch:
        batch.drop_constraint("uq_list_operator_public_key", type_="unique")
        batch.drop_column("cities")
        batch.drop_column("public_key")
