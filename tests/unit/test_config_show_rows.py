"""``config show``'s table: a list of tables (``limits.rules``) is one row per field, as
every other table is, not one Python repr; JSON keeps the list as it is."""

from __future__ import annotations

import json
from pathlib import Path

from revoctl._dotted import indexed_rows

RULES = """
[[limits.rules]]
name = "api_generation"
requests = 10
window_seconds = 60

[[limits.rules]]
name = "tokens"
requests = 1000
window_seconds = 60
algorithm = "sliding_window"
"""


def test_each_rule_field_is_a_row_of_its_own(cli, tmp_path: Path) -> None:
    config = tmp_path / "rules.toml"
    config.write_text(RULES)
    result = cli("--config", str(config), "config", "show")
    assert result.exit_code == 0, result.stderr
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines() if line}
    assert rows["limits.rules[0].name"][:2] == ["api_generation", "file"]
    assert rows["limits.rules[0].window_seconds"][0] == "60"
    assert rows["limits.rules[1].algorithm"][0] == "sliding_window"
    assert "limits.rules" not in rows
    assert "{'name'" not in result.stdout


def test_json_keeps_the_rules_as_one_list(cli, tmp_path: Path) -> None:
    config = tmp_path / "rules.toml"
    config.write_text(RULES)
    result = cli("--config", str(config), "config", "show", "-o", "json")
    settings = {entry["key"]: entry for entry in json.loads(result.stdout)["settings"]}
    assert [rule["name"] for rule in settings["limits.rules"]["value"]] == [
        "api_generation",
        "tokens",
    ]
    assert not any("[0]" in key for key in settings)


def test_only_a_list_of_tables_is_indexed() -> None:
    assert indexed_rows("models.a.fallbacks", ["b", "c"]) == [("models.a.fallbacks", ["b", "c"])]
    assert indexed_rows("limits.rules", []) == [("limits.rules", [])]
    assert indexed_rows("x", [{"a": {"b": 1}}]) == [("x[0].a.b", 1)]
