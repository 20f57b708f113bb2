"""Restart policy: pure decisions about an exited ComfyUI, on systemd's model.

- Only starts that never became healthy count toward the start limit: a ComfyUI that was
  ready and ran for ``healthy_after_s`` resets the count and the backoff, however many times
  it has been killed before (an OOM-killed worker of a long batch comes back every time).
- ``burst`` unhealthy starts in a row end it, whatever the time between them (a ComfyUI that
  crashes 30 s after every start, never ready, used to loop for ever under a time window).
- ``on-failure`` restarts neither a clean exit (code 0) nor a clean stop signal (SIGINT,
  SIGTERM, SIGHUP, as systemd's SuccessExitStatus treats them), so ``kill -INT`` or another
  tool's stop is not undone; ``always`` restarts both.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from typing import Literal

from .events import ExitKind

__all__ = [
    "ARGPARSE_EXIT",
    "CLEAN_SIGNALS",
    "FAILURES",
    "RESTART_POLICIES",
    "Decision",
    "RestartPolicy",
    "RestartTracker",
    "classify_exit",
]

RestartPolicy = Literal["no", "on-failure", "always"]
RESTART_POLICIES: tuple[RestartPolicy, ...] = ("no", "on-failure", "always")
ARGPARSE_EXIT = 2
# A process ended by one of these was asked to stop, not broken (systemd's clean signals).
CLEAN_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
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

    ``requested``: comfyrig stopped it (Ctrl-C, ``comfyrig stop``). ``hung`` and
    ``not_ready`` say the supervisor itself ended it: it stopped answering after ready,
    or never became ready in time.
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
    if code < 0 and -code in CLEAN_SIGNALS:
        return "stopped"  # someone else asked it to stop
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
    """``healthy_after_s``: how long a start must have been ready to count as healthy."""

    policy: RestartPolicy
    burst: int = 5
    base_delay_s: float = 1.0
    max_delay_s: float = 30.0
    healthy_after_s: float = 30.0
    unhealthy_starts: int = 0  # in a row

    def decide(self, kind: ExitKind, *, ready_for_s: float | None) -> Decision:
        """Restart or not, after how long, and why (a sentence for the user).

        ``ready_for_s``: how long this start had been ready when it ended (None: never).
        """
        if kind == "reboot":
            return Decision(True, 0.0, "restart requested by ComfyUI-Manager")
        if kind == "requested":
            return Decision(False, 0.0, "stopped on request")
        if kind == "bad-flag":
            return Decision(False, 0.0, "ComfyUI rejected its command line (exit 2); fix the flags, restarting cannot help")
        if self.policy == "no":
            return Decision(False, 0.0, "restart policy is 'no'")
        if self.policy == "on-failure" and kind == "clean":
            return Decision(False, 0.0, "exited cleanly (code 0)")
        if self.policy == "on-failure" and kind == "stopped":
            return Decision(False, 0.0, "stopped by a signal from outside (SIGINT, SIGTERM or SIGHUP)")
        if ready_for_s is not None and ready_for_s >= self.healthy_after_s:
            self.unhealthy_starts = 0  # a healthy run: the count and the backoff start again
            return Decision(True, self.base_delay_s, f"restarting in {self.base_delay_s:g} s (it had run {ready_for_s:.0f} s)")
        self.unhealthy_starts += 1
        if self.unhealthy_starts >= self.burst:
            return Decision(False, 0.0, f"gave up: {self.unhealthy_starts} failed starts in a row "
                                        f"(none ran {self.healthy_after_s:g} s after becoming ready)")
        delay = min(self.base_delay_s * 2 ** (self.unhealthy_starts - 1), self.max_delay_s)
        return Decision(True, delay, f"restarting in {delay:g} s (attempt {self.unhealthy_starts + 1} of {self.burst})")
