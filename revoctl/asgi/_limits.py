"""`AppLimits`: the gateway's identification and charging, for a user's own ASGI app.

One per app (the middleware makes it): the `Services` of a configuration (loaded as the
CLI loads it, or given), the gateway's `Identity` (``[gateway] auth = "keys"``: a valid
``Authorization: Bearer KEY`` is required, checked against the keys in memory) and its
``trusted_proxies``. A charge is the gateway's: the rule's scope picks the caller's
identifier (`Caller.identifier`), the limiter decides, and a refusal is the gateway's
own (`revoctl.runtime.denials.denied`), rendered with the same status, JSON error body
and headers (``Retry-After``, ``RateLimit-Policy``, ``RateLimit``, ``x-ratelimit-*``).
"""

from __future__ import annotations

import asyncio
import contextvars
from pathlib import Path
from typing import TYPE_CHECKING

from revoctl.core.limits._operator import MAX_KEY_LENGTH
from revoctl.core.limits.reservations import hash_tag
from revoctl.core.services import Services
from revoctl.runtime.charges import Charge, Charged
from revoctl.runtime.client_address import set_client
from revoctl.runtime.denials import denied
from revoctl.runtime.errors import GatewayError
from revoctl.runtime.identity import Caller, Identity

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.types import Scope

    from revoctl.config import LoadedConfig

SCOPE_KEY = "revoctl.limits"
"""Where the middleware leaves the app's `AppLimits` in each request's ASGI scope."""
CHARGES_KEY = "revoctl.charges"
"""Where a request's charges wait for its response's headers."""
USER_HEADER = "x-revoctl-user"
"""The header naming the end user, the gateway's ``user`` field (``per_user`` rules)."""

current: contextvars.ContextVar[AppLimits | None] = contextvars.ContextVar(
    "revoctl_app_limits", default=None
)
"""The `AppLimits` of the request being served (`guarded` finds its breakers there)."""


class RateLimited(Exception):
    """A refusal, as the gateway answers it: raised by `check_rate_limit`, rendered by
    `RateLimitMiddleware` (or `response`)."""

    def __init__(self, error: GatewayError, headers: list[tuple[str, str]]) -> None:
        super().__init__(error.message)
        self.error = error
        self.status = error.status
        self.headers = headers

    def body(self) -> dict[str, object]:
        """The gateway's error object: ``{"error": {"message", "type", "code"}}``."""
        return self.error.body()

    def response(self) -> JSONResponse:
        """The refusal as a Starlette ``JSONResponse``."""
        from starlette.responses import JSONResponse

        return JSONResponse(self.body(), status_code=self.status, headers=dict(self.headers))


class AppLimits:
    """The services, identity and trusted proxies of one app; opened on first use.

    ``services``: the app's own (left open on close); else ``config`` (a file, or a
    configuration already loaded; None: the CLI's search) and ``profile`` are loaded here
    and closed by `aclose`.
    """

    def __init__(
        self,
        services: Services | None = None,
        *,
        config: str | Path | LoadedConfig | None = None,
        profile: str | None = None,
        user_header: str | None = USER_HEADER,
    ) -> None:
        if services is None:
            from revoctl.config import LoadedConfig, load_config

            loaded = config if isinstance(config, LoadedConfig) else load_config(config, profile)
            services = Services(loaded)
            self._owned = True
        else:
            self._owned = False
        self.services = services
        settings = services.settings
        self.identity = Identity(settings.gateway, dict(settings.tiers))
        self.trusted = settings.gateway.trusted_networks()
        self.user_header = user_header.lower() if user_header else None
        self._started = False
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Read the gateway keys (``auth = "keys"``); once, on the first request."""
        if self._started:
            return
        async with self._lock:
            if not self._started:
                await self.identity.start(self.services.keys)
                self._started = True

    async def aclose(self) -> None:
        """Stop refreshing the keys; close the services this object opened."""
        await self.identity.stop()
        if self._owned:
            await self.services.aclose()

    def place(self, scope: Scope) -> None:
        """Set the scope's client from a trusted proxy's headers (as the gateway does) and
        leave this object in the scope for the dependencies."""
        scope[SCOPE_KEY] = self
        scope.setdefault(CHARGES_KEY, [])
        scope.setdefault("state", {})
        if self.trusted:
            set_client(scope, self.trusted)

    async def identify(self, request: Request) -> Caller:
        """The caller, as the gateway finds it (the key, the user header, the address).

        :raises RateLimited: 401 when keys are required and the request has none valid; 400
            for a user longer than a rate-limit key may be.
        """
        await self.start()
        user = request.headers.get(self.user_header) if self.user_header else None
        if user and len(user) > MAX_KEY_LENGTH:
            message = f"{self.user_header} is at most {MAX_KEY_LENGTH} characters"
            raise RateLimited(GatewayError(400, message, code="user_too_long"), [])
        try:
            return await self.identity.identify(request, user or None)
        except GatewayError as exc:
            raise RateLimited(exc, list(exc.headers)) from None

    async def charge(self, request: Request, rule: str, weight: int = 1) -> Charge:
        """Charge the caller ``weight`` on ``rule``; the charge's headers go on the response.

        :raises RateLimited: 429 (or 413, 400, 401) as the gateway refuses.
        :raises NotFoundError: no rule has that name.
        """
        caller = await self.identify(request)
        limiter = self.services.limiter
        found = limiter.rule(rule)
        try:
            identifier = caller.identifier(found.scope)
        except GatewayError as exc:
            raise RateLimited(exc, list(exc.headers)) from None
        key = limiter.key_for(found, identifier)
        result = await limiter.check_rate_limit(found, identifier, weight)
        charge = Charge(
            entries=[Charged("requests", found, key, hash_tag(found, key), weight, result)]
        )
        if not result.allowed:
            error = denied(charge)
            raise RateLimited(error, [*error.headers, *charge.headers()])
        request.scope.setdefault(CHARGES_KEY, []).append(charge)
        return charge


def of(request: Request) -> AppLimits:
    """The app's `AppLimits`, which `RateLimitMiddleware` placed in the request's scope.

    :raises RuntimeError: the app has no `RateLimitMiddleware`.
    """
    limits = request.scope.get(SCOPE_KEY)
    if not isinstance(limits, AppLimits):
        raise RuntimeError(
            "revoctl.asgi: add RateLimitMiddleware to the app (app.add_middleware("
            "RateLimitMiddleware, config=...)) before using rate_limit or check_rate_limit"
        )
    return limits
