"""The Typer application and the edge where errors become messages and exit codes.

Commands register themselves on ``app`` with :func:`command` when their module
is imported. The root group is a :class:`LazyGroup`: it knows every command
from the table in commands.py and imports a command's module only when that
command is looked up, the pattern Click documents as "lazily loading
subcommands". entry.py answers the root help itself, before Typer is imported.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import typer
import typer.main
from typer.core import TyperCommand, TyperGroup

if TYPE_CHECKING:
    # Typer 0.26+ vendors Click as typer._click; only the annotations name it.
    from typer import _click as click

from .. import __version__
from ..errors import ComfyrigError
from .commands import COMMANDS, DESCRIPTION
from .report import report_error

__all__ = ["RAW_ARGS", "ComfyFlagsCommand", "LazyGroup", "add_group", "app", "command", "extra_args_after_dashes", "run_app"]

F = TypeVar("F", bound=Callable[..., Any])

RAW_ARGS: list[str] = []  # the command line as typed, for checks Typer cannot make


class LazyGroup(TyperGroup):
    """The root group: commands come from the table, modules load on first look-up."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            importlib.import_module(f"{__package__}.{COMMANDS[cmd_name][0]}")
            # Importing the module registered its commands on ``app``; Typer
            # turns registrations into Click commands only when it builds a group.
            for name, built in typer.main.get_group(app).commands.items():
                self.commands.setdefault(name, built)
        return self.commands.get(cmd_name)

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # The same text entry.py prints for 'comfyrig --help', so no command module is needed.
        from .entry import root_help

        formatter.write(root_help(os.environ, sys.stdout))


class ComfyFlagsCommand(TyperCommand):
    """A command that passes flags after -- to ComfyUI (``launch``): an unknown option before --
    is most often a ComfyUI flag typed as the old launcher scripts took it (``comfyrig --lowvram``),
    so Click's "No such option" says where it goes."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except Exception as exc:
            name = getattr(exc, "option_name", None)
            if type(exc).__name__ != "NoSuchOption" or not isinstance(name, str):
                raise
            # Click's NoSuchOption (from typer's vendored Click, so matched by name): keep it, say more.
            exc.message = f"No such option: {name}. If it is a ComfyUI flag, it goes after --: comfyrig -- {name}"  # type: ignore[attr-defined]
            raise


app = typer.Typer(
    name="comfyrig",
    cls=LazyGroup,
    help=DESCRIPTION,
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def command(name: str, *, group: typer.Typer | None = None, **kwargs: Any) -> Callable[[F], F]:
    """Register a command whose int result is the exit code and whose
    ComfyrigError becomes a message: the one place errors meet the user.

    ``group`` registers it under a sub-app (``comfyrig nodes add``) instead;
    a top-level command must have a row in commands.py.
    """

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kw: Any) -> None:
            try:
                code = fn(*args, **kw)
            except ComfyrigError as exc:
                report_error(exc)
                raise typer.Exit(exc.exit_code) from None
            except KeyboardInterrupt:
                raise typer.Exit(130) from None
            if code:
                raise typer.Exit(int(code))

        if group is None:
            app.command(name, short_help=COMMANDS[name][1], **kwargs)(wrapper)
        else:
            group.command(name, **kwargs)(wrapper)
        return fn

    return decorate


def add_group(name: str, group: typer.Typer, help: str) -> None:
    """Register a sub-app such as ``comfyrig nodes``; it must have a row in commands.py."""
    app.add_typer(group, name=name, help=help, short_help=COMMANDS[name][1])


def _version(value: bool) -> None:
    if value:
        print(f"comfyrig {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    """Run ComfyUI on every GPU of this machine, correctly and visibly."""


def extra_args_after_dashes(argv: Sequence[str], extra: Sequence[str] | None) -> None:
    """ComfyUI's own flags must follow '--', so a typo is never passed on silently."""
    if extra and "--" not in argv:
        raise ComfyrigError(
            f"Unexpected argument {extra[0]!r}.",
            hint="Flags for ComfyUI itself go after --, e.g. 'comfyrig launch --dual -- --lowvram'.",
        )


def run_app(args: list[str], raw: list[str]) -> int:
    """Run the Typer app on ``args`` (the command already resolved); returns the exit code."""
    RAW_ARGS[:] = raw
    try:
        app(args=args, prog_name="comfyrig")
    except ComfyrigError as exc:
        # Raised by an option's callback (a number out of range), before the command runs.
        report_error(exc)
        return exc.exit_code
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0
