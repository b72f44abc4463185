"""The gateway's refusals: raised where a request is refused, rendered once.

A route, or any part it calls, raises `GatewayError` with the status and OpenAI's error
object (``{"error": {"message", "type", "code"}}``); the handler `revoctl.runtime.app`
registers with Starlette turns it into the response, after giving back what the request
was charged and writing its row. No route builds an error response itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class GatewayError(Exception):
    """A refusal the client gets as an OpenAI-style error object, with its status and headers."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        kind: str = "invalid_request_error",
        code: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.code = code
        self.headers = list(headers)

    def body(self) -> dict[str, Any]:
        """OpenAI's error object: ``{"error": {"message", "type", "code"}}``."""
        return {"error": {"message": self.message, "type": self.kind, "code": self.code}}
