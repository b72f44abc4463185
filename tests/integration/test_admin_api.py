"""The admin API over real HTTP: ``revoctl serve`` on PostgreSQL, driven by HTTP and by the CLI
on the same state. A key made over HTTP is the CLI's, one revoked at the terminal shows revoked
over HTTP, a trip over HTTP is the fleet's; without the admin key 401, without ``admin_key``
404; the admin key never reaches the server's log (a canary), its fingerprint does."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from revoctl.config import load_config
from revoctl.core.keys import KEY_PATTERN
from revoctl.runtime.app import create_app
from tests.support.fleet import Fleet

ADMIN_KEY = "adm-canary-5f3e9a71c2d8"
FINGERPRINT = hashlib.sha256(ADMIN_KEY.encode()).hexdigest()[:12]

CONFIG = """
{database}
[limits]
store = "memory"

[breakers]
store = "sql"

[gateway]
auth = "keys"
keys_refresh_seconds = 0.25
admin_key = "{admin_key}"

[tiers.free]
budget = 2.0
budget_period = "1d"
"""


@pytest.fixture
def served(tmp_path: Path, postgres_url: str) -> Iterator[Fleet]:
    """One ``revoctl serve`` worker whose admin key is a secret reference."""
    config = tmp_path / "revoctl.toml"
    database = f'[database]\nurl = "{postgres_url}"'
    config.write_text(CONFIG.format(database=database, admin_key="${secret:revoctl-admin-key}"))
    fleet = Fleet(config=config, home=tmp_path / "home", openai=None, anthropic=None, workers=1)  # type: ignore[arg-type]
    for args, stdin in (
        (("secrets", "set", "revoctl-admin-key"), ADMIN_KEY),
        (("db", "migrate"), None),
    ):
        done = fleet.cli(*args, stdin=stdin)
        assert done.returncode == 0, done.stderr
    fleet.start()
    try:
        yield fleet
    finally:
        fleet.stop()


def admin(fleet: Fleet, key: str = ADMIN_KEY) -> httpx.Client:
    return httpx.Client(base_url=fleet.url, headers={"authorization": f"Bearer {key}"}, timeout=30)


def key_events(fleet: Fleet) -> list[tuple[str, str, str]]:
    """``gateway_key_events`` as (name, action, actor)."""
    from sqlalchemy import select

    from revoctl.core import load_services
    from revoctl.core.db.models import GatewayKeyEvent

    async def read() -> list[tuple[str, str, str]]:
        async with load_services(fleet.config) as svc:

            async def rows(session: Any) -> list[tuple[str, str, str]]:
                found = await session.execute(select(GatewayKeyEvent).order_by(GatewayKeyEvent.id))
                return [(e.name, e.action, e.actor) for e in found.scalars()]

            return await svc.db.transaction(rows)

    return asyncio.run(read())


@pytest.mark.postgres
def test_keys_over_http_and_at_the_terminal_are_the_same_keys(served: Fleet) -> None:
    for headers in ({}, {"authorization": "Bearer not-the-admin-key"}):
        refused = httpx.get(f"{served.url}/admin/keys", headers=headers)
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "invalid_admin_key"
    gateway_key = served.new_key("team-cli")
    with admin(served, gateway_key) as not_admin:  # a gateway key is no admin key
        assert not_admin.get("/admin/keys").status_code == 401

    with admin(served) as http:
        created = http.post(
            "/admin/keys", json={"name": "team-http", "tier": "free", "expires_in": 3600}
        )
        assert created.status_code == 200, created.text
        issued = created.json()
        assert set(issued) == {"name", "key", "expires_at"} and KEY_PATTERN.fullmatch(issued["key"])
        listed = {k["name"]: k for k in served.cli_json("keys", "list")}
        assert listed["team-http"]["tier"] == "free" and listed["team-http"]["budget"] == 2.0
        assert listed["team-http"]["expires_at"] == issued["expires_at"]
        deadline = time.monotonic() + 10  # every instance reads new keys within its refresh
        while (
            httpx.get(
                f"{served.url}/v1/models", headers={"authorization": f"Bearer {issued['key']}"}
            ).status_code
            != 200
        ):
            assert time.monotonic() < deadline, "the key made over HTTP never worked"
            time.sleep(0.1)

        assert served.cli("keys", "revoke", "team-cli").returncode == 0
        over_http = {k["name"]: k for k in http.get("/admin/keys").json()}
        assert (
            over_http["team-cli"]["revoked"] is True and over_http["team-http"]["revoked"] is False
        )
        assert set(over_http["team-http"]) == set(listed["team-http"])

        spend = http.get("/admin/keys/team-http/spend").json()
        assert spend == served.cli_json("keys", "spend", "team-http")
        assert (spend["tier"], spend["spend"], spend["budget"]) == ("free", 0.0, 2.0)

        rotated = http.post("/admin/keys/team-http/rotate", json={"overlap": 30}).json()
        assert rotated["name"] == "team-http" and rotated["key"] != issued["key"]
        assert http.post("/admin/keys/team-http/rotate").status_code == 200  # no body: overlap 0

        revoked = http.delete("/admin/keys/team-http")
        assert revoked.status_code == 200 and revoked.json()["revoked"] is True
        assert served.cli_json("keys", "list")[-1]["revoked"] is True

        for method, path, body, status, code in [
            ("DELETE", "/admin/keys/ghost", None, 404, "not_found"),
            ("GET", "/admin/keys/ghost/spend", None, 404, "not_found"),
            ("DELETE", "/admin/keys/bad%20name", None, 400, "invalid_value"),
            ("POST", "/admin/keys", {"name": "x", "tier": "gold"}, 400, "invalid_value"),
            ("POST", "/admin/keys", {"name": "team-http"}, 400, "invalid_value"),
            ("POST", "/admin/keys", {"name": "y", "extra": 1}, 400, "invalid_value"),
            ("POST", "/admin/keys/team-cli/rotate", {"overlap": -1}, 400, "invalid_value"),
        ]:
            answer = http.request(method, path, json=body)
            assert answer.status_code == status, (path, answer.text)
            assert answer.json()["error"]["code"] == code, (path, answer.text)
        assert (
            "configured tiers: free"
            in http.post("/admin/keys", json={"name": "x", "tier": "gold"}).text
        )

    actors = {actor for name, _, actor in key_events(served) if name == "team-http"}
    assert actors == {f"admin:{FINGERPRINT}"}
    log = served.stop()
    assert ADMIN_KEY not in log and issued["key"] not in log and rotated["key"] not in log
    assert f"admin:{FINGERPRINT}" in log


@pytest.mark.postgres
def test_a_trip_and_a_reset_over_http_are_the_fleets(served: Fleet) -> None:
    with admin(served) as http:
        tripped = http.post(
            "/admin/breakers/openai_api/trip", json={"reason": "maintenance", "for": 600}
        )
        assert tripped.status_code == 200, tripped.text
        assert tripped.json()["state"] == "forced_open"
        [status] = served.cli_json("breakers", "status", "openai_api")
        assert (status["state"], status["forced"], status["reason"]) == (
            "forced_open",
            True,
            "maintenance",
        )
        history = served.cli_json("breakers", "history", "openai_api")
        assert history[0]["actor"] == f"admin:{FINGERPRINT}"

        reset = http.post("/admin/breakers/openai_api/reset")
        assert reset.status_code == 200 and reset.json()["state"] == "closed"
        [status] = served.cli_json("breakers", "status", "openai_api")
        assert status["state"] == "closed" and status["forced"] is False

        assert http.post("/admin/breakers/nope/trip", json={}).status_code == 404
        assert http.post("/admin/breakers/openai_api/trip", json={"for": 0}).status_code == 400
    assert ADMIN_KEY not in served.stop()


def test_without_an_admin_key_every_admin_route_is_not_found(cli: Any, tmp_path: Path) -> None:
    config = tmp_path / "revoctl.toml"
    config.write_text(CONFIG.format(database="", admin_key=""))
    assert cli("--config", str(config), "keys", "create", "team-a").exit_code == 0
    with TestClient(create_app(load_config(config))) as client:
        for method, path in [
            ("POST", "/admin/keys"),
            ("GET", "/admin/keys"),
            ("DELETE", "/admin/keys/team-a"),
            ("GET", "/admin/keys/team-a/spend"),
            ("POST", "/admin/keys/team-a/rotate"),
            ("POST", "/admin/breakers/openai_api/trip"),
            ("POST", "/admin/breakers/openai_api/reset"),
        ]:
            answer = client.request(method, path, headers={"authorization": "Bearer anything"})
            assert answer.status_code == 404, (path, answer.text)
            assert answer.json()["error"]["code"] == "not_found"
        document = client.get("/openapi.json").json()
        assert not [path for path in document["paths"] if path.startswith("/admin")]
    assert (
        json.loads(cli("--config", str(config), "keys", "list", "-o", "json").stdout)[0]["revoked"]
        is False
    )
