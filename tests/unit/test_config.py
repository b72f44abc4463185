"""Configuration resolution: file discovery, profiles, env overrides, flags, validation."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from revoctl.config import describe_config, load_config
from revoctl.core.errors import ConfigError

CONFIG = """
[database]
pool_size = 7
slow_query_ms = 250

[secrets]
cache_ttl_seconds = 60

[profiles.prod.database]
pool_size = 40
url = "postgresql+asyncpg://app:hunter22@db.internal/app"

[profiles.prod.breakers.services.openai_api]
failure_threshold = 3
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "revoctl.toml"
    path.write_text(CONFIG)
    return path


def test_embedded_defaults_put_sqlite_in_revoctl_home(revoctl_home: Path) -> None:
    loaded = load_config()
    assert loaded.config_file is None
    assert loaded.settings.database.url == f"sqlite+aiosqlite:///{revoctl_home / 'revoctl.db'}"
    assert loaded.sources["database.url"] == "default"


def test_xdg_data_home_is_the_default_state_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("REVOCTL_HOME")
    assert load_config().home == tmp_path / "xdg-data" / "revoctl"


def test_local_file_is_found_in_the_working_directory(config_file: Path) -> None:
    loaded = load_config()
    assert loaded.config_file == config_file
    assert loaded.settings.database.pool_size == 7
    assert loaded.sources["database.pool_size"] == f"file {config_file}"
    assert loaded.sources["database.max_overflow"] == "default"


def test_xdg_config_file_is_used_when_there_is_no_local_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = tmp_path / "xdg-config" / "revoctl" / "config.toml"
    user.parent.mkdir(parents=True)
    user.write_text("[database]\npool_size = 3\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert load_config().settings.database.pool_size == 3


def test_revoctl_config_env_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "other.toml"
    other.write_text("[database]\npool_size = 9\n")
    monkeypatch.setenv("REVOCTL_CONFIG", str(other))
    assert load_config().settings.database.pool_size == 9


def test_profile_env_and_flag_layer_in_order(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = load_config(profile="prod")
    assert loaded.settings.database.pool_size == 40
    assert loaded.settings.database.slow_query_ms == 250  # the file's value shows through
    assert loaded.settings.breakers.services["openai_api"].failure_threshold == 3
    assert loaded.sources["database.pool_size"].startswith("profile prod")

    monkeypatch.setenv("REVOCTL_DATABASE__POOL_SIZE", "50")
    loaded = load_config(profile="prod")
    assert loaded.settings.database.pool_size == 50
    assert loaded.sources["database.pool_size"] == "env REVOCTL_DATABASE__POOL_SIZE"

    loaded = load_config(profile="prod", overrides={"database.pool_size": "60"})
    assert loaded.settings.database.pool_size == 60
    assert loaded.sources["database.pool_size"] == "flag --set"


def test_profile_from_environment(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REVOCTL_PROFILE", "prod")
    assert load_config().settings.database.pool_size == 40


def test_nested_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REVOCTL_SECRETS__AZURE__VAULT_URL", "https://kv.vault.azure.net/")
    monkeypatch.setenv("REVOCTL_DATABASE__POOL_PRE_PING", "false")
    settings = load_config().settings
    assert settings.secrets.azure.vault_url == "https://kv.vault.azure.net/"
    assert settings.database.pool_pre_ping is False


def test_unknown_profile_names_the_known_ones(config_file: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown profile 'staging'.*profiles: prod"):
        load_config(profile="staging")


def test_malformed_toml_names_the_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[database]\npool_size = = 3\n")
    with pytest.raises(ConfigError, match=rf"{bad}: invalid TOML: .*line 2"):
        load_config(bad)


def test_wrong_type_names_file_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[database]\npool_size = "many"\n')
    with pytest.raises(
        ConfigError, match=rf"file {bad}: database.pool_size: Input should be a valid integer"
    ):
        load_config(bad)


def test_unknown_key_is_an_error_with_a_suggestion(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[database]\npool_sise = 3\n")
    with pytest.raises(
        ConfigError, match=r"database.pool_sise: unknown key \(did you mean 'pool_size'\?\)"
    ):
        load_config(bad)


def test_unknown_env_key_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REVOCTL_LIMITS__STOOR", "redis")
    with pytest.raises(ConfigError, match="env REVOCTL_LIMITS__STOOR: limits.stoor: unknown key"):
        load_config()


def test_invalid_choice_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REVOCTL_LIMITS__STORE", "memcached")
    with pytest.raises(ConfigError, match="env REVOCTL_LIMITS__STORE: limits.store"):
        load_config()


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


def test_limit_rules_from_file(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(
        '[[limits.rules]]\nname = "api_generation"\nrequests = 20\nwindow_seconds = 60\n'
        "burst_multiplier = 2.0\n"
    )
    (rule,) = load_config(path).settings.limits.rules
    assert (rule.name, rule.requests, rule.algorithm, rule.scope) == (
        "api_generation",
        20,
        "token_bucket",
        "per_user",
    )


def test_describe_masks_passwords_and_says_where_values_came_from(config_file: Path) -> None:
    described = describe_config(
        load_config(profile="prod", overrides={"redis.url": "redis://:s3cr3tpw@r:6379/0"})
    )
    text = json.dumps(described)
    assert "hunter22" not in text and "s3cr3tpw" not in text
    by_key = {entry["key"]: entry for entry in described["settings"]}
    assert by_key["database.url"]["value"] == "postgresql+asyncpg://app:***@db.internal/app"
    assert by_key["database.url"]["source"] == "profile"
    assert by_key["database.slow_query_ms"]["source"] == "file"
    assert by_key["database.max_overflow"]["source"] == "default"
    assert by_key["redis.url"]["source"] == "flag"
    assert described["profile"] == "prod"


def test_secret_references_are_shown_not_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "postgresql+asyncpg://app:${secret:db-password}@db/app"
    monkeypatch.setenv("REVOCTL_DATABASE__URL", url)
    by_key = {e["key"]: e for e in describe_config(load_config())["settings"]}
    assert by_key["database.url"]["value"] == url
    assert by_key["database.url"]["source"] == "env"


@pytest.mark.parametrize(
    ("given", "effective"),
    [
        ("postgresql://app@db/app", "postgresql+asyncpg://app@db/app"),
        ("postgres://app@db/app", "postgresql+asyncpg://app@db/app"),
        ("sqlite:////var/lib/revoctl.db", "sqlite+aiosqlite:////var/lib/revoctl.db"),
        ("postgresql+asyncpg://app@db/app", "postgresql+asyncpg://app@db/app"),
    ],
)
def test_database_url_gets_the_async_driver(
    given: str, effective: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REVOCTL_DATABASE__URL", given)
    assert load_config().settings.database.url == effective


@pytest.mark.parametrize(
    "url", ["postgresql+psycopg2://app@db/app", "mysql://app@db/app", "sqlitex://x", "db.internal"]
)
def test_other_database_drivers_are_refused(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REVOCTL_DATABASE__URL", url)
    with pytest.raises(ConfigError, match=r"database\.url: must be a postgresql"):
        load_config()


def test_vault_url_must_be_https(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REVOCTL_SECRETS__AZURE__VAULT_URL", "not a url")
    with pytest.raises(ConfigError, match=r"secrets\.azure\.vault_url: .*https://"):
        load_config()


def test_a_profile_that_is_not_a_table(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text("[profiles]\nprod = 5\n")
    with pytest.raises(ConfigError, match=r"profiles\.prod: must be a table"):
        load_config(path, profile="prod")


def test_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('[database]\nurl = "sqlite:///caf\xe9.db"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)


def test_a_config_path_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file is not a file"):
        load_config(tmp_path)


def test_conflicting_set_flags_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"database\.pool_size"):
        load_config(overrides={"database.pool_size": "1", "database.pool_size.x": "2"})


def test_a_table_level_error_names_the_layer_that_set_it(tmp_path: Path) -> None:
    path = tmp_path / "kv.toml"
    path.write_text('[secrets]\nprovider = "azure_key_vault"\n')
    with pytest.raises(ConfigError, match=rf"file {path}: secrets: .*vault_url is required"):
        load_config(path)


@pytest.mark.parametrize(
    ("toml", "problem"),
    [
        ('[models.gpt]\nprovider = "nope"\n', "models.gpt.provider: no [providers.nope]"),
        ('[gateway]\ntoken_rule = "tpm"\n', "gateway.token_rule: no [[limits.rules]] named"),
        (
            '[providers.oai]\nkind = "openai"\n[models.gpt]\nprovider = "oai"\n'
            'fallbacks = ["ghost"]\n',
            "models.gpt.fallbacks: no [models.ghost]",
        ),
        (
            '[providers.oai]\nkind = "openai"\n[models.gpt]\n'
            'deployments = [{ provider = "oai", breaker = "eest" }]\n',
            "models.gpt.deployments: no breaker 'eest'",
        ),
    ],
)
def test_names_that_point_at_other_tables_must_point_at_something(
    tmp_path: Path, toml: str, problem: str
) -> None:
    config = tmp_path / "revoctl.toml"
    config.write_text(toml)
    with pytest.raises(ConfigError, match=re.escape(problem)):
        load_config(config)
