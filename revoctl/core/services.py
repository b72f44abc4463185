"""The composition: one registry of components, built on first use, closed together.

`load_services()` is the runtime's, the library user's and the CLI's one way to get
configured services. Each component is listed once in `COMPONENTS`: how it is built
from the settings and the other components, and the key under which it reports in
the health document. Health, the CLI and the runtime's metrics read that list, so a
new service is one entry here. Components are built lazily (``revoctl secrets get``
never imports the database layer) and registered on one `AsyncExitStack`, which
closes them in reverse order of building.

The wiring between services lives here and nowhere else: the database and Redis
URLs read their ``${secret:NAME}`` references through the secret manager, the
secret manager records its changes in the database's audit table, the rate limiter
keeps its counters in the configured store and its events in the database, and the
circuit breakers keep the fleet's shared state in the configured store.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from revoctl.core._process import Role
from revoctl.core._stores import StoreContext, StoreKind
from revoctl.core.health import gather_health
from revoctl.core.redaction import install_log_redaction

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from revoctl.config import LoadedConfig, Settings
    from revoctl.core._guard import CallGuard
    from revoctl.core.accounts import Accounts
    from revoctl.core.breakers import CircuitBreakerManager
    from revoctl.core.db import DatabaseManager
    from revoctl.core.keys import KeyStore
    from revoctl.core.limits import RateLimiter
    from revoctl.core.secrets import AuditEvent, SecretManager


class Component(Protocol):
    """What the composition needs of every component: a close."""

    async def close(self) -> None: ...


class CheckedComponent(Component, Protocol):
    """A component with an entry in the health document."""

    async def health_check(self, budget: float | None = None) -> dict[str, Any]: ...


def _nothing(services: Services) -> tuple[str, ...]:
    return ()


@dataclass(frozen=True)
class ComponentSpec:
    """One entry of the registry: the `Services` attribute, its health key (None: the
    component is not a service of the health document), its builder, and the components
    it uses (``depends``, read from the configuration: e.g. the database only when the
    store is SQL). Those are built first, so they are closed after it."""

    attribute: str
    health_key: str | None
    build: Callable[[Services], Component]
    depends: Callable[[Services], tuple[str, ...]] = _nothing


class Services:
    """The configured services of one process, sharing one configuration and one state.

    Attributes build their component on first use: ``svc.secrets``, ``svc.db``.
    """

    def __init__(self, config: LoadedConfig, *, role: Role = Role.RUNTIME) -> None:
        self.config = config
        self.role = Role(role)
        self._built: dict[str, Component] = {}
        self._stack = contextlib.AsyncExitStack()

    @property
    def settings(self) -> Settings:
        return self.config.settings

    @property
    def home(self) -> Path:
        return self.config.home

    def component(self, attribute: str) -> Component:
        """The component behind ``attribute``, built and registered for closing on first use,
        after the components it depends on (so it is closed before them)."""
        if attribute not in self._built:
            spec = REGISTRY[attribute]
            for dependency in spec.depends(self):
                self.component(dependency)
            built = spec.build(self)
            self._built[attribute] = built
            self._stack.push_async_callback(built.close)
        return self._built[attribute]

    def built(self) -> Mapping[str, Component]:
        """The components built so far, by attribute (for metrics: nothing is built to read it)."""
        return dict(self._built)

    def store_context(self) -> StoreContext:
        """What a service's store takes from this process: Redis settings, the database
        (built when the store first asks for it), the secret reader."""
        return StoreContext(self.settings.redis, lambda: self.db, self.read_secret)

    @property
    def secrets(self) -> SecretManager:
        return cast("SecretManager", self.component("secrets"))

    async def read_secret(self, name: str) -> str:
        """A secret's current value, for the ``${secret:NAME}`` references of other services'
        settings; the secret manager is built only when a reference is first read."""
        return await self.secrets.get_secret(name)

    @property
    def db(self) -> DatabaseManager:
        return cast("DatabaseManager", self.component("db"))

    @property
    def limiter(self) -> RateLimiter:
        return cast("RateLimiter", self.component("limiter"))

    @property
    def breakers(self) -> CircuitBreakerManager:
        return cast("CircuitBreakerManager", self.component("breakers"))

    @property
    def keys(self) -> KeyStore:
        return cast("KeyStore", self.component("keys"))

    @property
    def accounts(self) -> Accounts:
        """Gateway keys with their tiers, budgets and spend: the CLI's and the admin API's."""
        return cast("Accounts", self.component("accounts"))

    async def health_check(self) -> dict[str, Any]:
        """The CONTRACT's health document: overall status and one entry per service, each
        check cut at ``[health] timeout_seconds``; the rate limiter and the breakers are
        degraded when the fleet's instances define them differently (`revoctl.core.drift`)."""
        timeout = self.settings.health.timeout_seconds
        checks = {
            spec.health_key: _bound_check(self, spec.attribute)
            for spec in COMPONENTS
            if spec.health_key is not None
        }
        import asyncio

        from revoctl.core.drift import apply_drift

        report, drift = await asyncio.gather(gather_health(checks, timeout), self._drift(timeout))
        return apply_drift(report, drift)

    async def _drift(self, timeout: float) -> dict[str, list[str]]:
        """The instances whose rules or breakers differ (`fleet_drift`); none when that
        cannot be read within the database's own health bound (its entry says why)."""
        import asyncio

        from revoctl.core.drift import fleet_drift

        try:
            async with asyncio.timeout(min(timeout, self.settings.database.health_timeout)):
                return await fleet_drift(self.db)
        except Exception:  # the database's health entry reports the failure
            return {}

    async def aclose(self) -> None:
        """Close every component built, newest first; each is closed whatever the others do."""
        await self._stack.aclose()
        self._built.clear()


def _bound_check(services: Services, attribute: str) -> Callable[[float], Any]:
    async def check(budget: float) -> dict[str, Any]:
        component = cast("CheckedComponent", services.component(attribute))
        return await component.health_check(budget)

    return check


class DatabaseAuditSink:
    """Records each secret change in the ``secret_audit_log`` table: a ``pending`` row before
    the store is written, marked ``done`` with its version after.

    The database is reached through ``db()`` on first use, not before: its URL may
    reference a secret, and a failure there must fail only the audit record.
    """

    def __init__(self, db: Callable[[], DatabaseManager]) -> None:
        self._db = db

    async def begin(self, event: AuditEvent) -> int:
        """Insert the intent; returns its row id.

        :raises UsageError: the table is missing (the database is not migrated).
        :raises BackendUnavailableError: the database cannot be reached.
        """
        from revoctl.core.db.models import SecretAuditLog

        async def insert(session: AsyncSession) -> int:
            row = SecretAuditLog(
                secret_name=event.secret_name,
                action=event.action,
                version=None,
                previous_version=None,
                provider=event.provider,
                actor=event.actor,
                status="pending",
                ts=event.occurred_at,
            )
            session.add(row)
            await session.flush()
            return int(row.id)

        return await self._db().transaction(insert)

    async def complete(self, intent: int, event: AuditEvent) -> None:
        """Mark the intent ``done`` with the version written (or with why it was not made).

        :raises BackendUnavailableError: the database cannot be reached.
        """
        from sqlalchemy import update

        from revoctl.core.db.models import SecretAuditLog

        done = (
            update(SecretAuditLog)
            .where(SecretAuditLog.id == intent)
            .values(
                version=event.version,
                previous_version=event.previous_version,
                status=event.status,
            )
        )
        await self._db().transaction(lambda session: session.execute(done))


def _build_secrets(services: Services) -> Component:
    from revoctl.core.secret_audit import SqlReadAuditSink
    from revoctl.core.secrets import SecretManager

    return SecretManager(
        services.settings.secrets,
        home=services.home,
        audit=DatabaseAuditSink(lambda: services.db),
        reads=SqlReadAuditSink(lambda: services.db),
    )


def _secrets_depends(services: Services) -> tuple[str, ...]:
    """The database, when reads are audited: built first, so it is closed after the secret
    manager writes its last read rows (building it contacts nothing)."""
    return ("db",) if services.settings.secrets.audit_reads else ()


def _build_database(services: Services) -> Component:
    from revoctl.core.db import DatabaseManager

    db = DatabaseManager(
        services.settings.database, role=services.role, resolve=services.read_secret
    )
    db.guard = _guard(services, "database")
    return db


def _guard(services: Services, name: str) -> CallGuard:
    """The guard of revoctl's own calls to the database or Redis: the predefined breaker
    ``name`` (looked up at the first call), in the runtime when ``guard_own_calls``."""
    from revoctl.core._guard import NO_GUARD

    if services.role is Role.CLI or not services.settings.breakers.guard_own_calls:
        return NO_GUARD
    from revoctl.core.breakers._guard import BreakerGuard

    return BreakerGuard(lambda: services.breakers.get(name))


def _build_limiter(services: Services) -> Component:
    """The limiter on the configured store. Outside the CLI, denials and store failures
    go to ``rate_limit_logs`` (an operator's ``limits test`` is not traffic)."""
    from revoctl.core.limits import (
        RateLimiter,
        RateLimitLogWriter,
        SqlRateLimitLogSink,
        open_limit_store,
    )

    config = services.settings.limits
    log = (
        None
        if services.role is Role.CLI
        else RateLimitLogWriter(SqlRateLimitLogSink(lambda: services.db))
    )
    open_store = functools.partial(open_limit_store, config, services.store_context())
    limiter = RateLimiter(config, open_store=open_store, log=log)
    if config.store is StoreKind.REDIS:
        limiter.guard = _guard(services, "redis")
    return limiter


def _limiter_depends(services: Services) -> tuple[str, ...]:
    """The database, when the limiter's events or its counters go there."""
    uses_db = services.role is not Role.CLI or services.settings.limits.store is StoreKind.SQL
    return ("db",) if uses_db else ()


def _build_breakers(services: Services) -> Component:
    """The breakers on the configured store."""
    from revoctl.core.breakers import CircuitBreakerManager, open_breaker_store

    config = services.settings.breakers
    open_store = functools.partial(open_breaker_store, config, services.store_context())
    return CircuitBreakerManager(config, open_store=open_store, role=services.role)


def _breakers_depends(services: Services) -> tuple[str, ...]:
    """The database, when the breakers' shared state lives there."""
    return ("db",) if services.settings.breakers.store is StoreKind.SQL else ()


def _build_keys(services: Services) -> Component:
    from revoctl.core.keys import KeyStore

    return KeyStore(services.db)


def _build_accounts(services: Services) -> Component:
    from revoctl.core.accounts import Accounts

    return Accounts(services.keys, services.limiter, services.settings.tiers)


COMPONENTS: tuple[ComponentSpec, ...] = (
    ComponentSpec("secrets", "secrets", _build_secrets, _secrets_depends),
    ComponentSpec("db", "database", _build_database),
    ComponentSpec("limiter", "rate_limiter", _build_limiter, _limiter_depends),
    ComponentSpec("breakers", "circuit_breakers", _build_breakers, _breakers_depends),
    ComponentSpec("keys", None, _build_keys, lambda _: ("db",)),
    ComponentSpec("accounts", None, _build_accounts, lambda _: ("keys", "limiter")),
)
"""Every component; those with a health key in the order the health document lists them."""

REGISTRY = {spec.attribute: spec for spec in COMPONENTS}


@contextlib.asynccontextmanager
async def open_services(
    config: LoadedConfig, *, role: Role = Role.RUNTIME
) -> AsyncIterator[Services]:
    """`Services` for an already loaded configuration, closed on exit."""
    install_log_redaction()
    services = Services(config, role=role)
    try:
        yield services
    finally:
        await services.aclose()


@contextlib.asynccontextmanager
async def load_services(
    config: str | Path | LoadedConfig | None = None,
    profile: str | None = None,
    *,
    role: Role = Role.RUNTIME,
) -> AsyncIterator[Services]:
    """Every service, configured as the CLI resolves the configuration.

    ``config`` is a config file (else the CLI's search: ``REVOCTL_CONFIG``,
    ``./revoctl.toml``, the XDG config) or a configuration already loaded;
    ``role`` tags this process's database connections (``application_name``).
    Log redaction is installed for the whole process.

    :raises ConfigError: the configuration is invalid.
    """
    from revoctl.config import LoadedConfig, load_config

    loaded = config if isinstance(config, LoadedConfig) else load_config(config, profile)
    async with open_services(loaded, role=role) as services:
        yield services
