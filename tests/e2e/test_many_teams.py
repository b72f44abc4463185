"""One gateway for many teams, end to end (issue 18): two ``revoctl serve`` instances of two
workers each, sharing one PostgreSQL database (keys, request rows) and one limits store
(Redis under a key prefix of the test's own, or SQL on the same PostgreSQL), in front of the
LLM stand-ins, driven by 32 concurrent clients spread over both instances.

* (a) a tier's budget holds across every worker and instance: the settled cost of a key's
  answers (``model_usage``) never passes its budget, and every refusal is
  ``budget_exceeded``;
* (b) a parallel cap of 3 per key holds: the stand-in never has more than 3 of that key's
  calls at once, and the requests beyond get ``too_many_parallel_requests``;
* (c) an instance killed with SIGKILL (its process group: the workers too) while holding a
  key's slots frees them within 30 s: a new request of that key succeeds on the other
  instance by then;
* (d) a key of a tier without ``gpt`` gets 403 ``model_not_allowed`` for it, and does not
  see it in ``GET /v1/models``;
* (e) a rotated key's old value works during the overlap, on both instances, and not after.

Keys get their tier from ``keys create NAME --tier T`` and are rotated with ``keys rotate
NAME --overlap S`` (the key lifecycle's commands).
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from revoctl.core.limits.reservations import LEASE_SECONDS
from tests.support.fleet import ANTHROPIC_KEY, OPENAI_KEY, Fleet
from tests.support.llm_standin import LLMStandIn
from tests.support.request_logs import WRITE_SECONDS, sql

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

CLIENTS = 32
BUDGET = 0.2
"""The ``capped`` tier's budget per hour: about 15 answers at gpt's prices (0.013 each)."""
PARALLEL_CAP = 3
SLOT_FREED_BOUND = 30.0
"""The CONTRACT's bound for a dead instance's slots to be free again."""
ROTATION_OVERLAP = 6.0
KEYS_REFRESH = 0.25
ANSWER_HOLD = 0.3
"""Seconds the stand-in holds each answer while the parallel cap is measured."""

CONFIG = """
[database]
url = "{database}"

[redis]
url = "{redis}"

[limits]
store = "{store}"
key_prefix = "{prefix}rl:"
timeout_seconds = 5
[[limits.rules]]
name = "rpm"
requests = 1000000
window_seconds = 31622400
algorithm = "fixed_window"
scope = "per_api_key"

[breakers]
store = "memory"
[breakers.services.openai_api]
failure_threshold = 1000
failure_rate_threshold = 0
[breakers.services.anthropic_api]
failure_threshold = 1000
failure_rate_threshold = 0

[gateway]
auth = "keys"
request_rule = "rpm"
default_max_tokens = 16
keys_refresh_seconds = {refresh}

[providers.llm]
kind = "openai"
base_url = "{openai}"
api_key = "${{secret:openai-api-key}}"
breaker = "openai_api"
timeout = 60

[providers.claude]
kind = "anthropic"
base_url = "{anthropic}"
api_key = "${{secret:anthropic-api-key}}"
breaker = "anthropic_api"
timeout = 60

[models.gpt]
provider = "llm"
upstream = "gpt-4o-mini"
input_cost_per_1k = 0.5
output_cost_per_1k = 1.5

[models.sonnet]
provider = "claude"
upstream = "claude-sonnet"
input_cost_per_1k = 3.0
output_cost_per_1k = 15.0

[tiers.capped]
budget = {budget}
budget_period = "1h"
models = ["gpt"]

[tiers.parallel]
max_parallel_requests = {cap}

[tiers.no-gpt]
models = ["sonnet"]
"""


class Teams:
    """Two instances over one state, the stand-ins, and the keys by name."""

    def __init__(self, instances: list[Fleet], openai: LLMStandIn, keys: dict[str, str]):
        self.instances, self.openai, self.keys = instances, openai, keys

    def ask(self, name: str, instance: int, **body: Any) -> httpx.Response:
        payload = {
            "model": "gpt",
            "messages": [{"role": "user", "content": "hello there"}],
            "max_tokens": 10,
            "user": name,
            **body,
        }
        with self.instances[instance].client(self.keys[name]) as client:
            return client.post("/v1/chat/completions", json=payload, timeout=60)

    def spread(self, name: str, requests: int) -> list[httpx.Response]:
        """``requests`` requests of key ``name`` from 32 concurrent clients, alternating
        between the instances."""
        with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
            return list(pool.map(lambda i: self.ask(name, i % 2), range(requests)))


@pytest.fixture(params=["redis", "sql"])
def teams(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    postgres_url: str,
    upstreams: tuple[LLMStandIn, LLMStandIn],
) -> Iterator[Teams]:
    store = request.param
    redis_url, prefix = "redis://127.0.0.1:6379/13", "unused:"
    if store == "redis":
        redis_url = request.getfixturevalue("redis_url")
        prefix = request.getfixturevalue("redis_prefix")
    openai, claude = upstreams
    config = tmp_path / "revoctl.toml"
    values = {
        "database": postgres_url, "redis": redis_url, "store": store, "prefix": prefix,
        "refresh": KEYS_REFRESH, "openai": openai.openai_base_url, "anthropic": claude.url,
        "budget": BUDGET, "cap": PARALLEL_CAP,
    }  # fmt: skip
    config.write_text(CONFIG.format(**values))
    home = tmp_path / "home"
    instances = [
        Fleet(config=config, home=home, openai=openai, anthropic=claude, workers=2)
        for _ in range(2)
    ]
    operator = instances[0]
    for secret, value in (("openai-api-key", OPENAI_KEY), ("anthropic-api-key", ANTHROPIC_KEY)):
        assert operator.cli("secrets", "set", secret, stdin=value).returncode == 0
    migrated = operator.cli("db", "migrate")
    assert migrated.returncode == 0, migrated.stderr
    keys = {}
    for name, tier in (("capped", "capped"), ("parallel", "parallel"), ("no-gpt", "no-gpt")):
        keys[name] = create_key(operator, name, "--tier", tier)
    keys["rotating"] = create_key(operator, "rotating")
    try:
        for instance in instances:
            instance.start()
        yield Teams(instances, openai, keys)
    finally:
        for instance in instances:
            instance.stop()


def create_key(operator: Fleet, name: str, *options: str) -> str:
    created = operator.cli("keys", "create", name, *options, "-o", "json")
    assert created.returncode == 0, created.stderr
    key: str = json.loads(created.stdout)["key"]
    return key


def codes(answers: list[httpx.Response]) -> Counter[Any]:
    return Counter(
        "ok" if a.status_code == 200 else (a.status_code, a.json()["error"]["code"])
        for a in answers
    )


def settled_cost(postgres_url: str, user: str, answered: int) -> Decimal:
    """The cost of ``user``'s answers as the usage rows have it, once all ``answered`` are
    written."""
    deadline = time.monotonic() + WRITE_SECONDS
    while True:
        rows = sql(postgres_url, f"SELECT estimated_cost FROM model_usage WHERE user_id = '{user}'")
        if len(rows) >= answered or time.monotonic() > deadline:
            assert len(rows) == answered
            return sum((row["estimated_cost"] for row in rows), Decimal(0))
        time.sleep(0.2)


def eventually(check: Callable[[], bool], within: float) -> float:
    """Seconds until ``check()`` held (polled), or fail once ``within`` seconds passed."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        if check():
            return time.monotonic() - started
        time.sleep(0.25)
    raise AssertionError(f"not within {within} s")


def test_many_teams_share_two_instances(teams: Teams, postgres_url: str) -> None:
    only_gpt_is_refused_to_a_tier_without_it(teams)
    a_budget_holds_across_instances(teams, postgres_url)
    a_parallel_cap_holds_across_instances(teams)
    a_rotated_key_works_during_its_overlap_only(teams)
    a_killed_instances_slots_are_freed(teams)


def only_gpt_is_refused_to_a_tier_without_it(teams: Teams) -> None:
    """(d)"""
    for instance in (0, 1):
        refused = teams.ask("no-gpt", instance)
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "model_not_allowed"
        assert teams.ask("no-gpt", instance, model="sonnet").status_code == 200
        with teams.instances[instance].client(teams.keys["no-gpt"]) as client:
            listed = [model["id"] for model in client.get("/v1/models").json()["data"]]
        assert listed == ["sonnet"]


def a_budget_holds_across_instances(teams: Teams, postgres_url: str) -> None:
    """(a)"""
    teams.openai.delay = 0.05
    answers = teams.spread("capped", 64)
    found = codes(answers)
    assert set(found) <= {"ok", (429, "budget_exceeded")}, found
    assert found["ok"] >= 5 and found[(429, "budget_exceeded")] > 0, found
    assert settled_cost(postgres_url, "capped", found["ok"]) <= Decimal(str(BUDGET))
    refused = next(a for a in answers if a.status_code == 429)
    assert 0 < int(refused.headers["retry-after"]) <= 3600


def a_parallel_cap_holds_across_instances(teams: Teams) -> None:
    """(b)"""
    teams.openai.delay = ANSWER_HOLD
    teams.openai.reset()
    found = codes(teams.spread("parallel", 96))
    assert set(found) <= {"ok", (429, "too_many_parallel_requests")}, found
    assert found["ok"] >= PARALLEL_CAP and found[(429, "too_many_parallel_requests")] > 0
    assert teams.openai.max_in_flight("parallel") <= PARALLEL_CAP
    teams.openai.delay = 0.0


def a_rotated_key_works_during_its_overlap_only(teams: Teams) -> None:
    """(e)"""
    old = teams.keys["rotating"]
    rotated = teams.instances[0].cli(
        "keys", "rotate", "rotating", "--overlap", str(ROTATION_OVERLAP), "-o", "json"
    )
    assert rotated.returncode == 0, rotated.stderr
    rotated_at = time.monotonic()
    new = json.loads(rotated.stdout)["key"]
    teams.keys["rotating"] = new
    time.sleep(KEYS_REFRESH * 4)  # every instance has re-read the keys
    for instance in (0, 1):
        assert teams.ask("rotating", instance).status_code == 200
        teams.keys["rotating"] = old
        assert teams.ask("rotating", instance).status_code == 200
        teams.keys["rotating"] = new
    assert time.monotonic() - rotated_at < ROTATION_OVERLAP, "the check ran past the overlap"
    time.sleep(max(0.0, ROTATION_OVERLAP - (time.monotonic() - rotated_at)) + KEYS_REFRESH * 4)
    teams.keys["rotating"] = old
    assert [teams.ask("rotating", i).status_code for i in (0, 1)] == [401, 401]
    teams.keys["rotating"] = new
    assert [teams.ask("rotating", i).status_code for i in (0, 1)] == [200, 200]


def a_killed_instances_slots_are_freed(teams: Teams) -> None:
    """(c) Instance 0 holds every slot of ``parallel`` (the stand-in holds the answers),
    then dies with its workers."""
    assert LEASE_SECONDS <= SLOT_FREED_BOUND
    llm = teams.openai
    llm.reset()
    llm.delay = 120.0
    with ThreadPoolExecutor(max_workers=PARALLEL_CAP) as pool:
        held = [pool.submit(teams.ask, "parallel", 0) for _ in range(PARALLEL_CAP)]
        eventually(lambda: llm.in_flight("parallel") == PARALLEL_CAP, within=30)
        beyond = teams.ask("parallel", 1)
        assert beyond.status_code == 429, beyond.text
        assert beyond.json()["error"]["code"] == "too_many_parallel_requests"
        victim = teams.instances[0].process
        assert victim is not None
        os.killpg(victim.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        victim.wait(timeout=10)
        llm.delay = 0.0
        llm.wake()
        for call in held:
            assert isinstance(call.exception(timeout=30), httpx.HTTPError)

    freed_after = eventually(
        lambda: teams.ask("parallel", 1).status_code == 200,
        within=SLOT_FREED_BOUND - (time.monotonic() - killed_at),
    )
    assert time.monotonic() - killed_at <= SLOT_FREED_BOUND, freed_after
