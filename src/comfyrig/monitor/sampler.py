"""GPU samplers: one interface, an NVML one, a simulated one, and "no GPU".

The NVML sampler reads through one ``NvmlSession`` (``host/gpus/nvml.py``),
opened when the sampler opens and closed by ``close()``: NVML is initialised
once and its handles kept, each field is asked on its own, and a GPU that
falls off the bus shows "N/A" without stopping the others.
"""

from __future__ import annotations

from typing import Any, Protocol

from ..host.gpus.nvml import NA_TEXT, NvmlSession, NvmlUnavailable
from .procinfo import ProcessInfo
from .simulated import SimulatedSampler
from .snapshot import GpuSample, ProcSample

__all__ = ["GpuSampler", "NoGpuSampler", "NvmlSampler", "SimulatedSampler", "open_sampler"]

class GpuSampler(Protocol):
    """What the monitor needs from a source of GPU samples."""

    source: str
    driver_version: str | None
    problem: str | None  # why there are no GPUs, when there are none

    def sample(self, tick: int) -> tuple[GpuSample, ...]: ...

    def close(self) -> None: ...


class NoGpuSampler:
    """No driver: the monitor shows CPU and RAM only, and says why."""

    source = "none"
    driver_version: str | None = None

    def __init__(self, problem: str) -> None:
        self.problem: str | None = problem

    def sample(self, tick: int) -> tuple[GpuSample, ...]:
        return ()

    def close(self) -> None:
        pass


class NvmlSampler:
    """Samples every GPU through one NvmlSession; ``nvml`` is the pynvml module (injectable)."""

    source = "nvml"

    def __init__(self, nvml: Any = None, procinfo: ProcessInfo | None = None, *, session: NvmlSession | None = None) -> None:
        """Opens ``session`` (or a new one on ``nvml``); raises NvmlUnavailable when NVML cannot start."""
        self._session = session if session is not None else NvmlSession(nvml)
        self._procinfo = procinfo or ProcessInfo()
        self.driver_version: str | None = self._session.driver_version
        self.problem: str | None = None if self._session.devices else "the NVIDIA driver reports no GPU"

    def sample(self, tick: int) -> tuple[GpuSample, ...]:
        readings = [(device, device.reading()) for device in self._session.devices]
        details = self._procinfo.describe({p.pid for _, reading in readings for p in reading.processes})
        return tuple(
            GpuSample(
                index=device.index,
                # Read once at open; a GPU that did not answer then still gets its row.
                name=device.name if device.name is not None else NA_TEXT,
                uuid=device.uuid if device.uuid is not None else NA_TEXT,
                memory_used_mib=r.memory_used_mib,
                memory_total_mib=r.memory_total_mib,
                utilization_pct=r.utilization_pct,
                memory_util_pct=r.memory_util_pct,
                temperature_c=r.temperature_c,
                power_w=r.power_w,
                power_limit_w=r.power_limit_w,
                sm_clock_mhz=r.sm_clock_mhz,
                mem_clock_mhz=r.mem_clock_mhz,
                processes=tuple(
                    ProcSample(
                        pid=p.pid,
                        memory_mib=p.used_memory_mib,
                        user=details[p.pid].user,
                        command=details[p.pid].command,
                        ports=details[p.pid].ports,
                    )
                    for p in r.processes
                ),
            )
            for device, r in readings
        )

    def close(self) -> None:
        self._session.close()


def open_sampler(fake_gpus: str | None, *, nvml: Any = None) -> GpuSampler:
    """Simulated when COMFYRIG_FAKE_GPUS is set, else NVML, else none (with the reason).

    Raises ConfigError for an unusable simulated inventory. Unlike the
    inventory probe there is no nvidia-smi fallback: starting it every tick
    would cost more CPU than the whole monitor may use.
    """
    if fake_gpus is not None and fake_gpus.strip():
        return SimulatedSampler.from_spec(fake_gpus)
    try:
        return NvmlSampler(nvml)
    except NvmlUnavailable as exc:
        return NoGpuSampler(f"No NVIDIA GPU or driver found: {exc}.")
