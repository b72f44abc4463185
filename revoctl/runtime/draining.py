"""The open event streams of this process, ended as the server begins to shut down.

A server-sent event stream (``GET /status/events``) is a response that never completes by
itself. On SIGTERM uvicorn stops accepting, tells each connection to close once its
response is done, and waits for them: an open status page held the exit for the whole
graceful timeout, and then uvicorn cut it (measured with ``drain_seconds = 8``: 6.2 s from
the signal to the exit, the requests' share of the bound).
The HTTP protocol (`revoctl.runtime.server.NoDelayHTTPProtocol`) calls
`close_event_streams` as the shutdown reaches its connections; each stream's generator is
waiting on its `EventStream.closed` and returns, its response completes, and the
connection closes (measured: 0.16-0.27 s from the signal to the exit with a page open, as
without one).
The browser's EventSource then reconnects to whichever instance still listens.

Module state, one set per process: the protocol knows nothing of the app. Everything here
runs on the event loop's thread.
"""

from __future__ import annotations

import asyncio

_open: set[EventStream] = set()
_closing = False


class EventStream:
    """One open stream: `closed` is set when the server shuts down (or at once, when it
    already is)."""

    def __init__(self) -> None:
        self.closed = asyncio.Event()
        if _closing:
            self.closed.set()

    def __enter__(self) -> EventStream:
        _open.add(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _open.discard(self)


def close_event_streams() -> int:
    """End every open stream, and any opened from now on; returns how many were open."""
    global _closing
    _closing = True
    streams = list(_open)
    for stream in streams:
        stream.closed.set()
    return len(streams)


def open_streams() -> int:
    """How many event streams are open in this process."""
    return len(_open)


def reopen() -> None:
    """Accept streams again (for a process that serves an app after another, as tests do)."""
    global _closing
    _closing = False
