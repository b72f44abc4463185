"""The example Grafana dashboard: its structure (schema, the ``datasource``, ``instance``
and ``model`` variables, panels with queries on a grid that does not overlap), every query
parsed by promtool, and only metrics the gateway registers (GPU ones included, with a fake
NVML) in it; the e2e test checks them against a live scrape."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from revoctl.runtime.metrics import GatewayMetrics
from tests.support.fake_nvml import FakeNvml
from tests.support.metric_names import (
    dashboard,
    dashboard_exprs,
    names_in,
    panels,
    run_promtool,
    sample_names,
    substituted,
    used_names,
)

TOPICS = {
    "requests and errors per model": "revoctl_http_requests_total",
    "latency": "revoctl_http_request_duration_seconds_bucket",
    "added latency": "revoctl_gateway_overhead_seconds_bucket",
    "tokens": "revoctl_tokens_total",
    "cost": "revoctl_cost_usd_total",
    "limiter decisions": "revoctl_rate_limit_decisions_total",
    "breaker states": "revoctl_breaker_state",
    "pools": "revoctl_db_pool_connections",
    "secret cache": "revoctl_secret_cache_lookups_total",
    "system": "revoctl_host_cpu_usage_ratio",
}


def registered(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """Every sample name the gateway registers, the GPU families included (fake NVML)."""
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml())
    metrics = GatewayMetrics()
    metrics.sample_system()
    names = set()
    for family in metrics.registry.collect():
        names |= sample_names(family.type, family.name)
    return names


def check_as_rules(folder: Path, rules: list[dict[str, str]]) -> subprocess.CompletedProcess[str]:
    """``promtool check rules`` on ``rules`` (recording rules), written into ``folder``."""
    (folder / "queries.yml").write_text(yaml.safe_dump({"groups": [{"name": "q", "rules": rules}]}))
    return run_promtool("check", "rules", "queries.yml", cwd=folder)


def work_panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [panel for panel in panels(board) if panel["type"] != "row"]


def test_the_dashboard_has_its_schema_and_variables() -> None:
    board = dashboard()
    assert board["schemaVersion"] == 39
    assert board["uid"] and board["title"] == "revoctl"
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("instance", "model"):
        assert variables[name]["type"] == "query"
        assert variables[name]["datasource"]["uid"] == "${datasource}"
        assert variables[name]["includeAll"] and variables[name]["allValue"] == ".*"


def test_every_panel_queries_the_chosen_datasource_on_a_grid_that_does_not_overlap() -> None:
    board = dashboard()
    ids = [panel["id"] for panel in panels(board)]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in panels(board):
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        x, y = grid["x"], grid["y"]
        mine = {(x + dx, y + dy) for dx in range(grid["w"]) for dy in range(grid["h"])}
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine
    for panel in work_panels(board):
        targets = panel.get("targets", [])
        assert targets, f"{panel['title']}: no query"
        assert panel["datasource"]["uid"] == "${datasource}"
        assert len({t["refId"] for t in targets}) == len(targets)
        for target in targets:
            assert target["expr"].strip() and target["datasource"]["uid"] == "${datasource}"
            if "model" in names_in(target["expr"]) or "model=~" in target["expr"]:
                assert '"$model"' in target["expr"]


def test_every_query_parses(tmp_path: Path) -> None:
    """Each query, the variables put as Grafana would, as a recording rule for promtool."""
    exprs = [e for e in dashboard_exprs(dashboard()) if not e.startswith("label_values(")]
    rules = [{"record": f"dashboard:q{n}", "expr": substituted(e)} for n, e in enumerate(exprs)]
    checked = check_as_rules(tmp_path, rules)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules)} rules found" in checked.stdout + checked.stderr


def test_a_query_that_does_not_parse_is_caught(tmp_path: Path) -> None:
    broken = substituted("sum by (model (rate(x[$__rate_interval]))")
    assert check_as_rules(tmp_path, [{"record": "broken", "expr": broken}]).returncode != 0


def test_the_dashboard_shows_what_the_issue_asks_and_only_registered_metrics(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    used = set()
    for expr in dashboard_exprs(dashboard()):
        used |= names_in(expr)
    for topic, name in TOPICS.items():
        assert name in used, f"no panel for {topic} ({name})"
    known = registered(monkeypatch)
    assert used <= known, f"not registered: {sorted(used - known)}"
    assert used_names() - {"up"} <= known
