"""Configuration fingerprints: stable under the order rules are written in, blind to secrets
(a canary), changed by a rule or a breaker; the majority rule that names drifting instances;
the health document degraded by drift."""

from __future__ import annotations

from typing import Any

from revoctl.config import Settings
from revoctl.core.db._reports import config_drift
from revoctl.core.drift import _parts, apply_drift, canonical, fingerprints

CANARY = "canary-5f1d0c9e2b7a"

RULES = [
    {"name": "per-user", "requests": 10, "window_seconds": 60},
    {"name": "per-ip", "requests": 100, "window_seconds": 1, "scope": "per_ip"},
]


def settings(
    rules: list[dict[str, Any]] = RULES, breakers: dict[str, Any] | None = None, **extra: Any
) -> Settings:
    return Settings.model_validate(
        {
            "limits": {"rules": rules},
            "breakers": {"services": breakers or {"openai": {"failure_threshold": 3}}},
            **extra,
        }
    )


def test_the_order_rules_are_written_in_changes_no_fingerprint() -> None:
    assert fingerprints(settings(RULES)) == fingerprints(settings(list(reversed(RULES))))


def test_a_changed_rule_changes_the_limits_and_config_fingerprints_only() -> None:
    before = fingerprints(settings())
    changed = [{**RULES[0], "requests": 11}, RULES[1]]
    after = fingerprints(settings(changed))
    assert after["limits_fingerprint"] != before["limits_fingerprint"]
    assert after["config_fingerprint"] != before["config_fingerprint"]
    assert after["breakers_fingerprint"] == before["breakers_fingerprint"]


def test_a_changed_breaker_changes_the_breakers_fingerprint_only_of_the_two() -> None:
    before = fingerprints(settings())
    after = fingerprints(settings(breakers={"openai": {"failure_threshold": 4}}))
    assert after["breakers_fingerprint"] != before["breakers_fingerprint"]
    assert after["limits_fingerprint"] == before["limits_fingerprint"]


def test_fingerprints_are_sha256_hex() -> None:
    for value in fingerprints(settings()).values():
        assert len(value) == 64 and int(value, 16) >= 0


def test_no_secret_is_in_what_is_hashed_and_a_secret_changes_nothing() -> None:
    def with_secrets(canary: str) -> Settings:
        return settings(
            gateway={"admin_key": canary},
            providers={"openai": {"kind": "openai", "api_key": canary}},
            database={"url": f"postgresql+asyncpg://revoctl:{canary}@db.example/revoctl"},
        )

    hashed = canonical(_parts(with_secrets(CANARY)))
    assert CANARY not in hashed
    assert "db.example" in hashed  # the rest of the URL is still there
    other = fingerprints(with_secrets("another-secret-value-1234"))
    assert fingerprints(with_secrets(CANARY)) == other


def report(name: str, limits: str, breakers: str = "b", stale: bool = False) -> dict[str, Any]:
    details = {"limits_fingerprint": limits, "breakers_fingerprint": breakers}
    return {"instance": name, "stale": stale, "details": details}


def test_the_instances_that_differ_from_the_majority_are_named() -> None:
    instances = [report("a", "x"), report("b", "x"), report("c", "y", breakers="c")]
    assert config_drift(instances) == ["c"]
    assert [i["config_differs"] for i in instances] == [False, False, True]
    assert instances[2]["differs"] == ["limits", "breakers"]


def test_on_a_tie_every_live_instance_is_named_and_stale_ones_are_left_out() -> None:
    instances = [report("a", "x"), report("b", "y"), report("c", "z", stale=True)]
    assert config_drift(instances) == ["a", "b"]
    assert config_drift([report("a", "x"), report("b", "x")]) == []
    assert (
        config_drift([report("a", "x"), {"instance": "old", "stale": False, "details": {}}]) == []
    )


def test_drift_degrades_the_limiter_and_breakers_entries_with_a_reason() -> None:
    health = {
        "status": "healthy",
        "services": {
            "database": {"status": "healthy"},
            "rate_limiter": {"status": "healthy"},
            "circuit_breakers": {"status": "unhealthy", "error": "down"},
        },
    }
    out = apply_drift(health, {"limits": ["gw-2"], "breakers": ["gw-2"]})
    limiter = out["services"]["rate_limiter"]
    assert limiter["status"] == "degraded" and limiter["config_drift"] == ["gw-2"]
    assert "gw-2" in limiter["reason"] and "limits" in limiter["reason"]
    assert out["services"]["circuit_breakers"]["status"] == "unhealthy"  # never better
    assert out["services"]["database"] == {"status": "healthy"}
    assert out["status"] == "unhealthy"
    calm = apply_drift(
        {"status": "healthy", "services": {"rate_limiter": {"status": "healthy"}}}, {}
    )
    assert calm == {"status": "healthy", "services": {"rate_limiter": {"status": "healthy"}}}
