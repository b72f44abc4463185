"""Response cache: the answers of deterministic chat requests, while ``[limits] store = "sql"``.

``response_cache`` holds one answer (its JSON text) per ``key`` (a SHA-256, hex: the
scope, the model and the normalized request; never a key in clear) and when it expires
(``expires_at``, epoch seconds); expired rows are skipped and removed.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "response_cache",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_response_cache")),
    )
    op.create_index(op.f("ix_response_cache_expires_at"), "response_cache", ["expires_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_response_cache_expires_at"), table_name="response_cache")
    op.drop_table("response_cache")
