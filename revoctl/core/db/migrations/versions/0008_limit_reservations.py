"""Reservations: budget counters, and parallel slots held as leases, for the SQL limit store.

``limit_budgets`` holds an account's spend per period (nano-units); ``limit_slots`` has
one row per account, locked by a reservation before it counts the account's leases;
``limit_leases`` holds each slot taken until it runs out or is freed.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "limit_budgets",
        sa.Column("account", sa.String(255), nullable=False),
        sa.Column("period", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("spent", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("account", "period", name=op.f("pk_limit_budgets")),
    )
    op.create_index(op.f("ix_limit_budgets_expires_at"), "limit_budgets", ["expires_at"])
    op.create_table(
        "limit_slots",
        sa.Column("account", sa.String(255), nullable=False),
        sa.Column("cap", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("account", name=op.f("pk_limit_slots")),
    )
    op.create_table(
        "limit_leases",
        sa.Column("lease", sa.String(64), nullable=False),
        sa.Column("account", sa.String(255), nullable=False),
        sa.Column("holder", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("lease", name=op.f("pk_limit_leases")),
    )
    op.create_index(
        op.f("ix_limit_leases_account_expires_at"), "limit_leases", ["account", "expires_at"]
    )
    op.create_index(op.f("ix_limit_leases_holder"), "limit_leases", ["holder"])
    op.create_index(op.f("ix_limit_leases_expires_at"), "limit_leases", ["expires_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_limit_leases_expires_at"), table_name="limit_leases")
    op.drop_index(op.f("ix_limit_leases_holder"), table_name="limit_leases")
    op.drop_index(op.f("ix_limit_leases_account_expires_at"), table_name="limit_leases")
    op.drop_table("limit_leases")
    op.drop_table("limit_slots")
    op.drop_index(op.f("ix_limit_budgets_expires_at"), table_name="limit_budgets")
    op.drop_table("limit_budgets")
