"""The status page in a real browser: Debian's ``chromium``, headless, driven by Playwright
(launched with that executable: ``playwright install`` downloads browsers and cannot work
here), on ``revoctl serve`` with limits and breakers on Redis and usage in PostgreSQL.

One walk through the page, a screenshot of each state written under the test's temporary
directory (the paths are printed): the login refused; signed in, every breaker closed; a
``revoctl breakers trip`` run at the terminal, on the open page within the CONTRACT's second
(timed from the trip's write, its ``changed_at``, to the moment the page's row changed, both
on this machine's clock); reset with the page's button; tripped with the page's button;
the server stopped under the open page, which says so. The server's exit with the page
open is timed too.

Apart from the browser: an open event stream does not hold the server's exit on SIGTERM
(it is ended as the shutdown begins), with a margin taken from the configured bound.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from revoctl.core.gateway.settings import GatewayConfig
from tests.conftest import REQUIRE_SERVICES
from tests.support.fleet import ANTHROPIC_KEY, OPENAI_KEY, Fleet, build_fleet
from tests.support.llm_standin import LLMStandIn

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

ADMIN_KEY = "adm-browser-canary-4e1d7a"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CONTRACT_BOUND = 1.0
"""Seconds within which a trip reaches every process: the open page too."""
DRAIN_SECONDS = 8.0
"""``[gateway] drain_seconds`` of these servers: an open stream held the exit for the
requests' share of it (`GatewayConfig.request_drain_seconds`, 6 s) before the fix."""
EXIT_BOUND = GatewayConfig(drain_seconds=DRAIN_SECONDS).request_drain_seconds() / 2
"""Half the bound uvicorn would otherwise wait for the stream: measured 0.2 s."""


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
            drain_seconds=DRAIN_SECONDS,
        )
        text = fleet.config.read_text()
        fleet.config.write_text(
            text.replace("[gateway]\n", f'[gateway]\nadmin_key = "{ADMIN_KEY}"\n', 1)
        )
        fleet.start()
        try:
            yield fleet
        finally:
            log = fleet.stop()
            assert ADMIN_KEY not in log


def stop_timed(fleet: Fleet) -> float:
    """SIGTERM to the server; seconds until it has exited."""
    assert fleet.process is not None
    signalled = time.monotonic()
    os.killpg(fleet.process.pid, signal.SIGTERM)
    fleet.process.wait(timeout=60)
    return time.monotonic() - signalled


def test_the_page_in_chromium_follows_the_fleet_and_its_buttons_work(
    served: Fleet, tmp_path: Path
) -> None:
    if not Path(CHROMIUM).exists():
        reason = "Debian's chromium is not installed (.ci/run installs it)"
        if REQUIRE_SERVICES:
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    shots = tmp_path / "screenshots"
    shots.mkdir()
    row = 'tr[data-breaker="openai_api"]'
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(f"{served.url}/status")
            assert page.url.endswith("/status/login")
            page.fill("#admin_key", "not-the-admin-key")
            page.click("button[type=submit]")
            page.wait_for_selector("p.error")
            assert "not the admin key" in page.inner_text("p.error")
            page.screenshot(path=shots / "1-login-refused.png", full_page=True)

            page.fill("#admin_key", ADMIN_KEY)
            page.click("button[type=submit]")
            page.wait_for_selector('#connection[data-connection="live"]')
            page.wait_for_selector(f'{row}[data-state="closed"]')
            assert page.context.cookies()[0]["httpOnly"] is True
            assert page.context.cookies()[0]["sameSite"] == "Strict"
            page.screenshot(path=shots / "2-closed.png", full_page=True)

            page.evaluate(WATCH_FOR_TRIP)
            done = served.cli("breakers", "trip", "openai_api", "--reason", "at the terminal")
            assert done.returncode == 0, done.stderr
            page.wait_for_selector(f'{row}[data-state="forced_open"]', timeout=5000)
            seen_ms = page.evaluate("window.tripSeenAt")
            changed_at = served.cli_json("breakers", "status", "openai_api")[0]["changed_at"]
            latency = seen_ms / 1000 - datetime.fromisoformat(changed_at).timestamp()
            print(f"\nCLI trip on the open page {latency * 1000:.0f} ms after its write")
            assert latency < CONTRACT_BOUND
            assert "at the terminal" in page.inner_text(row)
            page.screenshot(path=shots / "3-tripped-at-the-terminal.png", full_page=True)

            page.click(f'{row} button[data-action="reset"]')
            page.wait_for_selector(f'{row}[data-state="closed"]')
            assert state_at_the_terminal(served)["state"] == "closed"
            page.screenshot(path=shots / "4-reset-on-the-page.png", full_page=True)

            page.click(f'{row} button[data-action="trip"]')
            page.wait_for_selector(f'{row}[data-state="forced_open"]')
            tripped = state_at_the_terminal(served)
            assert tripped["reason"] == "tripped from the status page"
            assert tripped["actor"].startswith("admin:")
            page.screenshot(path=shots / "5-tripped-on-the-page.png", full_page=True)

            exited = stop_timed(served)
            print(f"server exited {exited:.2f} s after SIGTERM with the page open")
            assert exited < EXIT_BOUND
            page.wait_for_selector('#connection[data-connection="lost"]')
            page.screenshot(path=shots / "6-server-stopped.png", full_page=True)
        finally:
            browser.close()
    names = sorted(p.name for p in shots.iterdir())
    assert len(names) == 6 and all((shots / n).stat().st_size > 10_000 for n in names)
    print("screenshots:", *(shots / n for n in names), sep="\n  ")


WATCH_FOR_TRIP = """() => {
  window.tripSeenAt = null;
  const row = 'tr[data-breaker="openai_api"][data-state="forced_open"]';
  const seen = () => document.querySelector(row);
  new MutationObserver((_, observer) => {
    if (seen()) { window.tripSeenAt = Date.now(); observer.disconnect(); }
  }).observe(document.body, { childList: true, subtree: true, attributes: true });
}"""
"""Notes when the page's row turns forced_open, on the browser's clock (this machine's)."""


def state_at_the_terminal(fleet: Fleet) -> dict[str, Any]:
    """``openai_api`` as ``revoctl breakers status`` shows it, once the page's button has been
    answered (the request that made the change has returned before the row changed)."""
    found: dict[str, Any] = fleet.cli_json("breakers", "status", "openai_api")[0]
    return found


def test_an_open_event_stream_does_not_hold_the_exit(served: Fleet) -> None:
    with httpx.Client(base_url=served.url, timeout=30, follow_redirects=True) as http:
        assert http.post("/status/login", data={"admin_key": ADMIN_KEY}).status_code == 200
        events: list[str] = []
        ended = threading.Event()

        def follow() -> None:
            try:
                with http.stream("GET", "/status/events") as stream:
                    for line in stream.iter_lines():
                        events.append(line)
            except httpx.HTTPError as exc:
                events.append(f"error: {exc!r}")
            ended.set()

        reader = threading.Thread(target=follow, daemon=True)
        reader.start()
        deadline = time.monotonic() + 10
        while not any(line.startswith("data: ") for line in events):
            assert time.monotonic() < deadline, "no event arrived"
            time.sleep(0.05)
        exited = stop_timed(served)
        print(f"\nserver exited {exited:.2f} s after SIGTERM with an event stream open")
        assert exited < EXIT_BOUND
        assert ended.wait(5)
        assert not any(line.startswith("error") for line in events), events[-1]
        assert served.process is not None and served.process.returncode in (0, -signal.SIGTERM)
