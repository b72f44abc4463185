"""`SecretManager.get_secret`: the cached path against in-memory anchors, and cold reads
against the Key Vault stand-in next to the bare SDK, in the same run.

* cached: ``await manager.get_secret(name)`` on a warm cache, per call, against a plain
  dict lookup, ``cachetools.TTLCache`` (when installed, else ``functools.lru_cache``) and
  awaiting a coroutine that returns at once (the floor for any ``async`` getter);
* cold: ``get_secret`` with ``cache_ttl_seconds = 0`` (every call goes to the vault) on the
  stand-in over HTTPS, through the real SDK and ``DefaultAzureCredential`` (managed
  identity), against ``SecretClient.get_secret`` on its own; HTTPS requests per read are
  counted by the stand-in and must be 1 once the token is cached.

Prints per-call figures and the ratios revoctl / anchor.

    python benchmarks/secrets_bench.py [--calls 200000] [--reads 100]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.support

from _timing import p95, time_async
from azure.identity.aio import DefaultAzureCredential
from azure.keyvault.secrets.aio import SecretClient

from revoctl.core import SecretConfig
from revoctl.core.secrets import SecretManager
from tests.support.keyvault import KeyVaultStandIn

NAME = "openai-api-key"
VALUE = "sk-bench-" + "x" * 40


async def per_call_ns(fn: Callable[[], Awaitable[object]], calls: int) -> float:
    """Best of 5 runs of ``calls`` awaited calls, in ns per call."""
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter_ns()
        for _ in range(calls):
            await fn()
        best = min(best, (time.perf_counter_ns() - start) / calls)
    return best


def sync_per_call_ns(fn: Callable[[], object], calls: int) -> float:
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter_ns()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter_ns() - start) / calls)
    return best


async def cached(calls: int, home: Path) -> None:
    config = SecretConfig(cache_ttl_seconds=3600)
    async with SecretManager(config, home=home) as manager:
        await manager.set_secret(NAME, VALUE)
        await manager.get_secret(NAME)  # warm
        revoctl_ns = await per_call_ns(lambda: manager.get_secret(NAME), calls)
        health = await manager.health_check()

    table = {NAME: VALUE}
    anchors: dict[str, float] = {"dict lookup": sync_per_call_ns(lambda: table[NAME], calls)}
    if importlib.util.find_spec("cachetools"):
        from cachetools import TTLCache

        ttl_cache: TTLCache[str, str] = TTLCache(maxsize=1024, ttl=3600)
        ttl_cache[NAME] = VALUE
        anchors["cachetools.TTLCache"] = sync_per_call_ns(lambda: ttl_cache[NAME], calls)
    else:
        lookup = functools.lru_cache(maxsize=1024)(table.__getitem__)
        lookup(NAME)
        anchors["functools.lru_cache (no cachetools)"] = sync_per_call_ns(
            lambda: lookup(NAME), calls
        )

    async def immediate() -> str:
        return VALUE

    anchors["await of a coroutine returning at once"] = await per_call_ns(immediate, calls)

    print(f"cached get_secret, {calls} calls, best of 5 (hit rate {health['cache']['hit_rate']})")
    print(f"  {'revoctl SecretManager.get_secret':42} {revoctl_ns:8.0f} ns/call")
    for label, ns in anchors.items():
        print(f"  {label:42} {ns:8.0f} ns/call   revoctl/anchor = {revoctl_ns / ns:5.1f}x")


def summary(samples: list[float]) -> tuple[float, float]:
    return statistics.median(samples), p95(samples)


async def cold(reads: int, home: Path, vault: KeyVaultStandIn) -> None:
    vault.seed(NAME, VALUE)
    config = SecretConfig.model_validate(
        {
            "provider": "azure_key_vault",
            "cache_ttl_seconds": 0,
            "azure": {"vault_url": vault.url, "verify_challenge_resource": False},
        }
    )
    async with SecretManager(config, home=home) as manager:
        await manager.get_secret(NAME)  # challenge + token, then the read
        vault.reset_counters()
        revoctl_ms = await time_async(lambda: manager.get_secret(NAME), reads, warm_up=False)
        per_read = vault.secret_requests / reads
        handshakes = vault.connections / reads
        tokens = vault.token_requests

    credential = DefaultAzureCredential(connection_verify=vault.ca_path)
    client = SecretClient(
        vault.url, credential, verify_challenge_resource=False, connection_verify=vault.ca_path
    )
    async with credential, client:
        await client.get_secret(NAME)
        vault.reset_counters()
        bare_ms = await time_async(lambda: client.get_secret(NAME), reads, warm_up=False)
        bare_per_read = vault.secret_requests / reads
        bare_handshakes = vault.connections / reads

    assert per_read == 1 and tokens == 0, (per_read, tokens)
    (r_med, r_p95), (b_med, b_p95) = summary(revoctl_ms), summary(bare_ms)
    print(f"cold get_secret against the Key Vault stand-in (HTTPS), {reads} reads each")
    print(
        f"  revoctl  HTTPS requests/read = {per_read:.2f}, token requests = {tokens}, "
        f"new TLS connections/read = {handshakes:.2f}"
    )
    print(
        f"  bare SDK HTTPS requests/read = {bare_per_read:.2f}, "
        f"new TLS connections/read = {bare_handshakes:.2f} (connection_verify=CA path)"
    )
    print(f"  {'revoctl SecretManager.get_secret':34} median {r_med:6.2f} ms   p95 {r_p95:6.2f} ms")
    print(f"  {'bare SecretClient.get_secret':34} median {b_med:6.2f} ms   p95 {b_p95:6.2f} ms")
    print(f"  revoctl/bare: median {r_med / b_med:.2f}x, p95 {r_p95 / b_p95:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--reads", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home, KeyVaultStandIn() as vault:
        for name, value in vault.client_environ().items():
            os.environ[name] = value
        asyncio.run(cached(args.calls, Path(home)))
        print()
        asyncio.run(cold(args.reads, Path(home), vault))


if __name__ == "__main__":
    main()
