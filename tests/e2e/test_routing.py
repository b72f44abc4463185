"""Deployments, routing and retries end to end: ``revoctl serve --workers 2`` on PostgreSQL and
Redis in front of one LLM stand-in that tells a model's deployments apart by the upstream
model name each is called with (`LLMStandIn.configure_model` gives each its own faults), and
counts the calls each deployment received.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import redis

from tests.support.fleet import OPENAI_KEY, Fleet, free_port
from tests.support.llm_standin import LLMStandIn

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

SLOW_SECONDS = 0.3
"""How long the slow deployment of ``lowest_latency`` takes to answer."""
PROVIDER_TIMEOUT = 1.0
"""``[providers.llm] timeout``: how long a hung deployment holds a request before its retry."""
WORKERS = 2

CONFIG = """
[database]
url = "{database}"

[redis]
url = "{redis}"

[limits]
store = "redis"
key_prefix = "{prefix}rl:"
[[limits.rules]]
name = "rpm"
requests = 1000000
window_seconds = 31622400
algorithm = "fixed_window"
scope = "per_api_key"
[[limits.rules]]
name = "tpm"
requests = 100000000
window_seconds = 31622400
algorithm = "fixed_window"
scope = "per_api_key"

[breakers]
store = "redis"
key_prefix = "{prefix}cb:"
poll_interval = 0.25
[breakers.services.openai_api]
failure_threshold = 1000
failure_rate_threshold = 0
[breakers.services.hung]
failure_threshold = 1
recovery_timeout = 600
[breakers.services.bad]
failure_threshold = 2
failure_rate_threshold = 0
recovery_timeout = 600

[gateway]
auth = "keys"
request_rule = "rpm"
token_rule = "tpm"
default_max_tokens = 64
routing_refresh_seconds = 0.2

[providers.llm]
kind = "openai"
base_url = "{openai}"
api_key = "${{secret:openai-api-key}}"
breaker = "openai_api"
timeout = {timeout}

[models.weighted]
routing = "weighted"
deployments = [
  {{ provider = "llm", upstream = "w-east", weight = 1 }},
  {{ provider = "llm", upstream = "w-west", weight = 3 }},
]

[models.busy]
routing = "least_busy"
retries = 1
retry_backoff_seconds = 0.01
deployments = [
  {{ provider = "llm", upstream = "b-hung", breaker = "hung" }},
  {{ provider = "llm", upstream = "b-one" }},
  {{ provider = "llm", upstream = "b-two" }},
  {{ provider = "llm", upstream = "b-three" }},
]

[models.flaky]
retries = 1
retry_backoff_seconds = 0.01
fallbacks = ["spare"]
deployments = [
  {{ provider = "llm", upstream = "f-bad", breaker = "bad" }},
  {{ provider = "llm", upstream = "f-good1" }},
  {{ provider = "llm", upstream = "f-good2" }},
]

[models.quick]
routing = "lowest_latency"
deployments = [
  {{ provider = "llm", upstream = "l-slow" }},
  {{ provider = "llm", upstream = "l-fast" }},
]

[models.solo]
provider = "llm"
upstream = "solo-up"
retries = 1
retry_backoff_seconds = 0.01
fallbacks = ["spare"]

[models.spare]
provider = "llm"
upstream = "spare-up"
"""


@pytest.fixture
def llm() -> Iterator[LLMStandIn]:
    with LLMStandIn(api_key=OPENAI_KEY, hang_seconds=30) as standin:
        yield standin


@pytest.fixture
def fleet(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_prefix: str, llm: LLMStandIn
) -> Iterator[Fleet]:
    config = tmp_path / "revoctl.toml"
    config.write_text(
        CONFIG.format(
            database=postgres_url,
            redis=redis_url,
            prefix=redis_prefix,
            openai=llm.openai_base_url,
            timeout=PROVIDER_TIMEOUT,
        )
    )
    running = Fleet(
        config=config, home=tmp_path / "home", openai=llm, anthropic=llm, workers=WORKERS,
        port=free_port(),
    )  # fmt: skip
    stored = running.cli("secrets", "set", "openai-api-key", stdin=OPENAI_KEY)
    assert stored.returncode == 0, stored.stderr
    migrated = running.cli("db", "migrate")
    assert migrated.returncode == 0, migrated.stderr
    running.start()
    try:
        yield running
    finally:
        running.stop()


def ask(client: httpx.Client, model: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hello there"}]}
    return client.post("/v1/chat/completions", json=body)


def many(fleet: Fleet, key: str, model: str, count: int, threads: int) -> list[httpx.Response]:
    """``count`` requests for ``model`` from ``threads`` clients at once."""
    clients = [fleet.client(key) for _ in range(threads)]
    try:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            return list(pool.map(lambda n: ask(clients[n % threads], model), range(count)))
    finally:
        for client in clients:
            client.close()


def metric(fleet: Fleet, name: str, **labels: str) -> float:
    """The sum of ``/metrics``'s samples of ``name`` with ``labels`` (every worker's)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{fleet.url}/metrics", timeout=10).text
    return sum(
        float(sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def test_weighted_routing_matches_the_weights_over_a_thousand_requests(
    fleet: Fleet, llm: LLMStandIn
) -> None:
    key = fleet.new_key("weights")
    answers = many(fleet, key, "weighted", 1000, threads=8)
    assert [r.status_code for r in answers] == [200] * 1000
    assert {r.json()["model"] for r in answers} == {"weighted"}
    east, west = llm.model_calls("w-east"), llm.model_calls("w-west")
    assert east + west == 1000
    print(f"weighted 1:3 over 1000 requests: w-east {east}, w-west {west}")
    assert abs(west / 1000 - 0.75) <= 0.05


@pytest.mark.slow
def test_least_busy_keeps_a_hung_deployment_to_one_call_per_worker_and_answers_everyone(
    fleet: Fleet, llm: LLMStandIn, redis_url: str, redis_prefix: str
) -> None:
    llm.configure_model("b-hung", mode="hang")
    key = fleet.new_key("busy")
    answers = many(fleet, key, "busy", 60, threads=3)
    assert [r.status_code for r in answers] == [200] * 60  # the hung one's by a retry
    hung = llm.model_calls("b-hung")
    print(f"least_busy, one deployment hung: {hung} calls to it over 60 requests")
    assert 1 <= hung <= WORKERS
    assert sum(llm.model_calls(f"b-{n}") for n in ("one", "two", "three")) == 60
    # A request that met the hung deployment waited for the provider's timeout, then its
    # retry answered; none waited for a second timeout (the breaker opened after one).
    waited = sorted(r.elapsed.total_seconds() for r in answers)
    assert all(seconds >= PROVIDER_TIMEOUT for seconds in waited[-hung:])
    assert waited[-1] < 2 * PROVIDER_TIMEOUT
    assert metric(fleet, "revoctl_deployment_retries_total", model="busy") == hung
    assert metric(fleet, "revoctl_deployment_calls_total", deployment="llm/b-hung",
                  outcome="timeout") == hung  # fmt: skip
    # Each worker shares its deployments' loads through the limits' Redis, in one hash.
    with redis.Redis.from_url(redis_url) as client:
        published = client.hgetall(f"{redis_prefix}rl:routing")
    assert len(published) == WORKERS
    for entry in published.values():
        shared = {f"busy\x1fllm/b-{n}" for n in ("hung", "one", "two", "three")}
        assert shared <= set(json.loads(entry)["loads"])


def test_lowest_latency_sends_calls_to_the_faster_deployment_once_each_is_measured(
    fleet: Fleet, llm: LLMStandIn
) -> None:
    llm.configure_model("l-slow", delay=SLOW_SECONDS)
    key = fleet.new_key("quick")
    answers = many(fleet, key, "quick", 60, threads=2)
    assert [r.status_code for r in answers] == [200] * 60
    slow, fast = llm.model_calls("l-slow"), llm.model_calls("l-fast")
    print(f"lowest_latency, one deployment {SLOW_SECONDS} s slower: l-slow {slow}, l-fast {fast}")
    assert 1 <= slow <= WORKERS  # each worker tries it once, then its sample says slow
    assert slow + fast == 60


def test_a_deployments_breaker_opening_moves_its_traffic_with_no_failed_request(
    fleet: Fleet, llm: LLMStandIn
) -> None:
    llm.configure_model("f-bad", mode="error500")
    key = fleet.new_key("flaky")
    answers = many(fleet, key, "flaky", 60, threads=4)
    assert [r.status_code for r in answers] == [200] * 60
    assert {r.json()["model"] for r in answers} == {"flaky"}  # never the fallback
    bad = llm.model_calls("f-bad")
    print(f"breaker 'bad' (threshold 2) opening: {bad} calls to f-bad over 60 requests")
    # Each worker counts its own failures: at most the threshold each, and a few calls
    # already on their way when its breaker opened.
    assert 1 <= bad <= 2 * WORKERS + 2
    assert llm.model_calls("spare-up") == 0
    later = many(fleet, key, "flaky", 20, threads=2)
    assert [r.status_code for r in later] == [200] * 20
    assert llm.model_calls("f-bad") == bad  # its breaker is open: it gets nothing


def test_one_500_is_recovered_by_a_retry_without_the_fallback_and_charged_once(
    fleet: Fleet, llm: LLMStandIn
) -> None:
    key = fleet.new_key("solo")
    with fleet.client(key) as client:
        first = ask(client, "solo")
        assert first.status_code == 200
        llm.configure_model("solo-up", fail_next=1)
        retried = ask(client, "solo")
        assert retried.status_code == 200 and retried.json()["model"] == "solo"
        third = ask(client, "solo")
    assert llm.model_calls("solo-up") == 4  # three answers, one of them after a 500
    assert llm.model_calls("spare-up") == 0
    assert [r.status for r in llm.requests] == [200, 500, 200, 200]
    assert metric(fleet, "revoctl_deployment_retries_total", model="solo") == 1
    assert metric(fleet, "revoctl_fallbacks_total") == 0
    # The reservation was taken once and kept across the retry: each request cost one
    # request and the same tokens, the retried one included.
    requests_left = [int(r.headers["x-ratelimit-remaining-requests"]) for r in
                     (first, retried, third)]  # fmt: skip
    assert requests_left[0] - requests_left[1] == 1 and requests_left[1] - requests_left[2] == 1
    tokens_left = [int(r.headers["x-ratelimit-remaining-tokens"]) for r in (first, retried, third)]
    assert tokens_left[0] - tokens_left[1] == tokens_left[1] - tokens_left[2] > 0
