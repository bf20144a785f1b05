"""City keys (一城一密): transport keys, city keys and their copies, key packages, usage
reports and violations, pending dual-control actions.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# the officers' scans (ca.citykeys.queries): each a range on one index
_SCAN_INDEXES = (
    ("ix_city_key_state_not_after", ["state", "not_after"]),
    ("ix_city_key_state_delivered_at", ["state", "delivered_at"]),
    ("ix_city_key_open_violations_not_after", ["open_violations", "not_after"]),
)


def upgrade() -> None:
    op.create_table(
        "transport_key",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("holder", sa.String(length=10), nullable=False),
        sa.Column("token", sa.String(length=100), nullable=False),
        sa.Column("uri", sa.String(length=500), nullable=False),
        sa.Column("public_key", sa.String(length=66), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("uri"),
        sa.UniqueConstraint("public_key"),
    )
    op.create_index("ix_transport_key_holder", "transport_key", ["holder"])
    op.create_table(
        "city_key",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(length=100), nullable=False),
        sa.Column("city", sa.String(length=6), nullable=False),
        sa.Column("province", sa.String(length=6), nullable=False),
        sa.Column("key_class", sa.String(length=50), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("application_id", sa.Integer(), nullable=True),
        sa.Column("ministry_uri", sa.String(length=500), nullable=False),
        sa.Column("public_key", sa.String(length=66), nullable=True),
        sa.Column("check_value", sa.String(length=32), nullable=True),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("stage", sa.String(length=30), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("not_before", sa.BigInteger(), nullable=False),
        sa.Column("not_after", sa.BigInteger(), nullable=False),
        sa.Column("delivered_at", sa.BigInteger(), nullable=True),
        sa.Column("imported_at", sa.BigInteger(), nullable=True),
        sa.Column("handed_on_at", sa.BigInteger(), nullable=True),
        sa.Column("installed_at", sa.BigInteger(), nullable=True),
        sa.Column("activated_at", sa.BigInteger(), nullable=True),
        sa.Column("first_use", sa.BigInteger(), nullable=True),
        sa.Column("last_use", sa.BigInteger(), nullable=True),
        sa.Column("predecessor_id", sa.Integer(), nullable=True),
        sa.Column("successor_id", sa.Integer(), nullable=True),
        sa.Column("supersede_at", sa.BigInteger(), nullable=True),
        sa.Column("state_changed_at", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("destroy_after", sa.BigInteger(), nullable=True),
        sa.Column("destroyed_at", sa.BigInteger(), nullable=True),
        sa.Column("open_violations", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("label"),
        sa.UniqueConstraint("city", "key_class", "generation", name="uq_city_key_generation"),
    )
    for column in ("city", "province", "not_after"):
        op.create_index(f"ix_city_key_{column}", "city_key", [column])
    for name, columns in _SCAN_INDEXES:
        op.create_index(name, "city_key", columns)
    op.create_table(
        "key_copy",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("city_key_id", sa.Integer(), nullable=False),
        sa.Column("holder", sa.String(length=10), nullable=False),
        sa.Column("token", sa.String(length=100), nullable=False),
        sa.Column("uri", sa.String(length=500), nullable=False),
        sa.Column("package_id", sa.String(length=32), nullable=True),
        sa.Column("installed_at", sa.BigInteger(), nullable=False),
        sa.Column("destroyed_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("city_key_id", "holder", name="uq_one_copy_per_holder"),
    )
    op.create_index("ix_key_copy_city_key_id", "key_copy", ["city_key_id"])
    op.create_table(
        "key_package",
        sa.Column("package_id", sa.String(length=32), nullable=False),
        sa.Column("city_key_id", sa.Integer(), nullable=False),
        sa.Column("sender", sa.String(length=10), nullable=False),
        sa.Column("recipient", sa.String(length=10), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("imported_at", sa.BigInteger(), nullable=True),
        sa.Column("imported_by", sa.String(length=100), nullable=True),
        sa.PrimaryKeyConstraint("package_id"),
    )
    op.create_index("ix_key_package_city_key_id", "key_package", ["city_key_id"])
    op.create_table(
        "usage_report",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=500), nullable=False),
        sa.Column("imported_at", sa.BigInteger(), nullable=False),
        sa.Column("imported_by", sa.String(length=100), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("refused", sa.Integer(), nullable=False),
        sa.Column("violations", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("sha256"),
    )
    op.create_table(
        "usage_violation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("city_key_id", sa.Integer(), nullable=True),
        sa.Column("report", sa.String(length=64), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("key_ref", sa.String(length=500), nullable=False),
        sa.Column("city", sa.String(length=6), nullable=False),
        sa.Column("used_in", sa.String(length=6), nullable=False),
        sa.Column("first_use", sa.BigInteger(), nullable=False),
        sa.Column("last_use", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(length=50), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("found_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_usage_violation_city_key_id", "usage_violation", ["city_key_id"])
    op.create_table(
        "pending_action",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=50), nullable=False),
        sa.Column("key_ids", sa.String(), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("requested_by", sa.String(length=100), nullable=False),
        sa.Column("requested_at", sa.BigInteger(), nullable=False),
        sa.Column("required", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("decided_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_pending_action_state", "pending_action", ["state"])


def downgrade() -> None:
    op.drop_index("ix_pending_action_state", table_name="pending_action")
    op.drop_table("pending_action")
    op.drop_index("ix_usage_violation_city_key_id", table_name="usage_violation")
    op.drop_table("usage_violation")
    op.drop_table("usage_report")
    op.drop_index("ix_key_package_city_key_id", table_name="key_package")
    op.drop_table("key_package")
    op.drop_index("ix_key_copy_city_key_id", table_name="key_copy")
    op.drop_table("key_copy")
    for name, _ in _SCAN_INDEXES:
        op.drop_index(name, table_name="city_key")
    for column in ("city", "province", "not_after"):
        op.drop_index(f"ix_city_key_{column}", table_name="city_key")
    op.drop_table("city_key")
    op.drop_index("ix_transport_key_holder", table_name="transport_key")
    op.drop_table("transport_key")
