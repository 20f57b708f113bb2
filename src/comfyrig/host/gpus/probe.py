"""One entry point for "which GPUs does this machine have": simulated, NVML, nvidia-smi.

The order is fixed: a simulated inventory (``COMFYRIG_FAKE_GPUS``) replaces the
hardware everywhere; otherwise NVML; nvidia-smi only when the NVML library
cannot be loaded; otherwise an empty inventory that says why.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .inventory import Inventory
from .nvml import NvmlUnavailable, probe_nvml
from .simulated import load_simulated
from .smi import SmiUnavailable, probe_smi

__all__ = ["probe_inventory"]


def probe_inventory(
    fake_gpus: str | None = None,
    *,
    nvml: Any = None,
    smi: Callable[[], Inventory] = probe_smi,
) -> Inventory:
    """Detect GPUs. ``fake_gpus`` is the value of COMFYRIG_FAKE_GPUS, if set.

    ``nvml`` is the pynvml module (None: the installed one) and ``smi`` the
    nvidia-smi probe; tests pass fakes of both.

    Raises ConfigError for an unusable simulated inventory and GpuProbeError
    when nvidia-smi exists but fails; a machine without any NVIDIA driver is
    not an error (source "none", with ``problem`` saying why).
    """
    if fake_gpus is not None and fake_gpus.strip():
        return load_simulated(fake_gpus)
    try:
        return probe_nvml(nvml)
    except NvmlUnavailable as nvml_exc:
        nvml_reason = str(nvml_exc)
    try:
        inventory = smi()
    except SmiUnavailable:
        return Inventory(
            gpus=(),
            source="none",
            problem=f"No NVIDIA GPU or driver found: {nvml_reason}, and nvidia-smi is not on PATH.",
        )
    return Inventory(
        gpus=inventory.gpus,
        source=inventory.source,
        driver_version=inventory.driver_version,
        cuda_driver_version=inventory.cuda_driver_version,
        notes=(f"NVML unavailable ({nvml_reason}); used nvidia-smi instead.",),
    )
