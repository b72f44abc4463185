"""A `Charge` in the store's terms: its reservations, the store's answers, its settlements.

`reservations` groups a charge's rules, budget and slots (its key's, its model's) by hash
tag, one `Reservation` per tag; `record` puts the store's answers (`Reserved`) back into the charge.

`settlements` gives back, per tag the store applied: ``refund(entry)`` units of each rule,
the budget moved by ``budget_delta`` nano-units (None: left as reserved), the slot. A tag
with nothing to give back has no settlement. `with_states` puts the rules' states after
the settlement back into the charge, for a refusal's headers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from revoctl.core.limits.reservations import (
    BudgetCharge,
    BudgetSettlement,
    Reservation,
    RuleCharge,
    Settlement,
    SlotCharge,
    SlotRelease,
)

if TYPE_CHECKING:
    from revoctl.core.limits.base import RateLimitResult
    from revoctl.core.limits.reservations import Reserved
    from revoctl.runtime.charges import Charge, Charged, SlotHold


def reservations(charge: Charge) -> list[Reservation]:
    """``charge``'s parts as one `Reservation` per hash tag, in the order the tags appear."""
    budget = charge.budget
    return [
        Reservation(
            tag=tag,
            rules=tuple(RuleCharge(e.rule, e.key, e.weight) for e in charge.entries
                        if e.tag == tag),
            budget=(
                BudgetCharge(budget.account, budget.period, budget.limit, budget.amount,
                             budget.keep_seconds)
                if budget is not None and budget.tag == tag else None
            ),
            slot=(
                SlotCharge(slot.account, slot.cap, slot.lease)
                if (slot := _slot_under(charge, tag)) is not None else None
            ),
        )
        for tag in _tags(charge)
    ]  # fmt: skip


def record(charge: Charge, reservations: list[Reservation], answers: list[Reserved]) -> None:
    """The store's answers into ``charge``: each rule's state, the budget's, the slot's."""
    for reservation, answer in zip(reservations, answers, strict=True):
        if answer.stored:
            charge.stored_tags.add(reservation.tag)
        else:
            charge.store_failed = True
        entries = [e for e in charge.entries if e.tag == reservation.tag]
        for entry, result in zip(entries, answer.rules, strict=True):
            entry.result = result
        if reservation.budget is not None and charge.budget is not None:
            charge.budget.allowed, charge.budget.spent = answer.budget_allowed, answer.spent
        slot = _slot_under(charge, reservation.tag)
        if reservation.slot is not None and slot is not None:
            slot.allowed, slot.in_flight = answer.slot_allowed, answer.in_flight


def settlements(
    charge: Charge, *, refund: Callable[[Charged], int], budget_delta: int | None
) -> list[Settlement]:
    """``charge``'s settlements, one per tag the store applied, in the charge's order."""
    found: list[Settlement] = []
    budget = charge.budget
    for tag in _tags(charge):
        if tag not in charge.stored_tags:
            continue
        refunds = tuple(
            RuleCharge(entry.rule, entry.key, units)
            for entry in charge.entries
            if entry.tag == tag and (units := min(entry.weight, refund(entry))) > 0
        )
        settled = Settlement(
            tag=tag,
            refunds=refunds,
            budget=(
                BudgetSettlement(budget.account, budget.period, budget_delta, budget.keep_seconds)
                if budget is not None and budget.tag == tag and budget_delta else None
            ),
            slot=SlotRelease(slot.account, slot.lease)
            if (slot := _slot_under(charge, tag)) is not None else None,
        )  # fmt: skip
        if settled.refunds or settled.budget is not None or settled.slot is not None:
            found.append(settled)
    return found


def with_states(
    charge: Charge,
    planned: Sequence[Settlement],
    states: Sequence[Sequence[RateLimitResult] | None],
) -> None:
    """Each refunded rule's state after ``planned`` (``states``: per settlement, its
    refunds' states in order; None where the store could not settle)."""
    for settlement, after in zip(planned, states, strict=False):
        if after is None:
            continue
        for refunded, state in zip(settlement.refunds, after, strict=False):
            for entry in charge.entries:
                if entry.rule is refunded.rule and entry.key == refunded.key:
                    entry.result = state


def _tags(charge: Charge) -> list[str]:
    """Every hash tag ``charge`` holds something under, in order, each once."""
    tags = [entry.tag for entry in charge.entries]
    tags += [charge.budget.tag] if charge.budget is not None else []
    tags += [hold.tag for hold in charge.slots()]
    return list(dict.fromkeys(tags))


def _slot_under(charge: Charge, tag: str) -> SlotHold | None:
    """``charge``'s slot under ``tag``: the key's and the model's are under tags of their
    own (a key's name has no ``/``, `revoctl.runtime.charges.model_account`)."""
    return next((hold for hold in charge.slots() if hold.tag == tag), None)
