"""A client that leaves mid-stream gives its parallel slot back at once, over real HTTP
(``revoctl serve``): what only a socket shows. A slot that were not given back would stay
held, renewed by its live process, until its lease's safety age; the next request of a key
whose tier allows one at a time would get ``too_many_parallel_requests`` meanwhile."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from revoctl.core.limits.reservations import LEASE_SECONDS
from tests.support.fleet import Fleet
from tests.support.llm_standin import LLMStandIn
from tests.support.served_gateway import STANDIN_KEY, served_gateway

TIERS = """
[tiers.solo]
max_parallel_requests = 1
"""
CHUNK_DELAY = 0.5
REPLY_WORDS = 40
"""A stream of 40 words, 0.5 s apart, lasts 20 s: far longer than the slot may take to be
freed once its client is gone."""
FREED_WITHIN = LEASE_SECONDS / 3
"""Well before a leaked slot could run out: only a release frees it this soon."""


@pytest.fixture
def llm() -> Iterator[LLMStandIn]:
    with LLMStandIn(api_key=STANDIN_KEY, reply_tokens=REPLY_WORDS) as standin:
        yield standin


@pytest.fixture
def served(tmp_path: Path, llm: LLMStandIn) -> Iterator[tuple[Fleet, str]]:
    with served_gateway(tmp_path, llm, tiers=TIERS, tier="solo") as running:
        yield running


def ask(gateway: Fleet, key: str) -> httpx.Response:
    body = {"model": "gpt", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
    with gateway.client(key) as client:
        return client.post("/v1/chat/completions", json=body)


@pytest.mark.slow
def test_a_client_gone_mid_stream_frees_its_slot(
    served: tuple[Fleet, str], llm: LLMStandIn
) -> None:
    gateway, key = served
    llm.chunk_delay = CHUNK_DELAY
    body = {
        "model": "gpt",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": REPLY_WORDS,
        "stream": True,
    }
    with (
        gateway.client(key) as client,
        client.stream("POST", "/v1/chat/completions", json=body) as stream,
    ):
        assert stream.status_code == 200
        lines = stream.iter_lines()  # kept: dropping it would close the connection now
        assert next(lines).startswith("data: ")  # the first chunk: the stream is under way
        held = ask(gateway, key)
        assert held.status_code == 429, held.text
        assert held.json()["error"]["code"] == "too_many_parallel_requests"
    left_at = time.monotonic()  # the connection is closed with the stream under way
    while (answer := ask(gateway, key)).status_code == 429:
        assert time.monotonic() - left_at < FREED_WITHIN, "the slot was not given back"
        time.sleep(0.1)
    assert answer.status_code == 200, answer.text
