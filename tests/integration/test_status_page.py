"""``/status`` on a real gateway: ``revoctl serve`` with limits and breakers on Redis and usage
in PostgreSQL, in front of the LLM stand-ins, its admin key a secret reference; the CLI drives
the same state.

- A wrong admin key is refused (401, no cookie), and nothing but the login and the assets
  answers without a session.
- ``/status.json`` holds what the CLI shows: the breakers (a CLI trip, with its reason and
  time in state), the rules and their busiest key, this instance's pool report, the
  secrets' serving state, a key's spend against its tier's budget, and the recent refusal
  and fallback.
- The buttons: without the CSRF token a trip is refused and changes nothing; with it the
  breaker is tripped in the fleet (the CLI sees it), and reset.
- The event stream delivers a CLI trip within the CONTRACT's second.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.fleet import ANTHROPIC_KEY, OPENAI_KEY, Fleet, build_fleet, chat
from tests.support.llm_standin import LLMStandIn

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

ADMIN_KEY = "adm-status-canary-93c1f0d2"
CONTRACT_BOUND = 1.0
"""Seconds within which a trip reaches every process: the page too."""


@pytest.fixture
def served(tmp_path: Path, postgres_url: str, redis_url: str, redis_prefix: str) -> Iterator[Fleet]:
    with LLMStandIn(api_key=OPENAI_KEY) as openai, LLMStandIn(api_key=ANTHROPIC_KEY) as claude:
        fleet = build_fleet(
            tmp_path,
            postgres_url=postgres_url,
            redis_url=redis_url,
            prefix=redis_prefix,
            openai=openai,
            anthropic=claude,
            workers=1,
        )
        text = fleet.config.read_text().replace(
            "[gateway]\n", '[gateway]\nadmin_key = "${secret:status-admin-key}"\n', 1
        )
        fleet.config.write_text(text + '\n[tiers.team]\nbudget = 5.0\nbudget_period = "1d"\n')
        stored = fleet.cli("secrets", "set", "status-admin-key", stdin=ADMIN_KEY)
        assert stored.returncode == 0, stored.stderr
        fleet.start()
        try:
            yield fleet
        finally:
            log = fleet.stop()
            assert ADMIN_KEY not in log


def signed_in(fleet: Fleet) -> tuple[httpx.Client, str]:
    """A browser-like client holding a session, and the page's CSRF token."""
    http = httpx.Client(base_url=fleet.url, timeout=30, follow_redirects=True)
    answer = http.post("/status/login", data={"admin_key": ADMIN_KEY})
    assert answer.status_code == 200 and answer.url.path == "/status", answer.text
    token = re.search(r'name="csrf-token" content="([^"]+)"', answer.text)
    assert token is not None
    return http, token.group(1)


def breaker(document: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = {b["name"]: b for b in document["breakers"]["items"]}[name]
    return found


def test_login_refused_with_a_wrong_key_and_nothing_shown_without_a_session(
    served: Fleet,
) -> None:
    with httpx.Client(base_url=served.url, timeout=30) as anonymous:
        wrong = anonymous.post("/status/login", data={"admin_key": "not-the-key"})
        assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
        gateway_key = served.new_key("not-admin")
        refused = anonymous.post("/status/login", data={"admin_key": gateway_key})
        assert refused.status_code == 401
        assert anonymous.get("/status", follow_redirects=False).headers["location"] == (
            "/status/login"
        )
        for path in ("/status.json", "/status/events"):
            assert anonymous.get(path).json()["error"]["code"] == "login_required"
        tripped = anonymous.post("/status/breakers/openai_api/trip")
        assert tripped.status_code == 401
        assert anonymous.get("/status/assets/status.css").status_code == 200
    assert served.cli_json("breakers", "status", "openai_api")[0]["state"] == "closed"


def test_the_json_holds_what_the_cli_shows(served: Fleet) -> None:
    key = served.new_key("team-a", "--tier", "team")
    for count, who in ((3, "busy-caller"), (1, "quiet-caller")):
        tested = served.cli("limits", "test", "rpm", "--key", who, "--count", str(count))
        assert tested.returncode == 0, tested.stderr
    with served.client(key) as client:
        assert chat(client, max_tokens=8).status_code == 200
        missing = chat(client, model="no-such-model")
        assert missing.status_code == 404
        assert (
            served.cli("breakers", "trip", "openai_api", "--reason", "maintenance").returncode == 0
        )
        deadline = time.monotonic() + 10
        while (answered := chat(client, max_tokens=8)).json().get("model") != "sonnet":
            assert time.monotonic() < deadline, answered.text
            time.sleep(0.1)
    http, _ = signed_in(served)
    deadline = time.monotonic() + 15  # the usage writer's batches reach the table
    while True:
        document = http.get("/status.json").json()
        recent = document["recent"]
        if recent.get("refusals") and recent.get("fallbacks"):
            break
        assert time.monotonic() < deadline, recent
        time.sleep(0.25)
    tripped = breaker(document, "openai_api")
    assert tripped["state"] == "forced_open" and tripped["reason"] == "maintenance"
    assert tripped["seconds_in_state"] is not None and tripped["seconds_in_state"] >= 0
    cli = served.cli_json("breakers", "status", "openai_api")[0]
    assert tripped["changed_at"] == cli["changed_at"] and tripped["actor"] == cli["actor"]

    rules = {r["name"]: r for r in document["rules"]["items"]}
    assert set(rules) == {"rpm", "tpm"}
    inspected = served.cli_json("limits", "inspect", "rpm")
    assert sorted(k["key"] for k in rules["rpm"]["busiest"]) == sorted(k["key"] for k in inspected)
    busiest = rules["rpm"]["busiest"]
    assert [(k["key"], k["used"]) for k in busiest[:2]] == [("busy-caller", 3), ("quiet-caller", 1)]

    instances = [i["instance"] for i in document["pools"]["instances"]]
    assert document["served_by"] in instances
    assert document["pools"]["backend"] == "postgresql"

    secrets = document["secrets"]
    assert (secrets["provider"], secrets["serving"]) == ("local", "provider")
    [spend] = document["spend"]["items"]
    assert spend["name"] == "team-a" and spend["budget"] == 5.0 and spend["spend"] > 0
    assert spend["spend"] == pytest.approx(served.cli_json("keys", "spend", "team-a")["spend"])

    assert any(r["status"] == 404 and r["code"] for r in recent["refusals"])
    fallback = recent["fallbacks"][0]
    assert (fallback["model"], fallback["served_by"], fallback["key"]) == (
        "gpt",
        "sonnet",
        "team-a",
    )
    for value in (ADMIN_KEY, OPENAI_KEY, ANTHROPIC_KEY, key):
        assert value not in json.dumps(document)
    http.close()


def test_trip_and_reset_need_the_csrf_token(served: Fleet) -> None:
    http, token = signed_in(served)
    trip = "/status/breakers/openai_api/trip"
    for headers in ({}, {"x-csrf-token": "forged-token"}):
        refused = http.post(trip, headers=headers, json={"reason": "nope"})
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "invalid_csrf"
    assert served.cli_json("breakers", "status", "openai_api")[0]["state"] == "closed"
    other, other_token = signed_in(served)  # another session's token is not this one's
    assert http.post(trip, headers={"x-csrf-token": other_token}).status_code == 403

    done = http.post(trip, headers={"x-csrf-token": token}, json={"reason": "from the test"})
    assert done.status_code == 200, done.text
    seen = served.cli_json("breakers", "status", "openai_api")[0]
    assert (seen["state"], seen["reason"]) == ("forced_open", "from the test")
    assert seen["actor"].startswith("admin:") and ADMIN_KEY not in seen["actor"]
    reset = http.post("/status/breakers/openai_api/reset", headers={"x-csrf-token": token})
    assert reset.status_code == 200 and reset.json()["state"] == "closed"
    assert served.cli_json("breakers", "status", "openai_api")[0]["state"] == "closed"
    other.close()
    http.close()


@pytest.mark.slow
def test_the_event_stream_delivers_a_cli_trip_within_a_second(served: Fleet) -> None:
    """Timed from the trip's own write (its ``changed_at``, this machine's clock) to the
    event that shows it: what the CLI process's start and exit add is not the page's."""
    http, _ = signed_in(served)
    states: list[tuple[float, dict[str, Any]]] = []
    stop = threading.Event()

    def follow() -> None:
        with http.stream("GET", "/status/events", timeout=30) as events:
            assert events.headers["content-type"].startswith("text/event-stream")
            for line in events.iter_lines():
                if line.startswith("data: "):
                    states.append((time.time(), breaker(json.loads(line[6:]), "openai_api")))
                if stop.is_set():
                    return

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    deadline = time.monotonic() + 10
    while not states:
        assert time.monotonic() < deadline, "no event arrived"
        time.sleep(0.05)
    assert states[-1][1]["state"] == "closed"
    done = served.cli("breakers", "trip", "openai_api")
    assert done.returncode == 0, done.stderr
    returned = time.time()
    while not any(item["state"] == "forced_open" for _, item in states):
        assert time.time() < returned + CONTRACT_BOUND, states[-1]
        time.sleep(0.01)
    arrived, item = next((at, item) for at, item in states if item["state"] == "forced_open")
    written = datetime.fromisoformat(item["changed_at"]).timestamp()
    print(f"CLI trip on the event stream {1000 * (arrived - written):.0f} ms after its write")
    assert arrived - written < CONTRACT_BOUND
    stop.set()
    reader.join(timeout=5)
    http.close()
