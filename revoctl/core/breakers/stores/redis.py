"""`RedisBreakerStateStore`: the shared part in Redis, changes pushed over pub/sub.

Each atomic step is one Lua script (``revoctl/core/breakers/lua/*.lua``), registered
once per store and called by SHA (redis-py loads it again after a restart or a
``SCRIPT FLUSH``). The scripts read the server's clock (``TIME``), so no host's clock
is trusted. ``cas.lua`` publishes the breaker's name on the store's channel with
every write; processes subscribe for speed and poll as the backstop.

Keys are ``<prefix>{breakers}:...``: one hash tag, so every script's keys share a
cluster slot.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from importlib.resources import files
from typing import TYPE_CHECKING, Any, cast

from revoctl.core.breakers.base import ProcessReport, SharedState, Snapshot, Transition, Written
from revoctl.core.redis import RedisConfig, translate_redis_errors

if TYPE_CHECKING:
    from redis.commands.core import AsyncScript

    from revoctl.core.redis import RedisClient


def lua_source(name: str) -> str:
    """The Lua script ``name`` as shipped in the package."""
    return (files("revoctl.core.breakers") / "lua" / f"{name}.lua").read_text("utf-8")


def _clock(seconds: bytes | int, microseconds: bytes | int) -> float:
    return int(seconds) + int(microseconds) / 1_000_000


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisBreakerStateStore:
    """The shared part in Redis; ``client`` comes from `revoctl.core.redis.open_redis`."""

    kind = "redis"

    def __init__(
        self,
        client: RedisClient,
        config: RedisConfig,
        *,
        prefix: str,
        history_limit: int = 1000,
    ) -> None:
        self.client = client
        self.config = config
        self.history_limit = history_limit
        base = f"{prefix}{{breakers}}"
        self.state_key = f"{base}:state"
        self.process_index = f"{base}:processes"
        self.channel = f"{base}:changes"
        self._history_prefix = f"{base}:history:"
        self._process_prefix = f"{base}:process:"
        self._scripts: dict[str, AsyncScript] = {
            name: client.register_script(lua_source(name))
            for name in ("read", "cas", "append", "report")
        }

    def describe(self) -> str:
        cluster = " (cluster)" if self.config.cluster else ""
        return f"redis {self.config.describe()}{cluster}"

    async def _run(self, script: str, keys: list[str], args: list[Any]) -> Any:
        with translate_redis_errors(self.config):
            return await self._scripts[script](keys=keys, args=args)

    async def read(self) -> Snapshot:
        seconds, microseconds, flat = await self._run("read", [self.state_key], [])
        records = {
            _text(flat[i]): SharedState.from_json(flat[i + 1]) for i in range(0, len(flat), 2)
        }
        return Snapshot(_clock(seconds, microseconds), records)

    async def compare_and_set(self, record: SharedState, transition: Transition | None) -> Written:
        applied, stored, seconds, microseconds = await self._run(
            "cas",
            [self.state_key, self._history_prefix + record.name],
            [
                record.name,
                record.version - 1,
                record.to_json(),
                transition.to_json() if transition is not None else "",
                self.history_limit,
                self.channel,
            ],
        )
        now = _clock(seconds, microseconds)
        if applied:
            return Written(True, record, now)
        current = SharedState.from_json(stored) if stored else SharedState(record.name)
        return Written(False, current, now)

    async def append_history(self, transition: Transition) -> None:
        await self._run(
            "append",
            [self._history_prefix + transition.name],
            [transition.to_json(), self.history_limit],
        )

    async def history(self, name: str, limit: int) -> list[Transition]:
        with translate_redis_errors(self.config):
            entries = await self.client.lrange(self._history_prefix + name, 0, limit - 1)
        return [Transition.from_json(entry) for entry in entries]

    async def report(self, report: ProcessReport, ttl: float) -> None:
        await self._run(
            "report",
            [self._process_prefix + report.process, self.process_index],
            [report.process, report.to_json(), max(1, int(ttl * 1000))],
        )

    async def fleet(self) -> tuple[float, list[ProcessReport]]:
        with translate_redis_errors(self.config):
            seconds, microseconds = await self.client.time()
            indexed = cast(
                "list[tuple[bytes, float]]",
                await self.client.zrange(self.process_index, 0, -1, withscores=True),
            )
            if not indexed:
                return _clock(seconds, microseconds), []
            keys = [self._process_prefix + _text(process) for process, _ in indexed]
            reports = await self.client.mget(keys)
        now = _clock(seconds, microseconds)
        found = [
            ProcessReport.from_json(report, float(score))
            for (_, score), report in zip(indexed, reports, strict=True)
            if report is not None
        ]
        return now, found

    def changes(self) -> AsyncIterator[str]:
        return self._changes()

    async def _changes(self) -> AsyncIterator[str]:
        """Breaker names as ``cas.lua`` publishes them, until the connection fails.

        :raises BackendUnavailableError: Redis cannot be reached.
        """
        pubsub = self.client.pubsub()
        try:
            with translate_redis_errors(self.config):
                await pubsub.subscribe(self.channel)
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        yield _text(message["data"])
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def close(self) -> None:
        await self.client.aclose()
