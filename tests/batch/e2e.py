"""Helpers for the batch integration tests: fake ComfyUI servers, workflows, invariant checks."""

from __future__ import annotations

import importlib.util
import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

FAKE_DIR = Path(__file__).resolve().parents[1] / "fake_comfyui"


def _load_harness() -> Any:
    # tests/ is not a package for the fake; load its harness by path, once, under one name.
    name = "fake_comfyui_harness"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, FAKE_DIR / "harness.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


harness = _load_harness()

IMAGE_WF = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}, "_meta": {"title": "Canvas"}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "batch"}},
}
SLEEP_WF = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
    "4": {"class_type": "FakeSleep", "inputs": {"seconds": 0.05, "steps": 2, "any": ["1", 0], "fail": False}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["4", 0], "filename_prefix": "batch"}},
}


def write(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path


def rows(out: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(out / "journal.sqlite") as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM jobs ORDER BY idx")]


def attempts(out: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(out / "journal.sqlite") as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM attempts ORDER BY job_id, attempt")]


def check_invariants(out: Path, *, total: int, finished: bool = True) -> dict[str, int]:
    """Every job in exactly one state (terminal when ``finished``); files on disk = the done jobs'
    outputs, each with its recorded sha256; one manifest line per done job."""
    import hashlib

    jobs = rows(out)
    assert len(jobs) == total and len({j["id"] for j in jobs}) == total
    states = [j["state"] for j in jobs]
    if finished:
        assert set(states) <= {"done", "failed"}, states
    assert "submitted" not in states
    recorded = [o for j in jobs if j["state"] == "done" for o in json.loads(j["outputs"])]
    on_disk = sorted(p.name for p in (out / "outputs").iterdir())
    assert sorted(Path(o["path"]).name for o in recorded) == on_disk
    for o in recorded:
        assert hashlib.sha256((out / o["path"]).read_bytes()).hexdigest() == o["sha256"]
    assert all(Path(o["path"]).name.startswith(j["id"]) for j in jobs if j["state"] == "done" for o in json.loads(j["outputs"]))
    lines = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()] if (out / "manifest.jsonl").exists() else []
    assert sorted(line["job"] for line in lines) == sorted(j["id"] for j in jobs if j["state"] == "done")
    return {"done": states.count("done"), "failed": states.count("failed"), "pending": states.count("pending"), "files": len(on_disk)}
