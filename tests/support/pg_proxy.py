"""A TCP proxy to PostgreSQL that can lose the answer to a COMMIT: the server commits, the
client sees its connection drop and cannot tell whether the transaction was stored.

Armed (`lose_next_commit`), the proxy forwards the next ``COMMIT`` of any connection, waits
for the server's answer, swallows it and closes that connection on both sides. Every other
byte passes through untouched.
"""

from __future__ import annotations

import asyncio
import contextlib


class LostCommitProxy:
    """Listens on ``127.0.0.1:port`` and forwards to ``upstream``."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self.lose_next_commit = False
        self.commits_lost = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> LostCommitProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        answers = asyncio.create_task(self._pipe(up_reader, writer))
        try:
            while data := await reader.read(65536):
                losing = self.lose_next_commit and b"COMMIT" in data
                if losing:  # stop relaying answers before the server can give this one
                    self.lose_next_commit = False
                    answers.cancel()
                    await asyncio.gather(answers, return_exceptions=True)
                up_writer.write(data)
                await up_writer.drain()
                if losing:
                    await up_reader.read(65536)  # the server's answer: committed
                    self.commits_lost += 1
                    break
        except ConnectionError:
            pass
        finally:
            answers.cancel()
            await asyncio.gather(answers, return_exceptions=True)
            for side in (writer, up_writer):
                side.close()
            self._tasks.discard(task)

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        """The server's answers to the client, until the server closes (then so does the
        client's side)."""
        with contextlib.suppress(ConnectionError):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        sink.close()
