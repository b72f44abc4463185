"""The servers a benchmark case runs, each in a process of its own: the stand-in provider,
the bare relays (``_passthrough.py``); starting, waiting for, stopping them.

The gateway (`revoctl_server`) and LiteLLM (`litellm`) have modules of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from .client import HttpConnection, Target

BENCHMARKS = Path(__file__).resolve().parent.parent
REPO = BENCHMARKS.parent
PROVIDER_KEY = "sk-bench-" + "x" * 24


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_up(port: int, path: str, process: subprocess.Popen[bytes], seconds: float) -> None:
    """Poll ``GET path`` until it answers 200; raise with the log's tail if it never does."""
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    deadline = time.monotonic() + seconds

    async def probe() -> int:
        connection = await HttpConnection.open(port)
        try:
            status, _, _ = await asyncio.wait_for(connection.exchange(request), 2)
            return status
        finally:
            connection.close()

    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with status {process.returncode} before answering")
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, TimeoutError):
            if asyncio.run(probe()) == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"did not answer GET {path} within {seconds:.0f} s")


def stop(process: subprocess.Popen[bytes], seconds: float = 30) -> None:
    """SIGTERM (a graceful stop: the gateway flushes its usage rows), SIGKILL if it hangs."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def log_tail(path: Path, lines: int = 8) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


STANDIN_WITH_DELAY = """
import signal, sys, threading
from tests.support.llm_standin import LLMStandIn
standin = LLMStandIn(api_key=sys.argv[1])
standin.delay = float(sys.argv[2])
done = threading.Event()
for signum in (signal.SIGINT, signal.SIGTERM):
    signal.signal(signum, lambda *_: done.set())
with standin:
    print(standin.url, flush=True)
    done.wait()
"""


@contextlib.contextmanager
def standin(delay: float) -> Iterator[tuple[str, int]]:
    """The stand-in in its own process (``delay``: each answer held that long); its URL
    and pid."""
    argv = [sys.executable, "-m", "tests.support.llm_standin", "--api-key", PROVIDER_KEY]
    if delay:
        argv = [sys.executable, "-c", STANDIN_WITH_DELAY, PROVIDER_KEY, str(delay)]
    process = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE)
    try:
        assert process.stdout is not None
        url = process.stdout.readline().decode().strip()
        yield url, process.pid
    finally:
        stop(process, 10)


# ---------------------------------------------------------------------- anchors


@contextlib.contextmanager
def passthrough(url: str, client: str) -> Iterator[Target]:
    """`_passthrough.py`: a bare Starlette route forwarding to the stand-in with ``client``."""
    port = free_port()
    argv = [sys.executable, str(BENCHMARKS / "_passthrough.py"), "--port", str(port)]
    argv += ["--upstream", url + "/v1", "--api-key", PROVIDER_KEY, "--client", client]
    workdir = Path(tempfile.mkdtemp(prefix="passthrough-gwbench-"))
    process = None
    try:
        with (workdir / "log").open("wb") as log:
            process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until_up(port, "/health/live", process, 30)
        except RuntimeError as exc:
            raise RuntimeError(f"pass-through: {exc}\n{log_tail(workdir / 'log')}") from None
        name = f"anchor: Starlette + {client} relay"
        yield Target(name, port, {}, None, (process.pid,), streams=False, up_since=time.monotonic())
    finally:
        if process is not None:
            stop(process)
        shutil.rmtree(workdir, ignore_errors=True)
