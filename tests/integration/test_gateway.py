"""The gateway in one process: the ASGI app over the real core services, calling the LLM
stand-in over real HTTP, driven by Starlette's test client and by the official openai client.

Multi-worker, multi-instance behaviour (limits across workers, trips reaching every
worker, a worker killed mid-stream) is in ``tests/e2e/``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from revoctl.config import load_config
from revoctl.runtime.app import create_app
from revoctl.runtime.instance import INSTANCE_REPORT_SECONDS
from tests.support.llm_standin import LLMStandIn

KEY_CANARY = "sk-llm-canary-8d1f0c2e"

CONFIG = """
[limits]
store = "memory"
[[limits.rules]]
name = "rpm"
requests = 5
window_seconds = 31622400     # a leap year: no window ends and nothing refills while a test counts
algorithm = "fixed_window"
scope = "per_api_key"
[[limits.rules]]
name = "tpm"
requests = 3000
window_seconds = 31622400
algorithm = "token_bucket"
scope = "per_api_key"

[breakers]
store = "memory"
[breakers.services.openai_api]
failure_threshold = 2
recovery_timeout = 60

[gateway]
auth = "keys"
request_rule = "rpm"
token_rule = "tpm"
default_max_tokens = 64

[providers.llm]
kind = "openai"
base_url = "{openai}"
api_key = "${{secret:llm-key}}"
breaker = "openai_api"
timeout = 5

[providers.claude]
kind = "anthropic"
base_url = "{anthropic}"
api_key = "${{secret:llm-key}}"
breaker = "anthropic_api"
timeout = 5

[models.gpt]
provider = "llm"
upstream = "gpt-4o-mini"
input_cost_per_1k = 0.5
output_cost_per_1k = 1.5
fallbacks = ["sonnet"]
retries = 0                     # these tests count single calls; retries: tests/e2e/test_routing.py

[models.sonnet]
provider = "claude"
upstream = "claude-sonnet"
"""


@pytest.fixture
def llm() -> Iterator[LLMStandIn]:
    with LLMStandIn(api_key=KEY_CANARY, reply_tokens=8) as standin:
        yield standin


@pytest.fixture
def gateway(llm: LLMStandIn, cli: Any, tmp_path: Path) -> Iterator[tuple[TestClient, str]]:
    """The app on a fresh home, with a gateway key; yields the client and the key."""
    with serving(cli, tmp_path, openai=llm, anthropic=llm) as served:
        yield served


@contextlib.contextmanager
def serving(
    cli: Any, tmp_path: Path, *, openai: LLMStandIn, anthropic: LLMStandIn
) -> Iterator[tuple[TestClient, str]]:
    """The app in front of ``openai`` (model gpt) and ``anthropic`` (its fallback, sonnet),
    both called with the key ``KEY_CANARY``; yields the client and a gateway key."""
    config = tmp_path / "revoctl.toml"
    config.write_text(CONFIG.format(openai=openai.openai_base_url, anthropic=anthropic.url))
    assert (
        cli("--config", str(config), "secrets", "set", "llm-key", input=KEY_CANARY).exit_code == 0
    )
    created = cli("--config", str(config), "keys", "create", "team-a", "-o", "json")
    key = json.loads(created.stdout)["key"]
    app = create_app(load_config(config))
    with TestClient(app) as client:
        yield client, key


def ask(client: TestClient, key: str | None, **body: Any) -> Any:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    payload = {"model": "gpt", "messages": [{"role": "user", "content": "say hi"}], **body}
    return client.post("/v1/chat/completions", json=payload, headers=headers)


def test_a_completion_answers_with_usage_headers_and_the_model_name(gateway, llm) -> None:
    client, key = gateway
    response = ask(client, key, max_tokens=20)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "gpt"
    assert body["usage"] == {"prompt_tokens": 2, "completion_tokens": 8, "total_tokens": 10}
    assert llm.requests[-1].model == "gpt-4o-mini" and llm.requests[-1].api_key == KEY_CANARY
    headers = response.headers
    assert headers["ratelimit-policy"] == '"requests";q=5;w=31622400, "tokens";q=3000;w=31622400'
    assert headers["x-ratelimit-limit-requests"] == "5"
    assert headers["x-ratelimit-remaining-requests"] == "4"
    charge = 8 + 8 + len("user") + len("say hi") + 20  # the bound: reply, framing, text, max
    assert int(headers["x-ratelimit-remaining-tokens"]) == 3000 - charge  # as charged...
    again = ask(client, key, max_tokens=20)  # ...and the unused part came back after the answer
    assert int(again.headers["x-ratelimit-remaining-tokens"]) == 3000 - 10 - charge
    assert float(headers["x-revoctl-overhead-ms"]) >= 0
    assert headers["x-request-id"]


def test_without_a_valid_key_it_is_401(gateway) -> None:
    client, key = gateway
    assert ask(client, None).status_code == 401
    assert ask(client, key[:-2] + "xx").status_code == 401
    assert client.get("/v1/models").status_code == 401
    assert client.get("/v1/models", headers={"authorization": f"Bearer {key}"}).json()["data"]
    for open_route in ("/health", "/health/live", "/health/ready", "/metrics"):
        assert client.get(open_route).status_code == 200, open_route


def test_the_request_rule_denies_with_429_and_retry_after(gateway) -> None:
    client, key = gateway
    statuses = [ask(client, key).status_code for _ in range(6)]
    assert statuses == [200] * 5 + [429]
    denied = ask(client, key)
    assert denied.status_code == 429
    assert int(denied.headers["retry-after"]) >= 1
    assert denied.json()["error"]["code"] == "rate_limit_exceeded"
    assert denied.headers["x-ratelimit-remaining-requests"] == "0"


def test_a_request_whose_tokens_cannot_fit_is_refused_and_charges_nothing(gateway, llm) -> None:
    client, key = gateway
    before = len(llm.requests)
    refused = ask(client, key, max_tokens=5000)
    assert refused.status_code == 413  # not a 429: retrying cannot help (issue 17)
    assert refused.json()["error"]["code"] == "request_too_large"
    assert "can never be allowed" in refused.json()["error"]["message"]
    assert "retry-after" not in refused.headers
    assert len(llm.requests) == before  # the provider was never called
    ok = ask(client, key)
    assert ok.headers["x-ratelimit-remaining-requests"] == "4"  # the refused one was given back


def test_a_stream_relays_chunks_and_ends_with_done(gateway) -> None:
    client, key = gateway
    with client.stream(
        "POST",
        "/v1/chat/completions",
        json={
            "model": "gpt",
            "messages": [{"role": "user", "content": "one two three"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        },
        headers={"authorization": f"Bearer {key}"},
    ) as response:
        assert response.status_code == 200
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    assert {chunk["model"] for chunk in chunks} == {"gpt"}
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert len(text.split()) == 8
    assert chunks[-1]["usage"]["completion_tokens"] == 8


def test_the_official_openai_client_works_unchanged(gateway) -> None:
    import openai

    client, key = gateway
    sdk = openai.OpenAI(
        base_url=str(client.base_url) + "/v1", api_key=key, http_client=client, max_retries=0
    )
    answer = sdk.chat.completions.create(
        model="gpt", messages=[{"role": "user", "content": "hello there"}], max_tokens=4
    )
    assert answer.model == "gpt" and answer.usage is not None
    assert answer.usage.completion_tokens == 4
    stream = sdk.chat.completions.create(
        model="gpt", messages=[{"role": "user", "content": "hello"}], stream=True
    )
    words = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert len(words.split()) == 8
    assert [m.id for m in sdk.models.list()] == ["gpt", "sonnet"]


def test_a_failing_provider_falls_back_and_then_opens_its_breaker(gateway, llm, cli) -> None:
    client, key = gateway
    llm.mode = "error500"  # both APIs of the stand-in fail: gpt, then its fallback
    assert [ask(client, key).status_code for _ in range(2)] == [502, 502]
    # two failures in a row: openai_api opens (threshold 2); anthropic_api's is 5
    llm.mode = "ok"

    before = [r.path for r in llm.requests]
    answered = ask(client, key)
    assert answered.status_code == 200 and answered.json()["model"] == "sonnet"  # the fallback
    assert [r.path for r in llm.requests][len(before) :] == ["/v1/messages"]
    metrics = client.get("/metrics").text
    assert 'revoctl_breaker_state{breaker="openai_api"} 2.0' in metrics
    assert 'revoctl_fallbacks_total{fallback="sonnet",model="gpt"} 1.0' in metrics


@pytest.mark.parametrize(
    ("fault", "primary_key"),
    [("error500", KEY_CANARY), ("ok", "sk-not-the-configured-key")],
    ids=["primary-500s", "primary-refuses-the-key-and-repeats-it"],
)
def test_a_fallback_taken_is_logged_once_with_the_request_the_model_and_why(
    cli: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture, fault: str, primary_key: str
) -> None:
    from revoctl.core.logs import JsonFormatter

    with (
        LLMStandIn(api_key=primary_key) as primary,
        LLMStandIn(api_key=KEY_CANARY) as fallback,
        serving(cli, tmp_path, openai=primary, anthropic=fallback) as (client, key),
    ):
        primary.mode = fault  # type: ignore[assignment]
        caplog.set_level(logging.DEBUG)
        answer = ask(client, key)
        assert answer.status_code == 200 and answer.json()["model"] == "sonnet"
        assert len(primary.requests) == 1 and len(fallback.requests) == 1
    request_id = answer.headers["x-request-id"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    about_it = [r for r in warnings if request_id in r.getMessage()]
    assert len(about_it) == 1, [r.getMessage() for r in warnings]
    [logged] = about_it
    line = json.loads(JsonFormatter().format(logged))
    assert line["logger"] == "revoctl.gateway" and line["request_id"] == request_id
    assert line["model"] == "gpt" and line["fallback"] == "sonnet"
    why = "500" if fault == "error500" else "401"
    assert "'gpt' failed" in line["message"] and why in line["message"], line["message"]
    for text in (*(JsonFormatter().format(r) for r in caplog.records), caplog.text):
        assert KEY_CANARY not in text and key not in text


def test_a_request_the_provider_refuses_is_returned_not_retried(gateway, llm) -> None:
    client, key = gateway
    llm.mode = "error400"
    before = len(llm.requests)
    refused = ask(client, key)
    assert refused.status_code == 400
    assert len(llm.requests) == before + 1  # no fallback: it would refuse it too


def test_health_matches_the_cli_and_metrics_have_every_family(gateway, cli, tmp_path) -> None:
    client, key = gateway
    ask(client, key)
    document = client.get("/health").json()
    assert set(document["services"]) == {
        "secrets", "database", "rate_limiter", "circuit_breakers",
    }  # fmt: skip
    cli_document = json.loads(
        cli("--config", str(tmp_path / "revoctl.toml"), "health", "-o", "json").stdout
    )
    assert set(cli_document["services"]) == set(document["services"])
    text = client.get("/metrics").text
    for family in (
        "revoctl_http_requests_total",
        "revoctl_http_request_duration_seconds",
        "revoctl_time_to_first_token_seconds",
        "revoctl_gateway_overhead_seconds",
        "revoctl_rate_limit_decisions_total",
        "revoctl_breaker_state",
        "revoctl_breaker_calls_total",
        "revoctl_fallbacks_total",
        "revoctl_db_pool_connections",
        "revoctl_db_slow_queries_total",
        "revoctl_secret_cache_lookups_total",
        "revoctl_tokens_total",
        "revoctl_cost_usd_total",
        "revoctl_process_cpu_seconds",
        "revoctl_process_resident_memory_bytes",
        "revoctl_process_peak_resident_memory_bytes",
    ):
        assert f"# TYPE {family}" in text, family
    assert 'revoctl_rate_limit_decisions_total{decision="allowed",rule="rpm"}' in text


def test_usage_rows_and_cost_match_the_providers_report(gateway, revoctl_home: Path) -> None:
    client, key = gateway
    for _ in range(3):
        assert ask(client, key, max_tokens=6).status_code == 200
    deadline = time.monotonic() + 10
    rows: list[Any] = []
    while time.monotonic() < deadline and len(rows) < 3:
        with sqlite3.connect(revoctl_home / "revoctl.db") as conn:
            rows = conn.execute(
                "SELECT provider, model, prompt_tokens, completion_tokens, total_tokens, "
                "estimated_cost FROM model_usage"
            ).fetchall()
        time.sleep(0.2)
    assert len(rows) == 3
    # 2 prompt tokens at 0.5 per 1k + 6 completion tokens at 1.5 per 1k
    assert {tuple(r[:5]) for r in rows} == {("llm", "gpt", 2, 6, 8)}
    assert {float(r[5]) for r in rows} == {0.01}


def test_no_key_is_ever_logged(gateway, llm, caplog) -> None:
    from revoctl.core.logs import JsonFormatter

    client, key = gateway
    caplog.set_level(logging.DEBUG)
    ask(client, key)
    llm.mode = "error500"
    ask(client, key)
    ask(client, "rvk_0123456789abcdef_" + "A" * 43)
    lines = [JsonFormatter().format(record) for record in caplog.records]
    assert any('"logger": "revoctl.access"' in line and '"key": "team-a"' in line for line in lines)
    for text in (*lines, caplog.text):
        assert key not in text and KEY_CANARY not in text


def test_generate_takes_a_prompt_or_messages(gateway) -> None:
    client, key = gateway
    headers = {"authorization": f"Bearer {key}"}
    answer = client.post(
        "/generate", json={"model": "gpt", "prompt": "tell me", "max_tokens": 3}, headers=headers
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model"] == "gpt" and len(body["text"].split()) == 3
    assert body["finish_reason"] == "length"
    assert body["usage"] == {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}
    assert answer.headers["x-ratelimit-remaining-requests"] == "4"
    both = client.post(
        "/generate",
        json={"model": "gpt", "prompt": "x", "messages": [{"role": "user", "content": "y"}]},
        headers=headers,
    )
    assert both.status_code == 400
    assert client.post("/generate", json={"model": "gpt", "prompt": "x"}).status_code == 401


def test_ready_and_live_answer_without_a_key(gateway) -> None:
    client, _ = gateway
    assert client.get("/health/ready").json() == {"ready": True}
    assert client.get("/health/live").json() == {"status": "alive"}


def test_a_new_instance_shows_in_db_pool_at_once(gateway, cli) -> None:
    """An operator who starts a worker sees it in ``db pool`` without waiting for its
    first report interval."""
    deadline = time.monotonic() + INSTANCE_REPORT_SECONDS / 2
    instances: list[dict[str, Any]] = []
    while not instances and time.monotonic() < deadline:
        instances = json.loads(cli("db", "pool", "-o", "json").stdout)["instances"]
        time.sleep(0.05)
    assert [i["instance"].rsplit(":", 1)[-1] for i in instances] == ["runtime"]
    assert instances[0]["stale"] is False and instances[0]["pool"]["size"] == 10


def test_the_hosts_cpu_and_memory_go_to_system_metrics_beside_the_process(
    gateway, revoctl_home: Path
) -> None:
    """The report at start writes the host's sample with the process's (once a minute)."""
    deadline = time.monotonic() + INSTANCE_REPORT_SECONDS
    names: set[str] = set()
    while time.monotonic() < deadline and "host_memory_total_bytes" not in names:
        with sqlite3.connect(revoctl_home / "revoctl.db") as conn:
            names = {row[0] for row in conn.execute("SELECT name FROM system_metrics")}
        time.sleep(0.1)
    assert {"host_memory_total_bytes", "host_memory_available_bytes"} <= names
    assert {"process_cpu_seconds", "process_peak_resident_memory_bytes"} <= names
