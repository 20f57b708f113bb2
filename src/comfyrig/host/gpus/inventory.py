"""What comfyrig knows about the machine's GPUs: immutable records.

Memory is in MiB throughout (NVML's bytes / 2**20), as nvidia-smi prints it.
``None`` means the driver could not tell (nvitop's "N/A"), never zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Gpu", "GpuProcess", "Inventory", "InventorySource"]

InventorySource = Literal["nvml", "nvidia-smi", "simulated", "none"]


@dataclass(frozen=True)
class GpuProcess:
    """A process holding memory on a GPU (a compute or graphics context)."""

    pid: int
    used_memory_mib: int | None = None
    name: str | None = None


@dataclass(frozen=True)
class Gpu:
    """One physical GPU, numbered as NVML and nvidia-smi number it (PCI bus order)."""

    index: int
    name: str
    uuid: str
    pci_bus_id: str
    memory_total_mib: int
    memory_used_mib: int
    compute_capability: str | None = None
    processes: tuple[GpuProcess, ...] = ()
    mig_uuids: tuple[str, ...] = ()
    # CPUs close to this GPU (NVML's CPU affinity); None when unknown.
    cpu_affinity: tuple[int, ...] | None = None

    @property
    def memory_free_mib(self) -> int:
        return max(self.memory_total_mib - self.memory_used_mib, 0)

    @property
    def memory_total_gb(self) -> float:
        """Total memory in GiB, the unit the seed's panel calls "GB"."""
        return self.memory_total_mib / 1024


@dataclass(frozen=True)
class Inventory:
    """Every GPU of the machine and where the answer came from.

    ``problem`` says why there are no GPUs when the probe could not reach a
    driver (no NVML library, nvidia-smi missing, ...); it is None when the
    driver answered, even with zero GPUs.
    """

    gpus: tuple[Gpu, ...]
    source: InventorySource
    driver_version: str | None = None
    cuda_driver_version: str | None = None  # e.g. "12.8": the newest CUDA the driver runs
    problem: str | None = None
    notes: tuple[str, ...] = field(default=())

    def by_uuid(self, uuid: str) -> Gpu | None:
        return next((g for g in self.gpus if g.uuid == uuid), None)

    def owner_of_mig(self, mig_uuid: str) -> Gpu | None:
        return next((g for g in self.gpus if mig_uuid in g.mig_uuids), None)
