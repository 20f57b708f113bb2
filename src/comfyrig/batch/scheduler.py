"""The pure batch scheduler: events in, actions out; no I/O, no threads, no clock of its own.

Each worker keeps at most ``depth`` prompts of ours (one running plus one
queued by default), so the next job goes to whichever worker frees a slot
first. Failures are sorted into three kinds:

- application errors (HTTP 400 node_errors, execution_error): the job fails, never retried;
- system failures (worker died or vanished, hung past ``job_timeout_s``, a
  download failed): the job is requeued, preferably onto another worker, until
  it has failed ``retries + 1`` times;
- releases (a job that was only queued behind a crash, cancelled on Ctrl-C,
  lost when the dispatcher itself was restarted): requeued, not counted.

Events about an earlier attempt (its prompt id is no longer the job's current
one) are ignored, so a late answer can never finish a job twice.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .variations import prompt_id_for

__all__ = [
    "Action",
    "Cancel",
    "Collect",
    "Fail",
    "Interrupt",
    "Recover",
    "Requeue",
    "RestartWorker",
    "Scheduler",
    "SchedulerView",
    "Submit",
    "WorkerStats",
]

SlotState = Literal["pending", "submitted", "recovering", "collecting", "done", "failed"]


@dataclass(frozen=True)
class Submit:
    job: str
    worker: str
    attempt: int
    prompt_id: str


@dataclass(frozen=True)
class Interrupt:
    job: str
    worker: str
    prompt_id: str
    why: str


@dataclass(frozen=True)
class Cancel:
    job: str
    worker: str
    prompt_id: str


@dataclass(frozen=True)
class Recover:
    job: str
    worker: str
    prompt_id: str


@dataclass(frozen=True)
class Collect:
    job: str
    worker: str
    prompt_id: str


@dataclass(frozen=True)
class Requeue:
    job: str
    attempt: int
    reason: Mapping[str, Any]
    charged: bool


@dataclass(frozen=True)
class Fail:
    job: str
    attempt: int
    reason: Mapping[str, Any]
    charged: bool


@dataclass(frozen=True)
class RestartWorker:
    worker: str
    why: str


Action = Submit | Interrupt | Cancel | Recover | Collect | Requeue | Fail | RestartWorker


@dataclass
class _Job:
    id: str
    attempt: int
    failures: int = 0
    state: SlotState = "pending"
    worker: str | None = None
    prompt_id: str | None = None
    submitted_at: float = 0.0
    started_at: float | None = None
    activity_at: float = 0.0
    interrupt_at: float | None = None
    interrupt_why: str | None = None
    avoid: set[str] = field(default_factory=set)
    node: str | None = None
    step: tuple[float, float] | None = None


@dataclass
class WorkerStats:
    done: int = 0
    failed: int = 0
    requeued: int = 0
    seconds: float = 0.0  # summed over done jobs


@dataclass
class _Worker:
    name: str
    up: bool = False
    gone: bool = False
    inflight: list[str] = field(default_factory=list)  # job ids in ComfyUI's queue order
    free_since: float = 0.0
    ever_up: bool = False
    # (job, prompt id) taken from it while it was down: a hung ComfyUI that wakes still has them queued.
    orphans: list[tuple[str, str]] = field(default_factory=list)
    stats: WorkerStats = field(default_factory=WorkerStats)


@dataclass(frozen=True)
class JobView:
    id: str
    state: SlotState
    started: bool
    node: str | None
    step: tuple[float, float] | None
    elapsed_s: float


@dataclass(frozen=True)
class SchedulerView:
    """An immutable picture for the progress view."""

    total: int
    done: int
    failed: int
    pending: int
    active: int
    stopping: str | None
    workers: tuple[tuple[str, bool, bool, tuple[JobView, ...], WorkerStats], ...]


class Scheduler:
    """``retries``: system failures allowed per job beyond the first; ``job_timeout_s``:
    seconds without any event from a started job before it is interrupted (None: never);
    ``interrupt_grace_s``: seconds an interrupted job may take to stop before its worker
    is given up for restart; ``collect_timeout_s``: seconds a finished job's outputs may
    take to arrive before the job runs again (a lost download must not stall the batch)."""

    def __init__(
        self,
        *,
        retries: int = 2,
        job_timeout_s: float | None = None,
        depth: int = 2,
        interrupt_grace_s: float = 10.0,
        collect_timeout_s: float = 600.0,
    ) -> None:
        self.retries = retries
        self.job_timeout_s = job_timeout_s
        self.depth = depth
        self.interrupt_grace_s = interrupt_grace_s
        self.collect_timeout_s = collect_timeout_s
        self._collecting: dict[str, float] = {}  # job -> since when its outputs are being fetched
        self.jobs: dict[str, _Job] = {}
        self.workers: dict[str, _Worker] = {}
        self._pending: deque[str] = deque()
        self._retry: deque[str] = deque()  # requeued jobs go before new ones
        self._by_prompt: dict[str, str] = {}
        self._done = 0
        self._failed = 0
        self.stopping: str | None = None  # None, "graceful" or "hard"
        # The whole batch's size when jobs are handed in a window at a time (``jobs`` then holds only
        # the live ones: fed, running, collecting); None: every job was added with add_job.
        self.total: int | None = None

    # -- set-up ----------------------------------------------------------------------------
    def add_worker(self, name: str) -> None:
        self.workers.setdefault(name, _Worker(name))

    def add_job(self, job: str, *, attempt: int = 0, failures: int = 0, state: str = "pending") -> None:
        """A job from the journal: pending, or already done/failed (counted, never scheduled)."""
        if state == "done":
            self._done += 1
        elif state == "failed":
            self._failed += 1
        else:
            self.jobs[job] = _Job(job, attempt, failures)
            self._pending.append(job)

    def count_finished(self, done: int, failed: int) -> None:
        """Jobs the journal says ended in an earlier run: counted, never held."""
        self._done += done
        self._failed += failed

    def add_recovering(self, job: str, *, worker: str, attempt: int, failures: int, now: float) -> None:
        """A job the journal says was submitted to ``worker`` (a known one) by an earlier run."""
        slot = _Job(job, attempt, failures, state="recovering", worker=worker, submitted_at=now, activity_at=now)
        slot.prompt_id = prompt_id_for(job, attempt)
        self.jobs[job] = slot
        self._by_prompt[slot.prompt_id] = job
        self.workers[worker].inflight.append(job)

    # -- queries -------------------------------------------------------------------------------
    @property
    def done(self) -> int:
        return self._done

    @property
    def failed(self) -> int:
        return self._failed

    @property
    def held_pending(self) -> int:
        """Pending jobs held here, ready to hand out."""
        return len(self._pending) + len(self._retry)

    @property
    def unfed(self) -> int:
        """Jobs of the batch not handed in yet (with ``total``)."""
        if self.total is None:
            return 0
        return max(0, self.total - self._done - self._failed - len(self.jobs))

    @property
    def pending(self) -> int:
        return self.held_pending + self.unfed

    @property
    def active(self) -> int:
        return len(self.jobs) - self.held_pending

    @property
    def finished(self) -> bool:
        """Nothing more will happen: all jobs ended, or stopping with nothing in flight,
        or every worker is gone for good."""
        if self.active == 0 and (self.pending == 0 or self.stopping is not None):
            return True
        return bool(self.workers) and all(w.gone for w in self.workers.values()) and self.active == 0

    def job_of(self, worker: str, prompt_id: str) -> _Job | None:
        """The job whose *current* attempt is ``prompt_id`` on ``worker``; None for stale events."""
        job = self._by_prompt.get(prompt_id)
        slot = self.jobs.get(job) if job is not None else None
        if slot is None:
            return None
        if slot.prompt_id != prompt_id or slot.worker != worker or slot.state in ("pending", "done", "failed"):
            return None
        return slot

    def view(self, now: float) -> SchedulerView:
        rows = []
        for w in self.workers.values():
            jobs = tuple(
                JobView(j, self.jobs[j].state, self.jobs[j].started_at is not None, self.jobs[j].node, self.jobs[j].step,
                        now - (self.jobs[j].started_at or self.jobs[j].submitted_at))
                for j in w.inflight
            )
            rows.append((w.name, w.up, w.gone, jobs, WorkerStats(**vars(w.stats))))
        return SchedulerView(
            total=self.total if self.total is not None else len(self.jobs) + self._done + self._failed,
            done=self._done, failed=self._failed, pending=self.pending,
            active=self.active, stopping=self.stopping, workers=tuple(rows),
        )

    # -- worker events ---------------------------------------------------------------------------
    def worker_up(self, name: str, now: float) -> list[Action]:
        worker = self.workers[name]
        worker.up = True
        worker.ever_up = True
        worker.gone = False
        worker.free_since = now
        # Taken from its queue while it did not answer, and running elsewhere now: delete them from
        # its queue before it runs them a second time. (One that already started runs to its end;
        # its events name a stale prompt id and change nothing.)
        actions: list[Action] = [Cancel(job, name, pid) for job, pid in worker.orphans]
        worker.orphans.clear()
        return actions + [Recover(j, name, self.jobs[j].prompt_id or "") for j in worker.inflight if self.jobs[j].state == "recovering"]

    def worker_down(self, name: str, reason: str, now: float, *, gone: bool = False) -> list[Action]:
        """The worker stopped answering (died, restarting, unreachable). Its running job (the
        head of its queue, when it was submitted or seen starting) is charged; the rest released."""
        worker = self.workers[name]
        worker.up = False
        worker.gone = worker.gone or gone
        actions: list[Action] = []
        for n, job in enumerate(list(worker.inflight)):
            slot = self.jobs[job]
            if slot.prompt_id is not None and not worker.gone:
                worker.orphans.append((job, slot.prompt_id))
            charged = slot.state == "submitted" and (n == 0 or slot.started_at is not None)
            what = f"{name} went away while running it: {reason}" if charged else f"{name} went away before it ran: {reason}"
            actions += self._system_failure(slot, what, charged=charged, kind="worker-lost")
        # Finished jobs whose outputs were still to be fetched from it: they are gone with it
        # (a restarted ComfyUI has no history; a Ray actor's bytes died with the actor).
        for job in [j for j in self._collecting if self.jobs[j].worker == name]:
            what = f"{name} went away before its outputs were downloaded: {reason}"
            actions += self._system_failure(self.jobs[job], what, charged=False, kind="worker-lost")
        return actions

    # -- job events ----------------------------------------------------------------------------
    def started(self, worker: str, prompt_id: str, now: float) -> None:
        slot = self.job_of(worker, prompt_id)
        if slot is not None:
            slot.started_at = slot.started_at or now
            slot.activity_at = now
            if slot.state == "recovering":
                slot.state = "submitted"

    def activity(self, worker: str, prompt_id: str, now: float, *, node: str | None = None,
                 step: tuple[float, float] | None = None) -> None:
        slot = self.job_of(worker, prompt_id)
        if slot is not None:
            slot.activity_at = now
            if slot.started_at is None:
                slot.started_at = now
            if slot.state == "recovering":
                slot.state = "submitted"
            if node is not None:
                slot.node = node
                slot.step = step
            elif step is not None:
                slot.step = step

    def queued(self, worker: str, prompt_id: str, now: float) -> None:
        """Recovery found the prompt still waiting in the worker's queue: it stays ours."""
        slot = self.job_of(worker, prompt_id)
        if slot is not None and slot.state == "recovering":
            slot.state = "submitted"
            slot.activity_at = now

    def completed(self, worker: str, prompt_id: str, now: float) -> list[Action]:
        """ComfyUI's history says success: fetch the outputs."""
        slot = self.job_of(worker, prompt_id)
        if slot is None or slot.state == "collecting":
            return []
        self._leave_worker(slot, now)
        slot.state = "collecting"
        slot.activity_at = now
        self._collecting[slot.id] = now
        return [Collect(slot.id, worker, prompt_id)]

    def collected(self, worker: str, prompt_id: str, now: float) -> tuple[str, int, float] | None:
        """The outputs are in place: the job is done. -> (job, attempt, seconds) to journal."""
        slot = self.job_of(worker, prompt_id)
        if slot is None or slot.state != "collecting":
            return None
        slot.state = "done"
        self._done += 1
        self._collecting.pop(slot.id, None)
        del self.jobs[slot.id]  # an ended job is a count, not a slot: memory stays bounded
        seconds = max(slot.activity_at - (slot.started_at or slot.submitted_at), 0.0)
        stats = self.workers[worker].stats
        stats.done += 1
        stats.seconds += seconds
        del self._by_prompt[prompt_id]
        return slot.id, slot.attempt, seconds

    def app_failed(self, worker: str, prompt_id: str, reason: Mapping[str, Any], now: float) -> list[Action]:
        """A 400 or an execution_error: the job fails for good, the batch goes on."""
        slot = self.job_of(worker, prompt_id)
        if slot is None:
            return []
        self._leave_worker(slot, now)
        self._end(slot, "failed")
        self.workers[worker].stats.failed += 1
        return [Fail(slot.id, slot.attempt, {"kind": "application", "worker": worker, **reason}, charged=False)]

    def system_failed(self, worker: str, prompt_id: str, reason: str, now: float, *, charged: bool = True,
                      kind: str = "system") -> list[Action]:
        slot = self.job_of(worker, prompt_id)
        if slot is None:
            return []
        self._leave_worker(slot, now)
        return self._system_failure(slot, reason, charged=charged, kind=kind)

    def interrupted(self, worker: str, prompt_id: str, now: float) -> list[Action]:
        slot = self.job_of(worker, prompt_id)
        if slot is None:
            return []
        why = slot.interrupt_why
        self._leave_worker(slot, now)
        if why == "user":
            return self._system_failure(slot, "interrupted by Ctrl-C", charged=False, kind="interrupted")
        if why == "hang":
            return self._system_failure(slot, f"hung: no progress for {self.job_timeout_s:g} s on {worker}; interrupted", charged=True, kind="hang")
        return self._system_failure(slot, f"interrupted on {worker} by someone else", charged=True, kind="interrupted")

    def cancelled(self, worker: str, prompt_id: str, now: float) -> list[Action]:
        slot = self.job_of(worker, prompt_id)
        if slot is None:
            return []
        self._leave_worker(slot, now)
        return self._system_failure(slot, "taken back from the queue on Ctrl-C", charged=False, kind="cancelled")

    # -- stopping --------------------------------------------------------------------------------
    def stop(self, now: float) -> list[Action]:
        """First Ctrl-C: dispatch nothing new, take back what has not started, let the rest finish.
        Second: interrupt the running ones too."""
        actions: list[Action] = []
        if self.stopping is None:
            self.stopping = "graceful"
            for worker in self.workers.values():
                for n, job in enumerate(worker.inflight):
                    slot = self.jobs[job]
                    if n > 0 and slot.state == "submitted" and slot.started_at is None and slot.prompt_id:
                        actions.append(Cancel(job, worker.name, slot.prompt_id))
        else:
            self.stopping = "hard"
            for worker in self.workers.values():
                for job in worker.inflight:
                    slot = self.jobs[job]
                    if slot.prompt_id and slot.state in ("submitted", "recovering"):
                        slot.interrupt_why, slot.interrupt_at = "user", now
                        actions.append(Interrupt(job, worker.name, slot.prompt_id, "Ctrl-C"))
        return actions

    # -- the clock -------------------------------------------------------------------------------
    def tick(self, now: float) -> list[Action]:
        """Hang detection, then hand out jobs to free workers."""
        actions: list[Action] = []
        if self.job_timeout_s is not None:
            for worker in self.workers.values():
                actions += self._check_hangs(worker, now)
        for job, since in list(self._collecting.items()):
            if now - since > self.collect_timeout_s:
                slot = self.jobs[job]
                why = f"its outputs did not arrive from {slot.worker} within {self.collect_timeout_s:g} s"
                actions += self._system_failure(slot, why, charged=True, kind="collect-timeout")
        actions += self._assign(now)
        return actions

    def _check_hangs(self, worker: _Worker, now: float) -> list[Action]:
        assert self.job_timeout_s is not None
        actions: list[Action] = []
        for job in worker.inflight:
            slot = self.jobs[job]
            if slot.state != "submitted" or slot.started_at is None or not slot.prompt_id:
                continue
            if slot.interrupt_at is None and now - slot.activity_at > self.job_timeout_s:
                slot.interrupt_at, slot.interrupt_why = now, "hang"
                actions.append(Interrupt(job, worker.name, slot.prompt_id, f"no progress for {self.job_timeout_s:g} s"))
            elif slot.interrupt_at is not None and now - slot.interrupt_at > self.interrupt_grace_s:
                # The interrupt did not take: the worker itself is stuck. Restart it.
                why = f"job {job} did not stop {self.interrupt_grace_s:g} s after an interrupt"
                return [*self.worker_down(worker.name, why, now), RestartWorker(worker.name, why)]
        return actions

    def _assign(self, now: float) -> list[Action]:
        if self.stopping is not None:
            return []
        actions: list[Action] = []
        live = {w.name for w in self.workers.values() if not w.gone}
        # While a worker has not come up yet, the others take one job each, queue none: a job
        # queued behind another on the first worker to answer is a job the next one could run.
        depth = self.depth if all(w.ever_up or w.gone for w in self.workers.values()) else 1
        skipped: set[str] = set()
        while self._pending or self._retry:
            free = [w for w in self.workers.values() if w.up and len(w.inflight) < depth and w.name not in skipped]
            if not free:
                break
            # The emptiest worker, and among those the one that freed up first.
            worker = min(free, key=lambda w: (len(w.inflight), w.free_since))
            job = self._next_for(worker.name, live)
            if job is None:
                skipped.add(worker.name)  # only retries that avoid this worker are left
                continue
            actions.append(self._submit(self.jobs[job], worker, now))
        return actions

    def _next_for(self, worker: str, live: set[str]) -> str | None:
        for n, job in enumerate(self._retry):
            avoid = self.jobs[job].avoid
            if worker not in avoid or live <= avoid:
                del self._retry[n]
                return job
        if self._pending:
            return self._pending.popleft()
        return None

    def _submit(self, slot: _Job, worker: _Worker, now: float) -> Submit:
        slot.attempt += 1
        slot.state = "submitted"
        slot.worker = worker.name
        slot.prompt_id = prompt_id_for(slot.id, slot.attempt)
        slot.submitted_at = slot.activity_at = now
        slot.started_at = slot.interrupt_at = None
        slot.interrupt_why = slot.node = None
        slot.step = None
        self._by_prompt[slot.prompt_id] = slot.id
        worker.inflight.append(slot.id)
        return Submit(slot.id, worker.name, slot.attempt, slot.prompt_id)

    # -- internals -----------------------------------------------------------------------------
    def _leave_worker(self, slot: _Job, now: float) -> None:
        if slot.worker is None:
            return
        worker = self.workers[slot.worker]
        if slot.id in worker.inflight:
            worker.inflight.remove(slot.id)
            if len(worker.inflight) < self.depth:
                worker.free_since = now

    def _end(self, slot: _Job, state: Literal["done", "failed"]) -> None:
        slot.state = state
        self._collecting.pop(slot.id, None)
        self.jobs.pop(slot.id, None)
        if state == "failed":
            self._failed += 1
        if slot.prompt_id is not None:
            self._by_prompt.pop(slot.prompt_id, None)

    def _system_failure(self, slot: _Job, reason: str, *, charged: bool, kind: str) -> list[Action]:
        worker = slot.worker or "?"
        if slot.worker is not None and slot.id in self.workers[slot.worker].inflight:
            self.workers[slot.worker].inflight.remove(slot.id)
        info = {"kind": kind, "worker": worker, "message": reason, "attempt": slot.attempt}
        if charged:
            slot.failures += 1
            slot.avoid.add(worker)
            if slot.worker is not None:
                self.workers[slot.worker].stats.requeued += 1
        if charged and slot.failures > self.retries:
            self._end(slot, "failed")
            if slot.worker is not None:
                self.workers[slot.worker].stats.failed += 1
            message = f"gave up after {slot.failures} system failures; last: {reason}"
            return [Fail(slot.id, slot.attempt, {**info, "message": message}, charged=True)]
        if slot.prompt_id is not None:
            self._by_prompt.pop(slot.prompt_id, None)
        self._collecting.pop(slot.id, None)
        slot.state = "pending"
        slot.started_at = slot.interrupt_at = None
        slot.interrupt_why = None
        slot.worker = None
        if slot.avoid:
            self._retry.append(slot.id)
        else:
            self._pending.appendleft(slot.id)  # released, not its fault: it goes again first
        return [Requeue(slot.id, slot.attempt, info, charged=charged)]

    def jobs_on(self, worker: str) -> Iterable[str]:
        return tuple(self.workers[worker].inflight)
