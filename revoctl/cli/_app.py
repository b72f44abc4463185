"""The root command: global options, lazily mounted groups, and the one exit path.

Command groups live in ``revoctl/cli/<group>.py`` and are imported only when
they run (or when help lists them), so ``revoctl --help``, ``--version`` and
TAB completion never import a back end. Errors are turned into the CONTRACT's
exit codes here and nowhere else.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

from revoctl import __version__
from revoctl.cli._fast import against_services, configured, parse_set
from revoctl.cli._help import HelpGroup, adopt
from revoctl.cli._output import Console, OutputFormat
from revoctl.core.errors import UsageError

if TYPE_CHECKING:
    # Typer vendors click; overrides of its Group methods take click's own Context.
    from typer._click.core import Command, Context

    from revoctl._layers import Sources
    from revoctl.config import LoadedConfig, Settings
    from revoctl.core.services import Services

T = TypeVar("T")

# name -> module holding `app`: a Typer group, or a single command when the name is in SINGLE.
COMMANDS: dict[str, str] = {
    "breakers": "revoctl.cli.breakers",
    "config": "revoctl.cli.config",
    "db": "revoctl.cli.db",
    "health": "revoctl.cli.health",
    "keys": "revoctl.cli.keys",
    "limits": "revoctl.cli.limits",
    "secrets": "revoctl.cli.secrets",
    "serve": "revoctl.cli.serve",
}
SINGLE = frozenset({"health", "serve"})

ALIASES: dict[str, str] = {
    "secret": "secrets",
    "limit": "limits",
    "breaker": "breakers",
    "key": "keys",
}


class LazyGroup(HelpGroup):
    """Imports a command group's module the first time the group is asked for."""

    def list_commands(self, ctx: Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        name = ALIASES.get(cmd_name, cmd_name)
        if name not in COMMANDS:
            return None
        if name not in self.commands:
            module = importlib.import_module(COMMANDS[name])
            build = typer.main.get_command if name in SINGLE else typer.main.get_group
            command = adopt(build(module.app))
            command.name = name
            self.commands[name] = command
        return self.commands[name]

    def resolve_command(
        self, ctx: Context, args: list[str]
    ) -> tuple[str | None, Command | None, list[str]]:
        _, command, rest = super().resolve_command(ctx, args)
        return (command.name if command else None), command, rest

    def invoke(self, ctx: Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            _reader_went_away()
        except (typer.Exit, typer.Abort, typer.TyperException, KeyboardInterrupt):
            raise
        except Exception as exc:
            _fail(ctx, exc)

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the CLI; usage errors become one ``error:`` line and exit 2."""
        try:
            code = super().main(
                args, prog_name or "revoctl", complete_var, False, windows_expand_args, **extra
            )
        except typer.TyperException as exc:  # click's usage and parameter errors
            code = exc.exit_code
            ctx = getattr(exc, "ctx", None)
            if type(exc).__name__ == "NoArgsIsHelpError":
                typer.echo(exc.format_message(), err=True)
            else:
                message = exc.format_message()
                if message.startswith("Got unexpected extra argument"):
                    # Never echoed: a stray argument may be a secret typed in the wrong place.
                    message = "unexpected extra argument(s), not shown in case they hold a secret"
                hint = f" (see '{ctx.command_path} --help')" if ctx else ""
                Console().error(message + hint)
        except typer.Abort:
            Console().error("aborted")
            code = 130
        code = code if isinstance(code, int) else 0
        if standalone_mode:
            sys.exit(code)
        return code


def _fail(ctx: Context, exc: BaseException) -> NoReturn:
    """Report ``exc`` (see `Console.fail`) and exit with its code."""
    state = ctx.find_object(AppState)
    raise typer.Exit((state.console if state else Console()).fail(exc))


def _reader_went_away() -> NoReturn:
    """The reader closed the pipe (``revoctl config show | head -1``): stop quietly, as any
    Unix tool does, and keep Python from failing again when it flushes stdout at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    raise typer.Exit(0)


@dataclass
class AppState:
    """What the global options set; commands receive it through ``ctx.obj``."""

    config_file: Path | None = None
    profile: str | None = None
    verbose: int = 0
    no_color: bool = False
    output: OutputFormat | None = None
    """``-o`` given before the command (``revoctl -o json health``), as kubectl allows."""
    overrides: dict[str, str] = field(default_factory=dict)

    @cached_property
    def console(self) -> Console:
        return Console(no_color=self.no_color, verbose=self.verbose)

    @cached_property
    def sources(self) -> Sources:
        """The configuration's file, profile, env and flags, read on first use."""
        from revoctl._layers import read_sources

        return read_sources(self.config_file, self.profile, self.overrides, os.environ, Path.cwd())

    @cached_property
    def loaded(self) -> LoadedConfig:
        """The configuration, loaded on first use (so ``--help`` never parses it)."""
        return configured(self.sources, self.verbose)

    @property
    def settings(self) -> Settings:
        return self.loaded.settings

    @classmethod
    def of(cls, ctx: typer.Context) -> AppState:
        state = ctx.find_object(cls)
        if state is None:  # a group module run on its own, as in some tests
            state = ctx.ensure_object(cls)
        return state


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one core coroutine to completion: the CLI's only bridge into async code."""
    import asyncio  # not at module level: it costs start-up time that --help never needs

    return asyncio.run(coro)


def call(ctx: typer.Context, op: Callable[[Services], Awaitable[T]]) -> T:
    """Run one core call against the configured services (role ``cli``), then close them.

    Components are built on first use, so a command builds only what ``op`` touches.
    """
    return against_services(AppState.of(ctx).loaded, op, ctx.command_path)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"revoctl {__version__}")
        raise typer.Exit()


app = typer.Typer(
    cls=LazyGroup,
    name="revoctl",
    help="Operate the platform's secrets, rate limits, database and circuit breakers.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="Config file (else REVOCTL_CONFIG, ./revoctl.toml, the XDG config).",
            dir_okay=False,
        ),
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option(
            "--profile", metavar="NAME", help="Profile laid over the config (else REVOCTL_PROFILE)."
        ),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set", metavar="KEY=VALUE", help="Override one setting, e.g. database.pool_size=5."
        ),
    ] = None,
    output: Annotated[
        OutputFormat | None,
        typer.Option(
            "--output",
            "-o",
            envvar="REVOCTL_OUTPUT",
            case_sensitive=False,
            help="Output format for the command that follows.",
        ),
    ] = None,
    verbose: Annotated[
        int,
        typer.Option(
            "--verbose",
            "-v",
            count=True,
            help="More logging: -v revoctl's steps, -vv everything; tracebacks on errors.",
        ),
    ] = 0,
    no_color: Annotated[
        bool, typer.Option("--no-color", help="No colour (NO_COLOR works too).")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """Operate the platform's secrets, rate limits, database and circuit breakers."""
    state = ctx.ensure_object(AppState)
    state.config_file, state.profile, state.output = config, profile, output
    state.verbose, state.no_color = verbose, no_color
    try:
        state.overrides = parse_set(set_ or [])
    except UsageError as exc:
        _fail(ctx, exc)


def run_typer() -> None:
    """Run the command line through the Typer app (see `revoctl.cli.main`)."""
    typer.main.get_command(app).main(prog_name="revoctl")
