"""A key's budget period: when it started, when it resets, what it may spend in it.

Periods start at the key's creation and follow each other every ``budget_period`` of its
tier (a rotated key keeps its name's creation time, so its periods and its spend go on).
A top-up (``keys budget NAME --add X``) raises the cap of the period it was made in only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from revoctl.core.gateway.settings import TierConfig
    from revoctl.core.keys._store import KeyRecord


@dataclass(frozen=True)
class BudgetWindow:
    """One key's current budget period: its index since the key's creation, its bounds, and
    its cap (the tier's budget plus this period's top-ups) in the price table's units."""

    period: int
    start: datetime
    resets_at: datetime
    limit: float

    def seconds_left(self, now: datetime) -> float:
        return max(0.0, (self.resets_at - now).total_seconds())


def budget_window(record: KeyRecord, tier: TierConfig, now: datetime) -> BudgetWindow | None:
    """``record``'s budget period at ``now`` under ``tier``; None when the tier has no budget."""
    if tier.budget <= 0:
        return None
    length = tier.period_seconds()
    elapsed = max(0.0, (now - record.created_at).total_seconds())
    period = int(elapsed // length)
    start = record.created_at + timedelta(seconds=period * length)
    added = record.budget_added if record.budget_added_period == period else 0.0
    return BudgetWindow(period, start, start + timedelta(seconds=length), tier.budget + added)
