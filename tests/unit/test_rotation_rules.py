"""``[secrets.rotation]`` rules: ages, globs (first match decides), bounds; and the hook
runner on its own (value on stdin and in the environment, a failure's reason)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from revoctl.core.rotation import due, rule_for, run_hook
from revoctl.core.secrets import SecretConfig, SecretProperties
from revoctl.core.secrets.rotation_settings import RotationConfig, parse_age


@pytest.mark.parametrize(
    ("text", "seconds"), [("30d", 30 * 86400), ("12h", 43200), ("1w2d", 9 * 86400), ("90s", 90)]
)
def test_ages(text: str, seconds: int) -> None:
    assert parse_age(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["thirty days", "30", "0d", "d30", "", "36501d"])
def test_bad_ages_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="invalid age"):
        parse_age(text)
    with pytest.raises(ValidationError, match="invalid age"):
        RotationConfig(rules=[{"names": ["x"], "max_age": text}])


def test_bounds() -> None:
    with pytest.raises(ValidationError):
        RotationConfig(rules=[{"names": ["x"], "max_age": "1d", "length": 8}])
    with pytest.raises(ValidationError):
        RotationConfig(rules=[{"names": [], "max_age": "1d"}])
    with pytest.raises(ValidationError):
        RotationConfig(interval_seconds=-1)
    assert SecretConfig().rotation.interval_seconds == 0  # off unless asked


def test_first_matching_rule_decides_and_only_old_enough_are_due() -> None:
    config = RotationConfig.model_validate(
        {
            "rules": [
                {"names": ["api-special"], "max_age": "90d"},
                {"names": ["api-*", "db-?"], "max_age": "30d"},
            ]
        }
    )
    assert rule_for("api-special", config).max_age == "90d"
    assert rule_for("api-x", config).max_age == "30d"
    assert rule_for("db-12", config) is None and rule_for("API-x", config) is None
    now = datetime.now(UTC)

    def aged(name: str, days: int) -> SecretProperties:
        return SecretProperties(name, "v", now - timedelta(days=days))

    found = [aged("api-special", 40), aged("api-x", 40), aged("api-y", 29), aged("other", 400)]
    chosen, skipped = due(found, config, now)
    assert [item.props.name for item in chosen] == ["api-x"]
    assert skipped == ["api-special", "api-y"]


async def test_hook_reads_the_value_from_stdin_and_env_and_fails_with_its_last_line() -> None:
    check = (
        "import os, sys; v = sys.stdin.read().strip(); "
        "ok = v == os.environ['REVOCTL_SECRET_VALUE'] == 'canary-value' "
        "and 'canary-value' not in sys.argv and sys.argv[1] == 'my-name'; "
        "print('first', file=sys.stderr); print('last says no', file=sys.stderr); "
        "sys.exit(0 if ok else 5)"
    )
    assert (
        await run_hook([sys.executable, "-c", check, "{name}"], "my-name", "canary-value", 10)
        is None
    )
    reason = await run_hook([sys.executable, "-c", check, "{name}"], "other", "canary-value", 10)
    assert reason is not None and reason.endswith("exited 5: last says no")
    missing = await run_hook(["/nonexistent/hook"], "x", "canary-value", 10)
    assert missing is not None and "could not start /nonexistent/hook" in missing
