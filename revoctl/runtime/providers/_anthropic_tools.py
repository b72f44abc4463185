"""Tool calls between OpenAI's chat format and Anthropic's messages API, both ways.

Requests: ``tools`` (``{"type": "function", "function": {name, description, parameters}}``)
become Anthropic's ``{name, description, input_schema}``; ``tool_choice`` ``"auto"``,
``"none"``, ``"required"`` (Anthropic's ``any``) or a named function (``tool``), with
``parallel_tool_calls: false`` as ``disable_parallel_tool_use``. An assistant message's
``tool_calls`` become ``tool_use`` blocks (``arguments``, a JSON text, as the ``input``
object: text that is no JSON object is the caller's 400), and ``role: "tool"`` messages
become ``tool_result`` blocks of one user turn (consecutive results share it, and a user
message right after them joins it: Anthropic wants the roles to alternate).

Answers: ``tool_use`` blocks become ``message.tool_calls`` (``arguments`` as JSON text);
in a stream, a ``tool_use`` block's start becomes a chunk naming the call
(``delta.tool_calls[{index, id, type, function: {name, arguments: ""}}]``) and each
``input_json_delta`` a piece of its ``arguments`` at the same ``index``.
"""

from __future__ import annotations

import json
from typing import Any

from revoctl.runtime.providers.base import ProviderRequestError

_CHOICES = {"auto": {"type": "auto"}, "none": {"type": "none"}, "required": {"type": "any"}}
"""OpenAI's ``tool_choice`` words as Anthropic's ``tool_choice``."""


def tool_fields(request: dict[str, Any]) -> dict[str, Any]:
    """The ``tools`` and ``tool_choice`` of the messages API body for ``request``.

    :raises ProviderRequestError: a tool or a choice this translation cannot give.
    """
    tools, choice = request.get("tools"), request.get("tool_choice")
    if not tools:
        if choice not in (None, "none"):
            raise refuse("tool_choice needs tools")
        return {}
    if not isinstance(tools, list):
        raise refuse("tools must be a list")
    body: dict[str, Any] = {"tools": [_tool(tool) for tool in tools]}
    translated = _choice(choice)
    if request.get("parallel_tool_calls") is False and translated.get("type") != "none":
        translated = {**(translated or {"type": "auto"}), "disable_parallel_tool_use": True}
    if translated:
        body["tool_choice"] = translated
    return body


def assistant_content(message: dict[str, Any], text: Any) -> list[dict[str, Any]]:
    """An assistant message with ``tool_calls`` as content blocks: its text (``text``, as
    the message's other content is translated: a string or text blocks), then a
    ``tool_use`` block per call.

    :raises ProviderRequestError: a call that is malformed or whose arguments are no JSON object.
    """
    blocks: list[dict[str, Any]]
    if isinstance(text, str):
        blocks = [{"type": "text", "text": text}] if text else []
    else:
        blocks = list(text)
    for position, call in enumerate(message["tool_calls"]):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise refuse(f"tool_calls[{position}] must have a function with a name")
        arguments = function.get("arguments") or "{}"
        try:
            given = json.loads(arguments) if isinstance(arguments, str) else None
        except ValueError:
            given = None
        if not isinstance(given, dict):
            raise refuse(f"tool_calls[{position}].function.arguments must be a JSON object")
        name, call_id = function["name"], str(call.get("id"))
        blocks.append({"type": "tool_use", "id": call_id, "name": name, "input": given})
    return blocks


def tool_result(message: dict[str, Any], content: Any) -> dict[str, Any]:
    """A ``role: "tool"`` message as a ``tool_result`` block; ``content`` is its content as
    translated (a string or text blocks).

    :raises ProviderRequestError: it names no ``tool_call_id``.
    """
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise refuse("a message with role 'tool' needs its tool_call_id")
    return {"type": "tool_result", "tool_use_id": call_id, "content": content}


def add_turn(turns: list[dict[str, Any]], role: str, content: Any) -> None:
    """Append a turn; tool results, and a user turn right after them, join the user turn of
    tool results before them (one user turn: the roles alternate)."""
    if isinstance(content, list):
        blocks = content
    else:
        blocks = [{"type": "text", "text": content}] if content else []
    previous = turns[-1] if turns else None
    follows_results = (
        previous is not None
        and previous["role"] == "user"
        and isinstance(previous["content"], list)
        and any(block.get("type") == "tool_result" for block in previous["content"])
    )
    joins = blocks and blocks[0].get("type") == "tool_result"
    if role == "user" and follows_results:
        previous["content"].extend(blocks)  # type: ignore[index]
    elif joins:
        turns.append({"role": "user", "content": blocks})
    else:
        turns.append({"role": role, "content": content})


def tool_calls_of(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """An answer's ``tool_use`` blocks as OpenAI's ``tool_calls``."""
    return [
        {
            "id": block.get("id"),
            "type": "function",
            "function": {
                "name": block.get("name"),
                "arguments": json.dumps(block.get("input") or {}, separators=(",", ":")),
            },
        }
        for block in blocks
        if block.get("type") == "tool_use"
    ]


class ToolCallStream:
    """A stream's ``tool_use`` blocks as ``delta.tool_calls``, numbered in order of arrival."""

    def __init__(self) -> None:
        self._index: dict[Any, int] = {}

    def started(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """The delta for a ``content_block_start`` event; None unless it starts a tool call."""
        block = event.get("content_block") or {}
        if block.get("type") != "tool_use":
            return None
        index = self._index[event.get("index")] = len(self._index)
        function = {"name": block.get("name"), "arguments": ""}
        call = {"index": index, "id": block.get("id"), "type": "function", "function": function}
        return {"tool_calls": [call]}

    def arguments(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """The delta for an ``input_json_delta``; None for a block it did not see start."""
        index = self._index.get(event.get("index"))
        if index is None:
            return None
        piece = (event.get("delta") or {}).get("partial_json", "")
        return {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}


def refuse(message: str) -> ProviderRequestError:
    """The caller's fault, 400."""
    return ProviderRequestError(message, status=400)


def _tool(tool: Any) -> dict[str, Any]:
    kind = tool.get("type", "function") if isinstance(tool, dict) else type(tool).__name__
    if kind != "function":
        raise refuse(f"tools of type {kind!r} are not supported for Anthropic models")
    function = tool.get("function")
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise refuse("tools must be {'type': 'function', 'function': {'name', ...}}")
    schema = function.get("parameters") or {"type": "object", "properties": {}}
    translated = {"name": function.get("name"), "input_schema": schema}
    if function.get("description"):
        translated["description"] = function["description"]
    return translated


def _choice(choice: Any) -> dict[str, Any]:
    if choice is None:
        return {}
    if isinstance(choice, str):
        if choice not in _CHOICES:
            raise refuse(f"tool_choice {choice!r} is not one of auto, none, required")
        return dict(_CHOICES[choice])
    function = choice.get("function") if isinstance(choice, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise refuse("tool_choice must name a function: {'type': 'function', 'function': {name}}")
    return {"type": "tool", "name": function["name"]}
