"""TAB completion of the names the configuration defines: breakers and rate-limit rules,
and the command arguments that complete them.

Completion runs on every TAB, so it reads only the configuration (the file, profile
and ``--set`` flags typed before the command, as the command itself would) and never
a store: no database, Redis or Key Vault round trip, none of their libraries imported.
A configuration that does not load completes what needs none (the predefined
breakers) rather than printing an error into the user's prompt.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from revoctl.cli._fast import parse_set
from revoctl.core.errors import RevoctlError

if TYPE_CHECKING:
    from revoctl.config import Settings


def breaker_names(ctx: typer.Context, incomplete: str) -> list[str]:
    """The predefined breakers and every ``[breakers.services.NAME]``."""
    from revoctl.core.breakers.settings import PREDEFINED_BREAKERS  # not for `--help`

    settings = _settings(ctx)
    names = settings.breakers.names() if settings else list(PREDEFINED_BREAKERS)
    return [name for name in names if name.startswith(incomplete)]


def rule_names(ctx: typer.Context, incomplete: str) -> list[tuple[str, str]]:
    """Every ``[[limits.rules]]`` name, with its limit as the help zsh and fish show."""
    settings = _settings(ctx)
    rules = settings.limits.rules if settings else ()
    return [
        (rule.name, f"{rule.requests} per {rule.window_seconds:g}s, {rule.algorithm.value}")
        for rule in rules
        if rule.name.startswith(incomplete)
    ]


BreakerArgument = Annotated[
    str, typer.Argument(help="Breaker name, e.g. openai_api.", autocompletion=breaker_names)
]
RuleArgument = Annotated[
    str, typer.Argument(help="A rule name from [[limits.rules]].", autocompletion=rule_names)
]


def _settings(ctx: typer.Context) -> Settings | None:
    """The configuration named by the root's flags (the root callback never runs on TAB)."""
    from revoctl.config import load_config  # not at import: `breakers --help` needs none

    flags = ctx.find_root().params
    try:
        overrides = parse_set(flags.get("set_") or [])
        return load_config(flags.get("config"), flags.get("profile"), overrides=overrides).settings
    except RevoctlError:
        return None
