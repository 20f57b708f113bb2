"""Restart policy: pure decisions about an exited ComfyUI.

Like systemd's StartLimitBurst: at most ``burst`` failed starts within
``window_s``, then give up with the log tail instead of crash-looping.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .events import ExitKind

__all__ = ["ARGPARSE_EXIT", "FAILURES", "RESTART_POLICIES", "Decision", "RestartPolicy", "RestartTracker", "classify_exit"]

RestartPolicy = Literal["no", "on-failure", "always"]
RESTART_POLICIES: tuple[RestartPolicy, ...] = ("no", "on-failure", "always")
ARGPARSE_EXIT = 2
# Exits that are failures: the command that supervised them exits non-zero.
FAILURES: frozenset[ExitKind] = frozenset({"bad-flag", "crash", "killed", "hung", "not-ready"})


def classify_exit(
    code: int,
    *,
    requested: bool,
    reboot_marker: bool = False,
    was_ready: bool = False,
    hung: bool = False,
    not_ready: bool = False,
) -> ExitKind:
    """Why did the process end? ``code`` is Popen's returncode (negative = signal).

    ``hung`` and ``not_ready`` say the supervisor itself ended it: it stopped
    answering after ready, or never became ready in time.
    """
    if requested:
        return "requested"
    if reboot_marker:
        return "reboot"  # ComfyUI-Manager's restart button (comfy-cli's protocol)
    if code == ARGPARSE_EXIT and not was_ready:
        return "bad-flag"  # argparse rejected the command line: restarting cannot help
    if hung:
        return "hung"
    if not_ready:
        return "not-ready"
    if code < 0:
        return "killed"  # by a signal; SIGKILL from outside is often the OOM killer
    if code == 0:
        return "clean"
    return "crash"


@dataclass(frozen=True)
class Decision:
    restart: bool
    delay_s: float
    reason: str


@dataclass
class RestartTracker:
    policy: RestartPolicy
    burst: int = 5
    window_s: float = 120.0
    base_delay_s: float = 1.0
    max_delay_s: float = 30.0
    failures: list[float] = field(default_factory=list)

    def decide(self, kind: ExitKind, now: float) -> Decision:
        """Restart or not, after how long, and why (a sentence for the user)."""
        if kind == "reboot":
            return Decision(True, 0.0, "restart requested by ComfyUI-Manager")
        if kind == "requested":
            return Decision(False, 0.0, "stopped on request")
        if kind == "bad-flag":
            return Decision(False, 0.0, "ComfyUI rejected its command line (exit 2); fix the flags, restarting cannot help")
        if self.policy == "no":
            return Decision(False, 0.0, "restart policy is 'no'")
        if kind == "clean" and self.policy == "on-failure":
            return Decision(False, 0.0, "exited cleanly (code 0)")
        self.failures = [t for t in self.failures if now - t < self.window_s] + [now]
        if len(self.failures) >= self.burst:
            return Decision(False, 0.0, f"gave up: {len(self.failures)} failed starts within {self.window_s:.0f} s")
        delay = min(self.base_delay_s * 2 ** (len(self.failures) - 1), self.max_delay_s)
        return Decision(True, delay, f"restarting in {delay:.0f} s (attempt {len(self.failures) + 1})")
