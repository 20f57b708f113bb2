"""The PyTorch build for a driver: pure, on simulated inventories."""

from __future__ import annotations

import re
from typing import Any

import pytest

from comfyrig.errors import ConfigError, DriverTooOldError, InstallError
from comfyrig.host.gpus.inventory import Inventory
from comfyrig.host.gpus.simulated import parse_simulated
from comfyrig.install.torch_choice import (
    CPU_INDEX,
    CUDA_INDEXES,
    choose_torch,
    cuda_from_driver,
    index_tag,
    parse_cuda,
    tag_of_cuda,
)


def machine(cuda: str | None, driver: str = "570.86", *, count: int = 2, cc: str | None = None) -> Inventory:
    gpus: list[dict[str, Any]] = [{"name": "NVIDIA GeForce RTX 3090", "memory_total_mib": 24576} for _ in range(count)]
    if cc:
        gpus[-1]["compute_capability"] = cc
    data: dict[str, Any] = {"driver_version": driver, "gpus": gpus}
    if cuda is not None:
        data["cuda_driver_version"] = cuda
    inv = parse_simulated(data)
    if cuda is None:  # the simulator defaults it; the nvidia-smi fallback leaves it unknown
        inv = Inventory(gpus=inv.gpus, source="nvidia-smi", driver_version=driver, cuda_driver_version=None)
    return inv


@pytest.mark.parametrize(
    ("driver_cuda", "tag"),
    [
        ("11.8", "cu118"),
        ("12.0", "cu118"),
        ("12.2", "cu121"),
        ("12.4", "cu124"),
        ("12.5", "cu124"),
        ("12.6", "cu126"),
        ("12.8", "cu128"),
        ("12.9", "cu129"),
        ("13.0", "cu130"),
        ("13.2", "cu130"),
    ],
)
def test_newest_index_not_newer_than_the_driver(driver_cuda: str, tag: str) -> None:
    choice = choose_torch(machine(driver_cuda))
    assert choice.kind == "cuda" and choice.tag == tag
    assert choice.url == f"https://download.pytorch.org/whl/{tag}"
    assert f"CUDA {driver_cuda}" in choice.reason and tag in choice.reason


def test_no_gpu_means_cpu_wheels() -> None:
    inv = Inventory(gpus=(), source="none", problem="No NVIDIA GPU or driver found: libnvidia-ml.so.1 not found")
    choice = choose_torch(inv)
    assert (choice.kind, choice.tag, choice.url) == ("cpu", "cpu", CPU_INDEX)
    assert "libnvidia-ml" in choice.reason


def test_driver_too_old_names_the_driver_needed() -> None:
    with pytest.raises(DriverTooOldError) as caught:
        choose_torch(machine("11.4", driver="470.57"))
    text = str(caught.value)
    assert "470.57" in text and "CUDA 11.4" in text and "520.61.05" in text and CPU_INDEX in text


def test_cuda_version_guessed_from_the_driver_when_nvml_is_silent() -> None:
    assert cuda_from_driver("570.86.10") == (12, 8)
    assert cuda_from_driver("535.104") == (12, 1)
    assert cuda_from_driver("470.57") == (0, 0)
    assert cuda_from_driver(None) is None
    choice = choose_torch(machine(None, driver="560.35"))
    assert choice.tag == "cu126" and "from the driver version" in choice.reason


def test_unknown_driver_and_cuda_asks_for_a_flag() -> None:
    with pytest.raises(ConfigError, match=re.escape("--cuda X.Y")):
        choose_torch(machine(None, driver="unknown"))


def test_old_gpu_architectures_step_down() -> None:
    pascal = choose_torch(machine("13.0", cc="6.1"))
    assert pascal.tag == "cu126" and "compute capability" in pascal.reason and "6.1" in pascal.reason
    volta = choose_torch(machine("13.0", cc="7.0"))
    assert volta.tag == "cu129"
    assert choose_torch(machine("13.0", cc="8.6")).tag == "cu130"
    with pytest.raises(InstallError, match=re.escape("compute capability 3.7")):
        choose_torch(machine("12.4", cc="3.7"))


def test_cuda_override() -> None:
    forced = choose_torch(machine("12.8"), cuda="12.6")
    assert forced.tag == "cu126" and forced.reason.startswith("--cuda 12.6") and not forced.warnings
    too_new = choose_torch(machine("12.4"), cuda="cu130")
    assert too_new.tag == "cu130" and "580.65.06" in too_new.warnings[0]
    with pytest.raises(ConfigError, match=re.escape("choose one of 11.8, 12.1")):
        choose_torch(machine("12.8"), cuda="12.3")


def test_custom_index_and_local_folder(tmp_path: Any) -> None:
    remote = choose_torch(machine("12.4"), index_url="https://mirror.example/whl/cu130")
    assert remote.kind == "custom" and remote.tag == "cu130" and not remote.local and remote.warnings
    local = choose_torch(machine("12.4"), index_url=f"{tmp_path}/cu124")
    assert local.local and local.url == f"{tmp_path}/cu124" and local.tag == "cu124" and not local.warnings
    mirror = choose_torch(machine("12.4"), index_url="file:///srv/mirror/simple")
    assert not mirror.local and mirror.url == "file:///srv/mirror/simple"
    cpu_on_gpus = choose_torch(machine("12.4"), index_url=str(tmp_path / "cpu"))
    assert "CPU builds" in cpu_on_gpus.warnings[0]
    assert choose_torch(machine("12.4"), index_url=str(tmp_path / "wheels")).tag is None


def test_parsers_and_table_order() -> None:
    assert parse_cuda("12.8") == (12, 8) and parse_cuda("12.8.1") == (12, 8) and parse_cuda("cu130") == (13, 0)
    assert parse_cuda("banana") is None
    assert tag_of_cuda("12.8") == "cu128" and tag_of_cuda(None) == "cpu" and tag_of_cuda("11.8") == "cu118"
    assert index_tag("https://download.pytorch.org/whl/cu128/") == "cu128" and index_tag("/tmp/x") is None
    assert [i.cuda for i in CUDA_INDEXES] == sorted(i.cuda for i in CUDA_INDEXES)
    assert [i.tag for i in CUDA_INDEXES] == ["cu118", "cu121", "cu124", "cu126", "cu128", "cu129", "cu130"]
