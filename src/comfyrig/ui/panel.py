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

from ..comfy.multigpu import NATIVE_SINCE, CheckoutMultiGpu, cfg_split_lines
from ..config.modes import MODE_TITLES, Selection

__all__ = ["checkout_lines", "gpu_config_panel"]

_STYLE = {"dual": "green", "multi": "green", "single": "cyan", "cpu": "yellow"}


def checkout_lines(selection: Selection, checkout: CheckoutMultiGpu | None) -> list[tuple[str, str]]:
    """(text, style) lines on what will use the GPUs after cuda:0, from the checkout on disk
    (drawn before ComfyUI starts; after start, the launch view says what ComfyUI registered)."""
    if checkout is None or len(selection.gpus) < 2:
        return []
    who, rest = checkout.who, "cuda:1" if len(selection.gpus) == 2 else "the other GPUs"
    if checkout.native:
        native = (f"{who} has native multi-GPU nodes: MultiGPU CFG Split (faster sampling with CFG > 1 on identical "
                  "GPUs) and Select Model/CLIP/VAE Device (a model, text encoder or VAE on gpu:N).")
        warns = [f"⚠ {line.text}" for line in cfg_split_lines(selection.gpus) if line.level == "warn"]
        return [(native, "green"), *((w, "yellow") for w in warns)]
    if checkout.pack_enabled:
        pack = (f"{who} has no native multi-GPU nodes (they came with {NATIVE_SINCE}); ComfyUI-MultiGPU in custom_nodes "
                f"puts models on {rest} (its loaders' device input).")
        return [(pack, "green")]
    neither = (f"⚠ {who} has no native multi-GPU nodes (they came with {NATIVE_SINCE}) and no ComfyUI-MultiGPU in "
               f"custom_nodes: {rest} would stay idle. --workers runs one ComfyUI per GPU instead.")
    return [(neither, "bold yellow")]


def gpu_config_panel(selection: Selection, *, workers: bool = False, checkout: CheckoutMultiGpu | None = None) -> RenderableType:
    """The panel; ``checkout`` (what the ComfyUI checkout on disk has) adds, in dual/multi mode,
    what can use the GPUs after cuda:0."""
    mode = selection.mode
    title, description = MODE_TITLES[mode]
    if workers and selection.gpus:
        title = "🎮 Worker Fleet Mode"
        description = f"One ComfyUI per GPU: {len(selection.gpus)} workers, each sees only its own GPU"
    colour = _STYLE[mode]
    text = Text()
    text.append(title + "\n", style=f"bold {colour}")
    text.append(description.format(n=len(selection.gpus)), style="dim")
    for line, style in ([] if workers else checkout_lines(selection, checkout)):
        text.append(f"\n{line}", style=style)
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
