import io

from rich.console import Console

from comfyrig.config.modes import GpuRequest, select_gpus
from comfyrig.host.gpus.simulated import parse_simulated
from comfyrig.ui.panel import gpu_config_panel

from ..conftest import inventory_of


def render(renderable: object) -> str:
    console = Console(file=io.StringIO(), width=72, color_system=None)
    console.print(renderable)
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_dual_panel_like_the_seed() -> None:
    text = render(gpu_config_panel(select_gpus(GpuRequest("dual"), inventory_of(2))))
    assert "GPU Configuration" in text
    assert "🎮 Dual GPU Mode" in text
    assert "CUDA_VISIBLE_DEVICES: 0,1" in text
    assert "Detected GPUs:" in text
    assert "GPU 0: NVIDIA GeForce RTX 3090" in text and "GPU 1: NVIDIA GeForce RTX 3090" in text
    assert "24.00 GB VRAM" in text


def test_cpu_panel() -> None:
    text = render(gpu_config_panel(select_gpus(GpuRequest("cpu"), inventory_of(2))))
    assert "CPU Mode" in text and "No CUDA devices configured" in text and "Detected GPUs" not in text


def test_reordered_shows_cuda_names_and_busy_gpu() -> None:
    inv = parse_simulated(
        [
            {"name": "GPU A", "memory_total_mib": 8192},
            {"name": "GPU B", "memory_total_mib": 8192, "memory_used_mib": 2048, "processes": [{"pid": 7, "used_memory_mib": 2048}]},
        ]
    )
    text = render(gpu_config_panel(select_gpus(GpuRequest("gpus", ("1", "0")), inv)))
    assert "GPU 1: GPU B  (cuda:0 in ComfyUI)" in text
    assert "in use by 1 other process (2048 MiB)" in text
    assert "6.00 GB free" in text


def test_single_and_multi_titles() -> None:
    assert "Single GPU Mode" in render(gpu_config_panel(select_gpus(GpuRequest("single", ("0",)), inventory_of(2))))
    assert "Multi GPU Mode" in render(gpu_config_panel(select_gpus(GpuRequest("multi"), inventory_of(4))))
    assert "Worker Fleet Mode" in render(gpu_config_panel(select_gpus(GpuRequest("multi"), inventory_of(4)), workers=True))


def flat(text: str) -> str:
    """The panel's text without borders and wrapping, for sentences that wrap."""
    return " ".join(line.strip("│╭╮╰╯─ ").strip() for line in text.splitlines() if line.strip("│╭╮╰╯─ "))


def test_dual_mode_text_neither_promises_nor_denies_parallel_work() -> None:
    text = flat(render(gpu_config_panel(select_gpus(GpuRequest("dual"), inventory_of(2)))))
    assert "2 GPUs visible to one ComfyUI: it computes on cuda:0, on cuda:1 only through multi-GPU nodes" in text
    assert "via ComfyUI-MultiGPU" not in text


def test_what_the_checkout_has_says_what_uses_the_other_gpus() -> None:
    from comfyrig.comfy.multigpu import CheckoutMultiGpu

    dual = select_gpus(GpuRequest("dual"), inventory_of(2))
    native = flat(render(gpu_config_panel(dual, checkout=CheckoutMultiGpu("0.24.0", native=True))))
    assert ("ComfyUI 0.24.0 has native multi-GPU nodes: MultiGPU CFG Split (faster sampling with CFG > 1 on identical "
            "GPUs) and Select Model/CLIP/VAE Device (a model, text encoder or VAE on gpu:N).") in native
    neither = flat(render(gpu_config_panel(dual, checkout=CheckoutMultiGpu("0.3.76", native=False))))
    assert ("⚠ ComfyUI 0.3.76 has no native multi-GPU nodes (they came with 0.23.0) and no ComfyUI-MultiGPU in "
            "custom_nodes: cuda:1 would stay idle. --workers runs one ComfyUI per GPU instead.") in neither
    from pathlib import Path

    packed = CheckoutMultiGpu("0.3.76", native=False, packs=((Path("custom_nodes/ComfyUI-MultiGPU"), True),))
    assert "ComfyUI-MultiGPU in custom_nodes puts models on cuda:1" in flat(render(gpu_config_panel(dual, checkout=packed)))
    # Mixed GPUs: the CFG split caveat shows before ComfyUI starts.
    mixed = parse_simulated([{"name": "NVIDIA GeForce RTX 4090", "memory_total_mib": 24564, "compute_capability": "8.9"},
                             {"name": "NVIDIA GeForce RTX 3090", "memory_total_mib": 24576, "compute_capability": "8.6"}])
    caveat = flat(render(gpu_config_panel(select_gpus(GpuRequest("dual"), mixed), checkout=CheckoutMultiGpu("0.24.0", native=True))))
    assert "⚠ CFG split: the GPUs differ" in caveat
    # Nothing of this for one GPU per ComfyUI, or one GPU.
    fleet = flat(render(gpu_config_panel(dual, workers=True, checkout=CheckoutMultiGpu("0.3.76", native=False))))
    assert "multi-GPU nodes" not in fleet
