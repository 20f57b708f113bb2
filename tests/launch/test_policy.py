"""Restart policy as tables: why a process ended, and what happens next."""

from __future__ import annotations

import pytest

from comfyrig.launch.policy import RestartTracker, classify_exit


@pytest.mark.parametrize(
    ("code", "flags", "kind"),
    [
        (0, {"requested": True}, "requested"),
        (-9, {"requested": True}, "requested"),
        (0, {"requested": False, "reboot_marker": True}, "reboot"),
        (2, {"requested": False}, "bad-flag"),
        (2, {"requested": False, "was_ready": True}, "crash"),  # exit 2 after ready is not argparse
        (-9, {"requested": False, "hung": True, "was_ready": True}, "hung"),
        (0, {"requested": False, "not_ready": True}, "not-ready"),
        (-2, {"requested": False, "not_ready": True}, "not-ready"),
        (-9, {"requested": False}, "killed"),
        (0, {"requested": False}, "clean"),
        (1, {"requested": False}, "crash"),
    ],
)
def test_classify_exit(code: int, flags: dict[str, bool], kind: str) -> None:
    assert classify_exit(code, **flags) == kind


@pytest.mark.parametrize(
    ("policy", "kind", "restart"),
    [
        ("no", "crash", False),
        ("no", "reboot", True),  # the Manager's restart button works under every policy
        ("on-failure", "crash", True),
        ("on-failure", "killed", True),
        ("on-failure", "hung", True),
        ("on-failure", "not-ready", True),
        ("on-failure", "clean", False),
        ("always", "clean", True),
        ("always", "bad-flag", False),
        ("always", "requested", False),
    ],
)
def test_decide(policy: str, kind: str, restart: bool) -> None:
    assert RestartTracker(policy).decide(kind, now=0.0).restart is restart  # type: ignore[arg-type]


def test_backoff_doubles_and_the_start_limit_counts_a_window() -> None:
    tracker = RestartTracker("always", burst=5, window_s=120.0, base_delay_s=1.0)
    delays = [tracker.decide("crash", now=float(t)).delay_s for t in range(4)]
    assert delays == [1.0, 2.0, 4.0, 8.0]
    assert not tracker.decide("crash", now=4.0).restart  # the fifth failure within 120 s
    fresh = RestartTracker("always", burst=5, window_s=120.0)
    for t in (0.0, 200.0, 400.0, 600.0, 800.0, 1000.0):
        assert fresh.decide("crash", now=t).restart  # failures far apart never add up
