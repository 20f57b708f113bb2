"""Facts read from a ComfyUI checkout on disk, without importing it."""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["comfyui_version", "supported_flags"]

_FLAG = re.compile(r"""add_argument\(\s*["'](--[A-Za-z0-9][A-Za-z0-9-]*)["']""")
_VERSION = re.compile(r"""__version__\s*=\s*["']([^"']+)["']""")


def supported_flags(comfyui_dir: Path) -> frozenset[str] | None:
    """The long flags ComfyUI's ``comfy/cli_args.py`` defines, or None if unreadable.

    Read as text: importing it would import torch-adjacent modules, and the
    launcher never does that.
    """
    try:
        text = (comfyui_dir / "comfy" / "cli_args.py").read_text(encoding="utf-8")
    except OSError:
        return None
    flags = frozenset(_FLAG.findall(text))
    return flags or None


def comfyui_version(comfyui_dir: Path) -> str | None:
    """``__version__`` from comfyui_version.py (ComfyUI >= 0.3.x), or None."""
    try:
        text = (comfyui_dir / "comfyui_version.py").read_text(encoding="utf-8")
    except OSError:
        return None
    match = _VERSION.search(text)
    return match.group(1) if match else None
