"""Gateway keys gain a tier, a period's top-up and a rotation's overlap; their changes an audit.

``gateway_keys`` gets ``tier`` (a ``[tiers.NAME]``; NULL: the gateway's own rules),
``budget_added`` and ``budget_added_period`` (the top-up of one budget period, counted from
the key's creation), and ``previous_key_id``, ``previous_key_hash``, ``previous_expires_at``
(the key a rotation replaced, valid until then; its id indexed like ``key_id``, which finds a
presented key's row). ``gateway_key_events`` records every change to a key (created,
rotated, updated, budget_added, revoked): who, when, and what changed as JSON, never a key.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("gateway_keys") as table:
        table.add_column(sa.Column("tier", sa.String(64), nullable=True))
        table.add_column(sa.Column("budget_added", sa.Double(), nullable=False, server_default="0"))
        table.add_column(sa.Column("budget_added_period", sa.Integer(), nullable=True))
        table.add_column(sa.Column("previous_key_id", sa.String(32), nullable=True))
        table.add_column(sa.Column("previous_key_hash", sa.String(64), nullable=True))
        table.add_column(
            sa.Column("previous_expires_at", sa.DateTime(timezone=True), nullable=True)
        )
        table.create_index(
            op.f("ix_gateway_keys_previous_key_id"), ["previous_key_id"], unique=True
        )
    op.create_table(
        "gateway_key_events",
        sa.Column("id", ID, nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gateway_key_events")),
    )
    op.create_index(op.f("ix_gateway_key_events_at"), "gateway_key_events", ["at"])
    op.create_index(op.f("ix_gateway_key_events_name_at"), "gateway_key_events", ["name", "at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_gateway_key_events_name_at"), table_name="gateway_key_events")
    op.drop_index(op.f("ix_gateway_key_events_at"), table_name="gateway_key_events")
    op.drop_table("gateway_key_events")
    with op.batch_alter_table("gateway_keys") as table:
        table.drop_index(op.f("ix_gateway_keys_previous_key_id"))
        table.drop_column("previous_expires_at")
        table.drop_column("previous_key_hash")
        table.drop_column("previous_key_id")
        table.drop_column("budget_added_period")
        table.drop_column("budget_added")
        table.drop_column("tier")
