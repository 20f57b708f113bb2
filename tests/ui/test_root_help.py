"""The root help drawn without Rich: every command, boxes that close, colour only when asked."""

from __future__ import annotations

import re

from comfyrig.cli.commands import COMMANDS, DESCRIPTION
from comfyrig.cli.entry import ROOT_OPTIONS
from comfyrig.ui.root_help import render_root_help, wrap

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def render(width: int = 100, *, color: bool = False, unicode: bool = True) -> str:
    rows = [(name, summary) for name, (_, summary) in COMMANDS.items()]
    return render_root_help("comfyrig", DESCRIPTION, ROOT_OPTIONS, rows, width=width, color=color, unicode=unicode)


def test_lists_every_command_with_its_line_in_table_order() -> None:
    text = render()
    assert " Usage: comfyrig [OPTIONS] COMMAND [ARGS]..." in text
    commands_box = text.split("Commands")[1]
    listed = [line.split()[1] for line in commands_box.splitlines() if line.startswith("│ ")]
    assert listed == list(COMMANDS)
    for name, (_, summary) in COMMANDS.items():
        assert f"│ {name}" in text and summary.split()[0] in text
    assert "--version" in text and "--help     -h" in text and "\x1b[" not in text


def test_every_box_line_has_the_full_width_even_when_help_wraps() -> None:
    for width in (100, 60, 40):
        boxed = [line for line in render(width).splitlines() if line[:1] and line[0] in "╭│╰"]
        assert boxed and {len(line) for line in boxed} == {width}, width
    narrow = render(60)
    assert "│          " in narrow  # a wrapped help line continues under its column


def test_colour_and_ascii_boxes() -> None:
    coloured = render(color=True)
    assert "\x1b[1;36mlaunch\x1b[0m" in coloured
    assert ANSI.sub("", coloured) == render()
    ascii_only = render(unicode=False)
    assert ascii_only.isascii() and "+- Commands -" in ascii_only


def test_wrap() -> None:
    assert wrap("a bb ccc dddd", 6) == ["a bb", "ccc", "dddd"]
    assert wrap("unbreakable-word x", 5) == ["unbreakable-word", "x"]
    assert wrap("", 10) == [""]
