"""The response cache (``[gateway.cache]``) through the gateway in one process: the ASGI app
over the real core services on PostgreSQL and Redis (the cache follows ``[limits] store``),
calling the LLM stand-in over real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from revoctl.config import load_config
from revoctl.runtime.app import create_app
from tests.support.llm_standin import LLMStandIn

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

KEY_CANARY = "sk-llm-canary-c4c4e1"
MESSAGES = [{"role": "user", "content": "say hi"}]
BUDGET = 1.0
TTL = 1
"""The TTL of the expiry test (seconds)."""

CONFIG = """
[database]
url = "{database}"

[redis]
url = "{redis}"

[limits]
store = "{store}"
key_prefix = "{prefix}"
[[limits.rules]]
name = "rpm"
requests = 1000
window_seconds = 31622400
algorithm = "fixed_window"
scope = "per_api_key"

[breakers]
store = "memory"

[gateway]
auth = "keys"
request_rule = "rpm"
default_max_tokens = 64

[gateway.cache]
enabled = true
ttl_seconds = {ttl}
max_bytes = {max_bytes}
scope = "{scope}"

[providers.llm]
kind = "openai"
base_url = "{openai}"
api_key = "${{secret:llm-key}}"
timeout = 10

[models.gpt]
provider = "llm"
upstream = "gpt-4o-mini"
input_cost_per_1k = 0.5
output_cost_per_1k = 1.5

[tiers.gold]
budget = {budget}
budget_period = "1h"

[tiers.silver]
"""


class Served:
    """The app and its keys by name (``gold-a``, ``gold-b`` of tier gold, ``silver``)."""

    def __init__(self, client: TestClient, keys: dict[str, str]) -> None:
        self.client, self.keys = client, keys

    def ask(self, name: str, **body: Any) -> Any:
        payload = {"model": "gpt", "messages": MESSAGES, "max_tokens": 10, **body}
        headers = {"authorization": f"Bearer {self.keys[name]}"}
        return self.client.post("/v1/chat/completions", json=payload, headers=headers)

    def metric(self, outcome: str) -> float:
        text = self.client.get("/metrics").text
        wanted = f'revoctl_cache_requests_total{{model="gpt",outcome="{outcome}"}} '
        lines = [line for line in text.splitlines() if line.startswith(wanted)]
        return float(lines[0].split()[-1]) if lines else 0.0


@contextlib.contextmanager
def serving(
    cli: Any,
    tmp_path: Path,
    llm: LLMStandIn,
    *,
    database: str,
    redis: str,
    prefix: str,
    store: str = "redis",
    scope: str = "key",
    ttl: int = 300,
    max_bytes: int = 262144,
) -> Iterator[Served]:
    config = tmp_path / "revoctl.toml"
    config.write_text(
        CONFIG.format(
            database=database,
            redis=redis,
            prefix=prefix,
            store=store,
            scope=scope,
            ttl=ttl,
            max_bytes=max_bytes,
            openai=llm.openai_base_url,
            budget=BUDGET,
        )
    )
    at = ("--config", str(config))
    assert cli(*at, "db", "migrate").exit_code == 0
    assert cli(*at, "secrets", "set", "llm-key", input=KEY_CANARY).exit_code == 0
    keys = {}
    for name, tier in (("gold-a", "gold"), ("gold-b", "gold"), ("silver", "silver")):
        created = cli(*at, "keys", "create", name, "--tier", tier, "-o", "json")
        assert created.exit_code == 0, created.stderr
        keys[name] = json.loads(created.stdout)["key"]
    with TestClient(create_app(load_config(config))) as client:
        yield Served(client, keys)


@pytest.fixture
def llm() -> Iterator[LLMStandIn]:
    with LLMStandIn(api_key=KEY_CANARY, reply_tokens=8) as standin:
        yield standin


@pytest.fixture
def servers(postgres_url: str, redis_url: str, redis_prefix: str) -> dict[str, str]:
    return {"database": postgres_url, "redis": redis_url, "prefix": redis_prefix}


@pytest.mark.parametrize("store", ["redis", "sql"])
def test_a_repeated_deterministic_request_is_a_hit_and_calls_the_provider_once(
    cli: Any, tmp_path: Path, llm: LLMStandIn, servers: dict[str, str], store: str
) -> None:
    with serving(cli, tmp_path, llm, store=store, **servers) as served:
        first = served.ask("gold-a", temperature=0, user="ann")
        assert first.status_code == 200, first.text
        assert first.headers["x-revoctl-cache"] == "miss"
        # the same request: another ``user``, its keys in another order
        second = served.ask("gold-a", user="bob", max_tokens=10, temperature=0.0)
        assert second.status_code == 200, second.text
        assert second.headers["x-revoctl-cache"] == "hit"
        assert second.json() == first.json()
        assert len(llm.requests) == 1
        assert "x-ratelimit-remaining-requests" not in second.headers  # nothing charged
        assert served.metric("hit") == 1 and served.metric("miss") == 1
        other = served.ask("gold-a", temperature=0, max_tokens=11)  # another body: a miss
        assert other.headers["x-revoctl-cache"] == "miss" and len(llm.requests) == 2


def test_scope_key_never_serves_another_keys_answer(
    cli: Any, tmp_path: Path, llm: LLMStandIn, servers: dict[str, str]
) -> None:
    with serving(cli, tmp_path, llm, scope="key", **servers) as served:
        assert served.ask("gold-a", temperature=0).headers["x-revoctl-cache"] == "miss"
        assert served.ask("gold-b", temperature=0).headers["x-revoctl-cache"] == "miss"
        assert served.ask("gold-b", temperature=0).headers["x-revoctl-cache"] == "hit"
        assert len(llm.requests) == 2


def test_scope_tier_shares_within_a_tier_only(
    cli: Any, tmp_path: Path, llm: LLMStandIn, servers: dict[str, str]
) -> None:
    with serving(cli, tmp_path, llm, scope="tier", **servers) as served:
        assert served.ask("gold-a", temperature=0).headers["x-revoctl-cache"] == "miss"
        assert served.ask("gold-b", temperature=0).headers["x-revoctl-cache"] == "hit"
        assert served.ask("silver", temperature=0).headers["x-revoctl-cache"] == "miss"
        assert len(llm.requests) == 2


def test_only_deterministic_unstreamed_requests_are_cached(
    cli: Any, tmp_path: Path, llm: LLMStandIn, servers: dict[str, str]
) -> None:
    with serving(cli, tmp_path, llm, **servers) as served:
        for _ in range(2):
            warm = served.ask("gold-a", temperature=0.7)
            assert warm.status_code == 200 and "x-revoctl-cache" not in warm.headers
        assert served.ask("gold-a").headers.get("x-revoctl-cache") is None  # the default: 1
        assert len(llm.requests) == 3
        asked = {"temperature": 0.7, "metadata": {"cache": True, "team": "x"}}
        assert served.ask("gold-a", **asked).headers["x-revoctl-cache"] == "miss"
        assert served.ask("gold-a", **asked).headers["x-revoctl-cache"] == "hit"
        assert len(llm.requests) == 4
        for _ in range(2):  # a stream bypasses the cache, even at temperature 0
            with served.client.stream(
                "POST",
                "/v1/chat/completions",
                json={
                    "model": "gpt",
                    "messages": MESSAGES,
                    "max_tokens": 10,
                    "temperature": 0,
                    "stream": True,
                },
                headers={"authorization": f"Bearer {served.keys['gold-a']}"},
            ) as streamed:
                assert streamed.status_code == 200
                assert "x-revoctl-cache" not in streamed.headers
                assert [line for line in streamed.iter_lines() if line][-1] == "data: [DONE]"
        assert len(llm.requests) == 6
        assert served.metric("hit") == 1


@pytest.mark.slow
@pytest.mark.parametrize("store", ["redis", "sql"])
def test_an_entry_expires_after_its_ttl(
    cli: Any, tmp_path: Path, llm: LLMStandIn, servers: dict[str, str], store: str
) -> None:
    with serving(cli, tmp_path, llm, store=store, ttl=TTL, **servers) as served:
        assert served.ask("gold-a", temperature=0).headers["x-revoctl-cache"] == "miss"
        assert served.ask("gold-a", temperature=0).headers["x-revoctl-cache"] == "hit"
        time.sleep(TTL * 2 + 0.5)  # margin from the TTL: past it whatever the clocks' rounding
        assert served.ask("gold-a", temperature=0).headers["x-revoctl-cache"] == "miss"
        assert len(llm.requests) == 2


def test_a_hit_writes_a_row_of_cost_0_and_spends_no_budget(
    cli: Any, tmp_path: Path, llm: LLMStandIn, servers: dict[str, str]
) -> None:
    cost = (2 * 0.5 + 8 * 1.5) / 1000  # the stand-in: 2 prompt words, 8 reply words
    with serving(cli, tmp_path, llm, store="sql", **servers) as served:
        first = served.ask("gold-a", temperature=0)
        bound = BUDGET - float(first.headers["x-revoctl-budget-remaining"])  # as reserved
        hit = served.ask("gold-a", temperature=0)
        assert hit.headers["x-revoctl-cache"] == "hit"
        assert "x-revoctl-budget-remaining" not in hit.headers
        later = served.ask("gold-a", temperature=0, max_tokens=10, user="someone-else", n=1)
        assert later.headers["x-revoctl-cache"] == "miss"
        remaining = float(later.headers["x-revoctl-budget-remaining"])
        # one answer settled before it; the hit spent nothing (its bound alike: same body size)
        assert remaining == pytest.approx(BUDGET - cost - bound, abs=1e-4)
    rows = _rows(servers["database"])
    assert ("llm", 2, 8, 0.013) in rows and ("cache", 0, 0, 0.0) in rows
    assert len(rows) == 3


def _rows(database: str) -> list[tuple[Any, ...]]:
    import asyncpg

    async def read() -> list[tuple[Any, ...]]:
        conn = await asyncpg.connect(database.replace("+asyncpg", ""))
        try:
            found = await conn.fetch(
                "SELECT provider, prompt_tokens, completion_tokens, estimated_cost FROM model_usage"
            )
        finally:
            await conn.close()
        return [(r[0], r[1], r[2], float(r[3])) for r in found]

    return asyncio.run(read())


@pytest.mark.parametrize("store", ["redis", "sql"])
def test_the_store_never_holds_a_key_in_clear(
    cli: Any, tmp_path: Path, llm: LLMStandIn, servers: dict[str, str], store: str
) -> None:
    import redis as redis_lib

    with serving(cli, tmp_path, llm, store=store, **servers) as served:
        assert served.ask("gold-a", temperature=0).headers["x-revoctl-cache"] == "miss"
        secret = served.keys["gold-a"]
    if store == "redis":
        client = redis_lib.Redis.from_url(servers["redis"])
        names = [k.decode() for k in client.scan_iter(match=f"{servers['prefix']}cache:*")]
        values = [client.get(name) or b"" for name in names]
        client.close()
    else:
        names, values = _cache_rows(servers["database"])
    assert len(names) == 1
    for text in [*names, *(v.decode() for v in values)]:
        assert secret not in text and secret[-12:] not in text and KEY_CANARY not in text
    assert "gold-a" not in names[0] and "say hi" not in names[0]


def _cache_rows(database: str) -> tuple[list[str], list[bytes]]:
    import asyncpg

    async def read() -> tuple[list[str], list[bytes]]:
        conn = await asyncpg.connect(database.replace("+asyncpg", ""))
        try:
            found = await conn.fetch("SELECT key, answer FROM response_cache")
        finally:
            await conn.close()
        return [r[0] for r in found], [r[1].encode() for r in found]

    return asyncio.run(read())


def test_an_answer_over_max_bytes_is_answered_and_not_stored(
    cli: Any, tmp_path: Path, llm: LLMStandIn, servers: dict[str, str]
) -> None:
    with serving(cli, tmp_path, llm, max_bytes=256, **servers) as served:
        for _ in range(2):
            answered = served.ask("gold-a", temperature=0)
            assert answered.status_code == 200, answered.text
            assert len(answered.content) > 256
            assert "x-revoctl-cache" not in answered.headers
        assert len(llm.requests) == 2
        assert served.metric("too_large") == 2 and served.metric("hit") == 0
