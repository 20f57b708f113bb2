"""The dispatcher: one loop that joins the scheduler, the journal and the workers.

    drain worker events -> scheduler -> journal (one transaction) -> tick ->
    journal the submits (committed) -> send commands -> report

Worker threads only emit typed events into ``events``; the signal handler only
enqueues a ``StopSignal`` (STYLE 7). Everything that changes state happens
here, on one thread, so the journal needs no locking and the order "journal,
then act" holds: a submit is committed before its POST is sent, a job is done
only after its files were renamed into place. What happens is reported as
typed batch events (``batch/events.py``) to the injected reporter; nothing
here prints.

``run`` is ``start``, then ``step`` until it says the batch is over, then
``finish``; tests drive ``step`` themselves with scripted events and a fake clock.
"""

from __future__ import annotations

import itertools
import queue
import signal as signals
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..comfy.workflow import Workflow, patch, tag_outputs
from ..events import Reporter, discard
from .events import (
    BatchEvent,
    BatchProgress,
    BatchSnapshot,
    JobDone,
    JobFailed,
    JobInterrupting,
    JobRetried,
    StopRequested,
    WorkerCameUp,
    WorkerRestarting,
    WorkerRow,
    WorkerWentDown,
)
from .journal import Journal, OutputFile
from .manifest import Manifest
from .protocol import (
    AppFailed,
    CancelPrompt,
    CollectOutputs,
    DispatcherItem,
    Endpoint,
    InterruptPrompt,
    OutputsCollected,
    PromptActivity,
    PromptCancelled,
    PromptCompleted,
    PromptInterrupted,
    PromptQueued,
    PromptStarted,
    RecoverPrompt,
    RestartServer,
    StopSignal,
    SubmitPrompt,
    SystemFailed,
    WorkerDown,
    WorkerEvent,
    WorkerUp,
)
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

__all__ = ["BatchOptions", "BatchResult", "Dispatcher"]

WINDOW = 2000  # pending jobs the scheduler holds at a time
CHUNK = 2000  # jobs expanded into the journal (and read back) per round


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
class BatchResult:
    snapshot: BatchSnapshot
    interrupted: bool
    gave_up: str | None  # why the batch stopped with jobs left, when it did


@dataclass
class _Meta:
    device: str | None = None


class Dispatcher:
    """``reporter`` receives the batch's news and a ``BatchProgress`` snapshot every
    ``snapshot_every_s`` seconds (and a last one at the end); ``clock`` is monotonic seconds."""

    def __init__(
        self,
        workflow: Workflow,
        spec: VariationSpec,
        journal: Journal,
        options: BatchOptions,
        *,
        reporter: Reporter[BatchEvent] = discard,
        clock: Callable[[], float] = time.monotonic,
        snapshot_every_s: float = 0.25,
    ) -> None:
        self.workflow = workflow
        self.spec = spec
        self.journal = journal
        self.options = options
        self.events: queue.Queue[DispatcherItem] = queue.Queue()
        self.scheduler = Scheduler(
            retries=options.retries, job_timeout_s=options.job_timeout_s, depth=options.depth,
            interrupt_grace_s=options.interrupt_grace_s,
        )
        self.manifest = Manifest(options.out_dir / "manifest.jsonl")
        self._clock = clock
        self._report = reporter
        self._snapshot_every = snapshot_every_s
        self.endpoints: dict[str, Endpoint] = {}
        self._meta: dict[str, _Meta] = {}
        self._done_times: deque[float] = deque()
        self._recent: deque[JobRetried | JobFailed] = deque(maxlen=6)
        self._started = clock()
        self._done_before = 0
        self._signals = 0
        self._hard_deadline: float | None = None
        self._last_up = self._started
        self._next_snapshot = 0.0
        self._gave_up: str | None = None

    def post(self, event: WorkerEvent) -> None:
        """Thread-safe: workers emit here."""
        self.events.put(event)

    def signal(self, signum: int = signals.SIGINT) -> None:
        """The signal handler's whole work: enqueue (the loop decides what it means)."""
        self.events.put(StopSignal(signum))

    # -- set-up ---------------------------------------------------------------------------------
    def prepare(self, endpoints: Sequence[Endpoint]) -> None:
        """Register the workers, journal the job list, and load every job's state (resume)."""
        for endpoint in endpoints:
            self.endpoints[endpoint.name] = endpoint
            self._meta[endpoint.name] = _Meta()
            self.scheduler.add_worker(endpoint.name)
        by_url = {e.url: e.name for e in endpoints}
        # Jobs flow in a window at a time (``_refill``): the expansion goes into the journal a chunk
        # ahead of the pending jobs the scheduler holds, so a batch of a million starts at once and
        # memory holds the live jobs only; an ended job is a count.
        self._expansion = self.spec.jobs(start=self.journal.next_index())
        self._expanded = self.journal.next_index() >= self.spec.count
        self._fed_upto = -1
        if self.options.retry_failed:
            self.journal.reopen_all_failed()
        counts = self.journal.counts()
        self.scheduler.total = self.spec.count
        self.scheduler.count_finished(counts.get("done", 0), counts.get("failed", 0))
        now = self._clock()
        with self.journal.transaction():
            for row in self.journal.in_state("submitted"):  # an earlier run's prompts: recover or release
                worker = by_url.get(row.worker_url or "")
                if worker is not None:
                    self.scheduler.add_recovering(row.id, worker=worker, attempt=row.attempt, failures=row.failures, now=now)
                else:
                    reason = {"kind": "released", "message": f"an earlier run submitted it to {row.worker_url}, which is not a worker now"}
                    self.journal.requeue(row.id, row.attempt, reason, charged=False)
                    self.scheduler.add_job(row.id, attempt=row.attempt, failures=row.failures)
        self._refill()
        self._done_before = self.scheduler.done
        if self.manifest.lines() != self.scheduler.done:
            self.manifest.reconcile(self.journal)  # only a run killed between the two commits needs it

    def _refill(self) -> None:
        """Keep ``WINDOW`` pending jobs in the scheduler: from the journal (numbered past the last
        one fed), expanding the variations into the journal a chunk at a time when it has no more."""
        scheduler = self.scheduler
        while scheduler.held_pending < WINDOW and scheduler.unfed > 0:
            rows = self.journal.pending_after(self._fed_upto, CHUNK)
            if not rows:
                if self._expanded:
                    return
                chunk = list(itertools.islice(self._expansion, CHUNK))
                self._expanded = len(chunk) < CHUNK
                self.journal.add_jobs((job.id, job.index, job.values) for job in chunk)
                continue
            for job, index, attempt, failures in rows:
                self._fed_upto = index
                if job not in scheduler.jobs:  # a requeued job is held already
                    scheduler.add_job(job, attempt=attempt, failures=failures)

    # -- the loop -----------------------------------------------------------------------------------
    def run(self) -> BatchResult:
        """Start the workers, loop until the batch is over, stop them."""
        self.start()
        try:
            while not self.step(self.options.tick_s):
                pass
        finally:
            self.stop_workers()
        return self.finish()

    def start(self) -> None:
        for endpoint in self.endpoints.values():
            endpoint.start()
        self._last_up = self._clock()

    def step(self, timeout_s: float) -> bool:
        """One turn of the loop: wait up to ``timeout_s`` for events, handle them all, act.
        True when the batch is over (see ``gave_up``)."""
        batch = self._drain(timeout_s)
        if self.scheduler.stopping is None:
            self._refill()
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
        if now >= self._next_snapshot:
            self._report(BatchProgress(self.snapshot()))
            self._next_snapshot = now + self._snapshot_every
        if any(w.up for w in self.scheduler.workers.values()):
            self._last_up = now
        elif self.scheduler.pending and now - self._last_up > self.options.worker_wait_s:
            self._gave_up = f"no worker was available for {self.options.worker_wait_s:g} s"
            return True
        if self._hard_deadline is not None and now > self._hard_deadline:
            self._gave_up = "interrupted jobs did not stop in time"
            return True
        if self.scheduler.finished:
            if self.scheduler.pending and not self.scheduler.stopping:
                self._gave_up = "every worker is gone"
            return True
        return False

    def stop_workers(self) -> None:
        for endpoint in self.endpoints.values():
            endpoint.stop()
        for endpoint in self.endpoints.values():
            endpoint.join(5.0)

    def finish(self) -> BatchResult:
        """The result, after the last snapshot was reported."""
        final = self.snapshot()
        self._report(BatchProgress(final))
        return BatchResult(final, interrupted=self._signals > 0, gave_up=self._gave_up)

    @property
    def gave_up(self) -> str | None:
        """Why the batch stopped with jobs left, once ``step`` said it is over."""
        return self._gave_up

    def _drain(self, timeout: float) -> list[DispatcherItem]:
        try:
            items = [self.events.get(timeout=timeout) if timeout > 0 else self.events.get_nowait()]
        except queue.Empty:
            return []
        while len(items) < 10_000:
            try:
                items.append(self.events.get_nowait())
            except queue.Empty:
                break
        return items

    def _handle(self, item: DispatcherItem, now: float, done_rows: list[str]) -> list[Action]:
        s = self.scheduler
        match item:
            case StopSignal():
                return self._stop_signal(now)
            case WorkerUp(worker=w, device=device):
                self._meta[w].device = device
                self._report(WorkerCameUp(w, self.endpoints[w].url, device))
                return s.worker_up(w, now)
            case WorkerDown(worker=w, reason=reason, gone=gone):
                if s.workers[w].up or gone:
                    self._report(WorkerWentDown(w, reason, gone))
                return s.worker_down(w, reason, now, gone=gone)
            case PromptStarted(worker=w, prompt_id=pid):
                s.started(w, pid, now)
            case PromptActivity(worker=w, prompt_id=pid, node=node, step=step):
                s.activity(w, pid, now, node=node, step=step)
            case PromptQueued(worker=w, prompt_id=pid):
                s.queued(w, pid, now)
            case PromptCompleted(worker=w, prompt_id=pid):
                return s.completed(w, pid, now)
            case OutputsCollected(worker=w, prompt_id=pid, files=files):
                self._collected(w, pid, files, now, done_rows)
            case AppFailed(worker=w, prompt_id=pid, error=error):
                return s.app_failed(w, pid, error.reason(), now)
            case SystemFailed(worker=w, prompt_id=pid, reason=reason, charged=charged):
                return s.system_failed(w, pid, reason, now, charged=charged)
            case PromptInterrupted(worker=w, prompt_id=pid):
                return s.interrupted(w, pid, now)
            case PromptCancelled(worker=w, prompt_id=pid):
                return s.cancelled(w, pid, now)
        return []

    def _stop_signal(self, now: float) -> list[Action]:
        self._signals += 1
        if self._signals == 2:
            self._hard_deadline = now + self.options.drain_timeout_s
        elif self._signals > 2:
            self._hard_deadline = now
        self._report(StopRequested(self._signals))
        return self.scheduler.stop(now)

    def _collected(self, worker: str, prompt_id: str, files: tuple[OutputFile, ...], now: float, done_rows: list[str]) -> None:
        s = self.scheduler
        result = s.collected(worker, prompt_id, now)
        if result is None:
            return  # a stale attempt's outputs: the files stay, unrecorded, and are overwritten later
        job, attempt, seconds = result
        self.journal.done(job, attempt, list(files), seconds)
        done_rows.append(job)
        self._done_times.append(now)
        self._report(JobDone(job, worker, seconds, len(files), s.done, s.done + s.failed + len(s.jobs) + s.unfed))

    def _journal(self, actions: list[Action]) -> None:
        for action in actions:
            match action:
                case Submit(job=job, worker=worker, attempt=attempt, prompt_id=pid):
                    self.journal.submit(job, attempt, worker, self.endpoints[worker].url, pid)
                case Requeue(job=job, attempt=attempt, reason=reason, charged=charged):
                    self.journal.requeue(job, attempt, reason, charged=charged)
                    if charged:
                        self._note(JobRetried(job, reason))
                case Fail(job=job, attempt=attempt, reason=reason, charged=charged):
                    self.journal.fail(job, attempt, reason, charged=charged)
                    self._note(JobFailed(job, reason))
                case Interrupt() | Cancel() | Recover() | Collect() | RestartWorker():
                    pass  # nothing to journal: acted on below

    def _note(self, news: JobRetried | JobFailed) -> None:
        self._recent.append(news)
        self._report(news)

    def _act(self, actions: list[Action]) -> None:
        for action in actions:
            match action:
                case Submit(job=job, worker=worker, prompt_id=pid):
                    row = self.journal.get(job)
                    assert row is not None
                    prompt = tag_outputs(patch(self.workflow, row.values), job)
                    self.endpoints[worker].send(SubmitPrompt(job, pid, prompt))
                case Interrupt(job=job, worker=worker, prompt_id=pid, why=why):
                    self._report(JobInterrupting(job, worker, why))
                    self.endpoints[worker].send(InterruptPrompt(pid))
                case Cancel(worker=worker, prompt_id=pid):
                    self.endpoints[worker].send(CancelPrompt(pid))
                case Recover(job=job, worker=worker, prompt_id=pid):
                    self.endpoints[worker].send(RecoverPrompt(job, pid))
                case Collect(job=job, worker=worker, prompt_id=pid):
                    self.endpoints[worker].send(CollectOutputs(job, pid))
                case RestartWorker(worker=worker, why=why):
                    self._report(WorkerRestarting(worker, why))
                    self.endpoints[worker].send(RestartServer())
                case Requeue() | Fail():
                    pass  # journaled above

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
                    # Endpoints on a cluster say where they run now (RayEndpoint); others have no node.
                    node_id=getattr(endpoint, "node_id", None), host=getattr(endpoint, "host", None),
                )
            )
        return BatchSnapshot(
            total=view.total, done=view.done, failed=view.failed, pending=view.pending, active=view.active,
            done_before=self._done_before, elapsed_s=elapsed, rate_per_min=rate, eta_s=eta,
            stopping=view.stopping, workers=tuple(rows), recent=tuple(self._recent),
        )
