"""The providers' pure parts: Anthropic <-> OpenAI translation, error classes, Retry-After."""

from __future__ import annotations

import email.utils

import pytest

from revoctl.core.gateway.settings import ProviderConfig
from revoctl.runtime import providers
from revoctl.runtime.providers._http import error_for_status, parse_retry_after, upstream_message
from revoctl.runtime.providers.anthropic import (
    StreamTranslation,
    finish_reason,
    from_anthropic,
    to_anthropic,
)
from revoctl.runtime.providers.base import (
    ProviderRateLimitError,
    ProviderRequestError,
    ProviderUnavailableError,
    usage_of,
)


def test_the_package_exports_a_sorted_all() -> None:
    assert providers.__all__ == sorted(providers.__all__)
    assert all(getattr(providers, name) is not None for name in providers.__all__)


# ---------------------------------------------------------------------- requests


def test_system_and_developer_messages_become_system() -> None:
    body = to_anthropic(
        {
            "messages": [
                {"role": "system", "content": "rule one"},
                {"role": "user", "content": "hi"},
                {"role": "developer", "content": [{"type": "text", "text": "rule two"}]},
            ]
        },
        "claude",
        default_max_tokens=100,
    )
    assert body == {
        "model": "claude",
        "system": "rule one\n\nrule two",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 100,
    }


@pytest.mark.parametrize(
    ("given", "sent"),
    [
        ({}, 64),
        ({"max_tokens": 5}, 5),
        ({"max_completion_tokens": 6, "max_tokens": 5}, 6),
    ],
)
def test_max_tokens_is_always_sent(given: dict[str, int], sent: int) -> None:
    request = {"messages": [{"role": "user", "content": "x"}], **given}
    assert to_anthropic(request, "m", default_max_tokens=64)["max_tokens"] == sent


def test_sampling_stop_and_user_are_translated_and_tuning_knobs_dropped() -> None:
    request = {
        "model": "ours",
        "messages": [{"role": "user", "content": "x"}],
        "temperature": 0.0,
        "top_p": 0.9,
        "stop": ["a", "b"],
        "user": "alice",
        "n": 1,
        "seed": 3,
        "presence_penalty": 0.5,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    body = to_anthropic(request, "claude", default_max_tokens=10)
    assert body == {
        "model": "claude",
        "messages": [{"role": "user", "content": "x"}],
        "max_tokens": 10,
        "temperature": 0.0,
        "top_p": 0.9,
        "stop_sequences": ["a", "b"],
        "metadata": {"user_id": "alice"},
    }
    assert to_anthropic({**request, "stop": "z"}, "c", default_max_tokens=1)["stop_sequences"] == [
        "z"
    ]


@pytest.mark.parametrize(
    ("request_", "complaint"),
    [
        ({"messages": [], "tools": [{}]}, "tools"),
        ({"messages": [], "response_format": {"type": "json_object"}}, "response_format"),
        ({"messages": [], "n": 2}, "n must be 1"),
        ({"messages": "hi"}, "list of objects"),
        ({"messages": [{"role": "function", "content": "x", "name": "f"}]}, "role 'function'"),
        ({"messages": [{"role": "assistant", "content": None}]}, "string or a list"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
            "type 'image_url'",
        ),
    ],
)
def test_what_cannot_be_translated_is_the_callers_fault(
    request_: dict[str, object], complaint: str
) -> None:
    with pytest.raises(ProviderRequestError, match=complaint) as refused:
        to_anthropic(request_, "m", default_max_tokens=1)
    assert refused.value.status == 400 and refused.value.caller_fault


# ---------------------------------------------------------------------- answers


def test_a_message_becomes_a_chat_completion() -> None:
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude",
        "content": [
            {"type": "text", "text": "Hello"},
            {"type": "thinking", "thinking": "hidden"},
            {"type": "text", "text": ", world"},
        ],
        "stop_reason": "max_tokens",
        "usage": {
            "input_tokens": 10,
            "cache_read_input_tokens": 90,
            "cache_creation_input_tokens": 5,
            "output_tokens": 7,
        },
    }
    done = from_anthropic(message)
    assert done["id"] == "msg_1" and done["model"] == "claude"
    assert done["object"] == "chat.completion" and isinstance(done["created"], int)
    assert done["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello, world"},
            "logprobs": None,
            "finish_reason": "length",
        }
    ]
    # OpenAI counts cached prompt tokens inside prompt_tokens; Anthropic apart from input_tokens.
    assert done["usage"] == {"prompt_tokens": 105, "completion_tokens": 7, "total_tokens": 112}


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
        (None, None),
    ],
)
def test_finish_reasons(stop_reason: str | None, finish: str | None) -> None:
    assert finish_reason(stop_reason) == finish


def test_stream_events_become_chunks_with_usage_last() -> None:
    translation = StreamTranslation()
    events = [
        {
            "type": "message_start",
            "message": {
                "id": "msg_2",
                "model": "claude",
                "usage": {"input_tokens": 12, "cache_read_input_tokens": 3, "output_tokens": 1},
            },
        },
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "!"}},
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": 4},
        },
        {"type": "message_stop"},
    ]
    chunks = [chunk for event in events for chunk in translation.feed(event)]
    assert translation.done
    assert all(c["id"] == "msg_2" and c["model"] == "claude" for c in chunks)
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas == [{"role": "assistant", "content": ""}, {"content": "Hi"}, {"content": "!"}, {}]
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finishes == [None, None, None, "stop"]
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 15, "completion_tokens": 4, "total_tokens": 19}


def test_a_later_input_count_in_message_delta_wins() -> None:
    translation = StreamTranslation()
    translation.feed({"type": "message_start", "message": {"usage": {"input_tokens": 1}}})
    translation.feed(
        {"type": "message_delta", "delta": {}, "usage": {"input_tokens": 20, "output_tokens": 2}}
    )
    [last] = translation.feed({"type": "message_stop"})
    assert last["usage"] == {"prompt_tokens": 20, "completion_tokens": 2, "total_tokens": 22}


def test_usage_of_reads_openai_usage_or_nothing() -> None:
    assert usage_of({"usage": {"prompt_tokens": 2, "completion_tokens": 3}}) == {
        "prompt_tokens": 2,
        "completion_tokens": 3,
        "total_tokens": 5,
    }
    assert usage_of({"usage": None}) is None
    assert usage_of({"choices": []}) is None
    assert usage_of({"usage": {"prompt_tokens": "2", "completion_tokens": 3}}) is None


# ---------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, ProviderRequestError),
        (413, ProviderRequestError),
        (422, ProviderRequestError),
        (401, ProviderUnavailableError),
        (403, ProviderUnavailableError),
        (404, ProviderUnavailableError),
        (408, ProviderUnavailableError),
        (429, ProviderRateLimitError),
        (500, ProviderUnavailableError),
        (503, ProviderUnavailableError),
        (529, ProviderUnavailableError),
    ],
)
def test_each_status_has_its_class(status: int, cls: type[Exception]) -> None:
    error = error_for_status(status, "x", retry_after=1.0)
    assert type(error) is cls
    assert error.status == status
    assert error.retryable is (cls is not ProviderRequestError)
    assert error.caller_fault is (cls is ProviderRequestError)


def test_retry_after_forms() -> None:
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after": "0.25"}) == 0.25
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after({"retry-after": date}, now=now) == 30.0
    assert parse_retry_after({"retry-after": email.utils.formatdate(now - 5)}, now=now) == 0.0
    for unreadable in ("soon", "-1", "nan", "inf", ""):
        assert parse_retry_after({"retry-after": unreadable}) is None, unreadable
    assert parse_retry_after({"retry-after-ms": "bad", "retry-after": "2"}) == 2.0
    assert parse_retry_after({}) is None


def test_upstream_messages_are_read_from_either_shape() -> None:
    assert upstream_message(b'{"error": {"message": "bad  model\\n"}}') == "bad model"
    assert upstream_message(b'{"type": "error", "error": {"type": "x", "message": "no"}}') == "no"
    assert upstream_message(b'{"error": "plain"}') == "plain"
    assert upstream_message(b"<html>Bad Gateway</html>") == "<html>Bad Gateway</html>"
    assert upstream_message(b"x" * 1000).endswith("...")
    assert len(upstream_message(b"x" * 1000)) == 300


# ---------------------------------------------------------------------- settings


def test_an_anthropic_provider_defaults_to_anthropics_url() -> None:
    assert ProviderConfig(kind="anthropic").base_url == "https://api.anthropic.com"
    assert ProviderConfig().base_url == "https://api.openai.com/v1"
    assert ProviderConfig(kind="openai").base_url == "https://api.openai.com/v1"
    given = ProviderConfig(kind="anthropic", base_url="http://127.0.0.1:9/")
    assert given.base_url == "http://127.0.0.1:9"
