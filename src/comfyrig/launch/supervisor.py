"""One supervision loop for one or many ComfyUI processes.

signals -> reap -> health -> reconcile, as gunicorn's arbiter does: signal
handlers only enqueue, the loop acts. Collaborators (spawn, readiness probe,
clock) are constructor arguments so tests drive it without real signals.
"""

from __future__ import annotations

import queue
import signal
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..comfy.logs import StartupInfo, parse_line
from ..config.settings import RestartPolicy
from .plan import InstanceSpec
from .policy import RestartTracker, classify_exit
from .process import Child, group_alive, signal_group, spawn

__all__ = ["Phase", "Supervisor", "SupervisorOptions", "WorkerView", "FleetSnapshot"]

Phase = Literal["starting", "ready", "stopping", "backoff", "exited", "failed"]
TERMINAL: frozenset[str] = frozenset({"exited", "failed"})
TAIL_LINES = 30


@dataclass(frozen=True)
class SupervisorOptions:
    restart: RestartPolicy = "no"
    ready_timeout_s: float = 300.0
    stop_timeout_s: float = 10.0
    probe_interval_s: float = 0.25
    queue_interval_s: float = 2.0
    restart_delay_s: float = 1.0  # first backoff; doubles per failure


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
    multigpu_nodes: tuple[str, ...] | None
    queue_remaining: int | None
    log_file: str | None
    restarts: int
    tail: tuple[str, ...]
    placement: str | None = None


@dataclass(frozen=True)
class FleetSnapshot:
    workers: tuple[WorkerView, ...]
    stopping: bool


@dataclass
class _Worker:
    spec: InstanceSpec
    log_file: Path | None
    tracker: RestartTracker
    session: Path | None
    phase: Phase = "starting"
    child: Child | None = None
    info: StartupInfo = field(default_factory=StartupInfo)
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))
    phase_since: float = 0.0
    next_probe: float = 0.0
    next_start: float = 0.0
    stop_deadline: float = 0.0
    message: str = ""
    exit_code: int | None = None
    stats: Mapping[str, Any] | None = None
    multigpu: tuple[str, ...] | None = None
    queue_remaining: int | None = None
    restarts: int = 0
    was_ready: bool = False
    requested: bool = False


Probe = Callable[[str], "Mapping[str, Any] | None"]


class Supervisor:
    """Start every instance, keep them running per the restart policy, stop them all.

    ``probe(url)`` returns ComfyUI's /system_stats when it answers, else None.
    ``on_ready(view)`` runs once per start when an instance becomes ready and
    may return the MultiGPU node names it found. ``on_event(text)`` gets one
    line per state change (the plain-output mode prints them).
    """

    def __init__(
        self,
        specs: tuple[InstanceSpec, ...],
        environ: Mapping[str, str],
        options: SupervisorOptions,
        *,
        probe: Probe,
        log_files: Mapping[str, Path] | None = None,
        sessions: Mapping[str, Path] | None = None,
        on_line: Callable[[str, str], None] | None = None,
        on_event: Callable[[str], None] | None = None,
        on_ready: Callable[[WorkerView], tuple[str, ...] | None] | None = None,
        on_change: Callable[[Child, InstanceSpec, str], None] | None = None,
        queue_probe: Callable[[str], int | None] | None = None,
        spawner: Callable[..., Child] = spawn,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.environ = environ
        self.options = options
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._probe = probe
        self._queue_probe = queue_probe
        self._on_line = on_line
        self._on_event = on_event or (lambda text: None)
        self._on_ready = on_ready
        self._on_change = on_change
        self._spawn = spawner
        self._clock = clock
        self.stopping = False
        self._next_queue_poll = 0.0
        self.workers = [
            _Worker(
                spec=spec,
                log_file=(log_files or {}).get(spec.name),
                tracker=RestartTracker(options.restart, base_delay_s=options.restart_delay_s),
                session=(sessions or {}).get(spec.name),
            )
            for spec in specs
        ]

    # -- signals: handlers only enqueue --------------------------------------------
    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, lambda signum, _frame: self.events.put(("signal", signum)))

    def request_stop(self) -> None:
        self.events.put(("signal", signal.SIGTERM))

    def kill(self, name: str) -> None:
        """SIGKILL one instance's process group (thread-safe: the loop acts); the restart
        policy then decides, as for any crash. The batch dispatcher uses it for a hung worker."""
        self.events.put(("kill", name))

    # -- the loop -----------------------------------------------------------------------
    def run(self, on_tick: Callable[[FleetSnapshot], None] | None = None, tick_s: float = 0.1) -> int:
        for worker in self.workers:
            self._start(worker)
        while True:
            self._drain(tick_s)
            now = self._clock()
            for worker in self.workers:
                self._reap(worker, now)
                self._health(worker, now)
                self._reconcile(worker, now)
            self._poll_queues(now)
            if on_tick is not None:
                on_tick(self.snapshot())
            if all(w.phase in TERMINAL for w in self.workers):
                return self._exit_code()

    def snapshot(self) -> FleetSnapshot:
        now = self._clock()
        return FleetSnapshot(
            workers=tuple(
                WorkerView(
                    name=w.spec.name,
                    url=w.spec.url,
                    port=w.spec.port,
                    cuda_visible_devices=w.spec.cuda_visible_devices,
                    phase=w.phase,
                    pid=w.child.pid if w.child else None,
                    elapsed_s=now - w.phase_since,
                    info=w.info,
                    message=w.message,
                    exit_code=w.exit_code,
                    stats=w.stats,
                    multigpu_nodes=w.multigpu,
                    queue_remaining=w.queue_remaining,
                    log_file=str(w.log_file) if w.log_file else None,
                    restarts=w.restarts,
                    tail=tuple(w.tail),
                    placement=w.spec.placement.describe() if w.spec.placement else None,
                )
                for w in self.workers
            ),
            stopping=self.stopping,
        )

    def _exit_code(self) -> int:
        if self.stopping:
            return 0
        codes = [w.exit_code for w in self.workers if w.exit_code not in (None, 0)]
        if not codes:
            return 0
        code = codes[0]
        assert code is not None
        return 128 - code if code < 0 else code  # a signal death as the shell reports it

    def _set(self, worker: _Worker, phase: Phase, message: str) -> None:
        worker.phase = phase
        worker.phase_since = self._clock()
        worker.message = message
        self._on_event(f"{worker.spec.name}: {message}")

    def _drain(self, timeout: float) -> None:
        try:
            kind, payload = self.events.get(timeout=timeout)
        except queue.Empty:
            return
        while True:
            if kind == "line":
                name, line = payload
                for worker in self.workers:
                    if worker.spec.name == name:
                        worker.info = parse_line(worker.info, line)
                        worker.tail.append(line)
            elif kind == "signal":
                self._on_signal()
            elif kind == "kill":
                for worker in self.workers:
                    if worker.spec.name == payload and worker.child is not None and worker.phase not in TERMINAL:
                        signal_group(worker.child.pgid, signal.SIGKILL)
                        worker.message = "killed: it stopped responding"
            try:
                kind, payload = self.events.get_nowait()
            except queue.Empty:
                return

    def _on_signal(self) -> None:
        if self.stopping:
            # A second Ctrl-C: no more grace.
            for worker in self.workers:
                if worker.child is not None and worker.phase not in TERMINAL:
                    signal_group(worker.child.pgid, signal.SIGKILL)
                    worker.message = "killed (second interrupt)"
            return
        self.stopping = True
        now = self._clock()
        for worker in self.workers:
            if worker.phase == "backoff":
                self._set(worker, "exited", "stopped before its restart")
            elif worker.child is not None and worker.phase not in TERMINAL:
                self._stop(worker, now, "stopping (SIGINT to the process group)")

    def _stop(self, worker: _Worker, now: float, message: str) -> None:
        assert worker.child is not None
        worker.requested = True
        signal_group(worker.child.pgid, signal.SIGINT)
        worker.stop_deadline = now + self.options.stop_timeout_s
        self._set(worker, "stopping", message)

    def _start(self, worker: _Worker) -> None:
        env = worker.spec.child_env(self.environ)
        if worker.session is not None:
            env["__COMFY_CLI_SESSION__"] = str(worker.session)
        name = worker.spec.name

        def on_line(line: str, _name: str = name) -> None:
            self.events.put(("line", (_name, line)))
            if self._on_line is not None:
                self._on_line(_name, line)

        worker.info = StartupInfo()
        worker.stats = None
        worker.multigpu = None
        worker.was_ready = False
        worker.requested = False
        try:
            worker.child = self._spawn(worker.spec.argv, env, worker.spec.cwd, on_line, worker.log_file, worker.spec.cpus)
        except OSError as exc:
            worker.child = None
            worker.exit_code = 127
            self._set(worker, "failed", f"could not start {worker.spec.argv[0]}: {exc.strerror or exc}")
            return
        if self._on_change is not None:
            self._on_change(worker.child, worker.spec, "started")
        worker.next_probe = self._clock()
        self._set(worker, "starting", f"started pid {worker.child.pid}, waiting for HTTP on {worker.spec.url}")

    def _reap(self, worker: _Worker, now: float) -> None:
        child = worker.child
        if child is None or worker.phase in TERMINAL:
            return
        code = child.poll()
        if code is None:
            return
        child.reader.join(timeout=2.0)  # collect the last lines before judging
        self._drain(0)
        # ComfyUI is gone; anything it left in its group goes too.
        signal_group(child.pgid, signal.SIGKILL)
        if self._on_change is not None:
            self._on_change(child, worker.spec, "exited")
        worker.child = None
        worker.exit_code = code
        reboot = False
        if worker.session is not None:
            marker = Path(f"{worker.session}.reboot")
            if marker.exists():
                marker.unlink(missing_ok=True)
                reboot = True
        kind = classify_exit(code, requested=worker.requested or self.stopping, reboot_marker=reboot, was_ready=worker.was_ready)
        restart, delay, reason = worker.tracker.decide(kind, now)
        if restart and not self.stopping:
            worker.restarts += 1
            worker.next_start = now + delay
            self._set(worker, "backoff", f"exited with code {code}; {reason}")
            return
        if kind == "requested":
            self._set(worker, "exited", f"stopped (exit code {code})")
        else:
            self._set(worker, "failed" if code != 0 else "exited", f"exited with code {code}: {reason}")

    def _health(self, worker: _Worker, now: float) -> None:
        if worker.phase != "starting" or worker.child is None or now < worker.next_probe:
            return
        worker.next_probe = now + self.options.probe_interval_s
        stats = self._probe(worker.spec.url)
        if stats is not None:
            worker.stats = stats
            worker.was_ready = True
            took = now - worker.phase_since
            self._set(worker, "ready", f"ready at {worker.spec.url} after {took:.1f} s")
            if self._on_ready is not None:
                worker.multigpu = self._on_ready(self.snapshot().workers[self.workers.index(worker)])
            return
        if now - worker.phase_since > self.options.ready_timeout_s:
            self._stop(worker, now, f"not ready after {self.options.ready_timeout_s:.0f} s; stopping it")
            worker.requested = False  # a failure, not a requested stop

    def _reconcile(self, worker: _Worker, now: float) -> None:
        if worker.phase == "backoff" and now >= worker.next_start and not self.stopping:
            self._start(worker)
        elif worker.phase == "stopping" and worker.child is not None and now >= worker.stop_deadline:
            if group_alive(worker.child.pgid):
                signal_group(worker.child.pgid, signal.SIGKILL)
                worker.message = f"did not stop within {self.options.stop_timeout_s:.0f} s: SIGKILL"
                worker.stop_deadline = now + 3600

    def _poll_queues(self, now: float) -> None:
        if self._queue_probe is None or now < self._next_queue_poll:
            return
        self._next_queue_poll = now + self.options.queue_interval_s
        for worker in self.workers:
            if worker.phase == "ready":
                worker.queue_remaining = self._queue_probe(worker.spec.url)
