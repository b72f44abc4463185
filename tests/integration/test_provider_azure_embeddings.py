"""The Azure OpenAI adapter and embeddings on every kind, against the LLM stand-in over real
HTTP: Azure's paths, ``api-key`` and ``api-version``, its refusals in the error tree; the
embeddings of the OpenAI-compatible and Azure kinds; Anthropic's refusal of embeddings."""

from __future__ import annotations

import base64
import contextlib
import struct
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from revoctl.core.gateway.settings import ProviderConfig, ProviderKind
from revoctl.runtime.providers import (
    AzureOpenAIProvider,
    Provider,
    ProviderRateLimitError,
    ProviderRequestError,
    ProviderUnavailableError,
    embedding_usage_of,
    provider_for,
    usage_of,
)
from tests.support.llm_standin import LLMStandIn, embedding_vector, reply_text

KEY = "sk-azure-canary-" + "a" * 12
MESSAGES = [{"role": "user", "content": "one two three"}]


@pytest.fixture
def llm() -> Iterator[LLMStandIn]:
    with LLMStandIn(api_key=KEY, reply_tokens=8) as standin:
        yield standin


@contextlib.asynccontextmanager
async def open_provider(
    llm: LLMStandIn, kind: ProviderKind, **settings: Any
) -> AsyncIterator[Provider]:
    base_url = {ProviderKind.OPENAI: llm.openai_base_url}.get(kind, llm.url + "/")
    config = ProviderConfig(kind=kind, **{"base_url": base_url, "timeout": 5.0, **settings})

    async def key() -> str:
        return KEY

    provider = provider_for(config, name=f"test_{kind}", api_key=key, default_max_tokens=64)
    try:
        yield provider
    finally:
        await provider.close()


async def test_azure_calls_the_deployment_with_api_key_and_api_version(llm: LLMStandIn) -> None:
    version = "2025-01-01-preview"
    async with open_provider(llm, ProviderKind.AZURE_OPENAI, api_version=version) as azure:
        assert isinstance(azure, AzureOpenAIProvider)
        done = await azure.complete({"messages": MESSAGES}, "my deployment")
        async with contextlib.aclosing(azure.stream({"messages": MESSAGES}, "prod-4o")) as chunks:
            streamed = [chunk async for chunk in chunks]
    assert done["choices"][0]["message"]["content"] == reply_text(8)
    assert usage_of(done) == {"prompt_tokens": 3, "completion_tokens": 8, "total_tokens": 11}
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in streamed if c["choices"])
    assert text == reply_text(8) and usage_of(streamed[-1]) is not None
    whole, stream = llm.requests
    assert whole.path == "/openai/deployments/my%20deployment/chat/completions"
    assert stream.path == "/openai/deployments/prod-4o/chat/completions"
    for seen in (whole, stream):
        assert seen.api == "azure" and seen.status == 200
        assert seen.query == {"api-version": version}
        assert seen.headers["api-key"] == KEY and "authorization" not in seen.headers
    assert whole.model == "my deployment"


async def test_azure_sends_the_default_api_version(llm: LLMStandIn) -> None:
    async with open_provider(llm, ProviderKind.AZURE_OPENAI) as azure:
        await azure.complete({"messages": MESSAGES}, "prod")
    assert llm.requests[0].query == {"api-version": "2024-10-21"}


async def test_azures_refusals_map_onto_the_error_tree(llm: LLMStandIn) -> None:
    async with open_provider(llm, ProviderKind.AZURE_OPENAI) as azure:
        llm.mode = "content_filter"
        with pytest.raises(ProviderRequestError, match="content filter refused") as filtered:
            await azure.complete({"messages": MESSAGES}, "prod")
        llm.mode = "error429"
        with pytest.raises(ProviderRateLimitError) as limited:
            await azure.complete({"messages": MESSAGES}, "prod")
        llm.mode = "ok"
        llm.api_key = "sk-rotated"
        with pytest.raises(ProviderUnavailableError) as refused:
            await azure.embed({"input": "hi"}, "prod")
    assert filtered.value.status == 400 and filtered.value.caller_fault
    assert "content management policy" in str(filtered.value)
    assert limited.value.retry_after == 1.0 and limited.value.retryable
    assert refused.value.status == 401 and refused.value.retryable
    assert KEY not in str(refused.value)  # the stand-in repeats the key it was sent


def test_the_stand_in_wants_azures_key_header_and_api_version(llm: LLMStandIn) -> None:
    path = llm.url + "/openai/deployments/prod/chat/completions"
    body = {"messages": MESSAGES}
    with httpx.Client() as client:
        bearer_only = client.post(
            path + "?api-version=2024-10-21", json=body, headers={"authorization": f"Bearer {KEY}"}
        )
        no_version = client.post(path, json=body, headers={"api-key": KEY})
    assert bearer_only.status_code == 401
    assert no_version.status_code == 404


@pytest.mark.parametrize("kind", [ProviderKind.OPENAI, ProviderKind.AZURE_OPENAI])
async def test_embeddings_pass_through_with_usage(llm: LLMStandIn, kind: ProviderKind) -> None:
    async with open_provider(llm, kind) as provider:
        floats = await provider.embed({"input": ["one two", "three"], "dimensions": 4}, "emb")
        packed = await provider.embed(
            {"input": [[1, 2, 3]], "encoding_format": "base64", "user": "u"}, "emb"
        )
    assert [item["embedding"] for item in floats["data"]] == [
        embedding_vector("one two", 4),
        embedding_vector("three", 4),
    ]
    assert embedding_usage_of(floats) == {
        "prompt_tokens": 3,
        "completion_tokens": 0,
        "total_tokens": 3,
    }
    raw = base64.b64decode(packed["data"][0]["embedding"])
    expected = embedding_vector([1, 2, 3], 8)
    assert struct.unpack("<8f", raw) == pytest.approx(expected, abs=1e-6)
    assert embedding_usage_of(packed) == {
        "prompt_tokens": 3,
        "completion_tokens": 0,
        "total_tokens": 3,
    }
    first = llm.requests[0]
    assert first.body["input"] == ["one two", "three"] and first.body["model"] == "emb"
    assert first.path.endswith("/embeddings")


async def test_anthropic_has_no_embeddings(llm: LLMStandIn) -> None:
    async with open_provider(llm, ProviderKind.ANTHROPIC) as claude:
        with pytest.raises(ProviderRequestError, match="no embeddings") as refused:
            await claude.embed({"input": "hi"}, "claude")
    assert refused.value.status == 400 and llm.requests == []


def test_embedding_usage_needs_prompt_tokens() -> None:
    assert embedding_usage_of({"usage": {"total_tokens": 3}}) is None
    assert embedding_usage_of({"usage": {"prompt_tokens": True}}) is None
    assert embedding_usage_of({}) is None
