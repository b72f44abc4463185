"""Self-test of tests.support.llm_standin: the official openai and anthropic clients against it."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest

from tests.support.llm_standin import LLMStandIn, prompt_tokens, reply_text

KEY = "sk-standin-test"
MESSAGES = [{"role": "user", "content": "one two three"}]
GPT, CLAUDE = "gpt-4o-mini", "claude-3-5-haiku-latest"


@pytest.fixture
def llm() -> Iterator[LLMStandIn]:
    with LLMStandIn(api_key=KEY, reply_tokens=8) as standin:
        yield standin


@pytest.fixture
def oai(llm: LLMStandIn) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=llm.openai_base_url, api_key=KEY, max_retries=0) as client:
        yield client


@pytest.fixture
def claude(llm: LLMStandIn) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=llm.url, api_key=KEY, max_retries=0) as client:
        yield client


def test_the_reply_and_the_prompt_are_counted_in_words() -> None:
    assert reply_text(3) == "lorem ipsum dolor"
    assert len(reply_text(30).split()) == 30
    assert prompt_tokens([{"content": "a b"}, {"content": [{"type": "text", "text": "c"}]}]) == 3
    assert prompt_tokens([{"content": "a"}], system="be brief") == 3


# ---------------------------------------------------------------------- OpenAI


def test_openai_completion_with_usage(llm: LLMStandIn, oai: openai.OpenAI) -> None:
    done = oai.chat.completions.create(model=GPT, messages=MESSAGES, user="alice")
    assert done.choices[0].message.content == reply_text(8)
    assert done.choices[0].finish_reason == "stop"
    assert done.model == GPT
    assert done.usage is not None
    assert (done.usage.prompt_tokens, done.usage.completion_tokens) == (3, 8)
    assert done.usage.total_tokens == 11
    [seen] = llm.requests
    assert (seen.path, seen.api, seen.model, seen.stream, seen.api_key) == (
        "/v1/chat/completions",
        "openai",
        GPT,
        False,
        KEY,
    )
    assert (seen.status, seen.prompt_tokens, seen.completion_tokens) == (200, 3, 8)
    assert seen.body["user"] == "alice"


def test_openai_max_tokens_and_stop_cut_the_reply(oai: openai.OpenAI) -> None:
    cut = oai.chat.completions.create(model=GPT, messages=MESSAGES, max_tokens=3)
    assert (cut.choices[0].message.content, cut.choices[0].finish_reason) == (
        "lorem ipsum dolor",
        "length",
    )
    assert cut.usage is not None and cut.usage.completion_tokens == 3
    stopped = oai.chat.completions.create(model=GPT, messages=MESSAGES, stop=["amet", "sit"])
    assert stopped.choices[0].message.content == "lorem ipsum dolor "
    assert stopped.choices[0].finish_reason == "stop"
    assert stopped.usage is not None and stopped.usage.completion_tokens == 3


def test_openai_stream_ends_with_usage_when_asked(llm: LLMStandIn, oai: openai.OpenAI) -> None:
    chunks = list(
        oai.chat.completions.create(
            model=GPT,
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == reply_text(8)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (3, 8)
    assert all(c.usage is None for c in chunks[:-1])
    assert llm.requests[-1].stream is True


def test_openai_stream_has_no_usage_unless_asked(oai: openai.OpenAI) -> None:
    chunks = list(oai.chat.completions.create(model=GPT, messages=MESSAGES, stream=True))
    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)


def test_openai_models(oai: openai.OpenAI) -> None:
    assert [m.id for m in oai.models.list()] == [GPT, CLAUDE]


# ---------------------------------------------------------------------- Anthropic


def test_anthropic_message_with_usage(llm: LLMStandIn, claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(
        model=CLAUDE, max_tokens=5, system="be brief", messages=MESSAGES
    )
    assert message.content[0].type == "text"
    assert message.content[0].text == reply_text(5)
    assert message.stop_reason == "max_tokens"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (5, 5)
    [seen] = llm.requests
    assert (seen.path, seen.api, seen.api_key, seen.stream) == (
        "/v1/messages",
        "anthropic",
        KEY,
        False,
    )
    assert seen.headers["anthropic-version"]
    assert seen.body["system"] == "be brief"


def test_anthropic_stream_events_and_usage(llm: LLMStandIn, claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(
        model=CLAUDE, max_tokens=100, messages=MESSAGES, stop_sequences=["sit"]
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert {"content_block_start", "content_block_delta", "content_block_stop"} <= set(kinds)
    assert "message_delta" in kinds
    assert final.content[0].type == "text" and final.content[0].text == "lorem ipsum dolor "
    assert (final.stop_reason, final.stop_sequence) == ("stop_sequence", "sit")
    assert (final.usage.input_tokens, final.usage.output_tokens) == (3, 3)
    assert llm.requests[-1].stream is True


def test_anthropic_requires_its_version_header_and_max_tokens(llm: LLMStandIn) -> None:
    body = {"model": CLAUDE, "messages": MESSAGES, "max_tokens": 5}
    headers = {"x-api-key": KEY}
    with httpx.Client(base_url=llm.url) as raw:
        assert raw.post("/v1/messages", json=body, headers=headers).status_code == 400
        headers["anthropic-version"] = "2023-06-01"
        assert raw.post("/v1/messages", json=body, headers=headers).status_code == 200
        refused = raw.post("/v1/messages", json={**body, "max_tokens": None}, headers=headers)
    assert refused.status_code == 400
    assert refused.json()["error"]["type"] == "invalid_request_error"


# ---------------------------------------------------------------------- faults, both APIs


def _call_openai(llm: LLMStandIn, key: str = KEY, timeout: float = 5.0) -> object:
    with openai.OpenAI(
        base_url=llm.openai_base_url, api_key=key, max_retries=0, timeout=timeout
    ) as client:
        return client.chat.completions.create(model=GPT, messages=MESSAGES)


def _call_anthropic(llm: LLMStandIn, key: str = KEY, timeout: float = 5.0) -> object:
    with anthropic.Anthropic(base_url=llm.url, api_key=key, max_retries=0, timeout=timeout) as c:
        return c.messages.create(model=CLAUDE, max_tokens=5, messages=MESSAGES)


CALLS = [
    pytest.param(_call_openai, openai, id="openai"),
    pytest.param(_call_anthropic, anthropic, id="anthropic"),
]


@pytest.mark.parametrize(("call", "sdk"), CALLS)
def test_error_modes(llm: LLMStandIn, call, sdk) -> None:
    llm.mode = "error500"
    with pytest.raises(sdk.InternalServerError):
        call(llm)
    llm.mode = "error400"
    with pytest.raises(sdk.BadRequestError):
        call(llm)
    llm.retry_after = 2.5
    llm.mode = "error429"
    with pytest.raises(sdk.RateLimitError) as limited:
        call(llm)
    assert limited.value.response.headers["retry-after"] == "3"
    assert limited.value.response.headers["retry-after-ms"] == "2500"
    llm.mode = "ok"
    call(llm)
    assert [r.status for r in llm.requests] == [500, 400, 429, 200]


@pytest.mark.parametrize(("call", "sdk"), CALLS)
def test_a_rotated_key_refuses_the_old_one(llm: LLMStandIn, call, sdk) -> None:
    llm.api_key = "sk-rotated"
    with pytest.raises(sdk.AuthenticationError):
        call(llm, key=KEY)
    call(llm, key="sk-rotated")
    assert [(r.api_key, r.status) for r in llm.requests] == [(KEY, 401), ("sk-rotated", 200)]


@pytest.mark.parametrize(("call", "sdk"), CALLS)
def test_hang_holds_the_request_until_the_client_gives_up(llm: LLMStandIn, call, sdk) -> None:
    llm.mode = "hang"
    timeout = 0.3
    start = time.monotonic()
    with pytest.raises(sdk.APITimeoutError):
        call(llm, timeout=timeout)
    assert time.monotonic() - start >= timeout
    assert llm.requests[-1].status is None


def test_a_hanging_request_is_dropped_when_woken_or_stopped(llm: LLMStandIn) -> None:
    llm.mode = "hang"
    errors: list[BaseException] = []

    def caller() -> None:
        try:
            _call_openai(llm, timeout=30)
        except openai.APIConnectionError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=caller) for _ in range(2)]
    for thread in threads:
        thread.start()
    llm.wait_for_requests(2)
    llm.wake()
    for thread in threads:
        thread.join(timeout=10)
    assert len(errors) == 2, "both hanging requests were dropped, neither waited for its timeout"

    thread = threading.Thread(target=caller)
    thread.start()
    llm.wait_for_requests(3)
    llm.stop()
    thread.join(timeout=10)
    assert len(errors) == 3


# The anthropic SDK lets its transport's error through when a stream breaks midway.
BROKEN_STREAM = "incomplete chunked read"


def test_fail_mid_stream_drops_the_connection_after_some_chunks(
    llm: LLMStandIn, oai: openai.OpenAI, claude: anthropic.Anthropic
) -> None:
    llm.mode = "fail_mid_stream"
    llm.fail_after_chunks = 2
    received: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in oai.chat.completions.create(model=GPT, messages=MESSAGES, stream=True):
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "lorem ipsum"

    deltas: list[str] = []
    with (
        pytest.raises(Exception, match=BROKEN_STREAM),
        claude.messages.stream(model=CLAUDE, max_tokens=50, messages=MESSAGES) as stream,
    ):
        deltas.extend(stream.text_stream)
    assert "".join(deltas) == "lorem ipsum"

    with pytest.raises(openai.APIConnectionError):  # a plain answer is cut halfway
        oai.chat.completions.create(model=GPT, messages=MESSAGES)
    assert [r.status for r in llm.requests] == [200, 200, 200]


def test_stop_is_gone_and_start_comes_back_on_the_same_url(llm: LLMStandIn) -> None:
    url = llm.url
    llm.stop()
    with pytest.raises(openai.APIConnectionError):
        _call_openai(llm)
    llm.start()
    assert llm.url == url
    _call_openai(llm)


def test_delay_holds_each_answer(llm: LLMStandIn) -> None:
    llm.delay = 0.2
    start = time.monotonic()
    _call_openai(llm)
    assert time.monotonic() - start >= 0.2


async def test_many_requests_are_served_at_once_over_reused_connections(llm: LLMStandIn) -> None:
    """Every request is in the stand-in before the first one is answered: it serves them
    concurrently; a pooled client's connections are reused for the next round."""
    llm.delay = 60.0
    count = 40
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    headers = {"Authorization": f"Bearer {KEY}"}
    body = {"model": GPT, "messages": MESSAGES}
    async with httpx.AsyncClient(base_url=llm.openai_base_url, limits=limits) as client:
        calls = [client.post("/chat/completions", json=body, headers=headers) for _ in range(count)]
        pending = asyncio.gather(*calls)
        await asyncio.to_thread(llm.wait_for_requests, count, 10.0)
        llm.delay = 0.0
        llm.wake()
        answers = await pending
        assert all(a.status_code == 200 for a in answers)
        assert llm.connections == count
        await asyncio.gather(
            *(client.post("/chat/completions", json=body, headers=headers) for _ in range(count))
        )
    assert llm.connections == count
    assert len(llm.requests) == 2 * count


async def test_calls_in_flight_are_counted_per_user_and_read_over_http(llm: LLMStandIn) -> None:
    """While answers are held, ``GET /_stats`` shows the calls in flight, in all and per
    ``user``; once answered none is, and the most at once stays until a reset."""
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=llm.url) as client:
        configured = await client.post("/_config", json={"delay": 60.0})
        assert configured.status_code == 200
        assert llm.delay == 60.0
        users = ["team-a", "team-a", "team-a", "team-b"]
        calls = [
            client.post(
                "/v1/chat/completions",
                json={"model": GPT, "messages": MESSAGES, "user": user},
                headers=headers,
                timeout=30,
            )
            for user in users
        ]
        pending = asyncio.gather(*calls)
        await asyncio.to_thread(llm.wait_for_requests, len(users), 10.0)
        held = (await client.get("/_stats")).json()
        assert held["in_flight"] == held["max_in_flight"] == 4
        assert held["by_user"]["team-a"] == {"in_flight": 3, "max_in_flight": 3}
        assert held["by_user"]["team-b"] == {"in_flight": 1, "max_in_flight": 1}
        llm.delay = 0.0
        llm.wake()
        assert all(answer.status_code == 200 for answer in await pending)
        after = (await client.get("/_stats")).json()
        assert after["in_flight"] == 0 and after["max_in_flight"] == 4
        assert llm.max_in_flight("team-a") == 3
        await client.post("/_stats/reset")
        assert (await client.get("/_stats")).json()["max_in_flight"] == 0


async def test_each_upstream_model_has_its_own_faults_and_counts_set_over_http(
    llm: LLMStandIn,
) -> None:
    """``POST /_config`` with ``models`` gives one model its own mode and pending failures,
    the others keep the stand-in's; ``GET /_stats`` counts each model's calls."""
    headers = {"Authorization": f"Bearer {KEY}"}

    async def ask(client: httpx.AsyncClient, model: str) -> int:
        body = {"model": model, "messages": MESSAGES}
        answered = await client.post("/v1/chat/completions", json=body, headers=headers)
        return answered.status_code

    async with httpx.AsyncClient(base_url=llm.url, timeout=10) as client:
        config = {"models": {"east": {"fail_next": 2}, "west": {"mode": "error429"}}}
        assert (await client.post("/_config", json=config)).status_code == 200
        assert [await ask(client, "east") for _ in range(3)] == [500, 500, 200]
        assert [await ask(client, "west") for _ in range(2)] == [429, 429]
        assert await ask(client, "north") == 200
        stats = (await client.get("/_stats")).json()
    assert {m: c["calls"] for m, c in stats["by_model"].items()} == {
        "east": 3, "west": 2, "north": 1,
    }  # fmt: skip
    assert [r.model for r in llm.requests][-1] == "north" and llm.model_calls("east") == 3
    llm.clear_models()
    llm.reset()
    assert llm.model_calls("east") == 0 and llm.stats()["by_model"]["east"]["calls"] == 0
