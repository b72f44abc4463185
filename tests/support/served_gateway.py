"""One gateway worker served over real HTTP (``revoctl serve``) on SQLite and in-memory limits
and breakers, in front of the LLM stand-in (both APIs): for what only a socket shows (a
declared Content-Length, a client leaving mid-upload) and for schemathesis."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from tests.support.fleet import Fleet
from tests.support.llm_standin import LLMStandIn

STANDIN_KEY = "sk-served-canary-33e1b7"

CONFIG = """
[limits]
store = "memory"
[[limits.rules]]
name = "per_user"
requests = 1000000
window_seconds = 31622400     # a leap year: nothing refills while a test counts
algorithm = "fixed_window"
scope = "per_user"
[[limits.rules]]
name = "tokens"
requests = 100000000
window_seconds = 60
algorithm = "token_bucket"
scope = "per_api_key"

[breakers]
store = "memory"
[breakers.services.openai_api]
failure_threshold = 1000
failure_rate_threshold = 0
[breakers.services.anthropic_api]
failure_threshold = 1000
failure_rate_threshold = 0

[gateway]
auth = "keys"
request_rule = "per_user"
token_rule = "tokens"
max_body_bytes = {max_body_bytes}

[providers.llm]
kind = "openai"
base_url = "{openai}"
api_key = "${{secret:llm-key}}"
breaker = "openai_api"
timeout = 10

[providers.claude]
kind = "anthropic"
base_url = "{anthropic}"
api_key = "${{secret:llm-key}}"
breaker = "anthropic_api"
timeout = 10

[models.gpt]
provider = "llm"
upstream = "gpt-4o-mini"
fallbacks = ["sonnet"]
request_rule = "per_user"

[models.sonnet]
provider = "claude"
upstream = "claude-sonnet"
"""


@contextlib.contextmanager
def served_gateway(
    directory: Path,
    llm: LLMStandIn,
    *,
    max_body_bytes: int = 4194304,
    admin_key: str = "",
    tiers: str = "",
    tier: str | None = None,
) -> Iterator[tuple[Fleet, str]]:
    """``revoctl serve --workers 1`` over ``llm`` (which must take `STANDIN_KEY`), migrated,
    with a gateway key (of ``tier``, one of the ``[tiers.NAME]`` tables ``tiers`` adds to
    the configuration), and the admin API on ``admin_key`` when given; yields the running
    server and the key, and stops it after."""
    config = directory / "revoctl.toml"
    text = CONFIG.format(
        openai=llm.openai_base_url, anthropic=llm.url, max_body_bytes=max_body_bytes
    )
    if admin_key:
        text = text.replace("[gateway]\n", f'[gateway]\nadmin_key = "{admin_key}"\n', 1)
    config.write_text(text + tiers)
    fleet = Fleet(config=config, home=directory / "home", openai=llm, anthropic=llm, workers=1)
    stored = fleet.cli("secrets", "set", "llm-key", stdin=STANDIN_KEY)
    assert stored.returncode == 0, stored.stderr
    migrated = fleet.cli("db", "migrate")
    assert migrated.returncode == 0, migrated.stderr
    key = fleet.new_key("served", *(("--tier", tier) if tier else ()))
    fleet.start()
    try:
        yield fleet, key
    finally:
        fleet.stop()
