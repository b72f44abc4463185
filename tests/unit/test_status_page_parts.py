"""The status page's parts: the signed session cookie, the CSRF check, the page's rendering
(the data embedded so that no value can end its script element; nothing fetched from
elsewhere), the feed's updates, the event streams' close, and the routes' access rules
through the ASGI app on SQLite and in-memory stores."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from revoctl.runtime import draining, status_auth
from revoctl.runtime.app import create_app
from revoctl.runtime.routes.status import embedded_json, render_login, render_page
from revoctl.runtime.status_feed import StatusFeed

ADMIN_KEY = "adm-status-canary-0b7e41"
LOOPBACK = ("127.0.0.1", 50123)


# ------------------------------------------------------------------ the session cookie


def test_a_session_reads_back_only_with_its_signature_its_key_and_its_time() -> None:
    cookie, session = status_auth.issue(ADMIN_KEY, now=1000.0)
    assert status_auth.read(cookie, ADMIN_KEY, now=1001.0) == session
    assert ADMIN_KEY not in cookie  # the admin key is never in the cookie
    body, signature = cookie.split(".")
    assert status_auth.read(cookie, "another-admin-key", now=1001.0) is None
    assert status_auth.read(f"{body}.{signature[:-2]}AA", ADMIN_KEY, now=1001.0) is None
    forged, _ = status_auth.issue("another-admin-key", now=1000.0)
    assert status_auth.read(f"{forged.split('.')[0]}.{signature}", ADMIN_KEY, now=1001) is None
    expires = 1000.0 + status_auth.SESSION_SECONDS
    assert status_auth.read(cookie, ADMIN_KEY, now=expires - 1) == session
    assert status_auth.read(cookie, ADMIN_KEY, now=expires) is None
    for junk in (None, "", "no-dot", "a.b.c", "!!!.???", f"{body}."):
        assert status_auth.read(junk, ADMIN_KEY, now=1001.0) is None


def test_each_session_has_a_csrf_token_of_its_own_checked_exactly() -> None:
    _, one = status_auth.issue(ADMIN_KEY)
    _, two = status_auth.issue(ADMIN_KEY)
    assert one.csrf != two.csrf and len(one.csrf) >= 40
    assert status_auth.csrf_ok(one, one.csrf)
    for wrong in (None, "", two.csrf, one.csrf[:-1], one.csrf + "x"):
        assert not status_auth.csrf_ok(one, wrong)


def test_the_cookie_is_httponly_samesite_strict_and_secure_over_https() -> None:
    plain = status_auth.cookie_header("v", secure=False)
    assert plain.startswith(f"{status_auth.COOKIE}=v;")
    assert "HttpOnly" in plain and "SameSite=Strict" in plain and "Secure" not in plain
    assert status_auth.cookie_header("v", secure=True).endswith("; Secure")
    assert "Max-Age=0" in status_auth.cookie_header("", secure=False, max_age=0)


def test_the_login_compares_the_whole_key_and_never_accepts_an_empty_one() -> None:
    assert status_auth.login_ok(ADMIN_KEY, ADMIN_KEY)
    for wrong in ("", ADMIN_KEY[:-1], ADMIN_KEY + " ", ADMIN_KEY.upper()):
        assert not status_auth.login_ok(ADMIN_KEY, wrong)
    assert not status_auth.login_ok("", "")


# ------------------------------------------------------------------ rendering

HOSTILE = "</script><script>alert(1)</script><!--"


def test_the_page_embeds_its_data_so_no_value_ends_the_script_element() -> None:
    document = {"breakers": {"items": [{"name": "openai_api", "reason": HOSTILE}]}}
    viewer = status_auth.Viewer(status_auth.Session("tok-123", 2e9), "admin:abc")
    page = render_page(document, viewer)
    assert page.count("</script>") == 2  # the two script elements of the page, nothing else
    assert HOSTILE not in page and "<script>alert" not in page
    assert '<meta name="csrf-token" content="tok-123">' in page
    assert 'data-mode="admin"' in page
    found = re.search(r'<script type="application/json" id="status-data">(.*?)</script>', page)
    assert found is not None
    import json

    assert json.loads(found.group(1)) == document
    assert json.loads(embedded_json({"x": "a&b<c>"})) == {"x": "a&b<c>"}


def test_a_read_only_page_has_no_csrf_token() -> None:
    page = render_page({}, status_auth.Viewer(None, None))
    assert '<meta name="csrf-token" content="">' in page and 'data-mode="read-only"' in page


def test_the_login_page_escapes_its_message() -> None:
    assert "&lt;b&gt;" in render_login("<b>") and "<b>" not in render_login("<b>")
    assert 'role="alert"' not in render_login()


def test_everything_the_page_loads_is_shipped_in_the_package() -> None:
    folder = resources.files("revoctl.runtime") / "status_page"
    names = sorted(entry.name for entry in folder.iterdir())
    assert names == ["login.html", "page.html", "status.css", "status.js"]
    for name in names:
        text = (folder / name).read_text("utf-8")
        assert not re.search(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I), name
        for url in re.findall(r'(?:src|href)="([^"]+)"', text):
            assert url.startswith("/status/assets/"), (name, url)
    script = (folder / "status.js").read_text("utf-8")
    # values reach the page as text only
    assert not re.search(r"\.(inner|outer)HTML\s*=|insertAdjacentHTML|document\.write", script)


# ------------------------------------------------------------------ the feed and the close


async def test_the_feed_publishes_while_listened_to_and_stops_after() -> None:
    calls: list[tuple[str, ...]] = []

    async def gather(services: Any, sections: Sequence[str]) -> dict[str, Any]:
        calls.append(tuple(sections))
        return {name: {"n": len(calls)} for name in sections}

    feed = StatusFeed(None, "me", tick=0.01, slow=0.05, gather=gather)  # type: ignore[arg-type]
    closed = asyncio.Event()
    seen: list[dict[str, Any]] = []
    async for document in feed.updates(closed):
        assert document is not None
        seen.append(document)
        if len(seen) == 8:
            closed.set()
    assert [d["served_by"] for d in seen] == ["me"] * 8
    assert set(seen[-1]) >= {"served_by", "breakers", "rules", "pools", "recent"}
    assert calls[0][0] == "breakers" and len(calls[0]) == 6  # the first read is whole
    assert 1 < sum(len(c) == 6 for c in calls) < len(calls)  # the slow part less often
    await asyncio.sleep(0.05)
    count = len(calls)
    await asyncio.sleep(0.05)
    assert len(calls) == count  # no listener: nothing read


async def test_closing_the_event_streams_ends_them_and_any_opened_after() -> None:
    try:
        with draining.EventStream() as stream:
            assert draining.open_streams() == 1 and not stream.closed.is_set()
            assert draining.close_event_streams() == 1
            assert stream.closed.is_set()
        assert draining.open_streams() == 0
        assert draining.EventStream().closed.is_set()
    finally:
        draining.reopen()
    assert not draining.EventStream().closed.is_set()


# ------------------------------------------------------------------ the routes


def app_with(tmp_path: Path, admin_key: str = "") -> Any:
    config = tmp_path / "revoctl.toml"
    gateway = f'[gateway]\nauth = "none"\nadmin_key = "{admin_key}"\n'
    config.write_text('[limits]\nstore = "memory"\n[breakers]\nstore = "memory"\n' + gateway)
    return create_app(config)


def test_without_an_admin_key_the_page_is_read_only_and_local(tmp_path: Path) -> None:
    app = app_with(tmp_path)
    with TestClient(app, client=LOOPBACK) as local:
        page = local.get("/status")
        assert page.status_code == 200 and 'data-mode="read-only"' in page.text
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert local.get("/status.json").json()["breakers"]["items"]
        assert local.get("/status/login").status_code == 404
        assert local.post("/status/breakers/openai_api/trip").status_code == 404
        assert (
            local.get("/status/assets/status.js")
            .headers["content-type"]
            .startswith("text/javascript")
        )
        assert local.get("/status/assets/page.html").status_code == 404
    with TestClient(app, client=("203.0.113.9", 40000)) as remote:
        refused = remote.get("/status.json")
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "status_local_only"


def test_with_an_admin_key_the_page_needs_a_session_and_buttons_its_token(
    tmp_path: Path,
) -> None:
    with TestClient(app_with(tmp_path, ADMIN_KEY), client=LOOPBACK) as http:
        first = http.get("/status", follow_redirects=False)
        assert first.status_code == 303 and first.headers["location"] == "/status/login"
        assert http.get("/status.json").status_code == 401
        wrong = http.post("/status/login", data={"admin_key": "nope"}, follow_redirects=False)
        assert wrong.status_code == 401 and "not the admin key" in wrong.text
        assert "set-cookie" not in wrong.headers
        right = http.post("/status/login", data={"admin_key": ADMIN_KEY}, follow_redirects=False)
        assert right.status_code == 303 and "HttpOnly" in right.headers["set-cookie"]
        page = http.get("/status")
        csrf = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
        assert csrf is not None and ADMIN_KEY not in page.text
        trip = "/status/breakers/openai_api/trip"
        assert http.post(trip).json()["error"]["code"] == "invalid_csrf"
        assert http.post(trip, headers={"x-csrf-token": "forged"}).status_code == 403
        tripped = http.post(trip, headers={"x-csrf-token": csrf.group(1)}, json={"reason": "x"})
        assert tripped.status_code == 200 and tripped.json()["state"] == "forced_open"
        assert tripped.json()["actor"].startswith("admin:")
        state = {b["name"]: b for b in http.get("/status.json").json()["breakers"]["items"]}
        assert state["openai_api"]["state"] == "forced_open"
        reset = http.post(
            "/status/breakers/openai_api/reset", headers={"x-csrf-token": csrf.group(1)}
        )
        assert reset.json()["state"] == "closed"
        unknown = http.post("/status/breakers/nope/trip", headers={"x-csrf-token": csrf.group(1)})
        assert unknown.status_code == 404
        http.post("/status/logout")
        assert http.get("/status.json").status_code == 401


# ------------------------------------------------------------------ the document


async def test_a_failed_section_is_its_error_and_the_others_still_show() -> None:
    from types import SimpleNamespace

    from revoctl.core.errors import BackendUnavailableError
    from revoctl.core.limits import RateLimitRule
    from revoctl.core.status import fleet_status

    async def unreachable(name: str | None = None) -> Any:
        raise BackendUnavailableError(f"redis at 127.0.0.1:6399 unreachable ({ADMIN_KEY})")

    async def inspect(rule: str, key: str | None = None) -> list[Any]:
        state = SimpleNamespace
        return [
            state(key="idle", limit=10, remaining=10, reset_after=0.0),
            state(key="busy", limit=10, remaining=1, reset_after=4.0),
            state(key="half", limit=10, remaining=5, reset_after=2.0),
        ]

    rule = RateLimitRule(name="rpm", requests=10, window_seconds=60)
    services = SimpleNamespace(
        breakers=SimpleNamespace(status=unreachable),
        settings=SimpleNamespace(limits=SimpleNamespace(rules=[rule])),
        limiter=SimpleNamespace(inspect=inspect),
        secrets=SimpleNamespace(serving_state=lambda: {"serving": "stale"}),
    )
    from revoctl.core.redaction import register_secret

    register_secret(ADMIN_KEY)
    document = await fleet_status(
        services,  # type: ignore[arg-type]
        ["breakers", "rules", "secrets"],
        busiest=2,
    )
    assert "unreachable" in document["breakers"]["error"]
    assert ADMIN_KEY not in document["breakers"]["error"]  # errors are redacted
    [rpm] = document["rules"]["items"]
    assert [(k["key"], k["used"]) for k in rpm["busiest"]] == [("busy", 9), ("half", 5)]
    assert rpm["keys_tracked"] == 3 and rpm["limit"] == rule.capacity
    assert document["secrets"] == {"serving": "stale"}
    with pytest.raises(ValueError, match="nope"):
        await fleet_status(services, ["nope"])  # type: ignore[arg-type]


def test_the_cookie_is_secure_when_the_page_came_over_https(tmp_path: Path) -> None:
    app = app_with(tmp_path, ADMIN_KEY)
    for base, secure in (("https://status.example", True), ("http://status.example", False)):
        with TestClient(app, base_url=base, client=LOOPBACK) as http:
            answer = http.post(
                "/status/login", data={"admin_key": ADMIN_KEY}, follow_redirects=False
            )
            cookie = answer.headers["set-cookie"]
            assert cookie.endswith("; Secure") is secure
            assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
