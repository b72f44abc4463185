"""Circuit breakers: the breaker, its manager, the fleet's shared state and its stores.

Names resolve lazily (PEP 562), so ``revoctl --help`` imports none of this.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from revoctl.core._lazy import lazy_exports

if TYPE_CHECKING:
    from revoctl.core._stores import StoreKind
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
        CircuitBreakerConfig,
    )
    from revoctl.core.breakers.stores import open_breaker_store
    from revoctl.core.breakers.stores.memory import MemoryBreakerStateStore
    from revoctl.core.breakers.stores.redis import RedisBreakerStateStore
    from revoctl.core.breakers.stores.sql import SqlBreakerStateStore
    from revoctl.core.errors import CircuitOpenError

__getattr__, __dir__ = lazy_exports(__name__)
