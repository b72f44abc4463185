"""``revoctl.asgi`` in a FastAPI app (examples/fastapi_app) on the real Redis, in process:
the seed's ``check_rate_limit`` charges exactly the rule's requests under concurrent
clients, a refusal is the gateway's own (status, JSON body, headers), ``X-Forwarded-For``
counts only from a trusted proxy, the breaker opens after failures and the fallback
answers, and ``revoctl limits inspect`` reads the keys the app filled."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from examples.fastapi_app.app import create_app
from revoctl.config import load_config
from revoctl.runtime.app import create_app as create_gateway
from tests.conftest import run_revoctl
from tests.support.asgi_app import WINDOW, ModelStandIn, example_config, lifespan

pytestmark = pytest.mark.redis

LIMIT = 5  # api_generation in examples/fastapi_app/revoctl.toml
RATE_HEADERS = {
    "retry-after",
    "ratelimit-policy",
    "ratelimit",
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
}

GATEWAY = """
[providers.nowhere]
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
api_key = "sk-unused"
[models.gpt]
provider = "nowhere"
upstream = "gpt-4o-mini"
"""


def client(app: Any, peer: str = "127.0.0.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(peer, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://app")


@pytest.fixture
def config(tmp_path: Path, redis_url: str, redis_prefix: str, cli: Any) -> Path:
    path = example_config(tmp_path, redis_url, redis_prefix)
    assert cli("--config", str(path), "db", "migrate").exit_code == 0
    return path


async def test_exact_limit_under_concurrent_clients(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_app(config)
    with ModelStandIn() as model:
        monkeypatch.setenv("MODEL_URL", model.url)
        async with lifespan(app), client(app) as http:
            answers = await asyncio.gather(
                *(
                    http.post("/generate", json={"prompt": "ab"}, headers={"x-revoctl-user": u})
                    for u in ["alice"] * 12 + ["bob"] * 3
                )
            )
            too_long = await http.post(
                "/generate", json={"prompt": "ab"}, headers={"x-revoctl-user": "u" * 256}
            )
    assert too_long.status_code == 400
    assert too_long.json()["error"]["code"] == "user_too_long"
    alice = answers[:12]
    assert sorted(r.status_code for r in alice) == [200] * LIMIT + [429] * (12 - LIMIT)
    assert all(r.status_code == 200 for r in answers[12:])  # bob has his own bucket
    ok = next(r for r in alice if r.status_code == 200)
    assert ok.json() == {"answer": "ba", "source": "model"}
    assert ok.headers["x-ratelimit-limit-requests"] == str(LIMIT)
    assert f"q=5;w={WINDOW}" in ok.headers["ratelimit-policy"]
    shown = run_revoctl(
        ["--config", str(config), "limits", "inspect", "api_generation", "-o", "json"]
    )
    keys = {row["key"]: row for row in json.loads(shown.stdout)}
    assert keys["alice"]["remaining"] == 0 and keys["bob"]["remaining"] == LIMIT - 3


async def test_refusal_equals_the_gateways(config: Path) -> None:
    """The user spent on the app is refused by the gateway too (one state), and both
    refusals carry the same status, error object and rate-limit headers."""
    app = create_app(config)
    async with lifespan(app), client(app) as http:
        for _ in range(LIMIT):
            await http.post("/generate", json={"prompt": "x"}, headers={"x-revoctl-user": "carol"})
        mine = await http.post(
            "/generate", json={"prompt": "x"}, headers={"x-revoctl-user": "carol"}
        )
    gateway_config = config.parent / "gateway.toml"
    gateway_config.write_text(
        config.read_text().replace("[gateway]\n", '[gateway]\nrequest_rule = "api_generation"\n')
        + GATEWAY
    )
    with TestClient(create_gateway(load_config(gateway_config))) as gateway:
        theirs = gateway.post(
            "/v1/chat/completions",
            json={"model": "gpt", "user": "carol", "messages": [{"role": "user", "content": "x"}]},
        )
    assert mine.status_code == theirs.status_code == 429
    assert _numbers_out(mine.json()) == _numbers_out(theirs.json())
    assert mine.json()["error"]["code"] == "rate_limit_exceeded"
    assert set(mine.headers) >= RATE_HEADERS
    for name in RATE_HEADERS:
        assert _numbers_out(mine.headers[name]) == _numbers_out(theirs.headers[name]), name
    assert mine.headers["ratelimit-policy"] == theirs.headers["ratelimit-policy"]
    assert mine.headers["x-ratelimit-remaining-requests"] == "0"


def _numbers_out(value: object) -> str:
    """``value`` with its durations blanked: the two refusals came a moment apart."""
    return re.sub(r"\d+(\.\d+)?s?", "N", json.dumps(value))


async def test_forwarded_for_only_from_a_trusted_proxy(config: Path) -> None:
    app = create_app(config)
    spoofed = {"x-forwarded-for": "203.0.113.7"}
    async with lifespan(app):
        async with client(app, peer="198.51.100.9") as outsider:
            seen = await outsider.get("/whoami", headers=spoofed)
        async with client(app, peer="127.0.0.1") as proxied:
            behind = [await proxied.get("/whoami", headers=spoofed) for _ in range(4)]
    assert seen.json() == {"client": "198.51.100.9"}  # the header of an untrusted peer: ignored
    assert [r.status_code for r in behind] == [200, 200, 200, 429]  # per_address: 3
    assert behind[0].json() == {"client": "203.0.113.7"}
    shown = run_revoctl(["--config", str(config), "limits", "inspect", "per_address", "-o", "json"])
    keys = {row["key"]: row["remaining"] for row in json.loads(shown.stdout)}
    assert keys == {"198.51.100.9": 2, "203.0.113.7": 0}


async def test_breaker_opens_after_failures_and_the_fallback_answers(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    threshold = 3  # model_api's failure_threshold in the example
    app = create_app(config)
    with ModelStandIn() as model:
        model.status = 503
        monkeypatch.setenv("MODEL_URL", model.url)
        async with lifespan(app), client(app) as http:
            answers = [
                await http.post(
                    "/generate", json={"prompt": "hi"}, headers={"x-revoctl-user": f"u{i}"}
                )
                for i in range(threshold + 2)
            ]
            model.status = 200
            after = await http.post(
                "/generate", json={"prompt": "hi"}, headers={"x-revoctl-user": "v"}
            )
    assert all(r.status_code == 200 for r in answers)
    assert {r.json()["source"] for r in answers} == {"fallback"}
    assert model.calls == threshold  # open after the third failure: the model is left alone
    assert after.json()["source"] == "fallback"  # still open: recovery_timeout is 30 s
    status = run_revoctl(["--config", str(config), "breakers", "status", "model_api", "-o", "json"])
    assert "open" in status.stdout.lower()


async def test_without_the_middleware_a_clear_error(tmp_path: Path) -> None:
    from fastapi import Depends, FastAPI

    from revoctl.asgi import rate_limit

    bare = FastAPI()

    @bare.get("/", dependencies=[Depends(rate_limit("api_generation"))])
    async def root() -> dict[str, str]:
        return {}

    async with client(bare) as http:
        with pytest.raises(RuntimeError, match="add RateLimitMiddleware"):
            await http.get("/")


@pytest.fixture
def keyed(tmp_path: Path, redis_url: str, redis_prefix: str, cli: Any) -> tuple[Path, str]:
    """The example with ``auth = "keys"`` and a gateway key team-a: the file and the key."""
    config = example_config(tmp_path, redis_url, redis_prefix)
    config.write_text(config.read_text().replace('auth = "none"', 'auth = "keys"'))
    assert cli("--config", str(config), "db", "migrate").exit_code == 0
    created = cli("--config", str(config), "keys", "create", "team-a", "-o", "json")
    return config, json.loads(created.stdout)["key"]


async def test_gateway_keys_identify_the_caller(
    keyed: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``auth = "keys"`` a request needs a valid gateway key (401 as the gateway's
    otherwise), and a per_user bucket is KEYNAME:USER, as the gateway counts it."""
    config, key = keyed
    app = create_app(config)
    with ModelStandIn() as model:
        monkeypatch.setenv("MODEL_URL", model.url)
        async with lifespan(app), client(app) as http:
            anonymous = await http.post("/generate", json={"prompt": "x"})
            wrong = await http.post(
                "/generate", json={"prompt": "x"}, headers={"authorization": "Bearer rvk_nope"}
            )
            keyed = await http.post(
                "/generate",
                json={"prompt": "x"},
                headers={"authorization": f"Bearer {key}", "x-revoctl-user": "erin"},
            )
    assert anonymous.status_code == wrong.status_code == 401
    assert anonymous.json()["error"]["code"] == "invalid_api_key"
    assert keyed.status_code == 200
    shown = run_revoctl(
        ["--config", str(config), "limits", "inspect", "api_generation", "-o", "json"]
    )
    assert [row["key"] for row in json.loads(shown.stdout)] == ["team-a:erin"]
    assert key not in shown.stdout


async def test_the_middleware_alone_charges_every_request(config: Path) -> None:
    """``RateLimitMiddleware(rule=...)`` on a plain Starlette app: every request charged,
    the fourth refused before the app is called."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from revoctl.asgi import RateLimitMiddleware

    served: list[str] = []

    async def hello(request: Any) -> PlainTextResponse:
        served.append(request.client.host)
        return PlainTextResponse("hello")

    app = Starlette(
        routes=[Route("/", hello)],
        middleware=[Middleware(RateLimitMiddleware, rule="per_address", config=config)],
    )
    async with lifespan(app), client(app, peer="192.0.2.1") as http:
        answers = [await http.get("/") for _ in range(4)]
    assert [r.status_code for r in answers] == [200, 200, 200, 429]
    assert served == ["192.0.2.1"] * 3
    assert answers[2].headers["x-ratelimit-remaining-requests"] == "0"
    assert answers[3].json()["error"]["code"] == "rate_limit_exceeded"


async def test_an_operators_trip_stops_a_guarded_call(config: Path) -> None:
    """``revoctl breakers trip`` (another process) opens the breaker for ``guarded``: with no
    fallback the call is refused with `CircuitOpenError`, and never made; outside a request,
    ``limits=`` names the app's services (without it: a clear error)."""
    from revoctl.asgi import AppLimits, guarded
    from revoctl.core import CircuitOpenError

    tripped = run_revoctl(["--config", str(config), "breakers", "trip", "model_api"])
    assert tripped.returncode == 0, tripped.stderr
    limits = AppLimits(config=config)
    calls: list[str] = []

    async def model(prompt: str) -> str:
        calls.append(prompt)
        return prompt

    try:
        with pytest.raises(CircuitOpenError):
            await guarded("model_api", limits=limits)(model)("hi")
        with pytest.raises(RuntimeError, match="pass limits="):
            await guarded("model_api")(model)("hi")
    finally:
        await limits.aclose()
    assert calls == []
