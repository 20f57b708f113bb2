from __future__ import annotations

from typing import Any

from comfyrig.monitor.collect import Monitor, run_ticks
from comfyrig.monitor.history import History
from comfyrig.monitor.host import HostSampler
from comfyrig.monitor.sampler import SimulatedSampler
from comfyrig.monitor.snapshot import Snapshot


class FakeClock:
    """Monotonic time that advances only when slept, or by ``work`` per snapshot."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds


def monitor(data: dict[str, Any]) -> Monitor:
    return Monitor(SimulatedSampler(data), host=HostSampler(), clock=lambda: 1_700_000_000.0)


def test_snapshots_count_ticks(two_3090: dict[str, Any]) -> None:
    m = monitor(two_3090)
    first, second = m.snapshot(), m.snapshot()
    assert (first.tick, second.tick) == (0, 1)
    assert first.source == "simulated" and first.driver_version == "550.54"
    assert first.instances == ()


def test_run_ticks_sleeps_on_a_fixed_grid(two_3090: dict[str, Any]) -> None:
    clock = FakeClock()
    m = monitor(two_3090)
    work = [0.1, 0.3, 0.0, 0.0]

    def on_tick(snapshot: Snapshot) -> None:
        clock.now += work[snapshot.tick]  # rendering takes time; the grid must not drift

    done = run_ticks(m, 1.0, on_tick, ticks=4, clock=clock, sleep=clock.sleep)
    assert done == 4
    assert clock.sleeps == [0.9, 0.7, 1.0]


def test_a_late_tick_skips_missed_slots(two_3090: dict[str, Any]) -> None:
    clock = FakeClock()
    work = [2.5, 0.0, 0.0]

    def on_tick(snapshot: Snapshot) -> None:
        clock.now += work[snapshot.tick]

    run_ticks(monitor(two_3090), 1.0, on_tick, ticks=3, clock=clock, sleep=clock.sleep)
    assert clock.sleeps == [0.5, 1.0]  # next at t=3, not three quick catch-up ticks


def test_history_window_per_gpu(two_3090: dict[str, Any]) -> None:
    two_3090["gpus"][1]["script"] = [{"utilization_pct": v} for v in (10, 20, 30, 40)]
    m = monitor(two_3090)
    history = History(seconds=3, interval=1.0)
    for _ in range(5):
        history.record(m.snapshot())
    trends = history.trends()
    second = trends["GPU-5a5a5a5a-0000-4000-8000-000000000001"]
    assert second.utilization == (30.0, 40.0, 10.0)
    assert second.memory == (0.0, 0.0, 0.0)
    assert trends["GPU-5a5a5a5a-0000-4000-8000-000000000000"].memory == (50.0, 50.0, 50.0)
