"""Request rows carry the writer's own id, unique, so that writing a batch again is harmless.

The usage writer retries a batch whose write failed; when the COMMIT reached the server
but its answer was lost, the rows are there already. ``request_logs.record_id`` (unique;
NULL in the rows written before) lets the insert skip them.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("request_logs", sa.Column("record_id", sa.String(32), nullable=True))
    op.create_index(op.f("ix_request_logs_record_id"), "request_logs", ["record_id"], unique=True)


def downgrade() -> None:
    op.drop_index(op.f("ix_request_logs_record_id"), table_name="request_logs")
    with op.batch_alter_table("request_logs") as table:
        table.drop_column("record_id")
