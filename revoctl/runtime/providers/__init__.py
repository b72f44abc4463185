"""The gateway's LLM providers: small adapters over one shared ``aiohttp`` session each.

`provider_for` builds the adapter a ``[providers.NAME]`` table asks for; `Provider` (in
`revoctl.runtime.providers.base`) is what the gateway calls, and the ``Provider*Error`` tree is
what it gets when a call fails. Importing this package imports aiohttp: the CLI never does.
"""

from __future__ import annotations

from revoctl.core.gateway.settings import ProviderConfig, ProviderKind
from revoctl.runtime.providers import base
from revoctl.runtime.providers.anthropic import AnthropicProvider
from revoctl.runtime.providers.azure_openai import AzureOpenAIProvider
from revoctl.runtime.providers.base import *  # noqa: F403  the interface, named in base.__all__
from revoctl.runtime.providers.openai import OpenAIProvider

__all__ = [
    "WITHOUT_EMBEDDINGS",
    "AnthropicProvider",
    "AzureOpenAIProvider",
    "OpenAIProvider",
    "provider_for",
]
__all__ += base.__all__
__all__.sort()


WITHOUT_EMBEDDINGS = frozenset({ProviderKind.ANTHROPIC})
"""Provider kinds whose API has no embeddings."""


def provider_for(
    config: ProviderConfig, *, name: str, api_key: base.ApiKey, default_max_tokens: int
) -> base.Provider:
    """The adapter for ``config.kind``, named ``name``, reading its key through ``api_key``
    (see `api_key_from`); ``default_max_tokens`` is sent when a request gives none and the
    upstream requires one (Anthropic)."""
    if config.kind is ProviderKind.ANTHROPIC:
        return AnthropicProvider(name, config, api_key, default_max_tokens=default_max_tokens)
    if config.kind is ProviderKind.AZURE_OPENAI:
        return AzureOpenAIProvider(name, config, api_key)
    return OpenAIProvider(name, config, api_key)
