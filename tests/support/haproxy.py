"""HAProxy (Debian's package) in front of gateways, all on loopback, from a generated
configuration: it listens on a free port of 127.0.0.1, connects to its servers from a
loopback address of its own (``source``, which the gateways name in ``trusted_proxies``),
appends the client's address to ``X-Forwarded-For`` and removes a ``Forwarded`` it does not
write, retries a failed connection (``retries``) on another server (``option redispatch``),
and checks each server with ``GET /health/live`` every ``inter_ms``: down after ``fall``
failed checks (a dead server refuses the connection at once; a live one's answer may take
2 s, so a busy machine marks no live server down). Its runtime socket (TCP on 127.0.0.1: a
Unix socket's path could outgrow 108 bytes under pytest's temporary directory) answers with
each server's state and counters.

Its log (RFC 5424, microsecond timestamps of the wall clock) goes to ``haproxy.log`` in the
directory given: `marked_down` reads from it when the health check took a server out.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.conftest import unavailable

CONFIG = """
global
    maxconn 2000
    stats socket ipv4@127.0.0.1:{stats} level admin
    log stdout format rfc5424 local0
defaults
    mode http
    log global
    option httplog
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout check 2s
    retries {retries}
{redispatch}
frontend edge
    bind 127.0.0.1:{port}
    option forwardfor
    http-request del-header Forwarded
    default_backend gateways
backend gateways
    balance roundrobin
    option httpchk GET /health/live
    default-server inter {inter_ms} fall {fall} rise 2 source {source}
{servers}
"""

DOWN = re.compile(r"^<\d+>1 (\S+) .*Server gateways/(\S+) is DOWN")


def free_port(address: str = "127.0.0.1") -> int:
    """A port nothing listens on at ``address`` (loopback: Linux routes all of 127/8 to lo)."""
    with socket.socket() as probe:
        probe.bind((address, 0))
        return int(probe.getsockname()[1])


def wait_for_port(
    address: str, port: int, process: subprocess.Popen[Any], output: Path, timeout: float = 60
) -> None:
    """Until something accepts on ``address:port``; raises with ``output``'s end if
    ``process`` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited: {output.read_text()[-3000:]}")
        with socket.socket() as probe:
            if probe.connect_ex((address, port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {address}:{port} after {timeout:g} s")


def stop_group(process: subprocess.Popen[Any], sig: int = signal.SIGTERM) -> None:
    """``sig`` to the process group (started with ``start_new_session``), SIGKILL after 30 s."""
    if process.poll() is None:
        os.killpg(process.pid, sig)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@dataclass
class HAProxy:
    """The balancer over ``servers`` (name -> ``(address, port)``); `start` and `stop`."""

    directory: Path
    servers: dict[str, tuple[str, int]]
    source: str
    """The loopback address it connects to the servers from."""
    inter_ms: int = 100
    fall: int = 2
    retries: int = 3
    redispatch: bool = True
    port: int = field(default_factory=free_port)
    stats_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.directory / "haproxy.log"

    def config(self) -> str:
        servers = "\n".join(
            f"    server {name} {address}:{port} check"
            for name, (address, port) in self.servers.items()
        )
        return CONFIG.format(
            stats=self.stats_port,
            port=self.port,
            retries=self.retries,
            redispatch="    option redispatch" if self.redispatch else "",
            inter_ms=self.inter_ms,
            fall=self.fall,
            source=self.source,
            servers=servers,
        )

    def start(self) -> None:
        """Starts it (skips the test when HAProxy is not installed), until it listens and
        reports every server up."""
        binary = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/sbin")
        if binary is None:
            unavailable("haproxy", FileNotFoundError("apt-get install haproxy"))
        assert binary is not None
        path = self.directory / "haproxy.cfg"
        path.write_text(self.config())
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [binary, "-db", "-f", str(path)],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        wait_for_port("127.0.0.1", self.port, self.process, self.log)
        for name in self.servers:
            self.wait_until(name, "UP")

    def stop(self) -> None:
        if self.process is not None:
            stop_group(self.process)

    def command(self, line: str) -> str:
        """One command on the runtime socket; its answer."""
        with socket.create_connection(("127.0.0.1", self.stats_port), timeout=5) as conn:
            conn.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := conn.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def stats(self) -> dict[str, dict[str, str]]:
        """``show stat`` for each server of the backend: name -> its columns (``status``
        ``UP``/``DOWN``, ``req_tot``, ``hrsp_2xx``, ...)."""
        text = self.command("show stat").lstrip("# ")
        rows = csv.DictReader(text.splitlines())
        return {
            row["svname"]: row
            for row in rows
            if row["pxname"] == "gateways" and row["svname"] in self.servers
        }

    def wait_until(self, name: str, status: str, timeout: float = 30) -> None:
        """Until the health check reports ``name`` in ``status`` (``UP``, ``DOWN``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.stats()[name]["status"].split()[0] == status:
                return
            time.sleep(0.05)
        raise AssertionError(f"{name} not {status} after {timeout:g} s: {self.stats()[name]}")

    def marked_down(self) -> dict[str, datetime]:
        """When the health check marked each server down, from the log (its first time)."""
        marks: dict[str, datetime] = {}
        for line in self.log.read_text(errors="replace").splitlines():
            if found := DOWN.match(line):
                marks.setdefault(found[2], datetime.fromisoformat(found[1]))
        return marks
