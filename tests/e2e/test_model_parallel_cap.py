"""A model's ``max_parallel_requests`` across instances (issue 19): two ``revoctl serve``
instances on one Redis limits store, a cap of `CAP` on ``gpt``, `CLIENTS` concurrent
clients spread over both, a stand-in that holds every answer `DELAY` seconds:

* the stand-in never has more than `CAP` calls to ``gpt`` at once, and reaches it;
* the requests beyond get 429 ``too_many_parallel_requests`` with ``Retry-After`` and a
  message naming the model;
* every slot is freed, on every path (plain answers, streams, a provider failure answered by
  the fallback, a client gone): at the end the model's slot set in Redis is empty and `CAP`
  concurrent requests are all answered.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import redis

from tests.support.fleet import ANTHROPIC_KEY, OPENAI_KEY, Fleet, build_fleet, chat
from tests.support.llm_standin import LLMStandIn

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

CAP = 2
CLIENTS = 8
ROUNDS = 4
DELAY = 0.4
"""Seconds the stand-in holds every answer: long enough for the clients to contend."""
SETTLED_WITHIN = 10.0


@pytest.fixture
def instances(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_prefix: str
) -> Iterator[list[Fleet]]:
    with LLMStandIn(api_key=OPENAI_KEY) as openai, LLMStandIn(api_key=ANTHROPIC_KEY) as claude:
        first = build_fleet(
            tmp_path,
            postgres_url=postgres_url,
            redis_url=redis_url,
            prefix=redis_prefix,
            openai=openai,
            anthropic=claude,
            workers=1,
        )
        text = first.config.read_text()
        first.config.write_text(
            text.replace("[models.gpt]\n", f"[models.gpt]\nmax_parallel_requests = {CAP}\n", 1)
        )
        second = Fleet(
            config=first.config, home=first.home, openai=openai, anthropic=claude, workers=1
        )
        started: list[Fleet] = []
        try:
            for instance in (first, second):
                instance.start()
                started.append(instance)
            yield started
        finally:
            for instance in started:
                instance.stop()


def ask(instance: Fleet, key: str, stream: bool = False) -> httpx.Response:
    with instance.client(key) as client:
        if not stream:
            return chat(client)
        body = {"model": "gpt", "messages": [{"role": "user", "content": "hi"}], "stream": True}
        with client.stream("POST", "/v1/chat/completions", json=body) as answer:
            answer.read()
            return answer


def held_slots(redis_url: str, prefix: str) -> int:
    client = redis.Redis.from_url(redis_url)
    try:
        return int(client.zcard(f"{prefix}rl:_slots:{{model/gpt}}:model/gpt"))
    finally:
        client.close()


def wait_for_free_slots(redis_url: str, prefix: str) -> None:
    deadline = time.monotonic() + SETTLED_WITHIN
    while held_slots(redis_url, prefix):
        assert time.monotonic() < deadline, "the model's slots were not freed"
        time.sleep(0.05)


def test_a_models_parallel_cap_holds_across_instances(
    instances: list[Fleet], redis_url: str, redis_prefix: str
) -> None:
    first = instances[0]
    openai = first.openai
    key = first.new_key("team")
    openai.delay = DELAY

    def client(number: int) -> list[httpx.Response]:
        return [
            ask(instances[(number + turn) % 2], key, stream=bool(turn % 2))
            for turn in range(ROUNDS)
        ]

    with ThreadPoolExecutor(CLIENTS) as pool:
        answers = [answer for batch in pool.map(client, range(CLIENTS)) for answer in batch]
    statuses = Counter(answer.status_code for answer in answers)
    print(f"\n{CLIENTS} clients x {ROUNDS} requests, cap {CAP}: {dict(statuses)}")
    assert set(statuses) == {200, 429}, statuses
    assert openai.max_in_flight() == CAP  # reached, never passed
    for refused in (answer for answer in answers if answer.status_code == 429):
        error = refused.json()["error"]
        assert error["code"] == "too_many_parallel_requests"
        assert "'gpt'" in error["message"]
        assert refused.headers["retry-after"] == "1"
    wait_for_free_slots(redis_url, redis_prefix)

    # A provider failure (answered by the fallback) and a client gone free their slots too.
    openai.delay = 0.0
    openai.mode = "error500"
    for instance in instances:
        assert ask(instance, key).status_code == 200  # from sonnet
    openai.mode = "ok"
    openai.delay = DELAY
    with pytest.raises(httpx.ReadTimeout), first.client(key) as impatient:
        impatient.post(
            "/v1/chat/completions",
            json={"model": "gpt", "messages": [{"role": "user", "content": "hi"}]},
            timeout=DELAY / 4,
        )
    wait_for_free_slots(redis_url, redis_prefix)

    # Every slot free: CAP concurrent requests are all answered, one more is refused.
    openai.reset()
    with ThreadPoolExecutor(CAP) as pool:
        held = [pool.submit(ask, instances[n % 2], key) for n in range(CAP)]
        deadline = time.monotonic() + SETTLED_WITHIN
        while openai.in_flight() < CAP:
            assert time.monotonic() < deadline, "the held requests did not arrive"
            time.sleep(0.02)
        assert held_slots(redis_url, redis_prefix) == CAP  # the set the waits above read
        assert ask(instances[1], key).status_code == 429
        assert [future.result().status_code for future in held] == [200] * CAP
    wait_for_free_slots(redis_url, redis_prefix)
