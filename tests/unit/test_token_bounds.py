"""The token bounds a request is charged at before its call: an embeddings input's, and what
offering tools adds to a chat prompt's; each never below what a provider can count."""

from __future__ import annotations

import json

import pytest

from revoctl.runtime.providers._anthropic_tools import tool_fields
from revoctl.runtime.tokens import (
    TOKENS_FOR_TOOLS,
    input_token_bound,
    prompt_token_bound,
    tools_token_bound,
)

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Le temps qu'il fait à Paris",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


@pytest.mark.parametrize(
    ("given", "bound"),
    [
        ("héllo", 6),  # UTF-8 bytes: é is two
        (["a", "bc"], 3),
        ([1, 2, 3], 3),  # a token array: its length
        ([[1, 2], [3]], 3),
    ],
)
def test_an_embeddings_input_is_bounded_by_its_bytes_or_its_tokens(given: object, bound: int):
    assert input_token_bound(given) == bound


def test_tools_add_their_definitions_and_the_framing_around_them() -> None:
    assert tools_token_bound(None) == tools_token_bound([]) == 0
    bound = tools_token_bound([WEATHER])
    translated = json.dumps(tool_fields({"tools": [WEATHER]}), ensure_ascii=False)
    assert bound >= TOKENS_FOR_TOOLS + len(translated.encode())
    assert bound >= TOKENS_FOR_TOOLS + len(json.dumps(WEATHER, indent=2).encode())


def test_a_tool_result_counts_the_call_it_answers() -> None:
    result = {"role": "tool", "tool_call_id": "toolu_01234", "content": "sunny"}
    without_id = {"role": "tool", "content": "sunny"}
    assert prompt_token_bound([result]) - prompt_token_bound([without_id]) == len("toolu_01234")
