"""The "GPU Configuration" panel, as the old launcher drew it, made truthful.

Each GPU line shows the physical index (nvidia-smi's) and, when they differ,
the cuda:N name ComfyUI will use, since a reordered selection (``--gpus 1,0``)
makes physical GPU 1 ComfyUI's cuda:0.
"""

from __future__ import annotations

from rich import box
from rich.console import RenderableType
from rich.panel import Panel
from rich.text import Text

from ..config.modes import MODE_TITLES, Selection

__all__ = ["gpu_config_panel"]

_STYLE = {"dual": "green", "multi": "green", "single": "cyan", "cpu": "yellow"}


def gpu_config_panel(selection: Selection, *, workers: bool = False) -> RenderableType:
    mode = selection.mode
    title, description = MODE_TITLES[mode]
    if workers and selection.gpus:
        title = "🎮 Worker Fleet Mode"
        description = f"One ComfyUI per GPU: {len(selection.gpus)} workers, each sees only its own GPU"
    colour = _STYLE[mode]
    text = Text()
    text.append(title + "\n", style=f"bold {colour}")
    text.append(description.format(n=len(selection.gpus)), style="dim")
    if mode != "cpu":
        text.append("\n\nCUDA_VISIBLE_DEVICES: ", style="white")
        text.append(selection.cuda_visible_devices, style="bold")
        text.append("\n\nDetected GPUs:\n", style="cyan")
        for cuda_index, gpu in enumerate(selection.gpus):
            text.append(f"  GPU {gpu.index}: ", style="white")
            text.append(gpu.name, style="bold")
            if cuda_index != gpu.index and not workers:
                text.append(f"  (cuda:{cuda_index} in ComfyUI)", style="magenta")
            text.append(f"\n         {gpu.memory_total_gb:.2f} GB VRAM", style="dim")
            text.append(f", {gpu.memory_free_mib / 1024:.2f} GB free", style="dim")
            others = list(gpu.processes)
            if others:
                used = sum(p.used_memory_mib or 0 for p in others)
                text.append(
                    f"\n         ⚠ in use by {len(others)} other process{'es' if len(others) > 1 else ''} ({used} MiB)",
                    style="bold yellow",
                )
            text.append("\n")
        text.rstrip()
    for note in selection.notes:
        text.append(f"\n{note}", style="yellow")
    return Panel(text, title="🎮 GPU Configuration", border_style=colour, box=box.ROUNDED, expand=True)
