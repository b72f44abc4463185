"""The ``-o/--output`` option every command takes, and the output classes it selects.

The output itself (tables, JSON, YAML, messages) is `revoctl.cli._output`, which does
not import Typer; the option needs Typer, so it lives here, beside the names the
command modules import with it.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from revoctl.cli._output import Columns, Console, OutputFormat, Table, cell_text

__all__ = ["Columns", "Console", "OutputFormat", "OutputOption", "Table", "cell_text"]


def _inherit_output(ctx: typer.Context, param: typer.CallbackParam, value: OutputFormat) -> Any:
    """The command's own ``-o``, else the one given before the command or REVOCTL_OUTPUT."""
    from typer._click.core import ParameterSource

    if param.name and ctx.get_parameter_source(param.name) is ParameterSource.COMMANDLINE:
        return value
    return ctx.find_root().params.get("output") or value


OutputOption = Annotated[
    OutputFormat,
    typer.Option(
        "--output",
        "-o",
        case_sensitive=False,
        callback=_inherit_output,
        help="Output format.",
    ),
]
