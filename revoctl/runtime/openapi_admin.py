"""The admin API's part of ``/openapi.json``: its paths, bodies, answers and security scheme.

Described only when ``[gateway] admin_key`` is set: without it the routes answer 404 as if
they did not exist, so the document does not show them. Request bodies are the models the
routes validate with (`revoctl.runtime.admin`); answers are the CLI's JSON documents.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from revoctl.core.keys import NAME_PATTERN
from revoctl.runtime.admin import BreakerTrip, KeyCreate, KeyRotate

REF = "#/components/schemas/{model}"
ERROR = {"$ref": "#/components/responses/Error"}
SECURITY = {"adminKey": {"type": "http", "scheme": "bearer", "description": "gateway.admin_key"}}
_TIME = {"type": ["string", "null"], "format": "date-time"}
_AMOUNT = {"type": ["number", "null"]}

ANSWERS: dict[str, Any] = {
    "AdminIssuedKey": {
        "type": "object",
        "description": "A new key: the only time its value is shown",
        "required": ["name", "key", "expires_at"],
        "properties": {"name": {"type": "string"}, "key": {"type": "string"}, "expires_at": _TIME},
    },
    "AdminKey": {
        "type": "object",
        "description": "A key as `revoctl keys list -o json` shows it, never its value",
        "required": ["name", "created_at", "expires_at", "revoked", "tier", "spend", "budget",
                     "budget_resets_at"],
        "properties": {
            "name": {"type": "string"}, "created_at": {"type": "string", "format": "date-time"},
            "expires_at": _TIME, "revoked": {"type": "boolean"},
            "tier": {"type": ["string", "null"]}, "spend": _AMOUNT, "budget": _AMOUNT,
            "budget_resets_at": _TIME,
        },
    },
    "AdminKeySpend": {
        "type": "object",
        "description": "A key's current budget period (null without a budget)",
        "required": ["name", "tier", "spend", "budget", "period_start", "resets_at"],
        "properties": {
            "name": {"type": "string"}, "tier": {"type": ["string", "null"]}, "spend": _AMOUNT,
            "budget": _AMOUNT, "period_start": _TIME, "resets_at": _TIME,
        },
    },
    "AdminRevokedKey": {
        "type": "object",
        "required": ["name", "revoked", "revoked_at"],
        "properties": {"name": {"type": "string"}, "revoked": {"const": True},
                       "revoked_at": {"type": "string", "format": "date-time"}},
    },
    "AdminBreaker": {
        "type": "object",
        "description": "A breaker's status, as `revoctl breakers status -o json` shows it",
        "required": ["name", "state", "forced", "reason"],
        "properties": {
            "name": {"type": "string"},
            "state": {"enum": ["closed", "open", "half_open", "forced_open"]},
            "forced": {"type": "boolean"}, "reason": {"type": ["string", "null"]},
        },
    },
}  # fmt: skip


def admin_components() -> dict[str, Any]:
    """The bodies' and answers' schemas, by name."""
    bodies: list[type[BaseModel]] = [KeyCreate, KeyRotate, BreakerTrip]
    _, defs = models_json_schema([(model, "validation") for model in bodies], ref_template=REF)
    schemas: dict[str, Any] = defs["$defs"]
    renamed = {f"Admin{name}": schema for name, schema in schemas.items()}
    return {**renamed, **ANSWERS}


def admin_paths() -> dict[str, Any]:
    """Every ``/admin`` path and method."""
    key_name = _name_parameter(
        "A gateway key's name", {"type": "string", "pattern": NAME_PATTERN.pattern}
    )
    breaker = _name_parameter("A breaker's name", {"type": "string", "minLength": 1})
    return {
        "/admin/keys": {
            "post": _operation("Create a gateway key (revoctl keys create)", "admin_create_key",
                               "AdminIssuedKey", body="AdminKeyCreate", required=True),
            "get": _operation("Every gateway key (revoctl keys list)", "admin_list_keys",
                              {"type": "array", "items": _ref("AdminKey")}),
        },
        "/admin/keys/{name}": {
            "delete": _operation("Revoke a key (revoctl keys revoke)", "admin_revoke_key",
                                 "AdminRevokedKey", parameters=[key_name]),
        },
        "/admin/keys/{name}/spend": {
            "get": _operation("A key's spend (revoctl keys spend)", "admin_key_spend",
                              "AdminKeySpend", parameters=[key_name]),
        },
        "/admin/keys/{name}/rotate": {
            "post": _operation("A new value for a key (revoctl keys rotate)", "admin_rotate_key",
                               "AdminIssuedKey", body="AdminKeyRotate", parameters=[key_name]),
        },
        "/admin/breakers/{name}/trip": {
            "post": _operation("Force a breaker open (revoctl breakers trip)",
                               "admin_trip_breaker", "AdminBreaker", body="AdminBreakerTrip",
                               parameters=[breaker]),
        },
        "/admin/breakers/{name}/reset": {
            "post": _operation("Close a breaker (revoctl breakers reset)", "admin_reset_breaker",
                               "AdminBreaker", parameters=[breaker]),
        },
    }  # fmt: skip


def _operation(
    summary: str,
    operation: str,
    answer: str | dict[str, Any],
    *,
    body: str | None = None,
    required: bool = False,
    parameters: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    schema = _ref(answer) if isinstance(answer, str) else answer
    described: dict[str, Any] = {
        "summary": summary,
        "operationId": operation,
        "security": [{"adminKey": []}],
        "responses": {
            "200": {"description": "Done", "content": {"application/json": {"schema": schema}}},
            **{status: ERROR for status in ("400", "401", "404", "413", "503")},
        },
    }
    if body is not None:
        content = {"application/json": {"schema": _ref(body)}}
        described["requestBody"] = {"required": required, "content": content}
    if parameters:
        described["parameters"] = parameters
    return described


def _name_parameter(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "name",
        "in": "path",
        "required": True,
        "description": description,
        "schema": schema,
    }


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}
