"""The sentinel: its pure parts, then real processes (signals and orphans are the point)."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from comfyrig.launch.process import spawn
from comfyrig.launch.sentinel import descendants, exit_like, parse_args

from ..launching import pid_gone, wait_until

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sentinel is Linux only")


def test_parse_args() -> None:
    assert parse_args(["--parent", "12", "--status-fd", "5", "--", "python", "main.py"]) == (12, 5, 2.0, ["python", "main.py"])
    assert parse_args(["--parent", "1", "--status-fd", "3", "--grace", "0.5", "--", "x", "--", "y"])[2:] == (0.5, ["x", "--", "y"])
    for bad in (
        ["--parent", "1", "--status-fd", "3"],  # no command
        ["--parent", "1", "--", "x"],  # no status fd
        ["--parent", "1", "--status-fd", "3", "--grace", "nan", "--", "x"],
        ["--parent", "1", "--status-fd", "3", "--grace", "-1", "--", "x"],
        ["--parent", "1", "--status-fd", "3", "--what", "2", "--", "x"],
        ["--parent", "x", "--status-fd", "3", "--", "x"],
        ["--parent", "1", "--status-fd", "--", "x"],
    ):
        with pytest.raises(ValueError):
            parse_args(bad)


def test_descendants_every_depth_not_the_rest() -> None:
    parents = {10: 1, 11: 10, 12: 11, 13: 12, 20: 1, 21: 20, 14: 10}
    assert sorted(descendants(10, parents)) == [11, 12, 13, 14]
    assert descendants(13, parents) == []
    assert descendants(99, parents) == []
    assert sorted(descendants(1, {**parents, 1: 1})) == [10, 11, 12, 13, 14, 20, 21]  # a loop does not hang


def test_exit_like_keeps_codes_and_signals() -> None:
    assert exit_like(0) == (0, None)
    assert exit_like(3 << 8) == (3, None)
    assert exit_like(signal.SIGKILL) == (None, signal.SIGKILL)
    assert exit_like(signal.SIGINT) == (None, signal.SIGINT)


# A "ComfyUI" that starts a daemon (setsid, double fork, deaf to SIGTERM) and writes its pid.
_DAEMON = """
import os, signal, sys, time
path, then = sys.argv[1], sys.argv[2]
if os.fork() == 0:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.setsid()
    if os.fork():
        os._exit(0)
    open(path + ".tmp", "w").write(str(os.getpid())); os.replace(path + ".tmp", path)
    time.sleep(3600)
while not os.path.exists(path):
    time.sleep(0.01)
print("ready", flush=True)
if then == "exit3":
    sys.exit(3)
time.sleep(3600)
"""


def _start(tmp_path: Path, then: str) -> tuple[object, int, list[str]]:
    lines: list[str] = []
    pidfile = tmp_path / "daemon.pid"
    child = spawn((sys.executable, "-c", _DAEMON, str(pidfile), then), dict(os.environ), tmp_path, lines.append)
    wait_until(lambda: "ready" in lines, 10, "the child to start its daemon")
    return child, int(pidfile.read_text()), lines


@linux_only
def test_comfyui_exits_its_daemon_goes_and_the_code_is_kept(tmp_path: Path) -> None:
    child, daemon, _ = _start(tmp_path, "exit3")
    assert child.sentinel_pid not in (None, child.pid)  # type: ignore[attr-defined]
    code = wait_until(lambda: child.poll(), 15, "the sentinel to end")  # type: ignore[attr-defined]
    assert code == 3
    assert pid_gone(daemon)  # SIGTERM ignored, so it took the SIGKILL after the grace period


@linux_only
def test_killed_comfyui_reads_as_killed(tmp_path: Path) -> None:
    child, daemon, _ = _start(tmp_path, "sleep")
    os.kill(child.pid, signal.SIGKILL)  # type: ignore[attr-defined]
    assert wait_until(lambda: child.poll(), 15, "the sentinel to end") == -signal.SIGKILL  # type: ignore[attr-defined]
    assert pid_gone(daemon)


@linux_only
def test_sentinel_told_to_stop_kills_everything(tmp_path: Path) -> None:
    child, daemon, _ = _start(tmp_path, "sleep")
    os.kill(child.sentinel_pid, signal.SIGTERM)  # type: ignore[attr-defined]
    wait_until(lambda: child.poll() is not None, 10, "the sentinel to end")  # type: ignore[attr-defined]
    assert pid_gone(child.pid) and pid_gone(daemon)  # type: ignore[attr-defined]


@linux_only
def test_an_interpreter_that_cannot_run_is_an_oserror(tmp_path: Path) -> None:
    with pytest.raises(OSError) as info:
        spawn((str(tmp_path / "no-python"), "main.py"), dict(os.environ), tmp_path, lambda line: None)
    assert "no-python" in str(info.value)
