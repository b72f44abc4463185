"""The tables revoctl keeps: request, model-usage, rate-limit and metric logs, rate-limit,
budget, parallel-slot and breaker state, secret audit records, gateway keys and their events,
and runtime instances.

One `Base` and one `MetaData` with a naming convention, so that constraint and
index names are stable across dialects and later revisions can refer to them.
Another capability adds its tables by subclassing `Base` and shipping a new
Alembic revision under ``migrations/versions/``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    Double,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every dialect.

    PostgreSQL stores ``timestamptz``; SQLite stores text without an offset, so
    values are converted to UTC on the way in and marked UTC on the way out.
    Naive datetimes are taken to be UTC already.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return _as_utc(value)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return _as_utc(value)


def _as_utc(value: datetime | None) -> datetime | None:
    """``value`` in UTC; a naive one is taken to be UTC already."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


Id = BigInteger().with_variant(Integer, "sqlite")
"""SQLite only auto-increments an ``INTEGER PRIMARY KEY``."""
MODEL_NAME_LENGTH = 128
"""Characters kept of a model's name (a configured name is never longer)."""
ERROR_CODE_LENGTH = 64
REASON_LENGTH = 500
"""Characters kept of a breaker's reason or a transition's cause (the stores cut to it)."""


class Base(DeclarativeBase):
    """Every revoctl table: one metadata, one naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON()}


class _Event:
    """What every revoctl table starts with: a key and when the row's event happened."""

    id: Mapped[int] = mapped_column(Id, primary_key=True, sort_order=-2)
    ts: Mapped[datetime] = mapped_column(default=utcnow, index=True, sort_order=-1)


class RequestLog(_Event, Base):
    """One API request the platform served."""

    __tablename__ = "request_logs"

    method: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(String(2048))
    status_code: Mapped[int]
    duration_ms: Mapped[float]
    user_id: Mapped[str | None] = mapped_column(String(255), index=True)
    api_key_id: Mapped[str | None] = mapped_column(String(255))
    client_ip: Mapped[str | None] = mapped_column(String(45))
    request_id: Mapped[str | None] = mapped_column(String(64), index=True)
    record_id: Mapped[str | None] = mapped_column(String(32), index=True, unique=True)
    """The writer's own id for the row (``request_id`` may be the caller's, and a caller may
    send one twice): a batch written again after a lost COMMIT answer adds nothing."""
    model: Mapped[str | None] = mapped_column(String(MODEL_NAME_LENGTH))
    """The model the request named (configured or not; cut to the column), if it named one."""
    error_code: Mapped[str | None] = mapped_column(String(ERROR_CODE_LENGTH))
    """A refusal's ``code``, as the caller's error object has it (``rate_limit_exceeded``)."""


class ModelUsage(_Event, Base):
    """Tokens and estimated cost of one call to a model provider."""

    __tablename__ = "model_usage"
    __table_args__ = (Index(None, "provider", "model", "ts"),)

    provider: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(MODEL_NAME_LENGTH))
    prompt_tokens: Mapped[int] = mapped_column(default=0)
    completion_tokens: Mapped[int] = mapped_column(default=0)
    total_tokens: Mapped[int] = mapped_column(default=0)
    estimated_cost: Mapped[Decimal] = mapped_column(Numeric(14, 6), default=Decimal(0))
    request_id: Mapped[str | None] = mapped_column(String(64), index=True)
    user_id: Mapped[str | None] = mapped_column(String(255), index=True)


class RateLimitLog(_Event, Base):
    """One rate-limit event: a denial, or a decision the store failed to make (``event``
    ``"store_failure"``, answered by ``failure_mode``; ``reason`` says why)."""

    __tablename__ = "rate_limit_logs"
    __table_args__ = (Index(None, "rule", "key", "ts"),)

    rule: Mapped[str] = mapped_column(String(128))
    key: Mapped[str] = mapped_column(String(255))
    allowed: Mapped[bool]
    remaining: Mapped[int]
    weight: Mapped[int] = mapped_column(default=1)
    event: Mapped[str] = mapped_column(String(16), default="denied", server_default="denied")
    reason: Mapped[str | None] = mapped_column(String(255))


class RateLimitState(Base):
    """One key's counters under one rule, for the SQL limit store (its state is a JSON
    list whose meaning depends on ``algorithm``; ``expires_at`` is epoch seconds)."""

    __tablename__ = "rate_limit_state"

    rule: Mapped[str] = mapped_column(String(128), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    algorithm: Mapped[str] = mapped_column(String(16))
    state: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[float] = mapped_column(Double, index=True)


class LimitBudget(Base):
    """One account's budget counter for one period (the index of the period since the
    account's key was created), in whole nano-units of the price table's unit; the counter
    counts as 0 from ``expires_at`` (epoch seconds on the database's clock)."""

    __tablename__ = "limit_budgets"

    account: Mapped[str] = mapped_column(String(255), primary_key=True)
    period: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    spent: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[float] = mapped_column(Double, index=True)


class LimitSlotAccount(Base):
    """One row per account with parallel slots: the row a reservation locks before it
    counts the account's leases, so concurrent reservations take slots one at a time;
    ``cap`` is the cap the last one applied."""

    __tablename__ = "limit_slots"

    account: Mapped[str] = mapped_column(String(255), primary_key=True)
    cap: Mapped[int] = mapped_column(Integer)


class LimitLease(Base):
    """One parallel slot held: ``lease`` is its id (unique everywhere), ``holder`` the
    process that renews it; the slot is free again from ``expires_at`` (epoch seconds on
    the database's clock)."""

    __tablename__ = "limit_leases"
    __table_args__ = (Index(None, "account", "expires_at"),)

    lease: Mapped[str] = mapped_column(String(64), primary_key=True)
    account: Mapped[str] = mapped_column(String(255))
    holder: Mapped[str] = mapped_column(String(64), index=True)
    expires_at: Mapped[float] = mapped_column(Double, index=True)


class SystemMetrics(_Event, Base):
    """One sample of a named metric, with its labels."""

    __tablename__ = "system_metrics"
    __table_args__ = (Index(None, "name", "ts"),)

    name: Mapped[str] = mapped_column(String(128))
    value: Mapped[float]
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)


class SecretAuditLog(_Event, Base):
    """One change to a secret (set or rotate): who, when, which versions; never the value."""

    __tablename__ = "secret_audit_log"
    __table_args__ = (Index(None, "secret_name", "ts"),)

    secret_name: Mapped[str] = mapped_column(String(127))
    action: Mapped[str] = mapped_column(String(16))
    version: Mapped[str | None] = mapped_column(String(64))
    previous_version: Mapped[str | None] = mapped_column(String(64))
    provider: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default="done", server_default="done")
    """``pending`` from before the store is written until the version is known, then ``done``;
    a row left ``pending`` is a change whose process died mid-way; ``hook_failed``, a rotation
    whose ``on_rotate`` command failed, so nothing was written."""


class GatewayKey(Base):
    """A key callers present to the gateway: its name and a hash of it, never the key.

    The key is ``rvk_<key_id>_<secret>``; ``key_id`` finds the row without the secret,
    and ``key_hash`` (SHA-256 of the whole key) is compared in constant time.
    """

    __tablename__ = "gateway_keys"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    key_id: Mapped[str] = mapped_column(String(32), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    tier: Mapped[str | None] = mapped_column(String(64))
    """The key's ``[tiers.NAME]``; NULL: the gateway's own rules."""
    budget_added: Mapped[float] = mapped_column(default=0.0, server_default="0")
    """Top-ups of the budget period ``budget_added_period`` (counted from ``created_at``)."""
    budget_added_period: Mapped[int | None]
    previous_key_id: Mapped[str | None] = mapped_column(String(32), unique=True, index=True)
    """The key a rotation replaced, valid until ``previous_expires_at``."""
    previous_key_hash: Mapped[str | None] = mapped_column(String(64))
    previous_expires_at: Mapped[datetime | None]


class GatewayKeyEvent(Base):
    """One change to a gateway key (``created``, ``rotated``, ``updated``, ``budget_added``,
    ``revoked``): who, when, and what changed as JSON; never a key or its hash."""

    __tablename__ = "gateway_key_events"
    __table_args__ = (Index(None, "name", "at"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(255))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class RuntimeInstance(Base):
    """One running runtime process, as it last reported itself.

    Each instance rewrites its row every few seconds, so ``revoctl db pool`` shows every
    instance's pool (SQLite has no server-side view of connections) and flags an
    instance that stopped reporting.
    """

    __tablename__ = "runtime_instances"

    instance: Mapped[str] = mapped_column(String(128), primary_key=True)
    started_at: Mapped[datetime]
    seen_at: Mapped[datetime] = mapped_column(index=True)
    pool: Mapped[dict[str, Any]] = mapped_column(default=dict)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


class CircuitBreakerState(Base):
    """One breaker's fleet-wide record, for the SQL breaker store (`SharedState`): its
    times are epoch seconds on the database's clock; ``version`` grows with every write."""

    __tablename__ = "circuit_breaker_state"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(BigInteger)
    generation: Mapped[int] = mapped_column(BigInteger)
    opened_at: Mapped[float | None] = mapped_column(Double)
    until: Mapped[float | None] = mapped_column(Double)
    reason: Mapped[str | None] = mapped_column(String(REASON_LENGTH))
    actor: Mapped[str | None] = mapped_column(String(255))
    episode: Mapped[int] = mapped_column(BigInteger)
    trials_granted: Mapped[int]
    trial_successes: Mapped[int]
    lease_until: Mapped[float | None] = mapped_column(Double)
    changed_at: Mapped[float | None] = mapped_column(Double)


class CircuitBreakerEvent(_Event, Base):
    """One transition of a breaker: the fleet's record, or one process's own (``scope``)."""

    __tablename__ = "circuit_breaker_events"
    __table_args__ = (Index(None, "name", "id"),)

    name: Mapped[str] = mapped_column(String(128))
    from_state: Mapped[str] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    cause: Mapped[str] = mapped_column(String(REASON_LENGTH))
    actor: Mapped[str | None] = mapped_column(String(255))
    process: Mapped[str] = mapped_column(String(255))
    scope: Mapped[str] = mapped_column(String(8))


class CircuitBreakerProcess(Base):
    """One process's last report of its breakers' statistics (JSON), kept until
    ``expires_at`` (epoch seconds on the database's clock)."""

    __tablename__ = "circuit_breaker_processes"

    process: Mapped[str] = mapped_column(String(255), primary_key=True)
    role: Mapped[str] = mapped_column(String(32))
    report: Mapped[str] = mapped_column(Text)
    reported_at: Mapped[float] = mapped_column(Double)
    expires_at: Mapped[float] = mapped_column(Double, index=True)


class RoutingLoad(Base):
    """One process's last report of its deployments' loads (JSON: calls in flight, moving
    average of call durations, samples), for ``least_busy`` / ``lowest_latency`` routing;
    ``seen_at`` is epoch seconds on the writer's clock."""

    __tablename__ = "routing_loads"

    process: Mapped[str] = mapped_column(String(255), primary_key=True)
    loads: Mapped[str] = mapped_column(Text)
    seen_at: Mapped[float] = mapped_column(Double, index=True)


class MaintenanceLease(Base):
    """A periodic job that one process of the fleet runs at a time (retention's pruning):
    who holds it, and when it lapses (epoch seconds on the database's clock)."""

    __tablename__ = "maintenance_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[float] = mapped_column(Double)


class ResponseCacheEntry(Base):
    """One answer of the response cache (`revoctl.runtime.response_cache`) under its key (a
    SHA-256 of the scope, the model and the normalized request), until ``expires_at``
    (epoch seconds on the writer's clock)."""

    __tablename__ = "response_cache"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    answer: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[float] = mapped_column(Double, index=True)
