"""Rate limits: the per-key state of the SQL limit store, and what each logged event was.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rate_limit_state",
        sa.Column("rule", sa.String(128), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("algorithm", sa.String(16), nullable=False),
        sa.Column("state", sa.Text(), nullable=True),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("rule", "key", name=op.f("pk_rate_limit_state")),
    )
    op.create_index(op.f("ix_rate_limit_state_expires_at"), "rate_limit_state", ["expires_at"])
    with op.batch_alter_table("rate_limit_logs") as batch:
        batch.add_column(sa.Column("event", sa.String(16), nullable=False, server_default="denied"))
        batch.add_column(sa.Column("reason", sa.String(255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("rate_limit_logs") as batch:
        batch.drop_column("reason")
        batch.drop_column("event")
    op.drop_index(op.f("ix_rate_limit_state_expires_at"), table_name="rate_limit_state")
    op.drop_table("rate_limit_state")
