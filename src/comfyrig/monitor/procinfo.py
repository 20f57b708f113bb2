"""Who a GPU process is: user, command line, and the TCP ports it listens on.

Read from /proc, cached per pid, because the monitor asks every tick and a
ComfyUI holds hundreds of file descriptors. A process found listening keeps
its ports; one not (yet) listening is looked at again every ``recheck_s``,
since ComfyUI binds its port only after importing every custom node.
Another user's process (or another container's pid) gives None, not an error.
"""

from __future__ import annotations

import os
import pwd
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ..host.ports import listening_inodes
from ..secrets import mask_command

__all__ = ["ProcDetails", "ProcessInfo"]



@dataclass(frozen=True)
class ProcDetails:
    user: str | None
    command: str | None
    ports: tuple[int, ...]


class ProcessInfo:
    """Cached /proc lookups; ``clock`` is injectable for tests."""

    def __init__(
        self,
        proc_root: Path = Path("/proc"),
        recheck_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._root = proc_root
        self._recheck_s = recheck_s
        self._clock = clock
        self._cache: dict[int, tuple[ProcDetails, float]] = {}
        self._users: dict[int, str | None] = {}

    def describe(self, pids: Iterable[int]) -> dict[int, ProcDetails]:
        wanted = set(pids)
        # Forget processes that left the GPUs, so a reused pid is looked at afresh.
        for gone in set(self._cache) - wanted:
            del self._cache[gone]
        now = self._clock()
        stale = [
            pid
            for pid in wanted
            if pid not in self._cache
            or (not self._cache[pid][0].ports and now - self._cache[pid][1] >= self._recheck_s)
        ]
        if stale:
            inodes = listening_inodes(self._root)
            for pid in stale:
                self._cache[pid] = (self._read(pid, inodes), now)
        return {pid: self._cache[pid][0] for pid in wanted}

    def _read(self, pid: int, inodes: dict[str, int]) -> ProcDetails:
        base = self._root / str(pid)
        try:
            uid = base.stat().st_uid
        except OSError:
            return ProcDetails(user=None, command=None, ports=())
        return ProcDetails(user=self._user(uid), command=self._command(base), ports=self._ports(base, inodes))

    def _user(self, uid: int) -> str | None:
        if uid not in self._users:
            try:
                self._users[uid] = pwd.getpwuid(uid).pw_name
            except KeyError:
                self._users[uid] = str(uid)
        return self._users[uid]

    @staticmethod
    def _command(base: Path) -> str | None:
        try:
            raw = (base / "cmdline").read_bytes()
        except OSError:
            return None
        text = raw.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace").strip()
        if text:
            return mask_command(text)  # shown (view, JSON, CSV): another user's secrets stay hidden
        try:
            return (base / "comm").read_text().strip() or None
        except OSError:
            return None

    @staticmethod
    def _ports(base: Path, inodes: dict[str, int]) -> tuple[int, ...]:
        if not inodes:
            return ()
        ports: set[int] = set()
        try:
            for fd in os.scandir(base / "fd"):
                try:
                    target = os.readlink(fd.path)
                except OSError:
                    continue
                if target.startswith("socket:["):
                    port = inodes.get(target[8:-1])
                    if port is not None:
                        ports.add(port)
        except OSError:
            return ()  # not ours to look at
        return tuple(sorted(ports))
