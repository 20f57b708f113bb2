"""The multi-GPU verdict as the dashboard and the plain view show it, and the out-of-memory advice."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console, RenderableType

from comfyrig.comfy.logs import StartupInfo
from comfyrig.comfy.multigpu import CheckoutMultiGpu, MultiGpuFinding, TorchDevice
from comfyrig.config.modes import GpuRequest, select_gpus
from comfyrig.config.settings import CliOverrides, resolve_settings
from comfyrig.launch.events import FleetSnapshot, Inspected, WorkerView
from comfyrig.launch.plan import LaunchPlan, plan_launch
from comfyrig.ui.dashboard import multigpu_verdict
from comfyrig.ui.launch_view import PlainLaunchView, exit_report

from ..comfy.test_vram import table
from ..conftest import inventory_of

RTX = "NVIDIA GeForce RTX 3090"


def plan(tmp_path: Path, request: GpuRequest, *, workers: bool = False, version: str = "0.3.76") -> LaunchPlan:
    settings = resolve_settings(CliOverrides(), {}, tmp_path)
    selection = select_gpus(request, inventory_of(2))
    ports = [8188, 8189] if workers else [8188]
    checkout = CheckoutMultiGpu(version, native=version == "0.24.0")
    return plan_launch(settings, selection, ports, workers=workers, flags=table(version), checkout=checkout)


def text(parts: list[RenderableType]) -> str:
    console = Console(file=io.StringIO(), width=1000, color_system=None)
    console.print(*parts, sep="\n")
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_verdict_only_for_one_comfyui_with_several_gpus(tmp_path: Path) -> None:
    found = MultiGpuFinding(version="0.3.76")
    assert multigpu_verdict(plan(tmp_path, GpuRequest("single", ("0",))), found) is None
    assert multigpu_verdict(plan(tmp_path, GpuRequest("dual"), workers=True), found) is None
    assert multigpu_verdict(plan(tmp_path, GpuRequest("dual")), None) is None  # it did not answer
    shown = multigpu_verdict(plan(tmp_path, GpuRequest("dual")), found)
    assert shown is not None and shown.plain.startswith("⚠ No multi-GPU nodes: ComfyUI 0.3.76 has no native")


def test_plain_view_prints_each_verdict_line(tmp_path: Path) -> None:
    out = io.StringIO()
    console = Console(file=out, width=400, color_system=None)
    devices = tuple(TorchDevice(f"cuda:{i} {RTX} : cudaMallocAsync", "cuda", i) for i in range(2))
    found = MultiGpuFinding(native=("MultiGPU_WorkUnits", "SelectModelDevice"), devices=devices, version="0.24.0")
    PlainLaunchView(plan(tmp_path, GpuRequest("dual"), version="0.24.0"), console, out=io.StringIO())(Inspected("comfyui", found))
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("comfyrig: ✓ ComfyUI 0.24.0 has native multi-GPU nodes (MultiGPU CFG Split, Select Model Device)")
    assert lines[1].startswith("comfyrig:   • MultiGPU CFG Split: a copy of the model on each GPU")
    assert lines[-1] == f"comfyrig: ✓ /system_stats lists the selected GPUs: cuda:0 {RTX}, cuda:1 {RTX}."


def failed(tail: tuple[str, ...], **system: str) -> FleetSnapshot:
    view = WorkerView(name="comfyui", url="http://127.0.0.1:8188", port=8188, cuda_visible_devices="0", phase="failed",
                      pid=None, elapsed_s=0.0, info=StartupInfo(system=system), message="exited with code 1", exit_code=1,
                      stats=None,
                      multigpu=None, queue_remaining=None, log_file=None, restarts=0, tail=tail)
    return FleetSnapshot(workers=(view,), stopping=False)


def test_out_of_memory_advice_follows_the_version(tmp_path: Path) -> None:
    snapshot = failed(("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB",))
    generic = text(exit_report(snapshot))
    assert "likely reason: CUDA out of memory" in generic and "--lowvram" not in generic
    new = text(exit_report(snapshot, plan(tmp_path, GpuRequest("single", ("0",)), version="0.24.0")))
    assert "--reserve-vram GB" in new and "Not --lowvram: ComfyUI 0.24.0 loads models with dynamic VRAM" in new
    old = text(exit_report(snapshot, plan(tmp_path, GpuRequest("single", ("0",)), version="0.3.76")))
    assert "--reserve-vram GB, --lowvram, --novram, --disable-smart-memory" in old


def test_out_of_memory_advice_follows_what_the_log_said_about_dynamic_vram(tmp_path: Path) -> None:
    # 0.24 turns dynamic VRAM on by default, but its log can say it could not (no comfy-aimdo, old torch, WSL):
    # then --lowvram acts again and is advised.
    tail = ("torch.OutOfMemoryError: CUDA out of memory.",)
    new = plan(tmp_path, GpuRequest("single", ("0",)), version="0.24.0")
    off = text(exit_report(failed(tail, dynamic_vram="disabled: no working comfy-aimdo"), new))
    assert "--reserve-vram GB, --lowvram, --novram, --disable-smart-memory" in off and "Not --lowvram" not in off
    on = text(exit_report(failed(tail, dynamic_vram="enabled"), new))
    assert "Not --lowvram" in on


def test_an_exposed_instance_shows_the_addresses_it_binds() -> None:
    from dataclasses import replace

    from comfyrig.ui.dashboard import status_line

    ready = replace(failed(()).workers[0], phase="ready", message="", exit_code=None)
    assert "listening" not in status_line(ready).plain
    exposed = status_line(replace(ready, listen="0.0.0.0,::")).plain
    assert exposed.startswith("READY     http://127.0.0.1:8188") and "listening on 0.0.0.0,::" in exposed
