"""Load shedding on ``revoctl serve`` with one worker (its count in memory, no slot file):
with ``max_in_flight = 1`` and one request held by the stand-in, the next is shed at once,
the health route still answers, and once the held request ends the next is admitted."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support.fleet import Fleet
from tests.support.llm_standin import LLMStandIn
from tests.support.served_gateway import STANDIN_KEY, served_gateway

DELAY = 1.0
"""Seconds the stand-in holds every answer."""


@pytest.fixture
def served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Fleet, str, LLMStandIn]]:
    monkeypatch.setenv("REVOCTL_GATEWAY__MAX_IN_FLIGHT", "1")
    with LLMStandIn(api_key=STANDIN_KEY) as llm, served_gateway(tmp_path, llm) as (gateway, key):
        yield gateway, key, llm


def ask(gateway: Fleet, key: str) -> httpx.Response:
    body = {"model": "gpt", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
    with gateway.client(key) as client:
        return client.post("/v1/chat/completions", json=body)


@pytest.mark.slow
def test_one_worker_sheds_past_its_cap(served: tuple[Fleet, str, LLMStandIn]) -> None:
    gateway, key, llm = served
    llm.delay = DELAY
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(ask, gateway, key)
        deadline = time.monotonic() + 10
        while llm.in_flight() < 1:
            assert time.monotonic() < deadline, "the held request did not arrive"
            time.sleep(0.02)
        started = time.perf_counter()
        shed = ask(gateway, key)
        assert time.perf_counter() - started < DELAY / 4
        assert shed.status_code == 503
        assert shed.json()["error"]["code"] == "overloaded"
        assert httpx.get(f"{gateway.url}/health/live", timeout=5).status_code == 200
        assert held.result().status_code == 200
    llm.delay = 0.0
    assert ask(gateway, key).status_code == 200
    assert len(llm.requests) == 2  # the shed one never reached it
