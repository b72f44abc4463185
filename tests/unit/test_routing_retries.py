"""`Routing`'s retries in one process, with the provider calls stubbed and the backoff's
sleeps recorded: where a retry goes, how long it may wait, what is never retried, and what
the exchange says answered (real breakers, real metrics)."""

from __future__ import annotations

import random
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from revoctl.config import load_config
from revoctl.core import CircuitBreaker, CircuitBreakerConfig
from revoctl.runtime.errors import GatewayError
from revoctl.runtime.exchange import Exchange
from revoctl.runtime.identity import Caller
from revoctl.runtime.metrics import GatewayMetrics
from revoctl.runtime.providers import ProviderRequestError, ProviderUnavailableError
from revoctl.runtime.routing import Routing

CONFIG = """
[breakers.services.east]
failure_threshold = 1
recovery_timeout = 600
[breakers.services.west]
failure_threshold = 1
recovery_timeout = 600

[providers.llm]
kind = "openai"
base_url = "http://127.0.0.1:9/v1"

[models.gpt]
retries = {retries}
retry_backoff_seconds = 0.5
fallbacks = ["spare"]
deployments = [
  {{ provider = "llm", upstream = "east", breaker = "east" }},
  {{ provider = "llm", upstream = "west", breaker = "west" }},
]

[models.spare]
provider = "llm"
upstream = "spare"
"""


class Upstream:
    """The stubbed provider calls: planned failures (the next calls', or an upstream's), and
    the upstreams called, in order."""

    def __init__(self, *next_calls: Exception, **by_upstream: list[Exception]) -> None:
        self.next_calls = list(next_calls)
        self.by_upstream = by_upstream
        self.calls: list[str] = []

    async def __call__(self, provider: Any, upstream: str) -> dict[str, Any]:
        self.calls.append(upstream)
        planned = self.by_upstream.get(upstream) or []
        if self.next_calls or planned:
            raise (self.next_calls or planned).pop(0)
        return {"model": upstream}


async def routing_for(tmp_path: Path, retries: int = 1) -> tuple[Routing, list[float]]:
    """A `Routing` over `CONFIG`, each deployment behind its own real breaker; the backoff's
    sleeps are recorded, not slept."""
    path = tmp_path / "revoctl.toml"
    path.write_text(CONFIG.format(retries=retries))
    settings = load_config(path).settings
    breakers = {
        name: CircuitBreaker(
            CircuitBreakerConfig(name=name, failure_threshold=1, recovery_timeout=600)
        )
        for name in ("east", "west")
    }

    async def read_secret(name: str) -> str:
        return "sk"

    services: Any = SimpleNamespace(
        settings=settings, breakers=SimpleNamespace(get=breakers.__getitem__),
        read_secret=read_secret,
    )  # fmt: skip
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    routing = Routing(
        services, dict(settings.models), GatewayMetrics(), rng=random.Random(3), sleep=sleep
    )
    return routing, slept


def exchange() -> Exchange:
    caller = Caller(key_name="k", user=None, client_ip=None)
    request: Any = {"model": "gpt", "messages": []}
    return Exchange("gpt", request, caller, "/v1/chat/completions", "req-1", 0.0)


def failure(status: int = 500) -> ProviderUnavailableError:
    return ProviderUnavailableError(f"llm: upstream answered {status}", status=status)


async def test_a_failure_is_retried_on_the_other_deployment_after_a_jittered_wait(
    tmp_path: Path,
) -> None:
    routing, slept = await routing_for(tmp_path)
    upstream = Upstream(failure())
    done = exchange()
    answer = await routing._first_answer(done, upstream)
    assert sorted(upstream.calls) == ["east", "west"]  # never the same one twice
    assert answer == {"model": upstream.calls[1]}
    assert (done.served_by, done.deployment, done.provider) == (
        "gpt", f"llm/{upstream.calls[1]}", "llm",
    )  # fmt: skip
    assert done.retries == 1
    assert len(slept) == 1 and 0 <= slept[0] <= 0.5  # full jitter up to retry_backoff_seconds
    await routing.close()


async def test_when_the_retries_fail_too_the_fallback_answers(tmp_path: Path) -> None:
    routing, slept = await routing_for(tmp_path, retries=2)
    upstream = Upstream(failure(), failure(502), failure(503))
    done = exchange()
    assert await routing._first_answer(done, upstream) == {"model": "spare"}
    # Both deployments' breakers opened (threshold 1): no second retry, no second wait; the
    # fallback's own retry answered.
    assert sorted(upstream.calls[:2]) == ["east", "west"]
    assert upstream.calls[2:] == ["spare", "spare"] and len(slept) == 2
    assert done.served_by == "spare" and done.deployment == "llm/spare"
    await routing.close()


async def test_a_request_the_provider_refuses_is_never_retried(tmp_path: Path) -> None:
    routing, slept = await routing_for(tmp_path)
    refused = ProviderRequestError("llm: upstream answered 400: bad", status=400)
    upstream = Upstream(east=[refused], west=[refused])
    with pytest.raises(GatewayError) as raised:
        await routing._first_answer(exchange(), upstream)
    assert raised.value.status == 400 and len(upstream.calls) == 1 and slept == []
    await routing.close()


async def test_with_every_breaker_open_the_fallback_answers_without_a_wait(
    tmp_path: Path,
) -> None:
    routing, slept = await routing_for(tmp_path, retries=3)
    for deployment in routing.deployments()["gpt"]:
        deployment.breaker.state.record_failure("down")
    upstream = Upstream()
    done = exchange()
    assert await routing._first_answer(done, upstream) == {"model": "spare"}
    assert upstream.calls == ["spare"] and slept == []  # the open breakers refused at once
    assert done.served_by == "spare" and done.deployment == "llm/spare"
    await routing.close()


async def test_no_retries_goes_straight_to_the_fallback(tmp_path: Path) -> None:
    routing, slept = await routing_for(tmp_path, retries=0)
    upstream = Upstream(east=[failure()], west=[failure()])
    assert await routing._first_answer(exchange(), upstream) == {"model": "spare"}
    assert len(upstream.calls) == 2 and upstream.calls[-1] == "spare" and slept == []
    await routing.close()
