"""The batch's events rendered: the live view, plain lines, the summary, the dry-run plan.

Panels are pure functions from snapshots, reports and plans to Rich renderables;
``BatchView`` is the reporter ``comfyrig batch`` hands to ``run_batch``: it draws
the live view from ``BatchProgress`` snapshots on a terminal, or prints one line
per news event (``batch.events.describe``), and at the end the summary, as a table
or as JSON.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from .. import __version__
from ..batch.events import (
    BatchEvent,
    BatchFinished,
    BatchProgress,
    BatchSnapshot,
    BatchStarted,
    DryRunPlan,
    WorkerRow,
    describe,
)

__all__ = ["BatchView", "batch_view", "dry_run_json", "dry_run_table", "dry_run_view", "duration", "summary_view"]

_STATE_STYLE = {"up": "green", "down": "yellow", "gone": "bold red"}


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = round(seconds)
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
    for news in snap.recent:
        parts.append(Text(describe(news) or "", style="yellow", overflow="ellipsis", no_wrap=True))
    return Group(*parts)


def summary_view(report: Mapping[str, Any]) -> RenderableType:
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


def dry_run_view(plan: DryRunPlan) -> RenderableType:
    count = plan.jobs
    parts: list[RenderableType] = [
        Text(f"{count} job{'s' if count != 1 else ''} from {plan.workflow} -> {plan.out_dir}", style="bold"),
        dry_run_table([(j.index, j.job, dict(j.values)) for j in plan.first], count),
        Text(f"Workers ({plan.backend}): " + ", ".join(f"{n} {g} {u}" for n, u, g in plan.workers), style="dim"),
    ]
    parts.extend(Text(f"⚠ {warning}", style="yellow") for warning in plan.warnings)
    return Group(*parts)


def dry_run_json(plan: DryRunPlan) -> dict[str, Any]:
    """What ``--dry-run --json`` prints."""
    return {
        "workflow": plan.workflow, "workflow_sha256": plan.workflow_sha256, "jobs": plan.jobs,
        "first": [{"index": j.index, "job": j.job, "values": dict(j.values)} for j in plan.first],
        "workers": [{"name": n, "url": u, "gpu": g} for n, u, g in plan.workers],
        "warnings": list(plan.warnings),
    }


class BatchView:
    """The reporter of ``comfyrig batch``.

    ``console`` gets the summary or the dry-run plan (stdout); ``progress`` the live view
    (``live``) or one line per news event (stderr under ``--json``); with ``json_out`` the
    summary and the plan are JSON on ``out`` (stdout when None) instead. News may come from
    the fleet's thread: plain lines are printed under the console's lock, and the live view
    draws only snapshots, which come from the dispatcher's thread. ``close()`` ends a live
    view that is still drawn (an error, Ctrl-C before the end).
    """

    def __init__(self, console: Console, *, progress: Console | None = None, live: bool = False,
                 json_out: bool = False, out: TextIO | None = None) -> None:
        self.console = console
        self.progress = progress or console
        self.live = live
        self.json_out = json_out
        self._out = out
        self._live: Live | None = None
        self._title = ""

    def __call__(self, event: BatchEvent) -> None:
        match event:
            case DryRunPlan():
                if self.json_out:
                    self._json(dry_run_json(event))
                else:
                    self.console.print(dry_run_view(event))
            case BatchStarted(workflow=workflow, out_dir=out_dir, workers=workers, backend=backend) if self.live:
                self._title = (f"comfyrig {__version__} · batch {Path(workflow).name} -> {out_dir} · "
                               f"{workers} worker(s) ({backend})")
                self._live = Live(console=self.progress, refresh_per_second=4, transient=False)
                self._live.start()
            case BatchProgress(snapshot=snapshot):
                if self._live is not None:
                    self._live.update(batch_view(snapshot, self._title))
            case BatchFinished(report=report):
                self.close()
                if self.json_out:
                    self._json(report)
                else:
                    self.console.print(summary_view(report))
            case _ if not self.live:
                line = describe(event)
                if line is not None:
                    self.progress.print(Text(f"comfyrig: {line}"), soft_wrap=True)
            case _:
                pass  # the live view shows workers and failures in its rows

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def _json(self, data: Mapping[str, Any]) -> None:
        out = self._out or sys.stdout
        out.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        out.flush()
