"""Request bodies: read within a bound, parsed, and checked before anything is charged.

`read_json` refuses a body over `MAX_BODY_BYTES` (413) or not JSON (400);
`checked_chat` refuses a chat request that is malformed (400) or names a model that is
not configured (404), and fills in ``max_tokens``, the bound the request is charged at.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from revoctl.runtime.errors import GatewayError
from revoctl.runtime.usage import MAX_USER_LENGTH

if TYPE_CHECKING:
    from starlette.requests import Request

    from revoctl.runtime.providers import ChatRequest

MAX_BODY_BYTES = 4 * 1024 * 1024
MAX_BODY_TOKENS = 1_000_000


async def read_json(request: Request) -> Any:
    """The body as JSON, bounded in size.

    :raises GatewayError: 413 when it is too large, 400 when it is not JSON.
    """
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > MAX_BODY_BYTES:
            raise GatewayError(413, f"the body is limited to {MAX_BODY_BYTES} bytes")
    try:
        return json.loads(body)
    except ValueError:
        raise GatewayError(400, "the body is not valid JSON") from None


def user_named(body: Any) -> str | None:
    """The ``user`` a body names, if it names one as text."""
    user = body.get("user") if isinstance(body, dict) else None
    return user if isinstance(user, str) else None


def model_named(body: Any) -> str | None:
    """The ``model`` a body names, if it names one as non-empty text (configured or not)."""
    model = body.get("model") if isinstance(body, dict) else None
    return model if isinstance(model, str) and model else None


def checked_chat(body: Any, models: Mapping[str, object], default_max_tokens: int) -> ChatRequest:
    """``body`` as a chat request for one of ``models``, its ``max_tokens`` filled in.

    :raises GatewayError: 400 for a malformed body (or a ``user`` too long to be stored),
        404 for an unknown model.
    """
    if not isinstance(body, dict):
        raise GatewayError(400, "the body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise GatewayError(400, "'model' is required", code="missing_model")
    if model not in models:
        raise GatewayError(404, f"the model {model!r} does not exist", code="model_not_found")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise GatewayError(400, "'messages' must be a non-empty list")
    if not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages):
        raise GatewayError(400, "each message must be an object with a 'role'")
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None and (
        isinstance(max_tokens, bool)
        or not isinstance(max_tokens, int)
        or not 0 < max_tokens <= MAX_BODY_TOKENS
    ):
        raise GatewayError(400, f"'max_tokens' must be a whole number from 1 to {MAX_BODY_TOKENS}")
    if not isinstance(body.get("stream", False), bool):
        raise GatewayError(400, "'stream' must be true or false")
    user = body.get("user")
    if isinstance(user, str) and len(user) > MAX_USER_LENGTH:
        raise GatewayError(
            400, f"'user' is limited to {MAX_USER_LENGTH} characters", code="user_too_long"
        )
    request = dict(body)
    request["max_tokens"] = max_tokens or default_max_tokens
    request.pop("max_completion_tokens", None)
    return request
