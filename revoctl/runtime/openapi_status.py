"""The status page's part of ``/openapi.json`` (`revoctl.runtime.routes.status`).

Always described: without ``[gateway] admin_key`` the page still answers, read-only, to
loopback clients. Its session is a cookie (`revoctl.runtime.status_auth`), named here as
an ``apiKey`` scheme in a cookie; a browser gets it from the login form.
"""

from __future__ import annotations

from typing import Any

ERROR = {"$ref": "#/components/responses/Error"}
SECURITY = {
    "statusSession": {
        "type": "apiKey",
        "in": "cookie",
        "name": "revoctl_status",
        "description": "Set by POST /status/login, with the admin key",
    }
}
_SESSION: list[dict[str, list[str]]] = [{"statusSession": []}]
_HTML = {"text/html": {"schema": {"type": "string"}}}
_TO_LOGIN = {
    "description": "No session (an admin key is set): to the login",
    "headers": {"location": {"schema": {"const": "/status/login"}}},
}
_DOCUMENT = {
    "type": "object",
    "description": 'revoctl.core.status.fleet_status: a failed section is {"error"}',
    "required": ["served_by", "generated_at"],
    "properties": {
        "served_by": {"type": "string"},
        "generated_at": {"type": "string", "format": "date-time"},
        **{
            name: {"type": "object"}
            for name in ("breakers", "rules", "pools", "secrets", "spend", "recent")
        },
    },
}
_EVENT = {
    "type": "object",
    "description": "One event: the document, as JSON text",
    "required": ["data"],
    "properties": {
        "event": {"const": "message"},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": _DOCUMENT,
        },
    },
}


def status_paths() -> dict[str, Any]:
    """The ``/status`` routes."""
    refused = {"401": ERROR, "403": ERROR, "503": ERROR}
    return {
        "/status": {
            "get": {
                "summary": "The live status page (without a session: to the login)",
                "operationId": "status_page",
                "responses": {
                    "200": {"description": "The page", "content": _HTML},
                    "303": _TO_LOGIN,
                    "403": ERROR,
                    "503": ERROR,
                },
            }
        },
        "/status.json": {
            "get": {
                "summary": "The page's data, read now",
                "operationId": "status_json",
                "security": _SESSION,
                "responses": {
                    "200": {
                        "description": "Every section",
                        "content": {"application/json": {"schema": _DOCUMENT}},
                    },
                    **refused,
                },
            }
        },
        "/status/events": {
            "get": {
                "summary": "The page's data at each update, as server-sent events",
                "operationId": "status_events",
                "security": _SESSION,
                "responses": {
                    "200": {
                        "description": "One data: line of the document per update",
                        "content": {"text/event-stream": {"schema": _EVENT}},
                    },
                    **refused,
                },
            }
        },
        "/status/login": {
            "get": {
                "summary": "The login form",
                "operationId": "status_login_form",
                "responses": {
                    "200": {"description": "The form", "content": _HTML},
                    "404": ERROR,
                    "503": ERROR,
                },
            },
            "post": {
                "summary": "Sign in with the admin key: a session cookie",
                "operationId": "status_login",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/x-www-form-urlencoded": {
                            "schema": {
                                "type": "object",
                                "required": ["admin_key"],
                                "properties": {"admin_key": {"type": "string"}},
                            }
                        }
                    },
                },
                "responses": {
                    "303": {
                        "description": "Signed in: to the page, the cookie set",
                        "headers": {"set-cookie": {"schema": {"type": "string"}}},
                    },
                    "401": {"description": "Not the admin key: the form again", "content": _HTML},
                    "404": ERROR,
                    "413": ERROR,
                    "503": ERROR,
                },
            },
        },
        "/status/logout": {
            "post": {
                "summary": "Sign out: the cookie cleared",
                "operationId": "status_logout",
                "responses": {"303": {"description": "To the login"}},
            }
        },
        "/status/breakers/{name}/{action}": {
            "post": {
                "summary": "Trip or reset a breaker from the page (the session's CSRF token)",
                "operationId": "status_breaker_action",
                "security": _SESSION,
                "parameters": [
                    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
                    {
                        "name": "action",
                        "in": "path",
                        "required": True,
                        "schema": {"enum": ["trip", "reset"]},
                    },
                    {"name": "x-csrf-token", "in": "header", "schema": {"type": "string"}},
                ],
                "requestBody": {
                    "required": False,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {"reason": {"type": "string"}},
                            }
                        }
                    },
                },
                "responses": {
                    "200": {
                        "description": "The breaker's status, as `breakers status` shows it",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    "400": ERROR,
                    "404": ERROR,
                    "413": ERROR,
                    **refused,
                },
            }
        },
        "/status/assets/{name}": {
            "get": {
                "summary": "The page's CSS and script",
                "operationId": "status_asset",
                "parameters": [
                    {
                        "name": "name",
                        "in": "path",
                        "required": True,
                        "schema": {"enum": ["status.css", "status.js"]},
                    }
                ],
                "responses": {
                    "200": {
                        "description": "The file",
                        "content": {
                            "text/css": {"schema": {"type": "string"}},
                            "text/javascript": {"schema": {"type": "string"}},
                        },
                    },
                    "404": ERROR,
                },
            }
        },
    }
