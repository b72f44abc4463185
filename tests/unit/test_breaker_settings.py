"""``[breakers]`` settings: the layering of a breaker's values, and what is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from revoctl.config import load_config
from revoctl.core.breakers import PREDEFINED_BREAKERS, BreakersConfig
from revoctl.core.errors import ConfigError

CONFIG = """
[breakers]
store = "redis"
poll_interval = 0.2

[breakers.defaults]
failure_threshold = 4
timeout = 20.0

[breakers.services.openai_api]
failure_threshold = 3

[breakers.services.database]
failure_threshold = 8

[breakers.services.mistral_api]
success_threshold = 3
share_trips = false
"""


@pytest.fixture
def config(tmp_path: Path) -> BreakersConfig:
    path = tmp_path / "revoctl.toml"
    path.write_text(CONFIG)
    return load_config(path).settings.breakers


def test_defaults_then_the_predefined_values_then_the_breakers_own(config: BreakersConfig) -> None:
    openai = config.config_for("openai_api")
    assert (openai.failure_threshold, openai.timeout, openai.share_trips) == (3, 20.0, True)
    anthropic = config.config_for("anthropic_api")
    assert (anthropic.name, anthropic.failure_threshold, anthropic.timeout) == (
        "anthropic_api",
        4,
        20.0,
    )
    database = config.config_for("database")  # its own values sit over the defaults
    assert (database.failure_threshold, database.timeout, database.share_trips) == (8, 10.0, False)
    redis = config.config_for("redis")
    assert (redis.timeout, redis.slow_call_seconds, redis.share_trips) == (2.0, 0.5, False)
    mistral = config.config_for("mistral_api")
    assert (mistral.success_threshold, mistral.failure_threshold, mistral.share_trips) == (
        3,
        4,
        False,
    )
    assert config.names() == [*PREDEFINED_BREAKERS, "mistral_api"]
    assert (config.store.value, config.poll_interval) == ("redis", 0.2)


def test_environment_sets_one_breakers_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REVOCTL_BREAKERS__SERVICES__OPENAI_API__RECOVERY_TIMEOUT", "5")
    config = load_config().settings.breakers.config_for("openai_api")
    assert (config.recovery_timeout, config.failure_threshold) == (5, 5)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("BREAKERS__DEFAULTS__MINIMUM_CALLS", "50", "must not exceed window_size"),
        ("BREAKERS__DEFAULTS__FAILURE_RATE_THRESHOLD", "150", "less than or equal to 100"),
        ("BREAKERS__SERVICES__BAD NAME__TIMEOUT", "1", "invalid breaker name"),
        ("BREAKERS__POLL_INTERVAL", "0", "greater than 0"),
        ("BREAKERS__STORE", "etcd", "'memory', 'sql' or 'redis'"),
    ],
)
def test_invalid_values_are_config_errors(
    monkeypatch: pytest.MonkeyPatch, key: str, value: str, message: str
) -> None:
    monkeypatch.setenv(f"REVOCTL_{key}", value)
    with pytest.raises(ConfigError) as refused:
        load_config()
    assert message in str(refused.value)
