"""Your own FastAPI app, limited and guarded by revoctl as the gateway is (``revoctl.asgi``).

    pip install -r examples/fastapi_app/requirements.txt
    revoctl db migrate                    # the denials' log (rate_limit_logs)
    uvicorn examples.fastapi_app.app:app --workers 2

``POST /generate`` charges the caller on ``api_generation`` (per user: the
``X-Revoctl-User`` header; with ``[gateway] auth = "keys"``, per key too) and answers 429
as the gateway does when the rule is spent; the model is called through the
``model_api`` breaker, whose fallback answers while the model fails or the breaker is
open (``revoctl breakers trip model_api`` opens it in every worker). The limits and
breakers live in Redis, so every worker, and ``revoctl limits inspect``, sees one state.

The configuration is ``REVOCTL_CONFIG`` else the revoctl.toml beside this file; the model
is ``MODEL_URL`` (a POST of ``{"prompt"}`` answering ``{"answer"}``).
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
from fastapi import Depends, FastAPI, Request
from pydantic import BaseModel

from revoctl.asgi import RateLimitMiddleware, check_rate_limit, guarded, rate_limit

CONFIG = os.environ.get("REVOCTL_CONFIG") or Path(__file__).with_name("revoctl.toml")
MODEL_URL = "http://127.0.0.1:8081/answer"


class GenerateRequest(BaseModel):
    prompt: str


async def canned(prompt: str) -> dict[str, str]:
    """The fallback: what the app answers while the model cannot."""
    return {"answer": "the model is unavailable: try again shortly", "source": "fallback"}


@guarded("model_api", fallback=canned)
async def call_model(prompt: str) -> dict[str, str]:
    async with httpx.AsyncClient(timeout=10) as client:
        url = os.environ.get("MODEL_URL", MODEL_URL)
        response = await client.post(url, json={"prompt": prompt})
        response.raise_for_status()
        return {"answer": response.json()["answer"], "source": "model"}


def create_app(config: str | Path = CONFIG) -> FastAPI:
    app = FastAPI(title="an app limited by revoctl")
    app.add_middleware(RateLimitMiddleware, config=config)

    @app.post("/generate")
    async def generate(body: GenerateRequest, http_request: Request) -> dict[str, str]:
        await check_rate_limit(http_request, "api_generation")  # as the seed's route does
        return await call_model(body.prompt)

    @app.get("/whoami", dependencies=[Depends(rate_limit("per_address"))])
    async def whoami(http_request: Request) -> dict[str, str | None]:
        """A rule as a dependency: the client address the limiter counts (per_ip)."""
        client = http_request.client
        return {"client": client.host if client else None}

    return app


app = create_app()
