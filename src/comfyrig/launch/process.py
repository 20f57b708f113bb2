"""Spawning ComfyUI in its own process group, reading its output, signalling the group.

No shell: an argv list, an explicit environment, the ComfyUI directory as cwd.
On Linux ComfyUI is started through the sentinel (``sentinel.py``): a small
child subreaper that starts ComfyUI in its own process group, and kills
everything ComfyUI started, at any depth, when ComfyUI ends or when comfyrig
dies (even by SIGKILL; it gets the parent-death signal). comfyrig still talks
to ComfyUI's own pid and group; the sentinel exits only after the last
descendant is gone, with ComfyUI's status, so ``poll`` reads as ComfyUI's.
The supervisor talks to a child only through the ``ChildProcess`` protocol,
so its tests drive fake children and never signal a real process group.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Protocol

from ..host.processes import group_alive, signal_group
from . import sentinel

__all__ = ["Child", "ChildProcess", "Spawner", "spawn"]

_PR_SET_PDEATHSIG = 1
_SENTINEL_ANSWER_S = 30.0  # the sentinel answers in tens of ms; this only guards against a stuck machine


class ChildProcess(Protocol):
    """What the supervisor needs of a started ComfyUI."""

    pid: int  # ComfyUI's own
    pgid: int
    sentinel_pid: int | None  # the process that outlives ComfyUI to clean up after it, if any

    def poll(self) -> int | None:
        """The exit code once the process ended (negative: killed by that signal), else None."""

    def signal_group(self, sig: int) -> bool:
        """Send ``sig`` to its whole process group; False when the group is gone."""

    def group_alive(self) -> bool: ...

    def output_done(self) -> bool:
        """True once its output reached end-of-file: every line was delivered, and the
        pipe and the log file are closed."""


# (argv, env, cwd, on_line, log_path, cpus) -> a started child; raises OSError.
Spawner = Callable[
    [tuple[str, ...], Mapping[str, str], "Path | None", Callable[[str], None], "Path | None", "tuple[int, ...] | None"],
    ChildProcess,
]


def _child_setup(cpus: tuple[int, ...] | None, death_signal: int = signal.SIGKILL) -> Callable[[], None]:
    def setup() -> None:
        # Runs in the child between fork and exec. A parent that ignores or
        # blocks SIGINT (a Ray worker does) would hand that on through exec,
        # and ComfyUI would then ignore the first step of every stop: give it
        # the defaults.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
        # Ask the kernel to signal us when the parent dies, so a killed
        # comfyrig leaves nothing behind (the sentinel takes SIGTERM and cleans
        # up); and pin it before torch starts its thread pools, which size
        # themselves from the CPUs they are allowed (the affinity is inherited).
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                libc.prctl(_PR_SET_PDEATHSIG, death_signal, 0, 0, 0)
            except OSError:
                pass
        if cpus:
            os.sched_setaffinity(0, cpus)

    return setup


class Child:
    """A running ComfyUI: its Popen, its process group, and a thread copying its output
    to the log file and ``on_line``. Pipe and log file are closed when the output ends."""

    def __init__(
        self, popen: subprocess.Popen[bytes], on_line: Callable[[str], None], log: IO[str] | None, pid: int | None = None
    ) -> None:
        self.popen = popen  # the sentinel, or ComfyUI itself where there is none
        self.pid = pid if pid is not None else popen.pid
        self.pgid = self.pid  # start_new_session: ComfyUI leads its own group
        self.sentinel_pid = popen.pid if pid is not None else None
        self._on_line = on_line
        self._log = log
        self._done = threading.Event()
        self.reader = threading.Thread(target=self._pump, name=f"comfyui-{self.pid}-output", daemon=True)
        self.reader.start()

    def _pump(self) -> None:
        assert self.popen.stdout is not None
        try:
            for raw in iter(self.popen.stdout.readline, b""):
                line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                self._write_log(line)
                self._on_line(line)
        finally:
            # At end-of-file, so no descriptor outlives the output (one per restart leaked before).
            for stream in (self.popen.stdout, self._log):
                try:
                    if stream is not None:
                        stream.close()
                except OSError:
                    pass
            self._done.set()

    def _write_log(self, line: str) -> None:
        if self._log is None:
            return
        try:
            self._log.write(line + "\n")
            self._log.flush()
        except (OSError, ValueError):
            # A full disk must not stop the reading: ComfyUI would block on a full pipe.
            with contextlib.suppress(OSError):
                self._log.close()
            self._log = None

    def poll(self) -> int | None:
        return self.popen.poll()

    def signal_group(self, sig: int) -> bool:
        return signal_group(self.pgid, sig)

    def group_alive(self) -> bool:
        return group_alive(self.pgid)

    def output_done(self) -> bool:
        return self._done.is_set()


def spawn(
    argv: tuple[str, ...],
    env: Mapping[str, str],
    cwd: Path | None,
    on_line: Callable[[str], None],
    log_path: Path | None = None,
    cpus: tuple[int, ...] | None = None,
) -> Child:
    """Start ``argv`` (through the sentinel on Linux); stdout and stderr are merged, copied
    to ``log_path`` and ``on_line``.

    ``cpus`` pins the child (and what it starts) to those CPUs.
    Raises OSError when the interpreter cannot be executed.
    """
    log = None
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "a", encoding="utf-8")  # noqa: SIM115 - closed by the Child when output ends
    try:
        if sys.platform.startswith("linux"):
            return _through_sentinel(argv, env, cwd, on_line, log, cpus)
        popen = _popen(list(argv), env, cwd, _child_setup(cpus), ())
        return Child(popen, on_line, log)
    except BaseException:
        if log is not None:
            log.close()
        raise


def _popen(
    argv: list[str], env: Mapping[str, str], cwd: Path | None, setup: Callable[[], None], pass_fds: tuple[int, ...]
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv,
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=setup,  # noqa: PLW1509 - only signal resets, prctl and sched_setaffinity
        close_fds=True,
        pass_fds=pass_fds,
    )


def _through_sentinel(
    argv: tuple[str, ...],
    env: Mapping[str, str],
    cwd: Path | None,
    on_line: Callable[[str], None],
    log: IO[str] | None,
    cpus: tuple[int, ...] | None,
) -> Child:
    read_end, write_end = os.pipe()
    try:
        command = [sys.executable, "-I", "-S", str(sentinel.script_path()),
                   "--parent", str(os.getpid()), "--status-fd", str(write_end), "--", *argv]
        # The sentinel's parent-death signal is SIGTERM, which it catches to kill everything.
        popen = _popen(command, env, cwd, _child_setup(cpus, signal.SIGTERM), (write_end,))
        os.close(write_end)
        write_end = -1
        answer = _read_answer(read_end)
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
    if answer.isdigit():
        return Child(popen, on_line, log, pid=int(answer))
    if popen.poll() is None:
        popen.kill()  # stuck or silent: it started nothing we know of
    popen.wait()
    assert popen.stdout is not None
    popen.stdout.close()
    parts = answer.split(" ", 2)
    if len(parts) == 3 and parts[0] == "error" and parts[1].isdigit():
        raise OSError(int(parts[1]), parts[2], argv[0])
    raise OSError(f"comfyrig's sentinel could not start {argv[0]}: {answer or 'it ended without a word'}")


def _read_answer(fd: int) -> str:
    """The sentinel's one line: ComfyUI's pid, or ``error ERRNO TEXT``; '' when it ended silently."""
    data = b""
    deadline = _SENTINEL_ANSWER_S
    while b"\n" not in data:
        ready, _, _ = select.select([fd], [], [], deadline)
        if not ready:
            return "no answer"
        chunk = os.read(fd, 512)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace").strip()
