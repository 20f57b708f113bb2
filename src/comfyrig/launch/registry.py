"""Records of the ComfyUI instances comfyrig started, so ``status``/``stop``/``monitor`` find them.

One JSON file per instance, named by port, in the state directory. Every
ComfyUI comfyrig starts writes one, whichever command started it (``launch``,
the batch's own fleet, a Ray actor on this machine): the ``Recorder`` is a
reporter of supervisor events, so nothing that supervises can forget it. A
record is trusted only while its pid still runs the same command line, so a
reused pid is never signalled.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from ..host.processes import cmdline, pid_alive
from .events import Exited, Started, SupervisorEvent
from .placement import format_cpus
from .plan import LaunchPlan

__all__ = ["InstanceRecord", "Recorder", "StateDir", "state_dir"]


@dataclass(frozen=True)
class InstanceRecord:
    name: str
    port: int
    url: str
    pid: int
    pgid: int
    argv: list[str]
    cwd: str | None
    cuda_visible_devices: str
    mode: str
    log_file: str | None
    supervisor_pid: int
    started_at: float
    cpus: str | None = None  # "0-15": the CPUs it is pinned to, when placed
    threads: int | None = None
    owner: str = "launch"  # the command that started it: launch, batch or ray

    def matches_process(self) -> bool:
        """True when ``pid`` is alive and still runs our argv (not a reused pid)."""
        return pid_alive(self.pid) and cmdline(self.pid) == self.argv


class StateDir:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, port: int) -> Path:
        return self.root / "instances" / f"{port}.json"

    def write(self, record: InstanceRecord) -> None:
        path = self._path(record.port)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(asdict(record), indent=2))
        tmp.replace(path)

    def remove(self, port: int, pid: int | None = None) -> None:
        path = self._path(port)
        try:
            if pid is not None and json.loads(path.read_text()).get("pid") != pid:
                return  # another instance took this port since
            path.unlink()
        except (OSError, ValueError):
            pass

    def records(self) -> list[InstanceRecord]:
        found = []
        paths = (self.root / "instances").glob("*.json")
        for path in sorted(paths, key=lambda p: (not p.stem.isdigit(), int(p.stem) if p.stem.isdigit() else 0)):
            try:
                found.append(InstanceRecord(**json.loads(path.read_text())))
            except (OSError, ValueError, TypeError):
                continue
        return found

    def session_path(self, name: str) -> Path:
        """A path for comfy-cli's reboot protocol (``__COMFY_CLI_SESSION__``)."""
        path = self.root / "sessions" / f"{name}-{os.getpid()}-{int(time.time())}"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path


def state_dir(environ: Mapping[str, str]) -> StateDir:
    """COMFYRIG_STATE_DIR, else $XDG_STATE_HOME/comfyrig, else ~/.local/state/comfyrig."""
    root = environ.get("COMFYRIG_STATE_DIR") or os.path.join(
        environ.get("XDG_STATE_HOME") or os.path.join(environ.get("HOME", "/tmp"), ".local", "state"), "comfyrig"
    )
    return StateDir(Path(root))


class Recorder:
    """A reporter that keeps the registry in step with the supervisor: a record per
    started process, removed when that process exits."""

    def __init__(self, state: StateDir, plan: LaunchPlan) -> None:
        self.state = state
        self.plan = plan
        self._ports = {i.name: i.port for i in plan.instances}

    def __call__(self, event: SupervisorEvent) -> None:
        match event:
            case Started(spec=spec, pid=pid, pgid=pgid):
                self.state.write(
                    InstanceRecord(
                        name=spec.name, port=spec.port, url=spec.url, pid=pid, pgid=pgid, argv=list(spec.argv),
                        cwd=str(spec.cwd) if spec.cwd else None, cuda_visible_devices=spec.cuda_visible_devices,
                        mode=self.plan.mode, log_file=str(spec.log_file) if spec.log_file else None,
                        supervisor_pid=os.getpid(), started_at=time.time(),
                        cpus=format_cpus(spec.placement.cpus) if spec.placement else None,
                        threads=spec.placement.threads if spec.placement else None,
                        owner=self.plan.owner,
                    )
                )
            case Exited(name=name, pid=pid):
                self.state.remove(self._ports[name], pid)
            case _:
                pass
