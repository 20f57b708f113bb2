"""The multi-GPU catalogue, the finding read from real answers, and the verdict as a table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from comfyrig.comfy.multigpu import (
    CheckoutMultiGpu,
    MultiGpuFinding,
    TorchDevice,
    Verdict,
    finding_from,
    gpu_map,
    judge,
    native_in_checkout,
    pack_nodes,
    read_checkout,
)
from comfyrig.host.gpus.inventory import Gpu

from ..native_checkout import write_native_module
from .recorded_multigpu import OBJECT_INFO_0_24, STATS_CPU_0_3_76, STATS_CPU_0_24

H100 = "NVIDIA H100 80GB HBM3"


def gpu(index: int, name: str = H100, cc: str | None = "9.0", mib: int = 81559) -> Gpu:
    return Gpu(index, name, f"GPU-{index}", f"00000000:{index:02X}:00.0", mib, 0, cc)


def cuda(*names: str) -> tuple[TorchDevice, ...]:
    return tuple(TorchDevice(f"cuda:{i} {n} : cudaMallocAsync", "cuda", i) for i, n in enumerate(names))


NATIVE = ("MultiGPU_WorkUnits", "SelectModelDevice", "SelectCLIPDevice", "SelectVAEDevice")
PACK = ("CheckpointLoaderSimpleMultiGPU", "UNETLoaderDisTorch2MultiGPU")


def test_finding_from_real_0_24_answers_on_the_cpu() -> None:
    found = finding_from(OBJECT_INFO_0_24, STATS_CPU_0_24)
    assert found.native == NATIVE and found.pack == ()
    assert found.version == "0.24.0"
    # One torch device (the CPU): ComfyUI offers no gpu:N, and lists the cpu device.
    assert found.device_options == ("default", "cpu")
    assert found.devices == (TorchDevice("cpu", "cpu", None, STATS_CPU_0_24["devices"][0]["vram_total"]),)
    assert found.gpus == () and found.lists_every_device


def test_finding_from_real_0_3_76_answers() -> None:
    found = finding_from({"KSampler": OBJECT_INFO_0_24["KSampler"]}, STATS_CPU_0_3_76)
    assert (found.native, found.pack, found.version, found.device_options) == ((), (), "0.3.76", None)
    assert [d.type for d in found.devices or ()] == ["cpu"] and not found.lists_every_device


def test_finding_tolerates_missing_answers() -> None:
    assert finding_from(None, None) == MultiGpuFinding()
    odd = finding_from({"SelectModelDevice": {"input": {"required": {"device": [["default", "gpu:0", "gpu:1"], {}]}}}},
                       {"system": {}, "devices": "no"})
    assert odd.device_options == ("default", "gpu:0", "gpu:1") and odd.devices is None


def test_pack_nodes_by_suffix_not_the_native_ones() -> None:
    info: dict[str, Any] = {
        "MultiGPU_WorkUnits": {"python_module": "comfy_extras.nodes_multigpu"},
        "KSampler": {},
        "VAELoaderMultiGPU": {"python_module": "custom_nodes.ComfyUI-MultiGPU"},
        "UNETLoaderDisTorch2MultiGPU": {},
        "CheckpointLoaderSimpleMultiGPU": {},
    }
    # The well-known loaders first, in catalogue order, then the rest sorted.
    assert pack_nodes(info) == ("CheckpointLoaderSimpleMultiGPU", "UNETLoaderDisTorch2MultiGPU", "VAELoaderMultiGPU")


@pytest.mark.parametrize(("name", "model"), [
    (f"cuda:0 {H100} : cudaMallocAsync", H100),
    ("cuda:1 NVIDIA GeForce RTX 3090 : native", "NVIDIA GeForce RTX 3090"),
    ("CUDA cuda:0: Tesla T4", "Tesla T4"),  # the fallback form of get_torch_device_name
    ("cpu", "cpu"),
])
def test_torch_device_model_name(name: str, model: str) -> None:
    assert TorchDevice(name, "cuda", 0).model == model


def test_gpu_map_follows_cuda_order() -> None:
    assert gpu_map([gpu(2), gpu(0)]) == "gpu:0 = GPU 2, gpu:1 = GPU 0"


def lines(verdict: Verdict) -> list[tuple[str, str]]:
    return [(line.level, line.text) for line in verdict.lines]


# -- the verdict, case by case ------------------------------------------------------------------

TWO_H100 = (gpu(0), gpu(1))


def test_native_nodes_identical_ampere_gpus_listed_as_selected() -> None:
    verdict = judge(MultiGpuFinding(native=NATIVE, devices=cuda(H100, H100), version="0.24.0"), TWO_H100)
    assert verdict.level == "ok"
    assert lines(verdict) == [
        ("ok", ("ComfyUI 0.24.0 has native multi-GPU nodes (MultiGPU CFG Split, Select Model Device, Select CLIP Device, "
               "Select VAE Device); GPU 1 does work only where a workflow uses them (gpu:0 = GPU 0, gpu:1 = GPU 1):")),
        ("info", ("• MultiGPU CFG Split: a copy of the model on each GPU (up to max_gpus), the conditionings of every "
                 "sampling step split between them; faster only with CFG > 1 (at CFG 1 there is no negative "
                 "conditioning to hand over; up to 1.95x reported).")),
        ("info", ("• Select Model Device, Select CLIP Device, Select VAE Device: put a diffusion model, text encoder or VAE "
                 "on gpu:N (an unknown gpu:N passes through unchanged).")),
        ("ok", f"CFG split's conditions hold: the GPUs are identical ({H100}, compute capability 9.0, Ampere or newer)."),
        ("ok", f"/system_stats lists the selected GPUs: cuda:0 {H100}, cuda:1 {H100}."),
    ]


def test_only_select_nodes_no_cfg_lines() -> None:
    verdict = judge(MultiGpuFinding(native=("SelectModelDevice",), version="0.24.0"), TWO_H100)
    texts = [t for _, t in lines(verdict)]
    assert texts[0].startswith("ComfyUI 0.24.0 has native multi-GPU nodes (Select Model Device)")
    assert not any("CFG" in t for t in texts)


@pytest.mark.parametrize(("selected", "expected"), [
    ((gpu(0), gpu(1, "NVIDIA GeForce RTX 4090", "8.9", 24564)),
     ("warn", (f"CFG split: the GPUs differ (GPU 0 {H100} (79 GiB), GPU 1 NVIDIA GeForce RTX 4090 (23 GiB)); it gives each "
              "GPU an equal share of every step (GPU speeds are not weighed yet), so the slowest sets the pace. "
              "Select ... Device is not affected."))),
    ((gpu(0, "Tesla T4", "7.5", 15360), gpu(1, "Tesla T4", "7.5", 15360)),
     ("warn", ("CFG split: GPU 0 Tesla T4 (7.5), GPU 1 Tesla T4 (7.5) are older than Ampere (compute capability 8.0); "
              "it was measured on Ampere or newer, and may gain little or nothing here."))),
    ((gpu(0, cc=None), gpu(1, cc=None)),
     ("info", "CFG split: the compute capability of GPU 0, GPU 1 is unknown (N/A), so Ampere or newer cannot be checked.")),
])
def test_cfg_split_conditions_against_the_inventory(selected: tuple[Gpu, ...], expected: tuple[str, str]) -> None:
    verdict = judge(MultiGpuFinding(native=NATIVE, version="0.24.0"), selected)
    assert expected in lines(verdict)
    assert verdict.level == ("warn" if expected[0] == "warn" else "ok")


def test_pack_only_on_an_older_comfyui() -> None:
    verdict = judge(MultiGpuFinding(pack=PACK, devices=cuda(H100), version="0.3.76"), TWO_H100)
    assert verdict.level == "ok"
    assert lines(verdict) == [
        ("ok", ("ComfyUI-MultiGPU is loaded (CheckpointLoaderSimpleMultiGPU, UNETLoaderDisTorch2MultiGPU): its loader "
               "nodes put models on GPU 1 (device input) or spread one model's layers over the GPUs (DisTorch2: memory, "
               "not speed); ComfyUI 0.3.76 has no native multi-GPU nodes (they came with 0.23.0).")),
        ("info", (f"cuda:0 is {H100} as selected; ComfyUI 0.3.76's /system_stats lists only its default device, so "
                 "whether torch sees GPU 1 is not visible from outside.")),
    ]


def test_native_and_pack_both() -> None:
    verdict = judge(MultiGpuFinding(native=NATIVE, pack=PACK, version="0.24.0"), TWO_H100)
    assert ("info", ("ComfyUI-MultiGPU is loaded too (2 nodes: CheckpointLoaderSimpleMultiGPU, UNETLoaderDisTorch2MultiGPU): "
                    "its loaders place models (device) or spread one model's layers (DisTorch2).")) in lines(verdict)


def test_neither_on_an_older_comfyui_three_gpus() -> None:
    verdict = judge(MultiGpuFinding(version="0.3.76"), (gpu(0), gpu(1), gpu(2)))
    assert lines(verdict) == [
        ("warn", ("No multi-GPU nodes: ComfyUI 0.3.76 has no native multi-GPU nodes (they came with ComfyUI 0.23.0) and "
                 "ComfyUI-MultiGPU is not loaded, so ComfyUI computes only on cuda:0 (GPU 0); GPU 1 and GPU 2 stay idle. "
                 "Update ComfyUI to 0.23.0 or newer, install ComfyUI-MultiGPU into custom_nodes/, or run 'comfyrig launch "
                 "--workers' for one ComfyUI per GPU (throughput).")),
    ]


def test_neither_on_a_comfyui_that_should_have_them() -> None:
    (line,) = judge(MultiGpuFinding(version="0.24.0"), TWO_H100).lines
    assert line.level == "warn" and line.text.startswith(
        "No multi-GPU nodes: ComfyUI 0.24.0 registered no native multi-GPU nodes although it should have them "
        "(look for 'nodes_multigpu' or IMPORT FAILED in its log)")


@pytest.mark.parametrize(("devices", "expected"), [
    (cuda(H100), (f"torch sees 1 GPU (cuda:0 {H100}), but comfyrig selected 2 (GPU 0 {H100}, GPU 1 {H100}): torch sees "
                 "other GPUs than comfyrig chose (--cuda-device or --default-device among ComfyUI's flags?).")),
    (cuda(H100, "NVIDIA A100-SXM4-80GB"), ("torch sees other GPUs than comfyrig chose: cuda:1 is NVIDIA A100-SXM4-80GB, "
                                          f"not GPU 1 {H100}.")),
    ((TorchDevice("cpu", "cpu", None),), (f"/system_stats lists cpu: ComfyUI runs on the CPU although comfyrig selected "
                                         f"GPU 0 {H100}, GPU 1 {H100} (is --cpu among ComfyUI's flags?).")),
])
def test_devices_that_differ_from_the_selection_warn(devices: tuple[TorchDevice, ...], expected: str) -> None:
    verdict = judge(MultiGpuFinding(native=NATIVE, devices=devices, version="0.24.0"), TWO_H100)
    assert ("warn", expected) in lines(verdict) and verdict.level == "warn"


def test_older_comfyui_compares_only_cuda_0() -> None:
    other = (TorchDevice("cuda:0 NVIDIA GeForce RTX 3090 : cudaMallocAsync", "cuda", 0),)
    verdict = judge(MultiGpuFinding(pack=PACK, devices=other, version="0.3.76"), TWO_H100)
    assert ("warn", (f"ComfyUI's cuda:0 is NVIDIA GeForce RTX 3090, but comfyrig selected GPU 0 ({H100}) as cuda:0: torch "
                    "sees other GPUs than comfyrig chose (--cuda-device or --default-device among ComfyUI's flags?).")) \
        in lines(verdict)


def test_a_mig_instance_matches_its_parent_gpu() -> None:
    mig = (TorchDevice(f"cuda:0 {H100} MIG 1g.10gb : cudaMallocAsync", "cuda", 0), cuda(H100, H100)[1])
    verdict = judge(MultiGpuFinding(native=NATIVE, devices=mig, version="0.24.0"), TWO_H100)
    assert verdict.lines[-1].level == "ok"


def test_no_device_list_no_device_line() -> None:
    verdict = judge(MultiGpuFinding(native=NATIVE, version="0.24.0"), TWO_H100)
    assert not any("/system_stats" in t or "torch sees" in t for _, t in lines(verdict))


# -- the checkout ---------------------------------------------------------------------------------


def checkout(root: Path, *, native: bool, pack: str | None = None) -> Path:
    root.mkdir(parents=True)
    extras = '"nodes_images.py", "nodes_multigpu.py"' if native else '"nodes_images.py"'
    (root / "nodes.py").write_text(f"extras_files = [{extras}]\n")
    if native:
        write_native_module(root)
    if pack is not None:
        (root / "custom_nodes" / pack).mkdir(parents=True)
    return root


def test_checkout_native_and_packs(tmp_path: Path) -> None:
    new = checkout(tmp_path / "new", native=True)
    assert native_in_checkout(new)
    assert read_checkout(new, "0.24.0") == CheckoutMultiGpu(version="0.24.0", native=True)
    old = checkout(tmp_path / "old", native=False, pack="ComfyUI-MultiGPU")
    found = read_checkout(old, "0.3.76")
    assert found is not None and not found.native and found.pack_enabled and found.who == "ComfyUI 0.3.76"
    # A module that nodes.py does not load is not registered.
    write_native_module(old)
    assert not native_in_checkout(old)
    assert read_checkout(tmp_path / "nothing", None) is None
