"""What the dispatcher and its workers say to each other: typed events up, typed commands down.

Both cross threads (a worker's threads -> the dispatcher's queue) and, for Ray,
process boundaries (the actor pickles them), so they are frozen dataclasses of
plain values, matched with ``match`` by whoever receives them. Every event
names the worker it comes from; every prompt event the prompt id of one
attempt (the scheduler ignores events about an attempt that is no longer the
job's current one).

    worker -> dispatcher   WorkerEvent: WorkerUp, WorkerDown, PromptStarted, PromptActivity,
                           PromptQueued, PromptCompleted, OutputsCollected, AppFailed,
                           SystemFailed, PromptInterrupted, PromptCancelled
    dispatcher -> worker   WorkerCommand: SubmitPrompt, InterruptPrompt, CancelPrompt,
                           RecoverPrompt, CollectOutputs, RestartServer, StopWorker
    signal handler -> dispatcher   StopSignal (the handler only enqueues)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from .journal import OutputFile

__all__ = [
    "AppError",
    "AppFailed",
    "CancelPrompt",
    "CollectOutputs",
    "DiscardingSink",
    "DispatcherItem",
    "Emit",
    "Endpoint",
    "InterruptPrompt",
    "OutputSink",
    "OutputsCollected",
    "PromptActivity",
    "PromptCancelled",
    "PromptCompleted",
    "PromptInterrupted",
    "PromptQueued",
    "PromptStarted",
    "RecoverPrompt",
    "RestartServer",
    "StopSignal",
    "StopWorker",
    "SubmitPrompt",
    "SystemFailed",
    "WorkerCommand",
    "WorkerDown",
    "WorkerEvent",
    "WorkerUp",
]


# -- worker -> dispatcher -------------------------------------------------------------------------
@dataclass(frozen=True)
class WorkerUp:
    """The server answers and its websocket is open (again). ``device``: the first device of
    its /system_stats, ``comfyui``: its version; None when it did not say."""

    worker: str
    device: str | None = None
    comfyui: str | None = None


@dataclass(frozen=True)
class WorkerDown:
    """The server stopped answering; ``gone``: it will never come back (its fleet gave up)."""

    worker: str
    reason: str
    gone: bool = False


@dataclass(frozen=True)
class PromptStarted:
    worker: str
    prompt_id: str


@dataclass(frozen=True)
class PromptActivity:
    """A sign of life: ``node`` started executing (None: some node finished or was cached),
    ``step`` its (value, max) progress when it reports one."""

    worker: str
    prompt_id: str
    node: str | None = None
    step: tuple[float, float] | None = None


@dataclass(frozen=True)
class PromptQueued:
    """Recovery found the prompt still waiting in the server's queue."""

    worker: str
    prompt_id: str


@dataclass(frozen=True)
class PromptCompleted:
    """The server's history says success; the outputs are still on the server."""

    worker: str
    prompt_id: str


@dataclass(frozen=True)
class OutputsCollected:
    """Every output was downloaded and stored by the sink."""

    worker: str
    prompt_id: str
    files: tuple[OutputFile, ...]


@dataclass(frozen=True)
class AppError:
    """Why ComfyUI refused or failed a prompt: a 400's first node error, or the history's
    execution_error. ``node`` is the node id; ``error_type`` the 400's top-level type."""

    message: str
    node: str | None = None
    class_type: str | None = None
    exception_type: str | None = None
    error_type: str | None = None

    @classmethod
    def from_details(cls, details: Mapping[str, Any]) -> AppError:
        """From ``comfy.history.summarize_400`` or ``classify_history``'s details."""

        def text(key: str) -> str | None:
            value = details.get(key)
            return None if value is None else str(value)

        return cls(
            message=str(details.get("message") or ""),  # an exception may carry none
            node=text("node"), class_type=text("class_type"), exception_type=text("exception_type"),
            error_type=text("error_type"),
        )

    def reason(self) -> dict[str, Any]:
        """The fields that are known, as the journal records a failure's reason."""
        return {k: v for k, v in vars(self).items() if v is not None}


@dataclass(frozen=True)
class AppFailed:
    """An application error (HTTP 400, execution_error): the job fails, never retried."""

    worker: str
    prompt_id: str
    error: AppError


@dataclass(frozen=True)
class SystemFailed:
    """Not the job's fault (a download failed, the server forgot the prompt...): it runs again.
    ``charged``: it counts against the job's retries."""

    worker: str
    prompt_id: str
    reason: str
    charged: bool = True


@dataclass(frozen=True)
class PromptInterrupted:
    worker: str
    prompt_id: str


@dataclass(frozen=True)
class PromptCancelled:
    """Taken back from the server's queue before it started."""

    worker: str
    prompt_id: str


WorkerEvent = (
    WorkerUp | WorkerDown | PromptStarted | PromptActivity | PromptQueued | PromptCompleted | OutputsCollected
    | AppFailed | SystemFailed | PromptInterrupted | PromptCancelled
)


# -- dispatcher -> worker -------------------------------------------------------------------------
@dataclass(frozen=True)
class SubmitPrompt:
    """POST ``prompt`` (API format, patched and tagged for ``job``) as ``prompt_id``."""

    job: str
    prompt_id: str
    prompt: Mapping[str, Any]


@dataclass(frozen=True)
class InterruptPrompt:
    prompt_id: str


@dataclass(frozen=True)
class CancelPrompt:
    """Take it back from the queue if it has not started (answered by PromptCancelled)."""

    prompt_id: str


@dataclass(frozen=True)
class RecoverPrompt:
    """An earlier run submitted ``prompt_id`` for ``job`` here: find out what became of it."""

    job: str
    prompt_id: str


@dataclass(frozen=True)
class CollectOutputs:
    """Download a completed prompt's outputs into the sink (answered by OutputsCollected)."""

    job: str
    prompt_id: str


@dataclass(frozen=True)
class RestartServer:
    """The server is stuck: restart it where the worker can, and reconnect."""


@dataclass(frozen=True)
class StopWorker:
    pass


WorkerCommand = SubmitPrompt | InterruptPrompt | CancelPrompt | RecoverPrompt | CollectOutputs | RestartServer | StopWorker


# -- the dispatcher's own queue ---------------------------------------------------------------------
@dataclass(frozen=True)
class StopSignal:
    """Ctrl-C or SIGTERM arrived (``signum``); the dispatcher decides what the n-th one means."""

    signum: int


DispatcherItem = WorkerEvent | StopSignal


# -- the seams ----------------------------------------------------------------------------------------
class Endpoint(Protocol):
    """One worker as the dispatcher sees it: commands in (``send``, thread-safe, never blocks),
    events out through the ``emit`` it was built with."""

    name: str
    url: str
    label: str

    def start(self) -> None: ...
    def send(self, command: WorkerCommand) -> None: ...
    def stop(self) -> None: ...
    def join(self, timeout: float) -> None: ...


# (job, node id, n-th output of that node, the file name on the server, its bytes: all at once, or
# as chunks read while they are written, so an output of any size never sits in memory) -> where it went
OutputSink = Callable[[str, str, int, str, bytes | Iterable[bytes]], OutputFile]


@runtime_checkable
class DiscardingSink(Protocol):
    """A sink that can take back files it wrote: those of a job whose other downloads failed,
    so that a failed job leaves no file in outputs/ that no manifest line lists."""

    def discard(self, files: Sequence[OutputFile]) -> None: ...

Emit = Callable[[WorkerEvent], None]
