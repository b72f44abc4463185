"""`RedisConfig` and the one Redis client factory: a single node or a cluster, TLS, secret URLs.

The rate limiter and the breakers share this factory, so a ``rediss://`` URL, a
private CA (``SSL_CERT_FILE`` / ``REQUESTS_CA_BUNDLE``), a ``${secret:NAME}`` password
and ``cluster = true`` work the same for both. redis-py is imported only when a
client is built.

``max_connections`` bounds each client's connections (per node on a cluster). A call
that finds them all busy waits for one, up to the ``pool_wait`` its owner gives
(`revoctl.core._redis_clients`): a busy pool is back-pressure, and a wait that runs out
is a `PoolExhaustedError`, not an outage.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

from pydantic import Field, field_validator, model_validator

from revoctl.core._settings import Section
from revoctl.core.errors import BackendUnavailableError, ConfigError, first_line
from revoctl.core.redaction import redact_url, register_secret
from revoctl.core.references import SecretReader, resolve_url

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster

    from revoctl.core._redis_clients import WaitingRedis, WaitingRedisCluster

    RedisClient = Redis | RedisCluster

CA_BUNDLE_VARIABLES = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")


class RedisConfig(Section):
    """``[redis]``: where the shared state of limits and breakers lives."""

    url: str = "redis://127.0.0.1:6379/0"
    cluster: bool = False
    socket_timeout: float = Field(2.0, gt=0, le=300)
    connect_timeout: float = Field(2.0, gt=0, le=300)
    max_connections: int = Field(64, ge=1, le=10_000)
    """Connections per client (per node on a cluster); past them a call waits for one, as
    long as its owner allows (the limiter: half of ``limits.timeout_seconds``)."""

    @field_validator("url")
    @classmethod
    def _redis_scheme(cls, url: str) -> str:
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// (TLS) or unix:// URL")
        return url

    @model_validator(mode="after")
    def _cluster_url(self) -> RedisConfig:
        """A cluster has one database and TCP nodes: a db index other than 0, or a socket
        path, cannot be served by one (redis-py would refuse it at the first call)."""
        if not self.cluster:
            return self
        if self.url.startswith("unix://"):
            raise ValueError("cluster = true, but url is a unix:// socket: a cluster is TCP")
        parts = urlsplit(self.url)
        db = parts.path.strip("/") or parse_qs(parts.query).get("db", ["0"])[0]
        if db not in ("", "0"):
            raise ValueError(
                f"cluster = true, but url names database {db!r}: a cluster has database 0 "
                "only (drop the /N, or set cluster = false)"
            )
        return self

    def describe(self) -> str:
        """The URL as written, password masked (a reference stays a reference)."""
        return redact_url(self.url)


DEFAULT_POOL_WAIT = 1.0
"""Seconds a call waits for a free connection when its owner names no wait."""


async def open_redis(
    config: RedisConfig,
    read_secret: SecretReader | None = None,
    *,
    pool_wait: float = DEFAULT_POOL_WAIT,
) -> RedisClient:
    """A client for ``config``: `RedisCluster` when ``cluster`` is set, else `Redis`.

    Nothing connects until the first command. A call that finds all ``max_connections``
    busy waits for one up to ``pool_wait`` seconds, then raises `PoolExhaustedError`.

    :raises ConfigError: the URL holds a reference and there is no ``read_secret``, or
        the CA bundle cannot be read.
    """
    from revoctl.core._redis_clients import PackedConnection, WaitingRedis, WaitingRedisCluster

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
    if not config.cluster:  # a rediss:// or unix:// URL's own connection class wins
        options["connection_class"] = PackedConnection
    try:
        # from_url builds an instance of the class it is called on (typed as the base class)
        client = cast(
            "WaitingRedis | WaitingRedisCluster",
            (WaitingRedisCluster if config.cluster else WaitingRedis).from_url(url, **options),
        )
    except ValueError:
        raise ConfigError("redis.url: not a valid Redis URL") from None
    client.wait_at_most(pool_wait, connections=config.max_connections, target=config.describe())
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

    A cluster whose topology cannot be read (no node answers, slots not covered) is
    unavailable too; ``cluster = true`` on a node without cluster mode is a `ConfigError`.
    Other Redis errors (a script error, a wrong type) propagate: they are bugs, not outages.
    """
    from redis.exceptions import ConnectionError, RedisClusterException, TimeoutError

    try:
        yield
    except (ConnectionError, TimeoutError, OSError) as exc:
        raise BackendUnavailableError(
            f"cannot reach Redis at {config.describe()}: {first_line(exc)}"
        ) from exc
    except RedisClusterException as exc:  # the cluster's topology could not be read
        if "not enabled" in str(exc):  # a single node named with cluster = true
            raise ConfigError(
                f"redis.cluster is true but {config.describe()} is not a cluster node"
            ) from None
        raise BackendUnavailableError(
            f"cannot reach the Redis cluster at {config.describe()}: {first_line(exc)}"
        ) from exc
