"""``/openapi.json``: the gateway's OpenAPI 3.1 document, from the models that check requests.

Every route is described with the pydantic models of `revoctl.runtime.schemas`: the
request bodies the gateway validates with, the answers it relays (a chat completion, or
``text/event-stream`` when streamed), and the error object every refusal is. The document
is this gateway's own: ``model`` lists the configured models, the routes that need a
gateway key say so when ``gateway.auth = "keys"``, and the admin API is there when
``gateway.admin_key`` is set. It is built once per configuration.
"""

from __future__ import annotations

import functools
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from revoctl import __version__
from revoctl.runtime import schemas

REF = "#/components/schemas/{model}"
ERROR = {"$ref": "#/components/responses/Error"}
REQUEST_ID = {
    "description": "This request's id: the caller's when it sent a sane one, else a new one.",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,64}$"},
}
RATE_LIMIT_HEADERS = {
    "x-request-id": REQUEST_ID,
    "ratelimit-policy": {
        "description": "Each charged rule (draft-ietf-httpapi-ratelimit-headers), "
        '"requests";q=20;w=60',
        "schema": {"type": "string"},
    },
    "ratelimit": {
        "description": 'Each charged rule\'s state: "requests";r=19;t=3',
        "schema": {"type": "string"},
    },
    "x-revoctl-overhead-ms": {
        "description": "The gateway's own time, the wait for the provider left out",
        "schema": {"type": "string", "pattern": "^[0-9.]+$"},
    },
}
CACHE_HEADER = {
    "description": "[gateway.cache]: hit (answered from the cache, nothing charged) or miss "
    "(its answer was stored); absent when the request was not cacheable",
    "schema": {"type": "string", "enum": ["hit", "miss"]},
}
STREAM_EVENT = {
    "type": "object",
    "description": "One server-sent event: its data is a ChatCompletionChunk as JSON; the last "
    "event's data is [DONE], or an ErrorResponse when the stream breaks after it began.",
    "required": ["data"],
    "properties": {
        "data": {
            "anyOf": [
                {"const": "[DONE]"},
                {
                    "type": "string",
                    "contentMediaType": "application/json",
                    "contentSchema": {
                        "anyOf": [
                            {"$ref": REF.format(model="ChatCompletionChunk")},
                            {"$ref": REF.format(model="ErrorResponse")},
                        ]
                    },
                },
            ]
        },
        "event": {"type": "string"},
    },
}

_COMPONENTS: list[type[BaseModel]] = [
    schemas.ChatCompletionRequest,
    schemas.GenerateRequest,
    schemas.EmbeddingRequest,
    schemas.ChatCompletion,
    schemas.EmbeddingList,
    schemas.ChatCompletionChunk,
    schemas.ModelList,
    schemas.Generated,
    schemas.HealthReport,
    schemas.Liveness,
    schemas.Readiness,
    schemas.ErrorResponse,
]


@functools.cache
def openapi_document(
    models: tuple[str, ...], keys_required: bool, admin: bool = False
) -> dict[str, Any]:
    """The document for a gateway serving ``models``, with or without gateway keys, with or
    without the admin API (`revoctl.runtime.openapi_admin`)."""
    _, defs = models_json_schema([(m, "validation") for m in _COMPONENTS], ref_template=REF)
    components: dict[str, Any] = defs["$defs"]
    if models:
        for request in ("ChatCompletionRequest", "GenerateRequest", "EmbeddingRequest"):
            components[request]["properties"]["model"]["enum"] = list(models)
        hello = [{"role": "user", "content": "Say hello"}]
        components["ChatCompletionRequest"]["examples"] = [
            {"model": models[0], "messages": hello, "max_tokens": 16},
            {"model": models[0], "messages": hello, "stream": True,
             "stream_options": {"include_usage": True}},
        ]  # fmt: skip
        components["EmbeddingRequest"]["examples"] = [
            {"model": models[0], "input": "Say hello"},
            {"model": models[0], "input": ["Say hello", "Say goodbye"], "encoding_format": "float"},
        ]
        components["GenerateRequest"]["examples"] = [
            {"model": models[0], "prompt": "Say hello", "max_tokens": 16}
        ]
    keyed: dict[str, Any] = {"security": [{"gatewayKey": []}]} if keys_required else {}
    refusals = ("400", "401", "403", "404", "413", "429", "502", "503", "504")
    ask = {status: ERROR for status in refusals if keys_required or status != "401"}
    chat_answer = {
        "description": "The answer; a stream of server-sent events when ``stream`` is true.",
        "headers": {**RATE_LIMIT_HEADERS, "x-revoctl-cache": CACHE_HEADER},
        "content": {
            "application/json": {"schema": _ref("ChatCompletion")},
            "text/event-stream": {"schema": STREAM_EVENT},
        },
    }
    paths = {
        "/v1/chat/completions": {
            "post": {
                "summary": "A chat completion, whole or streamed, from the model or a fallback",
                "operationId": "chat_completions",
                "requestBody": _body("ChatCompletionRequest"),
                "responses": {"200": chat_answer, **ask},
                **keyed,
            }
        },
        "/v1/embeddings": {
            "post": {
                "summary": "Embeddings of texts or token arrays, from the model or a fallback",
                "operationId": "embeddings",
                "requestBody": _body("EmbeddingRequest"),
                "responses": {
                    "200": {
                        **_json("One embedding per input, in order", "EmbeddingList"),
                        "headers": RATE_LIMIT_HEADERS,
                    },
                    **ask,
                },
                **keyed,
            }
        },
        "/generate": {
            "post": {
                "summary": "One answer to a prompt or messages, as text (never streamed)",
                "operationId": "generate",
                "requestBody": _body("GenerateRequest"),
                "responses": {
                    "200": {**_json("The answer", "Generated"), "headers": RATE_LIMIT_HEADERS},
                    **ask,
                },
                **keyed,
            }
        },
        "/v1/models": {
            "get": {
                "summary": "The configured models the caller's tier allows",
                "operationId": "list_models",
                "responses": {
                    "200": _json("Every model the caller may call", "ModelList"),
                    **({"401": ERROR, "403": ERROR} if keys_required else {}),
                },
                **keyed,
            }
        },
        "/health": _probe("Every service's check, as `revoctl health -o json`", "HealthReport"),
        "/health/live": {
            "get": {
                "summary": "The process answers",
                "operationId": "live",
                "responses": {"200": _json("Alive", "Liveness")},
            }
        },
        "/health/ready": _probe("Whether this instance should get traffic", "Readiness"),
        "/metrics": {
            "get": {
                "summary": "Prometheus text for the whole instance",
                "operationId": "metrics",
                "responses": {
                    "200": {
                        "description": "Exposition text; every name starts with revoctl_",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "operationId": "openapi",
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.1",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
    }
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "revoctl gateway", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": components,
            "responses": {
                "Error": {
                    "description": "A refusal: OpenAI's error object",
                    "headers": {
                        "x-request-id": REQUEST_ID,
                        "retry-after": {
                            "description": "Seconds until the same request may be allowed",
                            "schema": {"type": "string", "pattern": "^[0-9]+$"},
                        },
                    },
                    "content": {"application/json": {"schema": _ref("ErrorResponse")}},
                }
            },
        },
    }
    if keys_required:
        document["components"]["securitySchemes"] = {
            "gatewayKey": {"type": "http", "scheme": "bearer", "description": "revoctl keys create"}
        }
    from revoctl.runtime import openapi_status

    paths.update(openapi_status.status_paths())
    document["components"].setdefault("securitySchemes", {}).update(openapi_status.SECURITY)
    if admin:
        from revoctl.runtime.openapi_admin import SECURITY, admin_components, admin_paths

        paths.update(admin_paths())
        components.update(admin_components())
        document["components"].setdefault("securitySchemes", {}).update(SECURITY)
    return document


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def _body(name: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": _ref(name)}}}


def _json(description: str, name: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(name)}}}


def _probe(summary: str, name: str) -> dict[str, Any]:
    """A probe that answers 200, or 503 with the same document when the verdict is no."""
    operation = name[0].lower() + name[1:]
    return {
        "get": {
            "summary": summary,
            "operationId": operation,
            "responses": {"200": _json("Yes", name), "503": _json("No", name)},
        }
    }
