"""What a batch reports: typed events for ``run_batch``'s reporter, and its progress snapshots.

The batch never prints (STYLE 16). ``run_batch`` hands each event to the
reporter it was given; ``cli/batch_cmd.py`` renders them (a Live view from the
``BatchProgress`` snapshots on a terminal, one line per news event in pipes,
the ``BatchFinished`` report as a table or as JSON). ``describe`` is the one
sentence of a news event, for plain output and the live view's recent lines.

Events are frozen: news come from the dispatcher's thread and, for a local
fleet, from its supervisor's thread (``FleetNews``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ..launch.events import SupervisorEvent
from ..launch.events import describe as describe_supervisor

__all__ = [
    "ActorsStarting",
    "BatchEvent",
    "BatchFinished",
    "BatchProgress",
    "BatchSnapshot",
    "BatchStarted",
    "DryRunPlan",
    "FleetNews",
    "JobDone",
    "JobFailed",
    "JobInterrupting",
    "JobRetried",
    "Member",
    "PlannedJob",
    "StopRequested",
    "WorkerCameUp",
    "WorkerRestarting",
    "WorkerRow",
    "WorkerWentDown",
    "describe",
    "reason_text",
]

WorkerState = Literal["up", "down", "gone"]


# -- snapshots ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WorkerRow:
    name: str
    label: str
    url: str
    state: WorkerState
    job: str | None
    node: str | None
    step: tuple[float, float] | None
    queued: int
    done: int
    failed: int
    requeued: int
    mean_s: float | None
    device: str | None
    node_id: str | None = None  # the Ray node it runs on now (None: not on Ray)
    host: str | None = None


@dataclass(frozen=True)
class JobRetried:
    """A job failed for a reason not its own (charged against its retries) and runs again."""

    job: str
    reason: Mapping[str, Any]  # as journaled: kind, worker, message, attempt


@dataclass(frozen=True)
class JobFailed:
    """A job failed for good (application error, or out of retries)."""

    job: str
    reason: Mapping[str, Any]  # as journaled: kind, worker, message, node, class_type, ...


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
    recent: tuple[JobRetried | JobFailed, ...]  # the latest retries and failures, oldest first


# -- events ---------------------------------------------------------------------------------------
Member = tuple[str, str, str]  # (worker name, url, label such as "GPU 0")


@dataclass(frozen=True)
class PlannedJob:
    index: int
    job: str
    values: Mapping[str, Any]


@dataclass(frozen=True)
class DryRunPlan:
    """``--dry-run``: what would run; nothing was started."""

    workflow: str
    workflow_sha256: str
    out_dir: str
    backend: str  # url, fleet, ray
    jobs: int
    first: tuple[PlannedJob, ...]
    workers: tuple[Member, ...]
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class ActorsStarting:
    """Ray: ``count`` actors are being started, one ComfyUI each."""

    count: int


@dataclass(frozen=True)
class FleetNews:
    """Something happened to a ComfyUI of the batch's own fleet (started, ready, exited...)."""

    event: SupervisorEvent


@dataclass(frozen=True)
class BatchStarted:
    """The workers answer, the jobs are journaled; the dispatcher starts."""

    workflow: str
    out_dir: str
    backend: str
    workers: int
    total: int
    done_before: int


@dataclass(frozen=True)
class WorkerCameUp:
    worker: str
    url: str
    device: str | None


@dataclass(frozen=True)
class WorkerWentDown:
    worker: str
    reason: str
    gone: bool


@dataclass(frozen=True)
class WorkerRestarting:
    worker: str
    why: str


@dataclass(frozen=True)
class JobDone:
    job: str
    worker: str
    seconds: float
    files: int
    done: int  # jobs done so far, this run's and earlier ones'
    total: int


@dataclass(frozen=True)
class JobInterrupting:
    job: str
    worker: str
    why: str


@dataclass(frozen=True)
class StopRequested:
    """The ``count``-th Ctrl-C (or SIGTERM): 1 lets running jobs finish, 2 interrupts them."""

    count: int


@dataclass(frozen=True)
class BatchProgress:
    snapshot: BatchSnapshot


@dataclass(frozen=True)
class BatchFinished:
    """The batch ended; ``report`` is what report.json holds (see batch/report.py)."""

    report: Mapping[str, Any]


BatchEvent = (
    DryRunPlan | ActorsStarting | FleetNews | BatchStarted | WorkerCameUp | WorkerWentDown | WorkerRestarting
    | JobDone | JobRetried | JobFailed | JobInterrupting | StopRequested | BatchProgress | BatchFinished
)


def reason_text(reason: Mapping[str, Any]) -> str:
    """A journaled failure reason as one phrase: "node 4 (FakeSleep): RuntimeError: boom"."""
    parts = []
    if reason.get("node"):
        parts.append(f"node {reason['node']}" + (f" ({reason['class_type']})" if reason.get("class_type") else ""))
    if reason.get("exception_type"):
        parts.append(str(reason["exception_type"]))
    parts.append(str(reason.get("message") or reason.get("kind") or "failed"))
    return ": ".join(parts)


def describe(event: BatchEvent) -> str | None:
    """The one-line sentence of a news event; None for events shown otherwise (the dry-run
    plan, snapshots, the final report, a fleet's log lines)."""
    match event:
        case ActorsStarting(count=count):
            return f"starting {count} Ray actor(s), one ComfyUI each"
        case FleetNews(event=news):
            return describe_supervisor(news)
        case BatchStarted(total=total, done_before=done_before, workers=workers):
            return f"{total} jobs, {done_before} already done; {workers} worker(s)"
        case WorkerCameUp(worker=worker, url=url, device=device):
            return f"{worker}: up at {url}" + (f" ({device})" if device else "")
        case WorkerWentDown(worker=worker, reason=reason, gone=gone):
            return f"{worker}: {'gone' if gone else 'down'}: {reason}"
        case WorkerRestarting(worker=worker, why=why):
            return f"{worker}: restarting it: {why}"
        case JobDone(job=job, worker=worker, seconds=seconds, files=files, done=done, total=total):
            return f"done {job} on {worker} in {seconds:.1f} s ({files} file{'s' if files != 1 else ''}) [{done}/{total}]"
        case JobRetried(job=job, reason=reason):
            return f"retry {job}: {reason.get('message')}"
        case JobFailed(job=job, reason=reason):
            return f"failed {job}: {reason_text(reason)}"
        case JobInterrupting(job=job, worker=worker, why=why):
            return f"interrupting {job} on {worker}: {why}"
        case StopRequested(count=1):
            return "interrupted: no new jobs; running jobs finish (Ctrl-C again to interrupt them)"
        case StopRequested(count=2):
            return "interrupted again: interrupting the running jobs"
        case StopRequested() | DryRunPlan() | BatchProgress() | BatchFinished():
            return None
