"""Records of the ComfyUI instances comfyrig started, so ``status``/``stop``/``monitor`` find them.

One JSON file per instance, named by port, in a state folder private to the user
(``$COMFYRIG_STATE_DIR``, else ``$XDG_STATE_HOME/comfyrig``, else ``~/.local/state/comfyrig``;
never a shared folder such as /tmp). Every ComfyUI comfyrig starts writes one, whichever
command started it (``launch``, the batch's own fleet, a Ray actor on this machine): the
``Recorder`` is a reporter of supervisor events, so nothing that supervises can forget it.

A record is only believed while its pid still runs the same command line, started at the
same moment, in the same process group: a reused pid or group is never signalled. The
folder is created 0700 and refused when another user owns it or others may write to it,
and files are written through ``O_EXCL|O_NOFOLLOW`` temporary files renamed into place, so
a record or a link planted by someone else is neither trusted nor written through.

``comfyrig stop`` leaves a stop marker next to a record (``PORT.stop``, holding the pid);
the supervisor that started that process reads it when the process ends and does not
restart it, whatever its restart policy.
"""

from __future__ import annotations

import json
import os
import pwd
import stat
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import StateDirError
from ..host.processes import cmdline, group_of, pid_alive, start_time
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
    start_ticks: int | None = None  # the pid's start time (clock ticks since boot)
    gateway: str | None = None  # the one URL in front of it, when launched behind a gateway

    def matches_process(self) -> bool:
        """True when ``pid`` is alive and is still this process: the same command line, the
        same start time and the same process group (not a pid reused since)."""
        if not pid_alive(self.pid) or cmdline(self.pid) != self.argv:
            return False
        if self.start_ticks is not None and start_time(self.pid) != self.start_ticks:
            return False
        return group_of(self.pid) == self.pgid

    @classmethod
    def from_json(cls, data: Any) -> InstanceRecord:
        """Raises TypeError/ValueError for anything but a record's fields."""
        if not isinstance(data, dict):
            raise TypeError("not an object")
        record = cls(**data)
        if not isinstance(record.pid, int) or not isinstance(record.pgid, int) or not isinstance(record.port, int):
            raise TypeError("pid, pgid and port must be numbers")
        if not isinstance(record.argv, list) or not all(isinstance(a, str) for a in record.argv):
            raise TypeError("argv must be a list of strings")
        return record


class StateDir:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.instances = root / "instances"

    # -- the folder: ours, private, and no link -------------------------------------------------
    def _ensure(self, folder: Path) -> Path:
        try:  # the ordinary folders above it (~/.local/state on a fresh account)
            self.root.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StateDirError(f"comfyrig's state folder {self.root} cannot be created: {exc.strerror or exc}.") from exc
        for path in (self.root, folder):
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:
                pass
            except OSError as exc:
                raise StateDirError(f"comfyrig's state folder {path} cannot be created: {exc.strerror or exc}.") from exc
            self._check(path)
        return folder

    def _check(self, path: Path) -> None:
        try:
            info = os.lstat(path)
        except OSError as exc:
            raise StateDirError(f"comfyrig's state folder {path} cannot be read: {exc.strerror or exc}.") from exc
        problem = None
        if not stat.S_ISDIR(info.st_mode):
            problem = "is not a folder (a link or a file stands there)"
        elif info.st_uid != os.geteuid():
            problem = f"belongs to another user ({_user(info.st_uid)})"
        elif info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            problem = "can be written by other users"
        if problem is not None:
            raise StateDirError(
                f"comfyrig's state folder {path} {problem}, so the instance records in it cannot be trusted.",
                hint="Remove it, or point COMFYRIG_STATE_DIR at a folder of your own (comfyrig creates it, mode 0700).",
            )

    # -- private files of comfyrig's own (the gateway's token) --------------------------------------
    def read_private(self, name: str) -> str | None:
        self._ensure(self.root)
        return self._read(self.root / name)

    def write_private(self, name: str, text: str) -> Path:
        """Written 0600 through a fresh temporary; returns the path (never the text) to show."""
        path = self.root / name
        self._write(path, text)
        return path

    # -- files: written through a fresh temporary, read without following links -------------------
    def _write(self, path: Path, text: str) -> None:
        folder = self._ensure(path.parent)
        tmp = folder / f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(tmp, path)  # replaces a planted link itself, never writes through it
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def _read(self, path: Path) -> str | None:
        """The text of one of our own regular files; None for anything else (missing, a link,
        another user's file, a FIFO that would block)."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return None
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() or info.st_size > 1 << 20:
                return None
            return handle.read().decode("utf-8", errors="replace")

    def _path(self, port: int) -> Path:
        return self.instances / f"{port}.json"

    def write(self, record: InstanceRecord) -> None:
        self._write(self._path(record.port), json.dumps(asdict(record), indent=2))

    def remove(self, port: int, pid: int | None = None) -> None:
        path = self._path(port)
        text = self._read(path)
        try:
            if text is not None and pid is not None and json.loads(text).get("pid") != pid:
                return  # another instance took this port since
        except (ValueError, AttributeError):
            pass
        path.unlink(missing_ok=True)
        self._marker(port).unlink(missing_ok=True)

    def holds(self, port: int, pid: int) -> bool:
        """True while the record of ``port`` is that of ``pid``."""
        text = self._read(self._path(port))
        try:
            return text is not None and json.loads(text).get("pid") == pid
        except (ValueError, AttributeError):
            return False

    def records(self) -> list[InstanceRecord]:
        """Every readable record, by port. Raises StateDirError for a folder that is not ours."""
        if not self.instances.exists():
            return []
        self._check(self.root)
        self._check(self.instances)
        found = []
        for path in self.instances.glob("*.json"):
            text = self._read(path)
            if text is None:
                continue
            try:
                found.append(InstanceRecord.from_json(json.loads(text)))
            except (ValueError, TypeError):
                continue
        return sorted(found, key=lambda r: r.port)

    # -- stop markers -------------------------------------------------------------------------------
    def _marker(self, port: int) -> Path:
        return self.instances / f"{port}.stop"

    def request_stop(self, port: int, pid: int) -> None:
        """Ask the supervisor of ``pid`` not to restart it when it ends."""
        self._write(self._marker(port), str(pid))

    def stop_requested(self, port: int, pid: int) -> bool:
        text = self._read(self._marker(port))
        return text is not None and text.strip() == str(pid)

    def session_path(self, name: str) -> Path:
        """A path for comfy-cli's reboot protocol (``__COMFY_CLI_SESSION__``)."""
        return self._ensure(self.root / "sessions") / f"{name}-{os.getpid()}-{int(time.time())}"


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def state_dir(environ: Mapping[str, str]) -> StateDir:
    """COMFYRIG_STATE_DIR, else $XDG_STATE_HOME/comfyrig, else ~/.local/state/comfyrig (the
    home from the password database when HOME is unset). Raises StateDirError when there is
    no home at all: a shared fallback such as /tmp would let another user plant records."""
    if environ.get("COMFYRIG_STATE_DIR"):
        return StateDir(Path(environ["COMFYRIG_STATE_DIR"]))
    if environ.get("XDG_STATE_HOME"):
        return StateDir(Path(environ["XDG_STATE_HOME"]) / "comfyrig")
    home = environ.get("HOME")
    if not home:
        try:
            home = pwd.getpwuid(os.geteuid()).pw_dir
        except KeyError:
            home = None
    if not home or home == "/":
        raise StateDirError(
            "There is no home folder for comfyrig's instance records (HOME is unset and the user has none).",
            hint="Set COMFYRIG_STATE_DIR to a folder of your own.",
        )
    return StateDir(Path(home) / ".local" / "state" / "comfyrig")


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
                        owner=self.plan.owner, start_ticks=start_time(pid),
                        gateway=self.plan.gateway.url if self.plan.gateway else None,
                    )
                )
            case Exited(name=name, pid=pid):
                self.state.remove(self._ports[name], pid)
            case _:
                pass

    def stop_requested(self, name: str, pid: int) -> bool:
        return self.state.stop_requested(self._ports[name], pid)
