"""``revoctl keys``: a key's life at the terminal, with tiers, budgets, spend and rotation, on
SQLite and a real PostgreSQL; bad input is one ``error:`` line and the CONTRACT's exit code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from revoctl.core.keys import KEY_PATTERN, hash_key

CONFIG = """
{database}
[limits]
store = "memory"

[tiers.free]
budget = 2.0
budget_period = "1d"

[tiers.pro]
budget = 50.0

[tiers.internal]
"""


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def keys_cli(
    request: pytest.FixtureRequest, cli: Any, revoctl_home: Path, monkeypatch: pytest.MonkeyPatch
) -> Any:
    """The CLI on a configuration with tiers, its database migrated."""
    database = ""
    if request.param == "postgresql":
        database = f'[database]\nurl = "{request.getfixturevalue("postgres_url")}"'
    config = revoctl_home.parent / "revoctl.toml"
    config.write_text(CONFIG.format(database=database))
    monkeypatch.setenv("REVOCTL_CONFIG", str(config))
    assert cli("db", "migrate").exit_code == 0
    return cli


def as_json(result: Any) -> Any:
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def events() -> list[tuple[str, str, dict[str, Any]]]:
    """``gateway_key_events`` as (name, action, detail), read from whichever database."""
    import asyncio

    from sqlalchemy import select

    from revoctl.core import load_services
    from revoctl.core.db.models import GatewayKeyEvent

    async def read() -> list[tuple[str, str, dict[str, Any]]]:
        async with load_services() as svc:

            async def rows(session: Any) -> list[tuple[str, str, dict[str, Any]]]:
                found = await session.execute(select(GatewayKeyEvent).order_by(GatewayKeyEvent.id))
                return [(e.name, e.action, e.detail) for e in found.scalars()]

            return await svc.db.transaction(rows)

    return asyncio.run(read())


def test_a_keys_life_with_its_tier_budget_and_rotation(keys_cli: Any) -> None:
    cli = keys_cli
    created = as_json(cli("keys", "create", "team-a", "--tier", "free", "-o", "json"))
    assert set(created) == {"name", "key", "expires_at"} and KEY_PATTERN.fullmatch(created["key"])
    plain = cli("keys", "create", "team-b")
    assert plain.exit_code == 0 and KEY_PATTERN.fullmatch(plain.stdout.strip())

    listed = as_json(cli("keys", "list", "-o", "json"))
    assert [(k["name"], k["tier"], k["spend"], k["budget"]) for k in listed] == [
        ("team-a", "free", 0.0, 2.0),
        ("team-b", None, None, None),
    ]
    assert set(listed[0]) == {"name", "created_at", "expires_at", "revoked", "tier", "spend",
                              "budget", "budget_resets_at"}  # fmt: skip
    table = cli("keys", "list").stdout
    assert "TIER" in table and "BUDGET_RESETS_AT" in table and created["key"] not in table

    spend = as_json(cli("keys", "spend", "team-a", "-o", "json"))
    assert set(spend) == {"name", "tier", "spend", "budget", "period_start", "resets_at"}
    assert (spend["spend"], spend["budget"]) == (0.0, 2.0)
    assert spend["resets_at"] == listed[0]["budget_resets_at"]

    topped = as_json(cli("keys", "budget", "team-a", "--add", "1.5", "-o", "json"))
    assert topped["budget"] == 3.5
    updated = as_json(cli("keys", "update", "team-a", "--tier", "pro", "-o", "json"))
    assert (updated["tier"], updated["budget"]) == ("pro", 51.5)  # this period's top-up stays

    rotated = cli("keys", "rotate", "team-a", "--overlap", "60")
    new_key = rotated.stdout.strip()
    assert rotated.exit_code == 0 and KEY_PATTERN.fullmatch(new_key) and new_key != created["key"]
    assert "not shown again" in rotated.stderr
    rotated_json = as_json(cli("keys", "rotate", "team-a", "-o", "json"))
    assert set(rotated_json) == {"name", "key", "expires_at"}

    assert as_json(cli("keys", "revoke", "team-b", "-o", "json"))["revoked"] is True
    audit = events()
    assert [(name, action) for name, action, _ in audit] == [
        ("team-a", "created"),
        ("team-b", "created"),
        ("team-a", "budget_added"),
        ("team-a", "updated"),
        ("team-a", "rotated"),
        ("team-a", "rotated"),
        ("team-b", "revoked"),
    ]
    assert audit[2][2] == {"amount": 1.5, "period": 0, "budget_added": 1.5}
    assert audit[3][2] == {"tier": "pro", "previous_tier": "free"}
    every = json.dumps(audit)
    for secret in (created["key"], new_key, rotated_json["key"], hash_key(new_key)):
        assert secret not in every


BAD_INPUT = [
    (("keys", "create", "team-x", "--tier", "gold"), 2, "configured tiers: free, internal, pro"),
    (("keys", "create", "bad name"), 2, "invalid key name"),
    (("keys", "update", "ghost", "--tier", "pro"), 3, "no gateway key named 'ghost'"),
    (("keys", "update", "team-a", "--tier", "gold"), 2, "unknown tier 'gold'"),
    (("keys", "spend", "ghost"), 3, "no gateway key named"),
    (("keys", "rotate", "ghost"), 3, "no gateway key named"),
    (("keys", "rotate", "team-a", "--overlap", "-5"), 2, "--overlap"),
    (("keys", "budget", "team-a", "--add", "0"), 2, "more than 0"),
    (("keys", "budget", "team-a", "--add", "-3"), 2, "more than 0"),
    (("keys", "budget", "team-i", "--add", "1"), 2, "no budget"),
    (("keys", "budget", "ghost", "--add", "1"), 3, "no gateway key named"),
    (("keys", "budget", "team-a", "--add", "lots"), 2, "Invalid value for '--add'"),
    (("keys", "update", "team-a"), 2, "--tier"),
]


def test_bad_input_is_one_error_line_and_its_exit_code(keys_cli: Any) -> None:
    assert keys_cli("keys", "create", "team-a", "--tier", "free").exit_code == 0
    assert keys_cli("keys", "create", "team-i", "--tier", "internal").exit_code == 0
    for args, code, message in BAD_INPUT:
        result = keys_cli(*args)
        assert result.exit_code == code, (args, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr, args


def test_top_ups_from_several_processes_at_once_all_count(
    keys_cli: Any, revoctl_home: Path
) -> None:
    """Each top-up reads and writes the key's row under a lock: none is lost to another."""
    assert keys_cli("keys", "create", "team-a", "--tier", "free").exit_code == 0
    env = {**os.environ, "REVOCTL_HOME": str(revoctl_home)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "revoctl", "keys", "budget", "team-a", "--add", "1"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        for _ in range(8)
    ]  # fmt: skip
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    spend = as_json(keys_cli("keys", "spend", "team-a", "-o", "json"))
    assert spend["budget"] == 2.0 + 8
