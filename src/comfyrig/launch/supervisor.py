"""One supervision loop for one or many ComfyUI processes.

signals -> reap -> health -> reconcile, as gunicorn's arbiter does. Nothing
in the loop waits: signal handlers, output readers and HTTP probes only put
typed messages on its queue, and probes run beside it on a small thread pool
(a ComfyUI that takes 30 s to answer /object_info, or one that hangs, never
stalls the others). After ready, a liveness probe (``GET /prompt``, which also
gives the queue length) runs every few seconds; a ComfyUI that stops
answering for ``hang_timeout_s`` is killed, and the restart policy decides, as
gunicorn's ``murder_workers`` does.

Collaborators are constructor arguments (spawner, probes, clock, executor),
so tests drive the loop through scripted histories with fake children and
never send a real signal.
"""

from __future__ import annotations

import math
import queue
import signal
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..comfy.logs import StartupInfo, parse_line
from ..comfy.multigpu import MultiGpuFinding
from ..events import Reporter, discard
from .events import (
    Exited,
    ExitKind,
    FleetSnapshot,
    Hung,
    Inspected,
    LogLine,
    Phase,
    Ready,
    Started,
    StartFailed,
    Stopping,
    SupervisorEvent,
    WorkerView,
)
from .plan import InstanceSpec
from .policy import FAILURES, RestartPolicy, RestartTracker, classify_exit
from .process import ChildProcess, Spawner, spawn

__all__ = ["Probes", "Supervisor", "SupervisorOptions"]

TERMINAL: frozenset[Phase] = frozenset({"exited", "failed"})
TAIL_LINES = 30


@dataclass(frozen=True)
class SupervisorOptions:
    restart: RestartPolicy = "no"
    ready_timeout_s: float = 300.0
    stop_timeout_s: float = 10.0
    probe_interval_s: float = 0.25  # readiness probes while starting
    liveness_interval_s: float = 5.0  # after ready; also refreshes the queue length
    hang_timeout_s: float = 60.0  # no answer for this long (and hang_probes failures in a row) = hung; 0: never
    hang_probes: int = 3
    restart_delay_s: float = 1.0  # first backoff; doubles per failed start in a row
    healthy_after_s: float = 30.0  # ready this long: the start was healthy (resets the count)
    drain_s: float = 2.0  # after an exit, how long the last output lines may take to arrive


@dataclass(frozen=True)
class Probes:
    """HTTP questions the loop asks beside itself. Each must return within a few seconds
    (its own timeout) and never raise for an unreachable server.

    ``ready(url)``: ComfyUI's /system_stats once its API answers, else None.
    ``alive(url)``: the queue length (``GET /prompt``), None when it does not answer.
    ``inspect(url)``: after ready, what it shows about multi-GPU (or None).
    """

    ready: Callable[[str], Mapping[str, Any] | None]
    alive: Callable[[str], int | None]
    inspect: Callable[[str], MultiGpuFinding | None] | None = None


# -- what reaches the loop's queue -------------------------------------------------------------
@dataclass(frozen=True)
class _Signal:
    signum: int


@dataclass(frozen=True)
class _Kill:
    name: str
    why: str


@dataclass(frozen=True)
class _Output:
    name: str
    generation: int
    line: str


@dataclass(frozen=True)
class _ReadyAnswer:
    name: str
    generation: int
    stats: Mapping[str, Any] | None
    error: str | None = None  # a probe that raised: why it could not even ask


@dataclass(frozen=True)
class _AliveAnswer:
    name: str
    generation: int
    queue_remaining: int | None
    error: str | None = None


@dataclass(frozen=True)
class _Inspection:
    name: str
    generation: int
    finding: MultiGpuFinding | None


_Message = _Signal | _Kill | _Output | _ReadyAnswer | _AliveAnswer | _Inspection


@dataclass
class _Worker:
    spec: InstanceSpec
    tracker: RestartTracker
    session: Path | None
    phase: Phase = "starting"
    child: ChildProcess | None = None
    generation: int = 0  # +1 per start: answers about an earlier process are dropped
    info: StartupInfo = field(default_factory=StartupInfo)
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))
    phase_since: float = 0.0
    ready_since: float | None = None  # when this start became ready
    probe_busy: bool = False
    next_probe: float = 0.0
    last_answer: float = 0.0
    failed_probes: int = 0
    probe_error: str | None = None  # the last probe that could not even ask (a bad proxy setting, say)
    next_start: float = 0.0
    stop_deadline: float = 0.0
    exit_seen: tuple[int, float] | None = None  # (code, when): waiting for the last output lines
    message: str = ""
    exit_code: int | None = None
    final_kind: ExitKind | None = None
    stats: Mapping[str, Any] | None = None
    multigpu: MultiGpuFinding | None = None
    queue_remaining: int | None = None
    restarts: int = 0
    was_ready: bool = False
    ever_ready: bool = False
    requested: bool = False
    hung: bool = False
    not_ready: bool = False


class Supervisor:
    """Start every instance, keep them running per the restart policy, stop them all.

    ``reporter`` receives every SupervisorEvent, on the loop's thread, in order.
    ``sessions`` maps an instance name to its comfy-cli session path (the
    ComfyUI-Manager restart protocol). Thread-safe entry points: ``signal``,
    ``request_stop``, ``kill``; everything else runs on the loop's thread.
    """

    def __init__(
        self,
        specs: tuple[InstanceSpec, ...],
        environ: Mapping[str, str],
        options: SupervisorOptions,
        *,
        probes: Probes,
        reporter: Reporter[SupervisorEvent] = discard,
        sessions: Mapping[str, Path] | None = None,
        stop_requested: Callable[[str, int], bool] = lambda name, pid: False,
        spawner: Spawner = spawn,
        clock: Callable[[], float] = time.monotonic,
        beside: Callable[[Callable[[], None]], None] | None = None,
    ) -> None:
        self.environ = environ
        self.options = options
        self.stopping = False
        self._queue: queue.Queue[_Message] = queue.Queue()
        self._probes = probes
        self._report = reporter
        self._stop_requested = stop_requested
        self._spawn = spawner
        self._clock = clock
        self._pool: ThreadPoolExecutor | None = None
        if beside is None:
            self._pool = ThreadPoolExecutor(max_workers=max(2, 2 * len(specs)), thread_name_prefix="comfyrig-probe")
        self._beside: Callable[[Callable[[], None]], None] = beside or self._submit
        started = clock()  # elapsed times count from now, not from the clock's origin
        self.workers = [
            _Worker(
                spec=spec,
                phase_since=started,
                tracker=RestartTracker(options.restart, base_delay_s=options.restart_delay_s,
                                       healthy_after_s=options.healthy_after_s),
                session=(sessions or {}).get(spec.name),
            )
            for spec in specs
        ]

    def _submit(self, fn: Callable[[], None]) -> None:
        assert self._pool is not None
        self._pool.submit(fn)

    # -- thread-safe entry points: they only enqueue --------------------------------------------
    def signal(self, signum: int) -> None:
        """From a signal handler: the first stops every instance, a second kills them."""
        self._queue.put(_Signal(signum))

    def request_stop(self) -> None:
        self._queue.put(_Signal(signal.SIGTERM))

    def kill(self, name: str, why: str = "killed: it stopped responding") -> None:
        """SIGKILL one instance's process group; the restart policy then decides, as for
        any crash (the batch dispatcher uses it for a worker whose job hangs)."""
        self._queue.put(_Kill(name, why))

    # -- the loop -----------------------------------------------------------------------------
    def run(self, on_tick: Callable[[FleetSnapshot], None] | None = None, tick_s: float = 0.1) -> int:
        """Start everything, supervise until every instance is over; returns the exit code."""
        try:
            self.start_all()
            while not self.finished:
                self.step(tick_s)
                if on_tick is not None:
                    on_tick(self.snapshot())
            return self.exit_code()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)

    def start_all(self) -> None:
        for worker in self.workers:
            self._start(worker)

    def step(self, timeout: float) -> None:
        """One turn: wait up to ``timeout`` for messages, then reap, probe, reconcile."""
        self._drain(timeout)
        now = self._clock()
        for worker in self.workers:
            self._reap(worker, now)
            self._health(worker, now)
            self._reconcile(worker, now)

    @property
    def finished(self) -> bool:
        return all(w.phase in TERMINAL for w in self.workers)

    def exit_code(self) -> int:
        """0 after a requested stop or clean ends; else the first failure's code
        (a signal death as the shell reports it; 1 when it left with code 0)."""
        if self.stopping:
            return 0
        for worker in self.workers:
            if worker.final_kind in FAILURES or (worker.final_kind is None and worker.phase == "failed"):
                code = worker.exit_code or 0
                if code < 0:
                    return 128 - code
                return code or 1
        return 0

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
                    multigpu=w.multigpu,
                    queue_remaining=w.queue_remaining,
                    log_file=str(w.spec.log_file) if w.spec.log_file else None,
                    restarts=w.restarts,
                    tail=tuple(w.tail),
                    placement=w.spec.placement.describe() if w.spec.placement else None,
                    ever_ready=w.ever_ready,
                    listen=w.spec.listen,
                )
                for w in self.workers
            ),
            stopping=self.stopping,
        )

    # -- messages -------------------------------------------------------------------------------
    def _drain(self, timeout: float) -> None:
        try:
            message = self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
        except queue.Empty:
            return
        while True:
            self._handle(message)
            try:
                message = self._queue.get_nowait()
            except queue.Empty:
                return

    def _handle(self, message: _Message) -> None:
        match message:
            case _Signal():
                self._on_signal()
            case _Kill(name=name, why=why):
                worker = self._named(name)
                if worker is not None and worker.child is not None and worker.phase not in TERMINAL:
                    worker.child.signal_group(signal.SIGKILL)
                    worker.message = why
                    self._report(Stopping(name, why))
            case _Output(name=name, generation=generation, line=line):
                worker = self._named(name)
                if worker is not None and worker.generation == generation:
                    worker.info = parse_line(worker.info, line)
                    worker.tail.append(line)
                    self._report(LogLine(name, line))
            case _ReadyAnswer(name=name, generation=generation, stats=stats, error=error):
                worker = self._current(name, generation)
                if worker is not None:
                    worker.probe_busy = False
                    worker.probe_error = error
                    if stats is not None and worker.phase == "starting" and worker.exit_seen is None:
                        self._ready(worker, stats)
            case _AliveAnswer(name=name, generation=generation, queue_remaining=remaining, error=error):
                worker = self._current(name, generation)
                if worker is not None:
                    worker.probe_busy = False
                    worker.probe_error = error
                    if remaining is None:
                        worker.failed_probes += 1
                    else:
                        worker.failed_probes = 0
                        worker.last_answer = self._clock()
                        worker.queue_remaining = remaining
            case _Inspection(name=name, generation=generation, finding=finding):
                worker = self._current(name, generation)
                if worker is not None:
                    worker.multigpu = finding
                    self._report(Inspected(name, finding))

    def _named(self, name: str) -> _Worker | None:
        return next((w for w in self.workers if w.spec.name == name), None)

    def _current(self, name: str, generation: int) -> _Worker | None:
        worker = self._named(name)
        return worker if worker is not None and worker.generation == generation else None

    def _on_signal(self) -> None:
        if self.stopping:
            # A second Ctrl-C: no more grace.
            for worker in self.workers:
                if worker.child is not None and worker.phase not in TERMINAL:
                    worker.child.signal_group(signal.SIGKILL)
                    worker.message = "killed (second interrupt)"
                    self._report(Stopping(worker.spec.name, worker.message))
            return
        self.stopping = True
        now = self._clock()
        for worker in self.workers:
            if worker.phase == "backoff":
                self._set(worker, "exited", "stopped before its restart")
                worker.final_kind = "requested"
                self._report(Stopping(worker.spec.name, worker.message))
            elif worker.child is not None and worker.phase not in TERMINAL and worker.phase != "stopping":
                worker.requested = True
                self._stop(worker, now, "stopping (SIGINT to the process group)")

    # -- transitions ----------------------------------------------------------------------------
    def _set(self, worker: _Worker, phase: Phase, message: str) -> None:
        worker.phase = phase
        worker.phase_since = self._clock()
        worker.message = message

    def _start(self, worker: _Worker) -> None:
        spec = worker.spec
        env = spec.child_env(self.environ)
        if worker.session is not None:
            env["__COMFY_CLI_SESSION__"] = str(worker.session)
        worker.generation += 1
        generation, name = worker.generation, spec.name

        def on_line(line: str) -> None:
            self._queue.put(_Output(name, generation, line))

        worker.info = StartupInfo()
        worker.tail.clear()
        worker.stats = worker.multigpu = worker.queue_remaining = None
        worker.was_ready = worker.requested = worker.hung = worker.not_ready = False
        worker.ready_since = None
        worker.probe_busy = False
        worker.failed_probes = 0
        worker.probe_error = None
        worker.exit_seen = None
        try:
            worker.child = self._spawn(spec.argv, env, spec.cwd, on_line, spec.log_file, spec.cpus)
        except OSError as exc:
            worker.child = None
            worker.exit_code = 127
            worker.final_kind = "crash"
            reason = exc.strerror or str(exc)
            self._set(worker, "failed", f"could not start {spec.argv[0]}: {reason}")
            self._report(StartFailed(name, spec.argv[0], reason))
            return
        worker.next_probe = self._clock()
        self._set(worker, "starting", f"started pid {worker.child.pid}, waiting for HTTP on {spec.url}")
        self._report(Started(spec, worker.child.pid, worker.child.pgid, worker.generation, worker.child.sentinel_pid))

    def _ready(self, worker: _Worker, stats: Mapping[str, Any]) -> None:
        now = self._clock()
        took = now - worker.phase_since
        worker.stats = stats
        worker.was_ready = worker.ever_ready = True
        worker.ready_since = now
        worker.last_answer = now
        worker.next_probe = now + self.options.liveness_interval_s
        self._set(worker, "ready", f"ready at {worker.spec.url} after {took:.1f} s")
        self._report(Ready(worker.spec.name, worker.spec.url, took, stats))
        inspect = self._probes.inspect
        if inspect is not None:
            name, generation, url = worker.spec.name, worker.generation, worker.spec.url

            def ask() -> None:
                try:
                    finding = inspect(url)
                except Exception:  # noqa: BLE001 - "it did not say" is an answer too
                    finding = None
                self._queue.put(_Inspection(name, generation, finding))

            self._beside(ask)

    def _stop(self, worker: _Worker, now: float, reason: str) -> None:
        assert worker.child is not None
        worker.child.signal_group(signal.SIGINT)
        worker.stop_deadline = now + self.options.stop_timeout_s
        self._set(worker, "stopping", reason)
        self._report(Stopping(worker.spec.name, reason))

    def _reap(self, worker: _Worker, now: float) -> None:
        child = worker.child
        if child is None or worker.phase in TERMINAL:
            return
        if worker.exit_seen is None:
            code = child.poll()
            if code is None:
                return
            # ComfyUI is gone; anything it left in its group goes too (GPU memory, the port).
            child.signal_group(signal.SIGKILL)
            worker.exit_seen = (code, now)
        code, since = worker.exit_seen
        if not child.output_done() and now - since < self.options.drain_s:
            return  # its last lines are still in the pipe: they say why it ended
        self._drain(0)
        self._exited(worker, code, now)

    def _exited(self, worker: _Worker, code: int, now: float) -> None:
        child = worker.child
        assert child is not None
        worker.child = None
        worker.exit_seen = None
        worker.exit_code = code
        reboot = False
        if worker.session is not None:
            marker = Path(f"{worker.session}.reboot")
            if marker.exists():
                marker.unlink(missing_ok=True)
                reboot = True
        # 'comfyrig stop' from another shell leaves a marker for this process: asked to stop, so
        # no restart policy brings it back.
        requested = worker.requested or self.stopping or self._stop_requested(worker.spec.name, child.pid)
        kind = classify_exit(
            code,
            requested=requested,
            reboot_marker=reboot,
            was_ready=worker.was_ready,
            hung=worker.hung,
            not_ready=worker.not_ready,
        )
        ready_for = now - worker.ready_since if worker.ready_since is not None else None
        decision = worker.tracker.decide(kind, ready_for_s=ready_for)
        name = worker.spec.name
        if decision.restart and not self.stopping:
            worker.restarts += 1
            worker.next_start = now + decision.delay_s
            self._set(worker, "backoff", f"exited with code {code}; {decision.reason}")
            self._report(Exited(name, child.pid, code, kind, decision.reason, decision.delay_s))
            return
        worker.final_kind = kind
        if kind == "requested":
            self._set(worker, "exited", f"stopped (exit code {code})")
        else:
            self._set(worker, "failed" if kind in FAILURES else "exited", f"exited with code {code}: {decision.reason}")
        self._report(Exited(name, child.pid, code, kind, decision.reason, None))

    def _health(self, worker: _Worker, now: float) -> None:
        if worker.child is None or worker.exit_seen is not None or now < worker.next_probe:
            return
        if worker.phase == "starting":
            if now - worker.phase_since > self.options.ready_timeout_s:
                worker.not_ready = True
                why = f" (the probe could not ask: {worker.probe_error})" if worker.probe_error else ""
                self._stop(worker, now, f"not ready after {self.options.ready_timeout_s:.0f} s{why}; stopping it")
                return
            self._ask(worker, now, self.options.probe_interval_s, ready=True)
        elif worker.phase == "ready":
            hang = self.options.hang_timeout_s
            silent = now - worker.last_answer
            if hang > 0 and silent >= hang and worker.failed_probes >= self.options.hang_probes:
                worker.hung = True
                worker.child.signal_group(signal.SIGKILL)
                worker.message = f"hung: no answer for {silent:.0f} s ({worker.failed_probes} probes); killed"
                self._report(Hung(worker.spec.name, silent, worker.failed_probes))
                worker.next_probe = math.inf
                return
            self._ask(worker, now, self.options.liveness_interval_s, ready=False)

    def _ask(self, worker: _Worker, now: float, interval: float, *, ready: bool) -> None:
        if worker.probe_busy:
            return
        worker.probe_busy = True
        worker.next_probe = now + interval
        name, generation, url = worker.spec.name, worker.generation, worker.spec.url
        probe_ready, probe_alive = self._probes.ready, self._probes.alive

        def ask() -> None:
            # Whatever happens, an answer reaches the loop: a probe that raised (a proxy
            # setting httpx cannot use, a bug) is "no answer", never a probe busy for ever.
            try:
                message: _Message = (_ReadyAnswer(name, generation, probe_ready(url)) if ready
                                     else _AliveAnswer(name, generation, probe_alive(url)))
            except Exception as exc:  # noqa: BLE001 - reported in the not-ready message
                text = f"{type(exc).__name__}: {exc}"
                message = _ReadyAnswer(name, generation, None, text) if ready else _AliveAnswer(name, generation, None, text)
            self._queue.put(message)

        self._beside(ask)

    def _reconcile(self, worker: _Worker, now: float) -> None:
        if worker.phase == "backoff" and now >= worker.next_start and not self.stopping:
            self._start(worker)
        elif worker.phase == "stopping" and worker.child is not None and now >= worker.stop_deadline:
            if worker.child.group_alive():
                worker.child.signal_group(signal.SIGKILL)
                worker.message = f"did not stop within {self.options.stop_timeout_s:.0f} s: SIGKILL"
                self._report(Stopping(worker.spec.name, worker.message))
            worker.stop_deadline = math.inf
