"""Where a store under test lives, for the tables of every store kind (`ALL_LIMIT_STORES`,
`ALL_BREAKER_STORES`): resolved from a sync fixture, since the server fixtures run their
own event loop."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest


@dataclass(frozen=True)
class Target:
    """Where a store of ``kind`` lives: a database URL, or Redis's URL and key prefix."""

    kind: str
    url: str = ""
    prefix: str = ""


T = TypeVar("T", bound=Target)


def store_target(kind: str, request: pytest.FixtureRequest, tmp_path: Path, make: type[T]) -> T:
    """A ``make`` for ``kind``: the shared servers' fixtures, or a fresh SQLite file."""
    if kind == "redis":
        return make(
            kind, request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix")
        )
    if kind == "postgres":
        return make(kind, request.getfixturevalue("postgres_url"))
    if kind == "sqlite":
        return make(kind, f"sqlite+aiosqlite:///{tmp_path / f'store-{uuid.uuid4().hex[:6]}.db'}")
    return make(kind)
