"""Tool calls on an Anthropic model through ``revoctl serve`` and the official ``openai``
client's tools API, over real HTTP in front of the LLM stand-in: the tools offered, the
model's call (as ``tool_calls``), the tool's result sent back, the model's final text;
whole and streamed (the deltas accumulated as clients do), and the caller's malformed call
refused before any provider sees it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.support.fleet import Fleet
from tests.support.llm_standin import LLMStandIn, reply_text, tool_input
from tests.support.served_providers import STANDIN_KEY, served_providers

pytestmark = pytest.mark.slow  # a served gateway for the module: some seconds to start

WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"],
        },
    },
}
CLOCK: Any = {"type": "function", "function": {"name": "get_time", "parameters": {}}}
ASK: Any = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def llm() -> Iterator[LLMStandIn]:
    with LLMStandIn(api_key=STANDIN_KEY, reply_tokens=5) as standin:
        yield standin


@pytest.fixture(scope="module")
def served(
    llm: LLMStandIn, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Fleet, str]]:
    with served_providers(tmp_path_factory.mktemp("tools"), llm) as fleet_and_key:
        yield fleet_and_key


@pytest.fixture
def client(served: tuple[Fleet, str], llm: LLMStandIn) -> Iterator[openai.OpenAI]:
    llm.reset()
    fleet, key = served
    with openai.OpenAI(base_url=f"{fleet.url}/v1", api_key=key, max_retries=0) as client:
        yield client


def test_a_tool_call_round_trip(client: openai.OpenAI, llm: LLMStandIn) -> None:
    first = client.chat.completions.create(model="sonnet", messages=ASK, tools=[WEATHER, CLOCK])
    [choice] = first.choices
    assert choice.finish_reason == "tool_calls" and first.model == "sonnet"
    [call] = choice.message.tool_calls or []
    assert call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "lorem", "days": 1}
    assert call.id.startswith("toolu_")
    conversation = [
        *ASK,
        choice.message.model_dump(exclude_none=True),  # as clients send the call back
        {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"},
    ]
    final = client.chat.completions.create(
        model="sonnet", messages=conversation, tools=[WEATHER, CLOCK]
    )
    assert final.choices[0].finish_reason == "stop"
    assert final.choices[0].message.content == reply_text(5)
    assert not final.choices[0].message.tool_calls
    offered, answered = llm.requests
    assert offered.body["tools"][0] == {
        "name": "get_weather",
        "description": "The weather in a city",
        "input_schema": WEATHER["function"]["parameters"],
    }
    assert answered.body["messages"][1:] == [
        {"role": "assistant", "content": [
            {"type": "text", "text": "Calling get_weather."},
            {"type": "tool_use", "id": call.id, "name": "get_weather",
             "input": {"city": "lorem", "days": 1}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": call.id, "content": "sunny, 21 C"}]},
    ]  # fmt: skip
    assert first.usage is not None and first.usage.completion_tokens > 0


def test_a_streamed_tool_call_accumulates_as_clients_do(
    client: openai.OpenAI, llm: LLMStandIn
) -> None:
    stream = client.chat.completions.create(
        model="sonnet",
        messages=ASK,
        tools=[WEATHER, CLOCK],
        tool_choice={"type": "function", "function": {"name": "get_time"}},
        parallel_tool_calls=False,
        stream=True,
        stream_options={"include_usage": True},
    )
    calls: dict[int, dict[str, str]] = {}
    text, finish, usage = "", None, None
    for chunk in stream:
        usage = chunk.usage or usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
            for delta in choice.delta.tool_calls or []:
                call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
                call["id"] += delta.id or ""
                if delta.function is not None:
                    call["name"] += delta.function.name or ""
                    call["arguments"] += delta.function.arguments or ""
    assert list(calls) == [0] and finish == "tool_calls" and text == "Calling get_time."
    assert calls[0]["name"] == "get_time" and calls[0]["id"].startswith("toolu_")
    assert json.loads(calls[0]["arguments"]) == tool_input({}) == {}
    assert usage is not None and usage.prompt_tokens == 6
    [seen] = llm.requests
    assert seen.stream
    assert seen.body["tool_choice"] == {
        "type": "tool",
        "name": "get_time",
        "disable_parallel_tool_use": True,
    }
    conversation = [
        *ASK,
        {"role": "assistant", "content": text, "tool_calls": [
            {"id": calls[0]["id"], "type": "function",
             "function": {"name": "get_time", "arguments": calls[0]["arguments"]}}]},
        {"role": "tool", "tool_call_id": calls[0]["id"], "content": "noon"},
    ]  # fmt: skip
    final = client.chat.completions.create(model="sonnet", messages=conversation, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in final if c.choices) == reply_text(5)


def test_a_call_whose_arguments_are_not_json_is_the_callers_400(
    client: openai.OpenAI, llm: LLMStandIn
) -> None:
    conversation: Any = [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "toolu_1", "type": "function",
             "function": {"name": "get_weather", "arguments": "{city: Paris"}}]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
    ]  # fmt: skip
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="sonnet", messages=conversation, tools=[WEATHER])
    assert "arguments must be a JSON object" in str(refused.value)
    assert refused.value.status_code == 400
    assert llm.requests == []
