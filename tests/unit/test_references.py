"""``${secret:NAME}`` references: one resolver for text and URLs, values kept in their part."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from revoctl.core.db._url import parse_database_url
from revoctl.core.errors import ConfigError
from revoctl.core.references import fill_url, referenced_names, resolve_text, resolve_url

NASTY = "p@ss/w:o#r?d&x=1 %41+ é"


def test_referenced_names_each_once_in_order() -> None:
    text = "${secret:b}-${secret:a}-${secret:b}"
    assert referenced_names(text) == ["b", "a"]


@pytest.mark.parametrize(
    ("template", "part"),
    [
        ("postgresql://${secret:v}@h:5432/db", "username"),
        ("postgresql://u:${secret:v}@h:5432/db", "password"),
        ("postgresql://u@h:5432/${secret:v}", "database"),
        ("postgresql://u@h:5432/db?password=${secret:v}", "password"),
    ],
)
def test_a_value_with_url_characters_stays_in_its_part(template: str, part: str) -> None:
    url = parse_database_url(fill_url(template, {"v": NASTY}, setting="database.url"))
    assert getattr(url, part) == NASTY
    assert (url.host, url.port) == ("h", 5432)


def test_a_host_reference_takes_a_host_name_only() -> None:
    url = parse_database_url(
        fill_url("postgresql://u@${secret:h}:5432/db", {"h": "db.internal"}, setting="x")
    )
    assert url.host == "db.internal"
    with pytest.raises(ConfigError, match="not a host name"):
        fill_url("postgresql://u@${secret:h}/db", {"h": "evil.example/x@other"}, setting="x")


@pytest.mark.parametrize("template", ["${secret:s}://h/db", "postgresql://h:${secret:p}/db"])
def test_a_reference_cannot_stand_for_the_scheme_or_the_port(template: str) -> None:
    with pytest.raises(ConfigError, match="cannot stand for the"):
        fill_url(template, {"s": "x", "p": "5432"}, setting="database.url")


async def test_resolve_text_and_url_read_each_secret_once() -> None:
    reads: list[str] = []

    async def read(name: str) -> str:
        reads.append(name)
        return {"a": "A-value", "b": "B/value"}[name]

    assert await resolve_text("x ${secret:a} ${secret:a} ${secret:b}", read) == (
        "x A-value A-value B/value"
    )
    assert reads == ["a", "b"]
    url = await resolve_url("redis://:${secret:b}@h:6379/0", read, setting="redis.url")
    assert url == "redis://:B%2Fvalue@h:6379/0"
    assert await resolve_url("redis://h/0", read, setting="redis.url") == "redis://h/0"


@given(st.text(min_size=1, max_size=40))
def test_any_password_round_trips_through_the_url(value: str) -> None:
    template = "postgresql+asyncpg://app:${secret:pw}@db.internal:5432/app?sslmode=require"
    url = parse_database_url(fill_url(template, {"pw": value}, setting="database.url"))
    assert url.password == value
    assert (url.host, url.port, url.database, url.ssl_mode) == (
        "db.internal",
        5432,
        "app",
        "require",
    )
