"""Shell completion: the committed scripts are current, and each loads in its real shell.

Every shell test types a line into bash, zsh or fish with the committed script loaded
the way the README installs it, and reads what TAB offers. The scripts call back into
the ``revoctl`` on PATH: this project's, from the virtualenv that runs the tests. A
shell that is not installed skips its tests, or fails them under
``REVOCTL_REQUIRE_SERVICES=1`` (CI installs zsh and fish).
"""

from __future__ import annotations

import filecmp
import os
import pty
import select
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import tests.conftest
from tests.conftest import run_revoctl
from tests.unit.test_cli import _loaded_backends

REPO = Path(__file__).parents[2]
COMPLETIONS = REPO / "completions"
BIN = Path(sys.executable).parent
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
CASES = [
    pytest.param("revoctl br", {"breakers"}, id="subcommand"),
    pytest.param("revoctl breakers ", {"status", "trip", "reset", "history"}, id="group"),
    pytest.param("revoctl breakers trip ", {*PREDEFINED, "search_api"}, id="breaker"),
    pytest.param("revoctl breaker reset s", {"search_api"}, id="breaker-prefix"),
    pytest.param("revoctl limits test ", {"api_generation", "tokens_per_minute"}, id="rule"),
]


def find_shell(name: str) -> str:
    """The shell's path; a missing shell skips, or fails when services are required."""
    path = shutil.which(name)
    if path is None:
        reason = f"{name} is not installed (apt-get install {name})"
        if tests.conftest.REQUIRE_SERVICES:
            pytest.fail(f"{reason}; REVOCTL_REQUIRE_SERVICES=1 makes this a failure", pytrace=False)
        pytest.skip(reason)
    return path


@pytest.fixture
def configured(revoctl_home: Path) -> Path:
    """A ./revoctl.toml with one configured breaker and two rules (cwd is the test's tmp)."""
    assert (BIN / "revoctl").exists(), f"no revoctl console script beside {sys.executable}"
    path = Path.cwd() / "revoctl.toml"
    path.write_text(CONFIG)
    return path


def shell_env(**extra: str) -> dict[str, str]:
    """This environment with the project's ``revoctl`` first on PATH."""
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **extra}


def complete_bash(line: str, tmp_path: Path) -> set[str]:
    """Source the script, find the function ``complete -p`` registered, call it as TAB would."""
    bash = find_shell("bash")
    words = [*shlex.split(line), *([""] if line.endswith(" ") else [])]
    driver = r"""
source "$1" || exit 3
spec=$(complete -p revoctl) || exit 4
fn=${spec#*-F }; fn=${fn%% *}
COMP_WORDS=("${@:2}"); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
COMP_LINE="${COMP_WORDS[*]}"; COMP_POINT=${#COMP_LINE}
"$fn" "${COMP_WORDS[0]}" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\n' "${COMPREPLY[@]}"
"""
    done = subprocess.run(
        [bash, "--norc", "--noprofile", "-c", driver, "bash", COMPLETIONS / "revoctl.bash", *words],
        capture_output=True,
        text=True,
        timeout=60,
        env=shell_env(),
    )
    assert done.returncode == 0, done.stderr
    return {word for word in done.stdout.splitlines() if word}


ZSHRC = r"""
PROMPT='> '
{load}
# Record what the completion system is given; -O/-A/-D calls only ask, they add nothing.
compadd() {{
  if [[ ${{@[1,(i)(-|--)]}} == *-(O|A|D)\ * ]]; then builtin compadd "$@"; return; fi
  local -a hits
  builtin compadd -A hits "$@"
  (( $#hits )) && print -rl -- $hits >> {out}
  builtin compadd "$@"
}}
_revoctl_test_done() {{ print -r -- {done} >> {out} }}
comppostfuncs=(_revoctl_test_done)
"""
ZSH_LOADS = {
    # the README's two ways: source the file after compinit, or put it on fpath
    "source": "autoload -Uz compinit && compinit -u -D\nsource {script}",
    "fpath": "fpath=({dir} $fpath)\nautoload -Uz compinit && compinit -u -D",
}


def complete_zsh(line: str, tmp_path: Path, how: str = "source") -> set[str]:
    """Type ``line`` and TAB into an interactive zsh on a pseudo-terminal; read the matches."""
    zsh = find_shell("zsh")
    zdotdir, out, done = tmp_path / "zdotdir", tmp_path / "zsh-matches", "--revoctl-done--"
    zdotdir.mkdir(exist_ok=True)
    out.unlink(missing_ok=True)
    (zdotdir / ".zshenv").write_text("unsetopt GLOBAL_RCS\n")  # none of /etc/zsh's set-up
    load = ZSH_LOADS[how].format(
        script=shlex.quote(str(COMPLETIONS / "_revoctl")), dir=shlex.quote(str(COMPLETIONS))
    )
    (zdotdir / ".zshrc").write_text(ZSHRC.format(load=load, out=shlex.quote(str(out)), done=done))
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        [zsh, "-i"],
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        env=shell_env(ZDOTDIR=str(zdotdir), TERM="dumb"),
        start_new_session=True,
    )
    os.close(secondary)
    screen = b""
    try:
        os.write(primary, line.encode() + b"\t")
        deadline = time.monotonic() + 60
        while not (out.exists() and done in out.read_text()):
            assert time.monotonic() < deadline, f"no completion from zsh; screen: {screen!r}"
            if select.select([primary], [], [], 0.1)[0]:
                screen += os.read(primary, 65536)  # drained, so zsh never blocks writing
    finally:
        proc.kill()
        proc.wait()
        os.close(primary)
    return {word for word in out.read_text().splitlines() if word != done}


def complete_fish(line: str, tmp_path: Path, how: str = "source") -> set[str]:
    """Ask fish what TAB offers (``complete --do-complete``), the script sourced or installed."""
    fish = find_shell("fish")
    if how == "source":
        command = f"source {shlex.quote(str(COMPLETIONS / 'revoctl.fish'))}; "
        args, env = ["--no-config"], shell_env()
    else:  # copied into fish's own completions directory, which fish loads by itself
        config_home = tmp_path / "fish-config"
        (config_home / "fish" / "completions").mkdir(parents=True, exist_ok=True)
        shutil.copy(COMPLETIONS / "revoctl.fish", config_home / "fish" / "completions")
        command, args, env = "", [], shell_env(XDG_CONFIG_HOME=str(config_home))
    command += f"complete --do-complete {shlex.quote(line)}"
    done = subprocess.run(
        [fish, *args, "-c", command], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    return {entry.split("\t")[0] for entry in done.stdout.splitlines() if entry}


SHELLS: dict[str, Callable[[str, Path], set[str]]] = {
    "bash": complete_bash,
    "zsh": complete_zsh,
    "fish": complete_fish,
}


def test_the_committed_scripts_are_current(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, COMPLETIONS / "generate.py", tmp_path],
        check=True,
        capture_output=True,
        timeout=120,
    )
    names = ["revoctl.bash", "_revoctl", "revoctl.fish"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)
    _, differ, missing = filecmp.cmpfiles(COMPLETIONS, tmp_path, names, shallow=False)
    assert (differ, missing) == ([], []), "completions/ is stale: run `make completions`"


@pytest.mark.parametrize("shell", sorted(SHELLS))
@pytest.mark.parametrize(("line", "offered"), CASES)
def test_tab_completes_in_each_shell(
    shell: str, line: str, offered: set[str], configured: Path, tmp_path: Path
) -> None:
    assert SHELLS[shell](line, tmp_path) == offered


def test_zsh_autoloading_from_fpath_completes_on_the_first_tab(
    configured: Path, tmp_path: Path
) -> None:
    assert complete_zsh("revoctl breakers trip ", tmp_path, how="fpath") == {
        *PREDEFINED,
        "search_api",
    }


def test_fish_loads_the_script_from_its_completions_directory(
    configured: Path, tmp_path: Path
) -> None:
    assert complete_fish("revoctl limits simulate t", tmp_path, how="dir") == {"tokens_per_minute"}


def test_a_missing_shell_skips_or_fails_when_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tests.conftest, "REQUIRE_SERVICES", False)
    with pytest.raises(pytest.skip.Exception, match="no-such-shell is not installed"):
        find_shell("no-such-shell")
    monkeypatch.setattr(tests.conftest, "REQUIRE_SERVICES", True)
    with pytest.raises(pytest.fail.Exception, match="REVOCTL_REQUIRE_SERVICES=1"):
        find_shell("no-such-shell")


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
