"""An anchor for `gateway_bench.py`: the thinnest gateway on the same stack as revoctl's.

One Starlette route, ``POST /v1/chat/completions``, served by uvicorn exactly as ``revoctl
serve`` runs it (h11, no access log), that reads the body, forwards it to the upstream with
one shared ``httpx.AsyncClient`` (the same pool limits as revoctl's providers) and returns
the upstream's JSON; with ``--client aiohttp`` through one ``aiohttp.ClientSession``
instead, and with ``--client none`` it answers a fixed body without any upstream (the
server stack alone). No auth, limits, breakers, metrics, logs or usage rows: what is left
of a gateway's cost when all of revoctl's own work is taken away.

    python benchmarks/_passthrough.py --port P --upstream http://127.0.0.1:N/v1 --api-key K
        [--client httpx|aiohttp|none]
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

FIXED = {
    "id": "chatcmpl-fixed",
    "object": "chat.completion",
    "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "lorem ipsum"}}],
    "usage": {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4},
}


def build(upstream: str, api_key: str, client_kind: str) -> Starlette:
    headers = {"Authorization": f"Bearer {api_key}"}
    state: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if client_kind == "httpx":
            import httpx

            limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
            async with httpx.AsyncClient(limits=limits, headers=headers) as client:
                state["client"] = client
                yield
        elif client_kind == "aiohttp":
            import aiohttp

            connector = aiohttp.TCPConnector(limit=100)
            async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
                state["client"] = session
                yield
        else:
            yield

    async def chat(request: Request) -> Response:
        body = json.loads(await request.body())
        if client_kind == "httpx":
            upstream_response = await state["client"].post(
                upstream + "/chat/completions", json=body
            )
            return JSONResponse(upstream_response.json())
        if client_kind == "aiohttp":
            async with state["client"].post(upstream + "/chat/completions", json=body) as answer:
                return JSONResponse(await answer.json())
        return JSONResponse(FIXED)

    async def live(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    routes = [
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/health/live", live, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="the upstream's base URL, with /v1")
    parser.add_argument("--api-key", default="")
    parser.add_argument("--client", choices=["httpx", "aiohttp", "none"], default="httpx")
    args = parser.parse_args()
    uvicorn.run(
        build(args.upstream, args.api_key, args.client),
        host="127.0.0.1",
        port=args.port,
        access_log=False,
        log_level="warning",
        server_header=False,
    )


if __name__ == "__main__":
    main()
