"""The composition: what a component uses (``ComponentSpec.depends``, read from the
configuration) is built before it, so the exit stack closes it after the component."""

from __future__ import annotations

from pathlib import Path

import pytest

from revoctl.config import load_config
from revoctl.core._process import Role
from revoctl.core.services import Services


def services(role: Role, **settings: str) -> Services:
    return Services(load_config(overrides=settings), role=role)


@pytest.mark.parametrize(
    ("role", "settings", "built"),
    [
        (Role.RUNTIME, {"limits.store": "memory"}, ["db", "limiter"]),  # its event log
        (Role.CLI, {"limits.store": "memory"}, ["limiter"]),  # an operator's test logs nothing
        (Role.CLI, {"limits.store": "sql"}, ["db", "limiter"]),
    ],
)
async def test_the_limiter_is_built_after_the_database_it_writes_to(
    revoctl_home: Path, role: Role, settings: dict[str, str], built: list[str]
) -> None:
    svc = services(role, **settings)
    _ = svc.limiter
    assert list(svc.built()) == built
    await svc.aclose()


@pytest.mark.parametrize(
    ("store", "built"), [("sql", ["db", "breakers"]), ("memory", ["breakers"])]
)
async def test_the_breakers_use_the_database_only_as_their_store(
    revoctl_home: Path, store: str, built: list[str]
) -> None:
    svc = services(Role.CLI, **{"breakers.store": store})
    _ = svc.breakers
    assert list(svc.built()) == built
    await svc.aclose()


async def test_the_keys_are_a_component_on_the_database(revoctl_home: Path) -> None:
    svc = services(Role.CLI)
    assert svc.keys is svc.keys
    assert list(svc.built()) == ["db", "keys"]
    await svc.aclose()
    assert svc.built() == {}


async def test_the_health_document_lists_the_services_only(revoctl_home: Path) -> None:
    svc = services(Role.CLI, **{"limits.store": "memory", "breakers.store": "memory"})
    document = await svc.health_check()
    assert list(document["services"]) == ["secrets", "database", "rate_limiter", "circuit_breakers"]
    await svc.aclose()
