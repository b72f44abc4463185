"""``POST /v1/embeddings``: OpenAI's embeddings API through the gateway, charged like chat.

The same path as a chat completion, never streamed: read, identify, check
(`revoctl.runtime.schemas.EmbeddingRequest`), charge (its input's token bound, no output
tokens), route through the model's breakers and its fallbacks that have embeddings, answer
with the provider's body (``model`` the configured model that answered), settle to the
usage's ``prompt_tokens``.
A model served by a provider that has no embeddings (Anthropic) is refused with 400
``embeddings_not_supported`` before anything is charged.
"""

from __future__ import annotations

import time

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from revoctl.runtime.bodies import read_json
from revoctl.runtime.errors import GatewayError
from revoctl.runtime.gateway import Gateway
from revoctl.runtime.providers import WITHOUT_EMBEDDINGS, embedding_usage_of


async def embeddings(request: Request) -> Response:
    """The embeddings of ``input``, one per text or token array, from the model or a fallback.

    :raises GatewayError: 413/400 for the body, 401 without a valid key, 404 for an unknown
        model, 403 for a model the key's tier does not allow, 400 for a model without
        embeddings, 429 when a limit denies it, 4xx/5xx when no model answers.
    """
    started = time.perf_counter()
    gateway = Gateway.of(request)
    body = await read_json(request, gateway.config.max_body_bytes)
    caller = await gateway.identify(request, body)
    exchange = gateway.exchange(request, caller, body, started, embedding=True)
    _refuse_without_embeddings(gateway, exchange.model)
    await gateway.charge(exchange)
    answer = await gateway.routing.embed(exchange)
    settle = BackgroundTask(gateway.settle, exchange, embedding_usage_of(answer))
    return JSONResponse(answer, headers=exchange.headers(), background=settle)


def _refuse_without_embeddings(gateway: Gateway, model: str) -> None:
    """:raises GatewayError: 400 when a provider of ``model`` has no embeddings API."""
    providers = gateway.services.settings.providers
    for name in gateway.models[model].providers():
        if providers[name].kind in WITHOUT_EMBEDDINGS:
            raise GatewayError(
                400,
                f"the model {model!r} is served by {name!r}, a {providers[name].kind.value} "
                "provider, which has no embeddings",
                code="embeddings_not_supported",
            )
