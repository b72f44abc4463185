"""Tool calls translated between OpenAI's chat format and Anthropic's messages API: the
request's tools, choices and conversation, the answer's tool_use blocks, and a stream's."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from revoctl.runtime.providers.anthropic import StreamTranslation, from_anthropic, to_anthropic
from revoctl.runtime.providers.base import ProviderRequestError

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
TIME = {"type": "function", "function": {"name": "get_time"}}
ASK = [{"role": "user", "content": "weather and time in Paris?"}]


def translate(**request: Any) -> dict[str, Any]:
    return to_anthropic({"messages": ASK, **request}, "claude", default_max_tokens=32)


def test_tools_become_anthropics_with_their_input_schema() -> None:
    body = translate(tools=[WEATHER, TIME])
    assert body["tools"] == [
        {
            "name": "get_weather",
            "description": "The weather in a city",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
        {"name": "get_time", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert "tool_choice" not in body


@pytest.mark.parametrize(
    ("choice", "parallel", "translated"),
    [
        ("auto", None, {"type": "auto"}),
        ("none", None, {"type": "none"}),
        ("required", None, {"type": "any"}),
        ({"type": "function", "function": {"name": "get_time"}}, None,
         {"type": "tool", "name": "get_time"}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        ("none", False, {"type": "none"}),
        (None, True, None),
    ],
)  # fmt: skip
def test_tool_choice_and_parallel_calls(choice: Any, parallel: Any, translated: Any) -> None:
    request: dict[str, Any] = {"tools": [WEATHER, TIME]}
    if choice is not None:
        request["tool_choice"] = choice
    if parallel is not None:
        request["parallel_tool_calls"] = parallel
    assert translate(**request).get("tool_choice") == translated


def test_a_conversation_with_several_calls_and_their_results() -> None:
    messages = [
        *ASK,
        {
            "role": "assistant",
            "content": "Let me look.",
            "tool_calls": [
                {"id": "toolu_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
                {"id": "toolu_2", "type": "function",
                 "function": {"name": "get_time", "arguments": ""}},
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": [{"type": "text", "text": "noon"}]},
        {"role": "user", "content": "and tomorrow?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "toolu_3", "type": "function",
             "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "toolu_3", "content": "rain"},
    ]  # fmt: skip
    body = to_anthropic({"messages": messages, "tools": [WEATHER, TIME]}, "c", default_max_tokens=8)
    assert body["messages"] == [
        {"role": "user", "content": "weather and time in Paris?"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Let me look."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
             "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
            {"type": "tool_result", "tool_use_id": "toolu_2",
             "content": [{"type": "text", "text": "noon"}]},
            {"type": "text", "text": "and tomorrow?"},
        ]},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_3", "name": "get_weather", "input": {}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_3", "content": "rain"}]},
    ]  # fmt: skip
    roles = [turn["role"] for turn in body["messages"]]
    assert all(a != b for a, b in itertools.pairwise(roles))  # they alternate


def call(arguments: Any) -> dict[str, Any]:
    function = {"name": "get_weather", "arguments": arguments}
    return {"role": "assistant", "content": None, "tool_calls": [{"id": "t", "function": function}]}


@pytest.mark.parametrize(
    ("request_", "complaint"),
    [
        ({"messages": [call("{not json")]}, r"tool_calls\[0\].function.arguments"),
        ({"messages": [call("[1, 2]")]}, "must be a JSON object"),
        ({"messages": [call(None)], "tools": "x"}, "tools must be a list"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "tool_call_id"),
        ({"messages": ASK, "tool_choice": "required"}, "tool_choice needs tools"),
        ({"messages": ASK, "tools": [WEATHER], "tool_choice": "sometimes"}, "not one of"),
        ({"messages": ASK, "tools": [WEATHER], "tool_choice": {"type": "function"}},
         "must name a function"),
        ({"messages": ASK, "tools": [{"type": "code_interpreter"}]}, "'code_interpreter'"),
        ({"messages": ASK, "tools": [{"type": "function"}]}, "tools must be"),
    ],
)  # fmt: skip
def test_what_cannot_be_translated_is_the_callers_400(
    request_: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(ProviderRequestError, match=complaint) as refused:
        to_anthropic(request_, "c", default_max_tokens=8)
    assert refused.value.status == 400 and refused.value.caller_fault


def test_tool_use_blocks_become_tool_calls() -> None:
    message = {
        "id": "msg_1",
        "model": "claude",
        "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "P"}},
            {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}},
        ],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 5, "output_tokens": 7},
    }
    [choice] = from_anthropic(message)["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "toolu_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city":"P"}'}},
            {"id": "toolu_2", "type": "function",
             "function": {"name": "get_time", "arguments": "{}"}},
        ],
    }  # fmt: skip
    with_text = {**message, "content": [{"type": "text", "text": "Sure."}, *message["content"]]}
    assert from_anthropic(with_text)["choices"][0]["message"]["content"] == "Sure."


def test_a_streamed_tool_call_becomes_tool_call_deltas_at_its_index() -> None:
    events = [
        {"type": "message_start", "message": {"id": "m", "model": "c", "usage": {}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text"}},
        {"type": "content_block_delta", "index": 0,
         "delta": {"type": "text_delta", "text": "Sure."}},
        {"type": "content_block_start", "index": 1,
         "content_block": {"type": "tool_use", "id": "toolu_1", "name": "get_weather"}},
        {"type": "content_block_delta", "index": 1,
         "delta": {"type": "input_json_delta", "partial_json": '{"city": '}},
        {"type": "content_block_start", "index": 2,
         "content_block": {"type": "tool_use", "id": "toolu_2", "name": "get_time"}},
        {"type": "content_block_delta", "index": 1,
         "delta": {"type": "input_json_delta", "partial_json": '"Paris"}'}},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {}},
        {"type": "message_stop"},
    ]  # fmt: skip
    translation = StreamTranslation()
    deltas = [
        chunk["choices"][0]
        for event in events
        for chunk in translation.feed(event)
        if chunk["choices"]
    ]
    calls = [d["delta"]["tool_calls"][0] for d in deltas if "tool_calls" in d["delta"]]
    assert calls == [
        {"index": 0, "id": "toolu_1", "type": "function",
         "function": {"name": "get_weather", "arguments": ""}},
        {"index": 0, "function": {"arguments": '{"city": '}},
        {"index": 1, "id": "toolu_2", "type": "function",
         "function": {"name": "get_time", "arguments": ""}},
        {"index": 0, "function": {"arguments": '"Paris"}'}},
    ]  # fmt: skip
    arguments = "".join(c["function"]["arguments"] for c in calls if c["index"] == 0)
    assert json.loads(arguments) == {"city": "Paris"}
    assert deltas[-1]["finish_reason"] == "tool_calls"
    assert [d["delta"].get("content") for d in deltas if d["delta"].get("content")] == ["Sure."]
