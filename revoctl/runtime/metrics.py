"""The gateway's Prometheus metrics, correct with one worker or several.

With several workers (``revoctl serve --workers N``) each worker writes its samples to
``PROMETHEUS_MULTIPROC_DIR`` and whichever worker answers ``/metrics`` merges them all
(prometheus-client's multiprocess mode), so a scrape sees the whole instance, not the
one worker that happened to answer. Gauges say how they merge: summed over live
workers (pool connections), the worst of them (a breaker's state: each worker reports
the fleet's state, or its own where worse), or one per worker
(CPU, and memory now and at its peak: now from ``/proc/self/statm``, the peak from
``getrusage``).

The core services keep their own counters (decisions per rule, breaker calls, cache
hits, slow queries); `MetricsSync` folds what changed into these families once a second
and before each scrape, so no hot path pays for a Prometheus call.
"""

from __future__ import annotations

import math
import os
import resource
import sys
from collections.abc import Iterable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prometheus_multiprocess

from revoctl.core._batch import DROP_REASONS

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)

MAXRSS_UNIT = 1 if sys.platform == "darwin" else 1024
"""Bytes in a unit of ``ru_maxrss``: bytes on macOS, kilobytes on Linux and the BSDs."""

BREAKER_STATE_VALUES = {"closed": 0, "half_open": 1, "open": 2, "forced_open": 3}
"""``revoctl_breaker_state``: higher is worse, so the worst live worker's state is the max
(a worker that stopped leaves the merge, not its last value)."""
BREAKER_OUTCOMES = {
    "success": "successes",
    "failure": "failures",
    "slow": "slow_calls",
    "rejected": "rejections",
    "ignored": "ignored",
    "timeout": "timeouts",
}
"""``revoctl_breaker_calls_total``'s ``outcome`` label -> the breaker's own counter."""


def multiprocess() -> bool:
    """Whether samples go to ``PROMETHEUS_MULTIPROC_DIR`` (several workers)."""
    return bool(os.environ.get(MULTIPROC_ENV))


class GatewayMetrics:
    """Every metric family the gateway exports; names start with ``revoctl_``."""

    def __init__(self) -> None:
        # A registry of its own: two apps in one process (tests) never collide, and in
        # multiprocess mode the samples go to the shared directory whatever the registry.
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "revoctl_http_requests_total",
            "HTTP requests served, by route, model and status code.",
            ["route", "model", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "revoctl_http_request_duration_seconds",
            "Time from request to the last byte of the response.",
            ["route", "model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.first_token = Histogram(
            "revoctl_time_to_first_token_seconds",
            "Time from request to the first streamed chunk.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.overhead = Histogram(
            "revoctl_gateway_overhead_seconds",
            "The gateway's own time in a request: everything but waiting for the provider.",
            buckets=OVERHEAD_BUCKETS,
            registry=r,
        )
        self.rate_limit_decisions = Counter(
            "revoctl_rate_limit_decisions_total",
            "Rate-limit decisions by rule and outcome.",
            ["rule", "decision"],
            registry=r,
        )
        self.breaker_state = Gauge(
            "revoctl_breaker_state",
            "Breaker state as the fleet has it, or as a worker has it where worse: "
            "0 closed, 1 half_open, 2 open, 3 forced_open (worst live worker).",
            ["breaker"],
            multiprocess_mode="livemax",
            registry=r,
        )
        self.breaker_transitions = Counter(
            "revoctl_breaker_transitions_total",
            "Changes of each worker's breaker state; source local: its own calls caused it, "
            "fleet: it followed the fleet (one per worker that follows a fleet-wide change).",
            ["breaker", "from", "to", "source"],
            registry=r,
        )
        self.breaker_calls = Counter(
            "revoctl_breaker_calls_total",
            "Calls through each breaker by outcome.",
            ["breaker", "outcome"],
            registry=r,
        )
        self.fallbacks = Counter(
            "revoctl_fallbacks_total",
            "Requests answered by a fallback model, by requested and answering model.",
            ["model", "fallback"],
            registry=r,
        )
        self.pool_connections = Gauge(
            "revoctl_db_pool_connections",
            "Database pool connections by state, summed over the live workers.",
            ["state"],
            multiprocess_mode="livesum",
            registry=r,
        )
        self.slow_queries = Counter(
            "revoctl_db_slow_queries_total",
            "Statements slower than database.slow_query_ms.",
            registry=r,
        )
        self.secret_cache = Counter(
            "revoctl_secret_cache_lookups_total",
            "Secret reads by cache result.",
            ["result"],
            registry=r,
        )
        self.tokens = Counter(
            "revoctl_tokens_total",
            "Tokens by provider, model and kind (prompt, completion), from provider usage.",
            ["provider", "model", "kind"],
            registry=r,
        )
        self.cost = Counter(
            "revoctl_cost_usd_total",
            "Estimated cost in USD from the configured prices, by provider and model.",
            ["provider", "model"],
            registry=r,
        )
        self.usage_dropped = Counter(
            "revoctl_usage_rows_dropped_total",
            "Usage rows dropped, by reason: buffer_full (the buffer overflowed while the "
            "database was away), rejected (the database refused the row itself), shutdown "
            "(still waiting when the worker stopped).",
            ["reason"],
            registry=r,
        )
        for reason in DROP_REASONS:
            self.usage_dropped.labels(reason)  # every reason exported, at 0 until it happens
        self.usage_buffered = Gauge(
            "revoctl_usage_rows_buffered",
            "Usage rows waiting to be written, summed over the live workers.",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.usage_oldest = Gauge(
            "revoctl_usage_oldest_buffered_seconds",
            "How long the oldest usage row still to be written has waited (0: none waits), "
            "the worst live worker.",
            multiprocess_mode="livemax",
            registry=r,
        )
        self.process_cpu = Gauge(
            "revoctl_process_cpu_seconds",
            "CPU time used by each worker process.",
            multiprocess_mode="liveall",
            registry=r,
        )
        self.process_memory = Gauge(
            "revoctl_process_resident_memory_bytes",
            "Resident memory of each worker process now.",
            multiprocess_mode="liveall",
            registry=r,
        )
        self.process_peak_memory = Gauge(
            "revoctl_process_peak_resident_memory_bytes",
            "The most resident memory each worker process has held since it started.",
            multiprocess_mode="liveall",
            registry=r,
        )

    def render(self) -> bytes:
        """The exposition text: every worker's samples in multiprocess mode, else this one's."""
        if multiprocess():
            merged = CollectorRegistry()
            prometheus_multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
            return generate_latest(merged)
        return generate_latest(self.registry)

    def sample_process(self) -> dict[str, float]:
        """CPU seconds, resident bytes now and at the peak of this process, set on the
        gauges. Where the system does not show the bytes resident now (see
        `resident_memory_bytes`) the sample leaves them out and the gauge says NaN."""
        usage = resource.getrusage(resource.RUSAGE_SELF)
        cpu = usage.ru_utime + usage.ru_stime
        peak = float(usage.ru_maxrss * MAXRSS_UNIT)
        self.process_cpu.set(cpu)
        self.process_peak_memory.set(peak)
        sample = {"cpu_seconds": cpu, "peak_resident_memory_bytes": peak}
        memory = resident_memory_bytes()
        self.process_memory.set(math.nan if memory is None else memory)  # NaN: unknown
        if memory is not None:
            sample["resident_memory_bytes"] = memory
        return sample


def resident_memory_bytes() -> float | None:
    """This process's resident memory now, from ``/proc/self/statm`` (Linux); None where
    the system does not show it that way (``getrusage`` only knows the peak)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            resident_pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return float(resident_pages * resource.getpagesize())


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


def mark_worker_gone() -> None:
    """Drop this worker's live gauges from the merged view when it stops."""
    if multiprocess():
        prometheus_multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
