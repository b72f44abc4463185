"""Tiers through the gateway in one process (the ASGI app over the real core services on
SQLite and the in-memory limits store, calling the LLM stand-ins over real HTTP): a key's
tier decides its rules, the models it may call, its budget and its parallel cap, and every
path a request can end on (an answer, a refusal after the charge, a broken stream) gives
its parallel slot back.

Several processes and instances sharing one budget and one cap are in
tests/e2e/test_many_teams.py.
"""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from revoctl.config import load_config
from revoctl.runtime.app import create_app
from revoctl.runtime.tokens import prompt_token_bound
from tests.support.llm_standin import LLMStandIn

KEY_CANARY = "sk-llm-canary-5e0b77"
ROWS_WAIT = 10.0
"""How long `Served.rows` waits for rows the usage writer has not committed yet."""
MESSAGES = [{"role": "user", "content": "say hi"}]
BUDGET = 0.05
"""gold's budget per hour: three answers (0.013 each at gpt's prices) fit, a fourth's bound
(0.0155 and a little) does not."""

CONFIG = """
[limits]
store = "memory"
[[limits.rules]]
name = "rpm"
requests = 1000
window_seconds = 31622400
algorithm = "fixed_window"
scope = "per_api_key"
[[limits.rules]]
name = "gold-rpm"
requests = 1000
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
default_max_tokens = 64

[providers.llm]
kind = "openai"
base_url = "{openai}"
api_key = "${{secret:llm-key}}"
breaker = "openai_api"
timeout = 10

[providers.claude]
kind = "anthropic"
base_url = "{anthropic}"
api_key = "${{secret:llm-key}}"
breaker = "anthropic_api"
timeout = 10

[models.gpt]
provider = "llm"
upstream = "gpt-4o-mini"
input_cost_per_1k = 0.5
output_cost_per_1k = 1.5
fallbacks = ["sonnet"]

[models.sonnet]
provider = "claude"
upstream = "claude-sonnet"
input_cost_per_1k = 3.0
output_cost_per_1k = 15.0

[tiers.gold]
request_rule = ["gold-rpm"]
budget = {budget}
budget_period = "1h"
models = ["gpt"]

[tiers.solo]
max_parallel_requests = 1

[tiers.duo]
max_parallel_requests = 2
{extra}
"""


@pytest.fixture
def openai_llm() -> Iterator[LLMStandIn]:
    with LLMStandIn(api_key=KEY_CANARY, reply_tokens=8) as standin:
        yield standin


@pytest.fixture
def claude_llm() -> Iterator[LLMStandIn]:
    with LLMStandIn(api_key=KEY_CANARY, reply_tokens=8) as standin:
        yield standin


class Served:
    """The app, its keys by name, and its SQLite database (for the rows, once stopped)."""

    def __init__(
        self, client: TestClient, keys: dict[str, str], home: Path, stack: contextlib.ExitStack
    ) -> None:
        self.client, self.keys, self.home, self._stack = client, keys, home, stack

    def stop(self) -> None:
        """Stop the app: every buffered row is written by then."""
        self._stack.close()

    def ask(self, name: str, route: str = "/v1/chat/completions", **body: Any) -> Any:
        payload = {"model": "gpt", "messages": MESSAGES, "max_tokens": 10, **body}
        headers = {"authorization": f"Bearer {self.keys[name]}"}
        return self.client.post(route, json=payload, headers=headers)

    def models(self, name: str) -> list[str]:
        listed = self.client.get(
            "/v1/models", headers={"authorization": f"Bearer {self.keys[name]}"}
        )
        assert listed.status_code == 200, listed.text
        return [model["id"] for model in listed.json()["data"]]

    def rows(self, until: Callable[[list[Any]], bool] = bool) -> list[tuple[Any, ...]]:
        """The rows written, waiting up to `ROWS_WAIT` seconds for ``until`` to hold of them
        (at once for a stopped app, whose rows are all written)."""
        deadline = time.monotonic() + ROWS_WAIT
        while True:
            with sqlite3.connect(self.home / "revoctl.db") as conn:
                rows = conn.execute(
                    "SELECT api_key_id, model, status_code, error_code FROM request_logs"
                ).fetchall()
            if until(rows) or time.monotonic() > deadline:
                return rows
            time.sleep(0.1)


@contextlib.contextmanager
def serving(cli: Any, tmp_path: Path, openai: LLMStandIn, claude: LLMStandIn) -> Iterator[Served]:
    """The app with keys ``gold``, ``solo``, ``duo``, ``plain`` (no tier) of those tiers and
    ``ghost``, made by an operator whose configuration has a tier ``ghost`` this gateway's
    has not."""
    values = {"openai": openai.openai_base_url, "anthropic": claude.url, "budget": BUDGET}
    operator = tmp_path / "operator.toml"
    operator.write_text(CONFIG.format(**values, extra="[tiers.ghost]"))
    served = tmp_path / "revoctl.toml"
    served.write_text(CONFIG.format(**values, extra=""))
    assert (
        cli("--config", str(operator), "secrets", "set", "llm-key", input=KEY_CANARY).exit_code == 0
    )
    keys = {}
    for name, tier in (("gold", "gold"), ("solo", "solo"), ("duo", "duo"), ("ghost", "ghost")):
        created = cli(
            "--config", str(operator), "keys", "create", name, "--tier", tier, "-o", "json"
        )
        assert created.exit_code == 0, created.stderr
        keys[name] = json.loads(created.stdout)["key"]
    plain = cli("--config", str(operator), "keys", "create", "plain", "-o", "json")
    keys["plain"] = json.loads(plain.stdout)["key"]
    with contextlib.ExitStack() as stack:
        client = stack.enter_context(TestClient(create_app(load_config(served))))
        yield Served(client, keys, tmp_path / "home", stack)


@pytest.fixture
def gateway(
    cli: Any, tmp_path: Path, openai_llm: LLMStandIn, claude_llm: LLMStandIn
) -> Iterator[Served]:
    with serving(cli, tmp_path, openai_llm, claude_llm) as served:
        yield served


def test_a_key_of_a_tier_this_gateway_lacks_is_refused_with_its_row(gateway: Served) -> None:
    refused = gateway.ask("ghost")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "tier_not_configured"
    assert "ghost" in refused.json()["error"]["message"]
    assert (
        gateway.client.get(
            "/v1/models", headers={"authorization": f"Bearer {gateway.keys['ghost']}"}
        ).status_code
        == 403
    )
    expected = ("ghost", "gpt", 403, "tier_not_configured")
    written = gateway.rows(until=lambda rows: expected in rows)  # by the writer, in the background
    assert expected in written
    gateway.stop()


def test_a_model_outside_the_tier_is_refused_before_any_charge_and_not_listed(
    gateway: Served, openai_llm: LLMStandIn, claude_llm: LLMStandIn
) -> None:
    assert gateway.models("gold") == ["gpt"]
    assert gateway.models("plain") == ["gpt", "sonnet"]
    before = int(gateway.ask("gold").headers["x-ratelimit-remaining-requests"])
    for route in ("/v1/chat/completions", "/generate"):
        refused = gateway.ask("gold", route, model="sonnet")
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "model_not_allowed"
        assert "retry-after" not in refused.headers
    after = int(gateway.ask("gold").headers["x-ratelimit-remaining-requests"])
    assert after == before - 1  # the refusals took nothing
    assert claude_llm.requests == []
    gateway.stop()
    refusals = [row for row in gateway.rows() if row[3] == "model_not_allowed"]
    assert refusals == [("gold", "sonnet", 403, "model_not_allowed")] * 2


def test_a_fallback_outside_the_tier_is_skipped(
    gateway: Served, openai_llm: LLMStandIn, claude_llm: LLMStandIn
) -> None:
    openai_llm.mode = "error500"
    failed = gateway.ask("gold")
    assert failed.status_code == 502, failed.text
    assert claude_llm.requests == []
    answered = gateway.ask("plain")  # no tier: its fallback answers
    assert answered.status_code == 200 and answered.json()["model"] == "sonnet"


def test_a_budget_is_reserved_at_the_bound_and_settled_to_the_cost(gateway: Served) -> None:
    bound = (prompt_token_bound(MESSAGES) * 0.5 + 10 * 1.5) / 1000
    cost = (2 * 0.5 + 8 * 1.5) / 1000  # the stand-in: 2 prompt words, 8 reply words
    first = gateway.ask("gold")
    assert first.status_code == 200, first.text
    assert float(first.headers["x-revoctl-budget-remaining"]) == pytest.approx(BUDGET - bound)
    answered = 1
    while (answer := gateway.ask("gold")).status_code == 200:
        spent_before = answered * cost  # every earlier answer settled to its cost
        remaining = float(answer.headers["x-revoctl-budget-remaining"])
        assert remaining == pytest.approx(BUDGET - spent_before - bound)
        answered += 1
    assert answered == math.floor((BUDGET - bound) / cost) + 1
    assert answer.status_code == 429
    assert answer.json()["error"]["code"] == "budget_exceeded"
    assert 0 < int(answer.headers["retry-after"]) <= 3600
    assert (
        gateway.client.post(  # /generate is charged the same way
            "/generate",
            json={"model": "gpt", "prompt": "say hi", "max_tokens": 10},
            headers={"authorization": f"Bearer {gateway.keys['gold']}"},
        ).json()["error"]["code"]
        == "budget_exceeded"
    )


def test_a_request_whose_bound_is_above_the_whole_budget_is_413(gateway: Served) -> None:
    refused = gateway.ask("gold", max_tokens=100_000)
    assert refused.status_code == 413
    assert refused.json()["error"]["code"] == "request_too_large"
    assert "retry-after" not in refused.headers
    assert gateway.ask("gold").status_code == 200  # nothing was taken


def in_flight(
    gateway: Served, name: str, count: int, llm: LLMStandIn
) -> tuple[list[Any], list[threading.Thread]]:
    """``count`` requests of key ``name``, held by the stand-in at once (it has a delay); the
    list their answers go to once it lets them go, and their threads."""
    answers: list[Any] = []
    threads = [
        threading.Thread(target=lambda: answers.append(gateway.ask(name))) for _ in range(count)
    ]
    for thread in threads:
        thread.start()
    llm.wait_for_requests(count, timeout=10)
    return answers, threads


def test_the_parallel_cap_refuses_beyond_it_and_frees_slots_at_the_end(
    gateway: Served, openai_llm: LLMStandIn
) -> None:
    openai_llm.delay = 30.0
    answers, threads = in_flight(gateway, "duo", 2, openai_llm)
    refused = gateway.ask("duo")
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "too_many_parallel_requests"
    assert refused.headers["retry-after"] == "1"
    openai_llm.delay = 0.0
    openai_llm.wake()
    for thread in threads:
        thread.join(timeout=30)
    assert [answer.status_code for answer in answers] == [200, 200]
    assert openai_llm.max_in_flight() == 2
    assert [gateway.ask("duo").status_code for _ in range(3)] == [200, 200, 200]


@pytest.mark.parametrize("mode", ["error500", "error400", "fail_mid_stream"])
def test_a_slot_is_freed_on_a_refusal_after_the_charge_and_on_a_broken_stream(
    gateway: Served, openai_llm: LLMStandIn, claude_llm: LLMStandIn, mode: str
) -> None:
    """solo may have one request in flight: each next request succeeds only if the one
    before gave its slot back, however it ended."""
    openai_llm.mode = claude_llm.mode = mode  # type: ignore[assignment]
    for stream in (False, True, False, True):
        ended = gateway.ask("solo", stream=stream)
        assert ended.status_code != 429 or "parallel" not in ended.text, ended.text
    openai_llm.mode = claude_llm.mode = "ok"
    assert gateway.ask("solo").status_code == 200


def test_a_slot_is_freed_when_an_unexpected_error_ends_the_request(
    gateway: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error no part expected (a 500) gives the request's charge back, its slot too."""

    async def broken(exchange: Any) -> Any:
        raise RuntimeError("a bug in the routing")

    routing = gateway.client.app_state["gateway"].routing
    monkeypatch.setattr(routing, "complete", broken)
    for _ in range(2):
        with pytest.raises(RuntimeError, match="a bug"):
            gateway.ask("solo")
    monkeypatch.undo()
    assert gateway.ask("solo").status_code == 200
