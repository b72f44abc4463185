"""``revoctl secrets`` on the local store, in process: outputs, exit codes, input sources."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import yaml

from revoctl.core.secrets.stores.file import STORE_FILE_NAME


def test_set_get_rotate_versions(cli):
    written = cli("secrets", "set", "api-key", "-o", "json", input="first-value\n")
    assert written.exit_code == 0, written.stderr
    first = json.loads(written.stdout)
    assert first["name"] == "api-key" and len(first["version"]) == 32

    got = cli("secrets", "get", "api-key")
    assert (got.exit_code, got.stdout) == (0, "first-value\n")

    rotated = cli("secrets", "rotate", "api-key", "-o", "json")
    assert rotated.exit_code == 0, rotated.stderr
    rotation = json.loads(rotated.stdout)
    assert set(rotation) >= {"name", "version", "previous_version", "rotated_on"}
    assert "value" not in rotation
    assert rotation["previous_version"] == first["version"]
    assert datetime.fromisoformat(rotation["rotated_on"]).utcoffset() == timedelta(0)

    history = json.loads(cli("secrets", "versions", "api-key", "-o", "json").stdout)
    assert [v["version"] for v in history] == [rotation["version"], first["version"]]
    assert all(set(v) == {"version", "updated_on", "enabled"} for v in history)

    old = cli("secrets", "get", "api-key", "--version", first["version"], "-o", "json")
    document = json.loads(old.stdout)
    assert set(document) == {"name", "value", "version", "updated_on", "enabled", "provider"}
    assert (document["value"], document["provider"]) == ("first-value", "local")

    new = cli("secret", "get", "api-key").stdout.strip()
    assert len(new) == 43 and new != "first-value"


def test_list_never_shows_values(cli):
    cli("secrets", "set", "b-key", input="value-bbbb")
    cli("secrets", "set", "a-key", input="value-aaaa")
    listed = cli("secrets", "list", "-o", "json")
    rows = json.loads(listed.stdout)
    assert [r["name"] for r in rows] == ["a-key", "b-key"]
    assert all(set(r) == {"name", "version", "updated_on", "enabled"} for r in rows)
    assert "value-" not in listed.stdout
    table = cli("secrets", "list").stdout.splitlines()
    assert table[0].split() == ["NAME", "VERSION", "UPDATED_ON", "ENABLED"]
    assert yaml.safe_load(cli("secrets", "list", "-o", "yaml").stdout)[0]["name"] == "a-key"


def test_list_older_than(cli, revoctl_home: Path):
    cli("secrets", "set", "old-key", input="value-old")
    cli("secrets", "set", "new-key", input="value-new")
    path = revoctl_home / STORE_FILE_NAME
    document = json.loads(path.read_text())
    document["secrets"]["old-key"][0]["updated_on"] = "2020-01-01T00:00:00+00:00"
    path.write_text(json.dumps(document))
    due = json.loads(cli("secrets", "list", "--older-than", "90d", "-o", "json").stdout)
    assert [r["name"] for r in due] == ["old-key"]
    assert json.loads(cli("secrets", "list", "--older-than", "12h", "-o", "json").stdout) == due
    assert len(json.loads(cli("secrets", "list", "--older-than", "0s", "-o", "json").stdout)) == 2
    bad = cli("secrets", "list", "--older-than", "ninety days")
    assert bad.exit_code == 2 and "invalid duration" in bad.stderr


def test_value_sources(cli, tmp_path: Path):
    source = tmp_path / "value.txt"
    source.write_text("from-a-file\n")
    assert cli("secrets", "set", "file-key", "--from-file", str(source)).exit_code == 0
    assert cli("secrets", "get", "file-key").stdout == "from-a-file\n"
    missing = cli("secrets", "set", "file-key", "--from-file", str(tmp_path / "nope"))
    assert missing.exit_code == 2 and "cannot read" in missing.stderr

    rotated = cli("secrets", "rotate", "file-key", "--stdin", "--show", "-o", "json", input="x" * 9)
    assert json.loads(rotated.stdout)["value"] == "x" * 9
    assert cli("secrets", "get", "file-key").stdout == "x" * 9 + "\n"
    generated = json.loads(
        cli("secrets", "rotate", "file-key", "--length", "48", "--show", "-o", "json").stdout
    )
    assert len(generated["value"]) == 64


def test_exit_codes(cli):
    cli("secrets", "set", "api-key", input="value-1")
    cases = [
        (("secrets", "get", "bad_name"), 2, "invalid secret name"),
        (("secrets", "set", "bad.name"), 2, "invalid secret name"),
        (("secrets", "rotate", "api-key", "--length", "2"), 2, "length"),
        (("secrets", "get", "missing"), 3, "not found"),
        (("secrets", "get", "api-key", "--version", "0" * 32), 3, "no version"),
        (("secrets", "versions", "missing"), 3, "not found"),
        (("secrets", "rotate", "missing"), 3, "not found"),
    ]
    for args, code, message in cases:
        result = cli(*args, input="")
        assert result.exit_code == code, (args, result.stderr)
        assert result.stderr.startswith("error: ") and message in result.stderr, args
        assert result.stdout == ""
    empty = cli("secrets", "set", "api-key", input="\n")
    assert empty.exit_code == 2 and "empty" in empty.stderr


def test_world_readable_store_is_refused_with_exit_2(cli, revoctl_home: Path):
    cli("secrets", "set", "api-key", input="value-1")
    (revoctl_home / STORE_FILE_NAME).chmod(0o644)
    result = cli("secrets", "get", "api-key")
    assert result.exit_code == 2
    assert "refusing to use the secret store" in result.stderr
    assert "chmod 600" in result.stderr


def test_an_endless_stdin_is_refused_without_reading_it_all(tmp_path) -> None:
    """`yes | revoctl secrets set big` must end, with exit 2, and store nothing."""
    import os
    import subprocess
    import sys
    import time

    started = time.monotonic()
    yes = subprocess.Popen(["yes"], stdout=subprocess.PIPE)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "revoctl", "secrets", "set", "big"],
            stdin=yes.stdout,
            capture_output=True,
            text=True,
            timeout=60,
            env=os.environ.copy(),
        )
    finally:
        yes.kill()
        yes.wait()
        yes.stdout.close()
    assert result.returncode == 2
    assert "limited to 25600 bytes" in result.stderr
    assert time.monotonic() - started < 30


def test_too_long_durations_are_usage_errors(cli) -> None:
    result = cli("secrets", "list", "--older-than", "99999999999999999999d")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: invalid duration")
