"""``revoctl db ping`` without Typer or pydantic: the probe that readiness checks run most.

Typer builds a pydantic adapter for every flag it parses, and the settings models
are pydantic: together about 150 ms before a probe that takes 100 ms. So `main`
first offers the command line to `run_fast`, which reads the plain forms of
``[global flags] db ping [-o FORMAT]`` itself and answers from settings a run has
already validated (`revoctl._probe_cache`). Anything else (help, completion, an
unknown, repeated-in-one-word or malformed flag, an unseen configuration, a URL with
a ``${secret:...}`` reference) returns None and Typer
runs the command as always, so help, usage errors and validation errors are Typer's
and the configuration's own. What it runs is what ``db ping`` runs: the raw-driver
probe of `DatabaseManager.ping`, the same logging set-up, output and exit codes.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from revoctl._layers import ENV_OUTPUT, read_sources
from revoctl._probe_cache import ProbeSettings, recall
from revoctl.cli._output import Console, OutputFormat
from revoctl.core.errors import RevoctlError
from revoctl.core.references import references_secrets

COMPLETE_VAR = "_REVOCTL_COMPLETE"
_VALUED = {"--config": "config", "--profile": "profile", "--set": "set", "--output": "output"}
_FORMATS = {member.value: member for member in OutputFormat}


@dataclass
class Invocation:
    """``db ping`` as the command line gave it."""

    config: str | None = None
    profile: str | None = None
    sets: list[str] = field(default_factory=list)
    output: OutputFormat | None = None
    """``-o`` before the command, else ``REVOCTL_OUTPUT``."""
    verbose: int = 0
    no_color: bool = False
    command_output: OutputFormat | None = None


def run_fast(argv: Sequence[str], env: Mapping[str, str]) -> int | None:
    """Run ``db ping`` and return its exit code, or None when Typer should run the line."""
    invocation = parse(argv, env)
    if invocation is None:
        return None
    try:
        overrides = _overrides(invocation.sets)
        sources = read_sources(invocation.config, invocation.profile, overrides, env, Path.cwd())
        settings = recall(sources, env) if overrides is not None else None
    except RevoctlError:
        return None  # Typer's run reports it, word for word
    if settings is None or references_secrets(settings.url):
        return None
    console = Console(no_color=invocation.no_color, verbose=invocation.verbose)
    output = invocation.command_output or invocation.output or OutputFormat.table
    try:
        console.emit(_ping(settings, invocation.verbose), output)
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        Console().error("aborted")
        return 130
    except Exception as exc:
        return console.fail(exc)
    return 0


def parse(argv: Sequence[str], env: Mapping[str, str]) -> Invocation | None:
    """The invocation, when ``argv`` is ``db ping`` in a form read the same way as Typer."""
    if COMPLETE_VAR in env:
        return None
    invocation = Invocation()
    if env.get(ENV_OUTPUT) is not None:
        invocation.output = _format(env[ENV_OUTPUT])
        if invocation.output is None:
            return None
    args = list(argv)
    while args and args[0].startswith("-"):
        if not _root_flag(invocation, args):
            return None
    if args[:2] != ["db", "ping"]:
        return None
    args = args[2:]
    while args:
        name, value = _valued(args, ("-o", "--output"))
        chosen = _format(value) if name else None
        if chosen is None:
            return None
        invocation.command_output = chosen
    return invocation


def _root_flag(invocation: Invocation, args: list[str]) -> bool:
    """Take the flag at the head of ``args``; False when it is not one read here."""
    arg = args[0]
    if arg == "--no-color":
        invocation.no_color = True
    elif arg == "--verbose" or re.fullmatch("-v+", arg):
        invocation.verbose += 1 if arg == "--verbose" else len(arg) - 1
    else:
        name, value = _valued(args, ("-o", *_VALUED))
        if name is None or value is None or value.startswith("-"):
            return False
        key = _VALUED.get(name, "output")
        if key == "output":
            invocation.output = _format(value)
            return invocation.output is not None
        if key == "config" and (not value or Path(value).is_dir()):
            return False  # Typer's own message: the path is a directory
        if key == "set":
            invocation.sets.append(value)
        else:
            setattr(invocation, key, value)
        return True
    del args[0]
    return True


def _valued(args: list[str], names: Sequence[str]) -> tuple[str | None, str | None]:
    """``--name VALUE``, ``--name=VALUE`` or ``-oVALUE`` at the head of ``args``, consumed."""
    arg = args[0]
    for name in names:
        if arg == name and len(args) > 1:
            value = args[1]
            del args[:2]
            return name, value
        if name.startswith("--") and arg.startswith(name + "="):
            del args[0]
            return name, arg[len(name) + 1 :]
        if not name.startswith("--") and arg.startswith(name) and len(arg) > len(name):
            del args[0]
            return name, arg[len(name) :]
    return None, None


def _format(value: str | None) -> OutputFormat | None:
    """``-o``'s value, any case, as Typer reads it; None for anything else."""
    if value is None or not value.isascii():
        return None
    return _FORMATS.get(value.lower())


def _overrides(values: list[str]) -> dict[str, str] | None:
    """``--set`` flags as the root reads them; None when one is malformed (Typer says so)."""
    overrides = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            return None
        overrides[key.strip()] = value
    return overrides


def _ping(settings: ProbeSettings, verbose: int) -> dict[str, Any]:
    """`DatabaseManager.ping` on the probe's settings, run as the CLI runs a core call."""
    import asyncio

    from revoctl.core.db.ping import ping_database
    from revoctl.core.log_handler import configure_logging
    from revoctl.core.redaction import install_log_redaction

    level = "debug" if verbose > 1 else "info" if verbose else None
    configure_logging(level or settings.logging["level"], settings.logging["format"])
    install_log_redaction()
    ping = ping_database(
        settings.url,
        role="cli",
        connect_timeout=settings.database["connect_timeout"],
        retry_attempts=settings.database["retry_attempts"],
    )
    return asyncio.run(ping)
