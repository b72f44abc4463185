"""`MetricsSync`: the services' own counters and gauges, folded into the gateway's families.

Once a second and before each scrape. The database's statement times and checkout waits
are the exception: `DbMetrics` is the database manager's observer, told of each as it
happens. The keys' spend and budgets are read every `KEY_SPEND_SECONDS` (a store round
trip per key).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from revoctl.runtime.metrics import BREAKER_OUTCOMES, BREAKER_STATE_VALUES

if TYPE_CHECKING:
    from prometheus_client import Counter

    from revoctl.core.services import Services
    from revoctl.runtime.metrics import GatewayMetrics

logger = logging.getLogger("revoctl.metrics")

KEY_SPEND_SECONDS = 15.0
"""How often the keys' spend and budgets are read for ``revoctl_key_spend``/``_budget``."""
KEY_SPEND_TIMEOUT = 2.0
"""The longest one read of the keys' spend may hold a sync (a scrape) up."""


class DbMetrics:
    """The database manager's observer (`revoctl.core.db.DbObserver`): statement times and
    checkout waits into their histograms as they happen."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self.metrics = metrics

    def statement(self, operation: str, seconds: float) -> None:
        self.metrics.db_statements.labels(operation).observe(seconds)

    def checkout(self, seconds: float, *, timed_out: bool) -> None:
        self.metrics.db_checkout.observe(seconds)
        if timed_out:
            self.metrics.db_checkout_timeouts.inc()


class MetricsSync:
    """Folds the services' own counters and gauges, and the usage writer's, into the families."""

    def __init__(
        self, services: Services, metrics: GatewayMetrics, usage: Callable[[], dict[str, Any]]
    ) -> None:
        self.services = services
        self.metrics = metrics
        self.usage = usage
        self._deltas = DeltaCounter()
        self._keys_read_at = -math.inf
        self._keys_seen: set[str] = set()

    def attach(self) -> None:
        """Watch the database's statements and checkouts from now on (builds its manager,
        connects nothing)."""
        db = self.services.db
        db.stats.observer = DbMetrics(self.metrics)
        self.metrics.db_pool_max.set(db.config.pool_size + db.config.max_overflow)

    async def sync(self) -> None:
        """Every family fed from elsewhere, brought up to date (only the services built)."""
        m = self.metrics
        built = self.services.built()
        if "limiter" in built:
            decisions = self.services.limiter.decisions()
            self._deltas.fold(
                m.rate_limit_decisions,
                (
                    ((rule, outcome), count)
                    for rule, outcomes in decisions.items()
                    for outcome, count in outcomes.items()
                ),
            )
        if "breakers" in built:
            self.sync_breakers()
        if "db" in built:
            pool = self.services.db.pool_stats()
            if pool is not None:
                m.pool_connections.labels("checked_out").set(pool["checked_out"])
                m.pool_connections.labels("idle").set(pool["checked_in"] or 0)
                m.pool_connections.labels("overflow").set(pool["overflow"])
                self._deltas.fold(m.slow_queries, [((), pool["slow_queries"])])
        if "secrets" in built:
            cache = self.services.secrets.cache_stats()
            self._deltas.fold(
                m.secret_cache, [(("hit",), cache["hits"]), (("miss",), cache["misses"])]
            )
            degraded = [(("stale",), cache["stale_served"])]
            degraded.append((("fallback",), cache["fallback_served"]))
            self._deltas.fold(m.secret_degraded, degraded)
        self.sync_usage()
        m.sample_process()
        m.sample_system()
        if time.monotonic() - self._keys_read_at >= KEY_SPEND_SECONDS:
            self._keys_read_at = time.monotonic()
            await self.sync_key_spend()

    def sync_breakers(self) -> None:
        m, breakers = self.metrics, self.services.breakers
        for name, stats in breakers.stats().items():
            self._deltas.fold(
                m.breaker_calls,
                (
                    ((name, outcome), float(stats[counter]))
                    for outcome, counter in BREAKER_OUTCOMES.items()
                ),
            )
        for name, state in breakers.reported.states().items():
            m.breaker_state.labels(name).set(BREAKER_STATE_VALUES.get(state, 2))
        transitions = breakers.reported.transitions().items()
        self._deltas.fold(m.breaker_transitions, ((k, float(n)) for k, n in transitions))
        status = breakers.control.status
        if status != "starting":
            m.breaker_store_up.set(1 if status == "ok" else 0)

    async def sync_key_spend(self) -> None:
        """Each live key's spend and budget in its current period (keys with a budget only);
        a key revoked or gone since is dropped. A failing read leaves the last figures."""
        if not any(tier.budget > 0 for tier in self.services.settings.tiers.values()):
            return
        try:
            async with asyncio.timeout(KEY_SPEND_TIMEOUT):
                keys = await self.services.accounts.list_keys()
        except Exception as exc:  # the database or the limit store away: try again later
            logger.debug("key spend not read: %s: %s", type(exc).__name__, exc)
            return
        seen = set()
        for key in keys:
            if key["revoked"] or key["budget"] is None:
                continue
            seen.add(key["name"])
            self.metrics.key_spend.labels(key["name"]).set(key["spend"] or 0.0)
            self.metrics.key_budget.labels(key["name"]).set(key["budget"])
        for gone in self._keys_seen - seen:
            self.metrics.key_spend.remove(gone)
            self.metrics.key_budget.remove(gone)
        self._keys_seen = seen

    def sync_usage(self) -> None:
        """The usage writer's buffer and drops (also what shutdown dropped, at the end)."""
        usage = self.usage()
        self.metrics.usage_buffered.set(usage["buffered"])
        self.metrics.usage_oldest.set(usage["oldest_seconds"] or 0.0)
        drops = [((reason,), rows) for reason, rows in usage["drops"].items()]
        self._deltas.fold(self.metrics.usage_dropped, drops)


class DeltaCounter:
    """Turns a running total kept elsewhere into increments of a Prometheus counter."""

    def __init__(self) -> None:
        self._seen: dict[tuple[Any, ...], float] = {}

    def fold(self, counter: Counter, totals: Iterable[tuple[tuple[str, ...], float]]) -> None:
        for labels, total in totals:
            key = (id(counter), *labels)
            delta = total - self._seen.get(key, 0.0)
            if delta > 0:
                (counter.labels(*labels) if labels else counter).inc(delta)
            self._seen[key] = total
