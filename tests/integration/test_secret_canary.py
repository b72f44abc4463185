"""A canary secret value must never appear where it was not asked for: not in the stdout of
list/versions/set/rotate, not in the stderr of any command (debug logs with -vv, error
messages, tracebacks with -v), and not in the logs. Every command runs in a fresh process,
so nothing was registered for redaction before the command itself saw the value. Key Vault
is the provider: the local store shares every layer above the store, and adds no logging."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from subprocess import CompletedProcess

import pytest

from tests.support.keyvault import KeyVaultStandIn

pytestmark = pytest.mark.keyvault


@pytest.fixture
def provider_env() -> Iterator[dict[str, str]]:
    """Key Vault through the real SDK: the provider with the most layers that log."""
    with KeyVaultStandIn() as kv:
        yield {
            **kv.client_environ(),
            "REVOCTL_SECRETS__PROVIDER": "azure_key_vault",
            "REVOCTL_SECRETS__AZURE__VAULT_URL": kv.url,
            "REVOCTL_SECRETS__AZURE__VERIFY_CHALLENGE_RESOURCE": "false",
        }


Command = tuple[tuple[str, ...], str | None, dict[str, str]]


def run_all(commands: list[Command], base_env: dict[str, str]) -> list[CompletedProcess[str]]:
    """Run independent commands (each with -vv) in parallel processes; results in order."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "revoctl", "-vv", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **base_env, **env},
        )
        for args, _, env in commands
    ]
    results = []
    for process, (args, input, _) in zip(processes, commands, strict=True):
        stdout, stderr = process.communicate(input, timeout=60)
        results.append(CompletedProcess(args, process.returncode, stdout, stderr))
    return results


def test_a_canary_value_never_leaks(provider_env: dict[str, str]):
    canary, rotated, db_canary = ("canary-" + secrets.token_hex(12) for _ in range(3))
    unreachable_db = {
        "REVOCTL_DATABASE__URL": "postgresql+asyncpg://postgres:${secret:db-canary}@127.0.0.1:1/x",
        "REVOCTL_DATABASE__RETRY_ATTEMPTS": "0",
        "REVOCTL_DATABASE__CONNECT_TIMEOUT": "2",
    }
    # Batches run one after the other; the commands of a batch run at once.
    batches: list[list[Command]] = [
        [
            (("secrets", "set", "canary-key"), canary, {}),
            (("secrets", "set", "db-canary"), db_canary, {}),
        ],
        [
            (("secrets", "get", "canary-key"), None, {}),
            (("secrets", "get", "canary-key", "-o", "json"), None, {}),
            (("secrets", "list"), None, {}),
            (("secrets", "versions", "canary-key", "-o", "json"), None, {}),
            (("-v", "secrets", "get", "canary-key", "--version", "0" * 32), None, {}),
            (("-v", "db", "ping"), None, unreachable_db),
            (("-v", "health", "-o", "json"), None, unreachable_db),
            (("secrets", "rotate", "db-canary", "--stdin", "-o", "json"), rotated, {}),
        ],
        [
            (("secrets", "rotate", "canary-key", "-o", "json"), None, {}),
            (("secrets", "list", "-o", "json"), None, {}),
        ],
        [(("secrets", "get", "canary-key"), None, {})],
    ]
    results = [run_all(batch, provider_env) for batch in batches]
    generated = results[-1][0].stdout.strip()
    assert len(generated) == 43, results[-1][0].stderr
    values = (canary, rotated, db_canary, generated)
    value_printed = {
        ("secrets", "get", "canary-key"),
        ("secrets", "get", "canary-key", "-o", "json"),
    }
    for batch in results:
        for result in batch:
            assert not any(v in result.stderr for v in values), (
                f"a value in stderr of {result.args}"
            )
            if tuple(result.args) not in value_printed:
                assert not any(v in result.stdout for v in values), (
                    f"a value in stdout of {result.args}"
                )
    assert results[1][0].stdout == canary + "\n"
    ran = {tuple(result.args): result for batch in results for result in batch}
    assert ran["secrets", "get", "canary-key", "-o", "json"].stdout.count(canary) == 1
    bad_version = ran["-v", "secrets", "get", "canary-key", "--version", "0" * 32]
    assert bad_version.returncode == 3 and "Traceback" in bad_version.stderr
    db_ping = ran["-v", "db", "ping"]
    assert db_ping.returncode == 4 and "Traceback" in db_ping.stderr
