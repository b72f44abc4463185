"""`DatabaseConfig`: the database URL and its pool."""

from __future__ import annotations

from pydantic import Field, field_validator

from revoctl.core._paths import default_database_url
from revoctl.core._settings import Section
from revoctl.core.errors import ConfigError
from revoctl.core.references import fill_url, referenced_names


class DatabaseConfig(Section):
    """``[database]``; ``url`` may hold ``${secret:NAME}`` references anywhere but the
    scheme and port. A bare ``postgresql://`` gets the async driver ``+asyncpg``."""

    url: str = Field(default_factory=default_database_url)
    pool_size: int = Field(10, ge=1, le=1000)
    max_overflow: int = Field(20, ge=0, le=10000)
    pool_timeout: float = Field(30, gt=0, le=3600)
    pool_recycle: int = Field(3600, ge=-1, le=7 * 86400)
    pool_pre_ping: bool = True
    retry_attempts: int = Field(3, ge=0, le=20)
    slow_query_ms: float = Field(500, ge=0, le=3_600_000)
    connect_timeout: float = Field(5, gt=0, le=300)
    health_timeout: float = Field(2, gt=0, le=300)

    @field_validator("url")
    @classmethod
    def _connectable(cls, url: str) -> str:
        """The URL with its async driver, checked part by part (references stood in for)."""
        from revoctl.core.db._url import normalise_scheme, parse_database_url

        try:
            url = normalise_scheme(url)
            stand_ins = {name: "revoctl-ref" for name in referenced_names(url)}
            parse_database_url(fill_url(url, stand_ins, setting="database.url"))
        except ConfigError as exc:
            raise ValueError(str(exc).removeprefix("database.url: ")) from None
        return url


RETAINED_TABLES = (
    "request_logs",
    "model_usage",
    "rate_limit_logs",
    "secret_audit_log",
    "system_metrics",
)
"""The append-only tables retention prunes, each by its ``ts`` column."""


class RetentionConfig(Section):
    """``[retention]``: days to keep each append-only table's rows (0 = keep them forever),
    applied by one gateway instance at a time every ``interval_seconds``, deleting at most
    ``batch_size`` rows per statement; ``revoctl db prune`` applies it from a cron job."""

    request_logs: int = Field(30, ge=0, le=36500)
    model_usage: int = Field(400, ge=0, le=36500)
    rate_limit_logs: int = Field(14, ge=0, le=36500)
    secret_audit_log: int = Field(400, ge=0, le=36500)
    system_metrics: int = Field(14, ge=0, le=36500)
    interval_seconds: float = Field(3600, gt=0, le=7 * 86400)
    batch_size: int = Field(5000, ge=1, le=1_000_000)

    def days(self) -> dict[str, int]:
        """Days to keep, by table."""
        return {table: int(getattr(self, table)) for table in RETAINED_TABLES}
