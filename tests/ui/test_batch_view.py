"""The batch progress view and summary render from snapshots; BatchView renders the batch's events (ui/batch_view.py)."""

from __future__ import annotations

import io
import json

from rich.console import Console

from comfyrig.batch.events import (
    BatchEvent,
    BatchFinished,
    BatchProgress,
    BatchSnapshot,
    BatchStarted,
    DryRunPlan,
    FleetNews,
    JobDone,
    JobFailed,
    PlannedJob,
    StopRequested,
    WorkerCameUp,
    WorkerRow,
)
from comfyrig.launch.events import LogLine, Ready
from comfyrig.ui.batch_view import (
    BatchView,
    batch_view,
    dry_run_table,
    duration,
    summary_view,
)


def render(renderable: object) -> str:
    console = Console(file=io.StringIO(), width=110, color_system=None)
    console.print(renderable)
    return console.file.getvalue()  # type: ignore[attr-defined]


def row(name: str, label: str, **kw: object) -> WorkerRow:
    base = {"name": name, "label": label, "url": "http://127.0.0.1:8188", "state": "up", "job": None, "node": None, "step": None,
                "queued": 0, "done": 0, "failed": 0, "requeued": 0, "mean_s": None, "device": None}
    base.update(kw)
    return WorkerRow(**base)  # type: ignore[arg-type]


def test_live_view() -> None:
    snap = BatchSnapshot(
        total=100, done=40, failed=2, pending=54, active=4, done_before=10, elapsed_s=125.0, rate_per_min=24.0,
        eta_s=145.0, stopping=None, recent=(JobFailed("1234", {"node": "4", "class_type": "FakeSleep", "exception_type": "RuntimeError",
                                    "message": "boom"}),),
        workers=(row("worker-0", "GPU 0", job="abcd1234abcd1234", node="3", step=(7, 20), done=21, mean_s=2.5),
                 row("worker-1", "GPU 1", state="down", done=19, failed=2, mean_s=2.75)),
    )
    text = render(batch_view(snap, "comfyrig batch"))
    assert "40 done · 2 failed · 4 in flight · 54 waiting · 100 total" in text
    assert "24.0 jobs/min · ETA 2m25s · elapsed 2m05s · 10 done by an earlier run" in text
    lines = [line for line in text.splitlines() if "worker-" in line]
    assert "GPU 0" in lines[0] and "abcd1234abcd1234" in lines[0] and "21" in lines[0] and "2.5s" in lines[0]
    assert "down" in lines[1] and "19 (2 failed)" in lines[1]
    assert "failed 1234: node 4 (FakeSleep): RuntimeError: boom" in text
    stopping = render(batch_view(BatchSnapshot(**{**snap.__dict__, "stopping": "graceful"}), "t"))
    assert "STOPPING (finishing running jobs)" in stopping


def test_summary() -> None:
    report = {
        "done": 8, "total": 10, "failed": 1, "unfinished": 1, "done_before": 0, "wall_s": 61.0, "jobs_per_min": 7.9,
        "out_dir": "out", "output_files": 8, "stopped_because": None,
        "workers": [{"name": "worker-0", "gpu": "GPU 0", "jobs": 8, "mean_s": 1.234, "retried": 1, "failed": 1}],
        "failures": [{"job": "j9", "values": {"1.color": 9}, "text": "node 4 (FakeSleep): RuntimeError: boom"}],
    }
    text = render(summary_view(report))
    assert "8/10 done, 1 failed, 1 unfinished in 1m01s (7.9 jobs/min)" in text
    assert "worker-0" in text and "1.23" in text
    assert "j9" in text and "1.color=9" in text and "RuntimeError: boom" in text
    assert "Run the same command again to finish the rest" in text


def test_dry_run_table_and_durations() -> None:
    text = render(dry_run_table([(0, "abc", {"3.seed": 1}), (1, "def", {})], 50))
    assert "50 jobs (first 2)" in text and "3.seed=1" in text and "(the workflow as is)" in text
    assert [duration(s) for s in (None, 5, 65, 3725)] == ["?", "5s", "1m05s", "1h02m"]


# -- BatchView: the reporter comfyrig batch renders with ------------------------------------------

def console(*, terminal: bool = False) -> Console:
    return Console(file=io.StringIO(), width=110, color_system=None, force_terminal=terminal)


def text_of(c: Console) -> str:
    return c.file.getvalue()  # type: ignore[attr-defined]


SNAP = BatchSnapshot(
    total=2, done=1, failed=0, pending=0, active=1, done_before=0, elapsed_s=3.0, rate_per_min=20.0, eta_s=3.0,
    stopping=None, recent=(), workers=(row("worker-0", "GPU 0", job="abcd1234abcd1234", done=1, mean_s=0.5),),
)
REPORT = {
    "workflow": "wf.json", "out_dir": "out", "total": 2, "done": 2, "failed": 0, "unfinished": 0, "done_before": 0,
    "done_this_run": 2, "output_files": 2, "wall_s": 4.0, "jobs_per_min": 30.0, "interrupted": False,
    "stopped_because": None, "failures": [],
    "workers": [{"name": "worker-0", "gpu": "GPU 0", "url": "u", "device": None, "jobs": 2, "failed": 0, "retried": 0, "mean_s": 0.5}],
}
RUN: list[BatchEvent] = [
    FleetNews(Ready("worker-0", "http://127.0.0.1:8188", 0.4, {})),
    FleetNews(LogLine("worker-0", "Starting server")),
    BatchStarted(workflow="flows/wf.json", out_dir="out", backend="fleet", workers=1, total=2, done_before=0),
    WorkerCameUp("worker-0", "http://127.0.0.1:8188", "cuda:0 NVIDIA H100"),
    BatchProgress(SNAP),
    JobDone("abcd1234abcd1234", "worker-0", 0.5, 1, 1, 2),
    StopRequested(1),
    StopRequested(3),
    BatchProgress(SNAP),
    BatchFinished(REPORT),
]


def test_plain_lines_then_the_summary() -> None:
    out = console()
    view = BatchView(out)
    for event in RUN:
        view(event)
    lines = text_of(out).splitlines()
    assert lines[:5] == [
        "comfyrig: worker-0: ready at http://127.0.0.1:8188 after 0.4 s",
        "comfyrig: 2 jobs, 0 already done; 1 worker(s)",
        "comfyrig: worker-0: up at http://127.0.0.1:8188 (cuda:0 NVIDIA H100)",
        "comfyrig: done abcd1234abcd1234 on worker-0 in 0.5 s (1 file) [1/2]",
        "comfyrig: interrupted: no new jobs; running jobs finish (Ctrl-C again to interrupt them)",
    ]
    assert "Starting server" not in text_of(out)  # a fleet's log lines are in its log files
    assert "2/2 done in 4s (30.0 jobs/min)" in text_of(out) and "Outputs: out/outputs (2 files)" in text_of(out)


def test_json_puts_the_report_alone_on_stdout_and_progress_on_stderr() -> None:
    stdout, stderr, data = console(), console(), io.StringIO()
    view = BatchView(stdout, progress=stderr, json_out=True, out=data)
    for event in RUN:
        view(event)
    assert json.loads(data.getvalue()) == REPORT
    assert text_of(stdout) == ""
    assert "comfyrig: done abcd1234abcd1234 on worker-0" in text_of(stderr)


def test_live_view_draws_snapshots_and_stops_before_the_summary() -> None:
    term = console(terminal=True)
    view = BatchView(term, live=True)
    for event in RUN:
        view(event)
    text = text_of(term)
    assert "comfyrig" in text and "batch wf.json -> out · 1 worker(s) (fleet)" in text
    assert "1 done · 0 failed · 1 in flight · 0 waiting · 2 total" in text
    assert "comfyrig: done" not in text  # news are rows of the live view, not lines
    assert text.rstrip().endswith("Outputs: out/outputs (2 files), manifest.jsonl, report.json")
    view.close()  # after the end: nothing left to stop


def test_close_stops_a_live_view_cut_short() -> None:
    term = console(terminal=True)
    view = BatchView(term, live=True)
    view(RUN[2])
    view(RUN[4])
    assert view._live is not None
    view.close()
    assert view._live is None


PLAN = DryRunPlan(
    workflow="wf.json", workflow_sha256="0" * 64, out_dir="out5", backend="fleet", jobs=6,
    first=(PlannedJob(0, "357a05b1c950eefb", {"1.color": 16711680, "1.width": 512}),),
    workers=(("worker-0", "http://127.0.0.1:8188", "GPU 0"), ("worker-1", "http://127.0.0.1:8189", "GPU 1")),
    warnings=("--repeat without --seed sends identical prompts",),
)


def test_dry_run_plan_as_text_and_json() -> None:
    out = console()
    BatchView(out)(PLAN)
    text = text_of(out)
    assert text.startswith("6 jobs from wf.json -> out5")
    assert "357a05b1c950eefb" in text and "1.color=16711680, 1.width=512" in text and "6 jobs (first 1)" in text
    assert "Workers (fleet): worker-0 GPU 0 http://127.0.0.1:8188, worker-1 GPU 1 http://127.0.0.1:8189" in text
    assert "⚠ --repeat without --seed" in text
    data = io.StringIO()
    BatchView(console(), json_out=True, out=data)(PLAN)
    assert json.loads(data.getvalue()) == {
        "workflow": "wf.json", "workflow_sha256": "0" * 64, "jobs": 6,
        "first": [{"index": 0, "job": "357a05b1c950eefb", "values": {"1.color": 16711680, "1.width": 512}}],
        "workers": [{"name": "worker-0", "url": "http://127.0.0.1:8188", "gpu": "GPU 0"},
                    {"name": "worker-1", "url": "http://127.0.0.1:8189", "gpu": "GPU 1"}],
        "warnings": ["--repeat without --seed sends identical prompts"],
    }
