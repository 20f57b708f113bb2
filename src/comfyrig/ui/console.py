"""Consoles: colour on a terminal, plain text in pipes or with NO_COLOR."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

    from rich.console import Console

__all__ = ["make_console"]


def make_console(environ: Mapping[str, str], *, stderr: bool = False) -> Console:
    # Rich is imported on the first console, not with this module: commands
    # import make_console at the top, and their JSON output never needs Rich.
    from rich.console import Console

    # Rich already drops colour when the stream is not a terminal; NO_COLOR is
    # passed explicitly so it comes from the one environment snapshot.
    return Console(stderr=stderr, no_color="NO_COLOR" in environ, highlight=False, soft_wrap=False)
