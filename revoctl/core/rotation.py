"""Rotation on a schedule: rotate every secret older than its ``[secrets.rotation]`` rule's
``max_age``, one process of the fleet at a time.

`rotate_due` lists the secrets (never their values), picks for each the first rule whose
``names`` glob matches, and rotates those whose latest version is at least ``max_age`` old.
It runs under the ``secret-rotation`` row of ``maintenance_leases`` (the retention's lease,
`revoctl.core.db._retention.take_lease`), renewed before each secret and released at the end,
and lists the secrets only once it holds it: a second process (a cron job, another gateway
instance) either finds the lease held or, after, finds nothing due, so N processes rotate once.

A rule's ``on_rotate`` command learns the new value first, on stdin and in
``REVOCTL_SECRET_VALUE`` (never in its arguments, which ``ps`` shows); only when it exits 0
within ``hook_timeout_seconds`` is the value stored. A failed hook (non-zero exit, timeout,
cannot start) stores nothing, so the old version stays current, and is recorded in
``secret_audit_log`` as a ``rotate`` row with status ``hook_failed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
import os
import secrets as token_source
import signal
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from revoctl.core._process import process_name
from revoctl.core.errors import CheckFailedError, RevoctlError
from revoctl.core.redaction import redact, register_secret

if TYPE_CHECKING:
    from revoctl.core.db import DatabaseManager
    from revoctl.core.secrets import SecretManager, SecretProperties
    from revoctl.core.secrets.rotation_settings import RotationConfig, RotationRule

logger = logging.getLogger("revoctl.secrets")

LEASE = "secret-rotation"
HOOK_FAILED = "hook_failed"
VALUE_VARIABLE = "REVOCTL_SECRET_VALUE"
NAME_VARIABLE = "REVOCTL_SECRET_NAME"


class RotationLeaseHeldError(CheckFailedError):
    """Another process holds the rotation lease: it is rotating now (exit 1)."""


@dataclass(frozen=True)
class Due:
    """A secret past its rule's ``max_age``."""

    props: SecretProperties
    rule: RotationRule

    def record(self, now: datetime) -> dict[str, Any]:
        return {
            "name": self.props.name,
            "version": self.props.version,
            "updated_on": self.props.updated_on.astimezone(UTC).isoformat(),
            "age_days": round((now - self.props.updated_on).total_seconds() / 86400, 2),
            "max_age": self.rule.max_age,
        }


def rule_for(name: str, config: RotationConfig) -> RotationRule | None:
    """The first rule whose ``names`` globs match ``name`` (case-sensitive), or None."""
    for rule in config.rules:
        if any(fnmatch.fnmatchcase(name, glob) for glob in rule.names):
            return rule
    return None


def due(
    found: list[SecretProperties], config: RotationConfig, now: datetime
) -> tuple[list[Due], list[str]]:
    """The secrets of ``found`` whose latest version is at least their rule's age, by name;
    and the names a rule matches that are younger (skipped)."""
    chosen, skipped = [], []
    for props in sorted(found, key=lambda p: p.name):
        rule = rule_for(props.name, config)
        if rule is not None and now - props.updated_on >= rule.age:
            chosen.append(Due(props, rule))
        elif rule is not None:
            skipped.append(props.name)
    return chosen, skipped


async def rotate_due(
    secrets: SecretManager,
    db: DatabaseManager,
    config: RotationConfig,
    *,
    dry_run: bool = False,
    holder: str | None = None,
    actor: str | None = None,
) -> dict[str, Any]:
    """Rotate every secret past its rule's age. The report: names ``due`` (at the start),
    ``rotated``, ``failed`` (a ``hook_failed`` or failed write) and ``skipped`` (a rule
    matches, not due yet); ``secrets``, one record per due secret with its ``outcome``:
    ``rotated``, ``hook_failed`` or ``failed`` (``due`` in a dry run, which takes no lease
    and changes nothing).

    :raises RotationLeaseHeldError: another process is rotating.
    :raises UsageError: the database is not migrated.
    :raises BackendUnavailableError: the database or the secret provider cannot be reached.
    """
    from revoctl.core.db._retention import release_lease, take_lease

    if dry_run:
        now = datetime.now(UTC)
        chosen, skipped = await _due(secrets, config)
        return _report(chosen, skipped, [item.record(now) | {"outcome": "due"} for item in chosen])
    holder = holder or process_name(db.role)
    seconds = 2 * config.hook_timeout_seconds + 60
    current = await take_lease(db, holder, name=LEASE, seconds=seconds)
    if current != holder:
        raise RotationLeaseHeldError(f"another process is rotating (it holds the lease): {current}")
    try:
        results = []
        chosen, skipped = await _due(secrets, config)
        for item in chosen:
            if await take_lease(db, holder, name=LEASE, seconds=seconds) != holder:
                break  # lapsed and taken: the other process carries on
            results.append(await _rotate_one(secrets, item, config, actor))
    finally:
        await release_lease(db, holder, name=LEASE)
    return _report(chosen, skipped, results)


def _report(chosen: list[Due], skipped: list[str], rows: list[dict[str, Any]]) -> dict[str, Any]:
    def named(*outcomes: str) -> list[str]:
        return [row["name"] for row in rows if row["outcome"] in outcomes]

    return {
        "due": [item.props.name for item in chosen],
        "rotated": named("rotated"),
        "failed": named("failed", HOOK_FAILED),
        "skipped": skipped,
        "secrets": rows,
    }


async def _due(secrets: SecretManager, config: RotationConfig) -> tuple[list[Due], list[str]]:
    if not config.rules:
        return [], []
    return due(await secrets.list_secrets(), config, datetime.now(UTC))


async def _rotate_one(
    secrets: SecretManager, item: Due, config: RotationConfig, actor: str | None
) -> dict[str, Any]:
    name = item.props.name
    record = item.record(datetime.now(UTC))
    value = token_source.token_urlsafe(item.rule.length)
    register_secret(value)
    if item.rule.on_rotate:
        reason = await run_hook(item.rule.on_rotate, name, value, config.hook_timeout_seconds)
        if reason is not None:
            logger.warning(
                "rotation of secret %r kept version %s: %s", name, record["version"], reason
            )
            trail = secrets._audit  # the manager's own trail: same sink, same bound
            intent = await trail.begin("rotate", name, secrets.store.provider, actor)
            audited = await trail.complete(intent, None, item.props.version, HOOK_FAILED)
            return record | {"outcome": HOOK_FAILED, "reason": reason, "audited": audited}
    try:
        done = await secrets.rotate(name, value, actor=actor)
    except RevoctlError as exc:
        logger.warning("rotation of secret %r failed: %s", name, redact(str(exc)))
        return record | {"outcome": "failed", "reason": redact(str(exc))}
    logger.info("rotated secret %r: version %s", name, done.version)
    return record | {
        "outcome": "rotated",
        "new_version": done.version,
        "audited": done.audited,
    }


async def run_hook(command: list[str], name: str, value: str, timeout: float) -> str | None:
    """Run ``command`` (``{name}`` replaced) with ``value`` on stdin and in the environment;
    None when it exits 0 within ``timeout`` seconds, else why not (never the value: its
    output is discarded, but for the last line of its stderr, redacted)."""
    argv = [part.replace("{name}", name) for part in command]
    env = os.environ | {NAME_VARIABLE: name, VALUE_VARIABLE: value}
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            start_new_session=True,  # its own group, so a timeout ends its children too
        )
    except OSError as exc:
        return f"on_rotate could not start {argv[0]}: {exc.strerror}"
    try:
        async with asyncio.timeout(timeout):
            _, err = await proc.communicate((value + "\n").encode())
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        return f"on_rotate {argv[0]} did not finish within {timeout:g}s"
    if proc.returncode == 0:
        return None
    lines = err.decode(errors="replace").strip().splitlines()
    said = f": {redact(lines[-1])[:200]}" if lines else ""
    return f"on_rotate {argv[0]} exited {proc.returncode}{said}"
