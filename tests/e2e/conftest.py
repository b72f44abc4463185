"""The e2e tests' upstreams: an OpenAI-style and an Anthropic-style stand-in, each with its
own key (a module may override the fixture for faults or latencies of its own)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.fleet import ANTHROPIC_KEY, OPENAI_KEY
from tests.support.llm_standin import LLMStandIn


@pytest.fixture
def upstreams() -> Iterator[tuple[LLMStandIn, LLMStandIn]]:
    with LLMStandIn(api_key=OPENAI_KEY) as openai, LLMStandIn(api_key=ANTHROPIC_KEY) as claude:
        yield openai, claude
