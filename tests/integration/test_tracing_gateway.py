"""Tracing a real gateway request: the app over the real core services calling the LLM
stand-in over HTTP, its spans caught by the SDK's in-memory exporter.

One request is one trace: the server span, and under it the rate-limit decision, the
breaker call, the provider call inside it (whose ``traceparent`` is the one the stand-in
received), the API key's secret read and the database sessions. A canary: no secret
value, gateway key or prompt text is in any span's attributes or events.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from revoctl.core import tracing
from revoctl.core.tracing.settings import TracingConfig
from tests.integration.test_gateway import KEY_CANARY, ask, serving
from tests.support.llm_standin import LLMStandIn

PROMPT_CANARY = "prompt-canary-5e0d"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    assert tracing.configure(TracingConfig(enabled=True), exporter=exporter)
    yield exporter
    tracing.shutdown()


def tree(spans: list[ReadableSpan]) -> dict[str, list[str]]:
    """Parent span name -> its children's names (sorted); the root under ""."""
    names = {span.context.span_id: span.name for span in spans}
    children: dict[str, list[str]] = {}
    for span in spans:
        parent = names.get(span.parent.span_id, "?") if span.parent else ""
        children.setdefault(parent, []).append(span.name)
    return {parent: sorted(names) for parent, names in children.items()}


def test_one_gateway_request_is_one_trace_and_the_provider_gets_its_traceparent(
    spans: InMemorySpanExporter, cli: Any, tmp_path: Path
) -> None:
    with LLMStandIn(api_key=KEY_CANARY, reply_tokens=8) as llm:
        with serving(cli, tmp_path, openai=llm, anthropic=llm) as (client, key):
            spans.clear()  # the CLI's own (secrets set, keys create) are not this request's
            answer = ask(
                client, key, messages=[{"role": "user", "content": f"say {PROMPT_CANARY}"}]
            )
            assert answer.status_code == 200, answer.text
            received = llm.requests[-1].headers
        finished = [s for s in spans.get_finished_spans()]
    server = next(s for s in finished if s.name == "POST /v1/chat/completions")
    mine = [s for s in finished if s.context.trace_id == server.context.trace_id]
    shape = tree(mine)
    assert shape[""] == ["POST /v1/chat/completions"]
    under_server = shape["POST /v1/chat/completions"]
    assert {"ratelimit.reserve", "breaker.call"} <= set(under_server), shape
    assert shape["provider.call"] == ["secret.read"]  # the API key, read for the call
    assert shape["breaker.call"] == ["provider.call"]
    # The request's database work (usage rows, the instance's report) is written in the
    # background: each transaction is a trace of its own, its session inside it.
    sessions = [s for s in finished if s.name == "db.session"]
    assert sessions and all(
        next(p for p in finished if p.context.span_id == s.parent.span_id).name == "db.transaction"
        for s in sessions
        if s.parent is not None
    )

    provider = next(s for s in mine if s.name == "provider.call")
    version, trace_id, span_id, flags = received["traceparent"].split("-")
    assert (version, trace_id, span_id) == (
        "00",
        f"{provider.context.trace_id:032x}",
        f"{provider.context.span_id:016x}",
    )
    assert int(flags, 16) & 1  # sampled
    assert provider.attributes["model"] == "gpt"
    assert provider.attributes["provider"] == "llm"
    assert provider.attributes["prompt_tokens"] == 2
    assert provider.attributes["completion_tokens"] == 8
    reserve = next(s for s in mine if s.name == "ratelimit.reserve")
    assert reserve.attributes["allowed"] is True and "rpm" in str(reserve.attributes["rule"])
    breaker = next(s for s in mine if s.name == "breaker.call")
    assert dict(breaker.attributes) == {"breaker": "openai_api", "state": "closed"}
    read = next(s for s in mine if s.name == "secret.read")
    assert dict(read.attributes) == {"secret": "llm-key"}
    assert server.attributes["http.response.status_code"] == 200

    every = json.dumps([json.loads(s.to_json()) for s in finished])
    for canary in (KEY_CANARY, key, PROMPT_CANARY):
        assert canary not in every


def test_a_failed_provider_call_is_marked_failed_and_its_message_stays_out(
    spans: InMemorySpanExporter, cli: Any, tmp_path: Path
) -> None:
    """The stand-in's 401 repeats the key it was sent (as OpenAI's shows part of it): the
    failed spans say the error's type, and the key is nowhere in them."""
    with LLMStandIn(api_key=KEY_CANARY, reply_tokens=8) as llm:
        with serving(cli, tmp_path, openai=llm, anthropic=llm) as (client, key):
            llm.api_key = "sk-rotated-elsewhere"
            spans.clear()
            answer = ask(client, key)
            assert answer.status_code >= 500, answer.text
        finished = list(spans.get_finished_spans())
    calls = [s for s in finished if s.name == "provider.call"]
    assert len(calls) == 2  # gpt, then its fallback sonnet
    assert {s.attributes["error.type"] for s in calls} == {"ProviderUnavailableError"}
    assert all(s.status.status_code is StatusCode.ERROR for s in calls)
    server = next(s for s in finished if s.name == "POST /v1/chat/completions")
    assert server.attributes["http.response.status_code"] == answer.status_code
    every = json.dumps([json.loads(s.to_json()) for s in finished])
    assert KEY_CANARY not in every and key not in every
