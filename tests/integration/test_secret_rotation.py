"""Rotation on a schedule on PostgreSQL: secrets of several ages, ``secrets rotate --due``
rotates only the old ones its rules' globs match, a dry run changes nothing; an ``on_rotate``
hook learns the value on stdin and in its environment, never in its arguments, and its
failure keeps the old version current and is audited; two processes (two CLI runs, two
gateway instances) rotate each due secret once, under the maintenance lease."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from revoctl.core.db import DatabaseConfig, DatabaseManager, upgrade
from revoctl.core.secrets.stores.file import FileSecretStore
from tests.conftest import run_revoctl

pytestmark = pytest.mark.postgres

AGES = {"api-old": 40, "api-new": 5, "other-old": 40, "db-old": 10, "fail-old": 40}
"""Days since each secret's latest version."""

RULES = """
[[secrets.rotation.rules]]
names = ["api-*"]
max_age = "30d"

[[secrets.rotation.rules]]
names = ["db-*", "fail-*"]
max_age = "7d"
length = 16
"""

HOOK = textwrap.dedent(
    """
    import json, os, sys, time
    record = {
        "argv": sys.argv,
        "cmdline": open("/proc/self/cmdline", "rb").read().decode(),
        "parent_cmdline": open(f"/proc/{os.getppid()}/cmdline", "rb").read().decode(),
        "stdin": sys.stdin.read().strip(),
        "env": os.environ.get("REVOCTL_SECRET_VALUE"),
        "pid": os.getpid(),
    }
    name = sys.argv[1]
    with open(f"{name}.hook.json", "w") as fh:
        json.dump(record, fh)
    if name.startswith("fail-"):
        print("upstream refused the key", file=sys.stderr)
        sys.exit(3)
    if name.startswith("slow-"):
        time.sleep(60)
    time.sleep(float(os.environ.get("HOOK_PAUSE", "0")))
    """
)


async def seed(home: Path, ages: dict[str, int]) -> None:
    """Each secret with one version, ``ages[name]`` days old."""
    store = FileSecretStore(home / "secrets.json")
    for name in ages:
        await store.set(name, f"initial-{name}")
    path = home / "secrets.json"
    document = json.loads(path.read_text())
    for name, days in ages.items():
        moment = datetime.now(UTC) - timedelta(days=days)
        document["secrets"][name][0]["updated_on"] = moment.isoformat()
    path.write_text(json.dumps(document))


async def versions(home: Path) -> dict[str, list[str]]:
    store = FileSecretStore(home / "secrets.json")
    return {
        p.name: [v.version for v in await store.versions(p.name)]
        for p in await store.list_secrets()
    }


async def current(home: Path, name: str) -> str:
    return (await FileSecretStore(home / "secrets.json").get(name)).value


async def audit_rows(url: str) -> list[dict[str, Any]]:
    from sqlalchemy import text

    async with DatabaseManager(DatabaseConfig(url=url), role="test") as db:

        async def rows(session: Any) -> list[dict[str, Any]]:
            result = await session.execute(
                text(
                    "SELECT secret_name, action, version, previous_version, status "
                    "FROM secret_audit_log ORDER BY id"
                )
            )
            return [dict(row._mapping) for row in result]

        return await db.transaction(rows)


@pytest.fixture
async def setup(postgres_url: str, revoctl_home: Path, tmp_path: Path) -> dict[str, Any]:
    async with DatabaseManager(DatabaseConfig(url=postgres_url), role="test") as db:
        await upgrade(db)
    revoctl_home.mkdir(mode=0o700, parents=True, exist_ok=True)
    await seed(revoctl_home, AGES)
    (tmp_path / "hook.py").write_text(HOOK)
    return {"env": {"REVOCTL_DATABASE__URL": postgres_url}, "url": postgres_url}


def configure(tmp_path: Path, rules: str = RULES, extra: str = "") -> None:
    (tmp_path / "revoctl.toml").write_text(f"[secrets.rotation]\n{extra}\n{rules}")


def with_hook(rules: str) -> str:
    hook = json.dumps([sys.executable, "hook.py", "{name}"])
    return rules.replace("length = 16\n", f"length = 16\non_rotate = {hook}\n")


async def test_due_rotates_only_old_secrets_matching_the_globs(
    setup: dict[str, Any], revoctl_home: Path, tmp_path: Path
) -> None:
    configure(tmp_path, RULES.replace('"fail-*"', '"nothing-*"'))
    before = await versions(revoctl_home)

    dry = run_revoctl(["secrets", "rotate", "--due", "--dry-run", "--json"], env=setup["env"])
    assert dry.returncode == 0, dry.stderr
    planned = json.loads(dry.stdout)
    assert [(r["name"], r["outcome"]) for r in planned["secrets"]] == [
        ("api-old", "due"),
        ("db-old", "due"),
    ]
    assert planned["due"] == ["api-old", "db-old"] and planned["skipped"] == ["api-new"]
    assert planned["rotated"] == planned["failed"] == []
    assert await versions(revoctl_home) == before  # the dry run changed nothing
    assert await audit_rows(setup["url"]) == []

    done = run_revoctl(["secrets", "rotate", "--due", "-o", "json"], env=setup["env"])
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["rotated"] == ["api-old", "db-old"] and report["failed"] == []
    rotated = report["secrets"]
    assert [(r["name"], r["outcome"]) for r in rotated] == [
        ("api-old", "rotated"),
        ("db-old", "rotated"),
    ]
    after = await versions(revoctl_home)
    for name in AGES:
        grown = 2 if name in ("api-old", "db-old") else 1
        assert len(after[name]) == grown, name
    assert [r["new_version"] for r in rotated] == [after["api-old"][0], after["db-old"][0]]
    assert len(await current(revoctl_home, "db-old")) == 22  # 16 bytes as URL-safe text
    rows = await audit_rows(setup["url"])
    assert [(r["secret_name"], r["action"], r["status"]) for r in rows] == [
        ("api-old", "rotate", "done"),
        ("db-old", "rotate", "done"),
    ]
    assert rows[0]["previous_version"] == before["api-old"][0]

    again = run_revoctl(["secrets", "rotate", "--due", "--json"], env=setup["env"])
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == {
        "due": [],
        "rotated": [],
        "failed": [],
        "skipped": ["api-new", "api-old", "db-old"],
        "secrets": [],
    }


async def test_hook_gets_the_value_on_stdin_never_in_argv_and_its_failure_keeps_the_old(
    setup: dict[str, Any], revoctl_home: Path, tmp_path: Path
) -> None:
    configure(tmp_path, with_hook(RULES))
    before = await versions(revoctl_home)
    result = run_revoctl(["secrets", "rotate", "--due", "--json"], env=setup["env"])
    assert result.returncode == 1, result.stderr  # a failed rotation fails the cron job
    report = json.loads(result.stdout)
    assert report["failed"] == ["fail-old"] and report["rotated"] == ["api-old", "db-old"]
    outcomes = {r["name"]: r for r in report["secrets"]}
    assert outcomes["db-old"]["outcome"] == "rotated"
    assert outcomes["api-old"]["outcome"] == "rotated"  # its rule has no hook
    failed = outcomes["fail-old"]
    assert failed["outcome"] == "hook_failed" and failed["audited"] is True
    assert "exited 3: upstream refused the key" in failed["reason"]

    # success: the hook saw the value that is now current, on stdin and in its env only
    seen = json.loads((tmp_path / "db-old.hook.json").read_text())
    value = await current(revoctl_home, "db-old")
    assert seen["stdin"] == value and seen["env"] == value
    assert seen["argv"][1:] == ["db-old"]
    for where in ("cmdline", "parent_cmdline"):
        assert value not in seen[where] and "db-old" in seen["cmdline"]
    # failure: the value the hook saw was never stored, the old version stays current
    refused = json.loads((tmp_path / "fail-old.hook.json").read_text())["stdin"]
    assert len(refused) == 22 and refused not in result.stdout + result.stderr
    assert (await versions(revoctl_home))["fail-old"] == before["fail-old"]
    assert await current(revoctl_home, "fail-old") == "initial-fail-old"
    rows = {r["secret_name"]: r for r in await audit_rows(setup["url"])}
    assert rows["fail-old"] == {
        "secret_name": "fail-old",
        "action": "rotate",
        "version": None,
        "previous_version": before["fail-old"][0],
        "status": "hook_failed",
    }
    assert rows["db-old"]["status"] == "done"


async def test_a_hook_past_its_timeout_is_killed_and_the_old_version_stays(
    setup: dict[str, Any], revoctl_home: Path, tmp_path: Path
) -> None:
    await seed(revoctl_home, {"slow-old": 30})
    rules = with_hook(RULES).replace('"fail-*"', '"slow-*"')
    configure(tmp_path, rules, "hook_timeout_seconds = 0.5")
    result = run_revoctl(["secrets", "rotate", "--due", "--json"], env=setup["env"])
    assert result.returncode == 1, result.stderr
    slow = next(r for r in json.loads(result.stdout)["secrets"] if r["name"] == "slow-old")
    assert slow["outcome"] == "hook_failed"
    assert "did not finish within 0.5s" in slow["reason"]
    assert await current(revoctl_home, "slow-old") == "initial-slow-old"
    pid = json.loads((tmp_path / "slow-old.hook.json").read_text())["pid"]
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()


def test_bad_max_age_is_one_line_and_exit_2(tmp_path: Path) -> None:
    configure(tmp_path, RULES.replace('"30d"', '"thirty days"'))
    result = run_revoctl(["secrets", "rotate", "--due"])
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "invalid age 'thirty days'" in result.stderr


def test_rotate_needs_a_name_or_due(tmp_path: Path) -> None:
    for args in (
        ["secrets", "rotate"],
        ["secrets", "rotate", "x", "--due"],
        ["secrets", "rotate", "--dry-run"],
    ):
        result = run_revoctl(args)
        assert result.returncode == 2, args
        assert result.stderr.count("\n") == 1, result.stderr


@pytest.mark.slow
async def test_two_cli_runs_at_once_rotate_each_secret_once(
    setup: dict[str, Any], revoctl_home: Path, tmp_path: Path
) -> None:
    configure(tmp_path, with_hook(RULES.replace('"fail-*"', '"nothing-*"')))
    before = await versions(revoctl_home)
    env = {**os.environ, **setup["env"], "HOOK_PAUSE": "1"}  # the first holds the lease 1 s
    command = [sys.executable, "-m", "revoctl", "secrets", "rotate", "--due", "--json"]
    runs = [
        subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    results = [(run.wait(60), *run.communicate()) for run in runs]
    rotated = []
    for code, out, err in results:
        if code == 0:
            rotated += json.loads(out)["rotated"]
        else:  # refused: the other holds the lease
            assert code == 1 and "holds the lease" in err and out == "", err
    assert sorted(rotated) == ["api-old", "db-old"]
    after = await versions(revoctl_home)
    assert {n: len(after[n]) - len(before[n]) for n in AGES} == {
        n: int(n in ("api-old", "db-old")) for n in AGES
    }


GATEWAY = textwrap.dedent(
    """
    import sys, time
    from starlette.testclient import TestClient
    from revoctl.config import load_config
    from revoctl.runtime.app import create_app
    with TestClient(create_app(load_config("revoctl.toml"))):
        time.sleep(float(sys.argv[1]))
    """
)


@pytest.mark.slow
async def test_two_gateway_instances_on_a_timer_rotate_each_secret_once(
    setup: dict[str, Any], revoctl_home: Path, tmp_path: Path
) -> None:
    interval = 0.3
    rules = with_hook(RULES.replace('"fail-*"', '"nothing-*"'))
    extra = f"interval_seconds = {interval}"
    (tmp_path / "revoctl.toml").write_text(
        f'[database]\nurl = "{setup["url"]}"\n[gateway]\nauth = "none"\n'
        '[limits]\nstore = "memory"\n[breakers]\nstore = "memory"\n'
        f"[secrets.rotation]\n{extra}\n{rules}"
    )
    (tmp_path / "gateway.py").write_text(GATEWAY)
    before = await versions(revoctl_home)
    env = {**os.environ, "HOOK_PAUSE": str(interval)}
    runs = [
        subprocess.Popen(
            [sys.executable, "gateway.py", str(20 * interval)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for run in runs:
        _, err = run.communicate(timeout=120)
        assert run.returncode == 0, err
    after = await versions(revoctl_home)
    assert {n: len(after[n]) - len(before[n]) for n in AGES} == {
        n: int(n in ("api-old", "db-old")) for n in AGES
    }
    rows = await audit_rows(setup["url"])
    assert sorted(r["secret_name"] for r in rows) == ["api-old", "db-old"]
