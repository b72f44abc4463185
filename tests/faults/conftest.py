"""The fault tests' own servers: a PostgreSQL cluster a test may stop and start again
(the shared one is never stopped)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import unavailable
from tests.support.postgres_servers import PostgresServer, missing_binaries


@pytest.fixture
def private_postgres() -> Iterator[PostgresServer]:
    """A started cluster of the test's own in a temporary directory, removed afterwards."""
    reason = missing_binaries()
    if reason is not None:
        unavailable("a private PostgreSQL cluster", RuntimeError(reason))
    with PostgresServer() as server:
        yield server
