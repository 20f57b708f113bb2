"""The entry point: what it answers itself, and what it hands to Typer."""

from __future__ import annotations

import io

import pytest

from comfyrig import __version__
from comfyrig.cli.app import run_app
from comfyrig.cli.entry import root_help, with_default_command
from comfyrig.errors import ComfyrigError

from .conftest import run_cli


class Tty(io.StringIO):
    encoding = "utf-8"

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], ["launch"]),
        (["--dual"], ["launch", "--dual"]),
        (["--dry-run", "--", "--lowvram"], ["launch", "--dry-run", "--", "--lowvram"]),
        (["gpus", "--json"], ["gpus", "--json"]),
        (["nodes", "add", "multigpu"], ["nodes", "add", "multigpu"]),
        (["-h"], ["-h"]),
        (["--version"], ["--version"]),
    ],
)
def test_with_default_command(args: list[str], expected: list[str]) -> None:
    assert with_default_command(args) == expected


def test_an_unknown_command_names_the_commands() -> None:
    with pytest.raises(ComfyrigError, match=r"Unknown command 'lanch'\. Commands: batch, config, doctor, gateway, gpus"):
        with_default_command(["lanch", "--dual"])


def test_help_and_version(capsys: pytest.CaptureFixture[str], clean_env: pytest.MonkeyPatch) -> None:
    code, out, _ = run_cli(capsys, "--help")
    assert code == 0 and "│ gpus " in out and out == run_cli(capsys, "-h", "gpus", "--json")[1]
    assert run_cli(capsys, "--version") == (0, f"comfyrig {__version__}\n", "")


def test_typer_draws_the_same_root_help(capsys: pytest.CaptureFixture[str], clean_env: pytest.MonkeyPatch) -> None:
    # Only reachable by calling the Typer app directly; it must not differ.
    assert run_app(["--help"], ["--help"]) == 0
    via_typer = capsys.readouterr().out
    assert via_typer.rstrip("\n") == run_cli(capsys, "--help")[1].rstrip("\n")


def test_root_help_width_and_colour_follow_the_stream() -> None:
    plain = root_help({"COLUMNS": "72"}, io.StringIO())
    assert max(len(line) for line in plain.splitlines()) == 72 and "\x1b[" not in plain
    assert "\x1b[" in root_help({"COLUMNS": "72"}, Tty())
    assert "\x1b[" not in root_help({"COLUMNS": "72", "NO_COLOR": "1"}, Tty())
    assert "\x1b[" in root_help({"COLUMNS": "72", "FORCE_COLOR": "1"}, io.StringIO())
