"""Routing loads: each gateway process's deployments' calls in flight and latencies.

``routing_loads`` has one row per process (its name), rewritten every
``gateway.routing_refresh_seconds``: its report as JSON text and when it was written, so
that a process that died drops out of the fleet's sums.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "routing_loads",
        sa.Column("process", sa.String(255), nullable=False),
        sa.Column("loads", sa.Text(), nullable=False),
        sa.Column("seen_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("process", name=op.f("pk_routing_loads")),
    )
    op.create_index(op.f("ix_routing_loads_seen_at"), "routing_loads", ["seen_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_routing_loads_seen_at"), table_name="routing_loads")
    op.drop_table("routing_loads")
