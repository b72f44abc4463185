"""A PostgreSQL cluster of the test's own, for what the shared server must never see: being
stopped under load and started again.

`PostgresServer` runs the machine's PostgreSQL 15 binaries (``initdb``, ``pg_ctl``) on a data
directory in a temporary directory of its own, listening on a free local port with trust
authentication (its Unix socket stays in that directory); the shared server on 5432 is never
touched. Run as root, the binaries run as the ``postgres`` user (PostgreSQL refuses to run as
root), on a directory that user owns. Without the binaries, tests skip with the reason (or
fail under ``REVOCTL_REQUIRE_SERVICES=1``: `tests.conftest.unavailable`).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support.fleet import free_port

BIN_DIR = Path(os.environ.get("REVOCTL_TEST_POSTGRES_BIN", "/usr/lib/postgresql/15/bin"))
START_SECONDS = 30
"""How long ``pg_ctl start`` may wait for the server to accept connections."""
OS_USER = "postgres"
"""Who runs the binaries when the tests run as root."""


def missing_binaries() -> str | None:
    """Why a private cluster cannot run here, or None."""
    for name in ("initdb", "pg_ctl", "postgres"):
        if not (BIN_DIR / name).is_file():
            return f"{BIN_DIR / name} is missing (set REVOCTL_TEST_POSTGRES_BIN)"
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            return "running as root, and runuser is not on PATH to run PostgreSQL as postgres"
        try:
            pwd.getpwnam(OS_USER)
        except KeyError:
            return f"running as root, and there is no {OS_USER!r} user to run PostgreSQL as"
    return None


class PostgresServer:
    """One private cluster: `start` and `stop` it as often as a test needs, on the same port.

    ``url`` is its ``postgres`` database, as revoctl's configuration names it.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="revoctl-pg-"))
        self.data = self.directory / "data"
        self.log = self.directory / "server.log"

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def admin_url(self) -> str:
        """The same database for asyncpg itself."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        as_user = ["runuser", "-u", OS_USER, "--"] if os.geteuid() == 0 else []
        done = subprocess.run(
            [*as_user, *argv], capture_output=True, text=True, timeout=START_SECONDS + 30
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"{Path(argv[0]).name} failed: {done.stderr or done.stdout}")
        return done

    def initdb(self) -> None:
        if os.geteuid() == 0:
            owner = pwd.getpwnam(OS_USER)
            os.chown(self.directory, owner.pw_uid, owner.pw_gid)
        self._run(
            str(BIN_DIR / "initdb"), "-D", str(self.data), "-U", "postgres",
            "--auth=trust", "--encoding=UTF8", "--no-sync",
        )  # fmt: skip

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c full_page_writes=off"
        )
        self._run(
            str(BIN_DIR / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options,
            "-w", "-t", str(START_SECONDS), "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop``: ``fast`` ends every session at once (clients see their connection
        closed), ``immediate`` is a crash."""
        self._run(str(BIN_DIR / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def running(self) -> bool:
        return (
            self._run(
                str(BIN_DIR / "pg_ctl"), "-D", str(self.data), "status", check=False
            ).returncode
            == 0
        )

    def __enter__(self) -> PostgresServer:
        try:
            self.initdb()
            self.start()
        except BaseException:
            shutil.rmtree(self.directory, ignore_errors=True)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.running():
            self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)
