"""The commands. Each one: flags -> Settings -> a service -> output -> exit code."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from ..config.modes import Selection, select_gpus
from ..config.settings import Settings
from ..host.gpus.inventory import Inventory
from ..host.gpus.probe import probe_inventory
from ..host.gpus.torchcheck import judge_torch, run_torch_check
from ..ui.gpus_view import gpus_report
from ..ui.console import make_console
from ..ui.panel import gpu_config_panel
from . import options as o
from .app import command

__all__: list[str] = []


def _machine(settings: Settings) -> tuple[Inventory, Selection]:
    inventory = probe_inventory(settings.fake_gpus)
    return inventory, select_gpus(settings.gpu_request.value, inventory)


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


@command("gpus", help="List the GPUs, show which the chosen mode selects, and the GPU Configuration panel.")
def gpus_cmd(
    auto: o.Auto = False,
    dual: o.Dual = False,
    multi: o.Multi = False,
    single: o.Single = None,
    gpus: o.Gpus = None,
    cpu: o.Cpu = False,
    comfyui_dir: o.ComfyDir = None,
    python: o.Python = None,
    env_file: o.EnvFile = None,
    torch_check: Annotated[bool, typer.Option("--torch-check", help="Also ask ComfyUI's interpreter what torch sees (a child process).")] = False,
    json_out: o.JsonOut = False,
) -> int:
    settings = o.settings_from(
        o.overrides(auto=auto, dual=dual, multi=multi, single=single, gpus=gpus, cpu=cpu,
                    comfyui_dir=comfyui_dir, python=python, env_file=env_file)
    )
    inventory, selection = _machine(settings)
    torch = None
    if torch_check:
        env = {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": selection.cuda_visible_devices}
        raw = run_torch_check(settings.python.value, env, settings.environ)
        torch = judge_torch(settings.python.value, raw, len(selection.gpus), len(inventory.gpus)).to_json()
    if json_out:
        _print_json(gpus_report(inventory, selection, torch))
        return 0 if torch is None or torch["ok"] else 1
    console = make_console(settings.environ)
    console.print(_inventory_table(inventory, selection))
    for note in inventory.notes:
        console.print(f"[yellow]{note}[/]")
    console.print(gpu_config_panel(selection))
    if torch is not None:
        console.print(_torch_table(torch))
        return 0 if torch["ok"] else 1
    return 0


def _inventory_table(inventory: Inventory, selection: Selection) -> Table:
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


def _torch_table(torch: dict[str, Any]) -> Table:
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


@command("config", help="Show every effective setting and where it came from (cli, env, .env:LINE, default).")
def config_cmd(
    auto: o.Auto = False,
    dual: o.Dual = False,
    multi: o.Multi = False,
    single: o.Single = None,
    gpus: o.Gpus = None,
    cpu: o.Cpu = False,
    port: o.Port = None,
    listen: o.Listen = None,
    comfyui_dir: o.ComfyDir = None,
    python: o.Python = None,
    env_file: o.EnvFile = None,
    comfyui_args: o.ComfyArgs = None,
    enable_manager: o.Manager = None,
    json_out: o.JsonOut = False,
) -> int:
    settings = o.settings_from(
        o.overrides(auto=auto, dual=dual, multi=multi, single=single, gpus=gpus, cpu=cpu, port=port,
                    listen=listen, comfyui_dir=comfyui_dir, python=python, env_file=env_file,
                    comfyui_args=comfyui_args, enable_manager=enable_manager)
    )
    rows = settings.table()
    if json_out:
        _print_json({"settings": {k: {"value": v.value, "source": v.source} for k, v in rows.items()}})
        return 0
    table = Table(title="comfyrig settings", caption="precedence: cli > env > .env > default")
    table.add_column("name", style="cyan")
    table.add_column("value")
    table.add_column("source", style="dim")
    for name, value in rows.items():
        table.add_row(name, "" if value.value is None else str(value.value), value.source)
    make_console(settings.environ).print(table)
    return 0
