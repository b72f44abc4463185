"""Secret audit log: who set or rotated which secret, when, and which versions.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "secret_audit_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("secret_name", sa.String(127), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("previous_version", sa.String(64), nullable=True),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_secret_audit_log")),
    )
    op.create_index(op.f("ix_secret_audit_log_ts"), "secret_audit_log", ["ts"])
    op.create_index(
        op.f("ix_secret_audit_log_secret_name_ts"), "secret_audit_log", ["secret_name", "ts"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_secret_audit_log_secret_name_ts"), table_name="secret_audit_log")
    op.drop_index(op.f("ix_secret_audit_log_ts"), table_name="secret_audit_log")
    op.drop_table("secret_audit_log")
