"""`LoadShedder` as ASGI: the work routes past the cap are answered 503 at once without
reaching the app, the others always pass, and a flood is logged in a few lines."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from revoctl.runtime import shedding
from revoctl.runtime.in_flight import LocalInFlight
from revoctl.runtime.shedding import LoadShedder

FLOOD = 1000


class HeldApp:
    """An app that answers 200 once ``release`` is set, recording each path it saw."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.seen: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.seen.append(scope["path"])
        if scope["path"].startswith("/v1/"):
            await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


async def call(app: Any, path: str) -> tuple[int, dict[bytes, bytes], Any]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        raise AssertionError("a shed request's body is never read")

    await app({"type": "http", "path": path, "method": "POST", "state": {}}, receive, send)
    start, body = sent
    return start["status"], dict(start["headers"]), json.loads(body["body"])


async def test_past_the_cap_a_work_route_is_shed_and_the_others_pass() -> None:
    inner = HeldApp()
    shedder = LoadShedder(inner, LocalInFlight(2))
    held = [asyncio.create_task(call(shedder, "/v1/chat/completions")) for _ in range(2)]
    await asyncio.sleep(0.01)
    for path in ("/v1/chat/completions", "/generate", "/admin/keys"):
        status, headers, body = await call(shedder, path)
        assert status == 503
        assert headers[b"retry-after"] == b"1"
        assert body["error"]["type"] == "server_error"
        assert body["error"]["code"] == "overloaded"
    for path in ("/health", "/health/ready", "/metrics", "/openapi.json"):
        assert (await call(shedder, path))[0] == 200
    assert inner.seen.count("/v1/chat/completions") == 2  # the shed ones never reached it
    inner.release.set()
    assert [(await task)[0] for task in held] == [200, 200]
    assert (await call(shedder, "/v1/chat/completions"))[0] == 200  # admitted again
    assert shedder.in_flight.total() == 0


async def test_a_stream_counts_until_its_last_byte_is_sent() -> None:
    last_chunk = asyncio.Event()
    sent: list[dict[str, Any]] = []

    async def streaming(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"data: 1", "more_body": True})
        await last_chunk.wait()
        await send({"type": "http.response.body", "body": b"data: [DONE]"})

    async def record(message: dict[str, Any]) -> None:
        sent.append(message)

    shedder = LoadShedder(streaming, LocalInFlight(1))
    scope = {"type": "http", "path": "/v1/chat/completions", "method": "POST", "state": {}}
    stream = asyncio.create_task(shedder(scope, None, record))
    await asyncio.sleep(0.01)
    assert len(sent) == 2  # its first chunk is out, the stream goes on
    assert (await call(shedder, "/v1/chat/completions"))[0] == 503
    last_chunk.set()
    await stream
    assert shedder.in_flight.total() == 0


async def test_a_flood_is_logged_at_the_first_then_summed_once_a_second(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [100.0]
    monkeypatch.setattr(shedding.time, "monotonic", lambda: now[0])
    shedder = LoadShedder(HeldApp(), LocalInFlight(0))
    with caplog.at_level(logging.WARNING, "revoctl.gateway"):
        for _ in range(FLOOD):
            await call(shedder, "/v1/chat/completions")
        assert len(caplog.records) == 1  # the first
        now[0] += shedding.SUMMARY_SECONDS
        await call(shedder, "/v1/chat/completions")
    assert len(caplog.records) == 2
    assert f"shed {FLOOD} requests" in caplog.records[1].getMessage()
