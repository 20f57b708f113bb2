"""The .env that ``comfyrig install`` writes: the old launcher's keys, all commented.

Same keys and sections as the ``.env.example`` users know, with two fixes:
every line is commented (so the defaults, auto mode on every GPU, apply until
someone chooses otherwise) and the made-up ``PYTORCH_CUDA_ALLOCATOR`` is
gone (PyTorch reads ``PYTORCH_ALLOC_CONF``, formerly ``PYTORCH_CUDA_ALLOC_CONF``).
"""

from __future__ import annotations

from collections.abc import Iterable

from ..host.gpus.inventory import Inventory

__all__ = ["render_env"]


def render_env(inventory: Inventory, supported_flags: frozenset[str] | None, packs: Iterable[str] = ()) -> str:
    """The text of the .env file; pure, so the dry run can show it."""
    gpus = inventory.gpus
    indices = ",".join(str(g.index) for g in gpus)
    lines = [
        "# ComfyUI environment for comfyrig, written by 'comfyrig install'.",
        "# comfyrig reads this file as data (it is never run by a shell).",
        "# Precedence: command-line flags > process environment > this file > defaults.",
        "# Every line is commented out: the defaults apply until you uncomment one.",
        "",
        "# GPU Configuration",
    ]
    if gpus:
        where = f"driver {inventory.driver_version or '?'}, CUDA {inventory.cuda_driver_version or '?'}"
        lines.append(f"# Detected GPUs (nvidia-smi numbering; {where}):")
        lines += [f"#   GPU {g.index}: {g.name}, {g.memory_total_gb:.2f} GB VRAM" for g in gpus]
        lines.append(f"# All GPUs (the default, same as leaving this unset): CUDA_VISIBLE_DEVICES={indices}")
        if len(gpus) >= 2:
            lines.append(f"# Dual GPU: CUDA_VISIBLE_DEVICES={gpus[0].index},{gpus[1].index}")
        lines.append(f"# Single GPU: CUDA_VISIBLE_DEVICES={gpus[0].index}")
    else:
        lines.append(f"# No NVIDIA GPU was found when this file was written ({inventory.problem or 'the driver reports none'}).")
    lines += [
        "# CPU only, an empty value: CUDA_VISIBLE_DEVICES=",
        f"# CUDA_VISIBLE_DEVICES={indices}",
        "",
        "# Server Configuration",
        "# COMFYUI_PORT=8188",
        "# ComfyUI has no authentication: anyone who reaches the port can run code on this machine.",
        "# COMFYUI_LISTEN=127.0.0.1",
        "",
        "# ComfyUI Manager (optional)",
    ]
    if "manager" in packs:
        lines.append("# ComfyUI-Manager was cloned into custom_nodes/ and loads by itself; this switch is for the")
        lines.append("# pip-installed Manager of newer ComfyUI (manager_requirements.txt).")
    if supported_flags is not None and "--enable-manager" not in supported_flags:
        lines.append("# This ComfyUI has no --enable-manager flag (it needs ComfyUI 0.3.76 or newer).")
    lines += [
        "# ENABLE_COMFYUI_MANAGER=true",
        "",
        "# Memory Management (optional)",
        "# PYTORCH_ALLOC_CONF=expandable_segments:True",
        "",
        "# Python Configuration (optional)",
        "# PYTHONUNBUFFERED=1",
        "# PYTHONDONTWRITEBYTECODE=1",
        "",
        "# Additional ComfyUI Arguments (optional)",
        '# COMFYUI_ARGS="--preview-method auto"',
        "",
    ]
    return "\n".join(lines)
