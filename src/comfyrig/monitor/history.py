"""The last minutes of utilisation and memory per GPU, for the sparklines."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from .snapshot import Snapshot

__all__ = ["History", "Trend"]


@dataclass(frozen=True)
class Trend:
    """Oldest first; percentages 0-100, None where the value was N/A."""

    utilization: tuple[float | None, ...]
    memory: tuple[float | None, ...]


class History:
    """A bounded window of samples per GPU UUID (``seconds`` / ``interval`` points)."""

    def __init__(self, seconds: float = 180.0, interval: float = 1.0) -> None:
        self._size = max(int(seconds / interval), 2)
        self._util: dict[str, deque[float | None]] = {}
        self._mem: dict[str, deque[float | None]] = {}

    def record(self, snapshot: Snapshot) -> None:
        for gpu in snapshot.gpus:
            util = gpu.utilization_pct
            self._util.setdefault(gpu.uuid, deque(maxlen=self._size)).append(None if util is None else float(util))
            self._mem.setdefault(gpu.uuid, deque(maxlen=self._size)).append(gpu.memory_pct)

    def trends(self) -> Mapping[str, Trend]:
        return {uuid: Trend(tuple(self._util[uuid]), tuple(self._mem[uuid])) for uuid in self._util}
