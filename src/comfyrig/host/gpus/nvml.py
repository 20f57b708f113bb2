"""GPU inventory through NVML (the ``nvidia-ml-py`` package, module ``pynvml``).

NVML numbers GPUs in PCI bus order, like nvidia-smi, and ignores
CUDA_VISIBLE_DEVICES. It answers in tens of milliseconds, where
``import torch`` takes seconds, which is why the launcher asks it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from .inventory import Gpu, GpuProcess, Inventory

__all__ = ["NvmlUnavailable", "cuda_version_text", "decode_cpu_mask", "load_pynvml", "nvml_text", "probe_nvml"]

T = TypeVar("T")


class NvmlUnavailable(Exception):
    """The NVML library cannot be loaded or initialised (no driver)."""


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


def probe_nvml() -> Inventory:
    """Query every GPU once; raises NvmlUnavailable when NVML cannot start."""
    pynvml = load_pynvml()
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        raise NvmlUnavailable(f"NVML could not start: {exc}") from exc

    def query(fn: Callable[..., T], *args: Any) -> T | None:
        # Each field may be unsupported on some boards (nvitop's NA idea).
        try:
            return fn(*args)
        except pynvml.NVMLError:
            return None

    try:
        driver = query(pynvml.nvmlSystemGetDriverVersion)
        cuda = query(pynvml.nvmlSystemGetCudaDriverVersion)
        count = pynvml.nvmlDeviceGetCount()
        gpus = tuple(_device(pynvml, query, i) for i in range(count))
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass
    return Inventory(
        gpus=gpus,
        source="nvml",
        driver_version=nvml_text(driver) if driver is not None else None,
        cuda_driver_version=cuda_version_text(cuda) if cuda else None,
    )


def _device(pynvml: Any, query: Callable[..., Any], index: int) -> Gpu:
    handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
    cc = query(pynvml.nvmlDeviceGetCudaComputeCapability, handle)
    pci = query(pynvml.nvmlDeviceGetPciInfo, handle)
    processes: dict[int, GpuProcess] = {}
    for getter in (pynvml.nvmlDeviceGetComputeRunningProcesses, pynvml.nvmlDeviceGetGraphicsRunningProcesses):
        for proc in query(getter, handle) or []:
            used = proc.usedGpuMemory
            processes[proc.pid] = GpuProcess(
                pid=proc.pid,
                used_memory_mib=used // 2**20 if isinstance(used, int) and used >= 0 else None,
                name=_process_name(proc.pid),
            )
    cpu_words = max((_cpu_count() + 63) // 64, 1)
    mask = query(pynvml.nvmlDeviceGetCpuAffinity, handle, cpu_words)
    return Gpu(
        index=index,
        name=nvml_text(pynvml.nvmlDeviceGetName(handle)),
        uuid=nvml_text(pynvml.nvmlDeviceGetUUID(handle)),
        pci_bus_id=nvml_text(pci.busId) if pci is not None else "N/A",
        memory_total_mib=memory.total // 2**20,
        memory_used_mib=memory.used // 2**20,
        compute_capability=f"{cc[0]}.{cc[1]}" if cc else None,
        processes=tuple(processes.values()),
        mig_uuids=_mig_uuids(pynvml, query, handle),
        cpu_affinity=decode_cpu_mask(mask) if mask is not None else None,
    )


def _mig_uuids(pynvml: Any, query: Callable[..., Any], handle: Any) -> tuple[str, ...]:
    mode = query(pynvml.nvmlDeviceGetMigMode, handle)
    if not mode or mode[0] != pynvml.NVML_DEVICE_MIG_ENABLE:
        return ()
    uuids = []
    for slot in range(query(pynvml.nvmlDeviceGetMaxMigDeviceCount, handle) or 0):
        mig = query(pynvml.nvmlDeviceGetMigDeviceHandleByIndex, handle, slot)
        if mig is not None:
            uuids.append(nvml_text(pynvml.nvmlDeviceGetUUID(mig)))
    return tuple(uuids)


def _process_name(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() or None
    except OSError:
        return None  # another container's pid namespace, or already gone


def _cpu_count() -> int:
    import os

    return os.cpu_count() or 1
