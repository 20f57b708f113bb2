"""run_batch as a service: a fake backend of in-process workers, events to a list, no process."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from comfyrig.batch.events import (
    BatchEvent,
    BatchFinished,
    BatchProgress,
    BatchStarted,
    DryRunPlan,
    FleetNews,
    JobDone,
    PlannedJob,
    StopRequested,
    describe,
)
from comfyrig.batch.protocol import (
    CollectOutputs,
    Emit,
    Endpoint,
    OutputsCollected,
    OutputSink,
    PromptCompleted,
    PromptStarted,
    SubmitPrompt,
    WorkerCommand,
    WorkerUp,
)
from comfyrig.batch.run import BatchRequest, run_batch
from comfyrig.errors import ConfigError
from comfyrig.events import Reporter
from comfyrig.launch.events import Exited
from comfyrig.ui.batch_view import dry_run_json

from .e2e import IMAGE_WF, check_invariants, write

INT = {"min": 0, "max": 0xFFFFFF}
OBJECT_INFO = {
    "EmptyImage": {"input": {"required": {"width": ["INT", {"min": 1, "max": 16384}], "height": ["INT", {"min": 1, "max": 16384}],
                                          "batch_size": ["INT", {"min": 1, "max": 4096}], "color": ["INT", INT]}}},
    "ImageInvert": {"input": {"required": {"image": ["IMAGE"]}}},
    "SaveImage": {"input": {"required": {"images": ["IMAGE"], "filename_prefix": ["STRING", {}]}}},
}


class InstantWorker:
    """Answers every prompt at once through the sink, like a ComfyUI that is very fast."""

    def __init__(self, name: str, emit: Emit, sink: OutputSink, on_submit: Callable[[], None]) -> None:
        self.name, self.url, self.label = name, f"http://{name}:8188", "GPU 0"
        self._emit, self._sink, self._on_submit = emit, sink, on_submit
        self.stopped = False

    def start(self) -> None:
        self._emit(WorkerUp(self.name, device="cuda:0 Fake"))

    def send(self, command: WorkerCommand) -> None:
        match command:
            case SubmitPrompt(prompt_id=pid):
                self._on_submit()
                self._emit(PromptStarted(self.name, pid))
                self._emit(PromptCompleted(self.name, pid))
            case CollectOutputs(job=job, prompt_id=pid):
                self._emit(OutputsCollected(self.name, pid, (self._sink(job, "3", 0, "x.png", b"PNG " + job.encode()),)))

    def stop(self) -> None:
        self.stopped = True

    def join(self, timeout: float) -> None:
        pass


class FakeBackend:
    kind = "url"

    def __init__(self, on_submit: Callable[[], None] = lambda: None) -> None:
        self.client_id: str | None = None
        self.workers: list[InstantWorker] = []
        self.stopped = False
        self._on_submit = on_submit

    def members(self) -> list[tuple[str, str, str]]:
        return [("w0", "http://w0:8188", "GPU 0")]

    def start(self, client_id: str, reporter: Reporter[BatchEvent] = lambda e: None) -> None:
        self.client_id = client_id
        reporter(FleetNews(Exited(name="w0", pid=1, code=1, kind="crash", reason="it crashed", restart_in=0.5)))

    def endpoints(self, emit: Emit, sink: OutputSink) -> list[Endpoint]:
        self.workers = [InstantWorker("w0", emit, sink, self._on_submit)]
        return list(self.workers)

    def object_info(self, timeout_s: float) -> dict[str, Any]:
        return json.loads(json.dumps(OBJECT_INFO))

    def stop(self) -> None:
        self.stopped = True


Handlers = list[Callable[[int], None]]


def recording(handlers: Handlers) -> Callable[[Callable[[int], None]], Any]:
    @contextmanager
    def capture(handler: Callable[[int], None]) -> Iterator[None]:
        handlers.append(handler)
        yield

    return capture


def request(tmp_path: Path, jobs: int = 3, **kwargs: Any) -> BatchRequest:
    return BatchRequest(workflow=write(tmp_path / "wf.json", IMAGE_WF), out_dir=tmp_path / "out",
                        sweeps=(f"1.color=1..{jobs}",), **kwargs)


def test_events_from_start_to_report(tmp_path: Path) -> None:
    backend = FakeBackend()
    events: list[BatchEvent] = []
    handlers: Handlers = []
    code = run_batch(request(tmp_path), backend, events.append, signals=recording(handlers))
    assert code == 0 and backend.stopped and backend.client_id and backend.client_id.startswith("comfyrig-batch-")
    assert len(handlers) == 1  # Ctrl-C goes to the dispatcher while it runs
    lines = [line for line in map(describe, events) if line is not None]
    assert lines[0] == "w0: exited with code 1; it crashed"  # the fleet's news, as batch events
    assert lines[1:3] == ["3 jobs, 0 already done; 1 worker(s)", "w0: up at http://w0:8188 (cuda:0 Fake)"]
    assert sum(isinstance(e, JobDone) for e in events) == 3 and "[3/3]" in lines[-1]
    started = next(e for e in events if isinstance(e, BatchStarted))
    assert (started.total, started.done_before, started.workers, started.backend) == (3, 0, 1, "url")
    assert isinstance(events[-2], BatchProgress) and isinstance(events[-1], BatchFinished)
    report = events[-1].report
    assert (report["done"], report["total"], report["output_files"]) == (3, 3, 3)
    assert json.loads((tmp_path / "out" / "report.json").read_text())["done"] == 3
    assert check_invariants(tmp_path / "out", total=3)["files"] == 3

    again: list[BatchEvent] = []
    assert run_batch(request(tmp_path), FakeBackend(), again.append, signals=recording([])) == 0
    assert "3 jobs, 3 already done; 1 worker(s)" in map(describe, again)
    assert not any(isinstance(e, JobDone) for e in again)


def test_ctrl_c_reaches_the_dispatcher_and_the_exit_code_says_so(tmp_path: Path) -> None:
    handlers: Handlers = []
    backend = FakeBackend(on_submit=lambda: handlers[0](signal.SIGINT))
    events: list[BatchEvent] = []
    code = run_batch(request(tmp_path, jobs=5), backend, events.append, signals=recording(handlers))
    assert code == 130
    assert StopRequested(1) in events
    report = next(e.report for e in events if isinstance(e, BatchFinished))
    assert report["interrupted"] and report["unfinished"] >= 1 and report["done"] >= 1


def test_a_real_sigint_is_routed_and_the_previous_handler_restored(tmp_path: Path) -> None:
    before = signal.getsignal(signal.SIGINT)
    sent: list[bool] = []

    def ctrl_c() -> None:
        if not sent:
            sent.append(True)
            os.kill(os.getpid(), signal.SIGINT)  # handled on this (the main) thread: it only enqueues

    events: list[BatchEvent] = []
    code = run_batch(request(tmp_path, jobs=5), FakeBackend(on_submit=ctrl_c), events.append)
    assert code == 130 and StopRequested(1) in events
    assert signal.getsignal(signal.SIGINT) is before


def test_dry_run_reports_the_plan_and_starts_nothing(tmp_path: Path) -> None:
    backend = FakeBackend()
    events: list[BatchEvent] = []
    assert run_batch(request(tmp_path, jobs=12, dry_run=True, show_jobs=2, repeat=2), backend, events.append) == 0
    [plan] = events
    assert isinstance(plan, DryRunPlan) and backend.client_id is None and not (tmp_path / "out").exists()
    assert (plan.jobs, plan.backend, plan.workers) == (24, "url", (("w0", "http://w0:8188", "GPU 0"),))
    assert [(j.index, j.values) for j in plan.first] == [(0, {"1.color": 1, "#repeat": 0}), (1, {"1.color": 1, "#repeat": 1})]
    assert plan.warnings == ()  # --repeat with a sweep: the copies differ


def test_dry_run_warns_of_identical_repeats(tmp_path: Path) -> None:
    events: list[BatchEvent] = []
    req = BatchRequest(workflow=write(tmp_path / "wf.json", IMAGE_WF), out_dir=tmp_path / "out", repeat=3, dry_run=True)
    assert run_batch(req, FakeBackend(), events.append) == 0
    [plan] = events
    assert isinstance(plan, DryRunPlan) and plan.jobs == 3 and plan.first[0] == PlannedJob(0, plan.first[0].job, {"#repeat": 0})
    assert plan.warnings and "--repeat without --seed" in plan.warnings[0]


def test_a_rerun_with_other_variations_is_refused_before_anything_starts(tmp_path: Path) -> None:
    """Issue 16 item 17: the manifest once held 12 jobs while report.json said 2."""
    assert run_batch(request(tmp_path, jobs=3), FakeBackend(), lambda e: None, signals=recording([])) == 0
    for kwargs in ({"jobs": 4}, {"jobs": 2}, {"jobs": 3, "repeat": 2}, {"jobs": 3, "zipped": True}):
        for dry_run in (True, False):
            backend = FakeBackend()
            with pytest.raises(ConfigError, match="holds a batch of other variations"):
                run_batch(request(tmp_path, dry_run=dry_run, **kwargs), backend, lambda e: None, signals=recording([]))
            assert backend.client_id is None  # refused before the backend started
    # The same command resumes, dry or not; other options (--retries, --job-timeout) are no part of it.
    assert run_batch(request(tmp_path, jobs=3, dry_run=True), FakeBackend(), lambda e: None) == 0
    assert run_batch(request(tmp_path, jobs=3), FakeBackend(), lambda e: None, signals=recording([])) == 0


def test_a_rerun_with_another_workflow_is_refused_by_a_dry_run_too(tmp_path: Path) -> None:
    assert run_batch(request(tmp_path, jobs=2), FakeBackend(), lambda e: None, signals=recording([])) == 0
    other = json.loads(json.dumps(IMAGE_WF))
    other["1"]["inputs"]["width"] = 7
    req = BatchRequest(workflow=write(tmp_path / "wf.json", other), out_dir=tmp_path / "out", sweeps=("1.color=1..2",), dry_run=True)
    with pytest.raises(ConfigError, match="holds a batch of another workflow"):
        run_batch(req, FakeBackend(), lambda e: None)


def test_dry_run_json_is_valid_json(tmp_path: Path) -> None:
    """Values are finite, so the plan never prints NaN or Infinity."""
    events: list[BatchEvent] = []
    req = BatchRequest(workflow=write(tmp_path / "wf.json", IMAGE_WF), out_dir=tmp_path / "out",
                       sweeps=("1.color=0..3",), dry_run=True)
    assert run_batch(req, FakeBackend(), events.append) == 0
    [plan] = events
    assert isinstance(plan, DryRunPlan)
    json.dumps(dry_run_json(plan), allow_nan=False)


def test_jobs_stream_through_a_window(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 16 item 18: the scheduler holds a window of jobs, not the batch; a rerun resumes."""
    import comfyrig.batch.dispatcher as dispatcher_module
    from comfyrig.batch.scheduler import Scheduler

    monkeypatch.setattr(dispatcher_module, "WINDOW", 20)
    monkeypatch.setattr(dispatcher_module, "CHUNK", 7)
    held: list[int] = []
    add_job = Scheduler.add_job

    def counting(self: Scheduler, *args: Any, **kwargs: Any) -> None:
        add_job(self, *args, **kwargs)
        held.append(len(self.jobs))

    monkeypatch.setattr(Scheduler, "add_job", counting)
    stop_after: list[int] = []
    handlers: Handlers = []

    def maybe_stop() -> None:
        stop_after.append(1)
        if len(stop_after) == 60:
            handlers[0](signal.SIGINT)

    events: list[BatchEvent] = []
    assert run_batch(request(tmp_path, jobs=150), FakeBackend(on_submit=maybe_stop), events.append, signals=recording(handlers)) == 130
    assert max(held) <= 20 + 7 + 3  # the window, one chunk read past it, and what the worker holds
    first = next(e.report for e in events if isinstance(e, BatchFinished))
    assert first["total"] == 150 and 50 <= first["done"] < 150
    events.clear()
    assert run_batch(request(tmp_path, jobs=150), FakeBackend(), events.append, signals=recording([])) == 0
    report = next(e.report for e in events if isinstance(e, BatchFinished))
    assert (report["total"], report["done"], report["done_before"]) == (150, 150, first["done"])
    assert check_invariants(tmp_path / "out", total=150)["files"] == 150
