"""What `RateLimiter.reserve` and `RateLimiter.settle` send a store and answer without one.

A disabled rule never reaches the store: it is taken out of what is sent (`enabled`) and
its answer, "the rule is disabled", put back in its place (`with_disabled`). When the
store cannot answer, ``failure_mode`` does for the whole reservation (`failure_answer`):
every rule as a check would be answered, the budget and the slot allowed ("open") or
denied ("closed"), and ``stored`` False, since nothing was taken. A reservation taken
while another of the same request was denied is given back whole (`give_back`).

What cannot be stored is refused before the store is called (`check_charges`), as a check
refuses a bad key: a value the database would reject would otherwise count as the store
failing, for every caller.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

from revoctl.core.errors import UsageError
from revoctl.core.limits._operator import MAX_KEY_LENGTH, MAX_WEIGHT
from revoctl.core.limits.base import RateLimitResult
from revoctl.core.limits.reservations import (
    BudgetSettlement,
    Reservation,
    Reserved,
    RuleCharge,
    Settlement,
    SlotRelease,
)

if TYPE_CHECKING:
    from revoctl.core.limits._condition import StoreCondition
    from revoctl.core.limits.settings import RateLimitRule


MAX_LEASE_LENGTH = 64
"""The longest lease id a store keeps (``limit_leases.lease``)."""


def check_charges(reservation: Reservation) -> None:
    """Refuse what no store can keep: a key or an account of 0 or over 255 characters, a
    weight outside 1 to 1e9, a lease id over 64 characters.

    :raises UsageError: one of them.
    """
    for charge in reservation.rules:
        if not 0 < len(charge.key) <= MAX_KEY_LENGTH:
            raise UsageError(f"a rate-limit key is 1 to {MAX_KEY_LENGTH} characters")
        if not 0 < charge.weight <= MAX_WEIGHT:
            raise UsageError(f"a weight is 1 to {MAX_WEIGHT}, got {charge.weight}")
    for part in (reservation.budget, reservation.slot):
        if part is not None and not 0 < len(part.account) <= MAX_KEY_LENGTH:
            raise UsageError(f"an account is 1 to {MAX_KEY_LENGTH} characters")
    slot = reservation.slot
    if slot is not None and not 0 < len(slot.lease) <= MAX_LEASE_LENGTH:
        raise UsageError(f"a lease id is 1 to {MAX_LEASE_LENGTH} characters")


def disabled(rule: RateLimitRule) -> RateLimitResult:
    """The answer for a disabled rule: allowed, full, without the store."""
    limit = rule.capacity
    return RateLimitResult(True, limit, limit, None, 0.0, "the rule is disabled")


def _enabled_charges(charges: tuple[RuleCharge, ...]) -> tuple[RuleCharge, ...]:
    for charge in charges:
        if not charge.rule.enabled:
            return tuple(c for c in charges if c.rule.enabled)
    return charges


def enabled(reservation: Reservation) -> Reservation:
    """``reservation`` without its disabled rules (itself when it has none)."""
    rules = _enabled_charges(reservation.rules)
    if rules is reservation.rules:
        return reservation
    return dataclasses.replace(reservation, rules=rules)


def enabled_settlement(settlement: Settlement) -> Settlement:
    refunds = _enabled_charges(settlement.refunds)
    if refunds is settlement.refunds:
        return settlement
    return dataclasses.replace(settlement, refunds=refunds)


def with_disabled(
    charges: Sequence[RuleCharge], results: list[RateLimitResult]
) -> list[RateLimitResult]:
    """The store's ``results`` for the enabled ``charges``, with each disabled one's answer
    put back in its place."""
    if len(results) == len(charges):
        return results
    answers = iter(results)
    return [next(answers) if c.rule.enabled else disabled(c.rule) for c in charges]


def failure_answer(
    condition: StoreCondition, reservation: Reservation, reason: str, admit: bool
) -> Reserved:
    """``failure_mode``'s answer for a reservation the store could not decide."""
    rules = [
        condition.answer(c.rule, reason) if c.rule.enabled else disabled(c.rule)
        for c in reservation.rules
    ]
    return Reserved(
        rules,
        budget_allowed=admit or reservation.budget is None,
        slot_allowed=admit or reservation.slot is None,
        stored=False,
    )


def give_back(reservation: Reservation) -> Settlement:
    """Everything ``reservation`` (as sent: its enabled rules) took, back."""
    budget = reservation.budget
    slot = reservation.slot
    return Settlement(
        reservation.tag,
        refunds=reservation.rules,
        budget=None
        if budget is None
        else BudgetSettlement(budget.account, budget.period, -budget.amount, budget.keep_seconds),
        slot=None if slot is None else SlotRelease(slot.account, slot.lease),
    )
