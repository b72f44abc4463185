"""``${secret:NAME}`` references: configuration strings that name a secret instead of holding it.

Every string setting may hold references (database and Redis URLs, provider API
keys). They are resolved here and nowhere else: `resolve_text` for plain values,
`resolve_url` for URLs, where each value is percent-encoded into the part of the
URL that holds its reference, so an ``@``, ``/``, ``:`` or ``#`` in a password can
never change where the URL points. Messages describe the template, never the result.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import quote

from revoctl.core.errors import ConfigError

PREFIX = "${secret:"
PATTERN = re.compile(r"\$\{secret:([^}]*)\}")
"""One reference; group 1 is the secret's name."""

SecretReader = Callable[[str], Awaitable[str]]
"""Reads one secret's current value by name (e.g. `SecretManager.get_secret`)."""


def references_secrets(text: str) -> bool:
    """Whether ``text`` holds ``${secret:NAME}`` references that need resolving."""
    return PREFIX in text


def referenced_names(text: str) -> list[str]:
    """The secret names ``text`` references, each once, in order."""
    return list(dict.fromkeys(PATTERN.findall(text)))


async def _values(text: str, read: SecretReader) -> dict[str, str]:
    return {name: await read(name) for name in referenced_names(text)}


async def resolve_text(text: str, read: SecretReader) -> str:
    """``text`` with each reference replaced by the secret's value, as is.

    :raises RevoctlError: whatever ``read`` raises (invalid name, not found, unavailable).
    """
    if not references_secrets(text):
        return text
    values = await _values(text, read)
    return PATTERN.sub(lambda match: values[match.group(1)], text)


async def resolve_url(template: str, read: SecretReader, *, setting: str) -> str:
    """``template`` with each reference's value percent-encoded into its part of the URL.

    ``setting`` names the configuration key in error messages.

    :raises ConfigError: a reference sits where no value can go (the scheme or port),
        or a host value is not a host name.
    :raises RevoctlError: whatever ``read`` raises.
    """
    if not references_secrets(template):
        return template
    return fill_url(template, await _values(template, read), setting=setting)


def fill_url(template: str, values: Mapping[str, str], *, setting: str) -> str:
    """The URL with references replaced by ``values`` (name -> value), part by part."""
    placeholders = {name: f"revoctlsecret{i}ref" for i, name in enumerate(values)}
    by_placeholder = {placeholders[name]: value for name, value in values.items()}
    text = PATTERN.sub(lambda match: placeholders.get(match.group(1), match.group(0)), template)
    scheme, sep, rest = text.partition("://")
    if not sep or any(p in scheme for p in by_placeholder):
        raise ConfigError(f"{setting}: a ${{secret:...}} reference cannot stand for the scheme")
    authority_end = next((i for i, ch in enumerate(rest) if ch in "/?#"), len(rest))
    authority, tail = rest[:authority_end], rest[authority_end:]
    userinfo, at, hostport = authority.rpartition("@")
    user, colon, password = userinfo.partition(":")
    path, hash_, fragment = tail.partition("#")
    path, qmark, query = path.partition("?")

    def fill(part: str, encode: Callable[[str], str]) -> str:
        for placeholder, value in by_placeholder.items():
            if placeholder in part:
                part = part.replace(placeholder, encode(value))
        return part

    def quote_all(value: str) -> str:
        return quote(value, safe="")

    def as_host(value: str) -> str:
        if not value or any(ch in value for ch in "/?#@ :[]\\") or not value.isprintable():
            raise ConfigError(f"{setting}: the secret referenced in the host is not a host name")
        return value

    host, port_sep, port = hostport.rpartition(":") if _has_port(hostport) else (hostport, "", "")
    if any(p in port for p in by_placeholder):
        raise ConfigError(f"{setting}: a ${{secret:...}} reference cannot stand for the port")
    return "".join(
        [
            scheme,
            sep,
            fill(user, quote_all),
            colon,
            fill(password, quote_all),
            at,
            fill(host, as_host),
            port_sep,
            port,
            fill(path, lambda value: quote(value, safe="/")),
            qmark,
            fill(query, quote_all),
            hash_,
            fill(fragment, quote_all),
        ]
    )


def _has_port(hostport: str) -> bool:
    """Whether ``host:port`` ends in a port (an IPv6 literal has colons of its own)."""
    _, colon, tail = hostport.rpartition(":")
    return bool(colon) and "]" not in tail
