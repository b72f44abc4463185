"""``[secrets.rotation]``: which secrets are rotated once they reach an age, and how.

Each rule names secrets by glob (``names = ["openai-*"]``), an age (``max_age = "30d"``),
the random bytes of the new value (``length``) and, optionally, a command (``on_rotate``)
that tells the upstream provider the new value before it is stored. The first rule that
matches a secret's name decides. ``interval_seconds`` > 0 makes the runtime apply the rules
on a timer (one instance of the fleet at a time); ``revoctl secrets rotate --due`` applies
them from a cron job.
"""

from __future__ import annotations

import re
from datetime import timedelta

from pydantic import Field, field_validator

from revoctl.core._settings import Section

_AGE = re.compile(r"(\d+)([wdhms])")
_UNIT_SECONDS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
MAX_AGE_LIMIT = timedelta(days=36500)


def parse_age(text: str) -> timedelta:
    """``30d``, ``12h``, ``1w2d`` ... as a timedelta.

    :raises ValueError: not such an age, zero or longer than 100 years.
    """
    parts = _AGE.findall(text.strip().lower())
    if not parts or "".join(n + u for n, u in parts) != text.strip().lower():
        raise ValueError(f"invalid age {text!r}: use e.g. 30d, 12h or 1w2d")
    seconds = sum(int(n) * _UNIT_SECONDS[u] for n, u in parts)
    if not 0 < seconds <= MAX_AGE_LIMIT.total_seconds():
        raise ValueError(f"invalid age {text!r}: must be more than 0 and at most 36500d")
    return timedelta(seconds=seconds)


class RotationRule(Section):
    """One ``[[secrets.rotation.rules]]`` entry."""

    names: list[str] = Field(min_length=1)
    max_age: str
    length: int = Field(32, ge=16, le=8192)
    on_rotate: list[str] = []
    """A command and its arguments; ``{name}`` is replaced by the secret's name. The new
    value reaches it on stdin and in ``REVOCTL_SECRET_VALUE``, never in its arguments."""

    @field_validator("max_age")
    @classmethod
    def _age(cls, text: str) -> str:
        parse_age(text)
        return text

    @field_validator("names")
    @classmethod
    def _globs(cls, names: list[str]) -> list[str]:
        if any(not name.strip() for name in names):
            raise ValueError("a name glob cannot be empty")
        return names

    @property
    def age(self) -> timedelta:
        return parse_age(self.max_age)


class RotationConfig(Section):
    """``[secrets.rotation]``: the rules, the runtime's timer (0 = off) and the hook's bound."""

    rules: list[RotationRule] = []
    interval_seconds: float = Field(0, ge=0, le=7 * 86400)
    hook_timeout_seconds: float = Field(60, gt=0, le=240)
