"""The private Redis servers of the rate-limit tests follow the fixtures' rule: without
``redis-server`` they skip with the reason, or fail under ``REVOCTL_REQUIRE_SERVICES=1``."""

from __future__ import annotations

import pytest

import tests.conftest
from tests.support.redis_servers import free_port, require_binaries


def test_without_redis_server_the_tests_skip_or_fail_when_required(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(tests.conftest, "REQUIRE_SERVICES", False)
    with pytest.raises(pytest.skip.Exception, match="redis-server is not on PATH"):
        require_binaries()
    monkeypatch.setattr(tests.conftest, "REQUIRE_SERVICES", True)
    with pytest.raises(pytest.fail.Exception, match="REVOCTL_REQUIRE_SERVICES=1 makes this a"):
        require_binaries()


def test_free_port_skips_ports_in_use() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        taken.listen()
        assert free_port(port, port + 1) == port + 1
