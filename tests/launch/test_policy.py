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
        ("on-failure", "stopped", False),  # SIGINT/SIGTERM/SIGHUP from outside: asked to stop, not broken
        ("always", "clean", True),
        ("always", "stopped", True),
        ("always", "bad-flag", False),
        ("always", "requested", False),
    ],
)
def test_decide(policy: str, kind: str, restart: bool) -> None:
    assert RestartTracker(policy).decide(kind, ready_for_s=None).restart is restart  # type: ignore[arg-type]


@pytest.mark.parametrize(("signum", "kind"), [(2, "stopped"), (15, "stopped"), (1, "stopped"), (9, "killed"), (11, "killed")])
def test_a_signal_death_is_a_stop_or_a_kill(signum: int, kind: str) -> None:
    assert classify_exit(-signum, requested=False, was_ready=True) == kind


def test_unhealthy_starts_in_a_row_give_up_whatever_the_time_between_them() -> None:
    # A ComfyUI that crashes 30 s after each start, never ready: under the old 120 s window
    # it looped for ever (10 starts in 331 s, still "attempt 5").
    tracker = RestartTracker("always", burst=5, base_delay_s=1.0)
    decisions = [tracker.decide("crash", ready_for_s=None) for _ in range(5)]
    assert [d.delay_s for d in decisions[:4]] == [1.0, 2.0, 4.0, 8.0]
    assert not decisions[4].restart and "gave up: 5 failed starts in a row" in decisions[4].reason


def test_a_healthy_run_resets_the_count_and_the_backoff() -> None:
    # A worker that was ready and running jobs, killed (OOM) again and again: never given up.
    tracker = RestartTracker("on-failure", burst=5, base_delay_s=1.0, healthy_after_s=30.0)
    for _ in range(20):
        decision = tracker.decide("killed", ready_for_s=600.0)
        assert decision.restart and decision.delay_s == 1.0
    assert tracker.unhealthy_starts == 0


def test_dying_soon_after_ready_counts_as_an_unhealthy_start() -> None:
    tracker = RestartTracker("on-failure", burst=3, healthy_after_s=30.0)
    assert tracker.decide("crash", ready_for_s=5.0).restart
    assert tracker.decide("crash", ready_for_s=5.0).restart
    assert not tracker.decide("crash", ready_for_s=5.0).restart
