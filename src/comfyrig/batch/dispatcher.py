"""The dispatcher: one loop that joins the scheduler, the journal and the workers.

    drain worker events -> scheduler -> journal (one transaction) -> tick ->
    journal the submits (committed) -> send commands -> snapshot

Worker threads only emit events into ``events``; the signal handler only
enqueues a ("signal",) item (STYLE 7). Everything that changes state happens
here, on one thread, so the journal needs no locking and the order "journal,
then act" holds: a submit is committed before its POST is sent, a job is done
only after its files were renamed into place.
"""

from __future__ import annotations

import queue
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .journal import Journal, JobRow, OutputFile
from .manifest import Manifest
from .scheduler import (
    Action,
    Cancel,
    Collect,
    Fail,
    Interrupt,
    Recover,
    Requeue,
    RestartWorker,
    Scheduler,
    Submit,
)
from .variations import VariationSpec
from .worker import Command, Endpoint, WorkerEvent
from ..comfy.workflow import Workflow, patch, tag_outputs

__all__ = ["BatchOptions", "BatchResult", "BatchSnapshot", "Dispatcher", "WorkerRow"]


@dataclass(frozen=True)
class BatchOptions:
    out_dir: Path
    retries: int = 2
    job_timeout_s: float | None = 600.0
    depth: int = 2
    retry_failed: bool = False
    tick_s: float = 0.05
    interrupt_grace_s: float = 10.0
    worker_wait_s: float = 600.0  # give up when no worker was up for this long with jobs left
    drain_timeout_s: float = 30.0  # after the second Ctrl-C, how long interrupted jobs may take


@dataclass(frozen=True)
class WorkerRow:
    name: str
    label: str
    url: str
    state: str  # up, down, gone
    job: str | None
    node: str | None
    step: tuple[float, float] | None
    queued: int
    done: int
    failed: int
    requeued: int
    mean_s: float | None
    device: str | None


@dataclass(frozen=True)
class BatchSnapshot:
    total: int
    done: int
    failed: int
    pending: int
    active: int
    done_before: int  # finished by earlier runs
    elapsed_s: float
    rate_per_min: float | None
    eta_s: float | None
    stopping: str | None
    workers: tuple[WorkerRow, ...]
    recent: tuple[str, ...]


@dataclass(frozen=True)
class BatchResult:
    snapshot: BatchSnapshot
    interrupted: bool
    gave_up: str | None  # why the batch stopped with jobs left, when it did


@dataclass
class _Meta:
    device: str | None = None


class Dispatcher:
    def __init__(
        self,
        workflow: Workflow,
        spec: VariationSpec,
        journal: Journal,
        options: BatchOptions,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_snapshot: Callable[[BatchSnapshot], None] | None = None,
        on_line: Callable[[str], None] | None = None,
        snapshot_every_s: float = 0.25,
    ) -> None:
        self.workflow = workflow
        self.spec = spec
        self.journal = journal
        self.options = options
        self.events: queue.Queue[Any] = queue.Queue()
        self.scheduler = Scheduler(
            retries=options.retries, job_timeout_s=options.job_timeout_s, depth=options.depth,
            interrupt_grace_s=options.interrupt_grace_s,
        )
        self.manifest = Manifest(options.out_dir / "manifest.jsonl")
        self._clock = clock
        self._on_snapshot = on_snapshot
        self._say = on_line or (lambda text: None)
        self._snapshot_every = snapshot_every_s
        self.endpoints: dict[str, Endpoint] = {}
        self._meta: dict[str, _Meta] = {}
        self._done_times: deque[float] = deque()
        self._recent: deque[str] = deque(maxlen=6)
        self._started = clock()
        self._done_before = 0
        self._signals = 0
        self._hard_deadline: float | None = None

    def post(self, event: WorkerEvent) -> None:
        """Thread-safe: workers emit here."""
        self.events.put(event)

    def signal(self) -> None:
        """Async-signal-safe enough: the handler only enqueues."""
        self.events.put(("signal",))

    # -- set-up ---------------------------------------------------------------------------------
    def prepare(self, endpoints: Sequence[Endpoint]) -> None:
        """Register the workers, journal the job list, and load every job's state (resume)."""
        for endpoint in endpoints:
            self.endpoints[endpoint.name] = endpoint
            self._meta[endpoint.name] = _Meta()
            self.scheduler.add_worker(endpoint.name)
        by_url = {e.url: e.name for e in endpoints}
        ids: set[str] = set()

        def listed() -> Any:
            for job in self.spec.jobs():
                ids.add(job.id)
                yield job.id, job.index, job.values

        self.journal.add_jobs(listed())
        retry_failed: list[str] = []
        now = self._clock()
        with self.journal.transaction():
            for row in self.journal.rows():
                if row.id not in ids:
                    continue  # a job of another variation set in the same folder
                self._load(row, by_url, now, retry_failed)
            if retry_failed:
                self.journal.reopen_failed(retry_failed)
                for job in retry_failed:
                    reopened = self.journal.get(job)
                    assert reopened is not None
                    self.scheduler.add_job(job, attempt=reopened.attempt, failures=0)
        self._done_before = self.scheduler.done
        self.manifest.reconcile(self.journal)

    def _load(self, row: JobRow, by_url: Mapping[str, str], now: float, retry_failed: list[str]) -> None:
        if row.state == "failed" and self.options.retry_failed:
            retry_failed.append(row.id)
        elif row.state == "submitted":
            worker = by_url.get(row.worker_url or "")
            if worker is not None:
                self.scheduler.add_recovering(row.id, worker=worker, attempt=row.attempt, failures=row.failures, now=now)
            else:
                reason = {"kind": "released", "message": f"an earlier run submitted it to {row.worker_url}, which is not a worker now"}
                self.journal.requeue(row.id, row.attempt, reason, charged=False)
                self.scheduler.add_job(row.id, attempt=row.attempt, failures=row.failures)
        else:
            self.scheduler.add_job(row.id, attempt=row.attempt, failures=row.failures, state=row.state)

    # -- the loop -----------------------------------------------------------------------------------
    def run(self, on_snapshot: Callable[[BatchSnapshot], None] | None = None) -> BatchResult:
        if on_snapshot is not None:
            self._on_snapshot = on_snapshot
        for endpoint in self.endpoints.values():
            endpoint.start()
        last_up = self._clock()
        next_snapshot = 0.0
        gave_up: str | None = None
        try:
            while True:
                batch = self._drain(self.options.tick_s)
                now = self._clock()
                actions: list[Action] = []
                done_rows: list[str] = []
                with self.journal.transaction():
                    for item in batch:
                        actions += self._handle(item, now, done_rows)
                    actions += self.scheduler.tick(now)
                    self._journal(actions)
                if done_rows:
                    rows = [self.journal.get(job) for job in done_rows]
                    self.manifest.append(r for r in rows if r is not None)
                self._act(actions)
                if any(w.up for w in self.scheduler.workers.values()):
                    last_up = now
                elif self.scheduler.pending and now - last_up > self.options.worker_wait_s:
                    gave_up = f"no worker was available for {self.options.worker_wait_s:g} s"
                    break
                if self._hard_deadline is not None and now > self._hard_deadline:
                    gave_up = "interrupted jobs did not stop in time"
                    break
                if now >= next_snapshot and self._on_snapshot is not None:
                    self._on_snapshot(self.snapshot())
                    next_snapshot = now + self._snapshot_every
                if self.scheduler.finished:
                    if self.scheduler.pending and not self.scheduler.stopping:
                        gave_up = "every worker is gone"
                    break
        finally:
            for endpoint in self.endpoints.values():
                endpoint.stop()
            for endpoint in self.endpoints.values():
                endpoint.join(5.0)
        final = self.snapshot()
        if self._on_snapshot is not None:
            self._on_snapshot(final)
        return BatchResult(final, interrupted=self._signals > 0, gave_up=gave_up)

    def _drain(self, timeout: float) -> list[Any]:
        try:
            items = [self.events.get(timeout=timeout)]
        except queue.Empty:
            return []
        while len(items) < 10_000:
            try:
                items.append(self.events.get_nowait())
            except queue.Empty:
                break
        return items

    def _handle(self, item: Any, now: float, done_rows: list[str]) -> list[Action]:
        s = self.scheduler
        if isinstance(item, tuple) and item[:1] == ("signal",):
            self._signals += 1
            if self._signals == 1:
                self._say("interrupted: no new jobs; running jobs finish (Ctrl-C again to interrupt them)")
            elif self._signals == 2:
                self._say("interrupted again: interrupting the running jobs")
                self._hard_deadline = now + self.options.drain_timeout_s
            else:
                self._hard_deadline = now
            return s.stop(now)
        event: WorkerEvent = item
        w, pid, kind = event.worker, event.prompt_id or "", event.kind
        if kind == "up":
            info = event.data or {}
            self._meta[w].device = info.get("device")
            self._say(f"{w}: up at {self.endpoints[w].url}" + (f" ({info['device']})" if info.get("device") else ""))
            return s.worker_up(w, now)
        if kind == "down":
            reason, gone = event.data
            if s.workers[w].up or gone:
                self._say(f"{w}: {'gone' if gone else 'down'}: {reason}")
            return s.worker_down(w, reason, now, gone=gone)
        if kind == "started":
            s.started(w, pid, now)
        elif kind == "activity":
            node, step = event.data
            s.activity(w, pid, now, node=node, step=tuple(step) if step else None)
        elif kind == "queued":
            s.queued(w, pid, now)
        elif kind == "completed":
            return s.completed(w, pid, now)
        elif kind == "collected":
            files: list[OutputFile] = event.data
            result = s.collected(w, pid, now)
            if result is not None:
                job, attempt, seconds = result
                self.journal.done(job, attempt, files, seconds)
                done_rows.append(job)
                self._done_times.append(now)
                self._say(f"done {job} on {w} in {seconds:.1f} s ({len(files)} file{'s' if len(files) != 1 else ''}) "
                          f"[{s.done}/{len(s.jobs)}]")
        elif kind == "app_failed":
            return s.app_failed(w, pid, event.data or {}, now)
        elif kind == "system_failed":
            reason, charged = event.data
            return s.system_failed(w, pid, reason, now, charged=charged)
        elif kind == "interrupted":
            return s.interrupted(w, pid, now)
        elif kind == "cancelled":
            return s.cancelled(w, pid, now)
        return []

    def _journal(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Submit):
                url = self.endpoints[action.worker].url
                self.journal.submit(action.job, action.attempt, action.worker, url, action.prompt_id)
            elif isinstance(action, Requeue):
                self.journal.requeue(action.job, action.attempt, action.reason, charged=action.charged)
                if action.charged:
                    self._note(f"retry {action.job}: {action.reason.get('message')}")
            elif isinstance(action, Fail):
                self.journal.fail(action.job, action.attempt, action.reason, charged=action.charged)
                self._note(f"failed {action.job}: {_reason_text(action.reason)}")

    def _note(self, line: str) -> None:
        self._recent.append(line)
        self._say(line)

    def _act(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Submit):
                row = self.journal.get(action.job)
                assert row is not None
                prompt = tag_outputs(patch(self.workflow, row.values), action.job)
                self.endpoints[action.worker].send(Command("submit", action.prompt_id, action.job, prompt))
            elif isinstance(action, Interrupt):
                self._say(f"interrupting {action.job} on {action.worker}: {action.why}")
                self.endpoints[action.worker].send(Command("interrupt", action.prompt_id, action.job))
            elif isinstance(action, Cancel):
                self.endpoints[action.worker].send(Command("cancel", action.prompt_id, action.job))
            elif isinstance(action, Recover):
                self.endpoints[action.worker].send(Command("recover", action.prompt_id, action.job))
            elif isinstance(action, Collect):
                self.endpoints[action.worker].send(Command("collect", action.prompt_id, action.job))
            elif isinstance(action, RestartWorker):
                self._say(f"{action.worker}: restarting it: {action.why}")
                self.endpoints[action.worker].send(Command("restart"))

    # -- the picture ------------------------------------------------------------------------------
    def snapshot(self) -> BatchSnapshot:
        now = self._clock()
        view = self.scheduler.view(now)
        while self._done_times and now - self._done_times[0] > 120.0:
            self._done_times.popleft()
        elapsed = now - self._started
        done_now = view.done - self._done_before
        window = min(elapsed, 120.0)
        rate = None
        if len(self._done_times) >= 3 and window > 0:
            rate = len(self._done_times) / window * 60.0
        elif done_now and elapsed > 0:
            rate = done_now / elapsed * 60.0
        remaining = view.pending + view.active
        eta = remaining / rate * 60.0 if rate else None
        rows = []
        for name, up, gone, jobs, stats in view.workers:
            endpoint = self.endpoints[name]
            running = next((j for j in jobs if j.started), jobs[0] if jobs else None)
            rows.append(
                WorkerRow(
                    name=name, label=endpoint.label, url=endpoint.url,
                    state="gone" if gone else ("up" if up else "down"),
                    job=running.id if running else None,
                    node=running.node if running else None,
                    step=running.step if running else None,
                    queued=len(jobs),
                    done=stats.done, failed=stats.failed, requeued=stats.requeued,
                    mean_s=stats.seconds / stats.done if stats.done else None,
                    device=self._meta[name].device,
                )
            )
        recent = tuple(self._recent)
        return BatchSnapshot(
            total=view.total, done=view.done, failed=view.failed, pending=view.pending, active=view.active,
            done_before=self._done_before, elapsed_s=elapsed, rate_per_min=rate, eta_s=eta,
            stopping=view.stopping, workers=tuple(rows), recent=recent,
        )


def _reason_text(reason: Mapping[str, Any]) -> str:
    parts = []
    if reason.get("node"):
        parts.append(f"node {reason['node']}" + (f" ({reason['class_type']})" if reason.get("class_type") else ""))
    if reason.get("exception_type"):
        parts.append(str(reason["exception_type"]))
    parts.append(str(reason.get("message") or reason.get("kind") or "failed"))
    return ": ".join(parts)


reason_text = _reason_text
