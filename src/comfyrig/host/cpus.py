"""Facts about this host's CPUs that placement needs (Linux; harmless elsewhere)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["available_cpus", "cgroup_cpu_quota", "cpu_cores"]


def available_cpus() -> frozenset[int]:
    """The CPUs this process may run on (taskset, cpusets), not the host's count."""
    if hasattr(os, "sched_getaffinity"):
        return frozenset(os.sched_getaffinity(0))
    return frozenset(range(os.cpu_count() or 1))


def cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """A cgroup v2 CPU limit in CPUs (``cpu.max`` "200000 100000" -> 2.0), or None."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return int(quota) / int(period)
    except (ValueError, ZeroDivisionError):
        return None


def _parse_cpu_list(text: str) -> tuple[int, ...]:
    cpus: list[int] = []
    for part in text.strip().split(","):
        if "-" in part:
            lo, hi = part.split("-")
            cpus.extend(range(int(lo), int(hi) + 1))
        elif part:
            cpus.append(int(part))
    return tuple(cpus)


def cpu_cores(cpus: frozenset[int], root: Path = Path("/sys/devices/system/cpu")) -> list[tuple[int, ...]] | None:
    """Hyperthread siblings grouped by physical core, for the given CPUs; None if unknown."""
    cores: dict[tuple[int, ...], None] = {}
    for cpu in sorted(cpus):
        topology = root / f"cpu{cpu}" / "topology"
        for name in ("core_cpus_list", "thread_siblings_list"):
            try:
                siblings = _parse_cpu_list((topology / name).read_text())
                break
            except (OSError, ValueError):
                continue
        else:
            return None
        cores[tuple(c for c in siblings if c in cpus)] = None
    return list(cores)
