"""A gateway fleet whose limits and breakers are on the database (issue 21: the `database`
breaker guards revoctl's own calls), with ``[breakers] guard_own_calls`` chosen."""

from __future__ import annotations

from pathlib import Path

from tests.support.fleet import ANTHROPIC_KEY, CONFIG, OPENAI_KEY, Fleet
from tests.support.llm_standin import LLMStandIn


def build_guarded_fleet(
    tmp_path: Path,
    *,
    postgres_url: str,
    openai: LLMStandIn,
    anthropic: LLMStandIn,
    guard: bool,
    workers: int = 1,
) -> Fleet:
    """Configuration (limits and breakers on ``postgres_url``), secrets, migrations."""
    text = CONFIG.format(
        database=postgres_url,
        redis="redis://127.0.0.1:1/0",  # unused: nothing of this fleet is on Redis
        prefix="unused:",
        openai=openai.openai_base_url,
        anthropic=anthropic.url,
        rpm=10_000_000,
        tpm=1_000_000_000,
        drain="",
    ).replace('store = "redis"', 'store = "sql"')
    text = text.replace(
        "[breakers]\n", f"[breakers]\nguard_own_calls = {'true' if guard else 'false'}\n", 1
    )
    tmp_path.mkdir(parents=True, exist_ok=True)
    config = tmp_path / "revoctl.toml"
    config.write_text(text)
    fleet = Fleet(
        config=config, home=tmp_path / "home", openai=openai, anthropic=anthropic, workers=workers
    )
    for name, value in (("openai-api-key", OPENAI_KEY), ("anthropic-api-key", ANTHROPIC_KEY)):
        stored = fleet.cli("secrets", "set", name, stdin=value)
        assert stored.returncode == 0, stored.stderr
    migrated = fleet.cli("db", "migrate")
    assert migrated.returncode == 0, migrated.stderr
    return fleet
