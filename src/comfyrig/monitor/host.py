"""CPU and RAM of the machine, from /proc (no psutil dependency).

CPU use is the busy share of all cores between two readings at least
``MIN_WINDOW_S`` apart (a shorter window is mostly the monitor's own start-up
and a few jiffies of rounding); the first reading is taken when the sampler
is created. Elsewhere than Linux every value is None.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from .snapshot import HostSample

__all__ = ["MIN_WINDOW_S", "HostSampler"]

MIN_WINDOW_S = 0.2


class HostSampler:
    def __init__(self, proc_root: Path = Path("/proc"), clock: Callable[[], float] = time.monotonic) -> None:
        self._root = proc_root
        self._clock = clock
        self._last: tuple[int, int, float] | None = None  # (busy, total) jiffies, and when
        self._cpu()

    def sample(self) -> HostSample:
        used, total = self._memory()
        return HostSample(cpu_pct=self._cpu(), cpu_count=os.cpu_count() or 1, ram_used_mib=used, ram_total_mib=total)

    def _cpu(self) -> float | None:
        try:
            with open(self._root / "stat", encoding="ascii") as f:
                fields = f.readline().split()
        except OSError:
            return None
        if not fields or fields[0] != "cpu":
            return None
        values = [int(v) for v in fields[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        total = sum(values[:8])  # guest time is already inside user/nice
        busy = total - idle
        now = self._clock()
        last = self._last
        if last is not None and now - last[2] < MIN_WINDOW_S:
            return None  # keep the older reading: the next window is long enough
        self._last = (busy, total, now)
        if last is None or total <= last[1]:
            return None
        return round(100.0 * (busy - last[0]) / (total - last[1]), 1)

    def _memory(self) -> tuple[int | None, int | None]:
        info: dict[str, int] = {}
        try:
            with open(self._root / "meminfo", encoding="ascii") as f:
                for line in f:
                    name, _, rest = line.partition(":")
                    if name in ("MemTotal", "MemAvailable"):
                        info[name] = int(rest.split()[0])  # kB
                    if len(info) == 2:
                        break
        except (OSError, ValueError, IndexError):
            return None, None
        if len(info) != 2:
            return None, None
        total = info["MemTotal"] // 1024
        return total - info["MemAvailable"] // 1024, total
