"""The README's fenced blocks, as the tests that run them read them: each with the heading it
stands under, and the environment a reader's shell would have (none of revoctl's settings,
none of the test run's).
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).parents[2]
FENCE = re.compile(r"^```(\w*)\s*$")
HEADING = re.compile(r"^(#{2,4}) (.+)$")


@dataclass(frozen=True)
class Block:
    """One fenced block: its language, the heading above it, its first line in the file."""

    language: str
    heading: str
    line: int
    text: str

    @property
    def label(self) -> str:
        """How a test names the block: its heading and line, e.g. ``### db (line 437)``."""
        return f"{self.heading} (line {self.line})"


def readme_blocks(readme: str | None = None, language: str | None = None) -> list[Block]:
    """Every fenced block of the README in order (of ``language`` only, when given)."""
    text = (REPO / "README.md").read_text() if readme is None else readme
    blocks: list[Block] = []
    heading, opened, body = "", None, []
    for number, line in enumerate(text.splitlines(), 1):
        fence = FENCE.match(line)
        if opened is None:
            if fence:
                opened, body = (fence.group(1), number), []
            elif match := HEADING.match(line):
                heading = f"{match.group(1)} {match.group(2)}"
        elif fence and not fence.group(1):
            blocks.append(Block(opened[0], heading, opened[1], "\n".join(body) + "\n"))
            opened = None
        else:
            body.append(line)
    return [block for block in blocks if language is None or block.language == language]


def tour_blocks() -> list[Block]:
    """The shell blocks of the five-minute tour, in order."""
    return [b for b in readme_blocks(language="sh") if b.heading == "## Five-minute tour"]


def clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without revoctl's settings and test variables."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("REVOCTL_", "XDG_", "VIRTUAL_ENV", "PYTHON"))
    }
    return {**env, **extra}


def readme_venv() -> Path:
    """The venv whose ``revoctl`` the README's blocks run: ``REVOCTL_TOUR_VENV`` (the one
    ``make demo`` built, in CI) when set, else the venv running the tests."""
    venv = Path(os.environ.get("REVOCTL_TOUR_VENV") or sys.prefix)
    assert (venv / "bin" / "revoctl").exists(), f"{venv} has no bin/revoctl"
    return venv
