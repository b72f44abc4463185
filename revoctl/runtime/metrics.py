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
hits, slow queries); `MetricsSync` (`revoctl.runtime.metrics_sync`) folds what changed
into these families once a second and before each scrape, so no hot path pays for a
Prometheus call.
"""

from __future__ import annotations

import math
import os
import resource
import sys
from collections.abc import Sequence
from typing import Literal

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
from revoctl.runtime.system_metrics import GpuSampler, HostSampler, nvml

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
DB_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

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


Merge = Literal["livesum", "livemax", "livemin", "liveall"]
"""How a gauge's workers merge (prometheus-client's ``multiprocess_mode``): their sum, their
worst, or one sample each; a worker that stopped leaves the merge."""
METRICS_SYNC_SECONDS = 1.0


def multiprocess() -> bool:
    """Whether samples go to ``PROMETHEUS_MULTIPROC_DIR`` (several workers)."""
    return bool(os.environ.get(MULTIPROC_ENV))


HELP = {
    "revoctl_cache_requests_total": (
        "Cacheable requests by model and outcome: hit, miss (stored), too_large, not_stored, error."
    ),
    "revoctl_http_requests_total": "HTTP requests served, by route, model and status code.",
    "revoctl_http_request_duration_seconds": "Time from request to the last byte of the response.",
    "revoctl_time_to_first_token_seconds": "Time from request to the first streamed chunk.",
    "revoctl_gateway_overhead_seconds": (
        "The gateway's own time in a request: everything but waiting for the provider."
    ),
    "revoctl_rate_limit_decisions_total": "Rate-limit decisions by rule and outcome.",
    "revoctl_breaker_state": (
        "Breaker state as the fleet has it, or as a worker has it where worse: "
        "0 closed, 1 half_open, 2 open, 3 forced_open (worst live worker)."
    ),
    "revoctl_breaker_transitions_total": (
        "Changes of each worker's breaker state; source local: its own calls caused it, "
        "fleet: it followed the fleet (one per worker that follows a fleet-wide change)."
    ),
    "revoctl_breaker_calls_total": "Calls through each breaker by outcome.",
    "revoctl_fallbacks_total": (
        "Requests answered by a fallback model, by requested and answering model."
    ),
    "revoctl_deployment_calls_total": (
        "Calls to each model's deployments by outcome: success, failure, timeout, rejected "
        "(its breaker refused), refused (the provider refused the request), cancelled."
    ),
    "revoctl_deployment_retries_total": (
        "Retries of a failed call on a model's deployments, by the deployment retried on."
    ),
    "revoctl_deployment_in_flight": (
        "Calls to each model's deployments in flight now, summed over the live workers."
    ),
    "revoctl_db_pool_connections": (
        "Database pool connections by state, summed over the live workers."
    ),
    "revoctl_db_slow_queries_total": "Statements slower than database.slow_query_ms.",
    "revoctl_secret_cache_lookups_total": "Secret reads by cache result.",
    "revoctl_tokens_total": (
        "Tokens by provider, model and kind (prompt, completion), from provider usage."
    ),
    "revoctl_cost_usd_total": (
        "Estimated cost in USD from the configured prices, by provider and model."
    ),
    "revoctl_usage_rows_dropped_total": (
        "Usage rows dropped, by reason: buffer_full (the buffer overflowed while the "
        "database was away), rejected (the database refused the row itself), shutdown "
        "(still waiting when the worker stopped)."
    ),
    "revoctl_usage_rows_buffered": (
        "Usage rows waiting to be written, summed over the live workers."
    ),
    "revoctl_usage_oldest_buffered_seconds": (
        "How long the oldest usage row still to be written has waited (0: none waits), "
        "the worst live worker."
    ),
    "revoctl_requests_in_flight": (
        "Requests in flight on the work routes (/v1/*, /generate, /admin/*) of this "
        "instance, summed over its live workers."
    ),
    "revoctl_requests_shed_total": (
        "Requests answered 503 overloaded at once: the instance had gateway.max_in_flight "
        "in flight."
    ),
    "revoctl_db_statement_seconds": (
        "Time of each database statement, by operation (select, insert, update, delete, other)."
    ),
    "revoctl_db_pool_checkout_seconds": (
        "Time waiting for a pooled database connection (queueing, connecting, pre-ping)."
    ),
    "revoctl_db_pool_checkout_timeouts_total": (
        "Checkouts that gave up waiting for a free pooled connection."
    ),
    "revoctl_db_pool_max_connections": (
        "Connections the pools may open (pool_size + max_overflow), summed over live workers."
    ),
    "revoctl_secret_degraded_reads_total": (
        "Secret reads answered while the provider failed: served stale (a cached value "
        "past its TTL) or from the fallback store."
    ),
    "revoctl_breaker_store_up": (
        "1 while the breakers' shared store answers, 0 while it does not (each process "
        "then decides alone), the worst live worker."
    ),
    "revoctl_key_spend": "Each key's spend in its current budget period (price table units).",
    "revoctl_key_budget": "Each key's budget for its current period (tier budget plus top-ups).",
    "revoctl_host_cpu_usage_ratio": "The host's CPU busy share (0 to 1) since the last sample.",
    "revoctl_host_memory_total_bytes": "The host's memory.",
    "revoctl_host_memory_available_bytes": (
        "The host's memory available to programs without swapping (MemAvailable)."
    ),
    "revoctl_gpu_utilization_ratio": "Each GPU's utilization (0 to 1), from NVML.",
    "revoctl_gpu_memory_used_bytes": "Each GPU's memory in use, from NVML.",
    "revoctl_gpu_memory_total_bytes": "Each GPU's memory, from NVML.",
    "revoctl_process_cpu_seconds": "CPU time used by each worker process.",
    "revoctl_process_resident_memory_bytes": "Resident memory of each worker process now.",
    "revoctl_process_peak_resident_memory_bytes": (
        "The most resident memory each worker process has held since it started."
    ),
}
"""Every family's help text, by name."""


class GatewayMetrics:
    """Every metric family the gateway exports (`HELP` names them all)."""

    def __init__(self) -> None:
        # A registry of its own: two apps in one process (tests) never collide, and in
        # multiprocess mode the samples go to the shared directory whatever the registry.
        self.registry = CollectorRegistry(auto_describe=True)
        counter, gauge, histogram = self._counter, self._gauge, self._histogram
        self.requests = counter("revoctl_http_requests_total", "route", "model", "status")
        self.latency = histogram("revoctl_http_request_duration_seconds", "route", "model")
        self.first_token = histogram("revoctl_time_to_first_token_seconds", "model")
        self.overhead = histogram("revoctl_gateway_overhead_seconds", buckets=OVERHEAD_BUCKETS)
        self.rate_limit_decisions = counter(
            "revoctl_rate_limit_decisions_total", "rule", "decision"
        )
        self.breaker_state = gauge("revoctl_breaker_state", "livemax", "breaker")
        self.breaker_transitions = counter(
            "revoctl_breaker_transitions_total", "breaker", "from", "to", "source"
        )
        self.breaker_calls = counter("revoctl_breaker_calls_total", "breaker", "outcome")
        self.fallbacks = counter("revoctl_fallbacks_total", "model", "fallback")
        self.deployment_calls = counter(
            "revoctl_deployment_calls_total", "model", "deployment", "outcome"
        )
        self.retries = counter("revoctl_deployment_retries_total", "model", "deployment")
        self.deployment_in_flight = gauge(
            "revoctl_deployment_in_flight", "livesum", "model", "deployment"
        )
        self.pool_connections = gauge("revoctl_db_pool_connections", "livesum", "state")
        self.slow_queries = counter("revoctl_db_slow_queries_total")
        self.db_statements = histogram(
            "revoctl_db_statement_seconds", "operation", buckets=DB_BUCKETS
        )
        self.db_checkout = histogram("revoctl_db_pool_checkout_seconds", buckets=DB_BUCKETS)
        self.db_checkout_timeouts = counter("revoctl_db_pool_checkout_timeouts_total")
        self.db_pool_max = gauge("revoctl_db_pool_max_connections", "livesum")
        self.secret_degraded = counter("revoctl_secret_degraded_reads_total", "served")
        for served in ("stale", "fallback"):
            self.secret_degraded.labels(served)  # exported at 0 until it happens
        self.breaker_store_up = gauge("revoctl_breaker_store_up", "livemin")
        self.key_spend = gauge("revoctl_key_spend", "livemax", "key")
        self.key_budget = gauge("revoctl_key_budget", "livemax", "key")
        self.secret_cache = counter("revoctl_secret_cache_lookups_total", "result")
        self.tokens = counter("revoctl_tokens_total", "provider", "model", "kind")
        self.cost = counter("revoctl_cost_usd_total", "provider", "model")
        self.cache_requests = counter("revoctl_cache_requests_total", "model", "outcome")
        self.usage_dropped = counter("revoctl_usage_rows_dropped_total", "reason")
        for reason in DROP_REASONS:
            self.usage_dropped.labels(reason)  # every reason exported, at 0 until it happens
        self.usage_buffered = gauge("revoctl_usage_rows_buffered", "livesum")
        self.usage_oldest = gauge("revoctl_usage_oldest_buffered_seconds", "livemax")
        self.in_flight = gauge("revoctl_requests_in_flight", "livesum")
        self.shed = counter("revoctl_requests_shed_total")
        self.process_cpu = gauge("revoctl_process_cpu_seconds", "liveall")
        self.process_memory = gauge("revoctl_process_resident_memory_bytes", "liveall")
        self.process_peak_memory = gauge("revoctl_process_peak_resident_memory_bytes", "liveall")
        self.host_cpu = gauge("revoctl_host_cpu_usage_ratio", "livemax")
        self.host_memory_total = gauge("revoctl_host_memory_total_bytes", "livemax")
        self.host_memory_available = gauge("revoctl_host_memory_available_bytes", "livemin")
        self.host = HostSampler()
        self.system_sample: dict[str, float] = {}
        """The last `sample_system` (the host's CPU share is over the time between two)."""
        library = nvml()
        self.gpus = GpuSampler(library) if library is not None else None
        self._gpu_gauges: tuple[Gauge, Gauge, Gauge] | None = None
        """Registered at the first GPU sample: without NVML, no GPU family at all."""

    def _counter(self, name: str, *labels: str) -> Counter:
        return Counter(name, HELP[name], labels, registry=self.registry)

    def _gauge(self, name: str, merged: Merge, *labels: str) -> Gauge:
        """A gauge whose workers' values merge as ``merged``."""
        return Gauge(name, HELP[name], labels, multiprocess_mode=merged, registry=self.registry)

    def _histogram(
        self, name: str, *labels: str, buckets: Sequence[float] = LATENCY_BUCKETS
    ) -> Histogram:
        return Histogram(name, HELP[name], labels, buckets=buckets, registry=self.registry)

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

    def sample_system(self) -> dict[str, float]:
        """The host's CPU and memory and each GPU's (`revoctl.runtime.system_metrics`), set
        on the gauges; named as in ``system_metrics`` (``host_*``, ``gpu<N>_*``)."""
        host = self.host.sample()
        gauges = {
            "cpu_usage_ratio": self.host_cpu,
            "memory_total_bytes": self.host_memory_total,
            "memory_available_bytes": self.host_memory_available,
        }
        for name, value in host.items():
            gauges[name].set(value)
        sample = {f"host_{name}": value for name, value in host.items()}
        for gpu in self.gpus.sample() if self.gpus is not None else ():
            if self._gpu_gauges is None:
                names = ("utilization_ratio", "memory_used_bytes", "memory_total_bytes")
                made = [self._gauge(f"revoctl_gpu_{n}", "livemax", "gpu") for n in names]
                self._gpu_gauges = (made[0], made[1], made[2])
            label = str(gpu.index)
            utilization, used, total = self._gpu_gauges
            utilization.labels(label).set(gpu.utilization)
            used.labels(label).set(gpu.memory_used)
            total.labels(label).set(gpu.memory_total)
            sample[f"gpu{label}_utilization_ratio"] = gpu.utilization
            sample[f"gpu{label}_memory_used_bytes"] = gpu.memory_used
            sample[f"gpu{label}_memory_total_bytes"] = gpu.memory_total
        self.system_sample = sample
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


def mark_worker_gone() -> None:
    """Drop this worker's live gauges from the merged view when it stops."""
    if multiprocess():
        prometheus_multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
