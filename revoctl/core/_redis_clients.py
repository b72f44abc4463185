"""The clients `revoctl.core.redis.open_redis` builds: a busy pool is waited for, briefly.

A process that asks for more connections at once than ``redis.max_connections`` is under
load, not cut off from Redis. Each command first takes one of ``max_connections`` slots
of a semaphore of its client, waiting up to ``pool_wait`` seconds when all are taken, so
the pool is never asked for more connections than it may open; a wait that runs out
raises `PoolExhaustedError` (a `BackendUnavailableError`, so a caller that cannot tell
them apart treats it as before), which a caller with a fallback answers for that call
alone.

The same gate serves both clients. redis-py's async cluster client has no waiting pool
at all (``max_connections`` per node, ``MaxConnectionsError`` past it); on a single node
the gate costs a fraction of redis-py's own ``BlockingConnectionPool`` (about 1 µs per
command against 8 µs, both measured on a get and a release). A pool can still have no
connection free for a moment, holding one for pub/sub or, on a cluster node after an
error, closing and reopening its connections in the background: a command that meets
``MaxConnectionsError`` (nothing was sent) tries again every `RECYCLE_PAUSE` within the
same wait. Pipelines bypass the gate (revoctl uses none).

A single node's connections (`PackedConnection`) pack each command with hiredis in one
call, as redis-py's synchronous client does (its asyncio client packs in Python: about 25
µs for a reservation's 27 arguments against 4), and bound a write with
``asyncio.timeout`` rather than ``asyncio.wait_for`` (which makes a task of every write);
the errors and the disconnect on failure are redis-py's.

Imported only when a client is built: redis-py stays out of the CLI's start-up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import Connection
from redis.connection import HiredisRespSerializer
from redis.exceptions import ConnectionError, MaxConnectionsError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.utils import HIREDIS_AVAILABLE

from revoctl.core.errors import PoolExhaustedError

RECYCLE_PAUSE = 0.005
"""Seconds between tries of a command that found no connection of its pool free."""


class WaitsForConnections:
    """The gate, for a redis-py client class: `wait_at_most` sets it up."""

    pool_wait = 1.0
    target = ""
    slots_total = 1
    _slots: asyncio.Semaphore | None = None

    def wait_at_most(self, seconds: float, *, connections: int, target: str) -> None:
        """Let ``connections`` commands run at once; another waits up to ``seconds`` for
        one of them to end. ``target`` names the server in messages (no password)."""
        self.pool_wait = seconds
        self.slots_total = connections
        self.target = target
        self._slots = asyncio.Semaphore(connections)

    def _exhausted(self) -> PoolExhaustedError:
        return PoolExhaustedError(
            f"no free Redis connection to {self.target} within {self.pool_wait:g}s: all "
            f"{self.slots_total} (redis.max_connections) are busy"
        )

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        """The client's command, once a slot is free (see the module docstring).

        :raises PoolExhaustedError: no slot, or no pooled connection, came free in time.
        """
        slots = self._slots
        if slots is None:
            return await super().execute_command(*args, **options)  # type: ignore[misc]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.pool_wait
        if slots.locked():
            try:
                async with asyncio.timeout_at(deadline):
                    await slots.acquire()
            except TimeoutError:
                raise self._exhausted() from None
        else:
            await slots.acquire()  # free: returns at once, without yielding
        try:
            while True:
                try:
                    return await super().execute_command(*args, **options)  # type: ignore[misc]
                except MaxConnectionsError:
                    if loop.time() + RECYCLE_PAUSE > deadline:
                        raise self._exhausted() from None
                    await asyncio.sleep(RECYCLE_PAUSE)
        finally:
            slots.release()


class WaitingRedis(WaitsForConnections, Redis):  # type: ignore[misc]
    """A single node's client behind the gate."""


class WaitingRedisCluster(WaitsForConnections, RedisCluster):  # type: ignore[misc]
    """A cluster's client behind the gate (``max_connections`` is also its per-node cap)."""


class PackedConnection(Connection):
    """A single node's connection: hiredis packs, ``asyncio.timeout`` bounds a write (see
    the module docstring)."""

    _serializer = HiredisRespSerializer() if HIREDIS_AVAILABLE else None

    def pack_command(self, *args: Any) -> list[bytes]:
        if self._serializer is None:
            return super().pack_command(*args)
        packed: list[bytes] = self._serializer.pack(*args)
        return packed

    async def send_packed_command(
        self, command: bytes | str | Iterable[bytes], check_health: bool = True
    ) -> None:
        if not self.is_connected or not self.socket_timeout:
            await super().send_packed_command(command, check_health)
            return
        if check_health:
            await self.check_health()  # type: ignore[no-untyped-call]
        if isinstance(command, str):
            command = command.encode()
        if isinstance(command, bytes):
            command = [command]
        writer = self._writer
        assert writer is not None  # connected
        try:
            async with asyncio.timeout(self.socket_timeout):
                writer.writelines(command)
                await writer.drain()
        except TimeoutError:
            await self.disconnect(nowait=True)
            raise RedisTimeoutError("Timeout writing to socket") from None
        except OSError as exc:
            await self.disconnect(nowait=True)
            number, message = ("UNKNOWN", exc.args[0]) if len(exc.args) == 1 else exc.args[:2]
            raise ConnectionError(f"Error {number} while writing to socket. {message}.") from exc
        except BaseException:
            await self.disconnect(nowait=True)
            raise
