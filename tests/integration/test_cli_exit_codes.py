"""Issue 17: the exit codes of the CONTRACT's table where they used to be 1 or 3.

A Redis cluster that cannot be reached is 4 and one that cannot be a cluster is 2, the key
commands on an unmigrated PostgreSQL are 2, and ``serve`` on a port in use is 4 and on a
host that does not resolve 2, each with one ``error:`` line; ``serve`` honours ``-v``/``-vv``
and ``[logging] format`` in its workers; ``ci-check.sh`` stops at a bad secret reference.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import run_revoctl

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
RULE = '[[limits.rules]]\nname = "api"\nrequests = 5\nwindow_seconds = 60\n'


def one_error(stderr: str) -> str:
    """The one ``error:`` line of ``stderr``, which must be its last line too."""
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    assert stderr.splitlines()[-1] == errors[0], stderr
    return errors[0]


@pytest.fixture
def redis_rules(tmp_path: Path) -> dict[str, str]:
    config = tmp_path / "cluster.toml"
    config.write_text(f'[limits]\nstore = "redis"\n{RULE}[breakers]\nstore = "redis"\n')
    return {"REVOCTL_CONFIG": str(config), "REVOCTL_REDIS__CLUSTER": "true"}


@pytest.mark.parametrize("command", [["limits", "inspect", "api"], ["limits", "test", "api"]])
def test_an_unreachable_cluster_is_exit_4(redis_rules: dict[str, str], command: list[str]) -> None:
    env = {**redis_rules, "REVOCTL_REDIS__URL": "redis://127.0.0.1:1"}
    done = run_revoctl(command, env=env)
    assert done.returncode == 4, done.stderr
    assert "cannot reach the Redis cluster at redis://127.0.0.1:1" in one_error(done.stderr)


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/5", "redis://127.0.0.1:6379?db=3"])
def test_a_db_index_on_a_cluster_is_a_configuration_error(
    redis_rules: dict[str, str], url: str
) -> None:
    done = run_revoctl(["config", "show"], env={**redis_rules, "REVOCTL_REDIS__URL": url})
    assert done.returncode == 2, done.stderr
    assert "a cluster has database 0 only" in one_error(done.stderr)


def test_a_socket_path_on_a_cluster_is_a_configuration_error(redis_rules: dict[str, str]) -> None:
    env = {**redis_rules, "REVOCTL_REDIS__URL": "unix:///run/redis.sock"}
    done = run_revoctl(["limits", "rules"], env=env)
    assert done.returncode == 2
    assert "url is a unix:// socket: a cluster is TCP" in one_error(done.stderr)


@pytest.mark.redis
def test_cluster_true_on_a_single_node_is_a_configuration_error(
    redis_rules: dict[str, str], redis_url: str
) -> None:
    node = redis_url.rsplit("/", 1)[0]  # the test server, database 0
    done = run_revoctl(
        ["limits", "inspect", "api"], env={**redis_rules, "REVOCTL_REDIS__URL": node}
    )
    assert done.returncode == 2, done.stderr
    assert f"redis.cluster is true but {node} is not a cluster node" in one_error(done.stderr)


@pytest.mark.postgres
@pytest.mark.parametrize(
    "command", [["keys", "list"], ["keys", "create", "ci"], ["keys", "revoke", "ci"]]
)
def test_keys_on_an_unmigrated_postgres_say_migrate(postgres_url: str, command: list[str]) -> None:
    done = run_revoctl(command, env={"REVOCTL_DATABASE__URL": postgres_url})
    assert done.returncode == 2, done.stderr
    assert "not migrated (run 'revoctl db migrate')" in one_error(done.stderr)


# ---------------------------------------------------------------- serve


def test_serve_on_a_port_in_use_is_exit_4() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for workers in ("1", "2"):
            done = run_revoctl(["serve", "--port", str(port), "--workers", workers], timeout=60)
            assert done.returncode == 4, done.stderr
            line = one_error(done.stderr)
            assert (
                line == f"error: cannot listen on 127.0.0.1:{port}: the address is already in use"
            )


def test_serve_on_a_host_that_does_not_resolve_is_exit_2() -> None:
    done = run_revoctl(["serve", "--host", "no-such-host.invalid"], timeout=60)
    assert done.returncode == 2, done.stderr
    assert one_error(done.stderr).startswith("error: --host 'no-such-host.invalid': cannot resolve")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _serve_once(args: list[str], env: dict[str, str], log: Path) -> str:
    """Run ``revoctl ARGS serve`` with two workers until it answers, stop it; its stderr
    (through a file: -vv writes more than a pipe holds while no one reads it)."""
    port = _free_port()
    command = [sys.executable, "-m", "revoctl", *args, "serve", "--port", str(port)]
    with log.open("w") as stderr:
        server = subprocess.Popen(
            [*command, "--workers", "2"],
            stderr=stderr,
            stdout=subprocess.DEVNULL,
            env={**os.environ, **env},
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/live", timeout=1):
                        break
                except OSError:
                    assert time.monotonic() < deadline, "the gateway never answered"
                    time.sleep(0.2)
        finally:
            server.terminate()
            server.wait(timeout=30)
    return log.read_text()


def test_serve_workers_follow_minus_vv_and_the_configured_format(tmp_path: Path) -> None:
    config = tmp_path / "text.toml"
    config.write_text('[logging]\nformat = "text"\n')
    stderr = _serve_once(["--config", str(config), "-vv"], {}, tmp_path / "serve.log")
    lines = stderr.splitlines()
    assert any(line.startswith("DEBUG revoctl.") for line in lines), stderr[-2000:]
    assert "INFO revoctl.access: GET /health/live 200" in lines
    assert not any(line.startswith("{") for line in lines)  # no JSON: the format was text


def test_serve_workers_write_json_at_the_configured_level_without_flags(tmp_path: Path) -> None:
    stderr = _serve_once([], {"REVOCTL_LOGGING__FORMAT": "json"}, tmp_path / "serve.log")
    records = [line for line in stderr.splitlines() if line.startswith("{")]
    assert records and not any('"level": "debug"' in line for line in records)


# ---------------------------------------------------------------- ci-check.sh


def test_ci_check_stops_at_a_bad_secret_reference(tmp_path: Path) -> None:
    config = tmp_path / "bad-ref.toml"
    config.write_text('[providers.openai]\napi_key = "${secret:bad name!}"\n')
    bin_dir = Path(sys.executable).parent
    done = subprocess.run(
        ["bash", str(EXAMPLES / "ci-check.sh")],
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **os.environ,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "REVOCTL_CONFIG": str(config),
        },
    )
    assert done.returncode == 2, done.stdout + done.stderr
    last = done.stdout.splitlines()[-1]
    assert last.startswith("FAIL  config     exit 2, usage or configuration error:"), last
    assert "invalid secret name 'bad name!'" in last
