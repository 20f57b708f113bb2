"""What the supervision loop reports: typed events, and snapshots for dashboards.

Events say what happened, once (a renderer prints a line for each, a registry
writes a record); snapshots say how everything stands now (a dashboard draws
one per tick). Both are frozen: they cross threads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ..comfy.logs import StartupInfo
from ..comfy.multigpu import MultiGpuFinding
from .plan import InstanceSpec

__all__ = [
    "ExitKind",
    "Exited",
    "FleetSnapshot",
    "Hung",
    "Inspected",
    "LogLine",
    "Phase",
    "Ready",
    "StartFailed",
    "Started",
    "Stopping",
    "SupervisorEvent",
    "WorkerView",
    "describe",
]

Phase = Literal["starting", "ready", "stopping", "backoff", "exited", "failed"]
# Why a ComfyUI ended (see policy.classify_exit).
ExitKind = Literal["requested", "reboot", "bad-flag", "crash", "killed", "stopped", "hung", "not-ready", "clean"]


@dataclass(frozen=True)
class Started:
    """A ComfyUI process was started (``attempt`` counts from 1 per instance)."""

    spec: InstanceSpec
    pid: int
    pgid: int
    attempt: int
    sentinel: int | None = None  # the process that cleans up after it (launch/sentinel.py)

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True)
class StartFailed:
    """The interpreter could not be executed at all (exit 127, as a shell would say)."""

    name: str
    argv0: str
    reason: str


@dataclass(frozen=True)
class Ready:
    """ComfyUI's HTTP API answered; ``stats`` is its /system_stats."""

    name: str
    url: str
    seconds: float
    stats: Mapping[str, Any]


@dataclass(frozen=True)
class Inspected:
    """After ready: what ComfyUI shows about multi-GPU (its native and ComfyUI-MultiGPU node
    classes, the torch devices /system_stats lists); None when it did not answer."""

    name: str
    finding: MultiGpuFinding | None


@dataclass(frozen=True)
class LogLine:
    """One line of ComfyUI's output (stdout and stderr merged)."""

    name: str
    text: str


@dataclass(frozen=True)
class Hung:
    """A ready ComfyUI stopped answering: it is killed, then the restart policy decides."""

    name: str
    silent_s: float
    failed_probes: int


@dataclass(frozen=True)
class Stopping:
    """A stop began or escalated; ``reason`` says why (request, timeout, SIGKILL...)."""

    name: str
    reason: str


@dataclass(frozen=True)
class Exited:
    """The process ended. ``restart_in`` is the backoff when it will be started again;
    None when this instance is over (``final``)."""

    name: str
    pid: int
    code: int
    kind: ExitKind
    reason: str
    restart_in: float | None

    @property
    def final(self) -> bool:
        return self.restart_in is None


SupervisorEvent = Started | StartFailed | Ready | Inspected | LogLine | Hung | Stopping | Exited


@dataclass(frozen=True)
class WorkerView:
    """An immutable picture of one instance, for the dashboard and the exit report."""

    name: str
    url: str
    port: int
    cuda_visible_devices: str
    phase: Phase
    pid: int | None
    elapsed_s: float
    info: StartupInfo
    message: str
    exit_code: int | None
    stats: Mapping[str, Any] | None
    multigpu: MultiGpuFinding | None
    queue_remaining: int | None
    log_file: str | None
    restarts: int
    tail: tuple[str, ...]
    placement: str | None = None
    ever_ready: bool = False
    listen: str = "127.0.0.1"  # the addresses it binds (``url`` is how this machine reaches it)


@dataclass(frozen=True)
class FleetSnapshot:
    workers: tuple[WorkerView, ...]
    stopping: bool

    def view(self, name: str) -> WorkerView | None:
        return next((w for w in self.workers if w.name == name), None)


def describe(event: SupervisorEvent) -> str | None:
    """The one-line sentence for an event (plain output, logs); None for events that are
    shown otherwise (log lines, the multi-GPU inspection)."""
    match event:
        case Started(spec=spec, pid=pid):
            return f"{spec.name}: started pid {pid}, waiting for HTTP on {spec.url}"
        case StartFailed(name=name, argv0=argv0, reason=reason):
            return f"{name}: could not start {argv0}: {reason}"
        case Ready(name=name, url=url, seconds=seconds):
            return f"{name}: ready at {url} after {seconds:.1f} s"
        case Hung(name=name, silent_s=silent, failed_probes=probes):
            return f"{name}: hung: no answer for {silent:.0f} s ({probes} probes); killed"
        case Stopping(name=name, reason=reason):
            return f"{name}: {reason}"
        case Exited(name=name, code=code, kind=kind, reason=reason, restart_in=restart_in):
            if restart_in is not None:
                return f"{name}: exited with code {code}; {reason}"
            if kind == "requested":
                return f"{name}: stopped (exit code {code})"
            return f"{name}: exited with code {code}: {reason}"
        case LogLine() | Inspected():
            return None
