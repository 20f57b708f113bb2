"""Checks of PyTorch in ComfyUI's interpreter, from the torch child's JSON answer.

The child ran under the CUDA_VISIBLE_DEVICES and CUDA_DEVICE_ORDER ComfyUI
will get, so "device count" means what ComfyUI will see.
"""

from __future__ import annotations

import re

from .context import DoctorContext
from .result import CheckResult

__all__ = ["check_torch_build", "check_torch_cuda_version", "check_torch_devices", "check_torch_import", "parse_version"]


def parse_version(text: object) -> tuple[int, int] | None:
    """"2.9.1+cu128" / "12.8" -> (major, minor); None when there is no version."""
    match = re.match(r"(\d+)\.(\d+)", str(text or ""))
    return (int(match.group(1)), int(match.group(2))) if match else None


def _skip_reason(ctx: DoctorContext) -> str | None:
    """Why a check that needs torch's answer cannot run (check_torch_import gives the details)."""
    if ctx.torch is None:
        return "Not checked (see torch.import)."
    if ctx.torch.get("torch_version") is None:
        return "torch is not usable (see torch.import)."
    return None


def check_torch_import(ctx: DoctorContext) -> CheckResult:
    title = "torch"
    raw = ctx.torch
    if raw is None:
        return CheckResult("torch.import", title, "skip", f"Torch check {ctx.torch_note}.")
    python = ctx.settings.python.value if ctx.settings is not None else "?"
    if raw.get("torch_version") is None:
        return CheckResult(
            "torch.import", title, "fail", f"{python}: {raw.get('error', 'no answer')}.",
            f"Install ComfyUI's requirements into that interpreter: {python} -m pip install -r requirements.txt "
            "(in the ComfyUI directory), with the torch build for your CUDA driver.",
        )
    return CheckResult(
        "torch.import", title, "pass",
        f"torch {raw['torch_version']} in {python} (Python {raw.get('python', '?')}); torch check {ctx.torch_note}.",
    )


def check_torch_build(ctx: DoctorContext) -> CheckResult:
    title = "torch build"
    skip = _skip_reason(ctx)
    if skip:
        return CheckResult("torch.build", title, "skip", skip)
    assert ctx.torch is not None
    cuda = ctx.torch.get("cuda_version")
    if cuda:
        return CheckResult("torch.build", title, "pass", f"A CUDA build (CUDA {cuda}).")
    selected = ctx.selection is not None and not ctx.selection.is_cpu
    if not selected:
        return CheckResult("torch.build", title, "pass", "A CPU-only build; fine for CPU mode.")
    driver = ctx.inventory.cuda_driver_version if ctx.inventory is not None else None
    newest = f" not newer than the driver's CUDA {driver}" if driver else ""
    return CheckResult(
        "torch.build", title, "fail",
        f"torch {ctx.torch['torch_version']} is a CPU-only build, so ComfyUI cannot use the selected GPUs.",
        "Reinstall torch from a CUDA index in ComfyUI's interpreter: python -m pip install --force-reinstall torch "
        f"torchvision torchaudio --index-url https://download.pytorch.org/whl/cuXXX, with a CUDA version{newest} "
        "(see pytorch.org/get-started).",
    )


def check_torch_devices(ctx: DoctorContext) -> CheckResult:
    title = "torch devices"
    skip = _skip_reason(ctx)
    if skip:
        return CheckResult("torch.devices", title, "skip", skip)
    assert ctx.torch is not None
    selection = ctx.selection
    if selection is None or selection.is_cpu:
        return CheckResult("torch.devices", title, "skip", "CPU mode: torch is not meant to see a GPU.")
    if not ctx.torch.get("cuda_version"):
        return CheckResult("torch.devices", title, "skip", "A CPU-only torch (see torch.build).")
    cvd = f"CUDA_VISIBLE_DEVICES={selection.cuda_visible_devices}"
    if ctx.torch.get("error"):
        return CheckResult("torch.devices", title, "fail", f"Under {cvd}: {ctx.torch['error']}.", "Run nvidia-smi; see torch.cuda_version.")
    if not ctx.torch.get("cuda_available"):
        return CheckResult(
            "torch.devices", title, "fail",
            f"torch.cuda.is_available() is False under {cvd}.",
            "Most often the driver is older than this torch's CUDA (see torch.cuda_version), or the driver is not "
            "loaded (nvidia-smi fails).",
        )
    count = ctx.torch.get("device_count")
    devices = list(ctx.torch.get("devices") or [])
    if count != len(selection.gpus):
        return CheckResult(
            "torch.devices", title, "fail",
            f"torch sees {count} device(s) under {cvd}, but {len(selection.gpus)} were selected.",
            "Run 'comfyrig gpus --torch-check'; a CUDA_VISIBLE_DEVICES entry CUDA cannot use cuts the list there.",
        )
    # strict=False: the counts may differ, which another check reports
    for n, (gpu, dev) in enumerate(zip(selection.gpus, devices, strict=False)):
        uuid = str(dev.get("uuid") or "").removeprefix("GPU-")
        if uuid and uuid != gpu.uuid.removeprefix("GPU-"):
            return CheckResult(
                "torch.devices", title, "fail",
                f"torch's cuda:{n} is not GPU {gpu.index} ({gpu.uuid}) but GPU-{uuid}: CUDA numbers the GPUs in another order.",
                "Set CUDA_DEVICE_ORDER=PCI_BUS_ID (comfyrig does this for ComfyUI) or select GPUs by UUID.",
            )
    names = ", ".join(f"cuda:{n} {d.get('name', '?')}" for n, d in enumerate(devices))
    return CheckResult("torch.devices", title, "pass", f"torch sees the {count} selected device(s): {names}.")


def check_torch_cuda_version(ctx: DoctorContext) -> CheckResult:
    title = "torch vs driver"
    skip = _skip_reason(ctx)
    if skip:
        return CheckResult("torch.cuda_version", title, "skip", skip)
    assert ctx.torch is not None
    torch_cuda = ctx.torch.get("cuda_version")
    driver_cuda = ctx.inventory.cuda_driver_version if ctx.inventory is not None else None
    if not torch_cuda:
        return CheckResult("torch.cuda_version", title, "skip", "A CPU-only torch (see torch.build).")
    need, have = parse_version(torch_cuda), parse_version(driver_cuda)
    if need is None or have is None:
        return CheckResult("torch.cuda_version", title, "skip", "The driver did not report its CUDA version.")
    fix = (
        f"Update the NVIDIA driver to one for CUDA {torch_cuda} or newer, or install a torch built for CUDA "
        f"{driver_cuda} or older."
    )
    if have[0] < need[0]:
        return CheckResult(
            "torch.cuda_version", title, "fail",
            f"torch is built for CUDA {torch_cuda}, but the driver supports at most CUDA {driver_cuda}: CUDA will not start.",
            fix,
        )
    if have < need:
        return CheckResult(
            "torch.cuda_version", title, "warn",
            f"torch is built for CUDA {torch_cuda}; the driver supports CUDA {driver_cuda}. Within one major version "
            "this often runs (minor-version compatibility), but kernels that need a newer driver fail at run time.",
            fix,
        )
    return CheckResult("torch.cuda_version", title, "pass", f"torch's CUDA {torch_cuda} <= the driver's CUDA {driver_cuda}.")
