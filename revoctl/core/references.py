"""``${secret:NAME}`` references: configuration strings that name a secret instead of holding it."""

from __future__ import annotations

import re

PREFIX = "${secret:"
PATTERN = re.compile(r"\$\{secret:([^}]*)\}")
"""One reference; group 1 is the secret's name."""


def references_secrets(text: str) -> bool:
    """Whether ``text`` holds ``${secret:NAME}`` references that need resolving."""
    return PREFIX in text


def referenced_names(text: str) -> list[str]:
    """The secret names ``text`` references, each once, in order."""
    return list(dict.fromkeys(PATTERN.findall(text)))
