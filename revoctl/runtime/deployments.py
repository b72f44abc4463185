"""A model's deployments and the strategies that pick the one that gets a call.

Each `Deployment` is one ``(provider, upstream)`` of a model behind its own breaker (the
deployment's ``breaker``, else its provider's, else none). It counts this process's calls
to it in flight, exactly, and keeps a moving average of its calls' durations; `FleetView`
holds what the rest of the fleet reported at the last refresh (`revoctl.runtime.fleet_load`).
The request path reads memory only: the fleet's view plus this process's own live count.

`choose` picks among the deployments whose breaker lets a call through now (asked without
any I/O: `available`); when none does, among all of them, so that the breaker refuses the
call itself (or grants a half-open trial) and the refusal is counted where it belongs.
Strategies:

* ``weighted``: at random, in proportion to ``weight``;
* ``least_busy``: the fewest calls in flight, fleet-wide; ties broken at random;
* ``lowest_latency``: the lowest moving average of call durations, fleet-wide; a deployment
  with no sample yet is tried first, by one call at a time (ties, again, at random).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from revoctl.core.gateway.settings import RoutingStrategy

if TYPE_CHECKING:
    from revoctl.core.gateway.settings import DeploymentConfig

LATENCY_SMOOTHING = 0.2
"""The weight of a new sample in a deployment's moving average of call durations."""
MAX_SAMPLE_WEIGHT = 100
"""A process's average counts for at most this many samples when the fleet's are merged."""


@dataclass
class FleetLoad:
    """What the other processes of the fleet reported for one deployment."""

    in_flight: int = 0
    latency: float | None = None
    """Their moving averages merged, weighted by their samples (None: no sample yet)."""
    samples: int = 0


@dataclass
class Deployment:
    """One deployment of one model: where its calls go, what guards them, its load."""

    model: str
    name: str
    provider: str
    upstream: str
    weight: float
    breaker: Any = None
    """Its `CircuitBreaker`, or None when nothing guards it."""
    in_flight: int = 0
    """This process's calls to it now."""
    latency: float | None = None
    """This process's moving average of its calls' durations (None: no call yet)."""
    samples: int = 0
    fleet: FleetLoad = field(default_factory=FleetLoad)
    """The rest of the fleet's load, as last refreshed."""

    @classmethod
    def of(cls, model: str, config: DeploymentConfig, breaker: Any) -> Deployment:
        return cls(model, config.name, config.provider, config.upstream, config.weight, breaker)

    @property
    def key(self) -> str:
        """How the fleet's store names it: the model and the deployment."""
        return f"{self.model}\x1f{self.name}"

    def observe(self, seconds: float) -> None:
        """A call took ``seconds``: fold it into the moving average."""
        if self.latency is None:
            self.latency = seconds
        else:
            self.latency += LATENCY_SMOOTHING * (seconds - self.latency)
        self.samples += 1

    def fleet_in_flight(self) -> int:
        """Calls to it in flight across the fleet: the others' last report plus ours now."""
        return self.fleet.in_flight + self.in_flight

    def fleet_latency(self) -> float | None:
        """Its moving average across the fleet (ours and the others', by their samples)."""
        ours = min(self.samples, MAX_SAMPLE_WEIGHT) if self.latency is not None else 0
        theirs = self.fleet.samples if self.fleet.latency is not None else 0
        if ours + theirs == 0:
            return None
        total = (self.latency or 0.0) * ours + (self.fleet.latency or 0.0) * theirs
        return total / (ours + theirs)


def available(deployment: Deployment) -> bool:
    """Whether its breaker lets a call through now (closed, a half-open trial to give, or
    open past its recovery time), read from memory without a store round trip."""
    breaker = deployment.breaker
    return breaker is None or breaker.retry_after() == 0.0


def choose(
    strategy: RoutingStrategy,
    deployments: Sequence[Deployment],
    tried: Sequence[Deployment] = (),
    rng: random.Random | None = None,
) -> Deployment:
    """The deployment that gets the next call: one not ``tried`` yet whose breaker lets it
    through, else a tried one whose breaker does, else any (its breaker will refuse)."""
    rng = rng or _RANDOM
    open_now = [d for d in deployments if available(d)]
    untried = [d for d in open_now if all(d is not t for t in tried)]
    pool = untried or open_now or list(deployments)
    if len(pool) == 1:
        return pool[0]
    return STRATEGIES[strategy](pool, rng)


def _weighted(pool: Sequence[Deployment], rng: random.Random) -> Deployment:
    return rng.choices(pool, weights=[d.weight for d in pool])[0]


def _least_busy(pool: Sequence[Deployment], rng: random.Random) -> Deployment:
    fewest = min(d.fleet_in_flight() for d in pool)
    return rng.choice([d for d in pool if d.fleet_in_flight() == fewest])


def _lowest_latency(pool: Sequence[Deployment], rng: random.Random) -> Deployment:
    """An untried deployment (no sample, no call in flight) first; else the fastest measured
    one; while none is measured yet, the least busy."""
    untried = [d for d in pool if d.fleet_latency() is None and d.fleet_in_flight() == 0]
    if untried:
        return rng.choice(untried)
    measured = [d for d in pool if d.fleet_latency() is not None]
    if not measured:
        return _least_busy(pool, rng)
    fastest = min(d.fleet_latency() or 0.0 for d in measured)
    return rng.choice([d for d in measured if d.fleet_latency() == fastest])


STRATEGIES: dict[RoutingStrategy, Callable[[Sequence[Deployment], random.Random], Deployment]] = {
    RoutingStrategy.WEIGHTED: _weighted,
    RoutingStrategy.LEAST_BUSY: _least_busy,
    RoutingStrategy.LOWEST_LATENCY: _lowest_latency,
}

_RANDOM = random.Random()
