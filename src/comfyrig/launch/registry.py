"""Records of the ComfyUI instances comfyrig started, so ``status``/``stop`` find them.

One JSON file per instance, named by port, in the state directory. A record
is trusted only while its pid still runs the same command line, so a reused
pid is never signalled.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .process import pid_alive

if TYPE_CHECKING:
    from ..config.settings import Settings

__all__ = ["InstanceRecord", "StateDir", "state_dir_for"]


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

    def matches_process(self) -> bool:
        """True when ``pid`` is alive and still runs our argv (not a reused pid)."""
        if not pid_alive(self.pid):
            return False
        try:
            raw = Path(f"/proc/{self.pid}/cmdline").read_bytes()
        except OSError:
            return False
        return raw.rstrip(b"\0").split(b"\0") == [a.encode() for a in self.argv]


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
        for path in sorted((self.root / "instances").glob("*.json")):
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


def state_dir_for(settings: Settings) -> StateDir:
    """COMFYRIG_STATE_DIR, else $XDG_STATE_HOME/comfyrig, else ~/.local/state/comfyrig."""
    env = settings.environ
    root = env.get("COMFYRIG_STATE_DIR") or os.path.join(
        env.get("XDG_STATE_HOME") or os.path.join(env.get("HOME", "/tmp"), ".local", "state"), "comfyrig"
    )
    return StateDir(Path(root))
