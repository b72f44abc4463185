"""Circuit breakers: the fleet's shared record per breaker, transitions, process reports.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "circuit_breaker_state",
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.Column("opened_at", sa.Double(), nullable=True),
        sa.Column("until", sa.Double(), nullable=True),
        sa.Column("reason", sa.String(500), nullable=True),
        sa.Column("actor", sa.String(255), nullable=True),
        sa.Column("episode", sa.BigInteger(), nullable=False),
        sa.Column("trials_granted", sa.Integer(), nullable=False),
        sa.Column("trial_successes", sa.Integer(), nullable=False),
        sa.Column("lease_until", sa.Double(), nullable=True),
        sa.Column("changed_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_circuit_breaker_state")),
    )
    op.create_table(
        "circuit_breaker_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("from_state", sa.String(16), nullable=False),
        sa.Column("to_state", sa.String(16), nullable=False),
        sa.Column("cause", sa.String(500), nullable=False),
        sa.Column("actor", sa.String(255), nullable=True),
        sa.Column("process", sa.String(255), nullable=False),
        sa.Column("scope", sa.String(8), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_circuit_breaker_events")),
    )
    op.create_index(op.f("ix_circuit_breaker_events_ts"), "circuit_breaker_events", ["ts"])
    op.create_index(
        op.f("ix_circuit_breaker_events_name_id"), "circuit_breaker_events", ["name", "id"]
    )
    op.create_table(
        "circuit_breaker_processes",
        sa.Column("process", sa.String(255), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("report", sa.Text(), nullable=False),
        sa.Column("reported_at", sa.Double(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("process", name=op.f("pk_circuit_breaker_processes")),
    )
    op.create_index(
        op.f("ix_circuit_breaker_processes_expires_at"),
        "circuit_breaker_processes",
        ["expires_at"],
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_circuit_breaker_processes_expires_at"), table_name="circuit_breaker_processes"
    )
    op.drop_table("circuit_breaker_processes")
    op.drop_index(op.f("ix_circuit_breaker_events_name_id"), table_name="circuit_breaker_events")
    op.drop_index(op.f("ix_circuit_breaker_events_ts"), table_name="circuit_breaker_events")
    op.drop_table("circuit_breaker_events")
    op.drop_table("circuit_breaker_state")
