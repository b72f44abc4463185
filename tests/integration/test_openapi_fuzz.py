"""schemathesis against the gateway's own ``/openapi.json``, over real HTTP.

``revoctl serve`` (one worker, SQLite, in-memory limits and breakers) in front of the LLM
stand-in; schemathesis reads the document the gateway serves and sends what it generates
from it, seeded and bounded per operation: the examples, the coverage phase (boundaries
and every kind of invalid value) and fuzzing. Every check runs but one: a request the
schema allows may still be refused by the model's provider (Anthropic has no ``logprobs``
nor embeddings), which is a documented 400, not a flaw (``positive_data_acceptance``); and
a body too long for its schema's bounds (more than 2,048 token arrays of 8,192 tokens) may be
too large to read at all, which is a documented 413 rejection as good as a 400
(``negative_data_rejection``'s expected statuses, 413 added).
The admin API is on: each route gets its own key (the gateway key or the admin key, by the
security scheme the document names for it; the status page's routes a session signed in with
the admin key, its CSRF token in every request, two events read from its stream). Then: no
500, every response conforms to the document, no traceback nor the admin key in the server's
log, and the server still healthy.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.llm_standin import LLMStandIn
from tests.support.served_gateway import STANDIN_KEY, served_gateway

SEED = 17
EXAMPLES_PER_OPERATION = 100
TIME_CAP_SECONDS = 300
ADMIN_KEY = "adm-fuzz-canary-0c4b7e19"
AUTH = """
max-stream-events = 2
[auth.openapi.gatewayKey]
bearer = "{key}"
[auth.openapi.adminKey]
bearer = "{admin_key}"
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428",
                     "429", "5xx"]
[auth.openapi.statusSession]
api_key = "{session}"
[headers]
x-csrf-token = "{csrf}"
"""
"""A run that does not end in this long has hung: it is stopped and fails (it takes 15-30 s)."""


@pytest.mark.slow
def test_schemathesis_finds_nothing_and_the_gateway_stays_healthy(tmp_path: Path) -> None:
    report = tmp_path / "schemathesis.json"
    with (
        LLMStandIn(api_key=STANDIN_KEY) as llm,
        served_gateway(tmp_path, llm, admin_key=ADMIN_KEY) as (gateway, key),
    ):
        auth = tmp_path / "schemathesis.toml"  # each route's own key: a gateway's or the admin's
        session, csrf = status_session(gateway.url)  # the status page's cookie and CSRF token
        auth.write_text(AUTH.format(key=key, admin_key=ADMIN_KEY, session=session, csrf=csrf))
        document = httpx.get(f"{gateway.url}/openapi.json").json()
        started = time.monotonic()
        run = subprocess.run(
            [sys.executable, "-m", "schemathesis.cli", "--config-file", str(auth), "run",
             f"{gateway.url}/openapi.json",
             "--phases", "examples,coverage,fuzzing",
             "--checks", "all", "--exclude-checks", "positive_data_acceptance",
             "--max-examples", str(EXAMPLES_PER_OPERATION), "--seed", str(SEED),
             "--workers", "1", "--request-timeout", "10",
             "--report", "json", "--report-json-path", str(report)],
            capture_output=True, text=True, cwd=tmp_path, timeout=TIME_CAP_SECONDS,
        )  # fmt: skip
        seconds = time.monotonic() - started
        # The admin routes may have revoked or rotated the run's key and tripped a breaker (it
        # learns names from answers): reset them, and ask with a key made since.
        admin = {"authorization": f"Bearer {ADMIN_KEY}"}
        resets = [
            httpx.post(f"{gateway.url}/admin/breakers/{name}/reset", headers=admin, timeout=10)
            for name in ("openai_api", "anthropic_api")
        ]
        health = httpx.get(f"{gateway.url}/health", timeout=10)
        ready = httpx.get(f"{gateway.url}/health/ready", timeout=10)
        served = httpx.post(
            f"{gateway.url}/v1/chat/completions",
            json={"model": "gpt", "messages": [{"role": "user", "content": "still there?"}]},
            headers={"authorization": f"Bearer {gateway.new_key('after-the-run')}"},
            timeout=10,
        )
        log = gateway.output()
    summary = json.loads(report.read_text())
    requests = [line for line in log.splitlines() if '"logger": "revoctl.access"' in line]
    print(
        f"\nschemathesis: {summary['test_cases']['generated']} cases generated "
        f"({len(requests)} HTTP requests served) over {summary['operations']['tested']} "
        f"operations in {seconds:.1f} s, seed {SEED}; failures: {summary['failures']}"
    )
    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]
    described = {
        f"{method.upper()} {path}"
        for path in document["paths"]
        for method in document["paths"][path]
    }
    # every route, but the document itself: schemathesis leaves out the address it read it from;
    # and the status page's login, which only the admin key passes (a secret it cannot guess)
    assert set(summary["valid_rates"]) == described - {"GET /openapi.json", "POST /status/login"}
    assert summary["operations"]["tested"] == summary["operations"]["total"]
    assert summary["test_cases"]["generated"] >= 300
    assert '"status": 500' not in log and "Traceback" not in log and ADMIN_KEY not in log
    assert any(path.startswith("/admin/") for path in document["paths"])
    assert "Exception in ASGI application" not in log
    assert [reset.status_code for reset in resets] == [200, 200]
    assert health.status_code == 200 and ready.json()["ready"] is True
    assert served.status_code == 200, served.text


def status_session(url: str) -> tuple[str, str]:
    """A session of the status page (its cookie's value) and its CSRF token, signed in with
    the admin key as a browser is."""
    signed_in = httpx.post(f"{url}/status/login", data={"admin_key": ADMIN_KEY})
    session = signed_in.cookies["revoctl_status"]
    page = httpx.get(f"{url}/status", cookies={"revoctl_status": session}).text
    found = re.search(r'name="csrf-token" content="([^"]+)"', page)
    assert found is not None, page[:500]
    return session, found.group(1)
