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
