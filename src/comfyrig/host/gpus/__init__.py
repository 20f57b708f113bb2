"""GPU discovery behind one narrow seam: simulated, NVML, nvidia-smi."""

from .inventory import Gpu, GpuProcess, Inventory
from .probe import probe_inventory

__all__ = ["Gpu", "GpuProcess", "Inventory", "probe_inventory"]
