"""`RedisConfig` and the one Redis client factory: a single node or a cluster, TLS, secret URLs.

The rate limiter and the breakers share this factory, so a ``rediss://`` URL, a
private CA (``SSL_CERT_FILE`` / ``REQUESTS_CA_BUNDLE``), a ``${secret:NAME}`` password
and ``cluster = true`` work the same for both. redis-py is imported only when a
client is built.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from pydantic import Field, field_validator

from revoctl.core._settings import Section
from revoctl.core.errors import BackendUnavailableError, ConfigError
from revoctl.core.redaction import redact_url, register_secret
from revoctl.core.references import SecretReader, resolve_url

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster

    RedisClient = Redis | RedisCluster

CA_BUNDLE_VARIABLES = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")


class RedisConfig(Section):
    """``[redis]``: where the shared state of limits and breakers lives."""

    url: str = "redis://127.0.0.1:6379/0"
    cluster: bool = False
    socket_timeout: float = Field(2.0, gt=0, le=300)
    connect_timeout: float = Field(2.0, gt=0, le=300)
    max_connections: int = Field(64, ge=1, le=10_000)

    @field_validator("url")
    @classmethod
    def _redis_scheme(cls, url: str) -> str:
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// (TLS) or unix:// URL")
        return url

    def describe(self) -> str:
        """The URL as written, password masked (a reference stays a reference)."""
        return redact_url(self.url)


async def open_redis(config: RedisConfig, read_secret: SecretReader | None = None) -> RedisClient:
    """A client for ``config``: `RedisCluster` when ``cluster`` is set, else `Redis`.

    Nothing connects until the first command.

    :raises ConfigError: the URL holds a reference and there is no ``read_secret``, or
        the CA bundle cannot be read.
    """
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster

    async def no_reader(name: str) -> str:
        raise ConfigError(
            "redis.url: holds a ${secret:...} reference but no secret resolver is set"
        )

    url = await resolve_url(config.url, read_secret or no_reader, setting="redis.url")
    options: dict[str, Any] = {
        "socket_timeout": config.socket_timeout,
        "socket_connect_timeout": config.connect_timeout,
        "max_connections": config.max_connections,
    }
    if url.startswith("rediss://"):
        options.update(_tls_options())
    try:
        if config.cluster:
            client: RedisClient = RedisCluster.from_url(url, **options)
        else:
            client = Redis.from_url(url, **options)
    except ValueError:
        raise ConfigError("redis.url: not a valid Redis URL") from None
    password = urlsplit(url).password
    if password:  # a literal one; referenced values were registered when read
        register_secret(unquote(password))
    return client


def _tls_options() -> dict[str, Any]:
    variable = next((name for name in CA_BUNDLE_VARIABLES if os.environ.get(name)), None)
    if variable is None:
        return {}
    path = os.environ[variable]
    if not os.path.isfile(path):
        raise ConfigError(f"{variable}={path}: not a readable CA bundle")
    return {"ssl_ca_certs": path}


@contextlib.contextmanager
def translate_redis_errors(config: RedisConfig) -> Iterator[None]:
    """Connection errors and timeouts as `BackendUnavailableError`, naming the URL template.

    Other Redis errors (a script error, a wrong type) propagate: they are bugs, not outages.
    """
    from redis.exceptions import ConnectionError, TimeoutError

    try:
        yield
    except (ConnectionError, TimeoutError, OSError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BackendUnavailableError(
            f"cannot reach Redis at {config.describe()}: {reason}"
        ) from exc
