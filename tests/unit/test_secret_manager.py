"""SecretManager on an in-memory store and an injected clock: cache, single-flight,
stale-if-error, fallback, rotation, audit, references, redaction and health."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from revoctl.core import SecretConfig
from revoctl.core.errors import BackendUnavailableError, ConfigError, NotFoundError, UsageError
from revoctl.core.redaction import MASK, redact
from revoctl.core.references import resolve_text
from revoctl.core.secrets import (
    AuditEvent,
    Secret,
    SecretManager,
    SecretProperties,
    SecretProvider,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class MemoryStore:
    """A `SecretStore` in a dict, with a call log and switchable faults."""

    def __init__(self, provider: SecretProvider = SecretProvider.AZURE_KEY_VAULT) -> None:
        self.provider = provider
        self.data: dict[str, list[Secret]] = {}
        self.calls: list[str] = []
        self.failing = False
        self.hanging = False
        self.delay = 0.0

    @classmethod
    def from_config(cls, config: SecretConfig, *, home: Path) -> MemoryStore:
        return cls()

    async def _enter(self, op: str) -> None:
        self.calls.append(op)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.hanging:
            await asyncio.Event().wait()
        if self.failing:
            raise BackendUnavailableError("fake vault unreachable")

    async def get(self, name: str, version: str | None = None) -> Secret:
        await self._enter("get")
        for secret in self.data.get(name, []):
            if version in (None, secret.version):
                return secret
        raise NotFoundError(f"secret {name!r} not found")

    async def set(self, name: str, value: str) -> Secret:
        await self._enter("set")
        secret = Secret(name, value, uuid.uuid4().hex, datetime.now(UTC), True, self.provider)
        self.data.setdefault(name, []).insert(0, secret)
        return secret

    async def list_secrets(self) -> list[SecretProperties]:
        await self._enter("list")
        return [versions[0].properties for _, versions in sorted(self.data.items())]

    async def versions(self, name: str) -> list[SecretProperties]:
        await self._enter("versions")
        if name not in self.data:
            raise NotFoundError(f"secret {name!r} not found")
        return [secret.properties for secret in self.data[name]]

    async def ping(self) -> None:
        await self._enter("ping")

    async def close(self) -> None:
        pass

    def seed(self, name: str, value: str, *, age: timedelta = timedelta(0)) -> Secret:
        updated = datetime.now(UTC) - age
        secret = Secret(name, value, uuid.uuid4().hex, updated, True, self.provider)
        self.data.setdefault(name, []).insert(0, secret)
        return secret


class RecordingAudit:
    """Records intents and completions; ``events`` are the completed ones. ``writes_seen``
    notes how many store writes had happened when each intent was recorded."""

    def __init__(self, *, fail: bool = False, store: MemoryStore | None = None) -> None:
        self.events: list[AuditEvent] = []
        self.intents: list[AuditEvent] = []
        self.writes_seen: list[int] = []
        self.fail = fail
        self.store = store

    async def begin(self, event: AuditEvent) -> int:
        if self.fail:
            raise RuntimeError("no such table: secret_audit_log")
        self.intents.append(event)
        if self.store is not None:
            self.writes_seen.append(self.store.calls.count("set"))
        return len(self.intents) - 1

    async def complete(self, intent: int, event: AuditEvent) -> None:
        assert self.intents[intent].secret_name == event.secret_name
        self.events.append(event)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


def make_manager(
    store: MemoryStore,
    clock: FakeClock,
    *,
    fallback: MemoryStore | None = None,
    audit: RecordingAudit | None = None,
    **settings: object,
) -> SecretManager:
    config = SecretConfig.model_validate(
        {"cache_ttl_seconds": 60, "max_stale_seconds": 300, "fallback": "none", **settings}
    )
    return SecretManager(
        config,
        home=Path("/nonexistent"),
        store=store,
        fallback_store=fallback,
        clock=clock,
        audit=audit,
    )


async def test_cached_value_is_served_until_the_ttl_ends(store: MemoryStore, clock: FakeClock):
    store.seed("api-key", "value-one")
    manager = make_manager(store, clock)
    assert await manager.get_secret("api-key") == "value-one"
    clock.advance(59)
    assert await manager.get_secret("api-key") == "value-one"
    assert store.calls == ["get"]
    clock.advance(1)
    store.seed("api-key", "value-two")
    assert await manager.get_secret("api-key") == "value-two"
    assert store.calls == ["get", "get"]


async def test_versions_are_cached_apart_from_the_latest(store: MemoryStore, clock: FakeClock):
    old = store.seed("api-key", "value-one")
    store.seed("api-key", "value-two")
    manager = make_manager(store, clock)
    assert await manager.get_secret("api-key", old.version) == "value-one"
    assert await manager.get_secret("api-key") == "value-two"
    assert await manager.get_secret("api-key", old.version) == "value-one"
    assert store.calls == ["get", "get"]


async def test_concurrent_misses_make_one_provider_call(store: MemoryStore, clock: FakeClock):
    store.seed("api-key", "value-one")
    store.delay = 0.05
    manager = make_manager(store, clock)
    values = await asyncio.gather(*(manager.get_secret("api-key") for _ in range(50)))
    assert values == ["value-one"] * 50
    assert store.calls == ["get"]


async def test_a_failed_single_flight_fails_every_waiter_then_retries(
    store: MemoryStore, clock: FakeClock
):
    store.seed("api-key", "value-one")
    store.delay, store.failing = 0.05, True
    manager = make_manager(store, clock)
    results = await asyncio.gather(
        *(manager.get_secret("api-key") for _ in range(10)), return_exceptions=True
    )
    assert all(isinstance(r, BackendUnavailableError) for r in results)
    assert store.calls == ["get"]
    store.failing = False
    assert await manager.get_secret("api-key") == "value-one"


async def test_a_cancelled_waiter_does_not_cancel_the_shared_read(
    store: MemoryStore, clock: FakeClock
):
    store.seed("api-key", "value-one")
    store.delay = 0.05
    manager = make_manager(store, clock)
    first = asyncio.ensure_future(manager.get_secret("api-key"))
    second = asyncio.ensure_future(manager.get_secret("api-key"))
    await asyncio.sleep(0.01)
    first.cancel()
    assert await second == "value-one"
    assert store.calls == ["get"]


async def test_stale_value_is_served_while_the_provider_fails_up_to_the_bound(
    store: MemoryStore, clock: FakeClock, caplog: pytest.LogCaptureFixture
):
    store.seed("api-key", "value-one")
    manager = make_manager(store, clock)
    await manager.get_secret("api-key")
    store.failing = True
    clock.advance(60 + 300)  # expired, and exactly max_stale_seconds past its TTL
    with caplog.at_level(logging.WARNING, "revoctl.secrets"):
        assert await manager.get_secret("api-key") == "value-one"
    assert "serving the cached value of secret 'api-key'" in caplog.text
    health = await manager.health_check()
    assert health["status"] == "degraded"
    assert health["reachable"] is False
    assert health["stale_served"] == 1
    assert manager.cache_stats()["stale_served"] == 1  # revoctl_secret_degraded_reads_total
    assert manager.cache_stats()["fallback_served"] == 0
    clock.advance(0.5)
    with pytest.raises(BackendUnavailableError, match="no cached value, no fallback"):
        await manager.get_secret("api-key")
    assert (await manager.health_check())["status"] == "unhealthy"


async def test_a_stale_answer_stands_for_a_while_before_the_provider_is_retried(
    store: MemoryStore, clock: FakeClock
):
    store.seed("api-key", "value-one")
    manager = make_manager(store, clock)
    await manager.get_secret("api-key")
    store.failing = True
    clock.advance(61)
    assert await manager.get_secret("api-key") == "value-one"
    assert store.calls == ["get", "get"]
    clock.advance(29)
    assert await manager.get_secret("api-key") == "value-one"  # no wait on the failing vault
    assert store.calls == ["get", "get"]
    clock.advance(1)
    store.failing = False
    store.seed("api-key", "value-two")
    assert await manager.get_secret("api-key") == "value-two"
    assert store.calls == ["get", "get", "get"]


async def test_fallback_answers_when_nothing_is_cached(store: MemoryStore, clock: FakeClock):
    local = MemoryStore(SecretProvider.LOCAL)
    local.seed("api-key", "local-value")
    store.failing = True
    manager = make_manager(store, clock, fallback=local)
    secret = await manager.read_secret("api-key")
    assert (secret.value, secret.provider) == ("local-value", SecretProvider.LOCAL)
    health = await manager.health_check()
    assert (health["status"], health["fallback_in_use"]) == ("degraded", True)
    assert manager.cache_stats()["fallback_served"] == 1
    assert manager.cache_stats()["stale_served"] == 0
    # Fallback values are kept briefly, so the primary is tried again soon.
    store.failing = False
    store.seed("api-key", "vault-value")
    assert await manager.get_secret("api-key") == "local-value"
    clock.advance(30)
    assert await manager.get_secret("api-key") == "vault-value"


async def test_a_missing_secret_never_falls_back(store: MemoryStore, clock: FakeClock):
    local = MemoryStore(SecretProvider.LOCAL)
    local.seed("api-key", "local-value")
    manager = make_manager(store, clock, fallback=local)
    with pytest.raises(NotFoundError):
        await manager.get_secret("api-key")
    assert local.calls == []


async def test_fallback_without_the_secret_is_backend_unavailable(
    store: MemoryStore, clock: FakeClock
):
    store.failing = True
    manager = make_manager(store, clock, fallback=MemoryStore(SecretProvider.LOCAL))
    with pytest.raises(BackendUnavailableError, match="fallback could not stand in"):
        await manager.get_secret("api-key")


async def test_a_hanging_provider_fails_within_the_timeout(store: MemoryStore, clock: FakeClock):
    store.hanging = True
    manager = make_manager(store, clock, timeout_seconds=0.2)
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError, match="did not answer within 0.2s"):
        await manager.get_secret("api-key")
    assert time.monotonic() - started < 1.0
    health = await manager.health_check()
    assert health["status"] == "unhealthy"
    assert time.monotonic() - started < 1.5


async def test_rotate_writes_a_new_version_and_keeps_the_old_one(
    store: MemoryStore, clock: FakeClock
):
    first = store.seed("api-key", "value-one")
    audit = RecordingAudit()
    manager = make_manager(store, clock, audit=audit)
    assert await manager.get_secret("api-key") == "value-one"
    rotation = await manager.rotate("api-key", actor="alice@ops")
    assert rotation.previous_version == first.version
    assert rotation.audited is True
    assert len(rotation.value) == 43  # 32 bytes, URL-safe base64 without padding
    assert rotation.value not in repr(rotation)
    assert await manager.get_secret("api-key") == rotation.value  # cache invalidated
    assert await manager.get_secret("api-key", first.version) == "value-one"
    [event] = audit.events
    assert (event.secret_name, event.action, event.actor) == ("api-key", "rotate", "alice@ops")
    assert (event.version, event.previous_version) == (rotation.version, first.version)
    assert redact(f"x {rotation.value} y") == f"x {MASK} y"


async def test_rotate_with_a_given_value_and_length(store: MemoryStore, clock: FakeClock):
    store.seed("api-key", "value-one")
    manager = make_manager(store, clock)
    assert (await manager.rotate("api-key", "given-value")).value == "given-value"
    assert len((await manager.rotate("api-key", length=64)).value) == 86
    with pytest.raises(UsageError, match="length"):
        await manager.rotate("api-key", length=4)
    with pytest.raises(NotFoundError):
        await manager.rotate("no-such-secret")


async def test_an_audit_failure_leaves_the_rotation_standing(
    store: MemoryStore, clock: FakeClock, caplog: pytest.LogCaptureFixture
):
    store.seed("api-key", "value-one")
    manager = make_manager(store, clock, audit=RecordingAudit(fail=True))
    with caplog.at_level(logging.WARNING, "revoctl.secrets"):
        rotation = await manager.rotate("api-key")
    assert rotation.audited is False
    assert "was not recorded in the audit log" in caplog.text
    assert await manager.get_secret("api-key") == rotation.value


async def test_the_intent_is_recorded_before_the_store_is_written(
    store: MemoryStore, clock: FakeClock
):
    store.seed("api-key", "value-one")
    audit = RecordingAudit(store=store)
    manager = make_manager(store, clock, audit=audit)
    rotation = await manager.rotate("api-key")
    await manager.set_secret("other", "value-two")
    assert [(i.action, i.version) for i in audit.intents] == [("rotate", None), ("set", None)]
    assert audit.writes_seen == [0, 1]  # each intent before its own write
    assert audit.events[0].version == rotation.version


async def test_set_validates_and_audits(store: MemoryStore, clock: FakeClock):
    audit = RecordingAudit()
    manager = make_manager(store, clock, audit=audit)
    written = await manager.set_secret("api-key", "value-one")
    assert await manager.get_secret("api-key") == "value-one"
    assert [(e.action, e.version, e.previous_version) for e in audit.events] == [
        ("set", written.version, None)
    ]
    with pytest.raises(UsageError, match="empty"):
        await manager.set_secret("api-key", "")  # refused before any intent is recorded
    with pytest.raises(UsageError, match="25600 bytes"):
        await manager.set_secret("api-key", "x" * 25601)
    assert store.calls == ["set", "get"]


@pytest.mark.parametrize("name", ["", "under_score", "dot.ted", "x" * 128, "sp ace", "ü"])
async def test_invalid_names_never_reach_the_store(store: MemoryStore, clock: FakeClock, name: str):
    manager = make_manager(store, clock)
    for call in (
        manager.get_secret(name),
        manager.set_secret(name, "value"),
        manager.rotate(name),
        manager.versions(name),
    ):
        with pytest.raises(UsageError, match="invalid secret name"):
            await call
    assert store.calls == []


async def test_references_resolve_through_the_manager(store: MemoryStore, clock: FakeClock):
    store.seed("db-password", "pa55-word")
    store.seed("db-user", "app-user")
    manager = make_manager(store, clock)
    url = "postgresql://${secret:db-user}:${secret:db-password}@h/db?p=${secret:db-password}"
    resolved = await resolve_text(url, manager.get_secret)
    assert resolved == "postgresql://app-user:pa55-word@h/db?p=pa55-word"
    assert store.calls == ["get", "get"]  # each secret read once, however often referenced
    assert redact("pa55-word") == MASK
    assert await resolve_text("no references", manager.get_secret) == "no references"
    with pytest.raises(UsageError):
        await resolve_text("${secret:bad_name}", manager.get_secret)
    with pytest.raises(NotFoundError):
        await resolve_text("${secret:missing}", manager.get_secret)


async def test_list_older_than(store: MemoryStore, clock: FakeClock):
    store.seed("fresh", "value-one")
    store.seed("stale", "value-two", age=timedelta(days=91))
    manager = make_manager(store, clock)
    assert [p.name for p in await manager.list_secrets()] == ["fresh", "stale"]
    assert [p.name for p in await manager.list_secrets(older_than=timedelta(days=90))] == ["stale"]


async def test_health_reports_cache_figures(store: MemoryStore, clock: FakeClock):
    store.seed("api-key", "value-one")
    manager = make_manager(store, clock)
    for _ in range(4):
        await manager.get_secret("api-key")
    health = await manager.health_check()
    assert health["status"] == "healthy"
    assert health["provider"] == "azure_key_vault"
    assert health["latency_ms"] >= 0
    assert health["cache"] == {"size": 1, "expired": 0, "hits": 3, "misses": 1, "hit_rate": 0.75}


def test_secret_config_takes_the_azure_table_and_refuses_unknown_keys():
    config = SecretConfig(
        provider=SecretProvider.AZURE_KEY_VAULT,
        azure={"vault_url": "https://vault.example/", "tenant_id": "tenant", "client_id": "c"},
        cache_ttl_seconds=5,
    )
    assert (config.azure.vault_url, config.azure.tenant_id) == ("https://vault.example/", "tenant")
    assert config.azure.client_id == "c"
    assert SecretConfig.model_validate({"provider": "local"}).provider is SecretProvider.LOCAL
    with pytest.raises(ValueError, match="azure_vault_url"):  # a typo never passes silently
        SecretConfig.model_validate({"azure_vault_url": "https://vault.example/"})


def test_azure_without_a_vault_url_is_a_config_error(monkeypatch: pytest.MonkeyPatch):
    from revoctl.config import load_config

    monkeypatch.setenv("REVOCTL_SECRETS__PROVIDER", "azure_key_vault")
    with pytest.raises(ConfigError, match="vault_url is required"):
        load_config()
    monkeypatch.setenv("REVOCTL_SECRETS__PROVIDER", "vault")
    with pytest.raises(ConfigError, match="REVOCTL_SECRETS__PROVIDER"):
        load_config()


def test_the_package_exports_a_sorted_all():
    import revoctl.core.secrets as package

    assert package.__all__ == sorted(package.__all__)
    assert all(getattr(package, name) is not None for name in package.__all__)


async def test_serving_state_says_where_reads_come_from_without_asking_a_store(
    store: MemoryStore, clock: FakeClock
):
    fallback = MemoryStore(SecretProvider.LOCAL)
    store.seed("api-key", "value-one")
    fallback.seed("other-key", "value-two")
    manager = make_manager(store, clock, fallback=fallback)
    await manager.get_secret("api-key")
    calls = list(store.calls)
    state = manager.serving_state()
    assert store.calls == calls  # nothing asked
    assert (state["provider"], state["fallback"], state["serving"]) == (
        "azure_key_vault",
        "local",
        "provider",
    )
    assert state["cache"]["size"] == 1 and state["last_error"] is None
    store.failing = True
    clock.advance(61)
    assert await manager.get_secret("api-key") == "value-one"
    assert manager.serving_state()["serving"] == "stale"
    assert await manager.get_secret("other-key") == "value-two"
    state = manager.serving_state()
    assert (state["serving"], state["stale_served"], state["fallback_served"]) == ("fallback", 1, 1)
    assert "fake vault unreachable" in state["last_error"]
    store.failing = False
    clock.advance(61)
    await manager.get_secret("api-key")
    assert manager.serving_state()["serving"] == "provider"
    assert "value-one" not in str(manager.serving_state())
