"""What a provider's failure means for the request: given back as it is, or another try;
and the refusal when no model could answer, from how each failed."""

from __future__ import annotations

import math

from revoctl.core.errors import first_line
from revoctl.runtime.errors import GatewayError
from revoctl.runtime.providers import (
    ProviderRateLimitError,
    ProviderRequestError,
    ProviderTimeoutError,
    ProviderUnavailableError,
)

UPSTREAM_AUTH_FAILURES = frozenset({401, 403})
"""A provider's statuses for a key it refuses: the gateway's configuration, not the caller's."""
MAX_REASON_CHARS = 300
"""A failure's reason, as a fallback's log line and a refusal name it, is cut here."""


def give_up_unless_retryable(exc: Exception) -> None:
    """A request the provider refused as malformed goes back as it is: another model
    would refuse it too. Anything else lets the next candidate try."""
    if isinstance(exc, ProviderRequestError):
        status = exc.status if exc.status and 400 <= exc.status < 500 else 400
        raise GatewayError(status, str(exc), code="upstream_rejected") from exc


def exhausted(model: str, failures: list[BaseException]) -> GatewayError:
    """The refusal when no candidate answered, from how they failed."""
    from revoctl.core import CircuitOpenError

    last = failures[-1] if failures else None
    tried = "; ".join(reason(f) for f in failures)
    if failures and all(isinstance(f, CircuitOpenError) for f in failures):
        return GatewayError(
            503, f"no model can answer {model!r}: {tried}", kind="server_error",
            code="circuit_open",
        )  # fmt: skip
    if isinstance(last, ProviderRateLimitError):
        headers = []
        if last.retry_after is not None:
            headers.append(("retry-after", str(max(1, math.ceil(last.retry_after)))))
        return GatewayError(
            429, f"every provider for {model!r} is rate limited: {tried}",
            kind="rate_limit_exceeded", code="upstream_rate_limited", headers=headers,
        )  # fmt: skip
    if isinstance(last, ProviderUnavailableError) and last.status in UPSTREAM_AUTH_FAILURES:
        return GatewayError(
            502, f"upstream authentication failed for {model!r} (the provider refused the "
            f"gateway's key: check the provider's api_key): {tried}", kind="server_error",
        )  # fmt: skip
    if isinstance(last, ProviderTimeoutError | TimeoutError):
        return GatewayError(
            504, f"no model answered {model!r} in time: {tried}", kind="server_error"
        )
    return GatewayError(502, f"no model could answer {model!r}: {tried}", kind="server_error")


def reason(exc: BaseException) -> str:
    """``exc``'s first line, cut at `MAX_REASON_CHARS`."""
    return first_line(exc)[:MAX_REASON_CHARS]
