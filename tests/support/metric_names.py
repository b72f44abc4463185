"""The metric names the example alert rules and Grafana dashboard use, and the sample names
the gateway can export, for the tests that hold the two against each other."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REQUIRE_SERVICES

EXAMPLES = Path(__file__).parents[2] / "examples"
ALERTS = EXAMPLES / "prometheus" / "alerts.yml"
ALERTS_TEST = EXAMPLES / "prometheus" / "alerts_test.yml"
DASHBOARD = EXAMPLES / "grafana" / "revoctl.json"
PROMETHEUS_DIR = ALERTS.parent

SCRAPER_NAMES = {"up"}
"""Series Prometheus itself writes for each scrape, not the gateway."""
GPU_PREFIX = "revoctl_gpu_"
"""The GPU families: exported only where NVIDIA's library answers."""

DASHBOARD_VARIABLES = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
    "${instance:regex}": ".*",
    "$instance": ".*",
    "$model": ".*",
}
"""What Grafana puts for each variable the dashboard's queries use, for parsing them."""

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_NAME = re.compile(r"(?<![\w.$])(revoctl_[a-z0-9_]+|up)\b(?!\s*\()")


def names_in(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (its strings and label values left out)."""
    return set(_NAME.findall(_STRING.sub('""', expr)))


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows too."""
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_exprs(board: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in panels(board) for t in p.get("targets", [])]
    for variable in board["templating"]["list"]:
        if variable.get("type") == "query":
            query = variable["query"]
            exprs.append(query["query"] if isinstance(query, dict) else query)
    return exprs


def substituted(expr: str) -> str:
    """``expr`` with Grafana's variables replaced by values PromQL can parse."""
    for variable, value in DASHBOARD_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def used_names() -> set[str]:
    """Every metric name the alert rules and the dashboard use."""
    used = set()
    for rule in alert_rules():
        used |= names_in(rule["expr"])
    for expr in dashboard_exprs(dashboard()):
        label_values = re.fullmatch(r"label_values\((.*?)(?:,\s*\w+)?\)", expr.strip())
        used |= names_in(label_values.group(1) if label_values else expr)
    return used


def sample_names(family_type: str, name: str) -> set[str]:
    """The sample names a prometheus-client family of ``family_type`` named ``name`` has."""
    if family_type == "counter":
        return {f"{name}_total"}
    if family_type == "histogram":
        return {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return {name}


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        reason = "promtool is not installed (apt-get install prometheus)"
        if REQUIRE_SERVICES:
            pytest.fail(f"{reason}; REVOCTL_REQUIRE_SERVICES=1 makes this a failure")
        pytest.skip(reason)
    return found


def run_promtool(*args: str, cwd: Path = PROMETHEUS_DIR) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=120)
