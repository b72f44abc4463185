"""`RedisLimitStore` against real servers: the Lua scripts give the Python algorithms' numbers,
one EVALSHA per decision, NOSCRIPT reloads, keys expire and stay in one slot, TLS and a
``${secret:...}`` password work, and the CLI sees what the library filled (the contract every
store keeps is in ``test_limit_stores.py``).

The shared server (db 13, a per-test key prefix) is used where nothing else is disturbed;
command counts, ``SCRIPT FLUSH``, TLS and passwords get a private ``redis-server``.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_sync

from revoctl.core.limits import (
    LimitsConfig,
    MemoryLimitStore,
    RateLimiter,
    RateLimitRule,
    RedisLimitStore,
)
from revoctl.core.limits.stores._redis_lua import lua_source, parse_reply, rule_arguments
from revoctl.core.redis import RedisConfig, open_redis
from tests.conftest import run_revoctl
from tests.support.redis_servers import CommandCounter, RedisServer, private_server

pytestmark = pytest.mark.redis

RULES = (
    RateLimitRule(name="api", requests=10, window_seconds=60, burst_multiplier=2.0),
    RateLimitRule(name="sliding", requests=10, window_seconds=60, algorithm="sliding_window"),
    RateLimitRule(name="fixed", requests=10, window_seconds=60, algorithm="fixed_window"),
)


async def open_store(url: str, prefix: str = "revoctl:rl:") -> RedisLimitStore:
    config = RedisConfig(url=url)
    return RedisLimitStore(await open_redis(config), config, prefix=prefix)


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with private_server() as started:
        yield started


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.algorithm.value)
def test_the_lua_scripts_give_the_python_algorithms_numbers(
    redis_url: str, redis_prefix: str, rule: RateLimitRule
) -> None:
    """Each script, with its TIME call fed the test's clock, against the Python twin."""
    client = redis_sync.Redis.from_url(redis_url)
    source = lua_source(rule.algorithm).replace(
        "redis.call('TIME')", "{ARGV[#ARGV - 1], ARGV[#ARGV]}"
    )
    script = client.register_script(source)
    key = f"{redis_prefix}{{twin}}"
    clock = [1_700_000_000.0]
    memory = MemoryLimitStore(clock=lambda: clock[0])
    rng = random.Random(8)
    seconds = 1_700_000_000
    micros = 0
    for _ in range(400):
        step = rng.choice([0, 0, 1, 250_000, 3_000_000, 7_000_000, 40_000_000])
        micros += step
        seconds, micros = seconds + micros // 1_000_000, micros % 1_000_000
        clock[0] = seconds + micros / 1_000_000
        op = rng.choice(["check", "check", "check", "peek", "refund"])
        weight = rng.choice([1, 1, 2, 5, 25])
        expected = memory.apply_now(rule, "twin", op, weight)  # type: ignore[arg-type]
        reply = script(keys=[key], args=[op, weight, 0, *rule_arguments(rule), seconds, micros])
        got = parse_reply(reply, rule.capacity, weight)
        assert tuple(got[:4]) == pytest.approx(tuple(expected[:4])), (op, weight)
        assert got.reset_after == pytest.approx(expected.reset_after)
        assert got.reason == expected.reason
    client.close()


async def test_one_evalsha_per_decision(server: RedisServer) -> None:
    store = await open_store(server.url)
    try:
        for rule in RULES:  # connection set-up and the first load of each script
            await store.apply(rule, "warm", "check", 1)
        counter = CommandCounter(server.port)
        for rule in RULES:
            for op in ("check", "peek", "refund", "check"):
                for i in range(25):
                    await store.apply(rule, f"k{i % 3}", op, 1)  # type: ignore[arg-type]
        assert counter.finish() == {"EVALSHA": 300}
    finally:
        await store.close()


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.algorithm.value)
def test_a_call_sent_again_under_its_receipt_decides_once(
    redis_url: str, redis_prefix: str, rule: RateLimitRule
) -> None:
    """A cluster client sends a call again when its reply was lost: the copy gets the first
    reply, the state moves once, and the receipt expires on its own."""
    client = redis_sync.Redis.from_url(redis_url)
    script = client.register_script(lua_source(rule.algorithm))
    key = f"{redis_prefix}{{{rule.name}:k}}:x"
    args = ["check", 3, 5000, *rule_arguments(rule)]
    first = script(keys=[key, f"{key}:call-1"], args=args)
    again = script(keys=[key, f"{key}:call-1"], args=args)
    assert again == first and parse_reply(first, rule.capacity, 3).remaining == rule.capacity - 3
    other = script(keys=[key, f"{key}:call-2"], args=args)
    assert parse_reply(other, rule.capacity, 3).remaining == rule.capacity - 6
    assert 0 < client.pttl(f"{key}:call-1") <= 5000
    denied = ["check", rule.capacity + 1, 5000, *rule_arguments(rule)]  # changes nothing
    script(keys=[key, f"{key}:call-3"], args=denied)
    assert client.exists(f"{key}:call-3") == 0
    client.close()


async def test_noscript_reloads_the_script(server: RedisServer) -> None:
    store = await open_store(server.url)
    rule = RULES[1]
    assert (await store.apply(rule, "a", "check", 4)).remaining == 6
    admin = server.client()
    admin.script_flush()
    assert (await store.apply(rule, "a", "check", 1)).remaining == 5
    assert admin.info("commandstats")["cmdstat_script|load"]["calls"] >= 1
    admin.close()
    await store.close()


async def test_keys_expire_on_their_own_and_sit_in_one_slot(
    redis_url: str, redis_prefix: str
) -> None:
    from redis.crc import key_slot

    store = await open_store(redis_url, redis_prefix)
    admin = redis_sync.Redis.from_url(redis_url)
    for rule in RULES:
        result = await store.apply(rule, "alice", "check", 3)
        name = store.key(rule, "alice")
        assert name.startswith(f"{redis_prefix}{rule.name}:") and name.endswith("{alice}:alice")
        assert key_slot(name.encode()) == key_slot(b"{alice}")  # every key of the caller's
        ttl_ms = admin.pttl(name)
        assert 0 < ttl_ms <= math.ceil(result.reset_after * 1000) + 1000
        kind = admin.type(name)  # constant size: a short string, or a hash of at most 11 slots
        assert kind == (b"hash" if rule.algorithm == "sliding_window" else b"string")
        assert kind == b"string" or admin.hlen(name) <= 11
    await store.apply(RULES[0], "alice", "refund", 3)  # back to full: nothing left to keep
    assert admin.exists(store.key(RULES[0], "alice")) == 0
    admin.close()
    await store.close()


async def test_sliding_window_state_stays_constant_in_size(
    redis_url: str, redis_prefix: str
) -> None:
    rule = RateLimitRule(name="tiny", requests=1000, window_seconds=1, algorithm="sliding_window")
    store = await open_store(redis_url, redis_prefix)
    admin = redis_sync.Redis.from_url(redis_url)
    for _ in range(300):
        await store.apply(rule, "a", "check", 1)
    assert admin.hlen(store.key(rule, "a")) <= 11
    admin.close()
    await store.close()


def write_config(tmp_path: Path, url: str, prefix: str) -> Path:
    path = tmp_path / "revoctl.toml"
    path.write_text(
        f'[limits]\nstore = "redis"\nkey_prefix = "{prefix}"\n[redis]\nurl = "{url}"\n'
        '[[limits.rules]]\nname = "api_generation"\nrequests = 10\nwindow_seconds = 60\n'
        "burst_multiplier = 2.0\n"
    )
    return path


async def test_inspect_from_another_process_shows_what_the_library_filled(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    from revoctl.core import load_services

    config = write_config(tmp_path, redis_url, redis_prefix)
    async with load_services(config, role="cli") as svc:
        for _ in range(7):
            await svc.limiter.check_rate_limit("api_generation", "carol")
    args = ["--config", str(config), "limits", "inspect", "api_generation"]
    first = run_revoctl([*args, "--key", "carol", "-o", "json"])
    assert first.returncode == 0, first.stderr
    seen = json.loads(first.stdout)
    assert (seen["key"], seen["limit"], seen["remaining"]) == ("carol", 20, 13)
    again = json.loads(run_revoctl([*args, "--key", "carol", "-o", "json"]).stdout)
    assert again["remaining"] == 13  # inspecting consumed nothing
    every = json.loads(run_revoctl([*args, "-o", "json"]).stdout)
    assert [(s["key"], s["remaining"]) for s in every] == [("carol", 13)]


def test_limits_test_on_redis_with_a_secret_password(cli, tmp_path: Path) -> None:
    password = "redis-pw-canary-7781"
    with private_server(password=password) as server:
        stored = cli("secrets", "set", "redis-password", input=password)
        assert stored.exit_code == 0, stored.stderr
        url = f"redis://:${{secret:redis-password}}@127.0.0.1:{server.port}/0"
        config = write_config(tmp_path, url, "revoctl:rl:")
        result = cli(
            "--config", str(config), "limits", "test", "api_generation", "--key", "a",
            "--count", "25", "-o", "json",
        )  # fmt: skip
        assert result.exit_code == 1, result.stderr
        document = json.loads(result.stdout)
        assert (document["allowed"], document["denied"]) == (20, 5)
        assert 5.0 < document["last"]["retry_after"] <= 6.0
        assert password not in result.stdout + result.stderr
        health = cli("--config", str(config), "health", "-o", "json")
        limiter = json.loads(health.stdout)["services"]["rate_limiter"]
        assert limiter["status"] == "healthy"
        assert (
            limiter["target"]
            == f"redis redis://:${{secret:redis-password}}@127.0.0.1:{server.port}/0"
        )
        assert password not in health.stdout


async def test_tls_with_a_private_ca(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import trustme

    from tests.support.redis_servers import free_port

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ca_path, cert_path, key_path = (tmp_path / n for n in ("ca.pem", "cert.pem", "key.pem"))
    ca.cert_pem.write_to_path(str(ca_path))
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    port = free_port(7140, 7149)
    tls = [
        "--tls-port", str(port), "--tls-cert-file", str(cert_path), "--tls-key-file",
        str(key_path), "--tls-ca-cert-file", str(ca_path), "--tls-auth-clients", "no",
    ]  # fmt: skip
    with private_server(*tls):
        monkeypatch.setenv("SSL_CERT_FILE", str(ca_path))
        store = await open_store(f"rediss://127.0.0.1:{port}/0")
        limiter = RateLimiter(LimitsConfig(store="redis", rules=RULES), store=store)
        results = [await limiter.check_rate_limit("api", "tls") for _ in range(21)]
        assert [r.allowed for r in results].count(True) == 20
        assert all(r.reason is None or "exceeds" in r.reason for r in results)
        await limiter.close()
