"""A TCP proxy for fault tests on servers the tests share: put it between revoctl and the
server, then make the connection fail in the way the test needs, without touching the
server (which never notices).

`TcpProxy` forwards 127.0.0.1:``port`` to the upstream from an asyncio loop in a thread of
its own, so sync and async tests (and processes elsewhere) use it alike. Its faults:

* ``drop_first=N``: the first N connections are accepted and closed at once (a server
  that refuses, then recovers); ``accepted`` counts every connection;
* `hang()`: from then on nothing is forwarded in either direction and nothing is closed,
  and new connections are accepted but never answered: the server seems to hang, as
  behind a partition;
* ``lose_next_commit = True`` (PostgreSQL): the next ``COMMIT`` of any connection is
  forwarded, the server's answer (it committed) swallowed, and that connection closed on
  both sides: the client cannot tell whether the transaction was stored.

    with TcpProxy("127.0.0.1", 5432) as proxy:
        url = proxy.url_for(postgres_url)
        ...
        proxy.hang()
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any

from sqlalchemy.engine import make_url

CHUNK = 65536


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to ``host``:``upstream_port``; see the module docstring."""

    def __init__(self, host: str, upstream_port: int, *, drop_first: int = 0) -> None:
        self.upstream = (host, upstream_port)
        self.drop_first = drop_first
        self.port = 0
        self.accepted = 0
        self.lose_next_commit = False
        self.commits_lost = 0
        self._hanging = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._pipes: set[asyncio.Task[None]] = set()

    def __enter__(self) -> TcpProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(timeout=10)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def url_for(self, url: str) -> str:
        """``url`` (a SQLAlchemy URL) with its host and port replaced by the proxy's."""
        through = make_url(url).set(host="127.0.0.1", port=self.port)
        return through.render_as_string(hide_password=False)

    def hang(self) -> None:
        """From now on nothing goes through, and nothing is closed."""
        self._hanging.set()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.accepted <= self.drop_first:
            writer.close()
            return
        self._writers.add(writer)
        if self._hanging.is_set():
            return  # accepted, never answered
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        self._writers.add(up_writer)
        answers = self._start(self._pipe(up_reader, writer))
        self._start(self._requests(reader, up_writer, up_reader, answers, writer))

    def _start(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        self._pipes.add(task)
        task.add_done_callback(self._pipes.discard)
        return task

    async def _requests(
        self,
        reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        answers: asyncio.Task[None],
        writer: asyncio.StreamWriter,
    ) -> None:
        """The client's bytes to the server; a COMMIT to lose stops the answers first."""
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(CHUNK):
                if self._hanging.is_set():
                    return  # dropped: the other end waits
                losing = self.lose_next_commit and b"COMMIT" in data
                if losing:  # stop relaying answers before the server can give this one
                    self.lose_next_commit = False
                    answers.cancel()
                    await asyncio.gather(answers, return_exceptions=True)
                up_writer.write(data)
                await up_writer.drain()
                if losing:
                    await up_reader.read(CHUNK)  # the server's answer: committed
                    self.commits_lost += 1
                    writer.transport.abort()
                    up_writer.close()
                    return
            up_writer.close()

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await source.read(CHUNK):
                if self._hanging.is_set():
                    return  # dropped: the other end waits
                sink.write(data)
                await sink.drain()
            sink.close()
