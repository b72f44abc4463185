"""Request bodies: read within a bound, parsed, and checked before anything is charged.

`read_json` refuses a body over ``[gateway] max_body_bytes`` (413: at once when its
``Content-Length`` says so, else as soon as what arrived passes the bound) or that is not
JSON (400: malformed, nested more than 200 deep, or holding a lone surrogate, which no
UTF-8 text can carry). `checked` validates it against one of the request models of
`revoctl.runtime.schemas` (400, naming the field's path, e.g. ``messages.0.content``);
`checked_chat` then refuses a model that is not configured (404) and fills in
``max_tokens``, the bound the request is charged at; `checked_embedding` does the same for
an embeddings request (which has no ``max_tokens``). The body that goes on is the one that
came, unknown fields included.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import pydantic_core
from pydantic import BaseModel, ValidationError

from revoctl.runtime.errors import GatewayError
from revoctl.runtime.schemas import ChatCompletionRequest, EmbeddingRequest

if TYPE_CHECKING:
    from starlette.requests import Request

    from revoctl.runtime.providers import ChatRequest

Shape = TypeVar("Shape", bound=BaseModel)

_CODES = {("user", "string_too_long"): "user_too_long", ("model", "missing"): "missing_model"}
"""The ``code`` of a few refusals clients look for; any other invalid field is ``invalid_value``."""


async def read_json(request: Request, max_bytes: int) -> Any:
    """The body as JSON, at most ``max_bytes`` long.

    :raises GatewayError: 413 when it is too large (before reading it when its declared
        length says so), 400 when it is not JSON.
    :raises ClientDisconnect: the client left before its body arrived.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > max_bytes:
            raise _too_large(max_bytes)
    try:
        return pydantic_core.from_json(body, allow_inf_nan=False)
    except ValueError as exc:
        raise GatewayError(400, _not_json(body, exc), code="invalid_json") from None


def checked(shape: type[Shape], body: Any) -> Shape:
    """``body`` validated as ``shape``.

    :raises GatewayError: 400 naming the first invalid field's path.
    """
    try:
        return shape.model_validate(body)
    except ValidationError as exc:
        errors = [(_path(body, e["loc"], e["type"]), e) for e in exc.errors(include_url=False)]
        path, error = max(errors, key=lambda found: len(found[0]))  # the most precise
        dotted = ".".join(path)
        reason = error["msg"].removeprefix("Value error, ")
        message = f"invalid {dotted!r}: {reason}" if dotted else reason
        code = _CODES.get((dotted, error["type"]), "invalid_value")
        if not isinstance(body, dict):
            message = "the body must be a JSON object"
        raise GatewayError(400, message, code=code) from None


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

    :raises GatewayError: 400 for a malformed body (``user_too_long`` for a ``user`` too
        long to be stored), 404 for an unknown model.
    """
    chat = checked(ChatCompletionRequest, body)
    if chat.model not in models:
        raise GatewayError(404, f"the model {chat.model!r} does not exist", code="model_not_found")
    request = dict(body)
    request["max_tokens"] = chat.max_tokens_asked() or default_max_tokens
    request.pop("max_completion_tokens", None)
    return request


def checked_embedding(body: Any, models: Mapping[str, object]) -> dict[str, Any]:
    """``body`` as an embeddings request for one of ``models``.

    :raises GatewayError: 400 for a malformed body, 404 for an unknown model.
    """
    asked = checked(EmbeddingRequest, body)
    if asked.model not in models:
        raise GatewayError(404, f"the model {asked.model!r} does not exist", code="model_not_found")
    return dict(body)


def _path(body: Any, loc: tuple[int | str, ...], kind: str) -> tuple[str, ...]:
    """``loc`` as a path in ``body``: without the names pydantic gives a union's members
    (``str``, ``list[ContentPart]``), which are no field of the body."""
    path: list[str] = []
    value = body
    for position, part in enumerate(loc):
        steps_in = isinstance(value, dict) and part in value
        steps_in |= isinstance(value, list) and isinstance(part, int) and part < len(value)
        if steps_in:
            value = value[part]
        elif not (kind == "missing" and position == len(loc) - 1):
            continue  # a union member's name, not a step into the body
        path.append(str(part))
    return tuple(path)


def _too_large(max_bytes: int) -> GatewayError:
    return GatewayError(
        413, f"the body is limited to {max_bytes} bytes ([gateway] max_body_bytes)",
        code="body_too_large",
    )  # fmt: skip


def _not_json(body: bytes | bytearray, exc: ValueError) -> str:
    """Why ``body`` is refused: where a lone surrogate sits, else the parser's reason."""
    try:
        parsed = json.loads(body)  # more lenient: it takes what the strict parser refused
    except (ValueError, RecursionError):
        return f"the body is not valid JSON: {exc}"
    path = _lone_surrogate_path(parsed)
    if path is not None:
        return f"invalid {path!r}: a lone surrogate (\\ud800-\\udfff) is not Unicode text"
    return f"the body is not valid JSON: {exc}"


def _lone_surrogate_path(document: Any) -> str | None:
    """The dotted path of the first text in ``document`` that UTF-8 cannot encode."""
    pending: list[tuple[tuple[str, ...], Any]] = [((), document)]
    while pending:
        path, value = pending.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return ".".join(path) or "(the body)"
        elif isinstance(value, dict):
            for key, item in value.items():
                pending += [((*path, key), key), ((*path, key), item)]
        elif isinstance(value, list):
            pending += [((*path, str(index)), item) for index, item in enumerate(value)]
    return None
