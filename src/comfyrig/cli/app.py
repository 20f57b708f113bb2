"""The Typer application and the edge where errors become messages and exit codes."""

from __future__ import annotations

import functools
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import typer
from rich.markup import escape

from .. import __version__
from ..errors import ComfyrigError
from ..ui.console import make_console

__all__ = ["add_group", "app", "command", "main", "SUBCOMMANDS"]

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    name="comfyrig",
    help="Run ComfyUI on every GPU of this machine, correctly and visibly. "
    "With no command, 'comfyrig [OPTIONS]' means 'comfyrig launch [OPTIONS]'.",
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# Which module registers each command. Only the module of the command being
# run is imported, so 'comfyrig gpus' does not pay for httpx, the monitor or
# the batch machinery; --help imports them all.
COMMAND_MODULES: dict[str, str] = {
    "launch": "launch_cmd",
    "gpus": "gpus_cmd",
    "config": "gpus_cmd",
    "status": "status_cmd",
    "stop": "status_cmd",
    "plan": "plan_cmd",
    "doctor": "doctor_cmd",
    "monitor": "monitor_cmd",
    "install": "install_cmd",
    "batch": "batch_cmd",
    "nodes": "install_cmd",
}
SUBCOMMANDS: set[str] = set()
RAW_ARGS: list[str] = []  # the command line as typed, for checks Typer cannot make


def report_error(exc: ComfyrigError) -> None:
    """Print one paragraph on stderr: what is wrong, then what to do."""
    err = make_console(os.environ, stderr=True)
    hint = f" {escape(exc.hint)}" if exc.hint else ""
    err.print(f"[bold red]comfyrig: error:[/] {escape(exc.message)}{hint}", soft_wrap=True)


def command(name: str, *, group: typer.Typer | None = None, **kwargs: Any) -> Callable[[F], F]:
    """Register a command whose int result is the exit code and whose
    ComfyrigError becomes a message: the one place errors meet the user.

    ``group`` registers it under a sub-app (``comfyrig nodes add``) instead.
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
            SUBCOMMANDS.add(name)
            app.command(name, **kwargs)(wrapper)
        else:
            group.command(name, **kwargs)(wrapper)
        return fn

    return decorate


def add_group(name: str, group: typer.Typer, help: str) -> None:
    """Register a sub-app such as ``comfyrig nodes``."""
    SUBCOMMANDS.add(name)
    app.add_typer(group, name=name, help=help)


def _version(value: bool) -> None:
    if value:
        print(f"comfyrig {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    """Run ComfyUI on every GPU of this machine, correctly and visibly."""


def _with_default_command(args: list[str]) -> list[str]:
    # "comfyrig --dual" is "comfyrig launch --dual", as the old launcher script took flags directly.
    if not args:
        return ["launch"]
    first = args[0]
    if first in COMMAND_MODULES or first in ("-h", "--help", "--version"):
        return args
    if not first.startswith("-"):
        # A mistyped command must not become an argument of ComfyUI.
        raise ComfyrigError(
            f"Unknown command {first!r}. Commands: {', '.join(sorted(COMMAND_MODULES))}.",
            hint="Flags for ComfyUI itself go after --, e.g. 'comfyrig --dual -- --lowvram'.",
        )
    return ["launch", *args]


def extra_args_after_dashes(argv: Sequence[str], extra: Sequence[str] | None) -> None:
    """ComfyUI's own flags must follow '--', so a typo is never passed on silently."""
    if extra and "--" not in argv:
        raise ComfyrigError(
            f"Unexpected argument {extra[0]!r}.",
            hint="Flags for ComfyUI itself go after --, e.g. 'comfyrig launch --dual -- --lowvram'.",
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    raw = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _with_default_command(raw)
    except ComfyrigError as exc:
        report_error(exc)
        return exc.exit_code
    RAW_ARGS[:] = raw
    wanted = COMMAND_MODULES.get(args[0])
    for module in sorted(set(COMMAND_MODULES.values())) if wanted is None else [wanted]:
        importlib.import_module(f"{__package__}.{module}")
    try:
        app(args=args, prog_name="comfyrig")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0
