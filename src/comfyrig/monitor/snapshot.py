"""Immutable records of one monitor tick.

A sampler fills them; panels, JSON, CSV and the dmon format only read them.
Memory is in MiB, power in watts, clocks in MHz, temperature in °C. ``None``
means the driver (or the OS) could not tell, shown as "N/A", never as zero.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = [
    "GpuSample",
    "HostSample",
    "InstanceSample",
    "InstanceState",
    "ProcSample",
    "Snapshot",
]

# "up": answered; "down": nothing listens; "error": something answered badly or too late.
InstanceState = Literal["up", "down", "error"]


@dataclass(frozen=True)
class ProcSample:
    """A process holding memory on a GPU."""

    pid: int
    memory_mib: int | None
    user: str | None = None
    command: str | None = None
    ports: tuple[int, ...] = ()  # TCP ports it listens on (a ComfyUI's --port)


@dataclass(frozen=True)
class GpuSample:
    """One GPU at one instant, numbered as nvidia-smi numbers it."""

    index: int
    name: str
    uuid: str
    memory_used_mib: int | None
    memory_total_mib: int | None
    utilization_pct: int | None = None  # SM busy time over the driver's last sample period
    memory_util_pct: int | None = None  # memory-controller busy time (nvidia-smi dmon's "mem")
    temperature_c: int | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    sm_clock_mhz: int | None = None
    mem_clock_mhz: int | None = None
    processes: tuple[ProcSample, ...] = ()

    @property
    def owner_ports(self) -> tuple[int, ...]:
        """Ports listened on by processes on this GPU: which ComfyUI owns it."""
        return tuple(sorted({port for p in self.processes for port in p.ports}))

    @property
    def memory_pct(self) -> float | None:
        if self.memory_used_mib is None or not self.memory_total_mib:
            return None
        return 100.0 * self.memory_used_mib / self.memory_total_mib


@dataclass(frozen=True)
class InstanceSample:
    """One watched ComfyUI at one instant."""

    url: str
    state: InstanceState
    running: int | None = None
    pending: int | None = None
    last_error: str | None = None  # the most recent failure, kept after recovery
    port: int | None = None
    label: str | None = None  # what it is: "gateway", or a cluster worker's name and node


@dataclass(frozen=True)
class HostSample:
    """CPU and RAM of the machine; None where the OS does not say (not Linux)."""

    cpu_pct: float | None  # all cores together, 0-100, since the previous tick
    cpu_count: int
    ram_used_mib: int | None
    ram_total_mib: int | None


@dataclass(frozen=True)
class Snapshot:
    """Everything the monitor shows for one tick."""

    time: float  # seconds since the epoch
    tick: int
    source: str  # "nvml", "simulated" or "none"
    gpus: tuple[GpuSample, ...]
    host: HostSample
    instances: tuple[InstanceSample, ...] = ()
    driver_version: str | None = None
    problem: str | None = None  # why there are no GPUs, when there are none
    notes: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for gpu, record in zip(self.gpus, data["gpus"], strict=True):
            record["owner_ports"] = list(gpu.owner_ports)
        return data
