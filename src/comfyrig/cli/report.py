"""Output at the edge: errors as one paragraph on stderr, JSON on stdout."""

from __future__ import annotations

import json
import os
import sys

TYPE_CHECKING = False  # typing is not imported just for annotations (start-up time)
if TYPE_CHECKING:
    from typing import Any

    from ..errors import ComfyrigError

__all__ = ["print_json", "report_error"]


def report_error(exc: ComfyrigError) -> None:
    """Print one paragraph on stderr: what is wrong, then what to do."""
    # Rich is imported here, not at module level: a command that succeeds
    # without printing a table ('gpus --json') must not pay for it.
    from rich.markup import escape

    from ..ui.console import make_console

    err = make_console(os.environ, stderr=True)
    hint = f" {escape(exc.hint)}" if exc.hint else ""
    err.print(f"[bold red]comfyrig: error:[/] {escape(exc.message)}{hint}", soft_wrap=True)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")
