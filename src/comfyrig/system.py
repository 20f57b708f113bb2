"""Facts about this host's CPUs that placement needs (Linux; harmless elsewhere)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["available_cpus", "cgroup_cpu_quota"]


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
