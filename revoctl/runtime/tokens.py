"""What a request may cost in tokens, known before the call: an upper bound, never a guess.

The gateway charges a caller's token rule *before* calling the provider, with the
prompt's estimate plus the request's ``max_tokens``, and refunds what the provider's
usage shows was not used. For the limit to hold exactly, the estimate must never be
below the real count: a refund can give back, but a charge after the call could only
overshoot. Byte-level BPE tokenizers (OpenAI's, Anthropic's, DeepSeek's) never make a
token of less than one byte, so the UTF-8 length of the text bounds its token count;
each message adds a few tokens of framing (role, separators), and the reply is primed
with a few more. A text no UTF-8 can carry (a lone surrogate, which a request body
cannot hold but a caller in process might) is counted at 3 bytes a code point, never an
error. Tools a request offers add their definitions and the framing a provider wraps them
in (`tools_token_bound`). An embeddings input is bounded the same way, without framing
(`input_token_bound`). The bound is loose for plain English (about 4 bytes a token), which
costs only headroom near the limit, and it is refunded within the same request.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

TOKENS_PER_MESSAGE = 8
"""Framing per message (role markers, separators, a name), more than any tokenizer uses."""
TOKENS_PER_REPLY = 8
"""Tokens that prime the assistant's reply."""
TOKENS_FOR_TOOLS = 1024
"""What a provider adds to a prompt that offers tools, besides their definitions: Anthropic's
tool-use system prompt is a few hundred tokens (346 for its Claude 4 models)."""


def prompt_token_bound(messages: Iterable[Mapping[str, Any]]) -> int:
    """The most tokens ``messages`` can count as on a byte-level BPE tokenizer."""
    total = TOKENS_PER_REPLY
    for message in messages:
        total += TOKENS_PER_MESSAGE
        for key in ("role", "name", "content", "tool_call_id"):
            total += _bytes(message.get(key))
        for call in message.get("tool_calls") or ():
            total += _bytes(call)
    return total


def tools_token_bound(tools: Any) -> int:
    """The most tokens offering ``tools`` can add to a prompt: their definitions as indented
    JSON (more bytes than any provider renders them in) and `TOKENS_FOR_TOOLS`; 0 for none."""
    if not tools:
        return 0
    text = json.dumps(tools, ensure_ascii=False, indent=2)
    return TOKENS_FOR_TOOLS + len(text.encode("utf-8", "surrogatepass"))


def input_token_bound(value: Any) -> int:
    """The most tokens an embeddings ``input`` can count as: a text's UTF-8 bytes (no
    framing: embeddings add none), a token array's length, summed over a list of either."""
    if isinstance(value, list | tuple):
        return sum(1 if isinstance(item, int) else input_token_bound(item) for item in value)
    return _bytes(value)


def _bytes(value: Any) -> int:
    """UTF-8 bytes of a text, or of every text inside a list of content parts."""
    if value is None:
        return 0
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass"))
    if isinstance(value, Mapping):
        return sum(_bytes(item) for item in value.values())
    if isinstance(value, list | tuple):
        return sum(_bytes(item) for item in value)
    return len(str(value).encode("utf-8", "surrogatepass"))
