"""SIGTERM on ``revoctl serve --workers 2`` (limits and breakers on Redis, usage in
PostgreSQL, the LLM stand-in upstream), as an orchestrator stops a pod: the drain.

* Every request accepted before the signal is answered completely (its stream ends with
  ``[DONE]``) and has its ``request_logs`` row once the server is gone.
* The whole shutdown keeps to ``[gateway] drain_seconds``: streams that would outlast it
  are cut, and the server is gone within it (plus a margin taken from it).
* With a large bound, the server exits as soon as its last request has ended.
* A database that stops answering does not hold the exit past the bound either (closing
  its pooled connections waited on it for good): a worker still running past it is killed.
* From the signal on (once the workers have seen it: uvicorn looks every 0.1 s), a new
  connection is refused, never left waiting for a worker that will not accept it: a load
  balancer's ``/health/ready`` probe never sees the instance ready again, and a new
  request goes elsewhere at once.

The upstream streams one word every `CHUNK_DELAY` seconds, so how long a stream lasts is
set by its ``max_tokens``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.support.fleet import ANTHROPIC_KEY, OPENAI_KEY, Fleet, build_fleet, chat
from tests.support.llm_standin import LLMStandIn
from tests.support.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

CHUNK_DELAY = 0.2
"""Seconds between the chunks of an upstream stream."""
SHORT_TOKENS = 8
SHORT_STREAM_SECONDS = (SHORT_TOKENS + 4) * CHUNK_DELAY
"""How long a stream of `SHORT_TOKENS` words lasts upstream: one chunk per word, plus the
role, finish and usage chunks and ``[DONE]``."""
LONG_TOKENS = 100
"""A stream of 100 words lasts about 20 s: longer than the drain bound under test."""
DRAIN_SECONDS = 5.0
EXIT_MARGIN = DRAIN_SECONDS
"""Beyond the drain bound, for the processes to exit (the interpreter's own teardown, the
supervisor's half-second loop) on a busy 2-core machine: typically 4.1-4.4 s in all, once
8.0 s while the shared machine was loaded."""


@dataclass
class Outcome:
    request_id: str
    done: bool
    """The stream ended with ``data: [DONE]``."""
    ended: float
    """When the client had read the whole answer, or saw it break (monotonic)."""


@dataclass
class Probe:
    """A request on a new connection during the drain: what it got, and when."""

    started: float
    ended: float
    found: str
    """The status, ``refused`` (connection refused) or the error that ended it."""


@pytest.fixture
def upstreams() -> Iterator[tuple[LLMStandIn, LLMStandIn]]:
    with (
        LLMStandIn(api_key=OPENAI_KEY, reply_tokens=LONG_TOKENS) as openai,
        LLMStandIn(api_key=ANTHROPIC_KEY) as claude,
    ):
        openai.chunk_delay = CHUNK_DELAY
        yield openai, claude


@pytest.fixture
def start_fleet(
    tmp_path: Path,
    postgres_url: str,
    redis_url: str,
    redis_prefix: str,
    upstreams: tuple[LLMStandIn, LLMStandIn],
) -> Iterator[Callable[..., Fleet]]:
    """Starts the fleet with ``[gateway] drain_seconds`` (on ``database_url``, else the
    test's database); stops it if a test did not."""
    openai, claude = upstreams
    started: list[Fleet] = []

    def start(drain_seconds: float, database_url: str | None = None, workers: int = 2) -> Fleet:
        fleet = build_fleet(
            tmp_path,
            postgres_url=database_url or postgres_url,
            redis_url=redis_url,
            prefix=redis_prefix,
            openai=openai,
            anthropic=claude,
            drain_seconds=drain_seconds,
            workers=workers,
        )
        started.append(fleet)
        fleet.start()
        return fleet

    yield start
    for fleet in started:
        if fleet.process is not None and fleet.process.poll() is None:
            fleet.stop()


def stream(fleet: Fleet, key: str, max_tokens: int) -> Outcome:
    request_id = f"drain-{uuid.uuid4().hex[:12]}"
    body = {
        "model": "gpt",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "max_tokens": max_tokens,
    }
    headers = {"x-request-id": request_id}
    try:
        with (
            fleet.client(key) as client,
            client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as answer,
        ):
            text = answer.read().decode()
        done = answer.status_code == 200 and text.rstrip().endswith("data: [DONE]")
    except httpx.HTTPError:  # cut: the connection broke mid-answer
        done = False
    return Outcome(request_id, done, time.monotonic())


def terminate(fleet: Fleet, timeout: float) -> tuple[float, str]:
    """SIGTERM to the server's process group; (seconds until it had exited, its output).
    Still running after ``timeout``, it is killed and the test fails."""
    assert fleet.process is not None
    signalled = time.monotonic()
    os.killpg(fleet.process.pid, signal.SIGTERM)
    try:
        fleet.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(fleet.process.pid, signal.SIGKILL)
        fleet.process.wait()
        pytest.fail(f"the server was still running {timeout:g}s after SIGTERM")
    return time.monotonic() - signalled, fleet.output()


def logged_request_ids(postgres_url: str) -> set[str]:
    async def fetch() -> set[str]:
        conn = await asyncpg.connect(postgres_url.replace("+asyncpg", ""))
        try:
            return {row[0] for row in await conn.fetch("SELECT request_id FROM request_logs")}
        finally:
            await conn.close()

    return asyncio.run(fetch())


def test_sigterm_answers_what_it_accepted_and_exits_within_drain_seconds(
    start_fleet: Callable[..., Fleet],
    upstreams: tuple[LLMStandIn, LLMStandIn],
    postgres_url: str,
) -> None:
    openai, _ = upstreams
    fleet = start_fleet(DRAIN_SECONDS)
    key = fleet.new_key("drain-test")
    with ThreadPoolExecutor(max_workers=8) as pool:
        short = [pool.submit(stream, fleet, key, SHORT_TOKENS) for _ in range(5)]
        long = [pool.submit(stream, fleet, key, LONG_TOKENS) for _ in range(2)]
        openai.wait_for_requests(7, timeout=30)  # every request accepted, its stream begun
        exited, _ = terminate(fleet, timeout=DRAIN_SECONDS + 2 * EXIT_MARGIN)
        answered = [f.result(timeout=60) for f in short]
        cut = [f.result(timeout=60) for f in long]
    print(f"\nexited {exited:.2f} s after SIGTERM (drain_seconds = {DRAIN_SECONDS:g})")
    assert exited <= DRAIN_SECONDS + EXIT_MARGIN
    assert all(outcome.done for outcome in answered)
    assert not any(outcome.done for outcome in cut)  # past the bound, and visibly broken
    assert {outcome.request_id for outcome in answered} <= logged_request_ids(postgres_url)


def test_the_server_exits_when_its_last_request_ends_and_refuses_new_connections_meanwhile(
    start_fleet: Callable[..., Fleet],
    upstreams: tuple[LLMStandIn, LLMStandIn],
    postgres_url: str,
) -> None:
    openai, _ = upstreams
    drain_seconds = 30.0
    fleet = start_fleet(drain_seconds)
    key = fleet.new_key("drain-test")
    probes: list[Probe] = []
    stop_probing = threading.Event()

    def probe() -> None:
        """New connections, one after the other, until the server is gone."""
        question = {"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}
        while not stop_probing.is_set():
            started = time.monotonic()
            try:  # a new client, so a new connection, each time
                with fleet.client(key) as client:
                    if len(probes) % 2:
                        status = client.post("/v1/chat/completions", json=question).status_code
                    else:
                        status = client.get("/health/ready").status_code
                found = str(status)
            except httpx.ConnectError:
                found = "refused"
            except httpx.HTTPError as exc:  # accepted, then dropped
                found = type(exc).__name__
            probes.append(Probe(started, time.monotonic(), found))
            time.sleep(0.05)

    with ThreadPoolExecutor(max_workers=8) as pool:
        streams: list[Future[Outcome]] = [
            pool.submit(stream, fleet, key, SHORT_TOKENS) for _ in range(5)
        ]
        openai.wait_for_requests(5, timeout=30)
        prober = threading.Thread(target=probe)
        signalled = time.monotonic()
        prober.start()
        try:
            exited, stderr = terminate(fleet, timeout=2 * drain_seconds)
        finally:
            stop_probing.set()
            prober.join()
        answered = [f.result(timeout=60) for f in streams]
    last_answer = max(outcome.ended for outcome in answered)
    outcomes = [probe.found for probe in probes]
    print(
        f"\nexited {exited:.2f} s after SIGTERM, {signalled + exited - last_answer:.2f} s after "
        f"the last stream ended (drain_seconds = {drain_seconds:g}); new connections meanwhile: "
        f"{ {found: outcomes.count(found) for found in sorted(set(outcomes))} }"
    )
    assert all(outcome.done for outcome in answered)
    assert "Traceback" not in stderr
    assert signalled + exited - last_answer <= SHORT_STREAM_SECONDS  # not at the bound
    assert {outcome.request_id for outcome in answered} <= logged_request_ids(postgres_url)

    # A connection that reached a worker's queue in the instant before it stopped listening
    # is dropped when it does, at once; none may wait on the drain, as all did before.
    dropped = [p for p in probes if p.found not in ("refused", "503", "200")]
    assert all(p.ended - p.started < SHORT_STREAM_SECONDS / 2 for p in dropped), probes
    first_refusal = next(p.ended for p in probes if p.found in ("refused", "503"))
    assert first_refusal < last_answer  # refused while the drain was still under way
    assert all(p.found != "200" for p in probes if p.started > first_refusal), outcomes


@pytest.mark.parametrize("workers", [1, 2])
def test_a_database_that_stops_answering_does_not_hold_the_exit_past_the_bound(
    start_fleet: Callable[..., Fleet], postgres_url: str, workers: int
) -> None:
    """Usage rows to flush and PostgreSQL no longer answering (behind a proxy that stops
    forwarding): a worker's close waited on its pooled connections for good. The server is
    still gone within the bound: with several workers by the supervisor's backstop, with
    one (no supervisor) by the database's own bound on closing its connections
    (``connect_timeout``, 5 s; without it 2 of 3 runs were still running at 15 s)."""
    url = make_url(postgres_url)
    with TcpProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        fleet = start_fleet(DRAIN_SECONDS, proxy.url_for(postgres_url), workers=workers)
        with fleet.client(fleet.new_key("drain-test")) as client:
            assert {chat(client).status_code for _ in range(4)} == {200}
        proxy.hang()
        exited, _ = terminate(fleet, timeout=DRAIN_SECONDS + 2 * EXIT_MARGIN)
    print(f"\nexited {exited:.2f} s after SIGTERM (drain_seconds = {DRAIN_SECONDS:g})")
    assert exited <= DRAIN_SECONDS + EXIT_MARGIN
