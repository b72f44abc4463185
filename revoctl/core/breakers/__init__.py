"""Circuit breakers: the breaker, its manager, the fleet's shared state and its stores.

Names resolve lazily (PEP 562), so ``revoctl --help`` imports none of this.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from revoctl.core._lazy import lazy_exports

if TYPE_CHECKING:
    from revoctl.core.breakers._breaker import (
        CircuitBreaker,
        FailurePredicate,
        default_is_failure,
        http_status,
    )
    from revoctl.core.breakers._manager import CircuitBreakerManager
    from revoctl.core.breakers._states import TransitionEvent
    from revoctl.core.breakers.base import (
        STATES,
        BreakerStateStore,
        ProcessReport,
        SharedState,
        Snapshot,
        StateName,
        Transition,
        Written,
    )
    from revoctl.core.breakers.settings import (
        PREDEFINED_BREAKERS,
        BreakersConfig,
        BreakerStoreKind,
        CircuitBreakerConfig,
    )
    from revoctl.core.breakers.stores import open_breaker_store
    from revoctl.core.breakers.stores.memory import MemoryBreakerStateStore
    from revoctl.core.breakers.stores.redis import RedisBreakerStateStore
    from revoctl.core.breakers.stores.sql import SqlBreakerStateStore
    from revoctl.core.errors import CircuitOpenError

_EXPORTS: dict[str, str] = {
    "PREDEFINED_BREAKERS": "revoctl.core.breakers.settings",
    "STATES": "revoctl.core.breakers.base",
    "BreakerStateStore": "revoctl.core.breakers.base",
    "BreakerStoreKind": "revoctl.core.breakers.settings",
    "BreakersConfig": "revoctl.core.breakers.settings",
    "CircuitBreaker": "revoctl.core.breakers._breaker",
    "CircuitBreakerConfig": "revoctl.core.breakers.settings",
    "CircuitBreakerManager": "revoctl.core.breakers._manager",
    "CircuitOpenError": "revoctl.core.errors",
    "FailurePredicate": "revoctl.core.breakers._breaker",
    "MemoryBreakerStateStore": "revoctl.core.breakers.stores.memory",
    "ProcessReport": "revoctl.core.breakers.base",
    "RedisBreakerStateStore": "revoctl.core.breakers.stores.redis",
    "SharedState": "revoctl.core.breakers.base",
    "Snapshot": "revoctl.core.breakers.base",
    "SqlBreakerStateStore": "revoctl.core.breakers.stores.sql",
    "StateName": "revoctl.core.breakers.base",
    "Transition": "revoctl.core.breakers.base",
    "TransitionEvent": "revoctl.core.breakers._states",
    "Written": "revoctl.core.breakers.base",
    "default_is_failure": "revoctl.core.breakers._breaker",
    "http_status": "revoctl.core.breakers._breaker",
    "open_breaker_store": "revoctl.core.breakers.stores",
}

__all__ = [
    "PREDEFINED_BREAKERS",
    "STATES",
    "BreakerStateStore",
    "BreakerStoreKind",
    "BreakersConfig",
    "CircuitBreaker",
    "CircuitBreakerConfig",
    "CircuitBreakerManager",
    "CircuitOpenError",
    "FailurePredicate",
    "MemoryBreakerStateStore",
    "ProcessReport",
    "RedisBreakerStateStore",
    "SharedState",
    "Snapshot",
    "SqlBreakerStateStore",
    "StateName",
    "Transition",
    "TransitionEvent",
    "Written",
    "default_is_failure",
    "http_status",
    "open_breaker_store",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
