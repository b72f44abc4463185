"""Request rows name the model the request asked for and, for a refusal, its error code.

Every request the gateway answers has its row, refusals included (a 404 for a model that
is not configured, a 401, a 429): ``request_logs.model`` is the model the body named (NULL
when it named none), ``request_logs.error_code`` the ``code`` of the error object the
caller got (NULL for an answer, and for an error without a code).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("request_logs", sa.Column("model", sa.String(128), nullable=True))
    op.add_column("request_logs", sa.Column("error_code", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("request_logs") as table:
        table.drop_column("error_code")
        table.drop_column("model")
