"""Hostile and malformed requests: every one gets a clean 4xx in OpenAI's error shape, naming
the field's path, and nothing reaches the server log as a traceback.

Most run on the ASGI app in process (Starlette's test client, which re-raises what the app
did not handle, so a 500 fails the test); what only a socket can show (a declared
Content-Length, a client leaving mid-upload) runs on ``revoctl serve``.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from revoctl.config import load_config
from revoctl.runtime.app import create_app
from revoctl.runtime.schemas import ChatCompletionRequest
from tests.support.fleet import Fleet
from tests.support.llm_standin import LLMStandIn
from tests.support.served_gateway import CONFIG, STANDIN_KEY, served_gateway

MAX_BODY_BYTES = 4096


@pytest.fixture
def llm() -> Iterator[LLMStandIn]:
    with LLMStandIn(api_key=STANDIN_KEY) as standin:
        yield standin


@pytest.fixture
def client(llm: LLMStandIn, cli: Any, tmp_path: Path) -> Iterator[TestClient]:
    """The app over the served configuration (a ``per_user`` rule, also per model), with
    ``max_body_bytes`` 4096; the client sends a gateway key."""
    config = tmp_path / "revoctl.toml"
    config.write_text(
        CONFIG.format(openai=llm.openai_base_url, anthropic=llm.url, max_body_bytes=MAX_BODY_BYTES)
    )
    assert (
        cli("--config", str(config), "secrets", "set", "llm-key", input=STANDIN_KEY).exit_code == 0
    )
    created = cli("--config", str(config), "keys", "create", "team-a", "-o", "json")
    key = json.loads(created.stdout)["key"]
    with TestClient(create_app(load_config(config))) as test_client:
        test_client.headers["authorization"] = f"Bearer {key}"
        yield test_client


def chat(client: TestClient, raw: bytes | str | None = None, **body: Any) -> Any:
    """POST /v1/chat/completions with ``raw`` as the body, else gpt, one message and ``body``."""
    if raw is None:
        raw = json.dumps({"model": "gpt", "messages": [{"role": "user", "content": "hi"}], **body})
    return client.post(
        "/v1/chat/completions", content=raw, headers={"content-type": "application/json"}
    )


def refusal(response: Any, status: int) -> dict[str, Any]:
    """The error object of a refusal with ``status``, checked to be OpenAI's JSON shape."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert set(error) == {"message", "type", "code"}
    return dict(error)


def test_deeply_nested_json_is_a_400_not_a_recursion_error(client: TestClient) -> None:
    error = refusal(chat(client, "[" * 2000 + "]" * 2000), 400)
    assert "not valid JSON" in error["message"] and "recursion limit" in error["message"]
    nested = {"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}
    deep: Any = "x"
    for _ in range(500):
        deep = {"k": deep}
    nested["metadata"] = deep
    refusal(chat(client, json.dumps(nested)), 400)


def test_a_lone_surrogate_is_a_400_naming_where_it_is(client: TestClient) -> None:
    raw = '{"model": "gpt", "messages": [{"role": "user", "content": "a \\ud800 b"}]}'
    error = refusal(chat(client, raw), 400)
    assert "'messages.0.content'" in error["message"] and "surrogate" in error["message"]
    paired = '{"model": "gpt", "messages": [{"role": "user", "content": "\\ud83d\\ude00"}]}'
    assert chat(client, paired).status_code == 200  # a pair is an emoji, and fine


def test_stream_options_not_an_object_is_a_400_before_the_stream(
    client: TestClient, llm: LLMStandIn
) -> None:
    before = len(llm.requests)
    error = refusal(chat(client, stream=True, stream_options="x"), 400)
    assert "'stream_options'" in error["message"]
    assert len(llm.requests) == before
    with client.stream(
        "POST",
        "/v1/chat/completions",
        json={"model": "gpt", "messages": [{"role": "user", "content": "hi"}], "stream": True,
              "stream_options": {"include_usage": True}},
    ) as streamed:  # fmt: skip
        lines = [line for line in streamed.iter_lines() if line]
    assert lines[-1] == "data: [DONE]" and '"usage"' in lines[-2]


def test_a_user_whose_bucket_is_too_long_with_its_model_is_served_not_a_500(
    client: TestClient,
) -> None:
    """The model's own per_user rule keys on ``KEYNAME:USER:MODEL``: 259 characters for the
    longest user the key's pair allows (248 with ``team-a``), past the limiter's key length;
    the bucket's key is fitted, not refused with a 500."""
    longest = "u" * (255 - len("team-a:"))
    assert chat(client, user=longest).status_code == 200
    again = chat(client, user=longest)
    assert again.headers["x-ratelimit-remaining-model-requests"] == "999998"  # the same bucket
    other = chat(client, user=longest[:-1] + "v")
    assert other.headers["x-ratelimit-remaining-model-requests"] == "999999"  # another one
    for too_long in (longest + "u", "u" * 256):  # the key's pair, the field itself
        error = refusal(chat(client, user=too_long), 400)
        assert "'user'" in error["message"] and error["code"] == "user_too_long"


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"messages": [{"role": "user", "content": 5}]}, "messages.0.content"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "messages.0.role"),
        (
            {"messages": [{"role": "user", "content": [{"text": "hi"}]}]},
            "messages.0.content.0.type",
        ),
        ({"messages": []}, "messages"),
        ({"max_tokens": "5"}, "max_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_completion_tokens": True}, "max_completion_tokens"),
        ({"stream": "yes"}, "stream"),
        ({"temperature": 3}, "temperature"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"tools": [{"type": "function", "function": {}}]}, "tools.0.function.name"),
        ({"user": 7}, "user"),
        ({"model": ""}, "model"),
    ],
)
def test_every_invalid_field_is_a_400_naming_its_path(
    client: TestClient, body: dict[str, Any], path: str
) -> None:
    error = refusal(chat(client, **body), 400)
    assert f"invalid {path!r}" in error["message"], error["message"]
    assert error["type"] == "invalid_request_error"


def test_a_body_that_is_not_an_object_or_has_no_model_is_a_400(client: TestClient) -> None:
    assert refusal(chat(client, "[1, 2]"), 400)["message"] == "the body must be a JSON object"
    error = refusal(chat(client, json.dumps({"messages": [{"role": "user", "content": "x"}]})), 400)
    assert "'model'" in error["message"] and error["code"] == "missing_model"
    assert refusal(chat(client, "{not json"), 400)["code"] == "invalid_json"
    assert refusal(chat(client, '{"model": NaN}'), 400)["code"] == "invalid_json"
    assert refusal(chat(client, model="nosuch"), 404)["code"] == "model_not_found"


def test_unknown_fields_go_to_the_provider_as_they_came(
    client: TestClient, llm: LLMStandIn
) -> None:
    extra = {
        "x_vendor": {"nested": [1, "two"]},
        "logit_bias": {"50256": -100},
        "stop": "a long stop",
    }
    content = [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]
    messages = [{"role": "user", "content": content}]
    assert chat(client, messages=messages, **extra).status_code == 200
    sent = llm.requests[-1].body
    assert sent["x_vendor"] == extra["x_vendor"] and sent["logit_bias"] == extra["logit_bias"]
    assert sent["stop"] == "a long stop"  # one stop sequence as text: any length
    assert sent["messages"] == messages


def test_generate_is_checked_by_its_own_shape(client: TestClient) -> None:
    both = {"model": "gpt", "prompt": "x", "messages": [{"role": "user", "content": "y"}]}
    error = refusal(client.post("/generate", json=both), 400)
    assert error["message"] == "give exactly one of 'prompt' and 'messages'"
    error = refusal(client.post("/generate", json={"model": "gpt", "prompt": ""}), 400)
    assert "'prompt'" in error["message"]
    error = refusal(
        client.post("/generate", json={"model": "gpt", "prompt": "x", "max_tokens": -1}), 400
    )
    assert "'max_tokens'" in error["message"]


def test_a_body_over_max_body_bytes_is_a_413_declared_or_chunked(client: TestClient) -> None:
    padding = "x" * MAX_BODY_BYTES
    error = refusal(chat(client, messages=[{"role": "user", "content": padding}]), 413)
    assert str(MAX_BODY_BYTES) in error["message"] and error["code"] == "body_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: the body is cut off at the bound
        yield b'{"model": "gpt", "messages": [{"role": "user", "content": "'
        for _ in range(10):
            yield b"y" * 1000
        yield b'"}]}'

    chunked = client.post(
        "/v1/chat/completions", content=chunks(), headers={"content-type": "application/json"}
    )
    refusal(chunked, 413)


def test_unknown_paths_and_wrong_methods_answer_in_the_error_shape(client: TestClient) -> None:
    error = refusal(client.get("/v2/nothing"), 404)
    assert error["code"] == "not_found" and "/v2/nothing" in error["message"]
    wrong = client.get("/v1/chat/completions")
    assert refusal(wrong, 405)["code"] == "method_not_allowed"
    assert wrong.headers["allow"] == "POST"
    refusal(client.delete("/health"), 405)
    refusal(client.post("/metrics"), 405)


def test_an_unexpected_error_is_a_500_in_the_same_shape(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(messages: Any) -> int:
        raise RuntimeError("a bug")

    monkeypatch.setattr("revoctl.runtime.charging.prompt_token_bound", broken)
    monkeypatch.setattr(client._transport, "raise_server_exceptions", False)
    response = chat(client)
    error = refusal(response, 500)
    assert error["type"] == "server_error" and error["code"] == "internal_error"


def test_a_lone_surrogate_from_a_caller_in_process_is_counted_not_an_error() -> None:
    from revoctl.runtime.tokens import prompt_token_bound

    assert prompt_token_bound([{"role": "user", "content": "\ud800"}]) == 8 + 8 + 4 + 3


def test_the_request_models_are_those_the_document_shows(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    shown = document["components"]["schemas"]["ChatCompletionRequest"]
    assert shown["properties"]["model"]["enum"] == ["gpt", "sonnet"]
    del shown["properties"]["model"]["enum"]
    assert [example["model"] for example in shown.pop("examples")] == ["gpt", "gpt"]
    own = ChatCompletionRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    own.pop("$defs")
    assert shown == own


# ------------------------------------------------------------------ over a real socket


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Fleet, str]]:
    with (
        LLMStandIn(api_key=STANDIN_KEY) as llm,
        served_gateway(tmp_path_factory.mktemp("served"), llm, max_body_bytes=MAX_BODY_BYTES) as it,
    ):
        yield it


def raw_request(fleet: Fleet, head: str, body: bytes = b"", *, read: bool = True) -> bytes:
    """Send ``head`` and ``body`` on a new connection; what came back within 5 s."""
    with socket.create_connection(("127.0.0.1", fleet.port), timeout=5) as conn:
        conn.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        if not read:
            return b""
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            part = conn.recv(65536)
            if not part:
                break
            answer += part
        return answer


def test_a_declared_content_length_over_the_bound_is_413_before_reading(
    served: tuple[Fleet, str],
) -> None:
    fleet, key = served
    started = time.monotonic()
    answer = raw_request(
        fleet,
        "POST /v1/chat/completions HTTP/1.1\nHost: gw\nContent-Type: application/json\n"
        f"Authorization: Bearer {key}\nContent-Length: 10000000000\n",
    )  # no byte of the 10 GB is sent: the answer cannot wait for them
    assert time.monotonic() - started < 2
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), head
    assert json.loads(body)["error"]["code"] == "body_too_large"


def test_a_client_leaving_mid_upload_is_no_500_and_no_traceback(
    served: tuple[Fleet, str],
) -> None:
    fleet, key = served
    raw_request(
        fleet,
        "POST /v1/chat/completions HTTP/1.1\nHost: gw\nContent-Type: application/json\n"
        f"Authorization: Bearer {key}\nContent-Length: 2000\n",
        b'{"model": "gpt", "mess',
        read=False,
    )  # closed with 1978 bytes still owed
    deadline = time.monotonic() + 5
    while '"status": 499' not in fleet.output() and time.monotonic() < deadline:
        time.sleep(0.05)
    log = fleet.output()
    assert '"status": 499' in log, log[-2000:]
    assert "Exception in ASGI application" not in log and "Traceback" not in log
    assert '"status": 500' not in log
