"""TAB completion of breaker and rule names: from the configuration, never a back end."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from tests.conftest import run_revoctl
from tests.unit.test_cli import _loaded_backends

PREDEFINED = {"openai_api", "anthropic_api", "deepseek_api", "database", "redis"}
CONFIG = """
[breakers.services.search_api]
failure_threshold = 2

[[limits.rules]]
name = "api_generation"
requests = 20
window_seconds = 60

[[limits.rules]]
name = "tokens_per_minute"
requests = 100000
window_seconds = 60
algorithm = "sliding_window"
"""


@pytest.fixture
def configured(revoctl_home: Path) -> Path:
    """A ./revoctl.toml with one configured breaker and two rules (cwd is the test's tmp)."""
    path = Path.cwd() / "revoctl.toml"
    path.write_text(CONFIG)
    return path


def bash_tab(line: str) -> dict[str, str]:
    """The environment under which bash's function calls revoctl for ``line``."""
    return {
        "_REVOCTL_COMPLETE": "complete_bash",
        "COMP_WORDS": line,
        "COMP_CWORD": str(len(shlex.split(line)) - (0 if line.endswith(" ") else 1)),
    }


@pytest.mark.parametrize(
    ("line", "offered"),
    [
        ("revoctl breakers trip ", {*PREDEFINED, "search_api"}),
        ("revoctl limits inspect ", {"api_generation", "tokens_per_minute"}),
    ],
)
def test_tab_on_a_name_reads_the_config_and_imports_no_backend(
    line: str, offered: set[str], configured: Path
) -> None:
    # Every store points at a server: completion must reach none of them, nor import a client.
    configured.write_text(
        '[database]\nurl = "postgresql+asyncpg://revoctl:${secret:db-password}@127.0.0.1:1/x"\n'
        '[redis]\nurl = "redis://127.0.0.1:1/0"\n'
        '[limits]\nstore = "redis"\n[breakers]\nstore = "redis"\n' + CONFIG
    )
    stdout, loaded = _loaded_backends([], bash_tab(line))
    assert set(stdout.split()) == offered
    assert loaded == []


def test_tab_follows_the_config_profile_and_set_flags_typed_before_the_command(
    tmp_path: Path,
) -> None:
    other = tmp_path / "other.toml"
    other.write_text("[profiles.eu.breakers.services.eu_search]\nfailure_threshold = 2\n")
    line = (
        f"revoctl --config {other} --profile eu --set breakers.services.extra.timeout=5 "
        "breakers status "
    )
    done = run_revoctl([], env=bash_tab(line))
    assert set(done.stdout.split()) == {*PREDEFINED, "eu_search", "extra"}


def test_tab_with_a_broken_config_offers_the_predefined_breakers_quietly(tmp_path: Path) -> None:
    (tmp_path / "revoctl.toml").write_text("[breakers\n")  # the cwd's: invalid TOML
    done = run_revoctl([], env=bash_tab("revoctl breakers trip "))
    assert (done.returncode, done.stderr) == (0, "")
    assert set(done.stdout.split()) == PREDEFINED
    rules = run_revoctl([], env=bash_tab("revoctl limits test "))
    assert (rules.returncode, rules.stdout.strip(), rules.stderr) == (0, "", "")
