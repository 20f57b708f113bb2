"""``comfyrig gpus``: flags -> Settings -> the inventory and the selection -> output -> exit code."""

from __future__ import annotations

from typing import Annotated

import typer

from ..config.modes import select_gpus
from ..host.gpus.probe import probe_inventory
from ..host.gpus.torchcheck import judge_torch, run_torch_check
from ..ui.console import make_console
from ..ui.gpus_view import gpus_report, gpus_view
from . import options as o
from .app import command
from .report import print_json

__all__: list[str] = []


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
    inventory = probe_inventory(settings.fake_gpus)
    selection = select_gpus(settings.gpu_request.value, inventory)
    torch = None
    if torch_check:
        env = {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": selection.cuda_visible_devices}
        raw = run_torch_check(settings.python.value, env, settings.environ)
        torch = judge_torch(settings.python.value, raw, len(selection.gpus), len(inventory.gpus)).to_json()
    if json_out:
        print_json(gpus_report(inventory, selection, torch))
    else:
        make_console(settings.environ).print(gpus_view(inventory, selection, torch))
    return 0 if torch is None or torch["ok"] else 1
