"""The refusal of a denied reservation: which part denied it, and what the client is told.

413 ``request_too_large`` without ``Retry-After`` when a rule can never allow the request;
else 429 with ``Retry-After``: ``too_many_parallel_requests`` (the key's slots, or the
model's, are all held), ``budget_exceeded`` (the seconds to the next budget period) or
``rate_limit_exceeded`` (the first denying rule's wait). While the store cannot be reached
and ``failure_mode`` is "closed", the rules' denial stands as before; a request with only a
budget or a slot to reserve is 503 ``limits_unavailable`` (it is not the caller's doing).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from revoctl.runtime.charges import MODEL_ACCOUNT_PREFIX
from revoctl.runtime.errors import GatewayError

if TYPE_CHECKING:
    from revoctl.runtime.charges import Charge

PARALLEL_RETRY_SECONDS = 1
"""``Retry-After`` of ``too_many_parallel_requests``: a slot is usually free again soon."""


def denied(charge: Charge) -> GatewayError:
    """The refusal for a denied reservation: 413 when a rule can never allow the request,
    else 429 for the parallel cap, the budget or the first denying rule."""
    denied = [entry for entry in charge.entries if not entry.result.allowed]
    never = next((entry for entry in denied if entry.result.retry_after is None), None)
    if never is not None:
        message = (
            f"this request needs {never.weight} {never.kind} and the limit of "
            f"{never.rule.name!r} is {never.result.limit}: it can never be allowed"
        )
        return GatewayError(413, message, code="request_too_large")
    if charge.store_failed and not denied:
        return GatewayError(
            503,
            "the limits store cannot be reached and failure_mode is closed: retry shortly",
            kind="server_error",
            code="limits_unavailable",
            headers=[("retry-after", str(PARALLEL_RETRY_SECONDS))],
        )
    slot, model_slot, budget = charge.slot, charge.model_slot, charge.budget
    if charge.store_failed:
        slot = model_slot = budget = None  # failure_mode denied them: the rules' denial speaks
    if slot is not None and not slot.allowed:
        return GatewayError(
            429,
            f"the key {slot.account!r} has {slot.cap} requests in flight, its tier's "
            "max_parallel_requests: retry when one ends",
            kind="rate_limit_exceeded",
            code="too_many_parallel_requests",
            headers=[("retry-after", str(PARALLEL_RETRY_SECONDS))],
        )
    if model_slot is not None and not model_slot.allowed:
        model = model_slot.account.removeprefix(MODEL_ACCOUNT_PREFIX)
        return GatewayError(
            429,
            f"the model {model!r} has {model_slot.cap} calls in flight, its "
            "max_parallel_requests: retry when one ends",
            kind="rate_limit_exceeded",
            code="too_many_parallel_requests",
            headers=[("retry-after", str(PARALLEL_RETRY_SECONDS))],
        )
    if budget is not None and not budget.allowed:
        retry = max(1, math.ceil(budget.resets_in))
        return GatewayError(
            429,
            f"the budget of the key {budget.account!r} is spent for this period: it resets "
            f"in {retry}s",
            kind="rate_limit_exceeded",
            code="budget_exceeded",
            headers=[("retry-after", str(retry))],
        )
    entry = denied[0]
    retry_after = entry.result.retry_after or 0.0
    message = (
        f"rate limit {entry.rule.name!r} reached for {entry.kind}: retry in {retry_after:.3g}s"
    )
    headers = [("retry-after", str(max(1, math.ceil(retry_after))))]
    return GatewayError(429, message, kind=entry.kind, code="rate_limit_exceeded", headers=headers)
