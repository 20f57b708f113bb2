"""The end-of-batch summary: DIR/report.json and what ``--json`` prints."""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from ..errors import JournalError
from ..files import write_error
from .dispatcher import BatchResult
from .events import reason_text
from .journal import Journal

__all__ = ["build_report", "exit_code", "write_report"]

MAX_FAILURES_LISTED = 200


def build_report(journal: Journal, job_ids: Collection[str] | None, result: BatchResult, *, workflow: str, out_dir: Path) -> dict[str, Any]:
    snap = result.snapshot
    failures: list[dict[str, Any]] = []
    files = 0
    for row in journal.rows(with_values=False):
        if job_ids is not None and row.id not in job_ids:
            continue  # None: every job in the journal, which holds this batch alone (run.py checks)
        if row.state == "done":
            files += len(row.outputs)
        elif row.state == "failed" and len(failures) < MAX_FAILURES_LISTED:
            full = journal.get(row.id)
            reason = dict(row.reason or {})
            failures.append({
                "job": row.id,
                "index": row.index,
                "values": dict(full.values) if full else {},
                "worker": reason.get("worker"),
                "kind": reason.get("kind"),
                "node": reason.get("node"),
                "class_type": reason.get("class_type"),
                "exception_type": reason.get("exception_type"),
                "message": reason.get("message"),
                "text": reason_text(reason),
            })
    done_now = snap.done - snap.done_before
    return {
        "workflow": workflow,
        "out_dir": str(out_dir),
        "total": snap.total,
        "done": snap.done,
        "failed": snap.failed,
        "unfinished": snap.pending + snap.active,
        "done_before": snap.done_before,
        "done_this_run": done_now,
        "output_files": files,
        "wall_s": round(snap.elapsed_s, 3),
        "jobs_per_min": round(done_now / snap.elapsed_s * 60.0, 2) if snap.elapsed_s > 0 else None,
        "interrupted": result.interrupted,
        "stopped_because": result.gave_up,
        "workers": [
            {
                "name": w.name, "gpu": w.label, "url": w.url, "node_id": w.node_id, "host": w.host, "device": w.device, "jobs": w.done,
                "failed": w.failed, "retried": w.requeued,
                "mean_s": None if w.mean_s is None else round(w.mean_s, 3),
            }
            for w in snap.workers
        ],
        "failures": failures,
    }


def write_report(out_dir: Path, report: dict[str, Any]) -> Path:
    path = out_dir / "report.json"
    tmp = out_dir / f".report.json.{os.getpid()}.part"
    try:
        tmp.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        # The journal holds every result; report.json is only its summary, rebuilt by a rerun.
        raise write_error(exc, path, "The report", JournalError) from None
    return path


def exit_code(report: Mapping[str, Any]) -> int:
    """0 every job done; 130 stopped by Ctrl-C with jobs left; 1 otherwise (some failed, or
    the batch stopped with jobs left)."""
    if report["done"] == report["total"]:
        return 0
    if report["interrupted"] and report["unfinished"]:
        return 130
    return 1
