"""``revoctl serve``: uvicorn running the gateway, one process or several workers.

Workers are separate processes that each build the app from the same configuration:
the config file and profile travel in ``REVOCTL_CONFIG`` / ``REVOCTL_PROFILE``, and
``--set`` flags become ``REVOCTL_<TABLE>__<KEY>`` variables (set last, so they win as
flags do). With several workers, metrics are merged through a fresh
``PROMETHEUS_MULTIPROC_DIR``, and the requests in flight are counted in a fresh slot file
(`revoctl.runtime.in_flight`, for load shedding), both removed when the server stops.

On SIGTERM (or SIGINT) uvicorn stops accepting, lets the requests in flight end and then
runs the app's shutdown; the server exits as soon as the last request has ended. One
bound, ``[gateway] drain_seconds``, covers it all: uvicorn gives the requests
`GatewayConfig.request_drain_seconds` (then cuts them), the app's shutdown has the rest
(`revoctl.runtime.app`). With ``--workers``, `Supervisor` stops listening as the signal
arrives, so a new connection is refused at once rather than queued for no one, and
kills a worker still running `EXIT_GRACE_SECONDS` past the bound; a single worker has
no supervisor, and keeps to the bound as far as its services' own timeouts go.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import FrameType

from uvicorn import Config, Server
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

try:  # httptools, when installed (uvicorn[standard]), parses faster than h11
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _HTTPProtocol
except ImportError:  # pragma: no cover - the runtime extra installs it
    from uvicorn.protocols.http.h11_impl import H11Protocol as _HTTPProtocol  # type: ignore[assignment]

from revoctl.core.errors import BackendUnavailableError, UsageError
from revoctl.core.gateway.settings import GatewayConfig
from revoctl.runtime.draining import close_event_streams
from revoctl.runtime.in_flight import IN_FLIGHT_ENV, create_slot_file
from revoctl.runtime.metrics import MULTIPROC_ENV

logger = logging.getLogger("revoctl.serve")

APP_FACTORY = "revoctl.runtime.app:create_app"
HTTP_PROTOCOL = "revoctl.runtime.server:NoDelayHTTPProtocol"
EXIT_GRACE_SECONDS = 0.5
"""Beyond ``drain_seconds`` after the signal, for a worker to exit once its close is done."""


class NoDelayHTTPProtocol(_HTTPProtocol):
    """uvicorn's HTTP/1.1 protocol with Nagle's algorithm off on every connection, whose
    shutdown ends the event streams first.

    With ``--workers`` above 1, uvicorn binds the listening socket itself without naming
    TCP as its protocol, so asyncio does not set ``TCP_NODELAY`` on the connections it
    accepts, and each response waits ~40 ms for the client's delayed ACK (measured: 44 ms
    added a response, 2.3 ms with this).
    """

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)

    def shutdown(self) -> None:
        """uvicorn's graceful close of this connection, once the open event streams are told
        to end: a status page left open would else hold the exit (`revoctl.runtime.draining`)."""
        close_event_streams()
        super().shutdown()


class Supervisor(Multiprocess):
    """uvicorn's supervisor of ``--workers``, which also stops listening when told to stop
    and keeps the workers to ``drain_seconds``.

    The listening socket is bound here and shared by the workers. On SIGTERM each worker
    closes its copy at once, but this process's copy kept the socket listening until the
    last worker had drained: the kernel went on accepting connections no worker would
    serve, each left hanging until the server exited and then reset (measured: a probe
    sent 0.8 s into a 6.2 s drain hung 5.4 s). Closed as the signal arrives, a new
    connection is refused at once, and the client or its load balancer goes elsewhere.

    A worker's close keeps to its share of the bound as far as its services' own timeouts
    go; one that outlasts it anyway (a database that stops answering: its connections'
    close waits on it) is killed `EXIT_GRACE_SECONDS` past the bound, from here, where
    nothing has to be cancelled halfway.
    """

    def __init__(self, config: Config, sockets: list[socket.socket], drain_seconds: float) -> None:
        super().__init__(config, sockets)
        self.drain_seconds = drain_seconds
        self.deadline: float | None = None
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._on_stop_signal)

    def _on_stop_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.deadline is None:
            self.deadline = time.monotonic() + self.drain_seconds + EXIT_GRACE_SECONDS
        for sock in self.sockets:
            sock.close()
        self.signal_queue.append(signum)  # and on with uvicorn's own handling of it

    def keep_subprocess_alive(self) -> None:
        if self.deadline is None:  # once stopping, a new worker would have no socket
            super().keep_subprocess_alive()

    def join_all(self) -> None:
        deadline = self.deadline or time.monotonic() + self.drain_seconds + EXIT_GRACE_SECONDS
        for worker in self.processes:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                logger.error(
                    "worker %s still running %gs after it was told to stop: killed",
                    worker.pid, self.drain_seconds + EXIT_GRACE_SECONDS,
                )  # fmt: skip
                worker.kill()
                worker.process.join()


def is_loopback(host: str) -> bool:
    """Whether ``host`` listens only on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listening_socket(host: str, port: int) -> socket.socket:
    """The socket the server listens on, bound before anything starts (as uvicorn binds it:
    IPv6 when ``host`` has a colon), so that a bad address is one error, not a worker's
    failed start-up.

    :raises UsageError: ``host`` does not resolve, or is not an address of this machine.
    :raises BackendUnavailableError: the address is in use.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        address = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)[0][4]
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) else "not a host name"
        raise UsageError(f"--host {host!r}: cannot resolve it ({reason})") from None
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        where = f"cannot listen on {host}:{port}"
        if exc.errno == errno.EADDRINUSE:
            raise BackendUnavailableError(f"{where}: the address is already in use") from None
        raise UsageError(f"{where}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


def worker_environment(
    config_file: Path | None, profile: str | None, overrides: Mapping[str, str]
) -> dict[str, str]:
    """The variables that make each worker load the configuration this command loaded."""
    env: dict[str, str] = {}
    if config_file is not None:
        env["REVOCTL_CONFIG"] = str(config_file.absolute())
    if profile:
        env["REVOCTL_PROFILE"] = profile
    for key, value in overrides.items():
        env["REVOCTL_" + key.upper().replace(".", "__")] = value
    return env


def run(
    *,
    host: str,
    port: int,
    workers: int,
    environment: Mapping[str, str],
    gateway: GatewayConfig,
    log_level: str = "warning",
    listening: socket.socket | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT; requests in flight then get
    `GatewayConfig.request_drain_seconds` to end, and the server exits when they have
    and its shutdown is done (see the module docstring for the bound on it). ``listening``
    is the socket `listening_socket` bound for ``host`` and ``port``, when the caller bound it.

    :raises UsageError: ``host`` does not resolve, or is not an address of this machine.
    :raises BackendUnavailableError: the address is in use.
    """
    sock = listening or listening_socket(host, port)
    os.environ.update(environment)
    metrics_dir = None
    if workers > 1 and not os.environ.get(MULTIPROC_ENV):
        metrics_dir = tempfile.mkdtemp(prefix="revoctl-metrics-")
        os.environ[MULTIPROC_ENV] = metrics_dir
    config = Config(
        APP_FACTORY,
        factory=True,
        http=HTTP_PROTOCOL,
        host=host,
        port=port,
        workers=workers,
        access_log=False,  # the gateway writes its own JSON access log, redacted
        log_config=None,  # revoctl's logging, installed by the CLI, stays in charge
        log_level=log_level,
        # Annotated int, used as asyncio.timeout()'s delay: a float is what it takes.
        timeout_graceful_shutdown=gateway.request_drain_seconds(),  # type: ignore[arg-type]
        server_header=False,
        proxy_headers=False,  # the client address is gateway.trusted_proxies' to decide
    )
    slot_file = None
    if workers > 1:  # the workers' shared count of requests in flight (revoctl.runtime.in_flight)
        slot_file = create_slot_file(gateway.in_flight_cap(workers), workers)
        os.environ[IN_FLIGHT_ENV] = str(slot_file)
    try:
        if workers > 1:
            Supervisor(config, [sock], drain_seconds=gateway.drain_seconds).run()
        else:
            server = Server(config)
            server.run(sockets=[sock])
            if not server.started:
                sys.exit(STARTUP_FAILURE)
    except KeyboardInterrupt:  # uvicorn raises the SIGINT it caught again once it has stopped
        pass
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
        if slot_file is not None:
            slot_file.unlink(missing_ok=True)
