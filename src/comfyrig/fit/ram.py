"""System RAM available for offloaded weights: the one place that reads /proc/meminfo."""

from __future__ import annotations

from pathlib import Path

__all__ = ["mem_available"]


def mem_available(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """MemAvailable in bytes (what the kernel can give without swapping); None when unknown."""
    try:
        text = meminfo.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError):
        return None
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if name == "MemAvailable":
            fields = rest.split()
            if fields and fields[0].isdigit():
                return int(fields[0]) * 1024  # the kernel writes kB (KiB)
    return None
