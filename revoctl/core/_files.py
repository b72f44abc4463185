"""The state directory's files: created private, and a clear error when that cannot be."""

from __future__ import annotations

import os
from pathlib import Path

from revoctl.core.errors import BackendUnavailableError


def ensure_writable_dir(directory: Path, what: str) -> None:
    """Create ``directory`` (mode 0700) if needed and check that it can be written.

    Checked up front, so that a lock or a database open fails at once with the
    reason, not after a timeout with a vaguer one.

    :raises BackendUnavailableError: it cannot be created or written.
    """
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise BackendUnavailableError(
            f"cannot create the directory of the {what}, {directory}: {exc.strerror}"
        ) from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise BackendUnavailableError(f"the directory of the {what}, {directory}, is not writable")
