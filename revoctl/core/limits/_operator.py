"""The limiter's rules by name, its keys and weights checked, and the operator's calls.

The operator's calls (`peek`, `inspect`, `reset`, `run_checks`: ``revoctl limits``;
`spent`: ``revoctl keys spend`` and the admin API) are strict: they raise, because an
operator must see the store as it is, not the policy's stand-in. `RateLimiter` adds the
runtime's fail-soft decisions on top.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from revoctl.core._lifecycle import AsyncService
from revoctl.core.errors import BackendUnavailableError, NotFoundError, UsageError
from revoctl.core.limits.base import LimitStore, Op, RateLimitResult
from revoctl.core.limits.reservations import from_nano
from revoctl.core.limits.settings import LimitsConfig, RateLimitRule, RateLimitScope

GLOBAL_KEY = "*"
"""The one key of a ``global`` rule, and the key used when none is given."""
MAX_KEY_LENGTH = 255
MAX_WEIGHT = 1_000_000_000


@dataclass(frozen=True)
class CheckRun:
    """What `RateLimiter.run_checks` did: ``checks`` decisions, the last one in full."""

    rule: str
    key: str
    checks: int
    allowed: int
    denied: int
    last: RateLimitResult


@dataclass(frozen=True)
class KeyState:
    """One key as `RateLimiter.inspect` shows it (consuming nothing)."""

    rule: str
    key: str
    algorithm: str
    limit: int
    remaining: int
    reset_after: float


class OperatorCalls(AsyncService):
    """The configured rules on a store, for the operator: every call reaches the store or
    raises. ``store`` is given ready or set when the subclass opens it."""

    def __init__(self, config: LimitsConfig, store: LimitStore | None = None) -> None:
        self.config = config
        self._store = store
        self._rules = {rule.name: rule for rule in config.rules}

    @property
    def store(self) -> LimitStore:
        """The store (after `initialize()`)."""
        if self._store is None:
            raise RuntimeError(
                f"{type(self).__name__} is {self.state.value}: call initialize() first"
            )
        return self._store

    def rule(self, rule: str | RateLimitRule) -> RateLimitRule:
        """The configured rule called ``rule`` (a `RateLimitRule` is taken as given).

        :raises NotFoundError: no rule has that name.
        """
        if isinstance(rule, RateLimitRule):
            return rule
        found = self._rules.get(rule)
        if found is None:
            known = ", ".join(sorted(self._rules)) or "none configured"
            raise NotFoundError(f"no rate-limit rule named {rule!r} (rules: {known})")
        return found

    @staticmethod
    def key_for(rule: RateLimitRule, identifier: str | None) -> str:
        """The key ``identifier`` counts under: the one key ``*`` for a ``global`` rule.

        :raises UsageError: the identifier is empty or longer than 255 characters.
        """
        if rule.scope is RateLimitScope.GLOBAL or identifier is None:
            return GLOBAL_KEY
        if not isinstance(identifier, str) or not 0 < len(identifier) <= MAX_KEY_LENGTH:
            raise UsageError(f"a rate-limit key is 1 to {MAX_KEY_LENGTH} characters")
        return identifier

    @staticmethod
    def _weight(weight: int, minimum: int = 1) -> int:
        if isinstance(weight, bool) or not isinstance(weight, int):
            raise UsageError(f"a weight is a whole number, got {weight!r}")
        if not minimum <= weight <= MAX_WEIGHT:
            raise UsageError(f"a weight is {minimum} to {MAX_WEIGHT}, got {weight}")
        return weight

    async def _strict(self, rule: RateLimitRule, key: str, op: Op, weight: int) -> RateLimitResult:
        await self.initialize()
        try:
            async with asyncio.timeout(self.config.timeout_seconds):
                return await self.store.apply(rule, key, op, weight)
        except TimeoutError:
            raise BackendUnavailableError(
                f"the {self.store.describe()} store did not answer within "
                f"{self.config.timeout_seconds:g}s"
            ) from None

    async def spent(self, account: str, period: int) -> float:
        """``account``'s budget counter for ``period`` in the price table's units (0 when
        never charged), reservations of requests in flight included.

        :raises BackendUnavailableError: the store cannot be reached.
        """
        await self.initialize()
        try:
            async with asyncio.timeout(self.config.timeout_seconds):
                return from_nano(await self.store.spent(account, period))
        except TimeoutError:
            raise BackendUnavailableError(
                f"the {self.store.describe()} store did not answer within "
                f"{self.config.timeout_seconds:g}s"
            ) from None

    async def peek(
        self, rule: str | RateLimitRule, identifier: str | None, weight: int = 1
    ) -> RateLimitResult:
        """What a check of ``weight`` would answer now, consuming nothing.

        :raises NotFoundError: no rule has that name.
        :raises BackendUnavailableError: the store cannot be reached.
        """
        found = self.rule(rule)
        return await self._strict(
            found, self.key_for(found, identifier), "peek", self._weight(weight)
        )

    async def run_checks(
        self, rule: str | RateLimitRule, identifier: str | None, count: int = 1, weight: int = 1
    ) -> CheckRun:
        """Make ``count`` consuming checks in a row against the store (``limits test``).

        :raises NotFoundError: no rule has that name.
        :raises UsageError: the count or weight is invalid.
        :raises BackendUnavailableError: the store cannot be reached.
        """
        found = self.rule(rule)
        key = self.key_for(found, identifier)
        weight = self._weight(weight)
        if not 1 <= count <= 100_000:
            raise UsageError(f"a count is 1 to 100000, got {count}")
        allowed = 0
        last = None
        for _ in range(count):
            last = await self._strict(found, key, "check", weight)
            allowed += last.allowed
        assert last is not None
        return CheckRun(found.name, key, count, allowed, count - allowed, last)

    async def inspect(
        self, rule: str | RateLimitRule, identifier: str | None = None
    ) -> list[KeyState]:
        """The state of ``identifier``'s key, or of every key the store tracks for ``rule``;
        consumes nothing.

        :raises NotFoundError: no rule has that name.
        :raises BackendUnavailableError: the store cannot be reached.
        """
        found = self.rule(rule)
        if identifier is not None or found.scope is RateLimitScope.GLOBAL:
            keys = [self.key_for(found, identifier)]
        else:
            await self.initialize()
            keys = await self.store.keys(found)
        states = []
        for key in keys:
            seen = await self._strict(found, key, "peek", 1)
            states.append(
                KeyState(
                    found.name,
                    key,
                    found.algorithm.value,
                    seen.limit,
                    seen.remaining,
                    seen.reset_after,
                )
            )
        return states

    async def reset(self, rule: str | RateLimitRule, identifier: str | None = None) -> int:
        """Forget ``identifier``'s key (every key of ``rule`` when None): back to full.

        Returns how many keys held state.

        :raises NotFoundError: no rule has that name.
        :raises BackendUnavailableError: the store cannot be reached.
        """
        found = self.rule(rule)
        key = None if identifier is None else self.key_for(found, identifier)
        await self.initialize()
        try:
            async with asyncio.timeout(self.config.timeout_seconds * 10):
                return await self.store.reset(found, key)
        except TimeoutError:
            raise BackendUnavailableError(
                f"the {self.store.describe()} store did not answer"
            ) from None
