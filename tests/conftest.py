"""Shared fixtures: simulated inventories and running the installed command."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from comfyrig.gpu.inventory import Inventory
from comfyrig.gpu.simulated import parse_simulated

REPO = Path(__file__).resolve().parents[1]


def fake_gpus(count: int, *, memory_mib: int = 24576, name: str = "NVIDIA GeForce RTX 3090") -> list[dict[str, object]]:
    return [
        {
            "name": name,
            "memory_total_mib": memory_mib,
            "memory_used_mib": 300,
            "uuid": f"GPU-{i:08x}-1111-2222-3333-444444444444",
            "pci_bus_id": f"00000000:{0x17 + i:02X}:00.0",
        }
        for i in range(count)
    ]


def inventory_of(count: int, **kwargs: object) -> Inventory:
    return parse_simulated(fake_gpus(count, **kwargs))  # type: ignore[arg-type]


@pytest.fixture
def inventories() -> Callable[[int], Inventory]:
    return inventory_of


def comfyrig_exe() -> list[str]:
    """The installed console script, or the module form when run from a source tree."""
    exe = shutil.which("comfyrig", path=str(Path(sys.executable).parent)) or shutil.which("comfyrig")
    return [exe] if exe else [sys.executable, "-m", "comfyrig"]


class Cli:
    """Runs the installed ``comfyrig`` command in a subprocess with a clean environment."""

    def __init__(self, tmp_path: Path) -> None:
        self.cwd = tmp_path
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("COMFYUI_", "COMFYRIG_", "CUDA_"))}
        self.env.pop("ENABLE_COMFYUI_MANAGER", None)
        self.env["NO_COLOR"] = "1"
        self.env["COLUMNS"] = "100"

    def gpus(self, count: int, **kwargs: object) -> None:
        self.env["COMFYRIG_FAKE_GPUS"] = json.dumps(fake_gpus(count, **kwargs))

    def __call__(self, *args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*comfyrig_exe(), *args],
            cwd=self.cwd,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


@pytest.fixture
def comfy_tree(tmp_path: Path) -> Path:
    """A minimal ComfyUI checkout: main.py, comfyui_version.py, comfy/cli_args.py."""
    root = tmp_path / "ComfyUI"
    (root / "comfy").mkdir(parents=True)
    (root / "custom_nodes").mkdir()
    (root / "main.py").write_text("print('not really ComfyUI')\n")
    (root / "comfyui_version.py").write_text('__version__ = "0.3.76"\n')
    (root / "comfy" / "cli_args.py").write_text(
        "\n".join(
            f'parser.add_argument("{flag}")'
            for flag in ("--listen", "--port", "--cpu", "--lowvram", "--novram", "--enable-manager", "--cuda-device", "--enable-cors-header")
        )
    )
    return root
