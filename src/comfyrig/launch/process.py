"""Spawning ComfyUI in its own process group, and stopping the whole group.

No shell: an argv list, an explicit environment, the ComfyUI directory as cwd.
The child gets the Linux parent-death signal, so if comfyrig itself is killed
(even with SIGKILL) ComfyUI is killed too; its own children are reached
through the process group, which ``stop_group`` signals as a whole.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

__all__ = ["Child", "spawn", "signal_group", "group_alive", "pid_alive"]

_PR_SET_PDEATHSIG = 1


def _child_setup(cpus: tuple[int, ...] | None) -> Callable[[], None]:
    def setup() -> None:
        # Runs in the child between fork and exec. A parent that ignores or
        # blocks SIGINT (a Ray worker does) would hand that on through exec,
        # and ComfyUI would then ignore the first step of every stop: give it
        # the defaults.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
        # Ask the kernel to SIGKILL us when the parent dies, so a killed
        # comfyrig leaves no ComfyUI behind; and pin it before torch starts its
        # thread pools, which size themselves from the CPUs they are allowed.
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            except OSError:
                pass
        if cpus:
            os.sched_setaffinity(0, cpus)

    return setup


class Child:
    """A running ComfyUI: its Popen, process group, and a thread copying its output."""

    def __init__(self, popen: subprocess.Popen[bytes], on_line: Callable[[str], None], log: IO[str] | None) -> None:
        self.popen = popen
        self.pid = popen.pid
        self.pgid = popen.pid  # start_new_session: the child leads its own group
        self.started = time.monotonic()
        self._on_line = on_line
        self._log = log
        self.reader = threading.Thread(target=self._pump, name=f"comfyui-{self.pid}-output", daemon=True)
        self.reader.start()

    def _pump(self) -> None:
        assert self.popen.stdout is not None
        for raw in iter(self.popen.stdout.readline, b""):
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            if self._log is not None:
                self._log.write(line + "\n")
                self._log.flush()
            self._on_line(line)
        self.popen.stdout.close()

    def poll(self) -> int | None:
        return self.popen.poll()


def spawn(
    argv: tuple[str, ...],
    env: Mapping[str, str],
    cwd: Path | None,
    on_line: Callable[[str], None],
    log_path: Path | None = None,
    cpus: tuple[int, ...] | None = None,
) -> Child:
    """Start ``argv``; stdout and stderr are merged, copied to ``log_path`` and ``on_line``.

    ``cpus`` pins the child (and what it starts) to those CPUs.
    Raises OSError when the interpreter cannot be executed.
    """
    log = None
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "a", encoding="utf-8")  # noqa: SIM115 - lives as long as the child
    popen = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=_child_setup(cpus),  # noqa: PLW1509 - only prctl and sched_setaffinity
        close_fds=True,
    )
    return Child(popen, on_line, log)


def signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to the whole group; False when the group is already gone."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    return True


def group_alive(pgid: int) -> bool:
    """True while any process of the group exists (zombies of ours excluded by reaping)."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
