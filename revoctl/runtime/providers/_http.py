"""What every adapter shares: one pooled HTTP client, the key, SSE, and error translation.

The client is aiohttp's: measured in front of the LLM stand-in (``benchmarks/gateway_bench.py``),
a relay on ``httpx.AsyncClient`` spent 1.5-1.8 ms of CPU a request against 0.3-0.9 ms on
aiohttp, and with many slow calls in flight httpx's pool (which scans every connection on
every request) let throughput collapse. aiohttp is imported here only, never by the CLI's
start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping
from typing import Any

import aiohttp

from revoctl.core.errors import RevoctlError
from revoctl.core.gateway.settings import ProviderConfig
from revoctl.core.redaction import redact, register_secret
from revoctl.core.tracing import inject_traceparent
from revoctl.runtime.providers.base import (
    ApiKey,
    ChatChunk,
    ProviderError,
    ProviderRateLimitError,
    ProviderRequestError,
    ProviderStreamError,
    ProviderTimeoutError,
    ProviderUnavailableError,
)

_PROVIDER_FAULTS = frozenset({401, 403, 404, 408})
"""4xx that say the provider cannot serve (its key, its model name, its own timeout), not
that the request is wrong: another model may answer."""
_MAX_MESSAGE = 300


class HttpProvider:
    """The transport half of an adapter: `_post` for JSON, `_events` for SSE, both over one
    ``aiohttp.ClientSession`` whose pool holds at most ``max_connections`` connections."""

    def __init__(self, name: str, config: ProviderConfig, api_key: ApiKey) -> None:
        self.name = name
        self.timeout = config.timeout
        self.base_url = config.base_url
        self._max_connections = config.max_connections
        self._api_key = api_key
        self._registered = ""
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.base_url!r})"

    def _client(self) -> aiohttp.ClientSession:
        """The one session, made on first use (on the loop that uses it)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self._max_connections, limit_per_host=self._max_connections
                ),
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=self.timeout, sock_read=self.timeout
                ),
            )
        return self._session

    async def close(self) -> None:
        """Close the connection pool."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _headers(self, key: str) -> dict[str, str]:
        """The headers that carry ``key`` (and whatever else the API requires)."""
        raise NotImplementedError

    async def _request_headers(self) -> dict[str, str]:
        try:
            key = await self._api_key()
        except RevoctlError as exc:
            raise ProviderUnavailableError(
                f"{self.name}: its API key could not be read ({type(exc).__name__}: {exc})"
            ) from exc
        if key and key != self._registered:
            register_secret(key)  # before any chance to appear in an error or a log
            self._registered = key
        return inject_traceparent(self._headers(key))  # the provider.call span's, when on

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST ``body`` and return the JSON object answered, all within ``timeout``.

        :raises ProviderError: a refusal, a timeout, a broken connection, not JSON.
        """
        headers = await self._request_headers()
        with self._translate_errors():
            async with (
                asyncio.timeout(self.timeout),
                self._client().post(self.base_url + path, json=body, headers=headers) as response,
            ):
                content = await response.read()
        if response.status != 200:
            raise self._status_error(response.status, response.headers, content)
        return self._json_object(content)

    async def _events(self, path: str, body: dict[str, Any]) -> AsyncIterator[tuple[str, str]]:
        """POST ``body`` and yield the SSE answer as ``(event, data)``; each read of the
        stream (its headers, then each line) gets ``timeout`` on its own.

        :raises ProviderError: a refusal, a timeout, a broken connection.
        """
        headers = await self._request_headers()
        with self._translate_errors():
            async with self._client().post(
                self.base_url + path, json=body, headers=headers
            ) as response:
                if response.status != 200:
                    content = await response.read()
                    raise self._status_error(response.status, response.headers, content)
                event, data = "", []
                async for raw in response.content:
                    line = raw.decode("utf-8", "replace").rstrip("\r\n")
                    if line.startswith("data:"):
                        data.append(line[5:].removeprefix(" "))
                    elif line.startswith("event:"):
                        event = line[6:].strip()
                    elif not line and data:
                        yield event or "message", "\n".join(data)
                        event, data = "", []

    async def _guarded(self, chunks: AsyncGenerator[ChatChunk, None]) -> AsyncIterator[ChatChunk]:
        """``chunks``, where a failure after the first chunk becomes `ProviderStreamError`:
        the caller has part of an answer, so no other model may take over."""
        started = False
        async with contextlib.aclosing(chunks):
            try:
                async for chunk in chunks:
                    started = True
                    yield chunk
            except ProviderError as exc:
                if not started:
                    raise
                raise ProviderStreamError(
                    f"{self.name}: the stream broke after it began: {exc}", status=exc.status
                ) from exc

    @contextlib.contextmanager
    def _translate_errors(self) -> Iterator[None]:
        """aiohttp's and asyncio's errors become ours, ``from`` the original."""
        try:
            yield
        except TimeoutError as exc:  # aiohttp's read and connect timeouts are TimeoutErrors
            raise ProviderTimeoutError(
                f"{self.name}: no answer within {self.timeout:g}s ({type(exc).__name__})"
            ) from exc
        except (aiohttp.ClientError, ValueError) as exc:  # ValueError: a line too long
            raise ProviderUnavailableError(
                f"{self.name}: {type(exc).__name__}: {short_message(str(exc))}"
            ) from exc

    def _status_error(
        self, status: int, headers: Mapping[str, str], content: bytes
    ) -> ProviderError:
        """The error for an answer with HTTP ``status`` other than 200."""
        message = f"{self.name}: upstream answered {status}"
        detail = upstream_message(content)
        if detail:
            message += f": {detail}"
        return error_for_status(status, message, retry_after=parse_retry_after(headers))

    def _json_object(self, text: str | bytes) -> dict[str, Any]:
        """``text`` as a JSON object. :raises ProviderUnavailableError: it is not one."""
        try:
            document = json.loads(text)
        except ValueError:
            document = None
        if not isinstance(document, dict):
            raise ProviderUnavailableError(f"{self.name}: the upstream's answer is not JSON")
        return document


def error_for_status(
    status: int, message: str, *, retry_after: float | None = None
) -> ProviderError:
    """The `ProviderError` subclass an upstream HTTP ``status`` means."""
    if status == 429:
        return ProviderRateLimitError(message, status=status, retry_after=retry_after)
    if 400 <= status < 500 and status not in _PROVIDER_FAULTS:
        return ProviderRequestError(message, status=status)
    return ProviderUnavailableError(message, status=status, retry_after=retry_after)


def upstream_message(content: bytes) -> str:
    """The upstream's own error message (OpenAI's and Anthropic's shapes), short, redacted."""
    try:
        document = json.loads(content)
    except ValueError:
        return short_message(content.decode("utf-8", "replace"))
    error = document.get("error") if isinstance(document, dict) else None
    if isinstance(error, dict):
        error = error.get("message")
    return short_message(error) if isinstance(error, str) else ""


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds the upstream asked us to wait: ``retry-after-ms`` (OpenAI's), else
    ``Retry-After`` in seconds or as an HTTP date; None when absent or unreadable."""
    milliseconds = headers.get("retry-after-ms")
    if milliseconds is not None:
        with contextlib.suppress(ValueError):
            if math.isfinite(value := float(milliseconds)) and value >= 0:
                return value / 1000
    text = headers.get("retry-after")
    if text is None:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - (time.time() if now is None else now))
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def short_message(text: str) -> str:
    """One line of at most ``_MAX_MESSAGE`` characters, with every known secret masked."""
    line = " ".join(redact(text).split())
    return line if len(line) <= _MAX_MESSAGE else line[: _MAX_MESSAGE - 3] + "..."
