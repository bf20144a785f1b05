"""Issue #15, point 2: a holder's transport keys are two key pairs, one that signs the packages
it sends and one the packages for it are enveloped to (GM/T 0014/0015 keep signing and
encryption keys apart). The existing columns ``uri`` and ``public_key`` name the encryption key;
``sign_uri`` and ``sign_public_key`` the signing key. A row registered before holds one key that
did both: it is marked ``legacy`` (still read, never used for a new package; its holder
registers a new pair of pairs).

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("transport_key") as batch:
        batch.add_column(sa.Column("sign_uri", sa.String(length=500), nullable=True))
        batch.add_column(sa.Column("sign_public_key", sa.String(length=66), nullable=True))
        batch.add_column(
            sa.Column("legacy", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.create_unique_constraint("uq_transport_key_sign_uri", ["sign_uri"])
        batch.create_unique_constraint("uq_transport_key_sign_public_key", ["sign_public_key"])
    # every row so far is one key that signed and decrypted
    op.execute(sa.text("UPDATE transport_key SET legacy = :yes").bindparams(yes=True))
    with op.batch_alter_table("transport_key") as batch:
        batch.alter_column("legacy", server_default=None, existing_type=sa.Boolean())


def downgrade() -> None:
    # a pair of pairs cannot be folded back into one key: its signing half is forgotten (the
    # holder registers again after a downgrade)
    with op.batch_alter_table("transport_key") as batch:
        batch.drop_constraint("uq_transport_key_sign_public_key", type_="unique")
        batch.drop_constraint("uq_transport_key_sign_uri", type_="unique")
        batch.drop_column("legacy")
        batch.drop_column("sign_public_key")
        batch.drop_column("sign_uri")
