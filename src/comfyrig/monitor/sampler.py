"""GPU samplers: one interface, an NVML one, a simulated one, and "no GPU".

NVML is initialised once when the sampler opens and its device handles are
kept until ``close()``: re-initialising NVML every tick is what made another
GPU monitor burn 80 % of a core. Each field is queried on its own, so a board
that cannot report one (power on some laptops, clocks under MIG) shows "N/A"
for that field only, and a GPU that falls off the bus does not stop the others.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from ..host.gpus.nvml import NvmlUnavailable, load_pynvml, nvml_text
from .procinfo import ProcessInfo
from .simulated import SimulatedSampler
from .snapshot import GpuSample, ProcSample

__all__ = ["GpuSampler", "NoGpuSampler", "NvmlSampler", "SimulatedSampler", "open_sampler"]

T = TypeVar("T")


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
    """Samples every GPU through NVML; ``nvml`` is the pynvml module (injectable)."""

    source = "nvml"

    def __init__(self, nvml: Any = None, procinfo: ProcessInfo | None = None) -> None:
        """Raises NvmlUnavailable when NVML cannot start."""
        nvml = nvml if nvml is not None else load_pynvml()
        self._nvml: Any = nvml
        self._procinfo = procinfo or ProcessInfo()
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as exc:
            raise NvmlUnavailable(f"NVML could not start: {exc}") from exc
        self._open = True
        try:
            driver = self._query(nvml.nvmlSystemGetDriverVersion)
            self.driver_version: str | None = nvml_text(driver) if driver is not None else None
            count = nvml.nvmlDeviceGetCount()
            self._handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            # Names and UUIDs do not change while the driver is loaded.
            self._names = [nvml_text(nvml.nvmlDeviceGetName(h)) for h in self._handles]
            self._uuids = [nvml_text(nvml.nvmlDeviceGetUUID(h)) for h in self._handles]
        except nvml.NVMLError as exc:
            self.close()
            raise NvmlUnavailable(f"NVML could not list the GPUs: {exc}") from exc
        self.problem: str | None = None if self._handles else "the NVIDIA driver reports no GPU"

    def _query(self, fn: Callable[..., T], *args: Any) -> T | None:
        try:
            return fn(*args)
        except self._nvml.NVMLError:
            return None

    def sample(self, tick: int) -> tuple[GpuSample, ...]:
        raw = [self._raw(i, h) for i, h in enumerate(self._handles)]
        details = self._procinfo.describe({pid for *_, procs in raw for pid, _ in procs})
        return tuple(
            GpuSample(
                **fields,
                processes=tuple(
                    ProcSample(
                        pid=pid,
                        memory_mib=mib,
                        user=details[pid].user,
                        command=details[pid].command,
                        ports=details[pid].ports,
                    )
                    for pid, mib in procs
                ),
            )
            for fields, procs in raw
        )

    def _raw(self, index: int, handle: Any) -> tuple[dict[str, Any], list[tuple[int, int | None]]]:
        n, q = self._nvml, self._query
        memory = q(n.nvmlDeviceGetMemoryInfo, handle)
        rates = q(n.nvmlDeviceGetUtilizationRates, handle)
        power = q(n.nvmlDeviceGetPowerUsage, handle)  # mW
        limit = q(n.nvmlDeviceGetEnforcedPowerLimit, handle)  # mW
        fields = {
            "index": index,
            "name": self._names[index],
            "uuid": self._uuids[index],
            "memory_used_mib": memory.used // 2**20 if memory is not None else None,
            "memory_total_mib": memory.total // 2**20 if memory is not None else None,
            "utilization_pct": rates.gpu if rates is not None else None,
            "memory_util_pct": rates.memory if rates is not None else None,
            "temperature_c": q(n.nvmlDeviceGetTemperature, handle, n.NVML_TEMPERATURE_GPU),
            "power_w": power / 1000 if power is not None else None,
            "power_limit_w": limit / 1000 if limit is not None else None,
            "sm_clock_mhz": q(n.nvmlDeviceGetClockInfo, handle, n.NVML_CLOCK_SM),
            "mem_clock_mhz": q(n.nvmlDeviceGetClockInfo, handle, n.NVML_CLOCK_MEM),
        }
        procs: dict[int, int | None] = {}
        for getter in (n.nvmlDeviceGetComputeRunningProcesses, n.nvmlDeviceGetGraphicsRunningProcesses):
            for proc in q(getter, handle) or []:
                used = proc.usedGpuMemory
                procs[proc.pid] = used // 2**20 if isinstance(used, int) and used >= 0 else None
        return fields, list(procs.items())

    def close(self) -> None:
        if self._open:
            self._open = False
            try:
                self._nvml.nvmlShutdown()
            except self._nvml.NVMLError:
                pass


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
