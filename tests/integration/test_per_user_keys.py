"""``per_user`` with ``auth = "keys"``: the bucket is the pair ``KEYNAME:USER``, so two keys
naming the same ``user`` are counted apart, a key holder cannot spread requests over invented
users beyond the key's own rules, and ``revoctl limits inspect RULE --key KEYNAME:USER``
finds the bucket the gateway filled (the rule's store is the embedded SQLite database)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from revoctl.config import load_config
from revoctl.runtime.app import create_app
from tests.support.llm_standin import LLMStandIn

CONFIG = """
[limits]
store = "sql"
[[limits.rules]]
name = "per-user"
requests = 2
window_seconds = 31622400     # a leap year: nothing refills while the test counts
algorithm = "fixed_window"
scope = "per_user"

[gateway]
auth = "keys"
request_rule = "per-user"

[providers.llm]
kind = "openai"
base_url = "{openai}"
api_key = "sk-per-user"

[models.gpt]
provider = "llm"
upstream = "gpt-4o-mini"
"""


@pytest.fixture
def gateway(cli: Any, tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """The app with the keys ``team-a`` and ``team-b``; yields the client and the keys."""
    with LLMStandIn(api_key="sk-per-user") as llm:
        config = tmp_path / "revoctl.toml"
        config.write_text(CONFIG.format(openai=llm.openai_base_url))
        keys = {}
        for name in ("team-a", "team-b"):
            created = cli("--config", str(config), "keys", "create", name, "-o", "json")
            keys[name] = json.loads(created.stdout)["key"]
        with TestClient(create_app(load_config(config))) as client:
            yield client, keys


def ask(client: TestClient, key: str, user: str | None) -> Any:
    body: dict[str, Any] = {"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}
    if user is not None:
        body["user"] = user
    return client.post(
        "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}
    )


def inspect(cli: Any, tmp_path: Path, *key: str) -> Any:
    shown = cli("--config", str(tmp_path / "revoctl.toml"), "limits", "inspect", "per-user",
                *key, "-o", "json")  # fmt: skip
    assert shown.exit_code == 0, shown.stderr
    return json.loads(shown.stdout)


def test_two_keys_naming_the_same_user_have_a_bucket_each(
    gateway: tuple[TestClient, dict[str, str]], cli: Any, tmp_path: Path
) -> None:
    client, keys = gateway
    assert [ask(client, keys["team-a"], "alice").status_code for _ in range(3)] == [200, 200, 429]
    assert ask(client, keys["team-b"], "alice").status_code == 200
    assert ask(client, keys["team-a"], None).status_code == 200  # the key's name alone

    assert inspect(cli, tmp_path, "--key", "team-a:alice")["remaining"] == 0
    assert inspect(cli, tmp_path, "--key", "team-b:alice")["remaining"] == 1
    tracked = {state["key"]: state["remaining"] for state in inspect(cli, tmp_path)}
    assert tracked == {"team-a:alice": 0, "team-b:alice": 1, "team-a": 1}


def test_a_user_too_long_for_its_keys_bucket_is_a_400_not_a_500(
    gateway: tuple[TestClient, dict[str, str]],
) -> None:
    client, keys = gateway
    room = 255 - len("team-a:")
    assert ask(client, keys["team-a"], "u" * room).status_code == 200
    refused = ask(client, keys["team-a"], "u" * (room + 1))
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["code"] == "user_too_long"
    assert f"'user' is limited to {room} characters with the key 'team-a'" in error["message"]
