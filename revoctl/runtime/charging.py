"""What a request is charged: before any provider is called, given back after.

A request is charged 1 on ``gateway.request_rule`` and, on ``gateway.token_rule``, an
upper bound of its prompt's tokens plus its ``max_tokens`` (`revoctl.runtime.tokens`),
and likewise on its model's own ``request_rule`` and ``token_rule``, so a token limit
holds exactly across every worker and instance that shares the store. The rules are
independent and checked at once: one round trip of latency for all. A denial is a 429
with ``Retry-After`` that consumed nothing (what the other rules took is given back); a
request heavier than a rule can ever allow is a 413 without it, since retrying cannot
help; a request the provider never answered is given back whole; after an answer, what
its usage shows was not used is refunded to the token rules.

Every response to an identified caller carries its rules' state: ``RateLimit-Policy`` and
``RateLimit`` (draft-ietf-httpapi-ratelimit-headers) and the ``x-ratelimit-*`` headers
OpenAI clients read. A charged request shows its charge (given back, when refused); a
request refused before it was charged shows its rules as read, consuming nothing (`read`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from revoctl.core.errors import UsageError
from revoctl.core.gateway.settings import rule_names
from revoctl.core.limits._operator import MAX_KEY_LENGTH
from revoctl.runtime.errors import GatewayError
from revoctl.runtime.tokens import prompt_token_bound

if TYPE_CHECKING:
    from revoctl.core.gateway.settings import GatewayConfig, ModelConfig
    from revoctl.core.limits import RateLimitRule
    from revoctl.core.limits.base import RateLimitResult
    from revoctl.core.services import Services
    from revoctl.runtime.identity import Caller
    from revoctl.runtime.providers import ChatRequest, Usage

_Planned = tuple[str, "RateLimitRule", str | None, int]
"""One rule a request is charged on: its kind, the rule, the caller's key there, the weight."""

logger = logging.getLogger("revoctl.gateway")


@dataclass
class Charged:
    """One rule's charge for one request: what was asked, and the rule's state since; once
    given back (or when only read), ``weight`` is 0."""

    kind: str  # "requests", "tokens", "model-requests" or "model-tokens"
    rule: RateLimitRule
    identifier: str | None
    weight: int
    result: RateLimitResult


@dataclass
class Charge:
    """What a request was charged, for the response headers and the refund."""

    entries: list[Charged] = field(default_factory=list)

    def tokens(self) -> list[Charged]:
        return [entry for entry in self.entries if entry.kind.endswith("tokens")]

    def headers(self) -> list[tuple[str, str]]:
        """``RateLimit-Policy`` and ``RateLimit`` (draft-ietf-httpapi-ratelimit-headers) and
        the ``x-ratelimit-*`` headers OpenAI clients read."""
        if not self.entries:
            return []
        policy = ", ".join(
            f'"{e.kind}";q={e.result.limit};w={_whole(e.rule.window_seconds)}' for e in self.entries
        )
        state = ", ".join(
            f'"{e.kind}";r={e.result.remaining};t={math.ceil(e.result.reset_after)}'
            for e in self.entries
        )
        headers = [("ratelimit-policy", policy), ("ratelimit", state)]
        for e in self.entries:
            headers += [
                (f"x-ratelimit-limit-{e.kind}", str(e.result.limit)),
                (f"x-ratelimit-remaining-{e.kind}", str(e.result.remaining)),
                (f"x-ratelimit-reset-{e.kind}", _duration(e.result.reset_after)),
            ]
        return headers


class Charging:
    """Charges, refunds and settles requests on the limiter of ``services``."""

    def __init__(
        self, services: Services, config: GatewayConfig, models: dict[str, ModelConfig]
    ) -> None:
        self.services = services
        self.config = config
        self.models = models

    def rules(self, caller: Caller, model: str | None, tokens: int) -> list[_Planned]:
        """The rules that apply to ``caller`` asking ``model`` (a configured one, or None:
        the gateway's rules only), each with the caller's key there and ``tokens`` as the
        token rules' weight.

        :raises GatewayError: 400 when the caller has no key under one of them
            (`Caller.identifier`: a ``user`` too long for its bucket).
        """
        return [
            (kind, rule, _identifier(caller, rule, model if per_model else None), weight)
            for kind, rule, weight, per_model in self._applying(model, tokens)
        ]

    def _applying(
        self, model: str | None, tokens: int
    ) -> list[tuple[str, RateLimitRule, int, bool]]:
        """(kind, rule, weight, per model) of each configured rule: the gateway's, then
        ``model``'s own."""
        wanted = [
            ("requests", self.config.request_rule, 1, False),
            ("tokens", self.config.token_rule, tokens, False),
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

    async def charge(
        self, caller: Caller, model: str, request: ChatRequest, charge: Charge
    ) -> None:
        """Charge ``request`` (checked, for the configured ``model``) on every rule that
        applies; ``charge`` holds what was taken, for the headers and the refunds.

        :raises GatewayError: 429 when a rule denies it, 413 when a rule can never allow
            it; nothing stays charged then.
        """
        tokens = prompt_token_bound(request["messages"]) + int(request["max_tokens"])
        planned = self.rules(caller, model, tokens)
        limiter = self.services.limiter
        results = await asyncio.gather(
            *(limiter.check_rate_limit(rule, who, weight) for _, rule, who, weight in planned)
        )
        charge.entries = [
            Charged(kind, rule, who, weight, result)
            for (kind, rule, who, weight), result in zip(planned, results, strict=True)
        ]
        denied = next((e for e in charge.entries if not e.result.allowed), None)
        if denied is not None:
            error = _denied(denied)
            await self.refund_all(charge)  # a denied request consumes nothing
            raise error

    async def read(self, caller: Caller, model: str | None) -> Charge:
        """The state of every rule that applies to ``caller`` (and ``model``, a configured
        one), consuming nothing; a rule the store cannot read now, or that no key of this
        caller can be counted under (a ``user`` too long), is left out."""
        planned: list[tuple[str, RateLimitRule, str | None]] = []
        for kind, rule, _, per_model in self._applying(model, 1):
            with contextlib.suppress(GatewayError):  # no key for this caller there: left out
                planned.append(
                    (kind, rule, _identifier(caller, rule, model if per_model else None))
                )
        results = await asyncio.gather(*(self._current(rule, who) for _, rule, who in planned))
        return Charge(
            [
                Charged(kind, rule, who, 0, result)
                for (kind, rule, who), result in zip(planned, results, strict=True)
                if result is not None
            ]
        )

    async def _current(self, rule: RateLimitRule, identifier: str | None) -> RateLimitResult | None:
        try:
            return await self.services.limiter.current(rule, identifier)
        except UsageError:
            return None

    async def refund_all(self, charge: Charge) -> None:
        """Give back every unit the request was charged (it was denied or never served);
        each entry then shows its rule's state after the refund."""
        taken = [entry for entry in charge.entries if entry.result.allowed and entry.weight]
        limiter = self.services.limiter
        states = await asyncio.gather(
            *(limiter.refund(entry.rule, entry.identifier, entry.weight) for entry in taken)
        )
        for entry, state in zip(taken, states, strict=True):
            entry.weight = 0
            if state is not None:
                entry.result = state

    async def settle(self, charge: Charge, usage: Usage | None, request_id: str) -> None:
        """Refund the tokens the provider's usage shows were not used; without usage (a
        broken stream, a client gone), the charge stands: never count too little."""
        if usage is None:
            return
        for charged in charge.tokens():
            unused = charged.weight - usage["total_tokens"]
            if unused > 0:
                after = await self.services.limiter.refund(charged.rule, charged.identifier, unused)
                if after is not None:
                    charged.result = after
            elif unused < 0:
                logger.warning(
                    "provider counted %d tokens more than the bound charged for request %s",
                    -unused,
                    request_id,
                )


def _denied(entry: Charged) -> GatewayError:
    """The refusal for ``entry``'s denial: 429 with ``Retry-After``, or 413 without it when
    the rule can never allow the request (a client would retry a 429 forever)."""
    retry = entry.result.retry_after
    if retry is None:
        message = (
            f"this request needs {entry.weight} {entry.kind} and the limit of "
            f"{entry.rule.name!r} is {entry.result.limit}: it can never be allowed"
        )
        return GatewayError(413, message, code="request_too_large")
    message = f"rate limit {entry.rule.name!r} reached for {entry.kind}: retry in {retry:.3g}s"
    headers = [("retry-after", str(max(1, math.ceil(retry))))]
    return GatewayError(429, message, kind=entry.kind, code="rate_limit_exceeded", headers=headers)


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
