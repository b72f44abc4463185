"""A served gateway (``revoctl serve``) exports its spans over OTLP/HTTP to a receiver the
test starts (`tests.support.otlp_receiver`), and so do the CLI's commands.

One request's trace arrives whole, named after ``[tracing] service_name``: its server span,
the rate-limit decision, the breaker and provider calls, the key's secret read; and nothing
in it holds the provider's key, the gateway key or the prompt.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.fleet import chat
from tests.support.llm_standin import LLMStandIn
from tests.support.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.support.served_gateway import STANDIN_KEY, served_gateway

PROMPT_CANARY = "prompt-canary-0c4d"
EXPECTED = {"POST /v1/chat/completions", "ratelimit.reserve", "breaker.call", "provider.call"}


@pytest.mark.slow
def test_a_served_gateway_exports_each_request_as_one_trace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")  # batches sent every 0.1 s
    with OtlpReceiver() as receiver, LLMStandIn(api_key=STANDIN_KEY, reply_tokens=4) as llm:
        tracing = (
            f'\n[tracing]\nenabled = true\nendpoint = "{receiver.endpoint}"\n'
            'service_name = "gateway-under-test"\n'
        )
        # (`tiers` is the text served_gateway appends to its configuration.)
        with served_gateway(tmp_path, llm, tiers=tracing) as (fleet, key):
            with fleet.client(key) as client:
                answer = chat(client, messages=[{"role": "user", "content": PROMPT_CANARY}])
            assert answer.status_code == 200, answer.text

            def whole(spans: list[ReceivedSpan]) -> bool:
                return EXPECTED | {"secret.read"} <= {s.name for s in spans}

            spans = receiver.wait_for(whole, timeout=10)
            received = llm.requests[-1].headers["traceparent"]
    names = {s.name for s in spans}
    assert EXPECTED | {"secret.read"} <= names, names
    server = next(s for s in spans if s.name == "POST /v1/chat/completions")
    trace = {s.name: s for s in spans if s.trace_id == server.trace_id}
    assert set(trace) >= EXPECTED
    assert server.parent_span_id == "" and server.service == "gateway-under-test"
    assert trace["breaker.call"].parent_span_id == server.span_id
    assert trace["provider.call"].parent_span_id == trace["breaker.call"].span_id
    assert trace["secret.read"].parent_span_id == trace["provider.call"].span_id
    assert trace["secret.read"].attributes == {"secret": "llm-key"}
    provider = trace["provider.call"]
    assert received.split("-")[1:3] == [provider.trace_id, provider.span_id]
    assert provider.attributes["completion_tokens"] == 4
    # The CLI's commands that set the gateway up were traced too, each a root of its own.
    commands = {s.name for s in spans if s.attributes.get("command")}
    assert {"revoctl db migrate", "revoctl keys create"} <= commands, commands
    every = json.dumps([s.attributes for s in spans]) + b"".join(receiver.bodies).hex()
    for canary in (STANDIN_KEY, key, PROMPT_CANARY):
        assert canary not in every and canary.encode().hex() not in every


@pytest.mark.slow
def test_what_is_buffered_is_sent_when_the_gateway_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch not due for a minute still goes out on SIGTERM: spans are not lost at a
    rolling restart."""
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "60000")
    with OtlpReceiver() as receiver, LLMStandIn(api_key=STANDIN_KEY, reply_tokens=4) as llm:
        tracing = f'\n[tracing]\nenabled = true\nendpoint = "{receiver.endpoint}"\n'
        with served_gateway(tmp_path, llm, tiers=tracing) as (fleet, key):
            with fleet.client(key) as client:
                assert chat(client).status_code == 200
            assert not any(s.name.startswith("POST ") for s in receiver.received())
            fleet.stop()
            names = {s.name for s in receiver.received()}
    assert names >= EXPECTED, names
