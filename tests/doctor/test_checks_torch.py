"""The torch checks, with a fake interpreter that answers in milliseconds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from comfyrig.config.settings import CliOverrides
from comfyrig.doctor.checks_torch import (
    check_torch_build,
    check_torch_cuda_version,
    check_torch_devices,
    check_torch_import,
)
from comfyrig.doctor.context import DoctorContext
from comfyrig.doctor.runner import run_checks
from tests.conftest import TWO_3090
from tests.doctor.conftest import comfy_tree, fake_python, inventory, make_ctx

CUDA_TORCH = {"python": "3.12.3", "torch_version": "2.9.1+cu128", "cuda_version": "12.8", "cuda_available": True,
              "device_count": 2, "devices": [{"name": "NVIDIA GeForce RTX 3090", "memory_total_mib": 24576, "uuid": ""}] * 2}


def ctx(tmp_path: Path, answer: dict[str, Any] | None = None, cli: CliOverrides | None = None, **kw: Any) -> DoctorContext:
    python = fake_python(tmp_path, answer)
    base = cli or CliOverrides(dual=True)
    cli = CliOverrides(**{**base.__dict__, "python": str(python)})
    return make_ctx(tmp_path, cli, torch=kw.pop("torch", True), **kw)


def statuses(c: DoctorContext) -> list[str]:
    return [check(c).status for check in (check_torch_import, check_torch_build, check_torch_devices, check_torch_cuda_version)]


def test_child_gets_the_selection_and_comfyuis_environment(tmp_path: Path) -> None:
    c = ctx(tmp_path, cli=CliOverrides(gpus="1,0"), environ={"PYTORCH_ALLOC_CONF": "expandable_segments:True"})
    assert c.torch is not None
    assert c.torch["seen_env"] == {
        "CUDA_VISIBLE_DEVICES": "1,0", "CUDA_DEVICE_ORDER": "PCI_BUS_ID", "PYTORCH_ALLOC_CONF": "expandable_segments:True",
    }


def test_good_cuda_torch(tmp_path: Path) -> None:
    c = ctx(tmp_path)  # the fake sees exactly the GPUs in CUDA_VISIBLE_DEVICES
    assert statuses(c) == ["pass", "pass", "pass", "warn"]  # cu128 on a driver for CUDA 12.4
    assert check_torch_import(c).message.startswith("torch 2.9.1+cu128 in ")
    assert check_torch_devices(c).message == (
        "torch sees the 2 selected device(s): cuda:0 NVIDIA GeForce RTX 3090, cuda:1 NVIDIA GeForce RTX 3090."
    )


def test_driver_cuda_versions(tmp_path: Path) -> None:
    data = json.loads(json.dumps(TWO_3090))
    data["cuda_driver_version"] = "12.8"
    assert check_torch_cuda_version(ctx(tmp_path, inv=inventory(data))).status == "pass"
    data["cuda_driver_version"] = "11.8"
    old = check_torch_cuda_version(ctx(tmp_path, inv=inventory(data)))
    assert old.status == "fail" and "supports at most CUDA 11.8" in old.message


def test_cpu_only_build_with_gpus_fails(tmp_path: Path) -> None:
    answer = {"python": "3.12.3", "torch_version": "2.9.1+cpu", "cuda_version": None, "cuda_available": False, "device_count": 0}
    c = ctx(tmp_path, answer)
    build = check_torch_build(c)
    assert build.status == "fail" and "CPU-only build" in build.message
    assert "not newer than the driver's CUDA 12.4" in (build.fix or "")
    assert statuses(c)[2:] == ["skip", "skip"]
    assert check_torch_build(ctx(tmp_path, answer, CliOverrides(cpu=True))).status == "pass"


def test_cuda_not_available(tmp_path: Path) -> None:
    answer = {**CUDA_TORCH, "cuda_available": False, "device_count": 0, "devices": []}
    result = check_torch_devices(ctx(tmp_path, answer))
    assert result.status == "fail" and result.message == "torch.cuda.is_available() is False under CUDA_VISIBLE_DEVICES=0,1."


def test_fewer_devices_than_selected(tmp_path: Path) -> None:
    answer = {**CUDA_TORCH, "device_count": 1, "devices": CUDA_TORCH["devices"][:1]}
    result = check_torch_devices(ctx(tmp_path, answer))
    assert result.status == "fail" and "torch sees 1 device(s) under CUDA_VISIBLE_DEVICES=0,1, but 2 were selected" in result.message


def test_devices_in_another_order(tmp_path: Path) -> None:
    devices = [{"name": "RTX 3090", "uuid": "5a5a5a5a-0000-4000-8000-000000000001"},
               {"name": "RTX 3090", "uuid": "5a5a5a5a-0000-4000-8000-000000000000"}]
    result = check_torch_devices(ctx(tmp_path, {**CUDA_TORCH, "devices": devices}))
    assert result.status == "fail" and "torch's cuda:0 is not GPU 0" in result.message


def test_torch_not_importable(tmp_path: Path) -> None:
    c = ctx(tmp_path, {"python": "3.12.3", "error": "torch is not importable: ModuleNotFoundError: No module named 'torch'"})
    result = check_torch_import(c)
    assert result.status == "fail" and "No module named 'torch'" in result.message
    assert "-m pip install -r requirements.txt" in (result.fix or "")
    assert statuses(c)[1:] == ["skip", "skip", "skip"]


def test_interpreter_that_cannot_run(tmp_path: Path) -> None:
    python = tmp_path / "python"
    python.write_text("not a program")  # exists, not executable
    c = make_ctx(tmp_path, CliOverrides(dual=True, python=str(python)), torch=True)
    result = check_torch_import(c)
    assert result.status == "fail" and "cannot be run: Permission denied" in result.message


def test_when_the_torch_check_runs(tmp_path: Path) -> None:
    comfy = comfy_tree(tmp_path / "ComfyUI")
    # No ComfyUI interpreter: off by default.
    assert make_ctx(tmp_path, CliOverrides(comfyui_dir=comfy), torch=None).torch is None
    fake_python(comfy)  # ComfyUI/venv/bin/python now exists
    real = inventory()
    found = make_ctx(tmp_path, CliOverrides(comfyui_dir=comfy), torch=None, inv=real)
    # ... but simulated GPUs keep it off, since real torch would only report mismatches.
    assert found.torch is None and "simulated" in found.torch_note
    assert make_ctx(tmp_path, CliOverrides(comfyui_dir=comfy), torch=True).torch is not None
    off = make_ctx(tmp_path, CliOverrides(comfyui_dir=comfy), torch=False)
    assert off.torch is None and check_torch_import(off).message == "Torch check skipped (--no-torch)."


def test_on_by_default_with_a_real_inventory_and_an_interpreter(tmp_path: Path) -> None:
    from dataclasses import replace

    comfy = comfy_tree(tmp_path / "ComfyUI")
    fake_python(comfy)
    hardware = replace(inventory(), source="nvml")
    c = make_ctx(tmp_path, CliOverrides(comfyui_dir=comfy), torch=None, inv=hardware)
    assert c.torch is not None and c.torch_note.startswith("on by default: ComfyUI's interpreter")
    assert [r.status for r in run_checks(c) if r.id.startswith("torch.")] == ["pass", "pass", "pass", "warn"]
