"""Which requests the response cache takes, and how it compares them (no server needed)."""

from __future__ import annotations

import pytest

from revoctl.runtime.response_cache import cache_key, cacheable, normalized

BODY = {"model": "gpt", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10}


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"temperature": 0}, True),
        ({"temperature": 0.0}, True),
        ({"temperature": 0.7}, False),
        ({}, False),  # the default temperature is 1
        ({"temperature": False}, False),  # not a number
        ({"temperature": 0.7, "metadata": {"cache": True}}, True),
        ({"temperature": 0.7, "metadata": {"cache": "true"}}, True),  # OpenAI's: strings
        ({"temperature": 0.7, "metadata": {"cache": "yes"}}, False),
        ({"temperature": 0.7, "metadata": {"cache": False}}, False),
        ({"temperature": 0.7, "metadata": {"cache": 1}}, False),
        ({"temperature": 0, "stream": True}, False),
    ],
)
def test_only_deterministic_unstreamed_requests_are_cacheable(
    extra: dict[str, object], expected: bool
) -> None:
    assert cacheable({**BODY, **extra}) is expected


def test_the_normalized_body_ignores_order_user_stream_and_the_cache_flag() -> None:
    one = {**BODY, "temperature": 0, "user": "ann", "metadata": {"cache": True}}
    other = dict(reversed(list({**BODY, "temperature": 0.0, "stream": False}.items())))
    assert normalized(one) == normalized(other)
    assert normalized({**BODY, "metadata": {"cache": True, "team": "a"}}) != normalized(BODY)


def test_the_key_is_a_hash_per_scope_and_model() -> None:
    key = cache_key("key:team-a", "gpt", BODY)
    assert len(key) == 64 and "team-a" not in key and "hi" not in key
    assert key == cache_key("key:team-a", "gpt", dict(BODY))
    assert key != cache_key("key:team-b", "gpt", BODY)
    assert key != cache_key("key:team-a", "gpt-2", BODY)
