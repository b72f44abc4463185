"""Circuit breakers: the breaker, its manager, the fleet's shared state and its stores.

Names resolve lazily (PEP 562), so ``revoctl --help`` imports none of this.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from revoctl.core._lazy import lazy_exports

if TYPE_CHECKING:
    from revoctl.core._stores import StoreKind as StoreKind
    from revoctl.core.breakers._breaker import CircuitBreaker as CircuitBreaker
    from revoctl.core.breakers._breaker import FailurePredicate as FailurePredicate
    from revoctl.core.breakers._breaker import default_is_failure as default_is_failure
    from revoctl.core.breakers._breaker import http_status as http_status
    from revoctl.core.breakers._manager import CircuitBreakerManager as CircuitBreakerManager
    from revoctl.core.breakers._states import TransitionEvent as TransitionEvent
    from revoctl.core.breakers.base import STATES as STATES
    from revoctl.core.breakers.base import BreakerStateStore as BreakerStateStore
    from revoctl.core.breakers.base import ProcessReport as ProcessReport
    from revoctl.core.breakers.base import SharedState as SharedState
    from revoctl.core.breakers.base import Snapshot as Snapshot
    from revoctl.core.breakers.base import StateName as StateName
    from revoctl.core.breakers.base import Transition as Transition
    from revoctl.core.breakers.base import Written as Written
    from revoctl.core.breakers.settings import PREDEFINED_BREAKERS as PREDEFINED_BREAKERS
    from revoctl.core.breakers.settings import BreakersConfig as BreakersConfig
    from revoctl.core.breakers.settings import CircuitBreakerConfig as CircuitBreakerConfig
    from revoctl.core.breakers.stores import open_breaker_store as open_breaker_store
    from revoctl.core.breakers.stores.memory import (
        MemoryBreakerStateStore as MemoryBreakerStateStore,
    )
    from revoctl.core.breakers.stores.redis import RedisBreakerStateStore as RedisBreakerStateStore
    from revoctl.core.breakers.stores.sql import SqlBreakerStateStore as SqlBreakerStateStore
    from revoctl.core.errors import CircuitOpenError as CircuitOpenError

_EXPORTS: dict[str, str] = {
    "BreakerStateStore": "revoctl.core.breakers.base",
    "BreakersConfig": "revoctl.core.breakers.settings",
    "CircuitBreaker": "revoctl.core.breakers._breaker",
    "CircuitBreakerConfig": "revoctl.core.breakers.settings",
    "CircuitBreakerManager": "revoctl.core.breakers._manager",
    "CircuitOpenError": "revoctl.core.errors",
    "FailurePredicate": "revoctl.core.breakers._breaker",
    "MemoryBreakerStateStore": "revoctl.core.breakers.stores.memory",
    "PREDEFINED_BREAKERS": "revoctl.core.breakers.settings",
    "ProcessReport": "revoctl.core.breakers.base",
    "RedisBreakerStateStore": "revoctl.core.breakers.stores.redis",
    "STATES": "revoctl.core.breakers.base",
    "SharedState": "revoctl.core.breakers.base",
    "Snapshot": "revoctl.core.breakers.base",
    "SqlBreakerStateStore": "revoctl.core.breakers.stores.sql",
    "StateName": "revoctl.core.breakers.base",
    "StoreKind": "revoctl.core._stores",
    "Transition": "revoctl.core.breakers.base",
    "TransitionEvent": "revoctl.core.breakers._states",
    "Written": "revoctl.core.breakers.base",
    "default_is_failure": "revoctl.core.breakers._breaker",
    "http_status": "revoctl.core.breakers._breaker",
    "open_breaker_store": "revoctl.core.breakers.stores",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
