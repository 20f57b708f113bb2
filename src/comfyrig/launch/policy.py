"""Restart policy: pure decisions about an exited ComfyUI.

Like systemd's StartLimitBurst: at most ``burst`` failed starts within
``window_s``, then give up with the log tail instead of crash-looping.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..config.settings import RestartPolicy

__all__ = ["ExitKind", "classify_exit", "RestartTracker"]

ExitKind = Literal["requested", "reboot", "bad-flag", "crash", "killed", "clean"]

ARGPARSE_EXIT = 2


def classify_exit(code: int, *, requested: bool, reboot_marker: bool, was_ready: bool) -> ExitKind:
    """Why did the process end? ``code`` is Popen's returncode (negative = signal)."""
    if requested:
        return "requested"
    if reboot_marker:
        return "reboot"  # ComfyUI-Manager's restart button (comfy-cli's protocol)
    if code == ARGPARSE_EXIT and not was_ready:
        return "bad-flag"  # argparse rejected the command line: restarting cannot help
    if code < 0:
        return "killed"  # by a signal; SIGKILL from outside is often the OOM killer
    if code == 0:
        return "clean"
    return "crash"


@dataclass
class RestartTracker:
    policy: RestartPolicy
    burst: int = 5
    window_s: float = 120.0
    base_delay_s: float = 1.0
    max_delay_s: float = 30.0
    failures: list[float] = field(default_factory=list)

    def decide(self, kind: ExitKind, now: float) -> tuple[bool, float, str]:
        """-> (restart?, delay in seconds, reason)."""
        if kind == "reboot":
            return True, 0.0, "restart requested by ComfyUI-Manager"
        if kind == "requested":
            return False, 0.0, "stopped on request"
        if kind == "bad-flag":
            return False, 0.0, "ComfyUI rejected its command line (exit 2); fix the flags, restarting cannot help"
        if self.policy == "no":
            return False, 0.0, "restart policy is 'no'"
        if kind == "clean" and self.policy == "on-failure":
            return False, 0.0, "exited cleanly (code 0)"
        self.failures = [t for t in self.failures if now - t < self.window_s] + [now]
        if len(self.failures) >= self.burst:
            return False, 0.0, f"gave up: {len(self.failures)} failed starts within {self.window_s:.0f} s"
        delay = min(self.base_delay_s * 2 ** (len(self.failures) - 1), self.max_delay_s)
        return True, delay, f"restarting in {delay:.0f} s (attempt {len(self.failures) + 1})"
