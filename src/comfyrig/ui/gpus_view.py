"""JSON reports shared by several commands (``gpus --json``, ``launch --dry-run --json``)."""

from __future__ import annotations

from typing import Any

from ..config.modes import Selection
from ..host.gpus.inventory import Inventory

__all__ = ["gpus_report"]


def gpus_report(inventory: Inventory, selection: Selection, torch: dict[str, Any] | None) -> dict[str, Any]:
    selected = {g.index for g in selection.gpus}
    return {
        "mode": selection.mode,
        "cuda_visible_devices": selection.cuda_visible_devices,
        "source": inventory.source,
        "driver_version": inventory.driver_version,
        "cuda_driver_version": inventory.cuda_driver_version,
        "problem": inventory.problem,
        "gpus": [
            {
                "index": g.index,
                "name": g.name,
                "uuid": g.uuid,
                "pci_bus_id": g.pci_bus_id,
                "memory_total_mib": g.memory_total_mib,
                "memory_used_mib": g.memory_used_mib,
                "memory_free_mib": g.memory_free_mib,
                "compute_capability": g.compute_capability,
                "processes": [{"pid": p.pid, "used_memory_mib": p.used_memory_mib, "name": p.name} for p in g.processes],
                "selected": g.index in selected,
            }
            for g in inventory.gpus
        ],
        "notes": [*inventory.notes, *selection.notes],
        "torch": torch,
    }
