"""The batch progress view and summary: pure functions from snapshots/reports to Rich renderables."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from ..batch.dispatcher import BatchSnapshot, WorkerRow

__all__ = ["batch_view", "dry_run_table", "duration", "summary_view"]

_STATE_STYLE = {"up": "green", "down": "yellow", "gone": "bold red"}


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def _overall(snap: BatchSnapshot) -> RenderableType:
    grid = Table.grid(padding=(0, 1), expand=True)
    grid.add_column(ratio=1)
    grid.add_column(no_wrap=True)
    finished = snap.done + snap.failed
    bar = ProgressBar(total=max(snap.total, 1), completed=finished, width=None)
    counts = Text()
    counts.append(f"{snap.done} done", style="green")
    counts.append(" · ")
    counts.append(f"{snap.failed} failed", style="red" if snap.failed else "dim")
    counts.append(f" · {snap.active} in flight · {snap.pending} waiting · {snap.total} total")
    grid.add_row(bar, counts)
    speed = Text(style="cyan")
    speed.append(f"{snap.rate_per_min:.1f} jobs/min" if snap.rate_per_min else "- jobs/min")
    speed.append(f" · ETA {duration(snap.eta_s)}" if snap.eta_s is not None else " · ETA ?")
    speed.append(f" · elapsed {duration(snap.elapsed_s)}")
    if snap.done_before:
        speed.append(f" · {snap.done_before} done by an earlier run", style="dim")
    if snap.stopping:
        speed.append("  STOPPING" + (" (interrupting)" if snap.stopping == "hard" else " (finishing running jobs)"), style="bold yellow")
    return Group(grid, speed)


def _step(row: WorkerRow) -> RenderableType:
    if row.step and row.step[1]:
        value, total = row.step
        cell = Table.grid(padding=(0, 1))
        cell.add_row(ProgressBar(total=float(total), completed=float(value), width=12), Text(f"{value:g}/{total:g}"))
        return cell
    return Text("")


def _workers(snap: BatchSnapshot) -> Table:
    table = Table(box=box.SIMPLE_HEAD, expand=True)
    for column in ("worker", "GPU", "state", "job", "node", "step", "done", "mean"):
        table.add_column(column, no_wrap=True, overflow="ellipsis")
    for row in snap.workers:
        table.add_row(
            row.name,
            row.label,
            Text(row.state, style=_STATE_STYLE.get(row.state, "")),
            row.job or "-",
            row.node or "",
            _step(row),
            str(row.done) + (f" ({row.failed} failed)" if row.failed else ""),
            f"{row.mean_s:.1f}s" if row.mean_s is not None else "-",
        )
    return table


def batch_view(snap: BatchSnapshot, title: str) -> RenderableType:
    parts: list[RenderableType] = [Text(title, style="bold cyan"), _overall(snap), _workers(snap)]
    for line in snap.recent:
        parts.append(Text(line, style="yellow", overflow="ellipsis", no_wrap=True))
    return Group(*parts)


def summary_view(report: dict[str, Any]) -> RenderableType:
    head = Text()
    head.append(f"{report['done']}/{report['total']} done", style="bold green")
    if report["failed"]:
        head.append(f", {report['failed']} failed", style="bold red")
    if report["unfinished"]:
        head.append(f", {report['unfinished']} unfinished", style="bold yellow")
    head.append(f" in {duration(report['wall_s'])}")
    if report.get("jobs_per_min"):
        head.append(f" ({report['jobs_per_min']:.1f} jobs/min)")
    if report["done_before"]:
        head.append(f"; {report['done_before']} were done by an earlier run", style="dim")
    table = Table(title="Workers", box=box.SIMPLE_HEAD)
    for column in ("worker", "GPU", "jobs", "mean s/job", "retried", "failed"):
        table.add_column(column, justify="left" if column in ("worker", "GPU") else "right")
    for w in report["workers"]:
        table.add_row(w["name"], w["gpu"], str(w["jobs"]), "-" if w["mean_s"] is None else f"{w['mean_s']:.2f}",
                      str(w["retried"]), str(w["failed"]))
    parts: list[RenderableType] = [head, table]
    if report["failures"]:
        fails = Table(title="Failures", box=box.SIMPLE_HEAD)
        for column in ("job", "values", "reason"):
            fails.add_column(column, overflow="fold")
        for f in report["failures"][:20]:
            values = ", ".join(f"{k}={v}" for k, v in f["values"].items())
            fails.add_row(f["job"], values, f["text"])
        if len(report["failures"]) > 20:
            fails.caption = f"... and {len(report['failures']) - 20} more in report.json"
        parts.append(fails)
    if report.get("stopped_because"):
        parts.append(Text(f"Stopped early: {report['stopped_because']}.", style="bold yellow"))
    if report["unfinished"]:
        parts.append(Text("Run the same command again to finish the rest; done jobs are skipped.", style="yellow"))
    parts.append(Text(f"Outputs: {report['out_dir']}/outputs ({report['output_files']} files), manifest.jsonl, report.json",
                      style="dim"))
    return Group(*parts)


def dry_run_table(jobs: list[tuple[int, str, dict[str, Any]]], count: int) -> RenderableType:
    table = Table(title=f"{count} job{'s' if count != 1 else ''}" + (f" (first {len(jobs)})" if len(jobs) < count else ""),
                  box=box.SIMPLE_HEAD)
    table.add_column("#", justify="right")
    table.add_column("job id")
    table.add_column("values", overflow="fold")
    for index, job, values in jobs:
        table.add_row(str(index), job, ", ".join(f"{k}={v!r}" for k, v in values.items()) or "(the workflow as is)")
    return table
