"""Maintenance leases: one row per periodic job that one instance of the fleet runs at a time.

``maintenance_leases`` holds the job's ``name``, the process that holds it (``holder``) and
when the lease lapses (``expires_at``, epoch seconds on the database's clock); retention's
pruning takes the ``retention`` lease before it deletes.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "maintenance_leases",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("holder", sa.String(255), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_maintenance_leases")),
    )


def downgrade() -> None:
    op.drop_table("maintenance_leases")
