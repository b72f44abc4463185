"""What a route calls: `check_rate_limit`, the dependency `rate_limit`, the decorator `guarded`.

None of them imports FastAPI: `rate_limit` returns an async callable taking a Starlette
``Request``, which FastAPI's ``Depends`` accepts as it is.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from starlette.requests import Request  # at run time: FastAPI reads the annotation

from revoctl.asgi._limits import current, of
from revoctl.core.errors import CircuitOpenError

if TYPE_CHECKING:
    from revoctl.asgi._limits import AppLimits
    from revoctl.runtime.charges import Charge

P = ParamSpec("P")
T = TypeVar("T")


async def check_rate_limit(request: Request, rule: str, weight: int = 1) -> Charge:
    """Charge the caller of ``request`` ``weight`` on ``rule``, identified as the gateway
    identifies it; the rule's state headers go on the response.

    :raises RateLimited: refused (429 ``rate_limit_exceeded``, 413, 401 without a valid
        key); `RateLimitMiddleware` answers it as the gateway would.
    :raises RuntimeError: the app has no `RateLimitMiddleware`.
    """
    return await of(request).charge(request, rule, weight)


def rate_limit(rule: str, weight: int = 1) -> Callable[[Request], Awaitable[Charge]]:
    """A dependency charging ``rule``: ``Depends(rate_limit("api_generation"))``."""

    async def dependency(request: Request) -> Charge:
        return await check_rate_limit(request, rule, weight)

    dependency.__name__ = f"rate_limit_{rule}"
    return dependency


def guarded(
    breaker: str,
    fallback: Callable[..., Any] | None = None,
    *,
    limits: AppLimits | None = None,
) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Awaitable[T]]]:
    """Guard an async function with the breaker ``breaker`` of the app's configuration:
    while it is open (tripped by failures here or anywhere on the store, or by
    ``revoctl breakers trip``), the function is not called. ``fallback`` (sync or async,
    given the same arguments) answers when the breaker refuses or the call fails in a way
    it counts; without one, `CircuitOpenError` (and the failure) propagate.

    The breakers are those of ``limits``, else of the request being served (the app's
    `RateLimitMiddleware`).
    """

    def decorate(func: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        @functools.wraps(func)
        async def call(*args: P.args, **kwargs: P.kwargs) -> T:
            found = limits or current.get()
            if found is None:
                raise RuntimeError(
                    f"revoctl.asgi.guarded({breaker!r}): call it while serving a request "
                    "of an app with RateLimitMiddleware, or pass limits="
                )
            guard = found.services.breakers.get(breaker)
            try:
                result: T = await guard.call(func, *args, **kwargs)
                return result
            except CircuitOpenError:
                if fallback is None:
                    raise
            except Exception as exc:
                if fallback is None or not guard.is_failure(exc):
                    raise
            answer = fallback(*args, **kwargs)
            return await answer if inspect.isawaitable(answer) else answer  # type: ignore[no-any-return]

        return call

    return decorate
