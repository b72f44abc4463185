"""``POST /v1/embeddings`` on ``revoctl serve`` in front of the LLM stand-in, through the
official ``openai`` client: on an OpenAI-compatible and an Azure OpenAI model (Azure's
``api-key`` and ``api-version`` seen upstream), charged on the token rule and the key's
budget at the input's bound and settled to the usage, one request row and one usage row
each; an Anthropic model refused before any charge; Azure's content filter as the caller's
400; the Azure key never in an answer or a log line."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import httpx
import openai
import pytest

from revoctl.core.redaction import MASK
from tests.support.fleet import Fleet
from tests.support.llm_standin import LLMStandIn, embedding_vector
from tests.support.served_providers import (
    AZURE_VERSION,
    EMBEDDING_PRICE,
    STANDIN_KEY,
    TOKENS,
    rows_of,
    served_providers,
)

pytestmark = pytest.mark.slow  # a served gateway for the module: some seconds to start


@pytest.fixture(scope="module")
def llm() -> Iterator[LLMStandIn]:
    with LLMStandIn(api_key=STANDIN_KEY) as standin:
        yield standin


@pytest.fixture(scope="module")
def served(
    llm: LLMStandIn, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Fleet, str]]:
    with served_providers(tmp_path_factory.mktemp("embeddings"), llm) as fleet_and_key:
        yield fleet_and_key


@pytest.fixture
def fresh(llm: LLMStandIn) -> LLMStandIn:
    llm.reset()
    llm.mode = "ok"
    llm.api_key = STANDIN_KEY
    return llm


def client_of(fleet: Fleet, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{fleet.url}/v1", api_key=key, max_retries=0)


@pytest.mark.parametrize(
    ("model", "path"),
    [
        ("emb", "/v1/embeddings"),
        ("azure-emb", "/openai/deployments/emb-deploy/embeddings"),
    ],
)
def test_embeddings_through_the_openai_client_with_their_rows(
    served: tuple[Fleet, str], fresh: LLMStandIn, model: str, path: str
) -> None:
    fleet, key = served
    with client_of(fleet, key) as client:
        raw = client.embeddings.with_raw_response.create(model=model, input=["one two", "three"])
    answer = raw.parse()  # the client asked for base64 and decoded it back to floats
    assert answer.model == model
    assert [item.index for item in answer.data] == [0, 1]
    for item, text in zip(answer.data, ["one two", "three"], strict=True):
        assert item.embedding == pytest.approx(embedding_vector(text, 8), abs=1e-6)
    assert (answer.usage.prompt_tokens, answer.usage.total_tokens) == (3, 3)
    [seen] = fresh.requests
    assert seen.path == path and seen.status == 200
    assert seen.body["input"] == ["one two", "three"]
    if model == "azure-emb":
        assert seen.query == {"api-version": AZURE_VERSION}
        assert seen.headers["api-key"] == STANDIN_KEY and "authorization" not in seen.headers
    else:
        assert seen.headers["authorization"] == f"Bearer {STANDIN_KEY}"
    found = rows_of(fleet, raw.headers["x-request-id"])
    assert found["request_logs"] == [("/v1/embeddings", 200, model, "metered-key", None)]
    provider = "azure" if model == "azure-emb" else "llm"
    [(used_provider, used_model, prompt, completion, total, cost)] = found["model_usage"]
    assert (used_provider, used_model, prompt, completion, total) == (provider, model, 3, 0, 3)
    assert Decimal(str(cost)) == Decimal("0.006")  # 3 tokens at EMBEDDING_PRICE per 1k
    metrics = httpx.get(f"{fleet.url}/metrics").text
    requests = f'revoctl_http_requests_total{{model="{model}",route="/v1/embeddings",status="200"}}'
    tokens = f'revoctl_tokens_total{{kind="prompt",model="{model}",provider="{provider}"}}'
    assert requests in metrics and tokens in metrics


def test_the_token_rule_and_the_budget_are_charged_the_bound_and_settled_to_the_usage(
    served: tuple[Fleet, str], fresh: LLMStandIn
) -> None:
    fleet, key = served
    price = EMBEDDING_PRICE / 1000
    with fleet.client(key) as client:
        tokens_before = int(client.get("/v1/models").headers["x-ratelimit-remaining-tokens"])
        # 18 bytes (the bound) that the stand-in counts as 4 tokens; then a token array (its
        # length, 3, is both); then 10 bytes that count as 1.
        answers = [
            client.post("/v1/embeddings", json={"model": "emb", "input": given})
            for given in ("one two three four", [[1, 2, 3]], "abcdefghij")
        ]
    assert [answer.status_code for answer in answers] == [200, 200, 200], answers[-1].text
    assert answers[0].json()["usage"] == {"prompt_tokens": 4, "total_tokens": 4}
    tokens = [int(answer.headers["x-ratelimit-remaining-tokens"]) for answer in answers]
    budget = [float(answer.headers["x-revoctl-budget-remaining"]) for answer in answers]
    # Each as charged: its bound, no output tokens; each settled to its usage before the next.
    assert tokens == [tokens_before - 18, tokens_before - 4 - 3, tokens_before - 4 - 3 - 10]
    assert budget[1] - budget[0] == pytest.approx((18 - 4) * price - 3 * price)
    assert budget[1] - budget[2] == pytest.approx(10 * price)
    assert tokens_before <= TOKENS


def test_an_anthropic_model_refuses_embeddings_before_anything_is_charged(
    served: tuple[Fleet, str], fresh: LLMStandIn
) -> None:
    fleet, key = served
    with fleet.client(key) as client:
        before = client.post("/v1/embeddings", json={"model": "emb", "input": "x"})
        refused = client.post("/v1/embeddings", json={"model": "sonnet", "input": "hi"})
        after = client.post("/v1/embeddings", json={"model": "emb", "input": "x"})
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "embeddings_not_supported"
    assert "sonnet" in refused.json()["error"]["message"]
    assert [seen.path for seen in fresh.requests] == ["/v1/embeddings"] * 2  # emb's only
    # Between two requests of one token each, the refusal took nothing: no token, no spend.
    tokens = [int(r.headers["x-ratelimit-remaining-tokens"]) for r in (before, after)]
    assert tokens[0] - tokens[1] == 1
    budget = [float(r.headers["x-revoctl-budget-remaining"]) for r in (before, after)]
    assert budget[0] - budget[1] == pytest.approx(EMBEDDING_PRICE / 1000)
    found = rows_of(fleet, refused.headers["x-request-id"])
    assert found == {
        "request_logs": [
            ("/v1/embeddings", 400, "sonnet", "metered-key", "embeddings_not_supported")
        ],
        "model_usage": [],
    }


def test_a_fallback_without_embeddings_is_passed_over(
    served: tuple[Fleet, str], fresh: LLMStandIn
) -> None:
    """The model's own upstream fails: of its fallbacks, the Anthropic one (no embeddings
    API) is never called, the next one answers."""
    fleet, key = served
    fresh.configure_model("emb-broken", mode="error500")
    try:
        with client_of(fleet, key) as client:
            answer = client.embeddings.create(model="emb-falling-back", input="one two")
    finally:
        fresh.clear_models()
    assert answer.model == "emb"
    assert [(r.path, r.status) for r in fresh.requests] == [
        ("/v1/embeddings", 500),
        ("/v1/embeddings", 200),
    ]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"model": "emb", "input": []}, 400, "invalid_value"),
        ({"model": "emb", "input": ""}, 400, "invalid_value"),
        ({"model": "emb", "input": [[]]}, 400, "invalid_value"),
        ({"model": "emb", "input": "x", "encoding_format": "hex"}, 400, "invalid_value"),
        ({"model": "emb", "input": "x", "dimensions": 0}, 400, "invalid_value"),
        ({"model": "emb"}, 400, "invalid_value"),
        ({"input": "x"}, 400, "missing_model"),
        ({"model": "nope", "input": "x"}, 404, "model_not_found"),
    ],
)
def test_bad_bodies_are_refused_before_the_provider(
    served: tuple[Fleet, str], fresh: LLMStandIn, body: dict[str, object], status: int, code: str
) -> None:
    fleet, key = served
    with fleet.client(key) as client:
        refused = client.post("/v1/embeddings", json=body)
    assert refused.status_code == status, refused.text
    assert refused.json()["error"]["code"] == code
    assert fresh.requests == []


def test_without_a_key_it_is_401(served: tuple[Fleet, str], fresh: LLMStandIn) -> None:
    fleet, _ = served
    refused = httpx.post(f"{fleet.url}/v1/embeddings", json={"model": "emb", "input": "x"})
    assert refused.status_code == 401 and fresh.requests == []


def test_the_azure_key_never_reaches_an_answer_or_the_log(
    served: tuple[Fleet, str], fresh: LLMStandIn
) -> None:
    fleet, key = served
    fresh.api_key = "sk-rotated-elsewhere"  # the stand-in now refuses, repeating the key sent
    with fleet.client(key) as client:
        answers = [
            client.post("/v1/embeddings", json={"model": "azure-emb", "input": "x"}),
            client.post(
                "/v1/chat/completions",
                json={"model": "azure-chat", "messages": [{"role": "user", "content": "hi"}]},
            ),
        ]
    assert [answer.status_code for answer in answers] == [502, 502]
    assert all("upstream authentication failed" in a.json()["error"]["message"] for a in answers)
    assert [seen.headers["api-key"] for seen in fresh.requests] == [STANDIN_KEY] * 2
    for answer in answers:  # the stand-in repeated the key it was sent: masked
        assert STANDIN_KEY not in answer.text and f"provided: {MASK}" in answer.text
    log = fleet.output()
    assert '"level": "debug"' in log and "POST /v1/embeddings 502" in log
    assert STANDIN_KEY not in log


def test_azures_content_filter_is_the_callers_400(
    served: tuple[Fleet, str], fresh: LLMStandIn
) -> None:
    fleet, key = served
    fresh.mode = "content_filter"
    chat = {"model": "azure-chat", "messages": [{"role": "user", "content": "hi"}]}
    with fleet.client(key) as client:
        refused = [client.post("/v1/chat/completions", json=chat) for _ in range(2)]
        fresh.mode = "ok"
        answered = client.post("/v1/chat/completions", json=chat)
    for answer in refused:
        assert answer.status_code == 400
        error = answer.json()["error"]
        assert error["code"] == "upstream_rejected" and "content filter" in error["message"]
    assert answered.status_code == 200 and answered.json()["model"] == "azure-chat"


def test_refusals_as_chats(served: tuple[Fleet, str], fresh: LLMStandIn) -> None:
    fleet, key = served
    narrow = fleet.new_key("narrow-key", "--tier", "narrow")
    with fleet.client(narrow) as client:
        forbidden = client.post("/v1/embeddings", json={"model": "emb", "input": "x"})
        allowed = client.post("/v1/embeddings", json={"model": "gpt", "input": "x"})
        denied = client.post("/v1/embeddings", json={"model": "gpt", "input": "x"})
    with fleet.client(key) as client:  # a bound above the token rule's whole limit
        too_large = client.post(
            "/v1/embeddings", json={"model": "emb", "input": "a" * (TOKENS + 1)}
        )
    assert forbidden.status_code == 403
    assert forbidden.json()["error"]["code"] == "model_not_allowed"
    assert allowed.status_code == 200 and allowed.json()["model"] == "gpt"
    assert denied.status_code == 429 and denied.json()["error"]["code"] == "rate_limit_exceeded"
    assert int(denied.headers["retry-after"]) > 0
    assert too_large.status_code == 413 and "retry-after" not in too_large.headers
    assert too_large.json()["error"]["code"] == "request_too_large"
    assert len(fresh.requests) == 1  # the one allowed
