"""CPU and RAM of the machine, from /proc (no psutil dependency).

CPU use is the busy share of all cores between two calls, so the first call
has none. Elsewhere than Linux every value is None.
"""

from __future__ import annotations

import os
from pathlib import Path

from .snapshot import HostSample

__all__ = ["HostSampler"]


class HostSampler:
    def __init__(self, proc_root: Path = Path("/proc")) -> None:
        self._root = proc_root
        self._last: tuple[int, int] | None = None  # (busy, total) jiffies

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
        last, self._last = self._last, (busy, total)
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
