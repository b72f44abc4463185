"""Azure OpenAI: OpenAI's API on a resource's deployments, with Azure's key and errors.

A call goes to ``{base_url}/openai/deployments/{upstream}/chat/completions?api-version=V``
(``/embeddings`` likewise): ``base_url`` is the resource's endpoint
(``https://NAME.openai.azure.com``), ``upstream`` the deployment's name and ``V`` the
provider's ``api_version``. The key goes in the ``api-key`` header (no ``Authorization``).
Bodies, streams and usage are OpenAI's, so everything else is `OpenAIProvider`'s; a stream asks
for its usage (``stream_options``), which Azure takes from ``api_version`` 2024-10-21 (the
default) on: an older version refuses streams.

Azure's refusals map onto the error tree as OpenAI's do (429 with its ``retry-after-ms``,
401 and 404, a missing deployment, as the provider's fault), with two of its own: a request
its content filter refuses (400, ``code`` ``content_filter``, or the inner
``ResponsibleAIPolicyViolation``) is the caller's fault, named as such; and the gateway in
front of the resource answers some errors as ``{"statusCode", "message"}``, whose message
is read too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from revoctl.core.gateway.settings import ProviderConfig
from revoctl.runtime.providers._http import (
    error_for_status,
    parse_retry_after,
    short_message,
    upstream_message,
)
from revoctl.runtime.providers.base import ApiKey, ProviderError, ProviderRequestError
from revoctl.runtime.providers.openai import OpenAIProvider

CONTENT_FILTER_CODES = frozenset({"content_filter", "ResponsibleAIPolicyViolation"})
"""The ``code`` (or inner ``code``) of a request Azure's content filter refused."""


class AzureOpenAIProvider(OpenAIProvider):
    """``api-key: KEY`` and ``?api-version=`` on a resource's deployments; see `Provider`."""

    def __init__(self, name: str, config: ProviderConfig, api_key: ApiKey) -> None:
        super().__init__(name, config, api_key)
        self.base_url = config.base_url.rstrip("/")
        self._query = "?api-version=" + quote(config.api_version, safe="")

    def _headers(self, key: str) -> dict[str, str]:
        return {"api-key": key} if key else {}

    def _path(self, model: str, operation: str) -> str:
        return f"/openai/deployments/{quote(model, safe='')}{operation}{self._query}"

    def _status_error(
        self, status: int, headers: Mapping[str, str], content: bytes
    ) -> ProviderError:
        error = _azure_error(content)
        message = error.get("message")
        detail = short_message(message) if isinstance(message, str) else upstream_message(content)
        if status == 400 and CONTENT_FILTER_CODES & _codes(error):
            return ProviderRequestError(
                f"{self.name}: Azure's content filter refused the request: {detail}", status=400
            )
        text = f"{self.name}: upstream answered {status}" + (f": {detail}" if detail else "")
        return error_for_status(status, text, retry_after=parse_retry_after(headers))


def _document(content: bytes) -> dict[str, Any]:
    try:
        document = json.loads(content)
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


def _azure_error(content: bytes) -> dict[str, Any]:
    """Azure's error object: ``{"error": {...}}`` (OpenAI's shape), else the document itself
    (``{"statusCode", "message"}`` from the resource's own gateway)."""
    document = _document(content)
    error = document.get("error")
    return error if isinstance(error, dict) else document


def _codes(error: dict[str, Any]) -> set[str]:
    """The error's ``code`` and its ``innererror``'s."""
    inner = error.get("innererror")
    found = [error.get("code"), inner.get("code") if isinstance(inner, dict) else None]
    return {code for code in found if isinstance(code, str)}
