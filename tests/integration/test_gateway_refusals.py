"""Every refusal gets a clear answer (issue 17): a request too heavy for a rule ever to allow
is a 413 without ``Retry-After``; every authenticated ``/v1`` response carries the caller's
rate-limit headers, refused or not, charged or not; every answered request has exactly one
``request_logs`` row, refusals included; an upstream that refuses the gateway's own key is
the gateway's fault: the fallback answers, else a 502 saying "upstream authentication failed".

The app runs in this process over the real core services (SQLite, memory limits), in front
of the LLM stand-in over real HTTP.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from revoctl.config import load_config
from revoctl.core.gateway.settings import GatewayConfig
from revoctl.runtime.app import create_app
from revoctl.runtime.providers import ProviderUnavailableError
from revoctl.runtime.upstream_failures import exhausted
from tests.support.llm_standin import LLMStandIn

MAX_BODY = GatewayConfig().max_body_bytes
PROVIDER_KEY = "sk-refusals-test"

CONFIG = """
[limits]
store = "memory"
[[limits.rules]]
name = "rpm"
requests = 3
window_seconds = 31622400     # nothing refills while a test counts
algorithm = "fixed_window"
scope = "per_api_key"
[[limits.rules]]
name = "tpm"
requests = 3000
window_seconds = 31622400
algorithm = "token_bucket"
scope = "per_api_key"
[[limits.rules]]
name = "gpt-rpm"
requests = 100
window_seconds = 31622400
algorithm = "fixed_window"
scope = "per_user"            # with keys: the bucket KEYNAME:USER

[breakers]
store = "memory"
[breakers.services.openai_api]
failure_threshold = 100
[breakers.services.anthropic_api]
failure_threshold = 100

[gateway]
auth = "keys"
request_rule = "rpm"
token_rule = "tpm"
default_max_tokens = 64

[providers.llm]
kind = "openai"
base_url = "{openai}"
api_key = "{key}"
breaker = "openai_api"
timeout = 5

[providers.claude]
kind = "anthropic"
base_url = "{anthropic}"
api_key = "{key}"
breaker = "anthropic_api"
timeout = 5

[models.gpt]
provider = "llm"
upstream = "gpt-4o-mini"
fallbacks = ["sonnet"]
request_rule = "gpt-rpm"

[models.sonnet]
provider = "claude"
upstream = "claude-sonnet"
"""

RATE_LIMIT_HEADERS = ("ratelimit-policy", "ratelimit", "x-ratelimit-remaining-requests")


@contextlib.contextmanager
def serving(
    cli: Any, tmp_path: Path, *, openai: LLMStandIn, anthropic: LLMStandIn
) -> Iterator[tuple[TestClient, str]]:
    """The app in front of ``openai`` (model gpt) and ``anthropic`` (its fallback, sonnet),
    both called with ``PROVIDER_KEY``; yields the client and a gateway key named team-a."""
    config = tmp_path / "revoctl.toml"
    config.write_text(
        CONFIG.format(openai=openai.openai_base_url, anthropic=anthropic.url, key=PROVIDER_KEY)
    )
    created = cli("--config", str(config), "keys", "create", "team-a", "-o", "json")
    key = json.loads(created.stdout)["key"]
    with TestClient(create_app(load_config(config))) as client:
        yield client, key


@pytest.fixture
def llm() -> Iterator[LLMStandIn]:
    with LLMStandIn(api_key=PROVIDER_KEY, reply_tokens=4) as standin:
        yield standin


@pytest.fixture
def gateway(llm: LLMStandIn, cli: Any, tmp_path: Path) -> Iterator[tuple[TestClient, str]]:
    with serving(cli, tmp_path, openai=llm, anthropic=llm) as served:
        yield served


def ask(client: TestClient, key: str | None, request_id: str = "", **body: Any) -> Any:
    """A chat completion for ``gpt`` (``body`` overrides), tagged ``request_id`` if given."""
    headers = {"authorization": f"Bearer {key}"} if key else {}
    if request_id:
        headers["x-request-id"] = request_id
    payload = {"model": "gpt", "messages": [{"role": "user", "content": "say hi"}], **body}
    return client.post("/v1/chat/completions", json=payload, headers=headers)


def rows(home: Path, request_ids: list[str], timeout: float = 15.0) -> list[tuple[Any, ...]]:
    """``request_logs`` rows of ``request_ids`` as (request_id, status, model, key, user,
    error_code), once every id has one (or the deadline passed)."""
    deadline = time.monotonic() + timeout
    found: list[tuple[Any, ...]] = []
    while time.monotonic() < deadline:
        with contextlib.closing(sqlite3.connect(home / "revoctl.db")) as conn:
            found = conn.execute(
                "SELECT request_id, status_code, model, api_key_id, user_id, error_code "
                "FROM request_logs"
            ).fetchall()
        found = [row for row in found if row[0] in request_ids]
        if {row[0] for row in found} == set(request_ids):
            break
        time.sleep(0.2)
    return found


def test_a_request_too_heavy_for_a_rule_is_413_without_retry_after(gateway, llm) -> None:
    client, key = gateway
    refused = ask(client, key, max_tokens=5000)  # the token rule holds 3000: never
    assert refused.status_code == 413, refused.text
    error = refused.json()["error"]
    assert error["code"] == "request_too_large" and error["type"] == "invalid_request_error"
    assert "can never be allowed" in error["message"] and "'tpm'" in error["message"]
    assert "retry-after" not in refused.headers
    assert refused.headers["x-ratelimit-remaining-requests"] == "3"  # given back
    assert refused.headers["x-ratelimit-remaining-tokens"] == "3000"
    assert llm.requests == []  # no provider was called


def test_a_502_after_the_charge_shows_the_rules_as_given_back(gateway, llm) -> None:
    client, key = gateway
    llm.mode = "error500"  # gpt fails, and so does its fallback
    failed = ask(client, key)
    assert failed.status_code == 502, failed.text
    assert failed.headers["ratelimit-policy"] == (
        '"requests";q=3;w=31622400, "tokens";q=3000;w=31622400, "model-requests";q=100;w=31622400'
    )
    assert failed.headers["x-ratelimit-remaining-requests"] == "3"
    assert failed.headers["x-ratelimit-remaining-tokens"] == "3000"
    assert failed.headers["x-ratelimit-remaining-model-requests"] == "100"


def test_a_404_for_an_unknown_model_shows_the_callers_rules_unconsumed(gateway) -> None:
    client, key = gateway
    assert ask(client, key).status_code == 200
    missing = ask(client, key, model="no-such-model")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"
    assert missing.headers["ratelimit-policy"] == (
        '"requests";q=3;w=31622400, "tokens";q=3000;w=31622400'  # no model: the gateway's rules
    )
    assert missing.headers["ratelimit"].startswith('"requests";r=2;')
    assert missing.headers["x-ratelimit-remaining-requests"] == "2"
    assert ask(client, key).headers["x-ratelimit-remaining-requests"] == "1"  # nothing taken


def test_every_authenticated_v1_response_carries_the_rate_limit_headers(gateway, llm) -> None:
    client, key = gateway
    auth = {"authorization": f"Bearer {key}"}
    answers = {
        "200": ask(client, key),
        "200 /v1/models": client.get("/v1/models", headers=auth),
        "400 not JSON": client.post("/v1/chat/completions", content=b"{", headers=auth),
        "400 no messages": ask(client, key, messages=[]),
        "404 model": ask(client, key, model="nope"),
        "413 too heavy": ask(client, key, max_tokens=5000),
    }
    llm.mode = "error500"
    answers["502"] = ask(client, key)
    llm.mode = "ok"
    answers |= {"200 again": ask(client, key), "200 last": ask(client, key)}
    answers["429"] = ask(client, key)
    for what, answer in answers.items():
        assert str(answer.status_code) == what.split()[0], (what, answer.text)
        for header in RATE_LIMIT_HEADERS:
            assert header in answer.headers, (what, header)
    assert answers["429"].headers["x-ratelimit-remaining-requests"] == "0"
    assert "retry-after" in answers["429"].headers
    assert answers["400 no messages"].headers["x-ratelimit-remaining-model-requests"] == "99"
    unauthenticated = ask(client, None)
    assert unauthenticated.status_code == 401
    assert not any(h in unauthenticated.headers for h in RATE_LIMIT_HEADERS)


@pytest.mark.parametrize("why", ["no messages", "a user too long for its bucket"])
def test_a_user_no_bucket_can_be_keyed_for_still_gets_the_other_rules_headers(
    gateway, why: str
) -> None:
    """``team-a:`` and 250 characters is longer than a rate-limit key: the per_user rule
    has no bucket for this caller, and the refusal shows the caller's other rules."""
    client, key = gateway
    body: dict[str, Any] = {"user": "u" * 250}
    if why == "no messages":
        body["messages"] = []
    refused = ask(client, key, **body)
    assert refused.status_code == 400, refused.text
    assert refused.headers["ratelimit-policy"] == (
        '"requests";q=3;w=31622400, "tokens";q=3000;w=31622400'
    )
    assert refused.headers["x-ratelimit-remaining-requests"] == "3"


def test_every_answered_request_has_one_row_refusals_included(
    gateway, llm, revoctl_home: Path
) -> None:
    client, key = gateway
    auth = {"authorization": f"Bearer {key}"}
    tag = uuid.uuid4().hex[:8]

    def rid(name: str) -> dict[str, str]:
        return {**auth, "x-request-id": f"{tag}-{name}"}

    sent = {  # request id suffix -> (status, model, key, user, error_code) expected
        "bad-json": (400, None, "team-a", "team-a", "invalid_json"),
        "no-messages": (400, "gpt", "team-a", "alice", "invalid_value"),
        "no-key": (401, "gpt", None, "alice", "invalid_api_key"),
        "unknown": (404, "nope", "team-a", "team-a", "model_not_found"),
        "heavy": (413, "gpt", "team-a", "team-a", "request_too_large"),
        "huge": (413, None, "team-a", "team-a", "body_too_large"),
        "ok-1": (200, "gpt", "team-a", "team-a", None),
        "broken": (502, "gpt", "team-a", "team-a", None),
        "ok-2": (200, "gpt", "team-a", "team-a", None),
        "ok-3": (200, "gpt", "team-a", "team-a", None),
        "denied": (429, "gpt", "team-a", "team-a", "rate_limit_exceeded"),
        "models": (200, None, "team-a", "team-a", None),
    }
    chat = "/v1/chat/completions"
    body = {"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}
    statuses = {
        "bad-json": client.post(chat, content=b"{", headers=rid("bad-json")),
        "no-messages": client.post(
            chat, json={**body, "messages": [], "user": "alice"}, headers=rid("no-messages")
        ),
        "no-key": client.post(
            chat, json={**body, "user": "alice"}, headers={"x-request-id": f"{tag}-no-key"}
        ),
        "unknown": client.post(chat, json={**body, "model": "nope"}, headers=rid("unknown")),
        "heavy": client.post(chat, json={**body, "max_tokens": 5000}, headers=rid("heavy")),
        "huge": client.post(chat, content=b" " * (MAX_BODY + 1), headers=rid("huge")),
        "ok-1": client.post(chat, json=body, headers=rid("ok-1")),
    }
    llm.mode = "error500"
    statuses["broken"] = client.post(chat, json=body, headers=rid("broken"))
    llm.mode = "ok"
    for name in ("ok-2", "ok-3", "denied"):
        statuses[name] = client.post(chat, json=body, headers=rid(name))
    statuses["models"] = client.get("/v1/models", headers=rid("models"))
    assert {n: r.status_code for n, r in statuses.items()} == {n: e[0] for n, e in sent.items()}

    ids = [f"{tag}-{name}" for name in sent]
    found = rows(revoctl_home, ids)
    assert sorted(row[0] for row in found) == sorted(ids)  # exactly one row each
    assert {row[0].removeprefix(f"{tag}-"): tuple(row[1:]) for row in found} == sent


def test_an_upstream_that_refuses_the_gateways_key_falls_back_then_says_so(
    cli: Any, tmp_path: Path
) -> None:
    with (
        LLMStandIn(api_key="sk-another-key") as primary,
        LLMStandIn(api_key="sk-another-key") as fallback,
        serving(cli, tmp_path, openai=primary, anthropic=fallback) as (client, key),
    ):
        refused = ask(client, key)
        assert len(primary.requests) == 1 and len(fallback.requests) == 1  # the fallback tried
        fallback.api_key = PROVIDER_KEY
        answered = ask(client, key)
    assert refused.status_code == 502, refused.text
    error = refused.json()["error"]
    assert error["type"] == "server_error"
    assert error["message"].startswith("upstream authentication failed for 'gpt'")
    assert "401" in error["message"]
    assert answered.status_code == 200 and answered.json()["model"] == "sonnet"


@pytest.mark.parametrize("status", [401, 403])
def test_a_provider_refusing_the_key_is_upstream_authentication_failed(status: int) -> None:
    failure = ProviderUnavailableError(f"llm: HTTP {status}: no", status=status)
    refusal = exhausted("gpt", [failure])
    assert refusal.status == 502
    assert refusal.message.startswith("upstream authentication failed for 'gpt'")
