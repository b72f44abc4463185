"""The migrations this revoctl ships, read from ``migrations/versions/`` without Alembic.

Probes (``db ping``, ``health``, a store's ``ping``) compare the applied revision with the
shipped ones and must not import Alembic (0.2 s) to learn them: each revision file
declares ``revision`` and ``down_revision`` on lines of their own, which are read as
text (`importlib.resources`, so it works from a wheel too) and chained oldest first.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Any

_REVISION = re.compile(r'^revision\b[^=\n]*=\s*"(\w+)"', re.MULTILINE)
_DOWN_REVISION = re.compile(r'^down_revision\b[^=\n]*=\s*(?:"(\w+)"|None)', re.MULTILINE)


def _read_shipped() -> tuple[str, ...]:
    """Every revision file's ``revision``, chained by ``down_revision``, oldest first."""
    versions = resources.files("revoctl.core.db").joinpath("migrations", "versions")
    after: dict[str | None, str] = {}
    for script in versions.iterdir():
        if not script.name.endswith(".py") or script.name.startswith("_"):
            continue
        source = script.read_text(encoding="utf-8")
        revision, down = _REVISION.search(source), _DOWN_REVISION.search(source)
        if revision is None or down is None:
            raise RuntimeError(f"migration {script.name} declares no revision/down_revision")
        after[down.group(1)] = revision.group(1)
    chain: list[str] = []
    while (following := after.get(chain[-1] if chain else None)) is not None:
        chain.append(following)
    return tuple(chain)


SHIPPED_REVISIONS = _read_shipped()
"""Every shipped revision, oldest first (a test holds it to Alembic's own reading)."""


def is_applied(revision: str, applied: tuple[str, ...]) -> bool:
    """Whether the database at ``applied`` (its ``alembic_version`` rows) has ``revision``:
    it is at that revision or a later one this revoctl ships."""
    shipped = SHIPPED_REVISIONS
    later = shipped[shipped.index(revision) :]
    return any(current in later for current in applied)


def migration_status(applied: tuple[str, ...]) -> dict[str, Any]:
    """``{"current", "head", "pending"}``; ``pending`` is None for a revision this version
    does not ship (applied by a newer revoctl)."""
    shipped = SHIPPED_REVISIONS
    pending: int | None
    if not applied:
        pending = len(shipped)
    elif len(applied) == 1 and applied[0] in shipped:
        pending = len(shipped) - 1 - shipped.index(applied[0])
    else:
        pending = None
    return {"current": ",".join(applied) or None, "head": shipped[-1], "pending": pending}
