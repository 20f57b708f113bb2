"""``comfyrig --help``: the root help, drawn without Rich or Typer.

The root help is static (the command table), and importing Typer and Rich
costs more than the whole answer may take (start-up is measured by
benchmarks/bench_cli.py), so this module draws the same panels as Typer's
Rich help with plain strings and, on a terminal, ANSI colour. It imports
nothing; the caller decides width, colour and whether box characters can be
printed.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing and collections.abc are not imported just for annotations
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ["render_root_help", "wrap"]

_RESET = "\x1b[0m"
_STYLES = {"usage": "\x1b[33m", "name": "\x1b[1;36m", "switch": "\x1b[1;32m", "border": "\x1b[2m"}
_UNICODE_BOX = ("╭", "─", "╮", "│", "╰", "╯")
_ASCII_BOX = ("+", "-", "+", "|", "+", "+")


def wrap(text: str, width: int) -> list[str]:
    """Greedy word wrap; a word longer than ``width`` stays whole on its line."""
    lines: list[str] = []
    line = ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return [*lines, line] if line else lines or [""]


def render_root_help(
    prog: str,
    description: str,
    options: Sequence[tuple[str, str, str]],
    commands: Sequence[tuple[str, str]],
    *,
    width: int,
    color: bool,
    unicode: bool,
) -> str:
    """The help text, ending in a newline.

    ``options`` are (long flag, short flag or "", help); ``commands`` are
    (name, one line of help). ``width`` is in columns.
    """
    width = max(width, 40)

    def paint(style: str, text: str) -> str:
        return f"{_STYLES[style]}{text}{_RESET}" if color and text else text

    out = ["", f" {paint('usage', 'Usage:')} {prog} [OPTIONS] COMMAND [ARGS]...", ""]
    out += [f" {line}" for line in wrap(description, width - 2)]
    out.append("")
    long_w = max(len(o[0]) for o in options)
    short_w = max(len(o[1]) for o in options)
    option_rows = [
        (f"{paint('name', long)}{' ' * (long_w - len(long))}  {paint('switch', short)}{' ' * (short_w - len(short))}",
         long_w + 2 + short_w, text)
        for long, short, text in options
    ]
    name_w = max(len(c[0]) for c in commands)
    command_rows = [(f"{paint('name', name)}{' ' * (name_w - len(name))}", name_w, text) for name, text in commands]
    out += _panel("Options", option_rows, width, paint, _UNICODE_BOX if unicode else _ASCII_BOX)
    out += _panel("Commands", command_rows, width, paint, _UNICODE_BOX if unicode else _ASCII_BOX)
    return "\n".join(out) + "\n"


def _panel(
    title: str,
    rows: Sequence[tuple[str, int, str]],
    width: int,
    paint: Callable[[str, str], str],
    box: tuple[str, str, str, str, str, str],
) -> list[str]:
    """A titled box; each row is (painted first column, its visible width, help)."""
    top_left, horizontal, top_right, vertical, bottom_left, bottom_right = box
    inner = width - 4  # the borders and one space inside each
    head = f"{horizontal} {title} "
    lines = [paint("border", f"{top_left}{head}{horizontal * (width - 2 - len(head))}{top_right}")]
    column = max(visible for _, visible, _ in rows) + 2
    for first, visible, text in rows:
        wrapped = wrap(text, max(inner - column, 10))
        for n, part in enumerate(wrapped):
            lead = f"{first}{' ' * (column - visible)}" if n == 0 else " " * column
            pad = " " * max(inner - column - len(part), 0)
            lines.append(f"{paint('border', vertical)} {lead}{part}{pad} {paint('border', vertical)}")
    lines.append(paint("border", f"{bottom_left}{horizontal * (width - 2)}{bottom_right}"))
    return lines
