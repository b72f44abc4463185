"""The Redis store's key layout, and the reservation and settlement scripts' calls: the
keys and arguments one `Reservation` or `Settlement` sends, and its reply read back.

Every key of one caller shares a hash tag, so one script reaches them all on a cluster:

* a rule's state: ``<prefix><rule>:<tb|sw|fw>:{<hash_tag(rule, key)>}:<key>``. A rule name
  has no ``:`` and a tag no brace, so the name, the algorithm and the key read back
  without doubt whatever the key holds (``:``, braces, glob characters);
* an account's budget counter for a period: ``<prefix>_budget:{<tag>}:<account>:<period>``,
  and its parallel slots (a sorted set, lease id -> when it runs out, server ms):
  ``<prefix>_slots:{<tag>}:<account>``, the tag being `account_tag` (what `hash_tag`
  gives a caller's key: the account's text before its first ``:``), so that
  `spent(account, period)` finds the counter with nothing else to go on;
* a call's receipt on a cluster: ``<prefix>_receipt:{<tag>}:<caller><n>``.

Rule names start with a letter or digit, so no rule's keys begin like the ``_`` ones. A
reservation or settlement with a part under another tag than its own is refused
(``ValueError``) before it is sent: on a cluster it would span two slots.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, NamedTuple

from revoctl.core.limits.reservations import Reserved, account_tag, hash_tag
from revoctl.core.limits.stores._redis_lua import CODES, parse_reply, rule_arguments

if TYPE_CHECKING:
    from redis.typing import EncodableT

    from revoctl.core.limits.base import RateLimitResult
    from revoctl.core.limits.reservations import Reservation, RuleCharge, Settlement
    from revoctl.core.limits.settings import RateLimitRule

_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")
_FLAG = (b"0", b"1")


def milliseconds(seconds: float) -> bytes:
    return str(math.ceil(seconds * 1000)).encode()


class KeyLayout:
    """Where each piece of state lives under ``prefix`` (see the module docstring)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def rule_head(self, rule: RateLimitRule) -> str:
        """What every key of ``rule`` begins with, up to its tag."""
        return f"{self.prefix}{rule.name}:{CODES[rule.algorithm]}:{{"

    def rule_key(self, rule: RateLimitRule, key: str) -> str:
        return f"{self.rule_head(rule)}{hash_tag(rule, key)}}}:{key}"

    def rule_pattern(self, rule: RateLimitRule) -> str:
        """A SCAN pattern matching every key of ``rule`` and no other."""
        return _GLOB_SPECIAL.sub(r"\\\1", self.rule_head(rule)) + "*"

    def key_of(self, rule: RateLimitRule, name: str) -> str | None:
        """The caller's key in the Redis key ``name`` of ``rule`` (None: not one of its)."""
        head = self.rule_head(rule)
        tag, colon, key = name[len(head) :].partition("}:")
        if not name.startswith(head) or not colon or hash_tag(rule, key) != tag:
            return None
        return key

    def budget_key(self, account: str, period: int, tag: str | None = None) -> str:
        """``tag``: `account_tag` of ``account``, when the caller has it already."""
        return f"{self.prefix}_budget:{{{tag or account_tag(account)}}}:{account}:{period}"

    def slots_key(self, account: str, tag: str | None = None) -> str:
        return f"{self.prefix}_slots:{{{tag or account_tag(account)}}}:{account}"

    def receipt_key(self, tag: str, call: str) -> str:
        return f"{self.prefix}_receipt:{{{tag}}}:{call}"


def _outside(tag: str, part: str, own: str) -> ValueError:
    """A part of a call under another hash tag: on a cluster it would sit in another slot."""
    return ValueError(f"{part} has the hash tag {own!r}, not the call's {tag!r}")


class _RulePlan(NamedTuple):
    rule: RateLimitRule
    head: str
    limit: int
    code: bytes
    arguments: tuple[bytes, bytes, bytes]


class ChargeCalls:
    """The keys and arguments of the reservation and settlement scripts (``_reserve.lua``,
    ``_settle.lua`` describe them), with each rule's part planned once."""

    def __init__(self, layout: KeyLayout, receipt_ms: bytes) -> None:
        self.layout = layout
        self._receipt_ms = receipt_ms
        self._plans: dict[str, _RulePlan] = {}
        self._lease: tuple[float, bytes] = (0.0, b"0")

    def _plan(self, rule: RateLimitRule) -> _RulePlan:
        plan = self._plans.get(rule.name)
        if plan is None or plan.rule is not rule:
            a, b, *c = rule_arguments(rule)
            code = CODES[rule.algorithm].encode()
            head, limit = self.layout.rule_head(rule), rule.capacity
            plan = _RulePlan(rule, head, limit, code, (a, b, c[0] if c else b""))
            self._plans[rule.name] = plan
        return plan

    def _rule_key(self, tag: str, charge: RuleCharge) -> tuple[str, _RulePlan]:
        plan = self._plan(charge.rule)
        own = hash_tag(charge.rule, charge.key)
        if own != tag:
            raise _outside(tag, f"rule {charge.rule.name!r}", own)
        return f"{plan.head}{own}}}:{charge.key}", plan

    @staticmethod
    def _account(tag: str, account: str) -> str:
        """``tag``, which must be ``account``'s."""
        own = account_tag(account)
        if own != tag:
            raise _outside(tag, "account", own)
        return tag

    def _rules(
        self, tag: str, charges: tuple[RuleCharge, ...], keys: list[str], args: list[EncodableT]
    ) -> list[tuple[int, int]]:
        """Add each charge's key and arguments; each charge's part and limit. Charges on
        one key (one rule listed twice) are one part of their summed weight: a script
        evaluates every part before it writes any, so two parts on one key would each
        see the state before the other."""
        parts: list[tuple[int, int]] = []
        seen: dict[str, int] = {}
        for charge in charges:
            name, plan = self._rule_key(tag, charge)
            part = seen.get(name)
            if part is None:
                part = seen[name] = len(keys)
                keys.append(name)
                args += (plan.code, charge.weight, *plan.arguments)
            else:
                weight_at = 4 + 5 * part + 1
                args[weight_at] = int(args[weight_at]) + charge.weight
            parts.append((part, plan.limit))
        return parts

    def _lease_ms(self, lease_seconds: float) -> bytes:
        if self._lease[0] != lease_seconds:
            self._lease = (lease_seconds, milliseconds(lease_seconds))
        return self._lease[1]

    def reservation(
        self, reservation: Reservation, lease_seconds: float
    ) -> tuple[list[str], list[EncodableT], list[tuple[int, int]]]:
        """``(keys, args, parts)``: the call, and which reply part answers each rule."""
        budget, slot = reservation.budget, reservation.slot
        keys: list[str] = []
        args: list[EncodableT] = [0, _FLAG[budget is not None], _FLAG[slot is not None]]
        args.append(self._receipt_ms)
        tag = reservation.tag
        parts = self._rules(tag, reservation.rules, keys, args)
        args[0] = len(keys)
        if budget is not None:
            own = self._account(tag, budget.account)
            keys.append(self.layout.budget_key(budget.account, budget.period, own))
            args += (budget.limit, budget.amount, milliseconds(budget.keep_seconds))
        if slot is not None:
            keys.append(self.layout.slots_key(slot.account, self._account(tag, slot.account)))
            args += (slot.cap, slot.lease, self._lease_ms(lease_seconds))
        return keys, args, parts

    @staticmethod
    def reserved(
        reply: bytes,
        reservation: Reservation,
        parts: list[tuple[int, int]],
        weights: list[EncodableT],
    ) -> Reserved:
        """The reservation script's reply as `Reserved`; ``weights``: its call's arguments."""
        answers = reply.split(b",")
        done = Reserved(
            [parse_reply(answers[at], limit, int(weights[5 + 5 * at])) for at, limit in parts]
        )
        at = int(weights[0])
        if reservation.budget is not None:
            allowed, spent = answers[at].split()
            done.budget_allowed, done.spent = allowed == b"1", int(spent)
            at += 1
        if reservation.slot is not None:
            allowed, held = answers[at].split()
            done.slot_allowed, done.in_flight = allowed == b"1", int(held)
        return done

    def settlement(self, settlement: Settlement) -> tuple[list[str], list[EncodableT]]:
        budget, slot = settlement.budget, settlement.slot
        keys: list[str] = []
        args: list[EncodableT] = [len(settlement.refunds), _FLAG[budget is not None]]
        args += (_FLAG[slot is not None], self._receipt_ms)
        tag = settlement.tag
        for refund in settlement.refunds:
            name, plan = self._rule_key(tag, refund)
            keys.append(name)
            args += (plan.code, refund.weight, *plan.arguments)
        if budget is not None:
            own = self._account(tag, budget.account)
            keys.append(self.layout.budget_key(budget.account, budget.period, own))
            args += (budget.delta, milliseconds(budget.keep_seconds))
        if slot is not None:
            keys.append(self.layout.slots_key(slot.account, self._account(tag, slot.account)))
            args.append(slot.lease)
        return keys, args

    @staticmethod
    def settled(reply: bytes, settlement: Settlement) -> list[RateLimitResult]:
        if not settlement.refunds:
            return []
        return [
            parse_reply(answer, refund.rule.capacity, refund.weight)
            for answer, refund in zip(reply.split(b","), settlement.refunds, strict=True)
        ]
