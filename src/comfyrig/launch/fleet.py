"""The local fleet: one ComfyUI per selected GPU, started and kept alive by the Supervisor.

The Supervisor's loop runs in its own thread and never installs signal
handlers (only the dispatcher's Ctrl-C handling applies). The thread lives as
long as the fleet: ComfyUI's children get the parent-death signal when the
thread that spawned them ends, so it must not end earlier. Restart policy is
on-failure: a worker killed mid-job comes back and takes jobs again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from pathlib import Path

from ..comfy.client import ready_stats
from .plan import LaunchPlan
from .service import check_ports
from .supervisor import FleetSnapshot, Supervisor, SupervisorOptions

__all__ = ["LocalFleet"]


class LocalFleet:
    """Start ``plan`` (made with ``workers=True``); ``members`` lists (name, url, GPU label)."""

    def __init__(
        self,
        plan: LaunchPlan,
        environ: Mapping[str, str],
        options: SupervisorOptions,
    ) -> None:
        self.plan = plan
        self.on_event: Callable[[str], None] | None = None  # supervisor news, one line each
        self.supervisor = Supervisor(
            plan.instances,
            environ,
            options,
            probe=ready_stats,
            log_files={i.name: i.log_file for i in plan.instances if i.log_file is not None},
            on_event=lambda text: self.on_event(text) if self.on_event is not None else None,
        )
        self._thread = threading.Thread(target=self._run, name="batch-fleet", daemon=True)
        self._snapshot: FleetSnapshot = self.supervisor.snapshot()
        self._lock = threading.Lock()
        self.exit_code: int | None = None

    @property
    def members(self) -> list[tuple[str, str, str]]:
        return [(i.name, i.url, f"GPU {','.join(map(str, i.gpu_indices))}" if i.gpu_indices else "CPU") for i in self.plan.instances]

    def log_file(self, name: str) -> Path | None:
        return next(i.log_file for i in self.plan.instances if i.name == name)

    def start(self) -> None:
        """Check the ports (PortInUseError names the holder), then start every instance."""
        check_ports(self.plan)
        self._thread.start()

    def _run(self) -> None:
        self.exit_code = self.supervisor.run(on_tick=self._keep)

    def _keep(self, snapshot: FleetSnapshot) -> None:
        with self._lock:
            self._snapshot = snapshot

    def snapshot(self) -> FleetSnapshot:
        with self._lock:
            return self._snapshot

    def is_gone(self, name: str) -> bool:
        """True once the Supervisor gave up on ``name`` (start limit, bad flag, ...)."""
        view = next((w for w in self.snapshot().workers if w.name == name), None)
        return view is not None and view.phase in ("failed", "exited") and not self.supervisor.stopping

    def is_ready(self, name: str) -> bool:
        view = next((w for w in self.snapshot().workers if w.name == name), None)
        return view is not None and view.phase == "ready"

    def why_gone(self, name: str) -> str:
        view = next((w for w in self.snapshot().workers if w.name == name), None)
        return view.message if view else ""

    def restart(self, name: str) -> None:
        self.supervisor.kill(name)

    def stop(self, timeout_s: float = 30.0) -> None:
        if self._thread.is_alive():
            self.supervisor.request_stop()
            self._thread.join(timeout_s)
