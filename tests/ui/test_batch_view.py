"""The batch progress view and summary render from snapshots (ui/batch_view.py)."""

from __future__ import annotations

import io

from rich.console import Console

from comfyrig.batch.events import BatchSnapshot, JobFailed, WorkerRow
from comfyrig.ui.batch_view import batch_view, dry_run_table, duration, summary_view


def render(renderable: object) -> str:
    console = Console(file=io.StringIO(), width=110, color_system=None)
    console.print(renderable)
    return console.file.getvalue()  # type: ignore[attr-defined]


def row(name: str, label: str, **kw: object) -> WorkerRow:
    base = dict(name=name, label=label, url="http://127.0.0.1:8188", state="up", job=None, node=None, step=None,
                queued=0, done=0, failed=0, requeued=0, mean_s=None, device=None)
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
