"""`RedisLimitStore`: one EVALSHA per decision, on a single node or a Redis Cluster.

Each algorithm is one Lua script (``revoctl/core/limits/lua/<algorithm>.lua`` after
the start every decision shares, ``_decision.lua``), registered once per store and
called by SHA; redis-py loads it again when the server answers NOSCRIPT (a restart, a
failover, ``SCRIPT FLUSH``). The script reads the
server's clock, decides, writes and sets the key's expiry in one atomic step, so any
number of processes share one limit exactly and no client clock is trusted.

A key is ``<prefix>{<rule>:<key>}:<algorithm>``: one key per decision, its hash tag
naming the rule and the caller, so a decision never spans two cluster slots.

On a cluster a decision must survive being sent twice: redis-py's cluster client sends a
command again after a ``ConnectionError`` or ``TimeoutError`` (which may come after the
script ran, its reply lost), and its per-node pool can close a connection under a call
(``ClusterNode.disconnect_free_connections`` after any error on that node, while
another task has just taken one of those connections; the call then fails with the
transport's ``AttributeError``/``TypeError`` rather than a ``ConnectionError``,
redis/redis-py#4287), or with a ``ConnectionError`` that escaped its retries (the
topology refresh it runs after an error is outside them). So each check and refund
there carries a receipt key ``<decision key>:<caller><n>`` in the same slot: the script
that changes the state leaves its reply there for twice the limiter's timeout, and a
copy of the call sent again returns that reply instead of deciding again; with that,
the store itself tries a call whose connection broke under it again (`CALL_ATTEMPTS`).
A receipt costs a GET, and a SET when the state changed, inside the same EVALSHA: no
round trip. A single node's client never sends a command twice, so it gets none.
"""

from __future__ import annotations

import itertools
import math
import os
import re
from importlib.resources import files
from typing import TYPE_CHECKING, Any

from revoctl.core.errors import BackendUnavailableError, PoolExhaustedError
from revoctl.core.limits._algorithms import SLOTS, too_heavy
from revoctl.core.limits.base import Op, RateLimitResult
from revoctl.core.limits.settings import RateLimitAlgorithm, RateLimitRule
from revoctl.core.redis import RedisConfig, translate_redis_errors

if TYPE_CHECKING:
    from redis.commands.core import AsyncScript
    from redis.typing import EncodableT

    from revoctl.core.redis import RedisClient

_SUFFIX = {
    RateLimitAlgorithm.TOKEN_BUCKET: "tb",
    RateLimitAlgorithm.SLIDING_WINDOW: "sw",
    RateLimitAlgorithm.FIXED_WINDOW: "fw",
}
_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")
RESET_BATCH = 500
RECEIPT_TIMEOUTS = 2
"""A receipt is kept this many times the owner's timeout for one call: every copy of a
call is sent within that timeout."""
CALL_ATTEMPTS = 3
"""Tries of a cluster decision whose connection broke under it (see the module docstring)."""
LEAKED_TRANSPORT_ERRORS = (AttributeError, TypeError)


def lua_source(algorithm: RateLimitAlgorithm) -> str:
    """The script of ``algorithm``, as shipped in the package: the start every decision
    shares (``_decision.lua``: the receipt, the server's clock, the reply), then its own."""
    lua = files("revoctl.core.limits") / "lua"
    return "".join(
        (lua / name).read_text("utf-8") for name in ("_decision.lua", f"{algorithm.value}.lua")
    )


def _arguments(rule: RateLimitRule) -> tuple[bytes, ...]:
    """The script's rule arguments after op, weight and the receipt's lifetime (see each
    script's header), encoded once: redis-py sends bytes as they are."""
    if rule.algorithm is RateLimitAlgorithm.TOKEN_BUCKET:
        values: tuple[object, ...] = (rule.capacity, repr(rule.requests / rule.window_seconds))
    elif rule.algorithm is RateLimitAlgorithm.SLIDING_WINDOW:
        values = (rule.requests, repr(rule.window_seconds / SLOTS), SLOTS)
    else:
        values = (rule.requests, repr(rule.window_seconds))
    return tuple(str(value).encode() for value in values)


_OPS: dict[str, bytes] = {"check": b"check", "peek": b"peek", "refund": b"refund"}


def parse_reply(reply: bytes | str, limit: int, weight: int) -> RateLimitResult:
    """A script's reply, ``"allowed remaining retry_after reset_after too_heavy"``."""
    allowed, remaining, retry, reset, heavy = reply.split()
    return RateLimitResult(
        allowed == b"1" or allowed == "1",
        int(remaining),
        limit,
        None if retry in (b"-", "-") else float(retry),
        float(reset),
        None if heavy in (b"0", "0") else too_heavy(weight, limit),
    )


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
        self._receipt_ms = str(math.ceil(call_timeout * RECEIPT_TIMEOUTS * 1000)).encode()
        self._caller = f":{os.urandom(6).hex()}:"
        self._calls = itertools.count()
        self._scripts: dict[RateLimitAlgorithm, AsyncScript] = {
            algorithm: client.register_script(lua_source(algorithm)) for algorithm in _SUFFIX
        }
        self._plans: dict[str, tuple[RateLimitRule, AsyncScript, str, str, tuple[bytes, ...]]] = {}

    def describe(self) -> str:
        cluster = " (cluster)" if self.config.cluster else ""
        return f"redis {self.config.describe()}{cluster}"

    def key(self, rule: RateLimitRule, key: str) -> str:
        """The Redis key holding ``key``'s state under ``rule``."""
        return f"{self.prefix}{{{rule.name}:{key}}}:{_SUFFIX[rule.algorithm]}"

    async def apply(self, rule: RateLimitRule, key: str, op: Op, weight: int) -> RateLimitResult:
        plan = self._plans.get(rule.name)
        if plan is None or plan[0] is not rule:
            head = f"{self.prefix}{{{rule.name}:"
            tail = f"}}:{_SUFFIX[rule.algorithm]}"
            arguments = (self._receipt_ms, *_arguments(rule))
            plan = (rule, self._scripts[rule.algorithm], head, tail, arguments)
            self._plans[rule.name] = plan
        _, script, head, tail, arguments = plan
        name = head + key + tail
        args: list[EncodableT] = [_OPS[op], weight, *arguments]
        if self.config.cluster and op != "peek":
            reply = await self._decide_once(script, name, args)
        else:
            with translate_redis_errors(self.config):
                # EVALSHA; on NOSCRIPT, redis-py's script object loads the source and retries.
                reply = await script(keys=[name], args=args)
        return parse_reply(reply, rule.capacity, weight)

    async def _decide_once(self, script: AsyncScript, name: str, args: list[EncodableT]) -> Any:
        """The script's reply for one call under a receipt of its own, however often the
        call is sent (see the module docstring)."""
        keys = [name, f"{name}{self._caller}{next(self._calls):x}"]
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

    def _pattern(self, rule: RateLimitRule) -> str:
        head = _GLOB_SPECIAL.sub(r"\\\1", f"{self.prefix}{{{rule.name}:")
        return f"{head}*}}:{_SUFFIX[rule.algorithm]}"

    async def _scan(self, rule: RateLimitRule) -> list[str]:
        """Every Redis key of ``rule`` (SCAN; on a cluster, every primary)."""
        found: list[str] = []
        with translate_redis_errors(self.config):
            async for raw in self.client.scan_iter(match=self._pattern(rule), count=500):
                found.append(raw.decode() if isinstance(raw, bytes) else str(raw))
        return found

    async def keys(self, rule: RateLimitRule) -> list[str]:
        head = len(f"{self.prefix}{{{rule.name}:")
        tail = len(f"}}:{_SUFFIX[rule.algorithm]}")
        return sorted({name[head:-tail] for name in await self._scan(rule)})

    async def reset(self, rule: RateLimitRule, key: str | None) -> int:
        doomed = await self._scan(rule) if key is None else [self.key(rule, key)]
        removed = 0
        with translate_redis_errors(self.config):
            for start in range(0, len(doomed), RESET_BATCH):
                # A cluster client splits a many-key DEL by slot.
                removed += int(await self.client.delete(*doomed[start : start + RESET_BATCH]))
        return removed

    # TODO(issue 18): replaced by the reservation work in progress.
    async def reserve(self, reservation: Any, lease_seconds: float) -> Any:
        raise NotImplementedError

    async def settle(self, settlement: Any) -> Any:
        raise NotImplementedError

    async def renew(self, held: Any, lease_seconds: float) -> None:
        raise NotImplementedError

    async def spent(self, account: str, period: int) -> int:
        raise NotImplementedError

    async def ping(self) -> None:
        with translate_redis_errors(self.config):
            await self.client.ping()

    async def close(self) -> None:
        await self.client.aclose()
