"""Help pages in the manner of gh: plain sections, a value name only where a flag takes one.

Typer draws help in boxes and labels every flag with its type (``<bool>``, ``<int>``,
``{name}``). An operator reads help to find a flag and copy an example, so revoctl's
pages are plain text: a description, USAGE, COMMANDS or ARGUMENTS, FLAGS, INHERITED
FLAGS, EXAMPLES. Backquoted spans and example lines are never broken across lines.
"""

from __future__ import annotations

import enum
import os
import re
import shutil
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

from typer.core import TyperCommand, TyperGroup

if TYPE_CHECKING:
    from typer._click.core import Command, Context, Parameter
    from typer._click.formatting import HelpFormatter

MAX_WIDTH = 100
_CODE = re.compile(r"`[^`]*`")
_HIDDEN_ROOT_FLAGS = frozenset({"install_completion", "show_completion"})


class HelpCommand(TyperCommand):
    """A command whose help page reads like gh's."""

    def format_help(self, ctx: Context, formatter: HelpFormatter) -> None:
        formatter.write(render_help(ctx, self))


class HelpGroup(TyperGroup):
    """A command group whose help page reads like gh's."""

    def format_help(self, ctx: Context, formatter: HelpFormatter) -> None:
        formatter.write(render_help(ctx, self))


def adopt(command: Command) -> Command:
    """Give ``command`` and every command under it revoctl's help pages.

    Typer builds plain `TyperCommand`/`TyperGroup` objects from each group module;
    switching their class here, where the groups are mounted, spares every module
    from naming the classes itself.
    """
    if type(command) is TyperGroup:
        command.__class__ = HelpGroup
    elif type(command) is TyperCommand:
        command.__class__ = HelpCommand
    for child in getattr(command, "commands", {}).values():
        adopt(child)
    return command


def render_help(ctx: Context, command: Command) -> str:
    """The whole help page of ``command``."""
    width = _width()
    description, examples = _split_examples(command.help or "")
    sections: list[str] = []
    if description:
        sections.append(_paragraphs(description, width, indent=""))
    sections.append(_section("USAGE", [f"  {_usage(ctx, command)}"]))
    subcommands = _subcommands(ctx, command)
    if subcommands:
        sections.append(_section("COMMANDS", _aligned(subcommands, width)))
    arguments = [p for p in command.params if _is_argument(p)]
    if arguments:
        rows = [(_argument_name(p), _param_help(p)) for p in arguments]
        sections.append(_section("ARGUMENTS", _aligned(rows, width)))
    flags = [p for p in command.get_params(ctx) if not _is_argument(p) and not _hidden(ctx, p)]
    if flags:
        rows = [(_flag_label(p), _param_help(p)) for p in flags]
        sections.append(_section("FLAGS", _aligned(rows, width)))
    if ctx.parent is not None:
        inherited = "  --config PATH, --profile NAME, --set KEY=VALUE, -o FORMAT, -v, --no-color"
        sections.append(_section("INHERITED FLAGS", [inherited, "  (see 'revoctl --help')"]))
    if examples:
        sections.append(_section("EXAMPLES", [f"  {line}" for line in examples]))
    if subcommands:
        more = f"  Use '{ctx.command_path} <command> --help' for more about a command."
        sections.append(_section("LEARN MORE", [more]))
    return "\n\n".join(sections) + "\n"


def _width() -> int:
    columns = os.environ.get("COLUMNS", "")
    width = int(columns) if columns.isdigit() else shutil.get_terminal_size().columns
    return max(40, min(width, MAX_WIDTH))


def _split_examples(text: str) -> tuple[str, list[str]]:
    """The docstring's prose, and the lines of its ``Examples:`` paragraph."""
    head, marker, tail = text.partition("Examples:")
    if not marker:
        return text.strip(), []
    return head.strip(), [line.strip() for line in tail.strip().splitlines() if line.strip()]


def _paragraphs(text: str, width: int, indent: str) -> str:
    """Each paragraph refilled to ``width``; code spans and ``$``-lines kept whole."""
    out = []
    for paragraph in re.split(r"\n\s*\n", text.strip()):
        lines = paragraph.splitlines()
        if all(line.lstrip().startswith("$") for line in lines):
            out.append("\n".join(indent + line.strip() for line in lines))
            continue
        out.append(_fill(" ".join(line.strip() for line in lines), width, indent))
    return "\n\n".join(out)


def _fill(text: str, width: int, indent: str, subsequent: str | None = None) -> str:
    spans: list[str] = []

    def keep(match: re.Match[str]) -> str:
        spans.append(match.group(0))
        return f"\x00{len(spans) - 1}" + "\x01" * max(0, len(match.group(0)) - 2)

    filled = textwrap.fill(
        _CODE.sub(keep, text),
        width=width,
        initial_indent=indent,
        subsequent_indent=indent if subsequent is None else subsequent,
        break_long_words=False,
        break_on_hyphens=False,
    )
    return re.sub("\x00(\\d+)\x01*", lambda m: spans[int(m.group(1))], filled)


def _section(title: str, lines: list[str]) -> str:
    return "\n".join([title, *lines])


def _aligned(rows: list[tuple[str, str]], width: int) -> list[str]:
    label_width = min(max(len(label) for label, _ in rows), 34)
    lines = []
    for label, text in rows:
        head = f"  {label.ljust(label_width)}  "
        if len(label) > label_width:
            lines.append(f"  {label}")
            head = " " * (label_width + 4)
        lines.append(_fill(text, width, head, " " * (label_width + 4)) if text else head.rstrip())
    return lines


def _usage(ctx: Context, command: Command) -> str:
    pieces = [ctx.command_path]
    pieces += [_argument_name(p) if p.required else f"[{_argument_name(p)}]"
               for p in command.params if _is_argument(p)]  # fmt: skip
    if isinstance(command, TyperGroup):
        pieces.append("<command>")
    pieces.append("[flags]")
    return " ".join(pieces)


def _subcommands(ctx: Context, command: Command) -> list[tuple[str, str]]:
    if not isinstance(command, TyperGroup):
        return []
    rows = []
    for name in command.list_commands(ctx):
        sub = command.get_command(ctx, name)
        if sub is not None and not sub.hidden:
            rows.append((f"{name}:", sub.get_short_help_str(limit=200)))
    return rows


def _is_argument(param: Parameter) -> bool:
    return param.param_type_name == "argument"


def _argument_name(param: Parameter) -> str:
    return (param.metavar or param.name or "").upper()


def _hidden(ctx: Context, param: Parameter) -> bool:
    if getattr(param, "hidden", False):
        return True
    # Completion set-up belongs to the root's page, not to every command's.
    return ctx.parent is not None and param.name in _HIDDEN_ROOT_FLAGS


def _flag_label(param: Parameter) -> str:
    longs = [o for o in param.opts if o.startswith("--")]
    shorts = [o for o in param.opts if not o.startswith("--")]
    label = (f"{shorts[0]}, " if shorts else "    ") + ", ".join(longs or shorts)
    value = _value_name(param)
    return f"{label} {value}" if value else label


def _value_name(param: Parameter) -> str:
    """What the flag takes: nothing for a switch or a counter, else a short name."""
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return ""
    if param.metavar:
        return param.metavar
    annotation = _annotation(param)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "|".join(str(member.value) for member in annotation)
    if annotation is Path:
        return "PATH"
    return (param.name or "value").upper()


def _annotation(param: Parameter) -> Any:
    descriptor = getattr(param, "type_descriptor", None)
    annotation = getattr(descriptor, "annotation", None)
    args = getattr(annotation, "__args__", ())
    if args:  # X | None
        annotation = next((a for a in args if a is not type(None)), annotation)
    return annotation


def _param_help(param: Parameter) -> str:
    text = getattr(param, "help", None) or ""
    if param.name == "help":
        return "Show help for this command."
    extras = []
    default = param.default
    shown_default = (
        default not in (None, False, 0, (), [])
        and not getattr(param, "is_flag", False)
        and not _is_argument(param)
    )
    if shown_default:
        extras.append(f"default {default.value if isinstance(default, enum.Enum) else default}")
    envvar = getattr(param, "envvar", None)
    if envvar:
        extras.append(f"env {envvar}")
    if extras:
        note = f"({'; '.join(extras)})"
        text = f"{text.removesuffix('.')} {note}." if text else note
    return text
