"""revoctl for your own ASGI app (Starlette, FastAPI): the gateway's rate limits and
refusals, and the breakers, around your routes.

    app.add_middleware(RateLimitMiddleware, config="revoctl.toml")

    @app.post("/generate", dependencies=[Depends(rate_limit("api_generation"))])
    async def generate(...): ...

The caller is identified as the gateway identifies it (``Authorization: Bearer KEY`` with
``[gateway] auth = "keys"``, the ``X-Revoctl-User`` header as its ``user``, the client
address behind ``trusted_proxies``), the rule is charged on the same limiter (the same
keys ``revoctl limits inspect`` reads), and a refusal is the gateway's: 429 with
``Retry-After`` and the rules' headers, OpenAI's JSON error object.
"""

from __future__ import annotations

from revoctl.asgi._calls import check_rate_limit, guarded, rate_limit
from revoctl.asgi._limits import USER_HEADER, AppLimits, RateLimited
from revoctl.asgi._middleware import RateLimitMiddleware

__all__ = [
    "USER_HEADER",
    "AppLimits",
    "RateLimitMiddleware",
    "RateLimited",
    "check_rate_limit",
    "guarded",
    "rate_limit",
]
