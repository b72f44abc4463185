"""The FastAPI example (examples/fastapi_app) on a test's own Redis prefix, and a model stand-in.

`example_config` writes the example's revoctl.toml moved to the test's Redis database and
key prefix; `ModelStandIn` is the model the example calls (``POST {"prompt"}``), answering
with ``status`` and counting the calls that reached it; `lifespan` runs an ASGI app's
startup and shutdown around in-process requests (httpx's ASGITransport runs neither).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

EXAMPLE = Path(__file__).parents[2] / "examples" / "fastapi_app"
WINDOW = 31622400
"""The rules' window in the tests: a leap year, so no fixed window rolls over while a test
counts (the example's 60 s would, now and then, between a burst and its check)."""


def example_config(tmp_path: Path, redis_url: str, prefix: str, extra: str = "") -> Path:
    """The example's configuration on ``redis_url`` under ``prefix`` (its windows `WINDOW`),
    plus ``extra``."""
    text = (EXAMPLE / "revoctl.toml").read_text()
    assert text.count("window_seconds = 60\n") == 2
    text = text.replace("window_seconds = 60\n", f"window_seconds = {WINDOW}\n")
    text = text.replace('url = "redis://127.0.0.1:6379/0"', f'url = "{redis_url}"')
    text = text.replace(
        'store = "redis"\nfailure_mode',
        f'store = "redis"\nkey_prefix = "{prefix}rl:"\nfailure_mode',
    )
    text = text.replace(
        '[breakers]\nstore = "redis"', f'[breakers]\nstore = "redis"\nkey_prefix = "{prefix}cb:"'
    )
    path = tmp_path / "revoctl.toml"
    path.write_text(text + extra)
    return path


class ModelStandIn:
    """A model over real HTTP on 127.0.0.1: answers ``status`` (200: the prompt reversed)."""

    def __init__(self) -> None:
        self.status = 200
        self.calls = 0
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                prompt = json.loads(self.rfile.read(length))["prompt"]
                stand_in.calls += 1
                body = json.dumps({"answer": prompt[::-1]}).encode()
                self.send_response(stand_in.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/answer"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ModelStandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@contextlib.asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    """``app``'s lifespan startup before the block, its shutdown after."""
    inbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    task = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, outbox.put)
    )
    await inbox.put({"type": "lifespan.startup"})
    assert (await outbox.get())["type"] == "lifespan.startup.complete"
    try:
        yield
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        assert (await outbox.get())["type"] == "lifespan.shutdown.complete"
        await task
