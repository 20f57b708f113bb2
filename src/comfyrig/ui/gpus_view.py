"""What ``comfyrig gpus`` shows: the JSON report (shared with ``launch --dry-run
--json``) and, for people, the GPU table, the GPU Configuration panel and the
torch table.

Rich is imported inside the functions that draw, not with this module, so
``comfyrig gpus --json`` never imports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.table import Table

    from ..config.modes import Selection
    from ..host.gpus.inventory import Inventory

__all__ = ["gpus_report", "gpus_view", "inventory_table", "torch_table"]


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


def gpus_view(inventory: Inventory, selection: Selection, torch: dict[str, Any] | None) -> RenderableType:
    """The GPU table, the inventory's notes, the GPU Configuration panel and,
    when torch was asked (``torch`` is judge_torch's JSON), the torch table."""
    from rich.console import Group
    from rich.text import Text

    from .panel import gpu_config_panel

    parts: list[RenderableType] = [inventory_table(inventory, selection)]
    parts += [Text(note, style="yellow") for note in inventory.notes]
    parts.append(gpu_config_panel(selection))
    if torch is not None:
        parts.append(torch_table(torch))
    return Group(*parts)


def inventory_table(inventory: Inventory, selection: Selection) -> Table:
    from rich.table import Table

    selected = {g.index: n for n, g in enumerate(selection.gpus)}
    where = {"nvml": "NVML", "nvidia-smi": "nvidia-smi", "simulated": "simulated (COMFYRIG_FAKE_GPUS)", "none": "no driver"}
    caption = f"source: {where[inventory.source]}"
    if inventory.driver_version:
        caption += f" · driver {inventory.driver_version}"
    if inventory.cuda_driver_version:
        caption += f" · CUDA {inventory.cuda_driver_version}"
    table = Table(title="GPUs on this machine", caption=caption, expand=False)
    for column in ("#", "name", "memory", "free", "used by", "selected"):
        table.add_column(column, justify="right" if column in ("#", "memory", "free") else "left")
    for g in inventory.gpus:
        procs = ", ".join(f"{p.pid} {p.name or '?'}" for p in g.processes) or "-"
        mark = f"✓ cuda:{selected[g.index]}" if g.index in selected else ""
        table.add_row(str(g.index), g.name, f"{g.memory_total_mib} MiB", f"{g.memory_free_mib} MiB", procs, mark)
    if not inventory.gpus:
        table.add_row("-", inventory.problem or "the driver reports no GPU", "", "", "", "")
    return table


def torch_table(torch: dict[str, Any]) -> Table:
    """``torch`` is judge_torch's report as JSON (TorchReport.to_json())."""
    from rich.table import Table

    table = Table(title="PyTorch in ComfyUI's interpreter", show_header=False)
    table.add_column(style="cyan")
    table.add_column()
    for key in ("python", "torch_version", "cuda_version", "cuda_available", "device_count"):
        table.add_row(key, str(torch.get(key)))
    for dev in torch.get("devices", []):
        table.add_row("device", f"{dev['name']} ({dev['memory_total_mib']} MiB)")
    for problem in torch.get("problems", []):
        table.add_row("[red]problem[/]", problem)
    if torch["ok"]:
        table.add_row("verdict", "[green]torch sees exactly the selected GPUs[/]")
    return table
