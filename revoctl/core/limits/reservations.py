"""Reservations: everything one request takes from the limit store, in one round trip.

A gateway request is charged on several rules, a spend budget and a parallel slot. All
the charges of one caller share a hash tag (`hash_tag`), so on Redis Cluster they sit in
one slot and one script applies them; on SQL one transaction does. A store applies a
`Reservation` all or nothing: when any part denies, nothing is taken, and `Reserved` says
which part denied and each part's state. After the answer, one `Settlement` per tag gives
back what the usage shows was not used, settles the budget to the real cost and frees the
slot.

Budget amounts are whole nano-units of the price table's unit (`to_nano`): sums of
integers are exact in Lua, SQL and Python alike, where sums of float prices drift.

A parallel slot is a lease: held under an id of this process (`SlotCharge.lease`), it runs
out `lease_seconds` after it was taken or last renewed. The process that holds leases
renews all of them in one background call every `RENEW_SECONDS` (`LimitStore.renew`), so
the slots of a process that dies are free again within `LEASE_SECONDS`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from revoctl.core.limits.settings import RateLimitScope

if TYPE_CHECKING:
    from revoctl.core.limits._result import RateLimitResult
    from revoctl.core.limits.settings import RateLimitRule

NANO = 1_000_000_000
"""Budget units per unit of the price table (amounts are stored as whole nano-units)."""
LEASE_SECONDS = 15.0
"""How long a parallel slot stays held without a renewal: a dead holder's slots are free
again within this (the CONTRACT promises 30 s)."""
RENEW_SECONDS = 5.0
"""How often a process renews every lease it holds, in one call per store."""
_CALLER_SCOPES = (RateLimitScope.PER_USER, RateLimitScope.PER_API_KEY)


def to_nano(amount: float, *, up: bool) -> int:
    """``amount`` of the price table's unit in whole nano-units: rounded up for a bound
    reserved before the call (never too little), to the nearest for a cost settled after it."""
    scaled = amount * NANO
    return math.ceil(scaled - 1e-6) if up else round(scaled)


def from_nano(amount: int) -> float:
    return amount / NANO


def account_tag(account: str) -> str:
    """The hash tag of ``account``'s keys (a gateway key's name, or any caller-scoped key):
    the text before its first ``:``, braces dropped (so the tag is the whole of a Redis hash
    tag), ``_`` when nothing is left. A key's budget, its slots and its caller-scoped rules'
    keys (``KEYNAME``, ``KEYNAME:USER``, ``KEYNAME:MODEL``) share it: one cluster slot."""
    tag = account.split(":", 1)[0]
    if "{" in tag or "}" in tag:
        tag = tag.replace("{", "").replace("}", "")
    return tag or "_"


def hash_tag(rule: RateLimitRule, key: str) -> str:
    """The part of ``key`` that decides its cluster slot under ``rule``: `account_tag` for the
    caller's own scopes (``per_user``, ``per_api_key``, and their per-model keys); the whole
    key, braces dropped, for the others (``per_ip``, ``global``). A deterministic function of
    (rule, key): an operator's ``limits inspect RULE --key K`` finds the bucket the gateway
    filled."""
    if rule.scope in _CALLER_SCOPES:
        return account_tag(key)
    if "{" in key or "}" in key:
        key = key.replace("{", "").replace("}", "")
    return key or "_"


@dataclass(frozen=True, slots=True)
class RuleCharge:
    """``weight`` units of ``rule`` for ``key`` (charged, or given back in a settlement)."""

    rule: RateLimitRule
    key: str
    weight: int


@dataclass(frozen=True, slots=True)
class BudgetCharge:
    """``amount`` nano-units against ``account``'s budget for ``period`` (the index of the
    period since the account's key was created), whose cap is ``limit`` nano-units. The
    counter is kept ``keep_seconds`` (past the period's end, so the spend stays readable)."""

    account: str
    period: int
    limit: int
    amount: int
    keep_seconds: float


@dataclass(frozen=True, slots=True)
class SlotCharge:
    """One of ``account``'s ``cap`` parallel slots, held as the lease ``lease``."""

    account: str
    cap: int
    lease: str


@dataclass(frozen=True, slots=True)
class Reservation:
    """What one request takes under one hash tag, all or nothing, in one store call."""

    tag: str
    rules: tuple[RuleCharge, ...] = ()
    budget: BudgetCharge | None = None
    slot: SlotCharge | None = None


@dataclass(slots=True)
class Reserved:
    """A store's answer to a `Reservation`.

    ``rules``: each rule's result, in the reservation's order, as its own check would
    answer (``allowed``, ``remaining`` after the charge; when the whole was denied, nothing
    was taken and ``remaining`` is as found). ``spent``: the budget's counter after the
    charge (as found, when denied), in nano-units. ``in_flight``: the account's slots held,
    this one included when taken. ``stored``: False when the store failed and the
    limiter's ``failure_mode`` answered: nothing was taken, so nothing is to be settled.
    """

    rules: list[RateLimitResult] = field(default_factory=list)
    budget_allowed: bool = True
    spent: int = 0
    slot_allowed: bool = True
    in_flight: int = 0
    stored: bool = True

    @property
    def allowed(self) -> bool:
        return self.budget_allowed and self.slot_allowed and all(r.allowed for r in self.rules)


@dataclass(frozen=True, slots=True)
class BudgetSettlement:
    """Move ``account``'s counter for ``period`` by ``delta`` nano-units (negative: the
    reservation was above the cost; the counter never goes below 0)."""

    account: str
    period: int
    delta: int
    keep_seconds: float


@dataclass(frozen=True, slots=True)
class SlotRelease:
    account: str
    lease: str


@dataclass(frozen=True, slots=True)
class Settlement:
    """What one request gives back under one hash tag, in one store call: units of rules
    (``refunds``), a budget correction, a slot."""

    tag: str
    refunds: tuple[RuleCharge, ...] = ()
    budget: BudgetSettlement | None = None
    slot: SlotRelease | None = None


@dataclass(frozen=True, slots=True)
class HeldLease:
    """A slot this process holds, for `LimitStore.renew`."""

    tag: str
    account: str
    lease: str
