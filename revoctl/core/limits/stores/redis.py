"""`RedisLimitStore`: one EVALSHA per decision, per reservation and per settlement, on a
single node or a Redis Cluster.

The scripts are ``.lua`` files beside the code (`revoctl.core.limits.stores._redis_lua`
assembles them: each algorithm is one Lua function that the one-decision, reservation and
settlement scripts share), registered once per store and called by SHA; redis-py loads
one again when the server answers NOSCRIPT (a restart, a failover, ``SCRIPT FLUSH``). A
script reads the server's clock, decides, writes and sets the keys' expiry in one atomic
step, so any number of processes share one limit exactly and no client clock is trusted.

A reservation evaluates every rule, the budget and the slot of one hash tag before it
writes anything, and writes only when all allow: a denial by any part takes nothing from
the others. Every key of one caller carries the same hash tag
(`revoctl.core.limits.reservations.hash_tag`), so on a cluster one script reaches them
all; the layout is in `revoctl.core.limits.stores._redis_charges`.

On a cluster a call that changes state must survive being sent twice: redis-py's cluster
client sends a command again after a ``ConnectionError`` or ``TimeoutError`` (which may come
after the script ran, its reply lost), and its per-node pool can close a connection under
a call (``ClusterNode.disconnect_free_connections`` after any error on that node, while
another task has just taken one of those connections; the call then fails with the
transport's ``AttributeError``/``TypeError`` rather than a ``ConnectionError``,
redis/redis-py#4287), or with a ``ConnectionError`` that escaped its retries (the
topology refresh it runs after an error is outside them). So each check, refund,
reservation and settlement there carries a receipt key in the caller's slot: the script
that changes state leaves its reply there for twice the limiter's timeout, and a copy of
the call sent again returns that reply instead of deciding again; with that, the store
itself tries a call whose connection broke under it again (`CALL_ATTEMPTS`). A receipt
costs a GET, and a SET when the state changed, inside the same EVALSHA: no round trip. A
single node's client never sends a command twice, so it gets none.
"""

from __future__ import annotations

import itertools
import math
import os
from typing import TYPE_CHECKING, Any

from revoctl.core.errors import BackendUnavailableError, PoolExhaustedError
from revoctl.core.limits.reservations import hash_tag
from revoctl.core.limits.settings import RateLimitAlgorithm, RateLimitRule
from revoctl.core.limits.stores._redis_charges import ChargeCalls, KeyLayout
from revoctl.core.limits.stores._redis_lua import (
    CODES,
    lua_source,
    parse_reply,
    reservation_source,
    rule_arguments,
    settlement_source,
)
from revoctl.core.redis import RedisConfig, translate_redis_errors

if TYPE_CHECKING:
    from collections.abc import Sequence

    from redis.commands.core import AsyncScript
    from redis.typing import EncodableT

    from revoctl.core.limits.base import Op, RateLimitResult
    from revoctl.core.limits.reservations import HeldLease, Reservation, Reserved, Settlement
    from revoctl.core.redis import RedisClient

__all__ = ["RedisLimitStore", "lua_source", "parse_reply"]

RESET_BATCH = 500
RECEIPT_TIMEOUTS = 2
"""A receipt is kept this many times the owner's timeout for one call: every copy of a
call is sent within that timeout."""
CALL_ATTEMPTS = 3
"""Tries of a cluster call whose connection broke under it (see the module docstring)."""
LEAKED_TRANSPORT_ERRORS = (AttributeError, TypeError)
_OPS: dict[str, bytes] = {"check": b"check", "peek": b"peek", "refund": b"refund"}


class RedisLimitStore:
    """Counters in Redis; ``client`` comes from `revoctl.core.redis.open_redis`.

    ``call_timeout`` is the longest the owner waits for one call (the limiter's
    ``timeout_seconds``); on a cluster, receipts are kept `RECEIPT_TIMEOUTS` times that.
    """

    kind = "redis"
    remote = True

    def __init__(
        self,
        client: RedisClient,
        config: RedisConfig,
        *,
        prefix: str,
        call_timeout: float = 2.0,
    ) -> None:
        self.client = client
        self.config = config
        self.prefix = prefix
        self.layout = KeyLayout(prefix)
        receipt_ms = str(math.ceil(call_timeout * RECEIPT_TIMEOUTS * 1000)).encode()
        self._receipt_ms = receipt_ms
        self._calls_of = ChargeCalls(self.layout, receipt_ms)
        self._caller = os.urandom(6).hex()
        self._calls = itertools.count()
        self._scripts: dict[RateLimitAlgorithm, AsyncScript] = {
            algorithm: client.register_script(lua_source(algorithm)) for algorithm in CODES
        }
        self._reserve = client.register_script(reservation_source())
        self._settle = client.register_script(settlement_source())
        self._plans: dict[str, tuple[RateLimitRule, AsyncScript, str, tuple[bytes, ...]]] = {}

    def describe(self) -> str:
        cluster = " (cluster)" if self.config.cluster else ""
        return f"redis {self.config.describe()}{cluster}"

    def key(self, rule: RateLimitRule, key: str) -> str:
        """The Redis key holding ``key``'s state under ``rule``."""
        return self.layout.rule_key(rule, key)

    async def apply(self, rule: RateLimitRule, key: str, op: Op, weight: int) -> RateLimitResult:
        plan = self._plans.get(rule.name)
        if plan is None or plan[0] is not rule:
            arguments = (self._receipt_ms, *rule_arguments(rule))
            plan = (rule, self._scripts[rule.algorithm], self.layout.rule_head(rule), arguments)
            self._plans[rule.name] = plan
        _, script, head, arguments = plan
        tag = hash_tag(rule, key)
        keys = [f"{head}{tag}}}:{key}"]
        args: list[EncodableT] = [_OPS[op], weight, *arguments]
        if self.config.cluster and op != "peek":
            reply = await self._once(script, tag, keys, args)
        else:
            with translate_redis_errors(self.config):
                # EVALSHA; on NOSCRIPT, redis-py's script object loads the source and retries.
                reply = await script(keys=keys, args=args)
        return parse_reply(reply, rule.capacity, weight)

    async def reserve(self, reservation: Reservation, lease_seconds: float) -> Reserved:
        keys, args, parts = self._calls_of.reservation(reservation, lease_seconds)
        reply = await self._call(self._reserve, reservation.tag, keys, args)
        return self._calls_of.reserved(reply, reservation, parts, args)

    async def settle(self, settlement: Settlement) -> list[RateLimitResult]:
        keys, args = self._calls_of.settlement(settlement)
        reply = await self._call(self._settle, settlement.tag, keys, args)
        return self._calls_of.settled(reply, settlement)

    async def _call(
        self, script: AsyncScript, tag: str, keys: list[str], args: list[EncodableT]
    ) -> Any:
        """One EVALSHA that changes state: exactly once on a cluster."""
        if self.config.cluster:
            return await self._once(script, tag, keys, args)
        with translate_redis_errors(self.config):
            return await script(keys=keys, args=args)

    async def _once(
        self, script: AsyncScript, tag: str, keys: list[str], args: list[EncodableT]
    ) -> Any:
        """The script's reply for one call under a receipt of its own (its last key), however
        often the call is sent (see the module docstring)."""
        receipt = self.layout.receipt_key(tag, f"{self._caller}{next(self._calls):x}")
        keys = [*keys, receipt]
        attempt = 1
        while True:
            try:
                with translate_redis_errors(self.config):
                    return await script(keys=keys, args=args)
            except PoolExhaustedError:
                raise  # the client's wait for a connection, already spent
            except (BackendUnavailableError, *LEAKED_TRANSPORT_ERRORS):
                if attempt == CALL_ATTEMPTS:
                    raise
                attempt += 1

    async def renew(self, held: Sequence[HeldLease], lease_seconds: float) -> None:
        """The server's clock (TIME), then one pipeline (redis-py's cluster pipeline splits
        it by node): per account, drop the leases that ran out, then extend the held ones
        that are still there (ZADD XX: a lease released or run out is not added again)."""
        leases: dict[str, list[str]] = {}
        for lease in held:
            leases.setdefault(lease.account, []).append(lease.lease)
        lease_ms = math.ceil(lease_seconds * 1000)
        with translate_redis_errors(self.config):
            seconds, micros = await self.client.time()
            now_ms = seconds * 1000 + micros // 1000
            pipeline: Any = self.client.pipeline(transaction=False)
            for account, ids in leases.items():
                key = self.layout.slots_key(account)
                pipeline.zremrangebyscore(key, "-inf", now_ms)
                pipeline.zadd(key, dict.fromkeys(ids, now_ms + lease_ms), xx=True)
                pipeline.pexpire(key, lease_ms + 1000)
            await pipeline.execute()

    async def spent(self, account: str, period: int) -> int:
        with translate_redis_errors(self.config):
            stored = await self.client.get(self.layout.budget_key(account, period))
        return 0 if stored is None else int(stored)

    async def _scan(self, rule: RateLimitRule) -> list[str]:
        """Every Redis key of ``rule`` (SCAN; on a cluster, every primary)."""
        found: list[str] = []
        with translate_redis_errors(self.config):
            async for raw in self.client.scan_iter(match=self.layout.rule_pattern(rule), count=500):
                found.append(raw.decode() if isinstance(raw, bytes) else str(raw))
        return found

    async def keys(self, rule: RateLimitRule) -> list[str]:
        names = await self._scan(rule)
        return sorted(
            {key for name in names if (key := self.layout.key_of(rule, name)) is not None}
        )

    async def reset(self, rule: RateLimitRule, key: str | None) -> int:
        if key is None:
            doomed = [n for n in await self._scan(rule) if self.layout.key_of(rule, n) is not None]
        else:
            doomed = [self.key(rule, key)]
        removed = 0
        with translate_redis_errors(self.config):
            for start in range(0, len(doomed), RESET_BATCH):
                # A cluster client splits a many-key DEL by slot.
                removed += int(await self.client.delete(*doomed[start : start + RESET_BATCH]))
        return removed

    async def ping(self) -> None:
        with translate_redis_errors(self.config):
            await self.client.ping()

    async def close(self) -> None:
        await self.client.aclose()
