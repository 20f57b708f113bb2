"""The sentinel: a tiny process between comfyrig and ComfyUI that leaves nothing behind.

comfyrig starts ``python -I -S sentinel.py --parent PID --status-fd FD -- ARGV...``; the
sentinel starts ARGV (ComfyUI) as its child in a new session, writes the child's pid
on FD, and then only waits. It is a *child subreaper* (``PR_SET_CHILD_SUBREAPER``): every
process ComfyUI starts, at any depth, that loses its parent is re-parented to the sentinel
instead of init, including one that called ``setsid`` and left ComfyUI's process group.
So the sentinel's descendants are exactly what ComfyUI started, and it can kill them all:

* when ComfyUI ends (on its own, or stopped by comfyrig through its process group), the
  sentinel sends SIGTERM to whatever ComfyUI left behind, waits ``--grace`` seconds, and
  SIGKILLs the rest; only then does it exit, with ComfyUI's own status (the same code, or
  killed by the same signal), so to comfyrig it looks like ComfyUI itself;
* when comfyrig dies, by any means including ``kill -9`` (the parent-death signal, SIGTERM
  here, or a changed parent pid), or when anyone sends the sentinel SIGTERM/SIGHUP/SIGINT,
  it SIGKILLs ComfyUI's group and every descendant at once, and exits.

ComfyUI itself also gets SIGKILL as its parent-death signal, so a sentinel killed with
SIGKILL still takes ComfyUI with it; ComfyUI's own children then escape (see the README,
"What stop cannot reach"). Why not cgroups: a cgroup of our own needs systemd's delegation
(``systemd-run --user --scope``) or root, neither of which a pip-installed launcher can
count on inside containers and Slurm jobs; the subreaper needs nothing and works in all.

Standard library only, and never imported by comfyrig at run time: it runs as a script with
``-I -S``, so it starts in tens of milliseconds and no package on the path can break it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

__all__ = ["descendants", "exit_like", "parse_args", "script_path"]

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
# What tells the sentinel to kill everything now: the parent-death signal and a plain kill.
_STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGHUP, signal.SIGINT})
_WATCHED = _STOP_SIGNALS | {signal.SIGCHLD}
_KILL_ROUNDS = 200  # each round SIGKILLs what it finds; a fork that raced the last one is found in the next


def script_path() -> Path:
    """This file, as comfyrig runs it (a script, not ``-m``: the package is never imported)."""
    return Path(__file__).resolve()


def parse_args(argv: Sequence[str]) -> tuple[int, int, float, list[str]]:
    """``--parent PID --status-fd FD [--grace S] -- ARGV...`` -> (parent, fd, grace, argv).
    Raises ValueError for anything else (comfyrig builds this line; a person never types it)."""
    if "--" not in argv:
        raise ValueError("no -- before the command")
    split = list(argv).index("--")
    head, command = list(argv[:split]), list(argv[split + 1:])
    if len(head) % 2 or not command:
        raise ValueError("options come in pairs and a command follows --")
    options = dict(zip(head[::2], head[1::2], strict=True))
    unknown = set(options) - {"--parent", "--status-fd", "--grace"}
    if unknown or "--parent" not in options or "--status-fd" not in options:
        raise ValueError(f"bad options: {sorted(options)}")
    grace = float(options.get("--grace", "2"))
    if not 0 <= grace < 3600:
        raise ValueError("--grace must be 0 to 3600 seconds")
    return int(options["--parent"]), int(options["--status-fd"]), grace, command


def _parents(proc: Path) -> dict[int, int]:
    """pid -> parent pid of every process we can see."""
    parents: dict[int, int] = {}
    for entry in proc.iterdir() if proc.is_dir() else ():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        fields = raw.rsplit(")", 1)[-1].split()  # after the command name, which may hold spaces
        if len(fields) > 1 and fields[1].isdigit():
            parents[int(entry.name)] = int(fields[1])
    return parents


def descendants(root: int, parents: Mapping[int, int]) -> list[int]:
    """Every process below ``root`` in a pid -> parent table, nearest first."""
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    found: list[int] = []
    frontier = [root]
    while frontier:
        nxt = [c for p in frontier for c in children.get(p, ()) if c != root and c not in found]
        found.extend(nxt)
        frontier = nxt
    return found


def exit_like(status: int) -> tuple[int | None, int | None]:
    """A wait status -> (exit code, None) or (None, signal), to end the same way."""
    if os.WIFSIGNALED(status):
        return None, os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status), None


class _Sentinel:
    def __init__(self, parent: int, grace: float, proc: Path = Path("/proc")) -> None:
        self.parent = parent
        self.grace = grace
        self.proc = proc
        self.me = os.getpid()
        self.child: int | None = None
        self.child_status: int | None = None

    # -- the kernel's side ---------------------------------------------------------------------
    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.child:
                self.child_status = status

    def _tree(self) -> list[int]:
        return descendants(self.me, _parents(self.proc))

    def _signal_all(self, sig: int, pids: Iterable[int]) -> None:
        if self.child is not None:
            with contextlib.suppress(OSError):  # its group first: one call, no race with forks inside it
                os.killpg(self.child, sig)
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, sig)

    def _wait(self, seconds: float) -> bool:
        """Wait for a child to end (or a stop signal) at most ``seconds``; True: a stop signal."""
        info = signal.sigtimedwait(_WATCHED, max(seconds, 0.0))
        self._reap()
        return info is not None and info.si_signo in _STOP_SIGNALS

    def kill_everything(self) -> None:
        """SIGKILL ComfyUI's group and every descendant until none is left, reaping them."""
        for _ in range(_KILL_ROUNDS):
            tree = self._tree()
            self._signal_all(signal.SIGKILL, tree)
            self._reap()
            if not tree:
                return
            self._wait(0.01)

    def leftovers(self) -> None:
        """ComfyUI ended: ask what it left behind to end (SIGTERM), then force it."""
        tree = self._tree()
        if not tree:
            return
        self._signal_all(signal.SIGTERM, tree)
        deadline = time.monotonic() + self.grace
        while self._tree():
            left = deadline - time.monotonic()
            if left <= 0 or self._wait(min(left, 0.05)):
                break
        self.kill_everything()

    def parent_gone(self) -> bool:
        return os.getppid() != self.parent

    def run(self) -> int | None:
        """Wait for the end; returns ComfyUI's wait status (None: it never ended on its own)."""
        while self.child_status is None:
            if self._wait(1.0) or self.parent_gone():
                self.kill_everything()
                break
        else:
            self.leftovers()
        return self.child_status


def _prctl(option: int, value: int) -> None:
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)


def _comfyui_setup() -> Callable[[], None]:
    def setup() -> None:
        # In ComfyUI, between fork and exec: the signals the sentinel blocks and waits for
        # are ComfyUI's to take again, and it dies with the sentinel, even by SIGKILL.
        for sig in _WATCHED:
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)

    return setup


def _end_like(status: int | None) -> None:
    code, sig = exit_like(status) if status is not None else (None, signal.SIGKILL)
    if sig is not None:
        # End by the same signal, so comfyrig reads ComfyUI's own status; no core file of ours.
        try:
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            if sig not in (signal.SIGKILL, signal.SIGSTOP):  # these two have no handler to reset
                signal.signal(sig, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {sig})
            os.kill(os.getpid(), sig)
        except (OSError, ValueError):
            pass
        code = 128 + sig  # a signal that does not end a process (SIGCHLD, say): its shell code
    os._exit(code if code is not None else 1)


def main(argv: Sequence[str]) -> None:
    # Block first: a stop or parent-death signal arriving from here on waits for sigtimedwait.
    signal.pthread_sigmask(signal.SIG_BLOCK, _WATCHED)
    try:
        parent, status_fd, grace, command = parse_args(argv)
    except ValueError as exc:
        print(f"comfyrig sentinel: {exc}", file=sys.stderr)
        os._exit(2)
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    sentinel = _Sentinel(parent, grace)
    if sentinel.parent_gone():  # comfyrig died before the parent-death signal was armed
        os._exit(1)
    try:
        popen = subprocess.Popen(
            command, start_new_session=True, close_fds=True, preexec_fn=_comfyui_setup()  # noqa: PLW1509
        )
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.write(status_fd, f"error {exc.errno or errno.ENOENT} {exc.strerror or exc}\n".encode())
        os._exit(127)
    sentinel.child = popen.pid
    # comfyrig may be gone already (EPIPE): then the loop below sees it and kills everything.
    with contextlib.suppress(OSError):
        os.write(status_fd, f"{popen.pid}\n".encode())
        os.close(status_fd)
    _end_like(sentinel.run())


if __name__ == "__main__":
    main(sys.argv[1:])
