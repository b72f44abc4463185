"""The gateway: its keys, its instances' reports, and two-step secret audit records.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _audit_table_of_0002() -> sa.Table:
    """``secret_audit_log`` as 0002 made it: SQLite alters a column by copying the table,
    and ``db migrate --sql`` has no database to read its shape from."""
    return sa.Table(
        "secret_audit_log",
        sa.MetaData(),
        sa.Column("id", ID, primary_key=True),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("secret_name", sa.String(127), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("previous_version", sa.String(64), nullable=True),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Index("ix_secret_audit_log_ts", "ts"),
        sa.Index("ix_secret_audit_log_secret_name_ts", "secret_name", "ts"),
    )


def upgrade() -> None:
    with op.batch_alter_table("secret_audit_log", copy_from=_audit_table_of_0002()) as table:
        table.alter_column("version", existing_type=sa.String(64), nullable=True)
        table.add_column(sa.Column("status", sa.String(16), nullable=False, server_default="done"))
    op.create_table(
        "gateway_keys",
        sa.Column("id", ID, nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gateway_keys")),
        sa.UniqueConstraint("name", name=op.f("uq_gateway_keys_name")),
        sa.UniqueConstraint("key_id", name=op.f("uq_gateway_keys_key_id")),
    )
    op.create_table(
        "runtime_instances",
        sa.Column("instance", sa.String(128), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("pool", sa.JSON(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("instance", name=op.f("pk_runtime_instances")),
    )
    op.create_index(op.f("ix_runtime_instances_seen_at"), "runtime_instances", ["seen_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_runtime_instances_seen_at"), table_name="runtime_instances")
    op.drop_table("runtime_instances")
    op.drop_table("gateway_keys")
    op.execute("DELETE FROM secret_audit_log WHERE version IS NULL")
    with op.batch_alter_table("secret_audit_log") as table:
        table.drop_column("status")
        table.alter_column("version", existing_type=sa.String(64), nullable=False)
