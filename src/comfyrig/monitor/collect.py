"""One tick = one Snapshot from the GPU sampler, the host and the instances.

``run_ticks`` is the loop: it calls ``on_tick`` with each snapshot and sleeps
until the next multiple of the interval, so a slow tick does not shift every
later one. The clock and the sleep are arguments, so tests run it without
waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .host import HostSampler
from .instances import InstancePoller
from .sampler import GpuSampler
from .snapshot import Snapshot

__all__ = ["MIN_INTERVAL_S", "Monitor", "run_ticks"]

MIN_INTERVAL_S = 0.25


class Monitor:
    """Owns the samplers between ticks (NVML handles, /proc caches, HTTP client)."""

    def __init__(
        self,
        sampler: GpuSampler,
        host: HostSampler | None = None,
        poller: InstancePoller | None = None,
        clock: Callable[[], float] = time.time,
        notes: tuple[str, ...] = (),
    ) -> None:
        self.sampler = sampler
        self.host = host or HostSampler()
        self.poller = poller
        self._clock = clock
        self._tick = 0
        self._notes = notes

    def snapshot(self) -> Snapshot:
        tick, self._tick = self._tick, self._tick + 1
        return Snapshot(
            time=self._clock(),
            tick=tick,
            source=self.sampler.source,
            gpus=self.sampler.sample(tick),
            host=self.host.sample(),
            instances=self.poller.poll() if self.poller else (),
            driver_version=self.sampler.driver_version,
            problem=self.sampler.problem,
            notes=self._notes,
        )

    def close(self) -> None:
        self.sampler.close()
        if self.poller:
            self.poller.close()


def run_ticks(
    monitor: Monitor,
    interval: float,
    on_tick: Callable[[Snapshot], None],
    *,
    ticks: int | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Snapshot every ``interval`` seconds, ``ticks`` times (None: until interrupted).

    Returns the number of ticks done.
    """
    start = clock()
    done = 0
    while ticks is None or done < ticks:
        on_tick(monitor.snapshot())
        done += 1
        if ticks is not None and done >= ticks:
            break
        # Ticks sit on the grid start + k*interval; a late tick skips the slots it missed.
        now = clock()
        due = start + done * interval
        if now > due:
            due = start + (int((now - start) / interval) + 1) * interval
        sleep(due - now)
    return done
