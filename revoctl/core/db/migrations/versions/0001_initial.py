"""Initial tables: request, model-usage, rate-limit and metric logs.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def _id_and_ts() -> list[sa.Column[object]]:
    return [sa.Column("id", ID, nullable=False), sa.Column("ts", TS, nullable=False)]


def upgrade() -> None:
    op.create_table(
        "request_logs",
        *_id_and_ts(),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("path", sa.String(2048), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("duration_ms", sa.Double(), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=True),
        sa.Column("api_key_id", sa.String(255), nullable=True),
        sa.Column("client_ip", sa.String(45), nullable=True),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_request_logs")),
    )
    op.create_index(op.f("ix_request_logs_ts"), "request_logs", ["ts"])
    op.create_index(op.f("ix_request_logs_user_id"), "request_logs", ["user_id"])
    op.create_index(op.f("ix_request_logs_request_id"), "request_logs", ["request_id"])

    op.create_table(
        "model_usage",
        *_id_and_ts(),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("total_tokens", sa.Integer(), nullable=False),
        sa.Column("estimated_cost", sa.Numeric(14, 6), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("user_id", sa.String(255), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_usage")),
    )
    op.create_index(op.f("ix_model_usage_ts"), "model_usage", ["ts"])
    op.create_index(
        op.f("ix_model_usage_provider_model_ts"), "model_usage", ["provider", "model", "ts"]
    )
    op.create_index(op.f("ix_model_usage_request_id"), "model_usage", ["request_id"])
    op.create_index(op.f("ix_model_usage_user_id"), "model_usage", ["user_id"])

    op.create_table(
        "rate_limit_logs",
        *_id_and_ts(),
        sa.Column("rule", sa.String(128), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("allowed", sa.Boolean(), nullable=False),
        sa.Column("remaining", sa.Integer(), nullable=False),
        sa.Column("weight", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rate_limit_logs")),
    )
    op.create_index(op.f("ix_rate_limit_logs_ts"), "rate_limit_logs", ["ts"])
    op.create_index(
        op.f("ix_rate_limit_logs_rule_key_ts"), "rate_limit_logs", ["rule", "key", "ts"]
    )

    op.create_table(
        "system_metrics",
        *_id_and_ts(),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("value", sa.Double(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_system_metrics")),
    )
    op.create_index(op.f("ix_system_metrics_ts"), "system_metrics", ["ts"])
    op.create_index(op.f("ix_system_metrics_name_ts"), "system_metrics", ["name", "ts"])


def downgrade() -> None:
    for table in ("system_metrics", "rate_limit_logs", "model_usage", "request_logs"):
        op.drop_table(table)
