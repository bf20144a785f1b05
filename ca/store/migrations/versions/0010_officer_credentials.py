"""Issue #12: officers who prove who they are — officer certificates and enrolments, sign-in
challenges, sessions with their delegated keys, spent request nonces, the signed requests that
opened pending subjects, and the approvers' signatures on their decisions.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("approval", sa.Column("statement", sa.String(), nullable=True))
    op.add_column("approval", sa.Column("signature", sa.LargeBinary(), nullable=True))
    op.add_column("approval", sa.Column("certificate_serial", sa.BigInteger(), nullable=True))
    op.create_table(
        "pending_request",
        sa.Column("subject", sa.String(length=100), primary_key=True),
        sa.Column("officer_id", sa.String(length=100), nullable=False),
        sa.Column("operation", sa.String(length=100), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.String(length=200), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "officer_certificate",
        sa.Column("serial", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("officer_id", sa.String(length=100), nullable=False),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("der", sa.LargeBinary(), nullable=False),
        sa.Column("not_before", sa.BigInteger(), nullable=False),
        sa.Column("not_after", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("status_reason", sa.String(length=500), nullable=False),
        sa.Column("status_at", sa.BigInteger(), nullable=True),
        sa.Column("issued_at", sa.BigInteger(), nullable=False),
        sa.Column("issued_by", sa.String(length=200), nullable=False),
        sa.Column("token_label", sa.String(length=100), nullable=False),
    )
    op.create_index("ix_officer_certificate_officer_id", "officer_certificate", ["officer_id"])
    op.create_table(
        "officer_enrolment",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("officer_id", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("roles", sa.String(length=500), nullable=False),
        sa.Column("province", sa.String(length=6), nullable=True),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("token_label", sa.String(length=100), nullable=False),
        sa.Column("requested_by", sa.String(length=100), nullable=False),
        sa.Column("requested_at", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("certificate_serial", sa.BigInteger(), nullable=True),
    )
    op.create_index("ix_officer_enrolment_officer_id", "officer_enrolment", ["officer_id"])
    op.create_table(
        "sign_in_challenge",
        sa.Column("nonce", sa.String(length=64), primary_key=True),
        sa.Column("issued_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("spent_at", sa.BigInteger(), nullable=True),
    )
    op.create_table(
        "officer_session",
        sa.Column("id", sa.String(length=64), primary_key=True),
        sa.Column("officer_id", sa.String(length=100), nullable=False),
        sa.Column("certificate_serial", sa.BigInteger(), nullable=False),
        sa.Column("session_key", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("last_seen", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("ended_at", sa.BigInteger(), nullable=True),
        sa.Column("ended_reason", sa.String(length=100), nullable=False),
    )
    op.create_index("ix_officer_session_officer_id", "officer_session", ["officer_id"])
    op.create_table(
        "request_nonce",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("session_id", "nonce", name="uq_request_nonce"),
    )
    op.create_index("ix_request_nonce_at", "request_nonce", ["at"])


def downgrade() -> None:
    op.drop_index("ix_request_nonce_at", table_name="request_nonce")
    op.drop_table("request_nonce")
    op.drop_index("ix_officer_session_officer_id", table_name="officer_session")
    op.drop_table("officer_session")
    op.drop_table("sign_in_challenge")
    op.drop_index("ix_officer_enrolment_officer_id", table_name="officer_enrolment")
    op.drop_table("officer_enrolment")
    op.drop_index("ix_officer_certificate_officer_id", table_name="officer_certificate")
    op.drop_table("officer_certificate")
    op.drop_table("pending_request")
    with op.batch_alter_table("approval") as batch:
        batch.drop_column("certificate_serial")
        batch.drop_column("signature")
        batch.drop_column("statement")
