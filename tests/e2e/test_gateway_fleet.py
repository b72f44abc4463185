"""The gateway end to end, with real processes: ``revoctl serve --workers 2`` on PostgreSQL and
Redis, in front of two LLM stand-ins (OpenAI-style and Anthropic-style, each with its own key),
driven by the official openai client and by concurrent raw requests, while ``revoctl`` commands
in processes of their own drive the same state.

Bounds ("within a second") are the CONTRACT's; each test configures the intervals that make
them hold (breakers poll every 0.25 s, keys refresh every 0.25 s, secret changes are read
every second) and checks the state once the bound has passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from revoctl.runtime.metrics import METRICS_SYNC_SECONDS
from tests.support.fleet import OPENAI_KEY, Fleet, build_fleet, chat
from tests.support.llm_standin import LLMStandIn

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

CONTRACT_BOUND = 1.0
"""Seconds within which a trip, a reset or a revocation reaches every instance."""


def make_fleet(
    tmp_path: Path,
    postgres_url: str,
    redis_url: str,
    redis_prefix: str,
    upstreams: tuple[LLMStandIn, LLMStandIn],
    **limits: int,
) -> Fleet:
    openai, claude = upstreams
    return build_fleet(
        tmp_path,
        postgres_url=postgres_url,
        redis_url=redis_url,
        prefix=redis_prefix,
        openai=openai,
        anthropic=claude,
        **limits,
    )


@pytest.fixture
def fleet(
    tmp_path: Path,
    postgres_url: str,
    redis_url: str,
    redis_prefix: str,
    upstreams: tuple[LLMStandIn, LLMStandIn],
) -> Iterator[Fleet]:
    running = make_fleet(tmp_path, postgres_url, redis_url, redis_prefix, upstreams)
    running.start()
    try:
        yield running
    finally:
        running.stop()


def in_parallel(fn: Any, count: int) -> list[Any]:
    with ThreadPoolExecutor(max_workers=min(count, 16)) as pool:
        return list(pool.map(lambda _: fn(), range(count)))


def test_the_official_client_streamed_and_not_and_the_cli_sees_the_fleet(fleet: Fleet) -> None:
    import openai

    key = fleet.new_key("client-test")
    sdk = openai.OpenAI(base_url=f"{fleet.url}/v1", api_key=key, max_retries=0)
    answer = sdk.chat.completions.create(
        model="gpt", messages=[{"role": "user", "content": "hello"}], max_tokens=5
    )
    assert answer.model == "gpt" and answer.usage is not None
    assert answer.usage.completion_tokens == 5
    streamed = sdk.chat.completions.create(
        model="gpt",
        messages=[{"role": "user", "content": "hello"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(streamed)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).split()
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 8
    assert fleet.openai.requests[-1].api_key == OPENAI_KEY
    # The operator's view: each worker's connections, from the server and from its reports.
    deadline = time.monotonic() + 20
    pool: dict[str, Any] = {}
    while time.monotonic() < deadline:
        pool = fleet.cli_json("db", "pool")
        runtime = {i["instance"] for i in pool["instances"] if i["instance"].endswith(":runtime")}
        if len(runtime) >= fleet.workers:
            break
        time.sleep(0.5)
    names = {row["application_name"] for row in pool["connections"]}
    assert len({n for n in names if n.endswith(":runtime")}) >= fleet.workers
    assert not any(i["stale"] for i in pool["instances"])
    status = fleet.cli_json("breakers", "status")
    assert {b["name"] for b in status} >= {"openai_api", "anthropic_api", "database", "redis"}


def test_trip_and_reset_reach_every_worker_within_a_second(fleet: Fleet) -> None:
    key = fleet.new_key("trip-test")
    with fleet.client(key) as client:
        assert {chat(client).json()["model"] for _ in range(6)} == {"gpt"}
        tripped = fleet.cli("breakers", "trip", "openai_api", "--reason", "INC-7 upstream 5xx")
        assert tripped.returncode == 0, tripped.stderr
        time.sleep(CONTRACT_BOUND)
        fleet.openai.reset()
        answers = in_parallel(lambda: chat(client), 24)
        assert {r.status_code for r in answers} == {200}
        assert {r.json()["model"] for r in answers} == {"sonnet"}  # every worker falls back
        assert fleet.openai.requests == []  # and no worker calls the tripped provider
        reset = fleet.cli("breakers", "reset", "openai_api")
        assert reset.returncode == 0, reset.stderr
        time.sleep(CONTRACT_BOUND)
        answers = in_parallel(lambda: chat(client), 24)
        assert {r.json()["model"] for r in answers} == {"gpt"}
    history = fleet.cli_json("breakers", "history", "openai_api")
    assert history[0]["to"] == "closed" and history[1]["to"] == "forced_open"


def test_a_failing_provider_opens_its_breaker_for_the_whole_fleet(fleet: Fleet) -> None:
    key = fleet.new_key("fault-test")
    fleet.openai.mode = "error500"
    with fleet.client(key) as client:
        answers = in_parallel(lambda: chat(client), 12)
        assert {r.status_code for r in answers} == {200}
        assert {r.json()["model"] for r in answers} == {"sonnet"}  # each failure fell back
        [openai_api] = fleet.cli_json("breakers", "status", "openai_api")
        assert openai_api["state"] == "open"  # 3 consecutive failures, shared with the fleet
        fleet.openai.mode = "ok"
        time.sleep(CONTRACT_BOUND)
        fleet.openai.reset()
        answers = in_parallel(lambda: chat(client), 12)
        assert {r.json()["model"] for r in answers} == {"sonnet"}
        assert fleet.openai.requests == []  # open everywhere: no worker tries it until recovery
    metrics = httpx.get(f"{fleet.url}/metrics").text
    assert 'revoctl_breaker_state{breaker="openai_api"} 2.0' in metrics
    assert 'revoctl_fallbacks_total{fallback="sonnet",model="gpt"}' in metrics


def test_limits_hold_exactly_across_workers(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_prefix: str, upstreams: Any
) -> None:
    """30 concurrent requests against 10 per minute: exactly 10 pass, whichever worker takes
    them. Then the token rule: each request is charged its bound up front, so exactly as many
    pass as the bound allows, and after the answers the bucket holds what usage left."""
    rpm, tpm = 10, 2000
    fleet = make_fleet(tmp_path, postgres_url, redis_url, redis_prefix, upstreams, rpm=rpm, tpm=tpm)
    fleet.start()
    try:
        with fleet.client(fleet.new_key("rpm-test")) as client:
            statuses = in_parallel(lambda: chat(client, max_tokens=8).status_code, 30)
        assert statuses.count(200) == rpm and statuses.count(429) == 30 - rpm
        [bucket] = [fleet.cli_json("limits", "inspect", "rpm", "--key", "rpm-test")]
        assert bucket["remaining"] == 0

        # Tokens: "hello there" is 11 bytes: bound = 8 (reply) + 8 (message) + 4 + 11 + 300.
        charge = 8 + 8 + len("user") + len("hello there") + 300
        fleet.openai.delay = 0.5  # every answer waits, so every charge lands before a refund
        with fleet.client(fleet.new_key("tpm-test")) as client:
            answers = in_parallel(lambda: chat(client, max_tokens=300), 10)
        passed = [r for r in answers if r.status_code == 200]
        assert len(passed) == tpm // charge
        assert all(r.status_code == 429 for r in answers if r not in passed)
        used = sum(r.json()["usage"]["total_tokens"] for r in passed)
        tokens = fleet.cli_json("limits", "inspect", "tpm", "--key", "tpm-test")
        assert tokens["remaining"] == tpm - used  # the unused part of each charge came back
    finally:
        fleet.stop()


def test_a_rotated_provider_key_reaches_every_worker(fleet: Fleet) -> None:
    key = fleet.new_key("rotate-test")
    with fleet.client(key) as client:
        assert chat(client).json()["model"] == "gpt"
        fleet.openai.api_key = "sk-openai-rotated-0c1d2e"
        rotated = fleet.cli("secrets", "rotate", "openai-api-key", "--stdin",
                            stdin="sk-openai-rotated-0c1d2e")  # fmt: skip
        assert rotated.returncode == 0, rotated.stderr
        time.sleep(2 * CONTRACT_BOUND)  # workers read secret changes once a second
        fleet.openai.reset()
        answers = in_parallel(lambda: chat(client), 12)
        assert {r.json()["model"] for r in answers} == {"gpt"}
        assert {r.api_key for r in fleet.openai.requests} == {"sk-openai-rotated-0c1d2e"}


def test_a_revoked_key_is_refused_everywhere_within_a_second(fleet: Fleet) -> None:
    key = fleet.new_key("revoke-test")
    with fleet.client(key) as client:
        assert {r.status_code for r in in_parallel(lambda: chat(client), 8)} == {200}
        assert fleet.cli("keys", "revoke", "revoke-test").returncode == 0
        time.sleep(CONTRACT_BOUND)
        assert {r.status_code for r in in_parallel(lambda: chat(client), 16)} == {401}


def test_usage_and_cost_rows_match_what_the_provider_reported(
    fleet: Fleet, postgres_url: str
) -> None:
    key = fleet.new_key("usage-test")
    with fleet.client(key) as client:
        answers = in_parallel(lambda: chat(client, user="alice", max_tokens=6), 10)
        with client.stream("POST", "/v1/chat/completions", json={
            "model": "gpt", "messages": [{"role": "user", "content": "a b c"}], "stream": True,
        }) as streamed:  # fmt: skip
            assert streamed.read().decode().rstrip().endswith("data: [DONE]")
    assert {r.status_code for r in answers} == {200}
    reported = [(r.prompt_tokens, r.completion_tokens) for r in fleet.openai.requests]

    async def rows() -> list[Any]:
        conn = await asyncpg.connect(postgres_url.replace("+asyncpg", ""))
        try:
            return list(
                await conn.fetch(
                    "SELECT u.prompt_tokens, u.completion_tokens, u.estimated_cost, r.api_key_id "
                    "FROM model_usage u JOIN request_logs r USING (request_id) ORDER BY u.id"
                )
            )
        finally:
            await conn.close()

    deadline = time.monotonic() + 15
    found: list[Any] = []
    while time.monotonic() < deadline and len(found) < 11:
        found = asyncio.run(rows())
        time.sleep(0.3)
    assert sorted((r[0], r[1]) for r in found) == sorted(reported)  # the stream's row too
    for prompt, completion, cost, key_name in found:
        expected = (prompt * 0.5 + completion * 1.5) / 1000
        assert float(cost) == pytest.approx(expected, abs=1e-6)
        assert key_name == "usage-test"


def test_a_worker_killed_mid_stream_loses_no_other_request(fleet: Fleet) -> None:
    """Every stream has read its first chunk when the worker holding the first one is
    killed: exactly its streams break, and exactly the other worker's end with [DONE]."""
    key = fleet.new_key("kill-test")
    fleet.openai.chunk_delay = 0.2  # streams of 12 events that last about 2.4 s
    streams = 8
    client_ports = [0] * streams
    all_started = threading.Barrier(streams + 1, timeout=30)  # every first chunk, and the test

    def stream(index: int) -> str:
        try:
            with fleet.client(key) as client, client.stream(
                "POST", "/v1/chat/completions",
                json={"model": "gpt", "messages": [{"role": "user", "content": "hi"}],
                      "stream": True},
            ) as response:  # fmt: skip
                chunks = response.iter_bytes()
                body = next(chunks)
                network = response.extensions["network_stream"]
                client_ports[index] = network.get_extra_info("client_addr")[1]
                all_started.wait()
                body += b"".join(chunks)
            return "done" if body.decode().rstrip().endswith("data: [DONE]") else "truncated"
        except httpx.HTTPError:
            return "cut"  # the connection to the killed worker

    with ThreadPoolExecutor(max_workers=streams) as pool:
        futures = [pool.submit(stream, index) for index in range(streams)]
        all_started.wait()
        holders = {pid: peer_ports(pid) for pid in fleet.worker_pids()}
        [victim] = [pid for pid, ports in holders.items() if client_ports[0] in ports]
        os.kill(victim, signal.SIGKILL)
        outcomes = [f.result(timeout=60) for f in futures]
    # A stream either ends with [DONE] or visibly breaks: the killed worker's, and only those.
    assert outcomes == ["cut" if port in holders[victim] else "done" for port in client_ports]
    fleet.openai.chunk_delay = 0.0
    with fleet.client(key) as client:  # and every request after the kill is answered
        assert {r.status_code for r in in_parallel(lambda: chat(client), 12)} == {200}


def peer_ports(pid: int) -> set[int]:
    """The remote ports of the TCP connections process ``pid`` holds (from ``/proc``)."""
    sockets = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):  # an fd closed since the listing
            target = os.readlink(fd)
            if target.startswith("socket:["):
                sockets.add(target.removeprefix("socket:[").removesuffix("]"))
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()  # sl local_address rem_address st ... uid timeout inode
            if fields[9] in sockets:
                ports.add(int(fields[2].rsplit(":", 1)[1], 16))
    return ports


def test_shutdown_finishes_requests_in_flight_and_flushes_usage(
    fleet: Fleet, postgres_url: str
) -> None:
    key = fleet.new_key("shutdown-test")
    fleet.openai.delay = 1.0
    with ThreadPoolExecutor(max_workers=4) as pool, fleet.client(key) as client:
        futures = [pool.submit(chat, client) for _ in range(4)]
        time.sleep(0.5)  # the requests are in flight, waiting on the provider
        stderr = fleet.stop()
        assert {f.result(timeout=60).status_code for f in futures} == {200}
    assert "Traceback" not in stderr

    async def count() -> int:
        conn = await asyncpg.connect(postgres_url.replace("+asyncpg", ""))
        try:
            return int(await conn.fetchval("SELECT count(*) FROM request_logs"))
        finally:
            await conn.close()

    assert asyncio.run(count()) == 4  # every request's row, flushed on the way out


def test_metrics_merge_every_worker(fleet: Fleet) -> None:
    key = fleet.new_key("metrics-test")
    with fleet.client(key) as client:
        in_parallel(lambda: chat(client), 20)
    text = httpx.get(f"{fleet.url}/metrics").text
    total = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("revoctl_http_requests_total{") and 'status="200"' in line
    )
    assert total == 20  # whichever worker answers the scrape, it counts both
    assert json.loads(httpx.get(f"{fleet.url}/health").text)["status"] in ("healthy", "degraded")


T = TypeVar("T")

METRICS_BOUND = CONTRACT_BOUND + METRICS_SYNC_SECONDS
"""A trip reaches every worker within the CONTRACT's bound, and each worker folds it into its
metrics at its next sync; a scrape merges every worker's last sync."""


def scrape(fleet: Fleet) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``/metrics`` on a new connection (answered by whichever worker accepts it, merging
    every worker's samples), by sample name and labels."""
    text = httpx.get(f"{fleet.url}/metrics", timeout=10).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def breaker_view(fleet: Fleet, name: str) -> tuple[float | None, dict[tuple[str, ...], float]]:
    """``revoctl_breaker_state`` for ``name`` and its transitions, (from, to, source) -> count."""
    samples = scrape(fleet)
    transitions = {
        (labels["from"], labels["to"], labels["source"]): value
        for (sample, pairs), value in samples.items()
        if sample == "revoctl_breaker_transitions_total"
        and (labels := dict(pairs))["breaker"] == name
    }
    return samples.get(("revoctl_breaker_state", (("breaker", name),))), transitions


def settles(read: Callable[[], T], expected: T, within: float) -> None:
    """Wait until ``read()`` gives ``expected``; fails with what it gave past ``within`` s."""
    deadline = time.monotonic() + within
    while (seen := read()) != expected and time.monotonic() < deadline:
        time.sleep(0.1)
    assert seen == expected


def test_breaker_state_metric_follows_a_trip_in_workers_that_never_called_the_breaker(
    fleet: Fleet,
) -> None:
    def state() -> float | None:
        return breaker_view(fleet, "openai_api")[0]

    def transitions() -> dict[tuple[str, ...], float]:
        return breaker_view(fleet, "openai_api")[1]

    forced, closed = 3.0, 0.0
    assert breaker_view(fleet, "openai_api") == (closed, {})
    tripped = fleet.cli("breakers", "trip", "openai_api", "--reason", "INC-9 upstream 5xx")
    assert tripped.returncode == 0, tripped.stderr
    settles(state, forced, 2 * METRICS_BOUND)
    followed = {("closed", "forced_open", "fleet"): float(fleet.workers)}  # one per worker
    settles(transitions, followed, 2 * METRICS_BOUND)
    for _ in range(2 * fleet.workers):  # whichever worker answers the scrape says the same
        assert breaker_view(fleet, "openai_api") == (forced, followed)
    health = httpx.get(f"{fleet.url}/health").json()["services"]["circuit_breakers"]
    assert health["breakers"]["openai_api"] == "forced_open"

    reset = fleet.cli("breakers", "reset", "openai_api")
    assert reset.returncode == 0, reset.stderr
    settles(state, closed, 2 * METRICS_BOUND)  # every live worker's value: the max is 0
    followed[("forced_open", "closed", "fleet")] = float(fleet.workers)
    settles(transitions, followed, 2 * METRICS_BOUND)
    health = httpx.get(f"{fleet.url}/health").json()["services"]["circuit_breakers"]
    assert health["breakers"]["openai_api"] == "closed"
    assert fleet.openai.requests == []  # no request used the breaker in any worker


def test_a_breaker_opened_by_one_workers_failures_counts_local_there_and_fleet_elsewhere(
    fleet: Fleet,
) -> None:
    key = fleet.new_key("local-trip")
    fleet.openai.mode = "error500"
    with fleet.client(key) as client:  # one kept-alive connection: every request, one worker
        for _ in range(3):  # failure_threshold = 3
            assert chat(client).json()["model"] == "sonnet"
    expected = {
        ("closed", "open", "local"): 1.0,  # the worker whose calls failed
        ("closed", "open", "fleet"): float(fleet.workers - 1),  # each that followed its trip
    }
    settles(lambda: breaker_view(fleet, "openai_api"), (2.0, expected), 2 * METRICS_BOUND)
    [openai_api] = fleet.cli_json("breakers", "status", "openai_api")
    assert openai_api["state"] == "open"
    assert breaker_view(fleet, "openai_api") == (2.0, expected)  # counted once, not again
