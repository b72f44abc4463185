"""``revoctl db ping`` and ``revoctl health`` without Typer: the probes readiness checks run.

Typer builds a pydantic adapter for every flag it parses (about 40 ms with its own
import), and the settings models are pydantic (about 110 ms): together more than the
100 ms an ``asyncpg.connect`` + ``SELECT 1`` takes. So `revoctl.cli.main` first offers
the command line to `run_fast`, which reads the plain forms of ``[global flags] db ping
[-o FORMAT]`` and ``[global flags] health [-o FORMAT] [--fail-on LEVEL]`` itself.
``db ping`` then answers from settings a run has already validated
(`revoctl._probe_cache`), without pydantic; ``health`` needs every service, so it loads
the configuration as usual. Anything else (help, completion, an unknown, clustered or
malformed flag, an unseen or invalid configuration, a database URL with a
``${secret:...}`` reference) returns None and Typer runs the line as always, so help,
usage errors and configuration errors are Typer's and the loader's own. What runs is
what the Typer commands run (they call the same functions), with the same output and
exit codes.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from revoctl._layers import ENV_OUTPUT
from revoctl.cli._output import Console, OutputFormat
from revoctl.core.errors import CheckFailedError, RevoctlError, UsageError

if TYPE_CHECKING:
    from revoctl._layers import Sources
    from revoctl._probe_cache import ProbeSettings
    from revoctl.config import LoadedConfig
    from revoctl.core.health import Status
    from revoctl.core.services import Services

T = TypeVar("T")

COMPLETE_VAR = "_REVOCTL_COMPLETE"
FAIL_ON: dict[str, Status] = {"degraded": "degraded", "unhealthy": "unhealthy"}
"""``--fail-on``'s values, exactly as written (Typer reads them case-sensitively)."""
_COMMAND_FLAGS = {"db ping": ("-o", "--output"), "health": ("-o", "--output", "--fail-on")}
_VALUED = {"--config": "config", "--profile": "profile", "--set": "set", "--output": "output"}
_FORMATS = {member.value: member for member in OutputFormat}

Work = Callable[[Console, OutputFormat], None]
CLI_EXPORT_SECONDS = 2.0
"""With ``[tracing]`` on, the longest a command waits at exit for its spans to be sent."""


@dataclass
class Invocation:
    """``db ping`` or ``health`` as the command line gave it."""

    command: str = "db ping"
    config: str | None = None
    profile: str | None = None
    sets: list[str] = field(default_factory=list)
    output: OutputFormat | None = None
    """``-o`` before the command, else ``REVOCTL_OUTPUT``."""
    verbose: int = 0
    no_color: bool = False
    command_output: OutputFormat | None = None
    fail_on: Status = "unhealthy"


def run_fast(argv: Sequence[str], env: Mapping[str, str]) -> int | None:
    """Run ``db ping`` or ``health`` and return the exit code; None when Typer should run
    the line."""
    invocation = parse(argv, env)
    work = _prepare(invocation, env) if invocation else None
    if invocation is None or work is None:
        return None
    console = Console(no_color=invocation.no_color, verbose=invocation.verbose)
    try:
        work(console, invocation.command_output or invocation.output or OutputFormat.table)
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
    """The invocation, when ``argv`` is a probe command in a form read the same way as Typer."""
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
    if args[:2] == ["db", "ping"]:
        del args[:2]
    elif args[:1] == ["health"]:
        invocation.command = "health"
        del args[:1]
    else:
        return None
    while args:
        name, value = _valued(args, _COMMAND_FLAGS[invocation.command])
        if name == "--fail-on" and value in FAIL_ON:
            invocation.fail_on = FAIL_ON[value]
            continue
        chosen = _format(value) if name in ("-o", "--output") else None
        if chosen is None:
            return None
        invocation.command_output = chosen
    return invocation


def show_health(
    console: Console, report: dict[str, Any], output: OutputFormat, fail_on: Status
) -> None:
    """Print the health document, then fail when its status reaches ``fail_on``.

    :raises CheckFailedError: the status is ``fail_on`` or worse.
    """
    from revoctl.core.health import at_or_past

    if output is OutputFormat.table:
        rows = [[name, svc["status"], _detail(svc)] for name, svc in report["services"].items()]
        console.table(["service", "status", "detail"], rows)
        console.line(f"overall: {report['status']}")
    else:
        console.emit(report, output)
    if at_or_past(report["status"], fail_on):
        raise CheckFailedError(f"status is {report['status']} (--fail-on {fail_on})")


def against_services(
    loaded: LoadedConfig, op: Callable[[Services], Awaitable[T]], command: str = "revoctl"
) -> T:
    """Run one core call against the configured services (role ``cli``), then close them;
    in a ``command`` span when ``[tracing]`` is on."""
    import asyncio  # not at module level: it costs start-up time that --help never needs

    from revoctl.core import tracing
    from revoctl.core._process import Role
    from revoctl.core.services import open_services

    async def run() -> T:
        async with open_services(loaded, role=Role.CLI) as services:
            return await op(services)

    tracing.configure(loaded.settings.tracing, export_seconds=CLI_EXPORT_SECONDS)
    with tracing.span(command, command=command):
        return asyncio.run(run())


def configured(sources: Sources, verbose: int) -> LoadedConfig:
    """The configuration validated from ``sources``, and logging set as it and -v say.

    :raises ConfigError: the configuration is invalid.
    """
    from revoctl.config import validate_sources
    from revoctl.core.log_handler import configure_logging

    loaded = validate_sources(sources, os.environ)
    logging = loaded.settings.logging
    configure_logging(log_level_for(verbose) or logging.level, logging.format)
    return loaded


def _prepare(invocation: Invocation, env: Mapping[str, str]) -> Work | None:
    """What runs the command, once its configuration is known good; None to leave it to Typer."""
    from revoctl._layers import read_sources
    from revoctl._probe_cache import recall
    from revoctl.core.references import references_secrets

    try:
        overrides = parse_set(invocation.sets)
        sources = read_sources(invocation.config, invocation.profile, overrides, env, Path.cwd())
        if invocation.command == "health":
            loaded = configured(sources, invocation.verbose)
        else:
            settings = recall(sources, env)
    except RevoctlError:
        return None  # Typer's run reports it, word for word
    if invocation.command == "health":

        def health(console: Console, output: OutputFormat) -> None:
            report = against_services(loaded, lambda svc: svc.health_check(), "revoctl health")
            show_health(console, report, output, invocation.fail_on)

        return health
    if settings is None or references_secrets(settings.url):
        return None
    return lambda console, output: console.emit(_ping(settings, invocation.verbose), output)


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


def parse_set(values: list[str]) -> dict[str, str]:
    """``--set KEY=VALUE`` flags as a mapping.

    :raises UsageError: a flag has no ``=`` or no key.
    """
    overrides = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set expects KEY=VALUE with a dotted key, got {item!r}")
        overrides[key.strip()] = value
    return overrides


def _ping(settings: ProbeSettings, verbose: int) -> dict[str, Any]:
    """`DatabaseManager.ping` on the probe's settings, run as the CLI runs a core call."""
    import asyncio

    from revoctl.core.db.ping import ping_database
    from revoctl.core.log_handler import configure_logging
    from revoctl.core.redaction import install_log_redaction

    configure_logging(
        log_level_for(verbose) or settings.logging["level"], settings.logging["format"]
    )
    install_log_redaction()
    ping = ping_database(
        settings.url,
        role="cli",
        connect_timeout=settings.database["connect_timeout"],
        retry_attempts=settings.database["retry_attempts"],
    )
    return asyncio.run(ping)


def log_level_for(verbose: int) -> str | None:
    """-v: revoctl's steps; -vv: everything; None: the configured level (``[logging]``)."""
    return "debug" if verbose > 1 else "info" if verbose else None


def _detail(service: dict[str, object]) -> str:
    """Why first (the reason it is degraded, the error that made it unhealthy), then figures."""
    from revoctl.cli._output import cell_text

    why = [str(service[key]) for key in ("reason", "error") if service.get(key)]
    figures = [
        f"{key}={cell_text(value)}"
        for key, value in service.items()
        if key not in ("status", "reason", "error", "last_error")
        and value is not None
        and not isinstance(value, dict)
    ]
    return "; ".join([*why, ", ".join(figures)] if figures else why)
