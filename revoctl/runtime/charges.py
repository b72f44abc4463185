"""`Charge`: what one request took from the limit store, for its headers and its settlement.

A request holds units of rules (`Charged`), perhaps a share of its key's budget
(`BudgetHold`), perhaps one of its key's parallel slots and one of its model's (`SlotHold`;
a model's under the account `model_account`), each under the hash tag its store key falls
in (`revoctl.core.limits.reservations.hash_tag`). The charge is settled once
(`Charge.claim`): whichever path ends the request first (the answer, a refusal, a broken
stream, a client gone, an error) settles it, and the others find it settled.

Every response to an identified caller shows its rules' state: ``RateLimit-Policy`` and
``RateLimit`` (draft-ietf-httpapi-ratelimit-headers), the ``x-ratelimit-*`` headers OpenAI
clients read, and, for a key with a budget, ``x-revoctl-budget-remaining`` and
``x-revoctl-budget-reset`` (in the price table's units; seconds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from revoctl.core.limits.reservations import from_nano

if TYPE_CHECKING:
    from revoctl.core.limits import RateLimitRule
    from revoctl.core.limits.base import RateLimitResult


@dataclass
class Charged:
    """One rule's charge for one request: what was asked, and the rule's state since; once
    given back (or when only read), ``weight`` is 0."""

    kind: str  # "requests", "tokens", "model-requests" or "model-tokens"
    rule: RateLimitRule
    key: str
    tag: str
    weight: int
    result: RateLimitResult

    @property
    def tokens(self) -> bool:
        return self.kind.endswith("tokens")


@dataclass
class BudgetHold:
    """A request's share of its key's budget: ``amount`` nano-units reserved against the
    period ``period`` (cap ``limit``), the counter ``spent`` after it, the period's end."""

    account: str
    tag: str
    period: int
    limit: int
    amount: int
    keep_seconds: float
    resets_in: float
    spent: int = 0
    allowed: bool = True


MODEL_ACCOUNT_PREFIX = "model/"
"""Before a model's name, the account of its parallel slots: a key's name has no ``/``, so
the two never share an account, and each model has a hash tag of its own."""


def model_account(model: str) -> str:
    """The account ``model``'s parallel slots are held under."""
    return MODEL_ACCOUNT_PREFIX + model


@dataclass
class SlotHold:
    """One of a key's ``cap`` parallel slots, held as the lease ``lease``."""

    account: str
    tag: str
    cap: int
    lease: str
    in_flight: int = 0
    allowed: bool = True


@dataclass
class Charge:
    """What a request was charged, for the response headers and the settlement.

    ``stored_tags``: the tags whose reservation the store applied (a tag the limiter's
    ``failure_mode`` answered took nothing, and gives nothing back).
    """

    entries: list[Charged] = field(default_factory=list)
    budget: BudgetHold | None = None
    slot: SlotHold | None = None
    model_slot: SlotHold | None = None
    stored_tags: set[str] = field(default_factory=set)
    store_failed: bool = False
    """Whether ``failure_mode`` answered a reservation the store could not decide."""
    settled: bool = False

    def claim(self) -> bool:
        """True once, for whichever path settles this charge; False afterwards (and for a
        charge that took nothing)."""
        if self.settled or not self.stored_tags:
            return False
        self.settled = True
        return True

    def slots(self) -> list[SlotHold]:
        """The key's slot and the model's, those it holds."""
        return [hold for hold in (self.slot, self.model_slot) if hold is not None]

    def tokens(self) -> list[Charged]:
        return [entry for entry in self.entries if entry.tokens]

    def headers(self) -> list[tuple[str, str]]:
        """The rules' state as ``RateLimit-Policy``/``RateLimit`` and ``x-ratelimit-*``;
        the budget's as ``x-revoctl-budget-*``."""
        headers = _rule_headers(self.entries)
        budget = self.budget
        if budget is not None:
            left = max(0, budget.limit - budget.spent)
            headers += [
                ("x-revoctl-budget-remaining", f"{from_nano(left):.9g}"),
                ("x-revoctl-budget-reset", str(math.ceil(budget.resets_in))),
            ]
        return headers


def _rule_headers(entries: list[Charged]) -> list[tuple[str, str]]:
    if not entries:
        return []
    policy = ", ".join(
        f'"{e.kind}";q={e.result.limit};w={_whole(e.rule.window_seconds)}' for e in entries
    )
    state = ", ".join(
        f'"{e.kind}";r={e.result.remaining};t={math.ceil(e.result.reset_after)}' for e in entries
    )
    headers = [("ratelimit-policy", policy), ("ratelimit", state)]
    for e in entries:
        headers += [
            (f"x-ratelimit-limit-{e.kind}", str(e.result.limit)),
            (f"x-ratelimit-remaining-{e.kind}", str(e.result.remaining)),
            (f"x-ratelimit-reset-{e.kind}", _duration(e.result.reset_after)),
        ]
    return headers


def _whole(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"


def _duration(seconds: float) -> str:
    """OpenAI's reset format: ``1s``, ``1.5s``, ``6m0s``, ``1h2m3s``."""
    if seconds < 60:
        return f"{round(seconds, 3):g}s"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return (f"{hours}h" if hours else "") + f"{minutes}m{secs}s"
