"""FileSecretStore: versions, file modes, the permission refusal, and never losing data."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from revoctl.core import SecretConfig
from revoctl.core.errors import NotFoundError, UsageError
from revoctl.core.secrets import SecretManager, SecretProvider
from revoctl.core.secrets.stores import secret_store_for
from revoctl.core.secrets.stores.file import FileSecretStore


@pytest.fixture
def store(revoctl_home: Path) -> FileSecretStore:
    built = secret_store_for(SecretProvider.LOCAL, SecretConfig(), home=revoctl_home)
    assert isinstance(built, FileSecretStore)
    return built


async def test_versions_newest_first_and_each_readable(store: FileSecretStore):
    written = [await store.set("api-key", f"value-{i}") for i in range(3)]
    history = await store.versions("api-key")
    assert [p.version for p in history] == [w.version for w in reversed(written)]
    assert (await store.get("api-key")).value == "value-2"
    for i, w in enumerate(written):
        secret = await store.get("api-key", w.version)
        assert (secret.value, secret.provider) == (f"value-{i}", SecretProvider.LOCAL)
    [latest] = await store.list_secrets()
    assert (latest.name, latest.version) == ("api-key", written[-1].version)


async def test_unknown_names_and_versions_are_not_found(store: FileSecretStore):
    with pytest.raises(NotFoundError):
        await store.get("api-key")
    await store.set("api-key", "value-1")
    with pytest.raises(NotFoundError, match="no version 'nope'"):
        await store.get("api-key", "nope")
    with pytest.raises(NotFoundError):
        await store.versions("other")
    assert await store.list_secrets() != []


async def test_file_is_private_to_its_owner(store: FileSecretStore):
    await store.set("api-key", "value-1")
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.path.parent.stat().st_mode) == 0o700
    assert list(store.path.parent.glob("*.tmp")) == []


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
async def test_a_store_others_can_read_is_refused(store: FileSecretStore, mode: int):
    await store.set("api-key", "value-1")
    store.path.chmod(mode)
    for call in (store.get("api-key"), store.list_secrets(), store.set("api-key", "value-2")):
        with pytest.raises(UsageError, match="chmod 600"):
            await call
    store.path.chmod(0o600)
    assert len(await store.versions("api-key")) == 1


async def test_a_corrupt_store_is_never_overwritten(store: FileSecretStore):
    await store.set("api-key", "value-1")
    store.path.write_text('{"format": 1, "secrets": {"api-key": [{"version": "v1"')
    before = store.path.read_bytes()
    with pytest.raises(UsageError, match="not a valid store file.*left untouched"):
        await store.set("api-key", "value-2")
    assert store.path.read_bytes() == before


async def test_bad_input_leaves_the_store_as_it_was(store: FileSecretStore, revoctl_home: Path):
    await store.set("api-key", "value-1")
    before = store.path.read_bytes()
    manager = SecretManager(SecretConfig(), home=revoctl_home)
    for name, value in [("bad_name", "v"), ("api-key", ""), ("api-key", "\ud800x")]:
        with pytest.raises(UsageError):
            await manager.set_secret(name, value)
    assert store.path.read_bytes() == before
    assert json.loads(before)["secrets"]["api-key"][0]["value"] == "value-1"
