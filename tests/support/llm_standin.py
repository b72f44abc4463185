"""A stand-in LLM provider for tests: OpenAI- and Anthropic-style APIs over real HTTP.

`LLMStandIn` is a plain-HTTP server on 127.0.0.1 (ephemeral port) run by an asyncio loop in
a background thread: one loop serves any number of connections at once (several gateway
workers, a benchmark's few hundred requests per second) and can hold a request open, drop a
connection mid-answer, or answer late, on command from the test.

Usage::

    with LLMStandIn(api_key="sk-test") as llm:
        client = openai.OpenAI(base_url=llm.openai_base_url, api_key="sk-test", max_retries=0)
        client.chat.completions.create(model="gpt-4o-mini", messages=[...])
        llm.mode = "error429"            # the next requests get 429 with Retry-After
        llm.api_key = "sk-rotated"       # the old key now gets 401
        llm.requests[-1].api_key         # what the last request presented

Routes:

* OpenAI: ``POST /v1/chat/completions`` (JSON, or SSE when ``stream`` is true: ``data: {chunk}``
  lines and ``data: [DONE]``; with ``stream_options.include_usage`` every chunk carries
  ``"usage": null`` and a last chunk has ``usage`` and empty ``choices``, as OpenAI sends
  them), ``GET /v1/models``. The key is ``Authorization: Bearer KEY``.
* Anthropic: ``POST /v1/messages`` (JSON, or SSE with the events ``message_start``,
  ``content_block_start``, ``ping``, ``content_block_delta``, ``content_block_stop``,
  ``message_delta`` with ``usage.output_tokens``, ``message_stop``). The key is ``x-api-key``;
  ``anthropic-version`` (a date) and ``max_tokens`` are required, as by the real API.
* OpenAI embeddings: ``POST /v1/embeddings`` (``input`` a text, texts, a token array or
  token arrays; ``dimensions``; ``encoding_format`` ``float`` or ``base64``, little-endian
  float32s as OpenAI packs them), answered with `embedding_vector` per input and ``usage
  {prompt_tokens, total_tokens}`` (`input_tokens`).
* Azure OpenAI: ``POST /openai/deployments/{deployment}/chat/completions`` and
  ``.../embeddings``, answered as OpenAI's (``model`` the deployment). The key is the
  ``api-key`` header alone (a Bearer token is not looked at: 401); without the ``api-version``
  query parameter the answer is 404 "Resource not found", as Azure's. `RecordedRequest.query`
  keeps the query's parameters. ``mode = "content_filter"`` gets Azure's 400 refusal
  (``code`` ``content_filter``, inner ``ResponsibleAIPolicyViolation``).
* Anthropic tools: a messages request that offers ``tools`` (``tool_choice`` not ``none``)
  and whose last message is the user's own (no ``tool_result`` in it) is answered with a
  short text and a ``tool_use`` block calling the tool ``tool_choice`` names (else the first)
  with `tool_input`, ``stop_reason`` ``tool_use``; streamed, the block comes as
  ``content_block_start`` (empty ``input``) and two ``input_json_delta`` events. A request
  whose last message carries a ``tool_result`` is answered with text, as any other.
* A wrong key gets 401 whose message repeats the key presented (as OpenAI's shows part of
  it), so a test can see whether a client lets a key into its errors.

Answers are deterministic, so tests can predict them (see `reply_text`, `prompt_tokens`):

* the prompt costs one token per whitespace-separated word of every message's text (an
  Anthropic ``system`` included);
* the reply is the first ``reply_tokens`` words of a lorem-ipsum cycle, one token per word,
  cut at ``max_tokens`` (finish ``length`` / ``max_tokens``) or before the first stop sequence
  it contains (finish ``stop`` / ``stop_sequence``, the cut words not counted); a stream sends
  one chunk per word.

Faults (chat, messages and embeddings routes): ``mode = "ok" | "error500" | "error429" |
"error400" | "hang" | "fail_mid_stream" | "content_filter"`` (the last on Azure's routes
only). ``error429`` sends ``Retry-After`` (whole seconds, rounded up) and
``retry-after-ms``. A hanging request never gets an answer: when it is woken (a mode
change, `wake()`, `stop()` or ``hang_seconds`` elapsed) its connection is dropped.
``fail_mid_stream`` sends ``fail_after_chunks`` content chunks of a stream (half the body of
a plain answer) and then drops the connection. ``delay`` holds every answer that long (or
until woken) and ``chunk_delay`` spaces a stream's chunks. ``stop()`` is "gone" (connections
refused); ``start()`` again serves on the same port.

Calls in flight: every chat or messages request counts from its arrival until its answer
ends (or its connection drops), as a whole and per ``user`` (OpenAI's ``user``, Anthropic's
``metadata.user_id``; "" when none): `in_flight` and `max_in_flight` here, and over HTTP
``GET /_stats`` → ``{"in_flight", "max_in_flight", "by_user": {USER: {"in_flight",
"max_in_flight"}}}`` for a test that runs the stand-in in another process. ``POST /_config``
with ``{"delay": SECONDS}`` sets `delay`; ``POST /_stats/reset`` is `reset`.

Per upstream model (issue 19's deployments: one stand-in serves several, told apart by the
``model`` the gateway sends): ``llm.configure_model("east", mode="hang", delay=0.3,
fail_next=1)`` gives requests for that model their own mode and delay (None: the stand-in's),
and makes its next ``fail_next`` requests fail as ``fail_mode`` (``error500`` by default)
whatever the mode; `clear_models` forgets them all. `model_calls` counts each model's
requests (``RecordedRequest.model`` names it too), and ``GET /_stats`` adds ``"by_model":
{MODEL: {"calls", "in_flight", "max_in_flight"}}``. Over HTTP, ``POST /_config`` with
``{"models": {MODEL: {"mode", "delay", "fail_next", "fail_mode"}}}`` configures them.

Run on its own (e.g. for a benchmark, where it should not share a GIL with the load)::

    python -m tests.support.llm_standin [--port 0] [--api-key KEY]

prints its URL on the first line of stdout and serves until interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import itertools
import json
import math
import random
import re
import signal
import struct
import threading
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from types import TracebackType
from typing import Any, Final, Literal, get_args

Mode = Literal[
    "ok", "error500", "error429", "error400", "hang", "fail_mid_stream", "content_filter"
]
Api = Literal["openai", "anthropic", "azure"]

REPLY_WORDS: Final = ("lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing",
                      "elit", "sed", "do", "eiusmod", "tempor")  # fmt: skip
_API_VERSION: Final = re.compile(r"\d{4}-\d{2}-\d{2}")  # each SDK release sends its own date
_JSON = dict[str, Any]
_ALL: Final = "\x00all"
"""The in-flight counters' key for every call (no ``user`` is this)."""


def reply_text(tokens: int) -> str:
    """The stand-in's reply of ``tokens`` words (one token each), before any stop sequence."""
    return " ".join(itertools.islice(itertools.cycle(REPLY_WORDS), tokens))


def text_tokens(content: Any) -> int:
    """Tokens in one message's content: a string, or a list of parts/blocks with ``text``."""
    if isinstance(content, str):
        return len(content.split())
    if isinstance(content, list):
        return sum(
            len(str(part.get("text") or "").split()) for part in content if isinstance(part, dict)
        )
    return 0


def prompt_tokens(messages: Iterable[_JSON], system: Any = None) -> int:
    """What the stand-in reports as prompt (input) tokens for these messages."""
    return text_tokens(system) + sum(text_tokens(message.get("content")) for message in messages)


@dataclass
class RecordedRequest:
    """A request as the stand-in saw it; ``status`` stays None while unanswered (or dropped
    before its headers went out), the token counts stay None unless an answer was built."""

    method: str
    path: str
    api: Api | None
    model: str | None
    stream: bool
    api_key: str | None
    headers: dict[str, str]
    body: _JSON
    at: float = field(default_factory=time.time)
    status: int | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    query: dict[str, str] = field(default_factory=dict)
    """The query string's parameters (Azure's ``api-version``)."""


@dataclass(frozen=True)
class _Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    query: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Answer:
    """What a chat or messages request should get: text, token counts, finish reason."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    stopped_by: str | None  # the stop sequence that cut the reply
    truncated: bool  # cut by max_tokens


@dataclass
class _ModelBehaviour:
    """One upstream model's own mode and delay (None: the stand-in's) and pending failures."""

    mode: Mode | None
    delay: float | None
    fail_next: int
    fail_mode: Mode


class _Drop(Exception):
    """Ends a connection without (the rest of) an answer."""


class LLMStandIn:
    """OpenAI chat completions + Anthropic messages, deterministic, with faults, in a thread."""

    def __init__(
        self,
        *,
        api_key: str | None = "sk-standin",
        reply_tokens: int = 8,
        models: tuple[str, ...] = ("gpt-4o-mini", "claude-3-5-haiku-latest"),
        retry_after: float = 1.0,
        hang_seconds: float = 60.0,
        fail_after_chunks: int = 2,
        port: int = 0,
    ) -> None:
        self.api_key = api_key
        """The one key accepted (None: any); change it to make the old key get 401."""
        self.reply_tokens = reply_tokens
        self.models = models
        self.retry_after = retry_after
        self.hang_seconds = hang_seconds
        self.fail_after_chunks = fail_after_chunks
        self.delay = 0.0
        """Seconds every request waits before its answer (faults included)."""
        self.chunk_delay = 0.0
        """Seconds between a stream's chunks."""

        self._mode: Mode = "ok"
        self._port = port
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._requests: list[RecordedRequest] = []
        self._connections = 0
        self._ids = itertools.count(1)
        self._in_flight: dict[str, int] = {}
        self._max_in_flight: dict[str, int] = {}
        self._behaviours: dict[str, _ModelBehaviour] = {}
        self._by_model: dict[str, dict[str, int]] = {}

        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._woken: asyncio.Event | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> LLMStandIn:
        """Start serving; after a stop() the same port is reused so the URLs stay valid."""
        if self._thread is not None:
            raise RuntimeError("LLMStandIn is already running")
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._listen())
            except BaseException as exc:  # reported to start() below
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="llm-standin", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            loop.close()
            self._loop = self._thread = None
            raise failure[0]
        return self

    def stop(self) -> None:
        """Refuse new connections, drop the open ones, wake hanging requests."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.close()
        self._loop = self._thread = None

    def __enter__(self) -> LLMStandIn:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread is not None

    # ------------------------------------------------------------------ addresses

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``: the Anthropic base URL (its paths start with /v1)."""
        if not self._port:
            raise RuntimeError("LLMStandIn has not been started")
        return f"http://127.0.0.1:{self._port}"

    @property
    def openai_base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``: the OpenAI base URL."""
        return self.url + "/v1"

    # ------------------------------------------------------------------ faults

    @property
    def mode(self) -> Mode:
        return self._mode

    @mode.setter
    def mode(self, mode: Mode) -> None:
        if mode not in get_args(Mode):
            raise ValueError(f"unknown mode {mode!r}; expected one of {get_args(Mode)}")
        self._mode = mode
        self.wake()

    def wake(self) -> None:
        """Release every held request now: a hanging one has its connection dropped, a
        delayed one is answered."""
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self._wake_hanging)

    # ------------------------------------------------------------------ accounting

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received since the last reset(), oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def connections(self) -> int:
        """TCP connections accepted since the last reset()."""
        with self._lock:
            return self._connections

    def reset(self) -> None:
        """Forget recorded requests, connections and the highest calls in flight (not the
        mode, the delay or the key)."""
        with self._lock:
            self._requests.clear()
            self._connections = 0
            self._max_in_flight = dict(self._in_flight)
            for counts in self._by_model.values():
                counts["calls"], counts["max_in_flight"] = 0, counts["in_flight"]

    def in_flight(self, user: str | None = None) -> int:
        """Chat or messages calls being answered now (of ``user``; None: all)."""
        with self._lock:
            return self._in_flight.get(_ALL if user is None else user, 0)

    def max_in_flight(self, user: str | None = None) -> int:
        """The most such calls at once since the last reset() (of ``user``; None: all)."""
        with self._lock:
            return self._max_in_flight.get(_ALL if user is None else user, 0)

    def stats(self) -> _JSON:
        """``GET /_stats``: calls in flight now and at most, in all and per user."""
        with self._lock:
            users = sorted(set(self._max_in_flight) - {_ALL})
            return {
                "in_flight": self._in_flight.get(_ALL, 0),
                "max_in_flight": self._max_in_flight.get(_ALL, 0),
                "by_user": {
                    user: {
                        "in_flight": self._in_flight.get(user, 0),
                        "max_in_flight": self._max_in_flight.get(user, 0),
                    }
                    for user in users
                },
                "by_model": {model: dict(counts) for model, counts in self._by_model.items()},
            }

    @contextlib.contextmanager
    def _counted(self, user: str) -> Iterator[None]:
        """One call in flight for ``user`` (and in all) while the block runs."""
        with self._lock:
            for name in (_ALL, user):
                now = self._in_flight[name] = self._in_flight.get(name, 0) + 1
                self._max_in_flight[name] = max(self._max_in_flight.get(name, 0), now)
        try:
            yield
        finally:
            with self._lock:
                for name in (_ALL, user):
                    self._in_flight[name] -= 1

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Block until at least ``count`` requests have arrived; the requests.

        :raises TimeoutError: fewer arrived within ``timeout`` seconds.
        """
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._requests) >= count, timeout):
                raise TimeoutError(f"{len(self._requests)} of {count} requests arrived")
            return list(self._requests)

    # ------------------------------------------------------------------ the server (loop thread)

    async def _listen(self) -> None:
        self._woken = asyncio.Event()
        self._server = await asyncio.start_server(
            self._connection, "127.0.0.1", self._port, reuse_address=True, backlog=1024
        )
        self._port = self._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        self._wake_hanging()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    def _wake_hanging(self) -> None:
        if self._woken is not None:
            self._woken.set()
            self._woken = asyncio.Event()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        with self._lock:
            self._connections += 1
        try:
            while (request := await _read_request(reader)) is not None:
                if not await self._serve(request, writer):
                    break
        except (_Drop, ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:  # stop(): the connection goes with the server
            pass
        finally:
            self._tasks.discard(task)
            writer.transport.abort()

    async def _serve(self, request: _Request, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False closes the connection after it."""
        keep_alive = request.headers.get("connection", "").lower() != "close"
        try:
            body = json.loads(request.body) if request.body else {}
        except ValueError:
            body = None
        if not isinstance(body, dict):
            await _send_json(writer, 400, {"error": {"message": "body is not a JSON object"}})
            return keep_alive
        if request.path.startswith("/_"):
            return await self._control(request, body, writer) and keep_alive
        routes: dict[str, Api] = {
            "/v1/chat/completions": "openai",
            "/v1/embeddings": "openai",
            "/v1/messages": "anthropic",
        }
        api: Api | None = routes.get(request.path)
        deployment = _azure_deployment(request.path)
        if deployment is not None:
            api = "azure"
        record = RecordedRequest(
            method=request.method,
            path=request.path,
            api=api,
            model=body.get("model") if deployment is None else deployment,
            stream=body.get("stream") is True,
            api_key=_presented_key(request.headers, azure=deployment is not None),
            headers=request.headers,
            body=body,
            query=request.query,
        )
        with self._changed:
            self._requests.append(record)
            self._changed.notify_all()
        if api is None:
            return await self._answer_request(request, record, body, writer, api) and keep_alive
        with self._counted(_user_of(body)), self._model_counted(record.model):
            return await self._answer_request(request, record, body, writer, api) and keep_alive

    async def _control(self, request: _Request, body: _JSON, writer: asyncio.StreamWriter) -> bool:
        """The test's own routes: ``GET /_stats``, ``POST /_stats/reset``, ``POST /_config``."""
        route = (request.method, request.path)
        if route == ("POST", "/_config"):
            if isinstance(body.get("delay"), int | float):
                self.delay = float(body["delay"])
            for model, behaviour in (body.get("models") or {}).items():
                self.configure_model(model, **behaviour)
        elif route == ("POST", "/_stats/reset"):
            self.reset()
        elif route != ("GET", "/_stats"):
            await _send_json(writer, 404, _error_body(None, 404, f"no route {request.path}"))
            return True
        await _send_json(writer, 200, self.stats())
        return True

    async def _answer_request(
        self,
        request: _Request,
        record: RecordedRequest,
        body: _JSON,
        writer: asyncio.StreamWriter,
        api: Api | None,
    ) -> bool:
        """Answer ``record`` (after `delay`): models, an error, or a chat answer; False
        closes the connection after it."""
        mode, delay = self._behaviour(record.model)
        if delay:
            await self._hold(delay)
        if request.method == "GET" and request.path == "/v1/models":
            status, answer = self._models(record)
            record.status = status
            await _send_json(writer, status, answer)
            return True
        if api is None or request.method != "POST":
            record.status = 404
            await _send_json(writer, 404, _error_body(api, 404, f"no route {request.path}"))
            return True
        if request.path.endswith("/embeddings"):
            return await self._embeddings(record, api, body, writer, mode)
        refusal = self._refusal(record, api, body, mode)
        if refusal is not None:
            status, answer, headers = refusal
            record.status = status
            await _send_json(writer, status, answer, headers)
            return True
        if mode == "hang":
            await self._hold(self.hang_seconds)
            raise _Drop
        if api in ("openai", "azure"):
            return await self._openai(record, body, writer, mode)
        return await self._anthropic(record, body, writer, mode)

    def _refusal(
        self, record: RecordedRequest, api: Api, body: _JSON, mode: Mode
    ) -> tuple[int, _JSON, dict[str, str]] | None:
        """The error answer this request gets (bad key, invalid, a fault mode), if any."""
        if self.api_key is not None and record.api_key != self.api_key:
            return 401, _error_body(api, 401, _wrong_key(record.api_key)), {}
        if api == "azure" and not record.query.get("api-version"):
            return 404, _error_body(api, 404, "Resource not found"), {}
        if api == "azure" and mode == "content_filter":
            return 400, _content_filtered(), {}
        version = record.headers.get("anthropic-version", "")
        if api == "anthropic" and not _API_VERSION.fullmatch(version):
            return 400, _error_body(api, 400, "anthropic-version: header required"), {}
        messages = body.get("messages")
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            return 400, _error_body(api, 400, "messages must be a list of objects"), {}
        if api != "azure" and not isinstance(body.get("model"), str):
            return 400, _error_body(api, 400, "model is required"), {}
        if api == "anthropic" and not isinstance(body.get("max_tokens"), int):
            return 400, _error_body(api, 400, "max_tokens: Field required"), {}
        if mode == "error500":
            return 500, _error_body(api, 500, "the stand-in is in error500 mode"), {}
        if mode == "error400":
            return 400, _error_body(api, 400, "the stand-in is in error400 mode"), {}
        if mode == "error429":
            headers = {
                "retry-after": str(math.ceil(self.retry_after)),
                "retry-after-ms": str(round(self.retry_after * 1000)),
            }
            return 429, _error_body(api, 429, "the stand-in is in error429 mode"), headers
        return None

    # ------------------------------------------------------------------ per-model behaviour
    # (issue 19: deployments of one model, told apart by the upstream model name)

    def configure_model(
        self,
        model: str,
        *,
        mode: Mode | None = None,
        delay: float | None = None,
        fail_next: int = 0,
        fail_mode: Mode = "error500",
    ) -> None:
        """Requests for ``model`` get ``mode`` and ``delay`` (None: the stand-in's own), and
        the next ``fail_next`` of them ``fail_mode``; held requests are woken."""
        for wanted in (mode, fail_mode):
            if wanted is not None and wanted not in get_args(Mode):
                raise ValueError(f"unknown mode {wanted!r}; expected one of {get_args(Mode)}")
        with self._lock:
            self._behaviours[model] = _ModelBehaviour(mode, delay, fail_next, fail_mode)
        self.wake()

    def clear_models(self) -> None:
        """Forget every model's own behaviour: all get the stand-in's mode and delay."""
        with self._lock:
            self._behaviours.clear()
        self.wake()

    def model_calls(self, model: str) -> int:
        """Chat or messages requests for ``model`` since the last reset()."""
        with self._lock:
            return self._by_model.get(model, {}).get("calls", 0)

    def _behaviour(self, model: str | None) -> tuple[Mode, float]:
        """The mode and delay a request for ``model`` gets now (a pending failure used up)."""
        with self._lock:
            own = self._behaviours.get(model) if isinstance(model, str) else None
            if own is None:
                return self._mode, self.delay
            delay = self.delay if own.delay is None else own.delay
            if own.fail_next > 0:
                own.fail_next -= 1
                return own.fail_mode, delay
            return (self._mode if own.mode is None else own.mode), delay

    @contextlib.contextmanager
    def _model_counted(self, model: str | None) -> Iterator[None]:
        """One call for ``model``, in flight while the block runs."""
        name = model if isinstance(model, str) else ""
        with self._lock:
            counts = self._by_model.setdefault(
                name, {"calls": 0, "in_flight": 0, "max_in_flight": 0}
            )
            counts["calls"] += 1
            counts["in_flight"] += 1
            counts["max_in_flight"] = max(counts["max_in_flight"], counts["in_flight"])
        try:
            yield
        finally:
            with self._lock:
                counts["in_flight"] -= 1

    # ------------------------------------------------------------------ answers

    async def _hold(self, seconds: float) -> None:
        """Wait ``seconds``, or less if woken."""
        woken = self._woken
        assert woken is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(woken.wait(), seconds)

    def _models(self, record: RecordedRequest) -> tuple[int, _JSON]:
        if self.api_key is not None and record.api_key != self.api_key:
            return 401, _error_body("openai", 401, _wrong_key(record.api_key))
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "standin"}
            for name in self.models
        ]
        return 200, {"object": "list", "data": data}

    def _answer(self, record: RecordedRequest, body: _JSON, stops: Any) -> _Answer:
        """The deterministic reply to ``body``; its token counts go into ``record``."""
        limit = body.get("max_tokens") or body.get("max_completion_tokens")
        tokens = self.reply_tokens if not isinstance(limit, int) else min(limit, self.reply_tokens)
        text, stopped_by = reply_text(tokens), None
        cuts = [(text.find(stop), stop) for stop in _stop_list(stops) if stop and stop in text]
        if cuts:
            index, stopped_by = min(cuts)
            text = text[:index]
        answer = _Answer(
            text=text,
            prompt_tokens=prompt_tokens(body["messages"], body.get("system")),
            completion_tokens=len(text.split()),
            stopped_by=stopped_by,
            truncated=stopped_by is None and tokens < self.reply_tokens,
        )
        record.prompt_tokens, record.completion_tokens = (
            answer.prompt_tokens,
            answer.completion_tokens,
        )
        return answer

    async def _openai(
        self, record: RecordedRequest, body: _JSON, writer: asyncio.StreamWriter, mode: Mode
    ) -> bool:
        answer = self._answer(record, body, body.get("stop"))
        ident, created = f"chatcmpl-standin{next(self._ids)}", int(time.time())
        finish = "length" if answer.truncated else "stop"
        usage = {
            "prompt_tokens": answer.prompt_tokens,
            "completion_tokens": answer.completion_tokens,
            "total_tokens": answer.prompt_tokens + answer.completion_tokens,
        }
        if not record.stream:
            message = {"role": "assistant", "content": answer.text, "refusal": None}
            response = {
                "id": ident,
                "object": "chat.completion",
                "created": created,
                "model": record.model,
                "choices": [
                    {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
                ],
                "usage": usage,
            }
            record.status = 200
            await _send_json(writer, 200, response, partial=mode == "fail_mid_stream")
            return True
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True

        def chunk(delta: _JSON, finish_reason: str | None = None) -> _JSON:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            out: _JSON = {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": record.model,
                "choices": [choice],
            }
            if include_usage:
                out["usage"] = None
            return out

        events = [chunk({"role": "assistant", "content": ""})]
        events += [chunk({"content": piece}) for piece in _pieces(answer.text)]
        events.append(chunk({}, finish))
        if include_usage:
            events.append({**chunk({}), "choices": [], "usage": usage})
        lines = [f"data: {json.dumps(event)}\n\n" for event in events] + ["data: [DONE]\n\n"]
        record.status = 200
        await self._stream(writer, lines, mode, content_start=1)
        return True

    async def _anthropic(
        self, record: RecordedRequest, body: _JSON, writer: asyncio.StreamWriter, mode: Mode
    ) -> bool:
        if _calls_a_tool(body):
            return await self._anthropic_tool_use(record, body, writer, mode)
        answer = self._answer(record, body, body.get("stop_sequences"))
        ident = f"msg_standin{next(self._ids)}"
        if answer.stopped_by is not None:
            stop_reason = "stop_sequence"
        else:
            stop_reason = "max_tokens" if answer.truncated else "end_turn"
        if not record.stream:
            response = {
                "id": ident,
                "type": "message",
                "role": "assistant",
                "model": record.model,
                "content": [{"type": "text", "text": answer.text}],
                "stop_reason": stop_reason,
                "stop_sequence": answer.stopped_by,
                "usage": {
                    "input_tokens": answer.prompt_tokens,
                    "output_tokens": answer.completion_tokens,
                },
            }
            record.status = 200
            await _send_json(writer, 200, response, partial=mode == "fail_mid_stream")
            return True
        start = {
            "id": ident,
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": record.model,
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": answer.prompt_tokens, "output_tokens": 1},
        }
        block = {"type": "text", "text": ""}
        events: list[_JSON] = [
            {"type": "message_start", "message": start},
            {"type": "content_block_start", "index": 0, "content_block": block},
            {"type": "ping"},
        ]
        events += [
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}}
            for t in _pieces(answer.text)
        ]
        events += [
            {"type": "content_block_stop", "index": 0},
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": answer.stopped_by},
                "usage": {"output_tokens": answer.completion_tokens},
            },
            {"type": "message_stop"},
        ]
        lines = [f"event: {event['type']}\ndata: {json.dumps(event)}\n\n" for event in events]
        record.status = 200
        await self._stream(writer, lines, mode, content_start=3)
        return True

    async def _stream(
        self, writer: asyncio.StreamWriter, events: list[str], mode: Mode, *, content_start: int
    ) -> None:
        """Send SSE ``events`` chunked; in fail_mid_stream, drop the connection after the
        first ``fail_after_chunks`` content events (those from ``content_start`` on)."""
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
            b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"
        )
        cut = None
        if mode == "fail_mid_stream":  # always before the end, however short the reply
            cut = min(content_start + self.fail_after_chunks, len(events) - 1)
        for index, event in enumerate(events):
            if index == cut:
                await writer.drain()
                raise _Drop
            data = event.encode()
            writer.write(b"%x\r\n%s\r\n" % (len(data), data))
            if self.chunk_delay:
                await writer.drain()
                await asyncio.sleep(self.chunk_delay)
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    # ------------------------------------------------------------------ embeddings, tools

    async def _embeddings(
        self,
        record: RecordedRequest,
        api: Api | None,
        body: _JSON,
        writer: asyncio.StreamWriter,
        mode: Mode,
    ) -> bool:
        """OpenAI's (or an Azure deployment's) embeddings: `embedding_vector` per input."""
        refusal = self._embedding_refusal(record, api, body, mode)
        if refusal is not None:
            status, answer, headers = refusal
            record.status = status
            await _send_json(writer, status, answer, headers)
            return True
        if mode == "hang":
            await self._hold(self.hang_seconds)
            raise _Drop
        inputs = _embedding_inputs(body["input"]) or []
        dimensions = body.get("dimensions") or EMBEDDING_DIMENSIONS
        tokens = sum(input_tokens(item) for item in inputs)
        data = []
        for index, item in enumerate(inputs):
            vector = embedding_vector(item, dimensions)
            packed: Any = vector
            if body.get("encoding_format") == "base64":
                packed = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": packed})
        record.prompt_tokens, record.completion_tokens = tokens, 0
        answer = {
            "object": "list",
            "data": data,
            "model": record.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        record.status = 200
        await _send_json(writer, 200, answer, partial=mode == "fail_mid_stream")
        return True

    def _embedding_refusal(
        self, record: RecordedRequest, api: Api | None, body: _JSON, mode: Mode
    ) -> tuple[int, _JSON, dict[str, str]] | None:
        """The error an embeddings request gets (key, Azure's api-version, input, faults)."""
        if api is None or record.method != "POST":
            return 404, _error_body(api, 404, f"no route {record.path}"), {}
        if self.api_key is not None and record.api_key != self.api_key:
            return 401, _error_body(api, 401, _wrong_key(record.api_key)), {}
        if api == "azure" and not record.query.get("api-version"):
            return 404, _error_body(api, 404, "Resource not found"), {}
        if _embedding_inputs(body.get("input")) is None:
            return 400, _error_body(api, 400, "input must be a text, texts or token arrays"), {}
        dimensions = body.get("dimensions")
        if dimensions is not None and (not isinstance(dimensions, int) or dimensions < 1):
            return 400, _error_body(api, 400, "dimensions must be a positive integer"), {}
        if api == "azure" and mode == "content_filter":
            return 400, _content_filtered(), {}
        if mode in ("error500", "error400", "error429"):
            messages = {**body, "messages": [], "model": str(body.get("model"))}
            return self._refusal(record, "openai" if api == "azure" else api, messages, mode)
        return None

    async def _anthropic_tool_use(
        self, record: RecordedRequest, body: _JSON, writer: asyncio.StreamWriter, mode: Mode
    ) -> bool:
        """Anthropic's answer calling a tool (`_calls_a_tool`): a short text, then a
        ``tool_use`` block for the tool ``tool_choice`` names (else the first) with
        `tool_input` as its input; ``stop_reason`` ``tool_use``."""
        tool = _chosen_tool(body)
        name, arguments = tool["name"], tool_input(tool.get("input_schema"))
        number = next(self._ids)
        ident, call_id = f"msg_standin{number}", f"toolu_standin{number}"
        text, encoded = f"Calling {name}.", json.dumps(arguments)
        prompt = prompt_tokens(body["messages"], body.get("system"))
        output = len(text.split()) + len(encoded.split())
        record.prompt_tokens, record.completion_tokens = prompt, output
        usage = {"input_tokens": prompt, "output_tokens": output}
        call = {"type": "tool_use", "id": call_id, "name": name, "input": arguments}
        message = {"id": ident, "type": "message", "role": "assistant", "model": record.model}
        record.status = 200
        if not record.stream:
            done = {
                **message,
                "content": [{"type": "text", "text": text}, call],
                "stop_reason": "tool_use",
                "stop_sequence": None,
                "usage": usage,
            }
            await _send_json(writer, 200, done, partial=mode == "fail_mid_stream")
            return True
        start: _JSON = {**message, "content": [], "stop_reason": None, "stop_sequence": None}
        halves = [encoded[: len(encoded) // 2], encoded[len(encoded) // 2 :]]
        text_block, text_delta = {"type": "text", "text": ""}, {"type": "text_delta", "text": text}
        events: list[_JSON] = [
            {"type": "message_start", "message": {**start, "usage": {**usage, "output_tokens": 1}}},
            {"type": "content_block_start", "index": 0, "content_block": text_block},
            {"type": "ping"},
            {"type": "content_block_delta", "index": 0, "delta": text_delta},
            {"type": "content_block_stop", "index": 0},
            {"type": "content_block_start", "index": 1, "content_block": {**call, "input": {}}},
            *[
                {"type": "content_block_delta", "index": 1,
                 "delta": {"type": "input_json_delta", "partial_json": half}}
                for half in halves
            ],
            {"type": "content_block_stop", "index": 1},
            {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
             "usage": {"output_tokens": output}},
            {"type": "message_stop"},
        ]  # fmt: skip
        lines = [f"event: {event['type']}\ndata: {json.dumps(event)}\n\n" for event in events]
        await self._stream(writer, lines, mode, content_start=3)
        return True


# ---------------------------------------------------------------------- embeddings, Azure, tools

EMBEDDING_DIMENSIONS: Final = 8
"""The length of an embedding vector when the request names no ``dimensions``."""
_AZURE_PATH: Final = re.compile(r"/openai/deployments/([^/]+)/(?:chat/completions|embeddings)")


def embedding_vector(item: str | list[int], dimensions: int) -> list[float]:
    """The stand-in's embedding of one input: ``dimensions`` numbers in [-1, 1) drawn from
    the input's digest, so the same input always has the same vector."""
    seed = hashlib.sha256(json.dumps(item).encode()).digest()
    draw = random.Random(seed)
    return [round(draw.uniform(-1, 1), 6) for _ in range(dimensions)]


def input_tokens(item: str | list[int]) -> int:
    """Tokens the stand-in counts for one embeddings input: a text's words, an array's length."""
    return len(item.split()) if isinstance(item, str) else len(item)


def tool_input(schema: Any) -> _JSON:
    """The input the stand-in gives a tool: per property of its ``input_schema``, "lorem"
    for a string, 1 for an integer, 1.5 for a number, true, [] or {} by type."""
    properties = schema.get("properties") if isinstance(schema, dict) else None
    values: dict[Any, Any] = {
        "integer": 1,
        "number": 1.5,
        "boolean": True,
        "array": [],
        "object": {},
    }
    return {
        name: values.get(spec.get("type") if isinstance(spec, dict) else None, "lorem")
        for name, spec in (properties or {}).items()
    }


def _embedding_inputs(value: Any) -> list[str | list[int]] | None:
    """``input`` as a list of texts or token arrays; None when it is neither."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not value:
        return None
    if all(isinstance(item, int) for item in value):
        return [value]
    if all(isinstance(item, str) for item in value):
        return list(value)
    if all(isinstance(item, list) and all(isinstance(i, int) for i in item) for item in value):
        return list(value)
    return None


def _azure_deployment(path: str) -> str | None:
    """The deployment an Azure OpenAI path names; None for any other path."""
    found = _AZURE_PATH.fullmatch(path)
    return urllib.parse.unquote(found.group(1)) if found else None


def _content_filtered() -> _JSON:
    """Azure's refusal of a prompt its content filter caught."""
    inner = {"code": "ResponsibleAIPolicyViolation", "content_filter_result": {}}
    message = "The response was filtered due to the prompt triggering Azure OpenAI's content "
    message += "management policy."
    error = {"message": message, "type": None, "param": "prompt", "code": "content_filter"}
    return {"error": {**error, "status": 400, "innererror": inner}}


def _calls_a_tool(body: _JSON) -> bool:
    """Whether an Anthropic request gets a tool call: it offers tools, ``tool_choice`` is
    not ``none``, and its last message is the user's own (no ``tool_result`` in it)."""
    choice = body.get("tool_choice") or {}
    messages = body.get("messages") or [{}]
    last = messages[-1]
    content = last.get("content")
    results = isinstance(content, list) and any(
        isinstance(block, dict) and block.get("type") == "tool_result" for block in content
    )
    return (
        bool(body.get("tools"))
        and choice.get("type") != "none"
        and not results
        and (last.get("role") == "user")
    )


def _chosen_tool(body: _JSON) -> _JSON:
    """The tool ``tool_choice`` names, else the first one."""
    tools = body["tools"]
    choice = body.get("tool_choice") or {}
    named: list[_JSON] = [tool for tool in tools if tool.get("name") == choice.get("name")]
    chosen: _JSON = named[0] if choice.get("type") == "tool" and named else tools[0]
    return chosen


def _user_of(body: _JSON) -> str:
    """Whom a call is for: OpenAI's ``user``, Anthropic's ``metadata.user_id``; "" for none."""
    metadata = body.get("metadata")
    user = body.get("user") or (metadata.get("user_id") if isinstance(metadata, dict) else None)
    return user if isinstance(user, str) else ""


def _pieces(text: str) -> list[str]:
    """``text`` in one piece per word, the space before a word kept with it."""
    words = text.split(" ") if text else []
    return [word if index == 0 else " " + word for index, word in enumerate(words)]


def _stop_list(stops: Any) -> list[str]:
    """OpenAI's ``stop`` (a string or a list) or Anthropic's ``stop_sequences``, as a list."""
    if isinstance(stops, str):
        return [stops]
    return [stop for stop in stops or () if isinstance(stop, str)]


def _wrong_key(key: str | None) -> str:
    """A 401 message that repeats the key, so tests see whether a client lets it into text."""
    return f"Incorrect API key provided: {key}" if key else "No API key provided"


def _presented_key(headers: dict[str, str], *, azure: bool = False) -> str | None:
    """The key a request presented: ``api-key`` (Azure, its only header), ``x-api-key``
    (Anthropic) or a Bearer token (OpenAI)."""
    if azure:
        return headers.get("api-key")
    if "x-api-key" in headers:
        return headers["x-api-key"]
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token if scheme.lower() == "bearer" else None


def _error_body(api: Api | None, status: int, message: str) -> _JSON:
    """An error document shaped as ``api`` shapes its errors."""
    if api == "anthropic":
        kinds = {
            400: "invalid_request_error",
            401: "authentication_error",
            404: "not_found_error",
            429: "rate_limit_error",
        }
        error = {"type": kinds.get(status, "api_error"), "message": message}
        return {"type": "error", "error": error}
    kinds = {
        400: "invalid_request_error",
        401: "invalid_request_error",
        429: "requests",
        404: "invalid_request_error",
    }
    codes = {401: "invalid_api_key", 429: "rate_limit_exceeded"}
    error = {"message": message, "type": kinds.get(status, "server_error"), "param": None}
    return {"error": {**error, "code": codes.get(status)}}


async def _read_request(reader: asyncio.StreamReader) -> _Request | None:
    """The next request on a keep-alive connection; None when the client closed it."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial.strip():
            raise
        return None
    request_line, *lines = head.decode("latin-1").split("\r\n")
    method, target, _ = request_line.split(" ", 2)
    headers = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise _Drop  # every client here sends Content-Length
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    path, _, query = target.partition("?")
    return _Request(method, path, headers, body, dict(urllib.parse.parse_qsl(query)))


async def _send_json(
    writer: asyncio.StreamWriter,
    status: int,
    body: _JSON,
    headers: dict[str, str] | None = None,
    *,
    partial: bool = False,
) -> None:
    """One JSON answer; ``partial`` sends its headers and half its body, then drops."""
    payload = json.dumps(body).encode()
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(payload)}\r\n{extra}\r\n"
    )
    if partial:
        writer.write(head.encode() + payload[: len(payload) // 2])
        await writer.drain()
        raise _Drop
    writer.write(head.encode() + payload)
    await writer.drain()


def main(argv: list[str] | None = None) -> None:
    """Serve in the foreground until SIGINT/SIGTERM; the URL goes to stdout first."""
    parser = argparse.ArgumentParser(prog="python -m tests.support.llm_standin")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default="sk-standin", help="'' accepts any key")
    parser.add_argument("--reply-tokens", type=int, default=8)
    args = parser.parse_args(argv)
    standin = LLMStandIn(
        api_key=args.api_key or None, reply_tokens=args.reply_tokens, port=args.port
    )
    done = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: done.set())
    with standin:
        print(standin.url, flush=True)
        done.wait()


if __name__ == "__main__":
    main()
