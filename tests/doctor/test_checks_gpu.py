from __future__ import annotations

import json
from pathlib import Path

from comfyrig.config.settings import CliOverrides
from comfyrig.doctor.checks_gpu import check_device_order, check_driver, check_gpus, check_mode, check_vram
from comfyrig.doctor.context import DoctorContext
from comfyrig.errors import GpuProbeError
from comfyrig.host.gpus.inventory import Inventory
from tests.conftest import TWO_3090
from tests.doctor.conftest import comfy_tree, inventory, make_ctx

NO_DRIVER = Inventory(gpus=(), source="none", problem="No NVIDIA GPU or driver found: NVML could not start: Driver Not Loaded, and nvidia-smi is not on PATH.")


def test_driver_pass_names_version_and_source(tmp_path: Path) -> None:
    result = check_driver(make_ctx(tmp_path))
    assert result.status == "pass"
    assert result.message == "NVIDIA driver 550.54, CUDA 12.4, read through simulated (COMFYRIG_FAKE_GPUS)."


def test_no_driver_fails_with_the_gpu_not_detected_steps(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, inv=NO_DRIVER)
    driver, gpus = check_driver(ctx), check_gpus(ctx)
    assert driver.status == "fail" and "Driver Not Loaded" in driver.message
    assert driver.fix is not None
    for step in ("nvidia-smi", "pynvml.nvmlInit()", "torch.cuda.is_available()"):
        assert step in driver.fix
    assert gpus.status == "skip"


def test_no_driver_is_fine_in_cpu_mode(tmp_path: Path) -> None:
    assert check_driver(make_ctx(tmp_path, CliOverrides(cpu=True), inv=NO_DRIVER)).status == "pass"


def test_nvidia_smi_fallback_warns_about_nvml(tmp_path: Path) -> None:
    inv = Inventory(gpus=inventory().gpus, source="nvidia-smi", driver_version="550.54",
                    notes=("NVML unavailable (libnvidia-ml.so.1 not found); used nvidia-smi instead.",))
    result = check_driver(make_ctx(tmp_path, inv=inv))
    assert result.status == "warn" and "libnvidia-ml.so.1" in result.message


def test_driver_error_fails(tmp_path: Path) -> None:
    def broken(_fake: str | None) -> Inventory:
        raise GpuProbeError("nvidia-smi failed (exit 9): NVIDIA-SMI has failed.", hint="Check the driver.")

    ctx = make_ctx(tmp_path, inv=broken)
    result = check_driver(ctx)
    assert (result.status, result.fix) == ("fail", "Check the driver.")
    assert check_mode(ctx).status == "skip"


def test_gpus_listed_and_zero_gpus_fail(tmp_path: Path) -> None:
    assert check_gpus(make_ctx(tmp_path)).message == (
        "2 GPUs: 0: NVIDIA GeForce RTX 3090 (24.0 GiB); 1: NVIDIA GeForce RTX 3090 (24.0 GiB)."
    )
    empty = check_gpus(make_ctx(tmp_path, inv=inventory({"driver_version": "550.54", "gpus": []})))
    assert empty.status == "fail" and "reports no GPU" in empty.message


def test_mig_is_mentioned(tmp_path: Path) -> None:
    data = json.loads(json.dumps(TWO_3090))
    data["gpus"][1]["mig_uuids"] = ["MIG-aaaa"]
    assert "MIG is on for GPU 1" in check_gpus(make_ctx(tmp_path, inv=inventory(data))).message


def test_mode_valid(tmp_path: Path) -> None:
    result = check_mode(make_ctx(tmp_path, CliOverrides(gpus="1,0")))
    assert result.status == "pass"
    assert result.message == "dual mode: CUDA_VISIBLE_DEVICES=1,0 (cuda:0 = GPU 1, cuda:1 = GPU 0); mode from cli."


def test_mode_from_env_file_line(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("# GPUs\nCUDA_VISIBLE_DEVICES=1\n")
    assert check_mode(make_ctx(tmp_path)).message.endswith("mode from .env:2.")


def test_mode_errors_fail(tmp_path: Path) -> None:
    cases = {
        CliOverrides(single=5): "there is no GPU 5",
        CliOverrides(gpus="0,0"): "names the same GPU twice",
        CliOverrides(gpus="GPU-deadbeef"): "no GPU has the UUID",
        CliOverrides(gpus="gpu-5a5a5a5a"): "not a GPU index",
    }
    for cli, text in cases.items():
        result = check_mode(make_ctx(tmp_path, cli))
        assert result.status == "fail" and text in result.message, (cli, result)


def test_empty_cuda_visible_devices_with_gpus_warns(tmp_path: Path) -> None:
    result = check_mode(make_ctx(tmp_path, environ={"CUDA_VISIBLE_DEVICES": ""}))
    assert result.status == "warn" and "runs on the CPU although this machine has 2 GPUs" in result.message


def test_device_order(tmp_path: Path) -> None:
    assert check_device_order(make_ctx(tmp_path)).status == "pass"
    fastest = check_device_order(make_ctx(tmp_path, environ={"CUDA_DEVICE_ORDER": "FASTEST_FIRST"}))
    assert fastest.status == "warn" and "your environment sets 'FASTEST_FIRST'" in fastest.message
    (tmp_path / ".env").write_text("CUDA_DEVICE_ORDER=PCI\n")
    bogus = check_device_order(make_ctx(tmp_path))
    assert bogus.status == "warn" and "CUDA knows only PCI_BUS_ID and FASTEST_FIRST" in bogus.message
    assert ".env (.env:1) sets 'PCI'" in bogus.message


def test_device_order_with_mixed_gpus_explains_the_renumbering(tmp_path: Path) -> None:
    data = json.loads(json.dumps(TWO_3090))
    data["gpus"][1]["name"] = "NVIDIA GeForce RTX 4090"
    result = check_device_order(make_ctx(tmp_path, environ={"CUDA_DEVICE_ORDER": "FASTEST_FIRST"}, inv=inventory(data)))
    assert "fastest-first numbering differs from nvidia-smi's" in result.message


def test_vram_busy_gpu_names_the_process(tmp_path: Path) -> None:
    data = json.loads(json.dumps(TWO_3090))
    data["gpus"][0]["processes"][0]["name"] = "python3"
    result = check_vram(make_ctx(tmp_path, CliOverrides(dual=True), inv=inventory(data)))
    assert result.status == "warn"
    assert result.message == (
        "GPU 0 is already busy. GPU 0: 12.0 of 24.0 GiB free, used by pid 4242 python3 (12000 MiB); "
        "GPU 1: 24.0 of 24.0 GiB free."
    )


def test_vram_free_gives_comfyui_oom_advice_never_medvram(tmp_path: Path) -> None:
    comfy = comfy_tree(tmp_path / "ComfyUI", flags=("--lowvram", "--novram", "--reserve-vram", "--listen", "--port"))
    result = check_vram(make_ctx(tmp_path, CliOverrides(single=1, comfyui_dir=comfy)))
    assert result.status == "pass" and result.message == "GPU 1: 24.0 of 24.0 GiB free."
    assert result.fix is not None
    # Only flags this ComfyUI has: its cli_args.py lacks --disable-smart-memory.
    assert "--reserve-vram GB, --lowvram, --novram in COMFYUI_ARGS" in result.fix
    assert "--disable-smart-memory" not in result.fix
    assert "Not --medvram" in result.fix and "DisTorch" not in result.fix


def test_vram_skipped_in_cpu_mode(tmp_path: Path) -> None:
    assert check_vram(make_ctx(tmp_path, CliOverrides(cpu=True))).status == "skip"


def test_checks_are_pure_functions_of_the_context(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    assert isinstance(ctx, DoctorContext)
    assert check_mode(ctx) == check_mode(ctx)


def test_vram_advice_under_dynamic_vram_never_names_lowvram(tmp_path: Path) -> None:
    comfy = comfy_tree(tmp_path / "ComfyUI", version="0.24.0", flags=None, cli_version="0.24.0", native=True)
    result = check_vram(make_ctx(tmp_path, CliOverrides(dual=True, comfyui_dir=comfy)))
    assert result.fix is not None
    assert "--reserve-vram GB, --disable-smart-memory in COMFYUI_ARGS; --novram as a last resort" in result.fix
    assert "Not --lowvram: ComfyUI 0.24.0 loads models with dynamic VRAM" in result.fix
    assert "Select CLIP Device" in result.fix and "ComfyUI-MultiGPU" not in result.fix
    # With dynamic VRAM turned off, --lowvram acts again and is advised.
    off = check_vram(make_ctx(tmp_path, CliOverrides(dual=True, comfyui_dir=comfy, extra_args=("--disable-dynamic-vram",))))
    assert off.fix is not None and "--reserve-vram GB, --lowvram, --novram, --disable-smart-memory" in off.fix
    assert "Not --lowvram" not in off.fix
