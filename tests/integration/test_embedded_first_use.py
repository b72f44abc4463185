"""Several processes using a fresh embedded (SQLite) database for the first time, together:
one brings the schema up to date, the others wait for it and find it done (issue 15, item 4).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROCESSES = 8


def start_together(count: int, home: Path) -> list[subprocess.CompletedProcess[str]]:
    """``count`` workers, each ready before any of them touches the database."""
    env = {**os.environ, "REVOCTL_HOME": str(home), "PYTHONPATH": str(REPO)}
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.support.first_use_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=REPO,
        )
        for _ in range(count)
    ]
    try:
        for worker in workers:
            line = worker.stdout.readline()  # type: ignore[union-attr]
            assert line.strip() == "ready", worker.communicate(timeout=60)[1]
        for worker in workers:
            worker.stdin.write("go\n")  # type: ignore[union-attr]
            worker.stdin.flush()  # type: ignore[union-attr]
        done = []
        for worker in workers:
            out, err = worker.communicate(timeout=120)
            done.append(subprocess.CompletedProcess(worker.args, worker.returncode, out, err))
        return done
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()


def test_eight_processes_first_use_of_a_fresh_embedded_database(revoctl_home: Path) -> None:
    assert not revoctl_home.exists()
    done = start_together(PROCESSES, revoctl_home)
    for run in done:
        assert run.returncode == 0, run.stderr
        assert run.stdout.strip() == "done"
        assert run.stderr == "", run.stderr


def test_eight_cli_commands_first_use_of_a_fresh_embedded_database(revoctl_home: Path) -> None:
    """The way an operator meets it: commands started together on a new machine."""
    env = {**os.environ, "REVOCTL_HOME": str(revoctl_home)}
    commands = [
        subprocess.Popen(
            [sys.executable, "-m", "revoctl", "keys", "list", "-o", "json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(PROCESSES)
    ]
    for command in commands:
        out, err = command.communicate(timeout=120)
        assert command.returncode == 0, err
        assert out.strip() == "[]" and err == "", err
