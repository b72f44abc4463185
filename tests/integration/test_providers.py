"""The provider adapters against the LLM stand-in, over real HTTP: answers, streams, usage,
every error class, translation for Anthropic, the key (sent, rotated, never shown), the pool."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from revoctl.core.errors import NotFoundError
from revoctl.core.gateway.settings import ProviderConfig, ProviderKind
from revoctl.core.redaction import MASK, redact
from revoctl.runtime.providers import (
    ChatChunk,
    Provider,
    ProviderError,
    ProviderRateLimitError,
    ProviderRequestError,
    ProviderStreamError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    api_key_from,
    provider_for,
    usage_of,
)
from tests.support.llm_standin import LLMStandIn, reply_text

KEY = "sk-providers-" + "k" * 16
MESSAGES = [{"role": "user", "content": "one two three"}]
KINDS = [ProviderKind.OPENAI, ProviderKind.ANTHROPIC]
UPSTREAM = {ProviderKind.OPENAI: "gpt-upstream", ProviderKind.ANTHROPIC: "claude-upstream"}


class Key:
    """The gateway's key source, as a test can change it; counts its reads."""

    def __init__(self, value: str) -> None:
        self.value = value
        self.reads = 0

    async def __call__(self) -> str:
        self.reads += 1
        return self.value


@pytest.fixture
def llm() -> Iterator[LLMStandIn]:
    with LLMStandIn(api_key=KEY, reply_tokens=8) as standin:
        yield standin


def config_for(llm: LLMStandIn, kind: ProviderKind, **settings: Any) -> ProviderConfig:
    base_url = llm.openai_base_url if kind is ProviderKind.OPENAI else llm.url
    return ProviderConfig(kind=kind, **{"base_url": base_url, "timeout": 5.0, **settings})


@contextlib.asynccontextmanager
async def open_provider(
    llm: LLMStandIn, kind: ProviderKind, key: Key | None = None, **settings: Any
) -> AsyncIterator[Provider]:
    default_max_tokens = settings.pop("default_max_tokens", 1024)
    provider = provider_for(
        config_for(llm, kind, **settings),
        name=f"test_{kind}",
        api_key=key or Key(KEY),
        default_max_tokens=default_max_tokens,
    )
    try:
        yield provider
    finally:
        await provider.close()


async def collect(
    provider: Provider, request: dict[str, Any], kind: ProviderKind
) -> list[ChatChunk]:
    async with contextlib.aclosing(provider.stream(request, UPSTREAM[kind])) as chunks:
        return [chunk async for chunk in chunks]


def text_of(chunks: list[ChatChunk]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


# ---------------------------------------------------------------------- answers and usage


@pytest.mark.parametrize("kind", KINDS)
async def test_complete_answers_in_openai_format_with_usage(
    llm: LLMStandIn, kind: ProviderKind
) -> None:
    async with open_provider(llm, kind) as provider:
        done = await provider.complete({"model": "ours", "messages": MESSAGES}, UPSTREAM[kind])
    assert done["object"] == "chat.completion"
    assert done["model"] == UPSTREAM[kind]
    [choice] = done["choices"]
    assert choice["message"] == {**choice["message"], "role": "assistant", "content": reply_text(8)}
    assert choice["finish_reason"] == "stop"
    assert usage_of(done) == {"prompt_tokens": 3, "completion_tokens": 8, "total_tokens": 11}
    [seen] = llm.requests
    assert (seen.model, seen.stream, seen.api_key, seen.status) == (UPSTREAM[kind], False, KEY, 200)


@pytest.mark.parametrize("kind", KINDS)
async def test_max_tokens_cuts_the_answer_with_finish_length(
    llm: LLMStandIn, kind: ProviderKind
) -> None:
    request = {"messages": MESSAGES, "max_tokens": 3}
    async with open_provider(llm, kind) as provider:
        done = await provider.complete(request, UPSTREAM[kind])
        chunks = await collect(provider, request, kind)
    assert done["choices"][0]["finish_reason"] == "length"
    assert done["choices"][0]["message"]["content"] == reply_text(3)
    assert text_of(chunks) == reply_text(3)
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "length"
    assert (
        usage_of(done)
        == usage_of(chunks[-1])
        == {
            "prompt_tokens": 3,
            "completion_tokens": 3,
            "total_tokens": 6,
        }
    )


@pytest.mark.parametrize("kind", KINDS)
async def test_stream_gives_openai_chunks_and_ends_with_usage(
    llm: LLMStandIn, kind: ProviderKind
) -> None:
    async with open_provider(llm, kind) as provider:
        chunks = await collect(provider, {"messages": MESSAGES, "stream": False}, kind)
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert text_of(chunks) == reply_text(8)
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    last = chunks[-1]
    assert last["choices"] == []
    assert usage_of(last) == {"prompt_tokens": 3, "completion_tokens": 8, "total_tokens": 11}
    assert [usage_of(c) for c in chunks[:-1]] == [None] * (len(chunks) - 1)
    [seen] = llm.requests
    assert seen.stream is True and seen.model == UPSTREAM[kind]


async def test_openai_passes_the_request_through_and_asks_streams_for_usage(
    llm: LLMStandIn,
) -> None:
    request = {
        "model": "ours",
        "messages": MESSAGES,
        "seed": 7,
        "response_format": {"type": "text"},
        "stream_options": {"include_usage": False},
    }
    async with open_provider(llm, ProviderKind.OPENAI) as provider:
        await provider.complete(request, "gpt-upstream")
        await collect(provider, request, ProviderKind.OPENAI)
    plain, streamed = (r.body for r in llm.requests)
    assert plain == {
        "model": "gpt-upstream",
        "messages": MESSAGES,
        "seed": 7,
        "response_format": {"type": "text"},
        "stream": False,
    }
    assert streamed["stream"] is True
    assert streamed["stream_options"] == {"include_usage": True}
    assert llm.requests[0].headers["authorization"] == f"Bearer {KEY}"


# ---------------------------------------------------------------------- Anthropic translation


async def test_anthropic_translates_the_request(llm: LLMStandIn) -> None:
    request = {
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "developer", "content": [{"type": "text", "text": "and kind"}]},
            {"role": "user", "content": "one two"},
            {"role": "assistant", "content": "three"},
            {"role": "user", "content": [{"type": "text", "text": "four"}]},
        ],
        "temperature": 0.3,
        "stop": "sit",
        "user": "alice",
        "seed": 1,
    }
    async with open_provider(llm, ProviderKind.ANTHROPIC, default_max_tokens=7) as provider:
        done = await provider.complete(request, "claude-upstream")
    [seen] = llm.requests
    assert seen.path == "/v1/messages"
    assert seen.headers["x-api-key"] == KEY
    assert seen.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in seen.headers
    assert seen.body == {
        "model": "claude-upstream",
        "system": "be brief\n\nand kind",
        "messages": [
            {"role": "user", "content": "one two"},
            {"role": "assistant", "content": "three"},
            {"role": "user", "content": [{"type": "text", "text": "four"}]},
        ],
        "max_tokens": 7,
        "temperature": 0.3,
        "stop_sequences": ["sit"],
        "metadata": {"user_id": "alice"},
    }
    assert done["choices"][0]["message"]["content"] == "lorem ipsum dolor "
    assert done["choices"][0]["finish_reason"] == "stop"
    # prompt: "be brief" + "and kind" + four words of turns; the reply stops before "sit"
    assert usage_of(done) == {"prompt_tokens": 8, "completion_tokens": 3, "total_tokens": 11}


async def test_anthropic_default_max_tokens_caps_the_stream(llm: LLMStandIn) -> None:
    async with open_provider(llm, ProviderKind.ANTHROPIC, default_max_tokens=5) as provider:
        chunks = await collect(provider, {"messages": MESSAGES}, ProviderKind.ANTHROPIC)
    assert llm.requests[0].body["max_tokens"] == 5
    assert text_of(chunks) == reply_text(5)
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "length"
    assert usage_of(chunks[-1]) == {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}


async def test_anthropic_takes_a_base_url_with_or_without_v1(llm: LLMStandIn) -> None:
    async with open_provider(llm, ProviderKind.ANTHROPIC, base_url=llm.url + "/v1") as provider:
        await provider.complete({"messages": MESSAGES}, "claude-upstream")
    assert llm.requests[0].path == "/v1/messages"


async def test_anthropic_refuses_what_it_cannot_translate_without_calling(llm: LLMStandIn) -> None:
    async with open_provider(llm, ProviderKind.ANTHROPIC) as provider:
        with pytest.raises(ProviderRequestError, match="response_format") as refused:
            await provider.complete(
                {"messages": MESSAGES, "response_format": {"type": "json_object"}},
                "claude-upstream",
            )
        with pytest.raises(ProviderRequestError, match="tool_call_id"):
            await collect(
                provider, {"messages": [{"role": "tool", "content": "x"}]}, ProviderKind.ANTHROPIC
            )
    assert refused.value.caller_fault and not refused.value.retryable
    assert llm.requests == []


# ---------------------------------------------------------------------- errors


async def call(provider: Provider, kind: ProviderKind, streaming: bool) -> object:
    if streaming:
        return await collect(provider, {"messages": MESSAGES}, kind)
    return await provider.complete({"messages": MESSAGES}, UPSTREAM[kind])


BOTH_WAYS = [
    pytest.param(kind, streaming, id=f"{kind}-{'stream' if streaming else 'complete'}")
    for kind in KINDS
    for streaming in (False, True)
]


@pytest.mark.parametrize(("kind", "streaming"), BOTH_WAYS)
async def test_each_upstream_failure_has_its_class(
    llm: LLMStandIn, kind: ProviderKind, streaming: bool
) -> None:
    llm.retry_after = 2.5
    expected: list[tuple[str, type[ProviderError], int, bool, bool, float | None]] = [
        ("error500", ProviderUnavailableError, 500, True, False, None),
        ("error429", ProviderRateLimitError, 429, True, False, 2.5),
        ("error400", ProviderRequestError, 400, False, True, None),
    ]
    async with open_provider(llm, kind) as provider:
        for mode, cls, status, retryable, caller_fault, retry_after in expected:
            llm.mode = mode
            with pytest.raises(cls) as failed:
                await call(provider, kind, streaming)
            error = failed.value
            assert type(error) is cls, mode
            assert (error.status, error.retryable, error.caller_fault) == (
                status,
                retryable,
                caller_fault,
            )
            assert error.retry_after == retry_after
            assert f"test_{kind}: upstream answered {status}" in str(error)
            assert f"{mode} mode" in str(error), "the upstream's own message is kept"
        llm.api_key = (
            "sk-someone-else"  # our key is refused: the provider's fault, not the caller's
        )
        llm.mode = "ok"
        with pytest.raises(ProviderUnavailableError) as refused:
            await call(provider, kind, streaming)
        assert (refused.value.status, refused.value.retryable) == (401, True)


@pytest.mark.parametrize(("kind", "streaming"), BOTH_WAYS)
async def test_a_provider_that_is_gone_is_unavailable(
    llm: LLMStandIn, kind: ProviderKind, streaming: bool
) -> None:
    async with open_provider(llm, kind) as provider:
        llm.stop()
        with pytest.raises(ProviderUnavailableError) as gone:
            await call(provider, kind, streaming)
    assert gone.value.status is None and gone.value.retryable
    assert "Cannot connect" in str(gone.value)


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "streaming"), BOTH_WAYS)
async def test_a_hanging_upstream_times_out_within_the_configured_timeout(
    llm: LLMStandIn, kind: ProviderKind, streaming: bool
) -> None:
    timeout = 0.5
    llm.mode = "hang"
    async with open_provider(llm, kind, timeout=timeout) as provider:
        start = time.monotonic()
        with pytest.raises(ProviderTimeoutError) as hung:
            await call(provider, kind, streaming)
        elapsed = time.monotonic() - start
    assert timeout * 0.9 <= elapsed < timeout * 2, elapsed
    assert hung.value.retryable and hung.value.status is None
    assert f"no answer within {timeout:g}s" in str(hung.value)


@pytest.mark.parametrize("kind", KINDS)
async def test_a_stream_that_breaks_after_its_first_chunk_is_not_retryable(
    llm: LLMStandIn, kind: ProviderKind
) -> None:
    llm.mode = "fail_mid_stream"
    llm.fail_after_chunks = 2
    received: list[ChatChunk] = []
    async with open_provider(llm, kind) as provider:
        with pytest.raises(ProviderStreamError) as broken:
            async with contextlib.aclosing(
                provider.stream({"messages": MESSAGES}, UPSTREAM[kind])
            ) as chunks:
                async for chunk in chunks:
                    received.append(chunk)
        assert text_of(received) == "lorem ipsum"
        assert not broken.value.retryable and not broken.value.caller_fault
        assert isinstance(broken.value.__cause__, ProviderUnavailableError)
        # A plain answer cut halfway is an ordinary failure: another model may answer.
        with pytest.raises(ProviderUnavailableError) as cut:
            await provider.complete({"messages": MESSAGES}, UPSTREAM[kind])
        assert type(cut.value) is ProviderUnavailableError
        llm.mode = "ok"
        await provider.complete({"messages": MESSAGES}, UPSTREAM[kind])


# ---------------------------------------------------------------------- the key


@pytest.mark.parametrize("kind", KINDS)
async def test_a_rotated_key_is_used_on_the_next_request(
    llm: LLMStandIn, kind: ProviderKind
) -> None:
    store = {"openai-api-key": KEY}
    reads: list[str] = []

    async def read_secret(name: str) -> str:
        reads.append(name)
        return store[name]

    key = api_key_from("${secret:openai-api-key}", read_secret)
    async with open_provider(llm, kind, key=key) as provider:
        await call(provider, kind, streaming=False)
        llm.api_key = "sk-rotated-" + "r" * 16  # the upstream moves first: the old key is refused
        with pytest.raises(ProviderUnavailableError):
            await call(provider, kind, streaming=True)
        store["openai-api-key"] = llm.api_key  # the secret is rotated: no restart
        await call(provider, kind, streaming=False)
        await call(provider, kind, streaming=True)
    assert [r.api_key for r in llm.requests] == [KEY, KEY, llm.api_key, llm.api_key]
    assert [r.status for r in llm.requests] == [200, 401, 200, 200]
    assert reads == ["openai-api-key"] * 4


async def test_a_key_that_cannot_be_read_makes_the_provider_unavailable(llm: LLMStandIn) -> None:
    async def missing(name: str) -> str:
        raise NotFoundError(f"secret {name!r} not found")

    key = api_key_from("${secret:gone}", missing)
    async with open_provider(llm, ProviderKind.OPENAI, key=key) as provider:
        with pytest.raises(ProviderUnavailableError, match="API key could not be read"):
            await provider.complete({"messages": MESSAGES}, "gpt-upstream")
    assert llm.requests == []


@pytest.mark.parametrize("kind", KINDS)
async def test_the_key_never_reaches_a_log_or_an_error(
    llm: LLMStandIn, kind: ProviderKind, caplog: pytest.LogCaptureFixture
) -> None:
    canary = "sk-canary-" + secrets.token_hex(12)
    llm.api_key = canary
    caplog.set_level(logging.DEBUG)  # every library's debug lines too
    errors: list[str] = []
    async with open_provider(llm, kind, key=Key(canary)) as provider:
        for streaming in (False, True):
            await call(provider, kind, streaming)
        llm.api_key = "sk-another-" + "a" * 16  # the stand-in's 401 repeats the key it was shown
        for streaming in (False, True):
            with pytest.raises(ProviderError) as refused:
                await call(provider, kind, streaming)
            errors += [str(refused.value), repr(refused.value)]
        errors.append(repr(provider))
    assert llm.requests[-1].api_key == canary and llm.requests[-1].status == 401
    assert logging.getLogger().isEnabledFor(logging.DEBUG), "debug logging was on"
    assert canary not in caplog.text
    assert all(canary not in text for text in errors), errors
    assert MASK in errors[0], "the upstream's message kept, the key in it masked"
    assert redact(canary) == MASK, "the adapter registered the key with the redactor"


async def test_the_key_is_read_for_every_request(llm: LLMStandIn) -> None:
    key = Key(KEY)
    async with open_provider(llm, ProviderKind.OPENAI, key=key) as provider:
        for _ in range(3):
            await provider.complete({"messages": MESSAGES}, "gpt-upstream")
    assert key.reads == 3


# ---------------------------------------------------------------------- the pool


@pytest.mark.parametrize("kind", KINDS)
async def test_one_pool_per_provider_reuses_its_connections(
    llm: LLMStandIn, kind: ProviderKind
) -> None:
    async with open_provider(llm, kind, max_connections=3) as provider:
        await asyncio.gather(*(call(provider, kind, streaming=n % 2 == 0) for n in range(12)))
        for n in range(6):
            await call(provider, kind, streaming=n % 2 == 0)
    assert len(llm.requests) == 18
    assert 1 <= llm.connections <= 3, llm.connections


async def test_closing_a_stream_early_frees_its_connection(llm: LLMStandIn) -> None:
    llm.reply_tokens = 200
    llm.chunk_delay = 0.01
    async with open_provider(llm, ProviderKind.OPENAI, max_connections=1, timeout=2.0) as provider:
        async with contextlib.aclosing(
            provider.stream({"messages": MESSAGES}, "gpt-upstream")
        ) as chunks:
            async for _ in chunks:
                break
        llm.chunk_delay = 0.0
        done = await provider.complete({"messages": MESSAGES}, "gpt-upstream")
    assert usage_of(done) is not None
