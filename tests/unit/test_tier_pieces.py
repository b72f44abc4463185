"""The request path's pieces for tiers, fast and in memory: a rotated key's old value in the
`KeyRing`, a key's tier (`Identity`), the models a caller may be served by and the spend it
reserves, and how a `Charge` becomes its reservations and settlements (one per hash tag).
The same behaviour through a served gateway is in tests/integration/test_gateway_tiers.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from revoctl.core.gateway.settings import GatewayConfig, ModelConfig, TierConfig
from revoctl.core.keys import KeyRecord, hash_key
from revoctl.core.limits import RateLimitRule, RateLimitScope
from revoctl.core.limits.base import RateLimitResult
from revoctl.core.limits.reservations import account_tag, hash_tag
from revoctl.runtime.charges import BudgetHold, Charge, Charged, SlotHold, model_account
from revoctl.runtime.charging import spend_bound
from revoctl.runtime.denials import denied
from revoctl.runtime.errors import GatewayError
from revoctl.runtime.identity import Caller, Identity
from revoctl.runtime.keys import KeyRing
from revoctl.runtime.reserving import reservations, settlements
from revoctl.runtime.routing import candidates

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
OLD_KEY = "rvk_00000000000000aa_" + "a" * 43
NEW_KEY = "rvk_00000000000000bb_" + "b" * 43


def record(**fields: Any) -> KeyRecord:
    base: dict[str, Any] = {
        "name": "team-a",
        "key_id": "00000000000000bb",
        "key_hash": hash_key(NEW_KEY),
        "created_at": NOW - timedelta(days=1),
        "expires_at": None,
        "revoked_at": None,
    }
    return KeyRecord(**{**base, **fields})


class Keys:
    """A key store that lists fixed records (the ring reads nothing else)."""

    def __init__(self, *records: KeyRecord) -> None:
        self.records = list(records)

    async def list_keys(self) -> list[KeyRecord]:
        return self.records


async def ring_at(now: datetime, *records: KeyRecord) -> KeyRing:
    ring = KeyRing(Keys(*records), refresh_seconds=60, now=lambda: now)  # type: ignore[arg-type]
    await ring.refresh()
    return ring


async def test_a_rotated_keys_old_value_works_until_its_overlap_ends() -> None:
    rotated = record(
        previous_key_id="00000000000000aa",
        previous_key_hash=hash_key(OLD_KEY),
        previous_expires_at=NOW + timedelta(minutes=5),
    )
    during = await ring_at(NOW, rotated)
    assert (await during.find(OLD_KEY)) == rotated
    assert (await during.find(NEW_KEY)) == rotated
    forged = OLD_KEY[:-1] + "b"
    assert await during.find(forged) is None
    after = await ring_at(NOW + timedelta(minutes=5), rotated)
    assert await after.find(OLD_KEY) is None
    assert await after.verify(NEW_KEY) == "team-a"
    revoked = await ring_at(NOW, record(**{**rotated.__dict__, "revoked_at": NOW}))
    assert await revoked.find(OLD_KEY) is None and await revoked.find(NEW_KEY) is None


async def test_a_key_without_rotation_has_no_old_value() -> None:
    ring = await ring_at(NOW, record())
    assert await ring.find(OLD_KEY) is None


def identity(**tiers: TierConfig) -> Identity:
    return Identity(GatewayConfig(), tiers)


def test_a_keys_tier_is_resolved_and_an_unconfigured_one_is_refused() -> None:
    gold = TierConfig(budget=5.0, models=("gpt",))
    assert identity(gold=gold)._tier_of(record(tier="gold")) is gold
    assert identity(gold=gold)._tier_of(record()) is None
    assert identity(gold=gold)._tier_of(None) is None
    with pytest.raises(GatewayError) as refused:
        identity(gold=gold)._tier_of(record(tier="platinum"))
    assert refused.value.status == 403 and refused.value.code == "tier_not_configured"
    assert "platinum" in refused.value.message


MODELS = {
    "gpt": ModelConfig(
        provider="p", input_cost_per_1k=1.0, output_cost_per_1k=2.0, fallbacks=("big", "cheap")
    ),
    "big": ModelConfig(provider="p", input_cost_per_1k=10.0, output_cost_per_1k=30.0),
    "cheap": ModelConfig(provider="p", input_cost_per_1k=0.1, output_cost_per_1k=0.2),
}


def caller(tier: TierConfig | None) -> Caller:
    return Caller("team-a", None, "192.0.2.1", record(), tier)


def test_a_fallback_outside_the_tiers_models_is_not_a_candidate() -> None:
    assert candidates(MODELS, "gpt", caller(None)) == ["gpt", "big", "cheap"]
    assert candidates(MODELS, "gpt", caller(TierConfig(models=("gpt", "cheap")))) == [
        "gpt",
        "cheap",
    ]


def test_the_spend_bound_takes_the_highest_prices_among_allowed_candidates() -> None:
    # 100 prompt tokens, 50 max_tokens: every candidate -> big's prices
    assert spend_bound(MODELS, caller(None), "gpt", 100, 50) == pytest.approx(
        (100 * 10.0 + 50 * 30.0) / 1000
    )
    # big not allowed: the highest of gpt and cheap
    limited = caller(TierConfig(models=("gpt", "cheap")))
    assert spend_bound(MODELS, limited, "gpt", 100, 50) == pytest.approx(
        (100 * 1.0 + 50 * 2.0) / 1000
    )


def rule(name: str, scope: RateLimitScope) -> RateLimitRule:
    return RateLimitRule(name=name, requests=100, window_seconds=60, scope=scope)


def charged(kind: str, scope: RateLimitScope, key: str, weight: int) -> Charged:
    found = rule(kind, scope)
    result = RateLimitResult(True, 100 - weight, 100, None, 0.0)
    return Charged(kind, found, key, hash_tag(found, key), weight, result)


def a_charge() -> Charge:
    """team-a's per-key request and token rules, a per-user rule (team-a:alice), a per-ip
    rule, its budget and its slot."""
    return Charge(
        entries=[
            charged("requests", RateLimitScope.PER_API_KEY, "team-a", 1),
            charged("tokens", RateLimitScope.PER_API_KEY, "team-a", 300),
            charged("model-requests", RateLimitScope.PER_USER, "team-a:alice", 1),
            charged("ip", RateLimitScope.PER_IP, "192.0.2.1", 1),
        ],
        budget=BudgetHold("team-a", "team-a", 3, 5_000_000_000, 700_000_000, 90.0, 30.0),
        slot=SlotHold("team-a", "team-a", 3, "lease-1"),
    )


def test_the_callers_rules_budget_and_slot_are_one_reservation() -> None:
    planned = reservations(a_charge())
    assert [r.tag for r in planned] == ["team-a", "192.0.2.1"]
    own, by_ip = planned
    assert [c.key for c in own.rules] == ["team-a", "team-a", "team-a:alice"]
    assert own.budget is not None and own.budget.amount == 700_000_000
    assert own.budget.period == 3 and own.budget.limit == 5_000_000_000
    assert own.slot is not None and own.slot.lease == "lease-1" and own.slot.cap == 3
    assert [c.key for c in by_ip.rules] == ["192.0.2.1"]
    assert by_ip.budget is None and by_ip.slot is None


def test_an_answer_settles_unused_tokens_the_real_cost_and_the_slot() -> None:
    charge = a_charge()
    charge.stored_tags = {"team-a", "192.0.2.1"}
    [own] = settlements(
        charge,
        refund=lambda entry: entry.weight - 120 if entry.tokens else 0,
        budget_delta=250_000_000 - 700_000_000,
    )
    assert own.tag == "team-a"
    assert [(c.rule.name, c.key, c.weight) for c in own.refunds] == [("tokens", "team-a", 180)]
    assert own.budget is not None and own.budget.delta == -450_000_000
    assert own.slot is not None and own.slot.lease == "lease-1"


def test_a_refusal_gives_everything_back_and_an_unstored_tag_nothing() -> None:
    charge = a_charge()
    charge.stored_tags = {"team-a"}  # the per-ip reservation was answered by failure_mode
    [own] = settlements(charge, refund=lambda entry: entry.weight, budget_delta=-700_000_000)
    assert sorted(c.weight for c in own.refunds) == [1, 1, 300]
    assert own.budget is not None and own.budget.delta == -700_000_000
    assert own.slot is not None


def test_without_usage_the_charge_stands_and_only_the_slot_is_freed() -> None:
    charge = a_charge()
    charge.stored_tags = {"team-a", "192.0.2.1"}
    [own] = settlements(charge, refund=lambda entry: 0, budget_delta=None)
    assert own.refunds == () and own.budget is None
    assert own.slot is not None and own.slot.lease == "lease-1"


def test_a_charge_is_settled_once() -> None:
    charge = a_charge()
    assert not charge.claim()  # nothing stored: nothing to settle
    charge.stored_tags = {"team-a"}
    assert charge.claim() and not charge.claim()


def test_budget_headers_show_what_is_left_and_when_it_resets() -> None:
    charge = a_charge()
    assert charge.budget is not None
    charge.budget.spent = 1_250_000_000
    headers = dict(charge.headers())
    assert headers["x-revoctl-budget-remaining"] == "3.75"
    assert headers["x-revoctl-budget-reset"] == "30"
    assert headers["x-ratelimit-remaining-requests"] == "99"


def refusal(charge: Charge) -> tuple[int, str | None, str | None]:
    error = denied(charge)
    return error.status, error.code, dict(error.headers).get("retry-after")


def test_a_denial_names_the_part_that_denied_it() -> None:
    charge = a_charge()
    assert charge.slot is not None and charge.budget is not None
    charge.budget.allowed = False
    assert refusal(charge) == (429, "budget_exceeded", "30")
    charge.slot.allowed = False  # the parallel cap first: it frees soonest
    assert refusal(charge) == (429, "too_many_parallel_requests", "1")
    heavy = charge.entries[1]
    heavy.result = RateLimitResult(False, 100, 100, None, 0.0, "weight above the limit")
    assert refusal(charge) == (413, "request_too_large", None)


def test_a_store_that_cannot_be_reached_is_not_blamed_on_the_caller() -> None:
    charge = a_charge()
    assert charge.slot is not None
    charge.store_failed, charge.slot.allowed = True, False  # failure_mode "closed"
    assert refusal(charge) == (503, "limits_unavailable", "1")
    charge.entries[0].result = RateLimitResult(False, 0, 100, 0.5, 0.0, "denied (closed)")
    assert refusal(charge) == (429, "rate_limit_exceeded", "1")


def with_model_slot(charge: Charge) -> Charge:
    """``charge`` holding one of the model gpt's 2 slots too."""
    account = model_account("gpt")
    charge.model_slot = SlotHold(account, account_tag(account), 2, "lease-2")
    return charge


def test_a_models_slot_is_a_reservation_of_its_own_freed_with_the_rest() -> None:
    charge = with_model_slot(a_charge())
    planned = reservations(charge)
    assert [r.tag for r in planned] == ["team-a", "192.0.2.1", "model/gpt"]
    model = planned[2]
    assert model.rules == () and model.budget is None
    assert model.slot is not None and (model.slot.account, model.slot.cap) == ("model/gpt", 2)
    assert planned[0].slot is not None and planned[0].slot.lease == "lease-1"
    charge.stored_tags = {"team-a", "192.0.2.1", "model/gpt"}
    released = settlements(charge, refund=lambda entry: 0, budget_delta=None)
    assert [(s.tag, s.slot.lease if s.slot else None) for s in released] == [
        ("team-a", "lease-1"),
        ("model/gpt", "lease-2"),
    ]


def test_a_models_full_slots_are_429_naming_the_model() -> None:
    charge = with_model_slot(a_charge())
    assert charge.model_slot is not None
    charge.model_slot.allowed = False
    error = denied(charge)
    assert (error.status, error.code) == (429, "too_many_parallel_requests")
    assert dict(error.headers)["retry-after"] == "1"
    assert "'gpt'" in error.message
