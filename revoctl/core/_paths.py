"""Where revoctl keeps its state, and how files there are created: owner-only, always.

The state directory is ``REVOCTL_HOME``, else ``$XDG_DATA_HOME/revoctl``. It holds the
embedded SQLite database and the local secret store; like ``~/.ssh``, nothing in it
is readable by anyone but its owner. Processes that share a file there take turns
through a lock file beside it (`holding`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from revoctl.core.errors import BackendUnavailableError, UsageError

if TYPE_CHECKING:
    import filelock

logger = logging.getLogger("revoctl")

ENV_HOME = "REVOCTL_HOME"
DATABASE_FILE_NAME = "revoctl.db"
LOCK_POLL_SECONDS = 0.02
"""How often a lock held by another process is tried again."""


def state_dir(env: Mapping[str, str] | None = None) -> Path:
    """The state directory, as an absolute path: ``REVOCTL_HOME``, else ``$XDG_DATA_HOME/revoctl``.

    A relative ``REVOCTL_HOME`` is resolved against the working directory once, here,
    so that the location never depends on where a later step runs.
    """
    env = os.environ if env is None else env
    if env.get(ENV_HOME):
        return Path(env[ENV_HOME]).expanduser().absolute()
    data_home = env.get("XDG_DATA_HOME") or str(Path("~/.local/share").expanduser())
    return (Path(data_home) / "revoctl").absolute()


def default_database_url(env: Mapping[str, str] | None = None) -> str:
    """The embedded database: a SQLite file in the state directory."""
    return f"sqlite+aiosqlite:///{state_dir(env) / DATABASE_FILE_NAME}"


def ensure_writable_dir(directory: Path, what: str) -> None:
    """Create ``directory`` (mode 0700) if needed and check that it can be written; the state
    directory must also be private (`check_private_dir`).

    Checked up front, so that a lock or a database open fails at once with the
    reason, not after a timeout with a vaguer one.

    :raises UsageError: the path exists and is not a directory, or it is the state
        directory and others can write to it.
    :raises BackendUnavailableError: it cannot be created or written.
    """
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"the directory of the {what}, {directory}, is not a directory")
    if directory.absolute() == state_dir():
        check_private_dir(directory)
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise BackendUnavailableError(
            f"cannot create the directory of the {what}, {directory}: {exc.strerror}"
        ) from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise BackendUnavailableError(f"the directory of the {what}, {directory}, is not writable")


def check_private_dir(directory: Path) -> None:
    """Refuse a state directory that others can write to, as ssh refuses such a ``~/.ssh``
    (anyone could replace the store or the database); warn when others can read it.

    :raises UsageError: group or others may write to ``directory``.
    """
    try:
        mode = stat.S_IMODE(directory.stat().st_mode)
    except OSError:
        return  # not there yet: it will be created 0700
    if mode & 0o022:
        raise UsageError(
            f"refusing to use {directory}: its mode {oct(mode)} lets other users write to it; "
            f"run 'chmod 700 {directory}'"
        )
    if mode & 0o044:
        logger.warning(
            "%s can be read by other users (mode %s); run 'chmod 700 %s'",
            directory,
            oct(mode),
            directory,
        )


def create_private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 unless it exists, so that whatever writes it
    later (SQLite, with its ``-wal`` and ``-shm`` files, takes the mode from it) keeps
    it owner-only."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError as exc:
        raise BackendUnavailableError(f"cannot create {path}: {exc.strerror}") from None
    os.close(fd)


@contextlib.asynccontextmanager
async def holding(lock: filelock.BaseFileLock, *, timeout: float, busy: str) -> AsyncIterator[None]:
    """Hold the cross-process ``lock`` for the block, waiting at most ``timeout`` seconds.

    The lock is waited for by polling on the event loop, never in a thread: a caller
    that gives up while waiting leaves nothing behind that could take the lock later.
    The operating system releases it if the process dies.

    :raises BackendUnavailableError: another process held it for ``timeout`` seconds;
        the message is ``busy`` and what was waited for.
    """
    import filelock

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            lock.acquire(blocking=False)
            break
        except filelock.Timeout:
            if loop.time() >= deadline:
                raise BackendUnavailableError(
                    f"{busy} (waited {timeout:g}s for {lock.lock_file})"
                ) from None
            await asyncio.sleep(LOCK_POLL_SECONDS)
    try:
        yield
    finally:
        lock.release()
