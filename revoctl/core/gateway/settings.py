"""The gateway's settings: ``[gateway]``, ``[providers.NAME]`` and ``[models.NAME]``."""

from __future__ import annotations

import functools
import re
from enum import StrEnum
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from revoctl.core._settings import Section

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$"

RuleNames = str | tuple[str, ...]
"""A rule setting: one ``[[limits.rules]]`` name ("" = none) or a list of them (every rule
must allow)."""
_PERIOD = re.compile(r"^([1-9][0-9]{0,6})([smhd])$")
_PERIOD_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MIN_BUDGET_PERIOD = 60
MAX_BUDGET_PERIOD = 366 * 86400


def rule_names(value: RuleNames) -> tuple[str, ...]:
    """A rule setting as the names it lists (none for "")."""
    if isinstance(value, str):
        return (value,) if value else ()
    return value


@functools.lru_cache(maxsize=128)
def period_seconds(value: str | int) -> int:
    """A ``budget_period`` (``"1h"``, ``"1d"``, ``"7d"``, ``"30d"``, or seconds) in seconds;
    remembered, since a key with a budget reads its tier's at every request (``True``,
    equal to 1 for the cache, is refused like 1, so never answered from it).

    :raises ValueError: not a period, or outside 60 s to 366 days.
    """
    if isinstance(value, bool):
        raise ValueError("a period is like '1h', '1d', '30d' or a number of seconds")
    if isinstance(value, int):
        seconds = value
    else:
        text = value.strip()
        match = _PERIOD.fullmatch(text)
        if text.isdigit():
            seconds = int(text)
        elif match is not None:
            seconds = int(match.group(1)) * _PERIOD_UNITS[match.group(2)]
        else:
            raise ValueError(f"{value!r} is not a period: use '1h', '1d', '7d', '30d' or seconds")
    if not MIN_BUDGET_PERIOD <= seconds <= MAX_BUDGET_PERIOD:
        raise ValueError(f"a budget period is {MIN_BUDGET_PERIOD} s to 366 days, got {seconds} s")
    return seconds


IN_FLIGHT_PER_WORKER = 256
"""``gateway.max_in_flight = 0``: this many requests in flight per worker process."""

CLOSE_SECONDS_MAX = 5.0
"""The most of ``gateway.drain_seconds`` kept for the close after the requests in flight."""


class CacheScope(StrEnum):
    """``[gateway.cache] scope``: whose answers a caller may be served from the cache."""

    KEY = "key"
    """Each key its own: no caller ever sees another key's answers."""
    TIER = "tier"
    """Shared by the keys of one tier (a key with no tier keeps its own)."""


class ResponseCacheConfig(Section):
    """``[gateway.cache]``: exact-match answers of deterministic requests (temperature 0,
    or ``metadata.cache = true``), kept in the limits' store (`revoctl.runtime.response_cache`)."""

    enabled: bool = False
    ttl_seconds: int = Field(300, ge=1, le=30 * 86400)
    max_bytes: int = Field(256 * 1024, ge=256, le=64 * 1024 * 1024)
    """The largest answer (its JSON) stored; a larger one is answered and not kept."""
    scope: CacheScope = CacheScope.KEY


class GatewayConfig(Section):
    """``[gateway]``: who may call, and what each request is charged."""

    auth: Literal["keys", "none"] = "keys"
    default_max_tokens: int = Field(1024, ge=1, le=1_000_000)
    request_rule: RuleNames = ""
    """Rules charged 1 per request of a key with no tier (`rule_names`)."""
    token_rule: RuleNames = ""
    """Rules charged in tokens (prompt bound plus ``max_tokens``) for a key with no tier."""
    admin_key: str = ""
    """The admin API's bearer key (``/admin/*``); "" = the admin API is off (404)."""
    keys_refresh_seconds: float = Field(0.5, gt=0, le=60)
    """How often each instance re-reads revoked keys: a revocation takes effect within it."""
    usage_buffer: int = Field(10_000, ge=1, le=1_000_000)
    """Usage rows held while the database is away; what overflows is counted and dropped."""
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024)
    """The largest request body read: a larger one (or a larger declared Content-Length)
    is 413 before it is read."""
    drain_seconds: float = Field(30.0, gt=0, le=3600)
    """On SIGTERM, the most time the whole shutdown takes: the requests in flight get it
    less `close_seconds`, the usage flush and the services' close get the rest."""

    max_in_flight: int = Field(0, ge=0, le=1_000_000)
    """Requests in flight at once on this instance (every worker of one ``revoctl serve``);
    beyond it a request is answered 503 with ``Retry-After`` at once. 0 = `in_flight_cap`'s
    default, `IN_FLIGHT_PER_WORKER` per worker."""
    routing_refresh_seconds: float = Field(1.0, gt=0, le=60)
    """How often each instance publishes its deployments' calls in flight and latencies to
    the store and reads the fleet's (``least_busy`` and ``lowest_latency`` routing)."""

    cache: ResponseCacheConfig = Field(default_factory=ResponseCacheConfig)
    """``[gateway.cache]``: the response cache (off by default)."""

    trusted_proxies: tuple[str, ...] = ()
    """Addresses or CIDRs of the proxies whose ``X-Forwarded-For`` / ``Forwarded`` is
    believed (`revoctl.runtime.client_address`); () = the TCP peer is the client."""

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        """A string (``REVOCTL_GATEWAY__TRUSTED_PROXIES``, ``--set``) is a comma-separated list."""
        if isinstance(value, str):
            return tuple(entry.strip() for entry in value.split(",") if entry.strip())
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _addresses_or_cidrs(cls, entries: tuple[str, ...]) -> tuple[str, ...]:
        for entry in entries:
            trusted_network(entry)
        return entries

    def trusted_networks(self) -> tuple[IPv4Network | IPv6Network, ...]:
        """``trusted_proxies`` as networks (an address alone is a network of one)."""
        return tuple(trusted_network(entry) for entry in self.trusted_proxies)

    def in_flight_cap(self, workers: int) -> int:
        """The most requests in flight on an instance of ``workers`` worker processes."""
        return self.max_in_flight or IN_FLIGHT_PER_WORKER * max(1, workers)

    def close_seconds(self) -> float:
        """The part of ``drain_seconds`` kept for the close: a quarter, at most 5 s."""
        return min(CLOSE_SECONDS_MAX, self.drain_seconds / 4)

    def request_drain_seconds(self) -> float:
        """How long requests in flight may still run after SIGTERM before they are cut."""
        return self.drain_seconds - self.close_seconds()


def trusted_network(entry: str) -> IPv4Network | IPv6Network:
    """One ``trusted_proxies`` entry as a network.

    :raises ValueError: it is neither an address nor a CIDR, or a CIDR with host bits set.
    """
    try:
        return ip_network(entry)
    except ValueError:
        pass
    try:
        meant = ip_network(entry, strict=False)
    except ValueError:
        raise ValueError(
            f"{entry!r} is neither an IP address nor a CIDR (e.g. 10.0.0.0/8)"
        ) from None
    raise ValueError(f"{entry!r} has host bits set: {meant}?")


class ProviderKind(StrEnum):
    """The API a provider speaks."""

    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    AZURE_OPENAI = "azure_openai"


AZURE_API_VERSION = "2024-10-21"
"""The Azure OpenAI data-plane API version sent when ``api_version`` is not set."""

DEFAULT_BASE_URLS = {
    ProviderKind.OPENAI: "https://api.openai.com/v1",
    ProviderKind.ANTHROPIC: "https://api.anthropic.com",
}


class ProviderConfig(Section):
    """``[providers.NAME]``: one upstream API, its key, the breaker that guards it."""

    kind: ProviderKind = ProviderKind.OPENAI
    base_url: str = DEFAULT_BASE_URLS[ProviderKind.OPENAI]
    """Defaults to the kind's own API: ``kind = "anthropic"`` alone means Anthropic's. For
    ``azure_openai`` it is the resource's endpoint (``https://NAME.openai.azure.com``), and
    required."""
    api_key: str = ""
    api_version: str = AZURE_API_VERSION
    """``azure_openai``: the ``api-version`` query parameter of every call."""
    breaker: str = ""
    timeout: float = Field(60.0, gt=0, le=3600)
    max_connections: int = Field(100, ge=1, le=10_000)

    @model_validator(mode="before")
    @classmethod
    def _kind_default_url(cls, data: Any) -> Any:
        if isinstance(data, dict) and "base_url" not in data and "kind" in data:
            if data["kind"] == ProviderKind.AZURE_OPENAI:
                raise ValueError(
                    "kind 'azure_openai' needs base_url, the resource's endpoint "
                    "(https://NAME.openai.azure.com)"
                )
            try:
                return {**data, "base_url": DEFAULT_BASE_URLS[ProviderKind(data["kind"])]}
            except ValueError:  # an unknown kind: the field's own error says so
                return data
        return data

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not url.startswith(("https://", "http://")):
            raise ValueError("must be an http:// or https:// URL")
        return url.rstrip("/")


class RoutingStrategy(StrEnum):
    """How a model with several deployments picks the one that gets a call."""

    WEIGHTED = "weighted"
    """At random, in proportion to the deployments' ``weight``."""
    LEAST_BUSY = "least_busy"
    """The deployment with the fewest calls in flight across the fleet."""
    LOWEST_LATENCY = "lowest_latency"
    """The deployment with the lowest moving average of its calls' duration, fleet-wide."""


class DeploymentConfig(Section):
    """One deployment of a model: a provider, its name for the model there, a weight."""

    provider: str
    upstream: str = ""
    """The provider's own name for the model (Azure: the deployment's name); "" = the model's."""
    weight: float = Field(1.0, gt=0, le=1_000_000)
    breaker: str = ""
    """The breaker guarding calls to this deployment; "" = its provider's ``breaker``."""
    name: str = Field("", pattern=r"^$|" + NAME_PATTERN)
    """How metrics, logs and the fleet's counters name it; "" = ``PROVIDER/UPSTREAM``."""


class ModelConfig(Section):
    """``[models.NAME]``: which provider serves a model (or several ``deployments`` of it,
    ``routing`` between them, ``retries`` on them), its prices, its fallbacks."""

    provider: str = ""
    upstream: str = ""
    deployments: tuple[DeploymentConfig, ...] = ()
    """Several deployments of this model; give either these or ``provider``/``upstream``."""
    routing: RoutingStrategy = RoutingStrategy.WEIGHTED
    retries: int = Field(1, ge=0, le=10)
    """Further attempts on this model's deployments (another one where there is one) after a
    call fails in the provider's way, before the ``fallbacks``; never once a stream began."""
    retry_backoff_seconds: float = Field(0.1, ge=0, le=60)
    """The first retry waits up to this (full jitter), each next one up to twice as long."""
    max_parallel_requests: int = Field(0, ge=0, le=100_000)
    """Calls in flight to this model at once across every instance; 0 = no cap."""
    input_cost_per_1k: float = Field(0.0, ge=0, le=1000)
    output_cost_per_1k: float = Field(0.0, ge=0, le=1000)
    fallbacks: tuple[str, ...] = ()
    request_rule: str = ""
    """A ``[[limits.rules]]`` name charged 1 per request to this model, per caller and model,
    on top of ``gateway.request_rule``; "" = none."""
    token_rule: str = ""
    """Likewise in tokens, on top of ``gateway.token_rule``."""

    @model_validator(mode="after")
    def _provider_or_deployments(self) -> ModelConfig:
        if bool(self.provider) == bool(self.deployments):
            raise ValueError("give either provider (and upstream) or deployments, not both")
        names = [d.name for d in self.deployments if d.name]
        if len(names) != len(set(names)):
            raise ValueError("two deployments have the same name")
        return self

    def upstream_name(self, name: str) -> str:
        """The provider's own name for the model called ``name`` here (its only deployment's)."""
        return self.upstream or name

    def deployments_of(self, name: str) -> tuple[DeploymentConfig, ...]:
        """The deployments of the model called ``name`` here, each with its ``upstream`` and
        ``name`` filled in: its ``deployments``, else one of ``provider``/``upstream``."""
        listed = self.deployments or (
            DeploymentConfig(provider=self.provider, upstream=self.upstream),
        )
        filled = []
        for deployment in listed:
            upstream = deployment.upstream or name
            filled.append(
                deployment.model_copy(
                    update={
                        "upstream": upstream,
                        "name": deployment.name or f"{deployment.provider}/{upstream}",
                    }
                )
            )
        return tuple(filled)

    def providers(self) -> tuple[str, ...]:
        """The providers this model's deployments call, each once."""
        if not self.deployments:
            return (self.provider,)
        return tuple(dict.fromkeys(d.provider for d in self.deployments))


class TierConfig(Section):
    """``[tiers.NAME]``: what the keys of one tier may use. Its rules replace the gateway's
    for its keys; ``budget`` caps spend per ``budget_period`` (periods start at each key's
    creation); ``max_parallel_requests`` caps a key's requests in flight across every
    instance; ``models`` lists the models its keys may call ([] = every one)."""

    request_rule: RuleNames = ""
    token_rule: RuleNames = ""
    budget: float = Field(0.0, ge=0, le=1e9)
    """Spend cap per period, in the price table's units; 0 = none."""
    budget_period: str | int = "30d"
    max_parallel_requests: int = Field(0, ge=0, le=100_000)
    models: tuple[str, ...] = ()

    @field_validator("budget_period")
    @classmethod
    def _a_period(cls, value: str | int) -> str | int:
        period_seconds(value)
        return value

    def period_seconds(self) -> int:
        return period_seconds(self.budget_period)

    def allows(self, model: str) -> bool:
        """Whether this tier's keys may call ``model``."""
        return not self.models or model in self.models
