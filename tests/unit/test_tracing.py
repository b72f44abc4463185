"""Tracing with the SDK's in-memory exporter: the tree of one request (server span, then
the rate-limit decision, the breaker call and, inside it, the provider call), the
``traceparent`` a provider would be sent, a secret read (its name, never its value), and
tracing off: a shared no-op, and OpenTelemetry never imported."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from revoctl.core import tracing
from revoctl.core.breakers import CircuitBreaker, CircuitBreakerConfig
from revoctl.core.limits import LimitsConfig, MemoryLimitStore, RateLimiter, RateLimitRule
from revoctl.core.tracing.settings import TracingConfig
from revoctl.runtime.deployments import Deployment
from revoctl.runtime.tracing import ServerSpans, traced_call
from tests.unit.test_secret_manager import FakeClock, MemoryStore, make_manager

SECRET_CANARY = "s3cr3t-canary-4b7e"
PROMPT_CANARY = "prompt-canary-91ac"
CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    assert tracing.configure(TracingConfig(enabled=True), exporter=exporter)
    yield exporter
    tracing.shutdown()


def app(sent: list[dict[str, str]]) -> Starlette:
    """One route doing what a gateway request does: a limit, then a breaker around a call."""
    limiter = RateLimiter(
        LimitsConfig(
            store="memory", rules=(RateLimitRule(name="rpm", requests=5, window_seconds=60),)
        ),
        store=MemoryLimitStore(),
    )
    breaker = CircuitBreaker(CircuitBreakerConfig(name="openai_api", timeout=0))
    deployment = Deployment("gpt", "east", "llm", "gpt-4o-mini", 1.0)

    async def provider_call(provider: object, upstream: str) -> dict[str, Any]:
        sent.append(tracing.inject_traceparent({"authorization": "Bearer sk-x"}))
        return {"usage": {"prompt_tokens": 3, "completion_tokens": 8}}

    async def chat(request: Request) -> JSONResponse:
        body = await request.json()
        assert PROMPT_CANARY in json.dumps(body)
        decision = await limiter.check_rate_limit("rpm", "team-a")
        answer = await breaker.call(traced_call(provider_call, deployment), None, "gpt-4o-mini")
        return JSONResponse({"allowed": decision.allowed, **answer})

    return Starlette(
        routes=[Route("/v1/chat/completions", chat, methods=["POST"])],
        middleware=[Middleware(ServerSpans)],
    )


def test_one_request_is_one_tree_continuing_the_callers_trace(
    spans: InMemorySpanExporter,
) -> None:
    sent: list[dict[str, str]] = []
    with TestClient(app(sent)) as client:
        answer = client.post(
            "/v1/chat/completions?user=x",
            json={"messages": [{"role": "user", "content": PROMPT_CANARY}]},
            headers={"traceparent": f"00-{CALLER_TRACE}-b7ad6b7169203331-01"},
        )
    assert answer.status_code == 200
    by_name = {span.name: span for span in spans.get_finished_spans()}
    assert set(by_name) == {
        "POST /v1/chat/completions",
        "ratelimit.check",
        "breaker.call",
        "provider.call",
    }
    server = by_name["POST /v1/chat/completions"]
    assert server.kind is SpanKind.SERVER
    assert server.parent is not None and server.parent.is_remote
    assert f"{server.context.trace_id:032x}" == CALLER_TRACE
    assert server.attributes["http.route"] == "/v1/chat/completions"
    assert server.attributes["http.request.method"] == "POST"
    assert server.attributes["http.response.status_code"] == 200

    def parent(name: str) -> Any:
        span = by_name[name]
        assert span.parent is not None
        return next(s for s in by_name.values() if s.context.span_id == span.parent.span_id)

    assert parent("ratelimit.check") is server
    assert parent("breaker.call") is server
    assert parent("provider.call") is by_name["breaker.call"]
    assert dict(by_name["ratelimit.check"].attributes) == {"rule": "rpm", "allowed": True}
    assert dict(by_name["breaker.call"].attributes) == {"breaker": "openai_api", "state": "closed"}
    provider = by_name["provider.call"]
    assert provider.kind is SpanKind.CLIENT
    assert dict(provider.attributes) == {
        "model": "gpt",
        "deployment": "east",
        "provider": "llm",
        "upstream_model": "gpt-4o-mini",
        "prompt_tokens": 3,
        "completion_tokens": 8,
    }
    # What the provider would be sent: the provider span's own traceparent.
    assert sent[0]["traceparent"][:-2] == (
        f"00-{provider.context.trace_id:032x}-{provider.context.span_id:016x}-"
    )
    every = json.dumps([json.loads(s.to_json()) for s in spans.get_finished_spans()])
    assert PROMPT_CANARY not in every and "sk-x" not in every and "user=x" not in every


async def test_a_secret_read_names_the_secret_and_never_holds_its_value(
    spans: InMemorySpanExporter,
) -> None:
    store = MemoryStore()
    store.seed("llm-key", SECRET_CANARY)
    manager = make_manager(store, FakeClock())
    assert await manager.get_secret("llm-key") == SECRET_CANARY
    assert (await manager.read_secret("llm-key")).value == SECRET_CANARY  # from the cache
    read = spans.get_finished_spans()
    assert [s.name for s in read] == ["secret.read", "secret.read"]
    assert all(dict(s.attributes) == {"secret": "llm-key"} for s in read)
    assert SECRET_CANARY not in json.dumps([json.loads(s.to_json()) for s in read])


async def test_a_ratio_of_zero_keeps_no_new_trace_but_follows_a_sampled_caller() -> None:
    exporter = InMemorySpanExporter()
    assert tracing.configure(TracingConfig(enabled=True, sample_ratio=0.0), exporter=exporter)
    try:
        with tracing.span("alone") as alone:
            assert not alone.is_recording()
        with (
            tracing.server_span(
                "GET /x", {"traceparent": f"00-{CALLER_TRACE}-b7ad6b7169203331-01"}
            ),
            tracing.span("inside") as inside,
        ):
            assert inside.is_recording()
    finally:
        tracing.shutdown()
    assert [s.name for s in exporter.get_finished_spans()] == ["inside", "GET /x"]


def test_off_every_hook_is_one_shared_no_op() -> None:
    assert not tracing.configure(TracingConfig())
    assert not tracing.enabled()
    first, second = tracing.span("a", rule="x"), tracing.span("b")
    assert first is second
    with first as span:
        assert not span.is_recording()
        span.set_attribute("k", 1)
    headers = {"authorization": "Bearer k"}
    assert tracing.inject_traceparent(headers) == {"authorization": "Bearer k"}


_PROBE = """
import asyncio, json, sys
from revoctl.config import load_config
from revoctl.core import tracing
from revoctl.runtime.app import create_app

create_app(load_config(None))
with tracing.span("x"):
    pass
print(json.dumps(sorted(m for m in sys.modules if m.startswith("opentelemetry"))))
"""


def test_off_the_gateway_never_imports_opentelemetry(tmp_path: Any) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=True,
    )
    assert json.loads(proc.stdout.splitlines()[-1]) == []


def test_help_never_imports_opentelemetry() -> None:
    from tests.unit.test_cli import _loaded_backends

    stdout, loaded = _loaded_backends(["--help"], watched=("opentelemetry",))
    assert "USAGE" in stdout and loaded == []


def test_an_endpoint_that_is_not_an_http_url_is_one_clear_error(cli: Any) -> None:
    result = cli("--set", "tracing.endpoint=collector:4318", "config", "show")
    assert result.exit_code == 2
    assert "tracing.endpoint: an OTLP/HTTP URL" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


_WITHOUT_EXTRA = """
import logging, sys
sys.modules["opentelemetry"] = None  # the extra not installed
logging.basicConfig(level=logging.WARNING, format="%(message)s")
from revoctl.core import tracing
from revoctl.core.tracing.settings import TracingConfig
print(tracing.configure(TracingConfig(enabled=True)), tracing.enabled())
with tracing.span("x") as span:
    print(span.is_recording())
"""


def test_without_the_extra_tracing_stays_off_with_one_warning() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _WITHOUT_EXTRA], capture_output=True, text=True, timeout=60
    )
    assert proc.stdout.split() == ["False", "False", "False"], proc.stderr
    assert proc.stderr.strip() == (
        "tracing.enabled is true but opentelemetry is missing: pip install 'revoctl[tracing]'"
    )


def test_an_error_is_marked_by_its_type_and_never_by_its_message(
    spans: InMemorySpanExporter,
) -> None:
    """A driver's message may hold a statement's parameters; an upstream's, what it was
    sent: a span that fails says the error's type, nothing more."""
    with pytest.raises(ValueError), tracing.span("db.transaction"):
        raise ValueError(f"INSERT failed [parameters: ('{SECRET_CANARY}',)]")
    (failed,) = spans.get_finished_spans()
    assert failed.status.status_code is StatusCode.ERROR
    assert dict(failed.attributes) == {"error.type": "ValueError"}
    assert failed.events == () or list(failed.events) == []
    assert SECRET_CANARY not in failed.to_json()


def test_inside_a_trace_not_sampled_every_hook_is_the_shared_no_op(
    spans: InMemorySpanExporter,
) -> None:
    unsampled = {"traceparent": f"00-{CALLER_TRACE}-b7ad6b7169203331-00"}
    with tracing.server_span("GET /x", unsampled) as server:
        assert not server.is_recording()
        assert tracing.span("a") is tracing.client_span("b") is tracing.span("c", rule="x")
        sent = tracing.inject_traceparent({})
    assert sent["traceparent"].startswith(f"00-{CALLER_TRACE}-")
    assert sent["traceparent"].endswith("-00")  # the upstream is told: not sampled
    assert list(spans.get_finished_spans()) == []
