"""`SecretManager`: one cached, bounded, fail-soft way to read and change secrets.

Reads go through an in-memory TTL cache keyed by (name, version). Concurrent misses for one
key share one provider call (single-flight), bounded by ``timeout_seconds``. When the
provider fails, a read is served, in this order, from the cached value (stale for at most
``max_stale_seconds`` past its TTL), the fallback store, or not at all (`BackendUnavailableError`).

Every value the manager hands out or is handed is registered with the log
redaction filter first, so it can never reach a log line, an error or a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets as token_source
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from revoctl.core._lifecycle import AsyncService
from revoctl.core._paths import state_dir
from revoctl.core.errors import BackendUnavailableError, NotFoundError, RevoctlError, UsageError
from revoctl.core.redaction import redact, register_secret
from revoctl.core.secrets._audit import AuditSink, AuditTrail, ReadAudit, ReadSink
from revoctl.core.secrets._cache import Key, SecretCache
from revoctl.core.secrets.base import (
    Secret,
    SecretProperties,
    SecretProvider,
    SecretStore,
    validate_name,
    validate_value,
    version_before,
)
from revoctl.core.secrets.stores import secret_store_for
from revoctl.core.tracing import span

if TYPE_CHECKING:
    from revoctl.core.secrets.settings import SecretConfig

T = TypeVar("T")

logger = logging.getLogger("revoctl.secrets")

RETRY_SECONDS = 30.0
"""How long a stale or fallback answer stands before the failing provider is tried again:
reads in between are answered at once instead of each waiting out the timeout."""

MIN_GENERATED_BYTES, MAX_GENERATED_BYTES = 16, 8192


@dataclass(frozen=True)
class Rotation:
    """The outcome of `SecretManager.rotate`; ``value`` stays out of ``repr``."""

    name: str
    version: str
    previous_version: str | None
    rotated_on: datetime
    value: str = field(repr=False)
    audited: bool


class SecretManager(AsyncService):
    """Secrets from the configured provider, cached, with stale-if-error and a fallback.

    ``store``, ``fallback_store`` and ``clock`` are for tests; by default the stores
    are built from ``config`` and the clock is `time.monotonic`.
    """

    def __init__(
        self,
        config: SecretConfig,
        *,
        home: Path | None = None,
        audit: AuditSink | None = None,
        reads: ReadSink | None = None,
        store: SecretStore | None = None,
        fallback_store: SecretStore | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.home = home if home is not None else state_dir()
        self._audit = AuditTrail(audit, config.timeout_seconds)
        self._reads = ReadAudit(reads if config.audit_reads else None, lambda: self.store.provider)
        self._injected = (store, fallback_store)
        self._cache = SecretCache(clock)
        self._inflight: dict[Key, asyncio.Future[Secret]] = {}
        self._stale_served = self._fallback_served = 0
        self._last_error: str | None = None
        self._served_from = "provider"

    # ------------------------------------------------------------------ lifecycle

    @cached_property
    def store(self) -> SecretStore:
        """The primary store, built on first use."""
        return self._injected[0] or self._build(self.config.provider)

    @cached_property
    def fallback_store(self) -> SecretStore | None:
        """The local store when it backs up another provider, else None."""
        if self._injected[1] is not None:
            return self._injected[1]
        if self.config.fallback == "none" or self.config.provider is SecretProvider.LOCAL:
            return None
        return self._build(SecretProvider.LOCAL)

    def _build(self, provider: SecretProvider) -> SecretStore:
        return secret_store_for(provider, self.config, home=self.home)

    async def _open(self) -> None:
        """Build the stores, so a configuration error surfaces now; contacts no back end."""
        _ = self.store, self.fallback_store

    async def _close(self) -> None:
        """Close the stores that were built and forget every cached value."""
        self._cache.clear()
        await self._reads.close(self.config.timeout_seconds)
        async with contextlib.AsyncExitStack() as stack:  # every store is closed, errors or not
            for name in ("store", "fallback_store"):
                built = self.__dict__.pop(name, None)
                if built is not None:
                    stack.push_async_callback(built.close)

    # ------------------------------------------------------------------ reads

    async def get_secret(self, name: str, version: str | None = None) -> str:
        """The value of ``name`` (latest, or ``version``).

        :raises UsageError: the name is invalid.
        :raises NotFoundError: no such secret or version (or it is disabled).
        :raises BackendUnavailableError: the provider failed and neither a cached value
            nor the fallback could stand in.
        """
        with span("secret.read", secret=name):  # the name only, never the value
            return (self._cache.fresh((name, version)) or await self._miss((name, version))).value

    async def read_secret(self, name: str, version: str | None = None) -> Secret:
        """Like `get_secret`, with the version, dates and the provider that answered."""
        with span("secret.read", secret=name):
            return self._cache.fresh((name, version)) or await self._miss((name, version))

    async def _miss(self, key: Key) -> Secret:
        validate_name(key[0])
        self._cache.misses += 1
        flight = self._inflight.get(key)
        if flight is None:
            flight = asyncio.ensure_future(self._load(key))
            self._inflight[key] = flight
            flight.add_done_callback(lambda done: self._landed(key, done))
        # Shielded: a caller that gives up does not cancel the read for the others.
        return await asyncio.shield(flight)

    def _landed(self, key: Key, flight: asyncio.Future[Secret]) -> None:
        self._inflight.pop(key, None)
        if not flight.cancelled():
            flight.exception()  # retrieved here, so no "never retrieved" noise if nobody waits

    async def _load(self, key: Key) -> Secret:
        name, version = key
        try:
            secret = await self._reads.record(key, self._call(self.store, lambda s: s.get(*key)))
        except BackendUnavailableError as exc:
            self._last_error = redact(str(exc))
            stale = self._cache.stale(key, self.config.max_stale_seconds, RETRY_SECONDS)
            if stale is not None:
                self._stale_served, self._served_from = self._stale_served + 1, "stale"
                logger.warning("serving the cached value of secret %r: %s", name, exc)
                return stale
            secret = await self._from_fallback(exc, lambda store: store.get(name, version))
            self._fallback_served, self._served_from = self._fallback_served + 1, "fallback"
            self._cache.remember(key, secret, min(self.config.cache_ttl_seconds, RETRY_SECONDS))
            return secret
        self._last_error, self._served_from = None, "provider"
        self._cache.remember(key, secret, self.config.cache_ttl_seconds)
        return secret

    async def list_secrets(self, *, older_than: timedelta | None = None) -> list[SecretProperties]:
        """The latest version of every secret, without values; with ``older_than``, only those
        whose latest version is at least that old (due for rotation).

        :raises BackendUnavailableError: the provider failed and there is no fallback.
        """
        found = await self._read(lambda store: store.list_secrets())
        if older_than is None:
            return found
        cutoff = datetime.now(UTC) - older_than
        return [props for props in found if props.updated_on <= cutoff]

    async def versions(self, name: str) -> list[SecretProperties]:
        """Every version of ``name``, newest first, without values.

        :raises UsageError: the name is invalid.
        :raises NotFoundError: no such secret.
        :raises BackendUnavailableError: the provider failed and there is no fallback.
        """
        validate_name(name)
        return await self._read(lambda store: store.versions(name))

    # ------------------------------------------------------------------ writes

    async def set_secret(
        self, name: str, value: str, *, actor: str | None = None
    ) -> SecretProperties:
        """Write ``value`` as the new version of ``name`` (creating it) and audit the change.

        :raises UsageError: the name or value is invalid.
        :raises BackendUnavailableError: the provider could not be reached (writes never
            go to the fallback: that would split the secret across two stores).
        """
        validate_name(name)
        register_secret(validate_value(value))
        intent = await self._audit.begin("set", name, self.store.provider, actor)
        written = await self._call(self.store, lambda store: store.set(name, value))
        self.invalidate(name)
        await self._audit.complete(intent, written.version, None)
        return written.properties

    async def rotate(
        self, name: str, value: str | None = None, length: int = 32, *, actor: str | None = None
    ) -> Rotation:
        """Write a new version of an existing secret: ``value``, or ``length`` random bytes as
        URL-safe text. The previous version stays readable.

        The change is recorded in the audit log. When the log cannot be written (no
        database, not migrated) the rotation still stands: the failure is logged as a
        warning and ``audited`` is False.

        :raises UsageError: the name, value or length is invalid.
        :raises NotFoundError: no such secret (rotate never creates one; use `set_secret`).
        :raises BackendUnavailableError: the provider could not be reached.
        """
        validate_name(name)
        if value is None:
            if not MIN_GENERATED_BYTES <= length <= MAX_GENERATED_BYTES:
                bounds = f"{MIN_GENERATED_BYTES}-{MAX_GENERATED_BYTES}"
                raise UsageError(f"length must be {bounds} bytes, got {length}")
            value = token_source.token_urlsafe(length)
        register_secret(validate_value(value))
        try:
            before = await self._call(self.store, lambda store: store.versions(name))
        except NotFoundError as exc:
            raise NotFoundError(
                f"{exc}; rotate writes a new version of an existing secret: "
                f"create it first with 'revoctl secrets set {name}'"
            ) from None
        intent = await self._audit.begin("rotate", name, self.store.provider, actor)
        written = await self._call(self.store, lambda store: store.set(name, value))
        self.invalidate(name)
        after = await self._call(self.store, lambda store: store.versions(name))
        previous = version_before(written.version, after) or before[0].version
        audited = await self._audit.complete(intent, written.version, previous)
        return Rotation(name, written.version, previous, written.updated_on, value, audited)

    def invalidate(self, name: str) -> None:
        """Forget every cached version of ``name``: the next read asks the provider (a
        process that learns of a rotation made elsewhere calls this)."""
        self._cache.invalidate(name)

    # ------------------------------------------------------------------ health

    def cache_stats(self) -> dict[str, int]:
        """Cache lookups so far, for metrics: answered from the cache, or not; and reads
        answered while the provider failed, stale from the cache or from the fallback."""
        return {
            "hits": self._cache.hits,
            "misses": self._cache.misses,
            "stale_served": self._stale_served,
            "fallback_served": self._fallback_served,
        }

    async def health_check(self, budget: float | None = None) -> dict[str, Any]:
        """Provider reachability and latency, cache figures, staleness and fallback use.

        ``status`` is healthy when the provider answers; degraded when it does not but
        reads can still be served (the fallback answers, or cached values are within
        their stale bound); unhealthy otherwise. The provider and the fallback are
        probed at once, each bounded by ``timeout_seconds`` or, when less, 80% of
        ``budget`` (the health deadline), so a hanging vault is reported as such,
        with the fallback's state, before the deadline cuts the whole check.
        """
        started = time.perf_counter()
        fallback = self.fallback_store  # built here: the Azure SDK's import counts against budget
        store = self.store
        timeout = self.config.timeout_seconds
        if budget is not None:  # leave a fifth of the budget (at least 0.5 s) to report in
            spent = time.perf_counter() - started
            timeout = round(max(0.05, min(timeout, budget - max(0.5, budget / 5) - spent)), 2)

        error, fallback_error = await asyncio.gather(
            self._probe(store, timeout),
            self._probe(fallback, timeout) if fallback is not None else asyncio.sleep(0),
        )
        latency_ms = round((time.perf_counter() - started) * 1000, 3)
        servable = self._cache.servable(self.config.max_stale_seconds)
        fallback_ok = fallback is not None and fallback_error is None
        reason = None
        if error is None:
            status = "healthy"
        elif fallback_ok or servable:
            status = "degraded"
            provider = self.store.provider.value
            reason = (
                f"{provider} unreachable: reads answered from the local fallback"
                if fallback_ok
                else f"{provider} unreachable: {servable} cached value(s) served while stale"
            )
        else:
            status = "unhealthy"
        state = self.serving_state()
        report: dict[str, Any] = {
            "status": status,
            "provider": state.pop("provider"),
            "reachable": error is None,
            "latency_ms": latency_ms,
            "error": error,
            "fallback": state.pop("fallback"),
            "fallback_in_use": error is not None and fallback_ok,
            **state,
        }
        if reason:
            report["reason"] = reason
        return report

    async def _probe(self, store: SecretStore, timeout: float) -> str | None:
        """None when ``store`` answers a ping within ``timeout``, else why not."""
        try:
            await self._call(store, lambda s: s.ping(), timeout=timeout)
        except RevoctlError as exc:
            return redact(str(exc))
        return None

    def serving_state(self) -> dict[str, Any]:
        """How the last read a store answered was served (``serving``); no store is asked."""
        return {
            "provider": self.store.provider.value,
            "fallback": self.fallback_store.provider.value if self.fallback_store else "none",
            "serving": self._served_from,  # "provider", "stale" or "fallback"
            "cache": self._cache.figures(),
            "stale_served": self._stale_served,
            "fallback_served": self._fallback_served,
            "last_error": self._last_error,
        }

    # ------------------------------------------------------------------ plumbing

    async def _call(
        self,
        store: SecretStore,
        op: Callable[[SecretStore], Awaitable[T]],
        *,
        timeout: float | None = None,
    ) -> T:
        """``op(store)``, bounded by ``timeout`` (default ``timeout_seconds``; the store's own
        retries included)."""
        timeout = self.config.timeout_seconds if timeout is None else timeout
        try:
            async with asyncio.timeout(timeout):
                return await op(store)
        except TimeoutError:
            raise BackendUnavailableError(
                f"secret provider {store.provider.value} did not answer within {timeout:g}s"
            ) from None

    async def _read(self, op: Callable[[SecretStore], Awaitable[T]]) -> T:
        """``op`` on the primary store, or on the fallback when the primary is unavailable."""
        try:
            result = await self._call(self.store, op)
        except BackendUnavailableError as exc:
            self._last_error = redact(str(exc))
            return await self._from_fallback(exc, op)
        self._last_error = None
        return result

    async def _from_fallback(
        self, failure: BackendUnavailableError, op: Callable[[SecretStore], Awaitable[T]]
    ) -> T:
        fallback = self.fallback_store
        if fallback is None:
            raise BackendUnavailableError(f"{failure} (no cached value, no fallback)") from failure
        try:
            result = await self._call(fallback, op)
        except (NotFoundError, BackendUnavailableError, UsageError) as exc:
            raise BackendUnavailableError(
                f"{failure}; the {fallback.provider.value} fallback could not stand in: {exc}"
            ) from failure
        logger.warning(
            "secret provider unavailable, answered from the %s fallback: %s",
            fallback.provider.value,
            failure,
        )
        return result
