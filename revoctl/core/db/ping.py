"""``db ping``: one raw-driver probe (`revoctl.core.db._probe`) and its report.

`DatabaseManager.ping` runs `ping_url` on the URL it resolved; `ping_database` runs it
on a plain URL and the two numbers the ping reads of ``[database]``, so that the CLI's
probe path (`revoctl.cli._fast`) builds no settings model and never imports pydantic.
"""

from __future__ import annotations

from typing import Any

from revoctl.core._process import application_name
from revoctl.core._retry import RetryPolicy
from revoctl.core.db._probe import probe
from revoctl.core.db._url import DatabaseUrl, parse_database_url
from revoctl.core.redaction import redact_url, register_secret


async def ping_database(
    url: str, *, role: str, connect_timeout: float, retry_attempts: int
) -> dict[str, Any]:
    """`ping_url` for ``url`` (without ``${secret:...}`` references), as a
    `DatabaseManager` with these settings pings it.

    :raises BackendUnavailableError: the database cannot be reached.
    """
    parsed = parse_database_url(url)
    if parsed.password:
        register_secret(parsed.password)
    return await ping_url(
        parsed,
        role=role,
        timeout=connect_timeout,
        target=redact_url(url),
        retry=RetryPolicy(retry_attempts),
    )


async def ping_url(
    url: DatabaseUrl, *, role: str, timeout: float, target: str, retry: RetryPolicy
) -> dict[str, Any]:
    """Connect and run ``SELECT 1`` on a connection of its own, within ``timeout``:
    ``{"ok", "backend", "latency_ms", "server_version", "connect_ms"}``. ``target`` names
    the database in errors.

    :raises BackendUnavailableError: the database cannot be reached.
    """
    seen = await probe(
        url, application_name=application_name(role), timeout=timeout, target=target, retry=retry
    )
    return {
        "ok": True,
        "backend": seen.backend,
        "latency_ms": seen.latency_ms,
        "server_version": seen.server_version,
        "connect_ms": seen.connect_ms,
    }
