"""``revoctl serve`` (one worker, SQLite, in-memory limits and breakers) in front of the LLM
stand-in on every provider kind: OpenAI-compatible (``emb``, ``gpt``; ``emb-falling-back``,
whose fallbacks are ``sonnet`` and ``emb``), Azure OpenAI
(``azure-emb``, ``azure-chat``: deployments of the stand-in's Azure paths) and Anthropic
(``sonnet``); a gateway key of a tier with a budget (``metered``; ``narrow`` allows one
request, to ``gpt`` only); logs at debug level; the rows read from
the database."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support.fleet import Fleet
from tests.support.llm_standin import LLMStandIn

STANDIN_KEY = "sk-azure-served-canary-4f9a61"
AZURE_VERSION = "2024-12-01-preview"
BUDGET = 1.0
TOKENS = 1_000_000
EMBEDDING_PRICE = 2.0
"""Per 1k input tokens: a token costs 0.002."""

CONFIG = """
[logging]
level = "debug"               # every line a secret could slip into, for the canary

[limits]
store = "memory"
[[limits.rules]]
name = "once"
requests = 1
window_seconds = 31622400
algorithm = "fixed_window"
scope = "per_api_key"
[[limits.rules]]
name = "tokens"
requests = {tokens}
window_seconds = 31622400     # a leap year: nothing refills while a test counts
algorithm = "fixed_window"
scope = "per_api_key"

[breakers]
store = "memory"

[gateway]
auth = "keys"
token_rule = "tokens"
default_max_tokens = 64

[tiers.narrow]                # one request, to gpt only
request_rule = "once"
token_rule = "tokens"
models = ["gpt"]

[tiers.metered]
token_rule = "tokens"
budget = {budget}
budget_period = "1h"

[providers.llm]
kind = "openai"
base_url = "{openai}"
api_key = "${{secret:llm-key}}"
timeout = 10

[providers.azure]
kind = "azure_openai"
base_url = "{url}"
api_version = "{version}"
api_key = "${{secret:llm-key}}"
timeout = 10

[providers.claude]
kind = "anthropic"
base_url = "{url}"
api_key = "${{secret:llm-key}}"
timeout = 10

[models.emb]
provider = "llm"
upstream = "text-embedding-3-small"
input_cost_per_1k = {price}

[models.emb-falling-back]     # its own upstream broken: answered by the fallback with embeddings
provider = "llm"
upstream = "emb-broken"
retries = 0
fallbacks = ["sonnet", "emb"]
input_cost_per_1k = {price}

[models.azure-emb]
provider = "azure"
upstream = "emb-deploy"
input_cost_per_1k = {price}

[models.azure-chat]
provider = "azure"
upstream = "chat-deploy"
input_cost_per_1k = 0.5
output_cost_per_1k = 1.5

[models.gpt]
provider = "llm"
upstream = "gpt-4o-mini"

[models.sonnet]
provider = "claude"
upstream = "claude-sonnet"
input_cost_per_1k = 0.3
output_cost_per_1k = 1.5
"""


@contextlib.contextmanager
def served_providers(directory: Path, llm: LLMStandIn) -> Iterator[tuple[Fleet, str]]:
    """The served gateway over ``llm`` (which must take `STANDIN_KEY`) and a key of the
    ``metered`` tier; stopped after."""
    config = directory / "revoctl.toml"
    config.write_text(
        CONFIG.format(
            openai=llm.openai_base_url, url=llm.url, version=AZURE_VERSION, tokens=TOKENS,
            budget=BUDGET, price=EMBEDDING_PRICE,
        )
    )  # fmt: skip
    fleet = Fleet(config=config, home=directory / "home", openai=llm, anthropic=llm, workers=1)
    stored = fleet.cli("secrets", "set", "llm-key", stdin=STANDIN_KEY)
    assert stored.returncode == 0, stored.stderr
    migrated = fleet.cli("db", "migrate")
    assert migrated.returncode == 0, migrated.stderr
    key = fleet.new_key("metered-key", "--tier", "metered")
    fleet.start()
    try:
        yield fleet, key
    finally:
        fleet.stop()


def rows(fleet: Fleet, query: str, *args: Any) -> list[tuple[Any, ...]]:
    """``query`` on the gateway's SQLite database."""
    with contextlib.closing(sqlite3.connect(fleet.home / "revoctl.db")) as db:
        return db.execute(query, args).fetchall()


def rows_of(fleet: Fleet, request_id: str, timeout: float = 10.0) -> dict[str, list[Any]]:
    """The ``request_logs`` and ``model_usage`` rows of one request, once its request row is
    written (the usage writer flushes in the background)."""
    deadline = time.monotonic() + timeout
    while True:
        logged = rows(
            fleet,
            "SELECT path, status_code, model, api_key_id, error_code FROM request_logs "
            "WHERE request_id = ?",
            request_id,
        )
        if logged or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    usage = rows(
        fleet,
        "SELECT provider, model, prompt_tokens, completion_tokens, total_tokens, estimated_cost "
        "FROM model_usage WHERE request_id = ?",
        request_id,
    )
    return {"request_logs": logged, "model_usage": usage}
