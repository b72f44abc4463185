"""Every metric the example alert rules and Grafana dashboard use is exported by a running
gateway: ``revoctl serve --workers 2`` on PostgreSQL and Redis in front of the LLM stand-in,
driven through successes, a stream, a retry, a denial, a fallback and a breaker trip (a
labelled family appears only after its first sample), with a fake NVML on its path for the
GPU families; then one scrape of ``/metrics`` must hold every name they use."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from revoctl.runtime.metrics_sync import KEY_SPEND_SECONDS
from tests.support.fake_nvml import write_module
from tests.support.fleet import OPENAI_KEY, Fleet, free_port
from tests.support.llm_standin import LLMStandIn
from tests.support.metric_names import SCRAPER_NAMES, used_names

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

BUDGET = 100.0
CONFIG = """
[database]
url = "{database}"

[redis]
url = "{redis}"

[limits]
store = "redis"
key_prefix = "{prefix}rl:"
[[limits.rules]]
name = "rpm"
requests = 1000000
window_seconds = 3600
algorithm = "fixed_window"
scope = "per_api_key"
[[limits.rules]]
name = "one"
requests = 1
window_seconds = 3600
algorithm = "fixed_window"
scope = "per_api_key"

[breakers]
store = "redis"
key_prefix = "{prefix}cb:"
poll_interval = 0.25
[breakers.services.openai_api]
failure_threshold = 1000
failure_rate_threshold = 0
[breakers.services.bad]
failure_threshold = 2
failure_rate_threshold = 0
recovery_timeout = 600

[gateway]
auth = "keys"
request_rule = "rpm"
default_max_tokens = 64

[tiers.capped]
request_rule = "one"
budget = {budget}
budget_period = "1h"

[providers.llm]
kind = "openai"
base_url = "{openai}"
api_key = "${{secret:openai-api-key}}"
breaker = "openai_api"
timeout = 10

[models.solo]
provider = "llm"
upstream = "solo-up"
retries = 1
retry_backoff_seconds = 0.01
input_cost_per_1k = 0.5
output_cost_per_1k = 1.5

[models.flaky]
fallbacks = ["spare"]
deployments = [{{ provider = "llm", upstream = "flaky-up", breaker = "bad" }}]

[models.spare]
provider = "llm"
upstream = "spare-up"
"""


@pytest.fixture
def fleet(
    tmp_path: Path,
    postgres_url: str,
    redis_url: str,
    redis_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Fleet]:
    # The served workers import the fake NVML first: the GPU families get their samples.
    path = [str(write_module(tmp_path / "nvml")), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, path)))
    config = tmp_path / "revoctl.toml"
    with LLMStandIn(api_key=OPENAI_KEY) as llm:
        config.write_text(
            CONFIG.format(
                database=postgres_url,
                redis=redis_url,
                prefix=redis_prefix,
                openai=llm.openai_base_url,
                budget=BUDGET,
            )
        )
        running = Fleet(config=config, home=tmp_path / "home", openai=llm, anthropic=llm,
                        workers=2, port=free_port())  # fmt: skip
        stored = running.cli("secrets", "set", "openai-api-key", stdin=OPENAI_KEY)
        assert stored.returncode == 0, stored.stderr
        migrated = running.cli("db", "migrate")
        assert migrated.returncode == 0, migrated.stderr
        running.start()
        try:
            yield running
        finally:
            running.stop()


def ask(client: httpx.Client, model: str, **extra: object) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hello"}], **extra}
    return client.post("/v1/chat/completions", json=body)


def scrape(fleet: Fleet) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """``/metrics``: each sample name's values, by their labels."""
    text = httpx.get(f"{fleet.url}/metrics", timeout=10).text
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            samples.setdefault(sample.name, {})[labels] = float(sample.value)
    return samples


def value(samples: dict[str, dict[tuple[tuple[str, str], ...], float]], name: str,
          **labels: str) -> float:  # fmt: skip
    """The sum of ``name``'s samples carrying ``labels``."""
    return sum(
        v
        for have, v in samples.get(name, {}).items()
        if all(dict(have).get(k) == want for k, want in labels.items())
    )


def test_every_metric_the_alerts_and_the_dashboard_use_is_exported(
    fleet: Fleet,
) -> None:
    llm = fleet.openai
    wanted = used_names() - SCRAPER_NAMES
    with fleet.client(fleet.new_key("plain")) as client:
        for _ in range(3):
            assert ask(client, "solo").status_code == 200
        streamed = ask(client, "solo", stream=True)
        assert streamed.status_code == 200 and "[DONE]" in streamed.text
        llm.configure_model("solo-up", fail_next=1)
        assert ask(client, "solo").status_code == 200  # by its retry
        llm.configure_model("flaky-up", mode="error500")
        for _ in range(3):  # two failures open breaker "bad"; the fallback answers each
            answered = ask(client, "flaky")
            assert answered.status_code == 200, answered.text
    with fleet.client(fleet.new_key("capped", "--tier", "capped")) as client:
        assert ask(client, "solo").status_code == 200
        assert ask(client, "solo").status_code == 429  # its tier allows one request

    deadline = time.monotonic() + KEY_SPEND_SECONDS + 5  # key spend is read every 15 s
    missing = wanted
    while missing and time.monotonic() < deadline:
        samples = scrape(fleet)
        missing = wanted - set(samples)
        if missing:
            time.sleep(0.5)
    print(f"the alerts and the dashboard use {len(wanted)} exported names")
    assert not missing, f"not exported: {sorted(missing)}"

    # What was driven shows in what was exported.
    assert value(samples, "revoctl_fallbacks_total", model="flaky", fallback="spare") >= 2
    assert value(samples, "revoctl_breaker_state", breaker="bad") == 2  # open
    assert value(samples, "revoctl_deployment_retries_total", model="solo") == 1
    assert value(samples, "revoctl_http_requests_total", model="solo", status="429") == 1
    assert value(samples, "revoctl_time_to_first_token_seconds_count", model="solo") == 1
    assert value(samples, "revoctl_key_budget", key="capped") == BUDGET
    assert 0 < value(samples, "revoctl_key_spend", key="capped") < BUDGET
    assert "plain" not in {dict(k).get("key") for k in samples["revoctl_key_budget"]}
    assert value(samples, "revoctl_breaker_store_up") == 1
    assert value(samples, "revoctl_db_statement_seconds_count", operation="insert") >= 1
    assert value(samples, "revoctl_db_pool_checkout_seconds_count") >= 1
    assert value(samples, "revoctl_db_pool_max_connections") > 0
    assert value(samples, "revoctl_secret_degraded_reads_total") == 0
    assert value(samples, "revoctl_gpu_utilization_ratio", gpu="0") == pytest.approx(0.37)
    assert value(samples, "revoctl_host_memory_total_bytes") > 0
