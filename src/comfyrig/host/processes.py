"""Processes of this machine: signalling whole process groups, liveness, command lines.

Facts and mechanics only, no policy: who to stop and when is the supervisor's
business. Another user's process gives "unknown" answers, never an error.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cmdline", "group_alive", "group_of", "is_zombie", "pid_alive", "signal_group", "start_time"]


def signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to the whole group; False when the group is gone (or not ours)."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def group_alive(pgid: int) -> bool:
    """True while any process of the group exists (our own zombies are reaped by Popen)."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists (also when it belongs to another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_zombie(pid: int, proc_root: Path = Path("/proc")) -> bool:
    """True when ``pid`` has ended and waits for its parent to reap it (state Z): it still
    answers signal 0, but nothing runs there any more."""
    try:
        raw = (proc_root / str(pid) / "stat").read_text()
    except OSError:
        return False
    fields = raw.rsplit(")", 1)[-1].split()
    return bool(fields) and fields[0] == "Z"


def cmdline(pid: int, proc_root: Path = Path("/proc")) -> list[str] | None:
    """The argv of ``pid`` from /proc, or None when it cannot be read (gone, not Linux)."""
    try:
        raw = (proc_root / str(pid) / "cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.rstrip(b"\0").split(b"\0")] if raw else []


def start_time(pid: int, proc_root: Path = Path("/proc")) -> int | None:
    """When ``pid`` started, in clock ticks since boot (/proc/PID/stat field 22), or None.

    With the pid it names one process for good: a pid reused later has another start time."""
    try:
        raw = (proc_root / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = raw.rsplit(")", 1)[-1].split()  # after the command name, which may hold spaces
    try:
        return int(fields[19])  # field 22 overall; fields[0] is field 3 (the state)
    except (IndexError, ValueError):
        return None


def group_of(pid: int) -> int | None:
    """The process group of ``pid``, or None when it is gone."""
    try:
        return os.getpgid(pid)
    except (ProcessLookupError, PermissionError):
        return None
