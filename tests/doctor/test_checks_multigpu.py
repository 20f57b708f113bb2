"""multigpu.native, multigpu.cfg_split, multigpu.running: from the checkout and from a running ComfyUI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from comfyrig.config.settings import CliOverrides
from comfyrig.doctor.checks_comfyui import check_multigpu
from comfyrig.doctor.checks_multigpu import check_cfg_split, check_multigpu_native, check_multigpu_running
from comfyrig.host.gpus.inventory import Inventory
from tests.doctor.conftest import MULTIGPU_263, comfy_tree, inventory, make_ctx

H100 = {"name": "NVIDIA H100 80GB HBM3", "memory_total_mib": 81559, "compute_capability": "9.0"}
T4 = {"name": "Tesla T4", "memory_total_mib": 15360, "compute_capability": "7.5"}


def gpus(*items: dict[str, Any]) -> Inventory:
    return inventory(list(items))


def test_native_nodes_from_the_checkout(tmp_path: Path) -> None:
    new = comfy_tree(tmp_path / "New", version="0.24.0", flags=None, cli_version="0.24.0", native=True)
    result = check_multigpu_native(make_ctx(tmp_path, CliOverrides(comfyui_dir=new, gpus="1,0"), inv=gpus(H100, H100)))
    assert result.status == "pass"
    assert result.message.startswith("ComfyUI 0.24.0 has native multi-GPU nodes (comfy_extras/nodes_multigpu.py)")
    assert "(gpu:0 = GPU 1, gpu:1 = GPU 0)" in result.message  # ComfyUI's gpu:N after the reordered selection
    assert result.fix is not None and "max_gpus 2" in result.fix
    # Without them, and without ComfyUI-MultiGPU, the other GPU stays idle.
    old = comfy_tree(tmp_path / "Old")
    idle = check_multigpu_native(make_ctx(tmp_path, CliOverrides(comfyui_dir=old, dual=True), inv=gpus(H100, H100)))
    assert idle.status == "warn"
    assert idle.message == (
        "ComfyUI 0.3.76 has no native multi-GPU nodes (they came with ComfyUI 0.23.0), and ComfyUI-MultiGPU is not "
        "enabled either: in dual mode ComfyUI computes only on cuda:0 (GPU 0) and GPU 1 stays idle."
    )
    assert idle.fix is not None and "Update ComfyUI to 0.23.0 or newer" in idle.fix and "--workers" in idle.fix
    # ComfyUI-MultiGPU serves on an older ComfyUI.
    packed = comfy_tree(tmp_path / "Packed", packs={"ComfyUI-MultiGPU": MULTIGPU_263}, comfy_modules=("memory_management",))
    served = check_multigpu_native(make_ctx(tmp_path, CliOverrides(comfyui_dir=packed, dual=True), inv=gpus(H100, H100)))
    assert served.status == "pass" and "ComfyUI-MultiGPU in custom_nodes is what can use the other GPUs here" in served.message


def test_native_skips(tmp_path: Path) -> None:
    comfy = comfy_tree(tmp_path / "ComfyUI", native=True)
    assert check_multigpu_native(make_ctx(tmp_path, CliOverrides(comfyui_dir=comfy, single=0))).status == "skip"
    no_dir = check_multigpu_native(make_ctx(tmp_path, CliOverrides(dual=True)))
    assert no_dir.status == "skip" and "comfyui.dir" in no_dir.message


def test_pack_not_needed_with_native_nodes(tmp_path: Path) -> None:
    new = comfy_tree(tmp_path / "New", version="0.24.0", flags=None, cli_version="0.24.0", native=True)
    result = check_multigpu(make_ctx(tmp_path, CliOverrides(comfyui_dir=new, dual=True)))
    assert result.status == "pass"
    assert result.message == (
        "ComfyUI-MultiGPU is not in custom_nodes; not needed: ComfyUI 0.24.0's own nodes put models on the other GPUs "
        "(see multigpu.native). It would add DisTorch2 (one model's layers spread over several GPUs, for memory)."
    )


def test_cfg_split_conditions(tmp_path: Path) -> None:
    new = comfy_tree(tmp_path / "New", version="0.24.0", flags=None, cli_version="0.24.0", native=True)

    def check(*items: dict[str, Any]) -> Any:
        return check_cfg_split(make_ctx(tmp_path, CliOverrides(comfyui_dir=new, multi=True), inv=gpus(*items)))

    same = check(H100, H100)
    assert (same.status, same.message) == (
        "pass", ("CFG split's conditions hold: the GPUs are identical (NVIDIA H100 80GB HBM3, compute capability 9.0, "
        "Ampere or newer)."),
    )
    mixed = check(H100, T4)
    assert mixed.status == "warn"
    assert mixed.message.startswith("the GPUs differ (GPU 0 NVIDIA H100 80GB HBM3 (79 GiB), GPU 1 Tesla T4 (15 GiB)); "
                                    "it gives each GPU an equal share")
    assert "GPU 1 Tesla T4 (7.5) is older than Ampere" in mixed.message
    assert mixed.fix is not None and "identical GPUs" in mixed.fix
    unknown = check(dict(H100, compute_capability=None), dict(H100, compute_capability=None))
    assert unknown.status == "pass" and "compute capability of GPU 0, GPU 1 is unknown" in unknown.message
    old = comfy_tree(tmp_path / "Old")
    skipped = check_cfg_split(make_ctx(tmp_path, CliOverrides(comfyui_dir=old, dual=True), inv=gpus(H100, H100)))
    assert (skipped.status, skipped.message) == ("skip", "ComfyUI 0.3.76 has no MultiGPU CFG Split (see multigpu.native).")


def stats(*names: str, version: str = "0.24.0") -> dict[str, Any]:
    devices = [{"name": f"cuda:{i} {n} : cudaMallocAsync", "type": "cuda", "index": i, "vram_total": 1} for i, n in enumerate(names)]
    return {"system": {"comfyui_version": version, "pytorch_version": "2.11.0+cu130"}, "devices": devices}


NATIVE_INFO = {name: {"python_module": "comfy_extras.nodes_multigpu"}
               for name in ("MultiGPU_WorkUnits", "SelectModelDevice", "SelectCLIPDevice", "SelectVAEDevice")}


def answering(system_stats: dict[str, Any], object_info: dict[str, Any] | None) -> Any:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/object_info":
            return httpx.Response(200, json=object_info) if object_info is not None else httpx.Response(500, text="boom")
        return httpx.Response(200, json=system_stats)

    return handler


def test_running_instance_lists_the_selected_gpus(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, CliOverrides(dual=True), inv=gpus(H100, H100),
                   http=answering(stats("NVIDIA H100 80GB HBM3", "NVIDIA H100 80GB HBM3"), NATIVE_INFO))
    result = check_multigpu_running(ctx)
    assert (result.status, result.message) == ("pass", (
        "The ComfyUI at http://127.0.0.1:8188: ComfyUI 0.24.0 registered its native multi-GPU nodes (MultiGPU CFG Split, "
        "Select Model Device, Select CLIP Device, Select VAE Device). /system_stats lists the selected GPUs: cuda:0 "
        "NVIDIA H100 80GB HBM3, cuda:1 NVIDIA H100 80GB HBM3."))


def test_running_instance_sees_other_gpus(tmp_path: Path) -> None:
    # Started by hand with one GPU (or --cuda-device): torch lists one device, two were selected.
    ctx = make_ctx(tmp_path, CliOverrides(dual=True), inv=gpus(H100, H100),
                   http=answering(stats("NVIDIA H100 80GB HBM3"), NATIVE_INFO))
    result = check_multigpu_running(ctx)
    assert result.status == "warn" and "torch sees 1 GPU (cuda:0 NVIDIA H100 80GB HBM3), but comfyrig selected 2" in result.message
    assert result.fix is not None and "--cuda-device" in result.fix
    # An older ComfyUI without any multi-GPU node: the fix is the one for nodes.
    old = make_ctx(tmp_path, CliOverrides(dual=True), inv=gpus(H100, H100),
                   http=answering(stats("NVIDIA H100 80GB HBM3", version="0.3.76"), {"KSampler": {}}))
    idle = check_multigpu_running(old)
    assert idle.status == "warn" and "No multi-GPU nodes: ComfyUI 0.3.76 has no native multi-GPU nodes" in idle.message
    assert idle.fix is not None and idle.fix.startswith("Update ComfyUI to 0.23.0 or newer")


def test_running_instance_skips_and_unreadable_object_info(tmp_path: Path) -> None:
    assert check_multigpu_running(make_ctx(tmp_path, CliOverrides(dual=True))).status == "skip"  # nothing answers
    single = make_ctx(tmp_path, CliOverrides(single=0), http=answering(stats("NVIDIA H100 80GB HBM3"), NATIVE_INFO))
    assert check_multigpu_running(single).status == "skip"
    broken = make_ctx(tmp_path, CliOverrides(dual=True), http=answering(stats("NVIDIA H100 80GB HBM3"), None))
    result = check_multigpu_running(broken)
    assert result.status == "warn" and "/object_info could not be read" in result.message
