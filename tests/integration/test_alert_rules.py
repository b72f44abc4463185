"""The example alert rules: valid (``promtool check rules``), their unit tests green
(``promtool test rules``), each with a summary, a description and a runbook line, each
tested firing and not firing, and naming only metrics the gateway registers (the e2e test
``tests/e2e/test_exported_metrics.py`` checks them against a live scrape)."""

from __future__ import annotations

import shutil
from collections import defaultdict
from pathlib import Path

import yaml

from revoctl.runtime.metrics import GatewayMetrics
from tests.support.metric_names import (
    ALERTS,
    ALERTS_TEST,
    SCRAPER_NAMES,
    alert_rules,
    names_in,
    run_promtool,
    sample_names,
)

RULE_GROUPS = {
    "breaker open": ["RevoctlBreakerOpen", "RevoctlBreakerForcedOpen"],
    "store failing": [
        "RevoctlLimiterFailingOpen",
        "RevoctlLimiterFailingClosed",
        "RevoctlBreakerStoreDown",
    ],
    "pool": ["RevoctlDbPoolSaturated", "RevoctlDbCheckoutTimeouts"],
    "secrets": ["RevoctlSecretsServedStale", "RevoctlSecretsServedFromFallback"],
    "usage rows": ["RevoctlUsageRowsBuffered", "RevoctlUsageRowsDropped"],
    "spend": ["RevoctlKeyNearBudget", "RevoctlKeyOverBudget"],
    "per model": ["RevoctlModelErrorRate", "RevoctlModelLatencyP99"],
    "instance gone": ["RevoctlInstanceDown", "RevoctlNoInstanceReporting"],
}
"""What the issue asks the rules to cover, and the rules that do."""


def test_promtool_checks_the_rules_and_the_scrape_configuration() -> None:
    rules = run_promtool("check", "rules", ALERTS.name)
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in rules.stdout + rules.stderr
    config = run_promtool("check", "config", "prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr


def test_promtool_unit_tests_pass() -> None:
    tested = run_promtool("test", "rules", ALERTS_TEST.name)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout + tested.stderr


def test_a_broken_expectation_fails_promtool(tmp_path: Path) -> None:
    """The unit tests can fail: one expected alert taken out, promtool says FAILED."""
    doc = yaml.safe_load(ALERTS_TEST.read_text())
    firing = next(at for t in doc["tests"] for at in t["alert_rule_test"] if at["exp_alerts"])
    firing["exp_alerts"] = []
    shutil.copy(ALERTS, tmp_path / ALERTS.name)
    (tmp_path / "broken_test.yml").write_text(yaml.safe_dump(doc))
    tested = run_promtool("test", "rules", "broken_test.yml", cwd=tmp_path)
    assert tested.returncode != 0
    assert "FAILED" in tested.stdout + tested.stderr


def test_every_rule_has_a_summary_a_description_and_a_runbook_line() -> None:
    rules = alert_rules()
    assert len(rules) >= 17
    assert len({rule["alert"] for rule in rules}) == len(rules)
    for rule in rules:
        annotations = rule.get("annotations", {})
        for key in ("summary", "description", "runbook"):
            assert annotations.get(key, "").strip(), f"{rule['alert']}: no {key}"
        assert "\n" not in annotations["runbook"].strip(), f"{rule['alert']}: runbook is one line"
        assert rule.get("labels", {}).get("severity") in {"info", "warning", "critical"}


def test_the_rules_cover_what_the_issue_asks_for() -> None:
    names = {rule["alert"] for rule in alert_rules()}
    for what, rules in RULE_GROUPS.items():
        assert set(rules) <= names, f"{what}: {set(rules) - names} missing"


def test_every_rule_is_tested_firing_and_not_firing() -> None:
    seen: dict[str, set[bool]] = defaultdict(set)
    for test in yaml.safe_load(ALERTS_TEST.read_text())["tests"]:
        for at in test["alert_rule_test"]:
            seen[at["alertname"]].add(bool(at["exp_alerts"]))
    for rule in alert_rules():
        assert seen[rule["alert"]] == {True, False}, f"{rule['alert']}: {seen[rule['alert']]}"


def test_the_rules_name_only_metrics_the_gateway_registers() -> None:
    registered = set(SCRAPER_NAMES)
    for family in GatewayMetrics().registry.collect():
        registered |= sample_names(family.type, family.name)
    for rule in alert_rules():
        names = names_in(rule["expr"])
        assert names, f"{rule['alert']}: no metric in {rule['expr']!r}"
        assert names <= registered, f"{rule['alert']}: {names - registered} not exported"
