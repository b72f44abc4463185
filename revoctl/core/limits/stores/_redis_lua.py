"""The Redis store's Lua, assembled from the ``.lua`` files beside the code, and the rule
arguments and replies the scripts share.

Each algorithm's file (``lua/<algorithm>.lua``) defines one function of the same shape
(``lua/_common.lua`` describes it) that decides and returns the write it would make, so a
script can evaluate every part of a call before it writes any. The scripts are those
functions with a body: one decision (``_decision.lua``), a reservation (``_reserve.lua``),
and a settlement (``_settle.lua``). Each is one script, registered once per store and
called by SHA.
"""

from __future__ import annotations

from importlib.resources import files

from revoctl.core.limits._algorithms import SLOTS, too_heavy
from revoctl.core.limits.base import RateLimitResult
from revoctl.core.limits.settings import RateLimitAlgorithm, RateLimitRule

CODES = {
    RateLimitAlgorithm.TOKEN_BUCKET: "tb",
    RateLimitAlgorithm.SLIDING_WINDOW: "sw",
    RateLimitAlgorithm.FIXED_WINDOW: "fw",
}
"""Each algorithm's short name: in its keys, and in a reservation's arguments."""


def _read(*names: str) -> str:
    lua = files("revoctl.core.limits") / "lua"
    return "".join((lua / name).read_text("utf-8") for name in names)


def _with_every_algorithm(body: str) -> str:
    algorithms = (f"{algorithm.value}.lua" for algorithm in CODES)
    return _read("_common.lua", *algorithms, "_charges.lua", body)


def lua_source(algorithm: RateLimitAlgorithm) -> str:
    """The one-decision script of ``algorithm``: what every script shares (``_common.lua``),
    the algorithm's function, and the decision (``_decision.lua``)."""
    decide = f"local decide = {algorithm.value}\n"
    return _read("_common.lua", f"{algorithm.value}.lua") + decide + _read("_decision.lua")


def reservation_source() -> str:
    return _with_every_algorithm("_reserve.lua")


def settlement_source() -> str:
    return _with_every_algorithm("_settle.lua")


def rule_arguments(rule: RateLimitRule) -> tuple[bytes, ...]:
    """The algorithm's own arguments of ``rule`` (see each algorithm's file), encoded once:
    redis-py sends bytes as they are."""
    if rule.algorithm is RateLimitAlgorithm.TOKEN_BUCKET:
        values: tuple[object, ...] = (rule.capacity, repr(rule.requests / rule.window_seconds))
    elif rule.algorithm is RateLimitAlgorithm.SLIDING_WINDOW:
        values = (rule.requests, repr(rule.window_seconds / SLOTS), SLOTS)
    else:
        values = (rule.requests, repr(rule.window_seconds))
    return tuple(str(value).encode() for value in values)


def parse_reply(reply: bytes | str, limit: int, weight: int) -> RateLimitResult:
    """One rule's result, ``"allowed remaining retry_after reset_after too_heavy"``."""
    allowed, remaining, retry, reset, heavy = reply.split()
    return RateLimitResult(
        allowed == b"1" or allowed == "1",
        int(remaining),
        limit,
        None if retry in (b"-", "-") else float(retry),
        float(reset),
        None if heavy in (b"0", "0") else too_heavy(weight, limit),
    )
