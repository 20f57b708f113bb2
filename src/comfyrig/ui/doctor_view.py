"""The doctor's table: check, status, what was found, the fix."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.table import Table
from rich.text import Text

from ..doctor.result import STATUSES, CheckResult, Status

__all__ = ["doctor_table", "doctor_view"]

_WIDE = 120  # from this width the fix gets a column of its own


def doctor_table(results: Sequence[CheckResult], *, wide: bool = True) -> Table:
    """Four columns (check, status, found, fix); narrow, the fix goes under what was found."""
    table = Table(title="comfyrig doctor", box=box.SIMPLE_HEAD, expand=True, padding=(0, 1))
    table.add_column("check", style="cyan", no_wrap=True)
    table.add_column("status", no_wrap=True)
    # "fold": a long path breaks across lines instead of losing its end to an ellipsis.
    table.add_column("found" if wide else "found / fix", ratio=5, overflow="fold")
    if wide:
        table.add_column("fix", ratio=4, overflow="fold")
    for r in results:
        symbol, style = STATUSES[r.status]
        found = Text(r.message)
        fix = Text(r.fix or "", style="dim")
        if wide:
            table.add_row(Text(r.title), Text(symbol, style=style), found, fix)
        else:
            if r.fix:
                found.append("\n→ ").append(fix)
            table.add_row(Text(r.title), Text(symbol, style=style), found)
    return table


def _summary(results: Sequence[CheckResult]) -> Text:
    counts = Counter(r.status for r in results)
    labels: tuple[tuple[Status, str], ...] = (("pass", "passed"), ("warn", "warnings"), ("fail", "failed"), ("skip", "skipped"))
    text = ", ".join(f"{counts[status]} {label}" for status, label in labels)
    return Text(text, style="bold red" if counts["fail"] else "bold yellow" if counts["warn"] else "bold green")


class _FitTable:
    def __init__(self, results: Sequence[CheckResult]) -> None:
        self.results = results

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield doctor_table(self.results, wide=options.max_width >= _WIDE)


def doctor_view(results: Sequence[CheckResult]) -> Group:
    return Group(_FitTable(results), _summary(results))
