"""One NVML session (the ``nvidia-ml-py`` package, module ``pynvml``) for the inventory and the monitor.

NVML numbers GPUs in PCI bus order, like nvidia-smi, and ignores
CUDA_VISIBLE_DEVICES. It answers in tens of milliseconds, where
``import torch`` takes seconds, which is why the launcher asks it.

``NvmlSession`` is the only code that talks to NVML: it initialises it once,
keeps the device handles until ``close()`` (re-initialising every monitor
tick is what made another GPU monitor burn 80 % of a core) and asks every
field on its own, so a board that cannot report one (power on some laptops,
clocks under MIG) gives None ("N/A") for that field only, and a GPU that
falls off the bus does not stop the others (nvitop's ``nvmlQuery``). The
pynvml module is a constructor argument, so tests drive the whole path
with a fake one.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar

from .inventory import Gpu, GpuProcess, Inventory

__all__ = [
    "DeviceReading",
    "NvmlDevice",
    "NvmlProcess",
    "NvmlSession",
    "NvmlUnavailable",
    "cuda_version_text",
    "decode_cpu_mask",
    "load_pynvml",
    "nvml_text",
    "probe_nvml",
]

T = TypeVar("T")

NA_TEXT = "N/A"
_MIB = 2**20
# NVML_VALUE_NOT_AVAILABLE as an unsigned long long: what a process's memory reads
# under WDDM or without permission; nvidia-ml-py maps it to None, older releases did not.
_NOT_AVAILABLE_ULL = 2**64 - 1

Clock = Literal["sm", "mem"]


class NvmlUnavailable(Exception):
    """The NVML library cannot be loaded or initialised (no driver), or cannot count the GPUs."""


def cuda_version_text(version: int) -> str:
    """NVML's 12080 -> "12.8"."""
    return f"{version // 1000}.{(version % 1000) // 10}"


def decode_cpu_mask(words: Any, word_bits: int = 64) -> tuple[int, ...]:
    """NVML's CPU affinity bitmask (array of unsigned longs) -> CPU numbers."""
    cpus: list[int] = []
    for w, word in enumerate(words):
        value = int(word)
        for bit in range(word_bits):
            if value >> bit & 1:
                cpus.append(w * word_bits + bit)
    return tuple(cpus)


def nvml_text(value: Any) -> str:
    """NVML strings: bytes in older nvidia-ml-py releases, str in newer ones."""
    return value.decode() if isinstance(value, bytes) else str(value)


def load_pynvml() -> Any:
    """The pynvml module, or NvmlUnavailable naming the broken install."""
    try:
        import pynvml  # type: ignore[import-untyped]
    except ImportError as exc:  # the dependency is declared; this is a broken install
        raise NvmlUnavailable(f"the nvidia-ml-py package is not importable ({exc})") from exc
    return pynvml


@dataclass(frozen=True)
class NvmlProcess:
    """A compute or graphics context on a GPU."""

    pid: int
    used_memory_mib: int | None  # None: NVML cannot tell (WDDM, no permission)


@dataclass(frozen=True)
class DeviceReading:
    """What one GPU says at one instant; None is "N/A" for that field only."""

    memory_used_mib: int | None
    memory_total_mib: int | None
    utilization_pct: int | None  # SM busy time over the driver's last sample period
    memory_util_pct: int | None  # memory-controller busy time
    temperature_c: int | None
    power_w: float | None
    power_limit_w: float | None  # the enforced limit
    sm_clock_mhz: int | None
    mem_clock_mhz: int | None
    processes: tuple[NvmlProcess, ...]


class NvmlDevice:
    """One GPU of an open session, by NVML index (PCI bus order).

    ``name`` and ``uuid`` are read once when the session opens (they do not
    change while the driver is loaded); None when the GPU did not answer,
    with the reason in ``problem``. Every other method asks NVML anew and
    gives None (or an empty tuple) where the board cannot tell.
    """

    def __init__(self, session: NvmlSession, index: int) -> None:
        self._session = session
        self.index = index
        self.problem: str | None = None  # the last NVML error of this GPU, as NVML words it
        self.handle: Any = self._ask(session.nvml.nvmlDeviceGetHandleByIndex, index)
        name = self.query(session.nvml.nvmlDeviceGetName)
        uuid = self.query(session.nvml.nvmlDeviceGetUUID)
        self.name: str | None = nvml_text(name) if name is not None else None
        self.uuid: str | None = nvml_text(uuid) if uuid is not None else None

    def _ask(self, fn: Callable[..., T], *args: Any) -> T | None:
        try:
            return fn(*args)
        except self._session.nvml.NVMLError as exc:
            self.problem = str(exc)
            return None

    def query(self, fn: Callable[..., T], *args: Any) -> T | None:
        """``fn(handle, *args)``, or None when NVML raises (or the handle was never taken)."""
        if self.handle is None:
            return None
        return self._ask(fn, self.handle, *args)

    # Static facts ------------------------------------------------------------

    def pci_bus_id(self) -> str | None:
        """"00000000:18:00.0", as nvidia-smi prints it."""
        pci = self.query(self._session.nvml.nvmlDeviceGetPciInfo)
        return nvml_text(pci.busId) if pci is not None else None

    def compute_capability(self) -> str | None:
        """"9.0" for an H100."""
        cc = self.query(self._session.nvml.nvmlDeviceGetCudaComputeCapability)
        return f"{cc[0]}.{cc[1]}" if cc else None

    def mig_uuids(self) -> tuple[str, ...]:
        """UUIDs of the MIG devices carved out of this GPU; () when MIG is off or unsupported."""
        n = self._session.nvml
        mode = self.query(n.nvmlDeviceGetMigMode)  # [current, pending]
        if not mode or mode[0] != n.NVML_DEVICE_MIG_ENABLE:
            return ()
        uuids: list[str] = []
        for slot in range(self.query(n.nvmlDeviceGetMaxMigDeviceCount) or 0):
            mig = self.query(n.nvmlDeviceGetMigDeviceHandleByIndex, slot)  # an empty slot: NotFound
            uuid = self._ask(n.nvmlDeviceGetUUID, mig) if mig is not None else None
            if uuid is not None:
                uuids.append(nvml_text(uuid))
        return tuple(uuids)

    def cpu_affinity(self) -> tuple[int, ...] | None:
        """CPU numbers close to this GPU (its NUMA node); None when NVML cannot tell."""
        # NVML fills as many words as it is given: enough for every CPU of the machine.
        words = max((self._session.cpu_count + 63) // 64, 1)
        mask = self.query(self._session.nvml.nvmlDeviceGetCpuAffinity, words)
        if mask is None:
            return None
        try:  # the array's own word size: c_ulonglong now, c_ulong in old releases
            bits = ctypes.sizeof(mask) * 8 // len(mask)
        except TypeError:  # not a ctypes array
            bits = 64
        return decode_cpu_mask(mask, bits)

    # Dynamic readings --------------------------------------------------------

    def memory_mib(self) -> tuple[int, int] | None:
        """(used, total) in MiB."""
        memory = self.query(self._session.nvml.nvmlDeviceGetMemoryInfo)
        return (memory.used // _MIB, memory.total // _MIB) if memory is not None else None

    def processes(self) -> tuple[NvmlProcess, ...]:
        """Compute and graphics contexts, one per pid (a pid with both is listed once, with its graphics reading)."""
        n = self._session.nvml
        found: dict[int, int | None] = {}
        for getter in (n.nvmlDeviceGetComputeRunningProcesses, n.nvmlDeviceGetGraphicsRunningProcesses):
            for proc in self.query(getter) or []:
                used = proc.usedGpuMemory  # bytes
                ok = isinstance(used, int) and 0 <= used < _NOT_AVAILABLE_ULL
                found[int(proc.pid)] = used // _MIB if ok else None
        return tuple(NvmlProcess(pid, mib) for pid, mib in found.items())

    def reading(self) -> DeviceReading:
        """Every dynamic field, each asked on its own."""
        n = self._session.nvml
        memory = self.memory_mib()
        rates = self.query(n.nvmlDeviceGetUtilizationRates)
        power = self.query(n.nvmlDeviceGetPowerUsage)  # mW
        limit = self.query(n.nvmlDeviceGetEnforcedPowerLimit)  # mW
        return DeviceReading(
            memory_used_mib=memory[0] if memory is not None else None,
            memory_total_mib=memory[1] if memory is not None else None,
            utilization_pct=rates.gpu if rates is not None else None,
            memory_util_pct=rates.memory if rates is not None else None,
            temperature_c=self.query(n.nvmlDeviceGetTemperature, n.NVML_TEMPERATURE_GPU),
            power_w=power / 1000 if power is not None else None,
            power_limit_w=limit / 1000 if limit is not None else None,
            sm_clock_mhz=self.clock_mhz("sm"),
            mem_clock_mhz=self.clock_mhz("mem"),
            processes=self.processes(),
        )

    def clock_mhz(self, clock: Clock) -> int | None:
        n = self._session.nvml
        return self.query(n.nvmlDeviceGetClockInfo, n.NVML_CLOCK_SM if clock == "sm" else n.NVML_CLOCK_MEM)


class NvmlSession:
    """NVML, initialised once, with a handle per GPU; a context manager.

    ``nvml`` is the pynvml module (None: the installed one); ``cpu_count``
    sizes the CPU affinity mask (None: this machine's).
    Raises NvmlUnavailable when NVML cannot start or cannot count the GPUs.
    """

    def __init__(self, nvml: Any = None, *, cpu_count: int | None = None) -> None:
        self.nvml: Any = nvml if nvml is not None else load_pynvml()
        self.cpu_count = cpu_count or os.cpu_count() or 1
        try:
            self.nvml.nvmlInit()
        except self.nvml.NVMLError as exc:
            raise NvmlUnavailable(f"NVML could not start: {exc}") from exc
        self._open = True
        try:
            count = int(self.nvml.nvmlDeviceGetCount())
        except self.nvml.NVMLError as exc:
            self.close()
            raise NvmlUnavailable(f"NVML could not list the GPUs: {exc}") from exc
        driver = self.query(self.nvml.nvmlSystemGetDriverVersion)
        cuda = self.query(self.nvml.nvmlSystemGetCudaDriverVersion)
        self.driver_version: str | None = nvml_text(driver) if driver is not None else None
        self.cuda_driver_version: str | None = cuda_version_text(cuda) if cuda else None  # "12.8"
        self.devices: tuple[NvmlDevice, ...] = tuple(NvmlDevice(self, i) for i in range(count))

    def query(self, fn: Callable[..., T], *args: Any) -> T | None:
        """``fn(*args)``, or None when NVML raises (nvitop's NA)."""
        try:
            return fn(*args)
        except self.nvml.NVMLError:
            return None

    def close(self) -> None:
        """Shut NVML down; a second call does nothing."""
        if self._open:
            self._open = False
            with contextlib.suppress(self.nvml.NVMLError):
                self.nvml.nvmlShutdown()

    def __enter__(self) -> NvmlSession:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def probe_nvml(nvml: Any = None, *, cpu_count: int | None = None) -> Inventory:
    """Every GPU once, through one NvmlSession; ``nvml`` is the pynvml module (None: the installed one).

    A GPU without a name, UUID or memory reading (fallen off the bus) is left
    out, with a note, rather than offered to the launcher.
    Raises NvmlUnavailable when NVML cannot start.
    """
    gpus: list[Gpu] = []
    notes: list[str] = []
    with NvmlSession(nvml, cpu_count=cpu_count) as session:
        for device in session.devices:
            memory = device.memory_mib()
            if device.name is None or device.uuid is None or memory is None:
                why = device.problem or "no name, UUID or memory reading"
                notes.append(f"GPU {device.index} did not answer NVML ({why}); it is left out.")
                continue
            gpus.append(
                Gpu(
                    index=device.index,
                    name=device.name,
                    uuid=device.uuid,
                    pci_bus_id=device.pci_bus_id() or NA_TEXT,
                    memory_total_mib=memory[1],
                    memory_used_mib=memory[0],
                    compute_capability=device.compute_capability(),
                    processes=tuple(
                        GpuProcess(pid=p.pid, used_memory_mib=p.used_memory_mib, name=_process_name(p.pid))
                        for p in device.processes()
                    ),
                    mig_uuids=device.mig_uuids(),
                    cpu_affinity=device.cpu_affinity(),
                )
            )
        return Inventory(
            gpus=tuple(gpus),
            source="nvml",
            driver_version=session.driver_version,
            cuda_driver_version=session.cuda_driver_version,
            notes=tuple(notes),
        )


def _process_name(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() or None
    except OSError:
        return None  # another container's pid namespace, or already gone
