"""`MetricsSync`'s new folds, on stand-ins for the services (the e2e test
``tests/e2e/test_exported_metrics.py`` runs them against a served gateway): degraded secret
reads as counter increments, the breakers' store up or down, and the keys' spend and budgets
read at most every `KEY_SPEND_SECONDS`, a key that lost its budget or was revoked dropped."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from revoctl.core.errors import BackendUnavailableError
from revoctl.runtime import metrics_sync
from revoctl.runtime.metrics import GatewayMetrics
from revoctl.runtime.metrics_sync import MetricsSync


class Services:
    """What `MetricsSync` reads: the components built, secrets, breakers, accounts, tiers."""

    def __init__(self, *built: str, budget: float = 10.0) -> None:
        self._built = built
        self.cache = {"hits": 5, "misses": 1, "stale_served": 0, "fallback_served": 0}
        self.secrets = SimpleNamespace(cache_stats=lambda: dict(self.cache))
        self.control = SimpleNamespace(status="starting")
        self.breakers = SimpleNamespace(
            stats=dict,
            reported=SimpleNamespace(states=dict, transitions=dict),
            control=self.control,
        )
        self.keys: list[dict[str, Any]] | Exception = []
        self.reads = 0
        self.accounts = SimpleNamespace(list_keys=self._list_keys)
        self.settings = SimpleNamespace(tiers={"capped": SimpleNamespace(budget=budget)})

    def built(self) -> dict[str, object]:
        return dict.fromkeys(self._built, object())

    async def _list_keys(self) -> list[dict[str, Any]]:
        self.reads += 1
        if isinstance(self.keys, Exception):
            raise self.keys
        return self.keys


def key(
    name: str, spend: float | None, budget: float | None, revoked: bool = False
) -> dict[str, Any]:
    return {"name": name, "spend": spend, "budget": budget, "revoked": revoked}


def sample(metrics: GatewayMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def make(services: Services) -> tuple[MetricsSync, GatewayMetrics]:
    metrics = GatewayMetrics()
    usage = {"buffered": 0, "oldest_seconds": None, "drops": {}}
    return MetricsSync(services, metrics, lambda: usage), metrics  # type: ignore[arg-type]


async def test_degraded_secret_reads_become_counter_increments() -> None:
    services = Services("secrets")
    sync, metrics = make(services)
    name = "revoctl_secret_degraded_reads_total"
    await sync.sync()
    assert sample(metrics, name, served="stale") == 0 == sample(metrics, name, served="fallback")
    services.cache.update(stale_served=3, fallback_served=1)
    await sync.sync()
    services.cache.update(stale_served=4)
    await sync.sync()
    assert sample(metrics, name, served="stale") == 4
    assert sample(metrics, name, served="fallback") == 1


async def test_the_breaker_store_is_up_or_down_once_the_control_plane_has_looked() -> None:
    services = Services("breakers")
    sync, metrics = make(services)
    await sync.sync()
    # Not set while starting (the gateway's start waits for the first read, up to 2 s).
    assert sample(metrics, "revoctl_breaker_store_up") == 0
    services.control.status = "ok"
    await sync.sync()
    assert sample(metrics, "revoctl_breaker_store_up") == 1
    services.control.status = "unreachable"
    await sync.sync()
    assert sample(metrics, "revoctl_breaker_store_up") == 0


async def test_key_spend_is_read_every_interval_and_gone_keys_are_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1000.0]
    monkeypatch.setattr(metrics_sync.time, "monotonic", lambda: now[0])
    services = Services()
    sync, metrics = make(services)
    services.keys = [key("a", 2.5, 10.0), key("b", None, 10.0), key("free", None, None)]
    await sync.sync()
    assert sample(metrics, "revoctl_key_spend", key="a") == 2.5
    assert sample(metrics, "revoctl_key_spend", key="b") == 0.0  # never charged
    assert sample(metrics, "revoctl_key_budget", key="b") == 10.0
    assert sample(metrics, "revoctl_key_budget", key="free") is None  # no budget, no series
    services.keys = [key("a", 9.0, 10.0), key("b", 1.0, 10.0, revoked=True)]
    now[0] += metrics_sync.KEY_SPEND_SECONDS - 1
    await sync.sync()
    assert services.reads == 1
    assert sample(metrics, "revoctl_key_spend", key="a") == 2.5  # not read again yet
    now[0] += 1
    await sync.sync()
    assert sample(metrics, "revoctl_key_spend", key="a") == 9.0
    assert sample(metrics, "revoctl_key_spend", key="b") is None  # revoked: dropped
    services.keys = BackendUnavailableError("the limit store is away")
    now[0] += metrics_sync.KEY_SPEND_SECONDS
    await sync.sync()  # a failed read keeps the last figures
    assert sample(metrics, "revoctl_key_spend", key="a") == 9.0


async def test_without_a_budget_in_any_tier_no_key_is_read() -> None:
    services = Services(budget=0.0)
    services.keys = [key("a", 1.0, 10.0)]
    sync, metrics = make(services)
    await sync.sync()
    assert services.reads == 0
    assert sample(metrics, "revoctl_key_spend", key="a") is None
