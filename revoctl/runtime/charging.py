"""What a request is charged: reserved before any provider is called, settled after.

A request is charged 1 on each request rule and, on each token rule, an upper bound of its
prompt's tokens (and its tools') plus its ``max_tokens`` (`revoctl.runtime.tokens`; an
embeddings request, its input's bound alone). The rules are its key's
tier's ``request_rule``/``token_rule`` (a key with no tier, or no keys: the gateway's) and
its model's own. A key of a tier with a ``budget`` also reserves the most the request can
cost (`spend_bound`) against its budget period, and a tier with ``max_parallel_requests``
takes one of the key's parallel slots, a lease of this process (`RateLimiter.new_lease`);
a model with ``max_parallel_requests`` likewise takes one of the model's slots (under an
account and a hash tag of its own, `model_account`: a reservation of its own), held until
the request ends whichever model answers it.

Every charge goes under the hash tag of its store key (`hash_tag`): the caller's rules,
budget and slot share one tag (the key's name), so they are one `Reservation` and one store
round trip; ``global`` and ``per_ip`` rules have their own. `RateLimiter.reserve` applies
them all or nothing. A denial consumed nothing: 413 ``request_too_large`` without
``Retry-After`` when no wait can help (a rule's limit, or the whole period's budget, is
below the request's bound), else 429 with ``Retry-After``: ``too_many_parallel_requests``
(1 s), ``budget_exceeded`` (the seconds to the next period) or ``rate_limit_exceeded``.

After the request, one `Settlement` per tag (`revoctl.runtime.reserving`): what its usage
shows was not used goes back to the token rules, the budget moves to the usage's real cost,
the slot is freed. A refused or unanswered request gets everything back; a request whose
usage is unknown (a broken stream, a client gone) keeps its rule and budget charge (never
count too little) and frees its slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from revoctl.core.errors import UsageError, first_line
from revoctl.core.gateway.settings import rule_names
from revoctl.core.keys._budget import budget_window
from revoctl.core.limits._operator import MAX_KEY_LENGTH
from revoctl.core.limits.base import RateLimitResult
from revoctl.core.limits.reservations import Settlement, account_tag, hash_tag, to_nano
from revoctl.runtime.charges import BudgetHold, Charge, Charged, SlotHold, model_account
from revoctl.runtime.denials import denied
from revoctl.runtime.errors import GatewayError
from revoctl.runtime.reserving import record, reservations, settlements, with_states
from revoctl.runtime.routing import candidates
from revoctl.runtime.tokens import input_token_bound, prompt_token_bound, tools_token_bound

if TYPE_CHECKING:
    from revoctl.core.gateway.settings import GatewayConfig, ModelConfig, RuleNames, TierConfig
    from revoctl.core.limits import RateLimitRule
    from revoctl.core.services import Services
    from revoctl.runtime.exchange import Exchange
    from revoctl.runtime.identity import Caller
    from revoctl.runtime.providers import Usage

_Planned = tuple[str, "RateLimitRule", str, int]
"""One rule a request is charged on: its kind, the rule, the caller's store key, the weight."""

logger = logging.getLogger("revoctl.gateway")


class Charging:
    """Reserves, settles and reads requests' charges on the limiter of ``services``."""

    def __init__(
        self, services: Services, config: GatewayConfig, models: dict[str, ModelConfig]
    ) -> None:
        self.services = services
        self.config = config
        self.models = models

    # ------------------------------------------------------------------ what applies

    def _applying(
        self, caller: Caller, model: str | None, tokens: int
    ) -> list[tuple[str, RateLimitRule, int, bool]]:
        """(kind, rule, weight, per model) of each rule that applies to ``caller``: its
        tier's (else the gateway's), then ``model``'s own (a configured one)."""
        rules: TierConfig | GatewayConfig = caller.tier or self.config
        wanted: list[tuple[str, RuleNames, int, bool]] = [
            ("requests", rules.request_rule, 1, False),
            ("tokens", rules.token_rule, tokens, False),
        ]
        if model is not None:
            config = self.models[model]
            wanted += [
                ("model-requests", config.request_rule, 1, True),
                ("model-tokens", config.token_rule, tokens, True),
            ]
        limiter = self.services.limiter
        return [
            (kind, limiter.rule(name), weight, per_model)
            for kind, names, weight, per_model in wanted
            for name in rule_names(names)
        ]

    def rules(self, caller: Caller, model: str | None, tokens: int) -> list[_Planned]:
        """The rules that apply to ``caller`` asking ``model``, each with the caller's store
        key there and ``tokens`` as the token rules' weight.

        :raises GatewayError: 400 when the caller has no key under one of them
            (`Caller.identifier`: a ``user`` too long for its bucket).
        """
        return [
            (kind, rule, self._key(caller, rule, model if per_model else None), weight)
            for kind, rule, weight, per_model in self._applying(caller, model, tokens)
        ]

    def _key(self, caller: Caller, rule: RateLimitRule, model: str | None) -> str:
        return self.services.limiter.key_for(rule, _identifier(caller, rule, model))

    # ------------------------------------------------------------------ the charge

    async def charge(self, exchange: Exchange) -> None:
        """Reserve ``exchange``'s request on every rule, budget and slot that apply, in
        one limiter call; ``exchange.charge`` holds what was taken.

        :raises GatewayError: 413 when it can never be allowed, 429 when denied now;
            nothing stays charged then.
        """
        caller, request, charge = exchange.caller, exchange.request, exchange.charge
        if exchange.embedding:  # its input's bound; an embedding has no output tokens
            prompt, max_tokens = input_token_bound(request["input"]), 0
        else:
            prompt = prompt_token_bound(request["messages"])
            prompt += tools_token_bound(request.get("tools"))
            max_tokens = int(request["max_tokens"])
        limiter = self.services.limiter
        entries = [
            Charged(kind, rule, key, hash_tag(rule, key), weight, _untaken(rule))
            for kind, rule, key, weight in self.rules(caller, exchange.model, prompt + max_tokens)
        ]
        charge.budget = self._budget(caller, exchange.model, prompt, max_tokens)
        charge.entries = entries
        if caller.tier is not None and caller.tier.max_parallel_requests and caller.key_name:
            name = caller.key_name
            cap = caller.tier.max_parallel_requests
            charge.slot = SlotHold(name, account_tag(name), cap, limiter.new_lease())
        if model_cap := self.models[exchange.model].max_parallel_requests:
            account = model_account(exchange.model)
            charge.model_slot = SlotHold(
                account, account_tag(account), model_cap, limiter.new_lease()
            )
        planned = reservations(charge)
        if not planned:
            return
        answers = await limiter.reserve(planned)
        record(charge, planned, answers)
        if not all(answer.allowed for answer in answers):
            charge.stored_tags.clear()  # all or nothing: a denial took nothing anywhere
            raise denied(charge)

    def _budget(
        self, caller: Caller, model: str, prompt: int, max_tokens: int
    ) -> BudgetHold | None:
        """The share of ``caller``'s budget the request reserves; None without a budget.

        :raises GatewayError: 413 when the request's bound is above its period's whole cap.
        """
        record, tier = caller.record, caller.tier
        if record is None or tier is None:
            return None
        now = datetime.now(UTC)
        window = budget_window(record, tier, now)
        if window is None:
            return None
        bound = spend_bound(self.models, caller, model, prompt, max_tokens)
        amount, limit = to_nano(bound, up=True), to_nano(window.limit, up=False)
        if amount > limit:
            raise GatewayError(
                413,
                f"this request may cost up to {bound:.6g} and the budget of the key "
                f"{record.name!r} is {window.limit:.6g} per period: it can never be allowed "
                "(lower max_tokens or the prompt)",
                code="request_too_large",
            )
        left = window.seconds_left(now)
        return BudgetHold(
            account=record.name,
            tag=account_tag(record.name),
            period=window.period,
            limit=limit,
            amount=amount,
            keep_seconds=left + tier.period_seconds(),
            resets_in=left,
        )

    # ------------------------------------------------------------------ after it

    async def settle(self, exchange: Exchange, usage: Usage | None) -> None:
        """After an answer: the token rules get back what ``usage`` shows was not used, the
        budget moves to the real cost, the slot is freed. Without usage (a broken stream, a
        client gone) the rule and budget charge stands: never count too little."""
        charge = exchange.charge
        if not charge.claim():
            return
        if usage is None:
            await self._apply(charge, settlements(charge, refund=_nothing, budget_delta=None))
            return
        used = usage["total_tokens"]
        for entry in charge.tokens():
            if used > entry.weight:
                logger.warning(
                    "provider counted %d tokens more than the bound charged for request %s",
                    used - entry.weight,
                    exchange.request_id,
                )
        cost = self._cost(exchange.served_by or exchange.model, usage)
        reserved = charge.budget.amount if charge.budget is not None else 0
        planned = settlements(
            charge,
            refund=lambda entry: entry.weight - used if entry.tokens else 0,
            budget_delta=cost - reserved,
        )
        await self._apply(charge, planned)

    async def release(self, charge: Charge) -> None:
        """Give back everything the request was charged (it was refused or never served);
        each rule then shows its state after the refund."""
        if not charge.claim():
            return
        reserved = charge.budget.amount if charge.budget is not None else 0
        await self._apply(
            charge, settlements(charge, refund=lambda entry: entry.weight, budget_delta=-reserved)
        )

    async def _apply(self, charge: Charge, planned: list[Settlement]) -> None:
        if not planned:
            return
        try:
            states = await self.services.limiter.settle(planned)
        except Exception as exc:  # the settlement is lost; the request is not failed for it
            logger.warning("a settlement failed: %s: %s", type(exc).__name__, first_line(exc))
            return
        with_states(charge, planned, states)

    def _cost(self, model: str, usage: Usage) -> int:
        """``usage`` at ``model``'s prices, in nano-units (the nearest)."""
        config = self.models[model]
        cost = (
            usage["prompt_tokens"] * config.input_cost_per_1k
            + usage["completion_tokens"] * config.output_cost_per_1k
        ) / 1000
        return to_nano(cost, up=False)

    # ------------------------------------------------------------------ read only

    async def read(self, caller: Caller, model: str | None) -> Charge:
        """The state of every rule that applies to ``caller`` (and ``model``, a configured
        one), consuming nothing; a rule the store cannot read now, or that no key of this
        caller can be counted under (a ``user`` too long), is left out."""
        planned: list[tuple[str, RateLimitRule, str]] = []
        for kind, rule, _, per_model in self._applying(caller, model, 1):
            with contextlib.suppress(GatewayError, UsageError):  # no key there: left out
                planned.append((kind, rule, self._key(caller, rule, model if per_model else None)))
        results = await asyncio.gather(*(self._current(rule, key) for _, rule, key in planned))
        return Charge(
            [
                Charged(kind, rule, key, hash_tag(rule, key), 0, result)
                for (kind, rule, key), result in zip(planned, results, strict=True)
                if result is not None
            ]
        )

    async def _current(self, rule: RateLimitRule, key: str) -> RateLimitResult | None:
        try:
            return await self.services.limiter.current(rule, key)
        except UsageError:
            return None


def spend_bound(
    models: dict[str, ModelConfig], caller: Caller, model: str, prompt: int, max_tokens: int
) -> float:
    """The most a request can cost: its prompt bound at the highest input price and
    ``max_tokens`` at the highest output price among ``model`` and the fallbacks ``caller``
    may be served by (`candidates`)."""
    prices = [models[name] for name in candidates(models, model, caller)]
    per_1k_in = max(config.input_cost_per_1k for config in prices)
    per_1k_out = max(config.output_cost_per_1k for config in prices)
    return (prompt * per_1k_in + max_tokens * per_1k_out) / 1000


def _nothing(entry: Charged) -> int:
    return 0


def _untaken(rule: RateLimitRule) -> RateLimitResult:
    """A rule's placeholder state before the store answers."""
    capacity = rule.capacity
    return RateLimitResult(True, capacity, capacity, None, 0.0)


def _identifier(caller: Caller, rule: RateLimitRule, model: str | None) -> str | None:
    """The key ``caller`` counts under for ``rule``; per model when ``model`` is given.

    :raises GatewayError: 400 when there is none (`Caller.identifier`).
    """
    identifier = caller.identifier(rule.scope)
    return _fitted(identifier if model is None else f"{identifier or '*'}:{model}")


def _fitted(identifier: str | None) -> str | None:
    """``identifier`` within the limiter's key length: a longer one (a long ``user`` and a
    model name) keeps its start and ends in a digest of the whole, so two never share a bucket."""
    if identifier is None or len(identifier) <= MAX_KEY_LENGTH:
        return identifier
    digest = hashlib.sha256(identifier.encode()).hexdigest()
    return f"{identifier[: MAX_KEY_LENGTH - len(digest) - 1]}~{digest}"
