"""The entry point: answers what needs no command at once, hands the rest to Typer.

``comfyrig --help``, ``--version`` and a mistyped command are answered from
the command table (commands.py) without importing Typer, Rich or any command
module; everything else goes to the Typer app (app.py), whose group imports
the module of the one command that runs. What each path imports is checked by
tests/cli/test_import_weight.py and timed by benchmarks/bench_cli.py.
"""

from __future__ import annotations

import os
import sys

from .. import __version__
from ..errors import ComfyrigError
from .commands import COMMANDS, DEFAULT_COMMAND, DESCRIPTION

TYPE_CHECKING = False  # typing is not imported just for annotations (start-up time)
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import TextIO

__all__ = ["ROOT_OPTIONS", "main", "root_help", "run", "with_default_command"]

HELP_FLAGS = ("-h", "--help")
ROOT_OPTIONS: tuple[tuple[str, str, str], ...] = (
    ("--version", "", "Show the version."),
    ("--help", "-h", "Show this message and exit."),
)


def with_default_command(args: list[str]) -> list[str]:
    """The command line Typer is given; raises ComfyrigError for an unknown command."""
    # "comfyrig --dual" is "comfyrig launch --dual", as the old launcher script took flags directly.
    if not args:
        return [DEFAULT_COMMAND]
    first = args[0]
    if first in COMMANDS or first in (*HELP_FLAGS, "--version"):
        return args
    if not first.startswith("-"):
        # A mistyped command must not become an argument of ComfyUI.
        raise ComfyrigError(
            f"Unknown command {first!r}. Commands: {', '.join(sorted(COMMANDS))}.",
            hint="Flags for ComfyUI itself go after --, e.g. 'comfyrig --dual -- --lowvram'.",
        )
    return [DEFAULT_COMMAND, *args]


def root_help(environ: Mapping[str, str], stream: TextIO) -> str:
    """The root help as ``stream`` should show it: its width, colour only on a terminal."""
    from ..ui.root_help import render_root_help

    columns = environ.get("COLUMNS", "")
    if columns.isdigit():
        width = int(columns)
    else:
        try:
            width = os.get_terminal_size(stream.fileno()).columns
        except (OSError, ValueError, AttributeError):
            width = 80  # not a terminal: Rich's default, so pipes read the same as before
    tty = stream.isatty()
    if environ.get("FORCE_COLOR"):
        color = True
    else:
        color = tty and "NO_COLOR" not in environ and environ.get("TERM") != "dumb"
    encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "")
    return render_root_help(
        "comfyrig",
        DESCRIPTION,
        ROOT_OPTIONS,
        [(name, summary) for name, (_, summary) in COMMANDS.items()],
        width=width,
        color=color,
        unicode=encoding.startswith("utf"),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    raw = list(sys.argv[1:] if argv is None else argv)
    first = raw[0] if raw else ""
    if first in HELP_FLAGS:  # eager, like Click's: what follows is not looked at
        sys.stdout.write(root_help(os.environ, sys.stdout))
        return 0
    if first == "--version":
        sys.stdout.write(f"comfyrig {__version__}\n")
        return 0
    try:
        args = with_default_command(raw)
    except ComfyrigError as exc:
        from .report import report_error

        report_error(exc)
        return exc.exit_code
    from .app import run_app  # Typer, and through it the one command's module

    return run_app(args, raw)


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
