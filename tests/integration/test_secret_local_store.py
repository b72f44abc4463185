"""The local store under several processes: concurrent rotations lose no version, and a
writer killed with SIGKILL at any moment leaves a readable store."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from revoctl.core.secrets.stores.file import STORE_FILE_NAME, FileSecretStore
from tests.conftest import run_revoctl

PROCESSES = 4
ROTATIONS = 5


_ROTATOR = textwrap.dedent(
    """
    import sys
    import typer
    from revoctl.cli import app

    command = typer.main.get_command(app)
    for _ in range(int(sys.argv[1])):
        args = ["secrets", "rotate", "shared-key", "-o", "json"]
        code = command.main(args, prog_name="revoctl", standalone_mode=False)
        if code:
            sys.exit(code)
    """
)


def test_concurrent_rotations_from_several_processes_lose_no_version(revoctl_home: Path):
    first = run_revoctl(["secrets", "set", "shared-key", "-o", "json"], input="initial-value")
    assert first.returncode == 0, first.stderr
    initial = json.loads(first.stdout)["version"]
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _ROTATOR, str(ROTATIONS)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    outputs = [worker.communicate(timeout=120) for worker in workers]
    assert all(worker.returncode == 0 for worker in workers), [err for _, err in outputs]
    decoder = json.JSONDecoder()
    rotations = []
    for stdout, _ in outputs:
        text = stdout.strip()
        while text:
            document, end = decoder.raw_decode(text)
            rotations.append(document)
            text = text[end:].strip()
    assert len(rotations) == PROCESSES * ROTATIONS

    history = asyncio.run(FileSecretStore(revoctl_home / STORE_FILE_NAME).versions("shared-key"))
    versions = [props.version for props in history]
    assert len(versions) == 1 + PROCESSES * ROTATIONS
    assert set(versions) == {initial} | {r["version"] for r in rotations}
    # Each rotation names as previous exactly the version written before it: one chain.
    chain = {r["previous_version"]: r["version"] for r in rotations}
    assert len(chain) == len(rotations)
    walked = [initial]
    while walked[-1] in chain:
        walked.append(chain[walked[-1]])
    assert walked == versions[::-1]


_WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from revoctl.core.secrets.stores.file import FileSecretStore

    async def main() -> None:
        store = FileSecretStore(Path(sys.argv[1]))
        i = 0
        while True:
            i += 1
            await store.set(f"key-{i % 3}", f"value-{i}-" + "x" * (i % 200))
            print(i, flush=True)

    asyncio.run(main())
    """
)


def test_a_writer_killed_mid_write_leaves_a_readable_store(revoctl_home: Path):
    path = revoctl_home / STORE_FILE_NAME
    store = FileSecretStore(path)
    rng = random.Random(1234)
    seen = 0
    for _ in range(6):
        writer = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True
        )
        assert writer.stdout is not None
        writer.stdout.readline()  # it is writing now
        time.sleep(rng.uniform(0.0, 0.15))
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
        writer.stdout.close()

        listed = asyncio.run(store.list_secrets())
        total = 0
        for props in listed:
            for version in asyncio.run(store.versions(props.name)):
                secret = asyncio.run(store.get(props.name, version.version))
                assert secret.value.startswith("value-")
                total += 1
        assert total >= seen + 1  # every finished write survived, and this round wrote
        seen = total
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


_LOCK_HOLDER = textwrap.dedent(
    """
    import sys
    import filelock

    lock = filelock.FileLock(sys.argv[1])
    lock.acquire()
    print("held", flush=True)
    sys.stdin.readline()  # held until the test says so, however slow the machine
    lock.release()
    """
)


@pytest.mark.slow
def test_a_write_that_times_out_on_the_lock_exits_4_and_writes_nothing(revoctl_home: Path):
    """Another process holds the store's lock past the timeout: the write gives up with exit 4,
    and no version lands later, when the lock is free again."""
    timeout = 1.0
    env = {"REVOCTL_SECRETS__TIMEOUT_SECONDS": str(timeout)}
    assert run_revoctl(["secrets", "set", "k"], input="first-value", env=env).returncode == 0
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _LOCK_HOLDER,
            str(revoctl_home / f"{STORE_FILE_NAME}.lock"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        for args in (["secrets", "rotate", "k"], ["secrets", "set", "k"]):
            result = run_revoctl(args, input="second-value", env=env)
            assert result.returncode == 4, result.stderr
            assert "locked by another process" in result.stderr
            assert "nothing was written" in result.stderr
        assert time.monotonic() - started < 2 * (timeout + 5)
    finally:
        holder.communicate("release\n", timeout=30)

    time.sleep(timeout)  # any write still in flight would land now
    versions = run_revoctl(["secrets", "versions", "k", "-o", "json"])
    assert len(json.loads(versions.stdout)) == 1
    assert run_revoctl(["secrets", "get", "k"]).stdout == "first-value\n"


def test_every_file_in_the_state_directory_is_owner_only(revoctl_home: Path):
    for args, value in ((["db", "migrate"], None), (["secrets", "set", "k"], "some-value")):
        result = run_revoctl(args, input=value)
        assert result.returncode == 0, result.stderr
    assert run_revoctl(["db", "health"]).returncode == 0
    created = sorted(p.name for p in revoctl_home.iterdir())
    assert "revoctl.db" in created and "secrets.json" in created
    assert stat.S_IMODE(revoctl_home.stat().st_mode) == 0o700
    for path in revoctl_home.rglob("*"):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, f"{path.name} is {oct(mode)}"


_DIES_AFTER_THE_WRITE = textwrap.dedent(
    """
    import time
    import typer
    from revoctl.cli import app
    from revoctl.core.secrets.stores.file import FileSecretStore

    real_set = FileSecretStore.set

    async def set_then_hang(self, name, value):
        written = await real_set(self, name, value)
        print("written", flush=True)
        time.sleep(60)  # killed here: after the store write, before the audit completes
        return written

    FileSecretStore.set = set_then_hang
    typer.main.get_command(app).main(["secrets", "rotate", "k"], prog_name="revoctl")
    """
)


def test_a_rotation_killed_after_the_write_leaves_its_intent_in_the_audit_log(
    revoctl_home: Path,
):
    """The intent is recorded before the store is written: a process killed between the write
    and the audit's completion leaves a ``pending`` row, never a version without a row."""
    import sqlite3

    assert run_revoctl(["secrets", "set", "k"], input="first-value").returncode == 0
    victim = subprocess.Popen(
        [sys.executable, "-c", _DIES_AFTER_THE_WRITE],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert victim.stdout is not None and victim.stdout.readline().strip() == "written"
    victim.send_signal(signal.SIGKILL)
    _, stderr = victim.communicate(timeout=30)
    assert victim.returncode == -signal.SIGKILL, stderr  # killed mid-rotation, not exited
    versions = json.loads(run_revoctl(["secrets", "versions", "k", "-o", "json"]).stdout)
    assert len(versions) == 2  # the new version landed
    with sqlite3.connect(revoctl_home / "revoctl.db") as db:
        rows = db.execute(
            "SELECT action, status, version FROM secret_audit_log ORDER BY id"
        ).fetchall()
    assert rows == [("set", "done", versions[1]["version"]), ("rotate", "pending", None)]
