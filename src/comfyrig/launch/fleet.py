"""Running a plan under supervision: the one way every command starts ComfyUI.

``launch`` runs a Fleet in the foreground (its caller holds the signal
handlers); the batch's own fleet and a Ray actor run one on a background
thread and ask it, thread-safely, which workers are ready or gone. Either
way the ports are checked first, every started process is recorded in the
registry (so ``status``, ``stop`` and ``monitor`` see it), and the
ComfyUI-Manager restart protocol is set up.

The background thread lives as long as the fleet: ComfyUI's children get the
parent-death signal when the thread that spawned them ends, so it must not
end earlier.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..comfy.multigpu import MultiGpuFinding
from ..errors import PortInUseError
from ..events import Reporter, discard
from ..host.ports import port_is_free, who_holds
from .events import FleetSnapshot, SupervisorEvent, WorkerView
from .plan import LaunchPlan
from .registry import Recorder, state_dir
from .supervisor import Probes, Supervisor, SupervisorOptions

__all__ = ["Fleet", "check_ports", "http_probes"]


def check_ports(plan: LaunchPlan, *, gateway: bool = True) -> None:
    """Raises PortInUseError naming the holder when a planned port is taken (the gateway's too,
    unless ``gateway`` is off: once it runs, it holds its own port)."""
    wanted = [(inst.port, inst.listen.split(",")[0]) for inst in plan.instances]
    if plan.gateway is not None and gateway:
        wanted.insert(0, (plan.gateway.port, plan.gateway.listen.split(",")[0]))
    for port, host in wanted:
        if not port_is_free(port, host):
            holder = who_holds(port)
            who = f"pid {holder.pid} ({holder.command[:120]})" if holder else "another process (not visible to this user)"
            raise PortInUseError(
                f"Port {port} on {host} is already in use by {who}.",
                hint="Stop that process ('comfyrig stop --port N' if comfyrig started it), "
                "choose another port with --port N, or take the next free one with --port auto.",
            )


def http_probes(*, inspect_multigpu: bool) -> Probes:
    """The production probes, through the one ComfyUI client (imported here, not at module
    level, so commands that never start ComfyUI do not pay for httpx)."""
    from ..comfy.client import ComfyClient, ready_stats
    from ..errors import ComfyAPIError

    def alive(url: str) -> int | None:
        try:
            with ComfyClient(url, timeout_s=5.0) as client:
                return client.queue_remaining()
        except (ComfyAPIError, KeyError, TypeError, ValueError):
            return None

    def inspect(url: str) -> MultiGpuFinding | None:
        try:
            with ComfyClient(url, timeout_s=30.0) as client:
                return client.multigpu_finding()
        except ComfyAPIError:
            return None

    return Probes(ready=ready_stats, alive=alive, inspect=inspect if inspect_multigpu else None)


def _tee(*reporters: Reporter[SupervisorEvent]) -> Reporter[SupervisorEvent]:
    def report(event: SupervisorEvent) -> None:
        for reporter in reporters:
            reporter(event)

    return report


class Fleet:
    """Every instance of ``plan`` under one Supervisor, recorded in the registry.

    ``environ`` is the environment the children inherit (and where the state
    directory is read from); ``reporter`` gets every SupervisorEvent.
    """

    def __init__(
        self,
        plan: LaunchPlan,
        environ: Mapping[str, str],
        options: SupervisorOptions,
        *,
        reporter: Reporter[SupervisorEvent] = discard,
        probes: Probes | None = None,
        **seams: Any,
    ) -> None:
        self.plan = plan
        state = state_dir(environ)
        sessions = {inst.name: state.session_path(f"{inst.port}") for inst in plan.instances}
        inspect = not plan.workers and len(plan.selection.gpus) > 1
        recorder = Recorder(state, plan)
        self.supervisor = Supervisor(
            plan.instances,
            environ,
            options,
            probes=probes or http_probes(inspect_multigpu=inspect),
            reporter=_tee(recorder, reporter),
            sessions=sessions,
            stop_requested=recorder.stop_requested,
            **seams,
        )
        self._snapshot: FleetSnapshot = self.supervisor.snapshot()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.exit_code: int | None = None

    # -- foreground ------------------------------------------------------------------------------
    def run(self, on_tick: Callable[[FleetSnapshot], None] | None = None) -> int:
        """Check the ports, then supervise on this thread until every instance is over."""
        check_ports(self.plan, gateway=False)

        def tick(snapshot: FleetSnapshot) -> None:
            with self._lock:
                self._snapshot = snapshot
            if on_tick is not None:
                on_tick(snapshot)

        self.exit_code = self.supervisor.run(on_tick=tick)
        # The last state, always: a run can end before its first tick (every instance failed to
        # start), and then the snapshot others ask for (is_gone, a Ray worker's state, the exit
        # report) stayed "starting" for good.
        tick(self.supervisor.snapshot())
        return self.exit_code

    def signal(self, signum: int) -> None:
        """For a signal handler: enqueue only (the loop decides what it means)."""
        self.supervisor.signal(signum)

    # -- background ------------------------------------------------------------------------------
    def start(self) -> None:
        """Check the ports (PortInUseError names the holder), then supervise on a thread."""
        check_ports(self.plan, gateway=False)
        self._thread = threading.Thread(target=self._background, name="comfyrig-fleet", daemon=True)
        self._thread.start()

    def _background(self) -> None:
        self.run()

    def stop(self, timeout_s: float = 30.0) -> None:
        if self._thread is not None and self._thread.is_alive():
            self.supervisor.request_stop()
            self._thread.join(timeout_s)

    # -- questions from other threads ------------------------------------------------------------
    def snapshot(self) -> FleetSnapshot:
        with self._lock:
            return self._snapshot

    def _view(self, name: str) -> WorkerView | None:
        return self.snapshot().view(name)

    @property
    def members(self) -> list[tuple[str, str, str]]:
        """(name, url, GPU label) per instance."""
        return [(i.name, i.url, f"GPU {','.join(map(str, i.gpu_indices))}" if i.gpu_indices else "CPU") for i in self.plan.instances]

    def log_file(self, name: str) -> Path | None:
        return next(i.log_file for i in self.plan.instances if i.name == name)

    def is_gone(self, name: str) -> bool:
        """True once the supervisor gave up on ``name`` (start limit, bad flag, ...)."""
        view = self._view(name)
        return view is not None and view.phase in ("failed", "exited") and not self.supervisor.stopping

    def is_ready(self, name: str) -> bool:
        view = self._view(name)
        return view is not None and view.phase == "ready"

    def why_gone(self, name: str) -> str:
        view = self._view(name)
        return view.message if view else ""

    def restart(self, name: str) -> None:
        self.supervisor.kill(name)
