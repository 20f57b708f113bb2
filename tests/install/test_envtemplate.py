"""The .env written by install: the seed's keys, all commented, parseable as data."""

from pathlib import Path

from comfyrig.config.envfile import read_env_file
from comfyrig.host.gpus.inventory import Inventory
from comfyrig.install.envtemplate import render_env

from ..conftest import inventory_of

SEED_KEYS = ("CUDA_VISIBLE_DEVICES", "COMFYUI_PORT", "ENABLE_COMFYUI_MANAGER", "PYTORCH_ALLOC_CONF",
             "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "COMFYUI_ARGS")


def test_two_gpus_all_keys_commented(tmp_path: Path) -> None:
    text = render_env(inventory_of(2), frozenset({"--enable-manager"}), ("manager",))
    for key in SEED_KEYS:
        assert f"# {key}=" in text
    assert "#   GPU 0: NVIDIA GeForce RTX 3090, 24.00 GB VRAM" in text and "# Dual GPU: CUDA_VISIBLE_DEVICES=0,1" in text
    assert "cloned into custom_nodes/" in text and "PYTORCH_CUDA_ALLOCATOR" not in text
    path = tmp_path / ".env"
    path.write_text(text)
    assert read_env_file(path, {}).values == {}


def test_cpu_machine_and_old_comfyui() -> None:
    text = render_env(Inventory(gpus=(), source="none", problem="no driver"), frozenset({"--port"}))
    assert "No NVIDIA GPU was found" in text and "no driver" in text and "Dual GPU" not in text
    assert "has no --enable-manager flag" in text
