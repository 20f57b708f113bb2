"""The fake's device: what torch would report, made up from flags and FAKE_COMFYUI_* knobs.

Real ComfyUI logs these facts while comfy/model_management.py is imported; `init()` logs the same
lines in the same order. Interruption (POST /interrupt) lives here too, as in the real module.
"""

from __future__ import annotations

import enum
import logging
import os
import threading
from dataclasses import dataclass
from typing import List, Optional

MIB = 1024 * 1024


class VRAMState(enum.Enum):
    DISABLED = 0
    NO_VRAM = 1
    LOW_VRAM = 2
    NORMAL_VRAM = 3
    HIGH_VRAM = 4
    SHARED = 5


class InterruptProcessingException(Exception):
    pass


_interrupt = threading.Event()


def interrupt_current_processing(value: bool = True) -> None:
    if value:
        _interrupt.set()
    else:
        _interrupt.clear()


def processing_interrupted() -> bool:
    return _interrupt.is_set()


def throw_exception_if_processing_interrupted() -> None:
    if _interrupt.is_set():
        _interrupt.clear()
        raise InterruptProcessingException()


def wait_interruptible(seconds: Optional[float]) -> None:
    """Sleep up to `seconds` (None: forever); raise InterruptProcessingException as soon as interrupted."""
    if _interrupt.wait(seconds):
        throw_exception_if_processing_interrupted()


def _meminfo_bytes(key: str) -> Optional[int]:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def ram_total() -> int:
    """bytes"""
    return _meminfo_bytes("MemTotal") or os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def ram_free() -> int:
    """bytes (what psutil calls available)"""
    return _meminfo_bytes("MemAvailable") or os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def visible_gpu_count(cuda_visible_devices: Optional[str], physical_count: int) -> int:
    """How many GPUs CUDA would show for this CUDA_VISIBLE_DEVICES (None: unset).

    Mirrors the CUDA runtime as measured (shared/COMFYUI-FACTS.md): entries are indices in range or
    'GPU-' UUIDs; the list is cut at the first invalid entry; a repeated index is a hard error.
    """
    if cuda_visible_devices is None:
        return physical_count
    seen = set()
    count = 0
    for entry in cuda_visible_devices.split(","):
        entry = entry.strip()
        if entry.isdigit() and int(entry) < physical_count:
            key = int(entry)
        elif entry.startswith("GPU-") and len(entry) > 4:
            key = entry
        else:
            break
        if key in seen:
            raise RuntimeError("CUDA error: invalid device ordinal (duplicate entry in CUDA_VISIBLE_DEVICES)")
        seen.add(key)
        count += 1
    return count


@dataclass(frozen=True)
class Device:
    type: str                    # "cuda" or "cpu"
    index: Optional[int]
    name: str                    # as get_torch_device_name(): "cuda:0 NAME : cudaMallocAsync" or "cpu"
    vram_total: int              # bytes
    visible_gpus: int            # what torch.cuda.device_count() would say
    cuda_visible_devices: Optional[str]  # the value torch saw (after --cuda-device / --default-device)


torch_version = "unset"
vram_state = VRAMState.NORMAL_VRAM
_device: Optional[Device] = None
_all_devices: List[Device] = []


def get_torch_device() -> Device:
    assert _device is not None, "model_management.init() was not called"
    return _device


def get_all_torch_devices() -> List[Device]:
    """Every device torch sees, the default one first. Like ComfyUI 0.23+ (model_management.py's
    get_all_torch_devices, used by /system_stats) with FAKE_COMFYUI_NATIVE_MULTIGPU=1; otherwise
    only the default device, which is all that ComfyUI 0.3.76's /system_stats shows."""
    assert _device is not None, "model_management.init() was not called"
    return list(_all_devices) or [_device]


def get_free_memory(device: Device) -> int:
    """bytes"""
    if device.type == "cpu":
        return ram_free()
    return device.vram_total - 512 * MIB  # the CUDA context's share on a real card


def init(args, knobs) -> Device:
    """Log ComfyUI's device lines; raise RuntimeError where real torch would fail at start."""
    global torch_version, vram_state, _device
    torch_version = knobs.torch_version
    logging.info("Checkpoint files will always be loaded safely.")
    if knobs.crash_at_start:
        raise RuntimeError("CUDA error: unspecified launch failure (simulated by FAKE_COMFYUI_CRASH_AT_START=1)")

    seen = os.environ.get("CUDA_VISIBLE_DEVICES")
    if args.cpu:
        # With --cpu ComfyUI never initialises CUDA, so a bad CUDA_VISIBLE_DEVICES goes unnoticed.
        try:
            gpus = visible_gpu_count(seen, knobs.gpu_count)
        except RuntimeError:
            gpus = 0
        device = Device("cpu", None, "cpu", ram_total(), gpus, seen)
    else:
        gpus = visible_gpu_count(seen, knobs.gpu_count)
        if gpus == 0:
            raise RuntimeError("No CUDA GPUs are available")
        allocator = "native" if args.disable_cuda_malloc else "cudaMallocAsync"
        device = Device("cuda", 0, f"cuda:0 {knobs.device_name} : {allocator}", knobs.vram_mb * MIB, gpus, seen)

    logging.info(f"Total VRAM {device.vram_total / MIB:0.0f} MB, total RAM {ram_total() / MIB:0.0f} MB")
    logging.info(f"pytorch version: {torch_version}")

    if args.cpu:
        vram_state = VRAMState.DISABLED
    elif args.lowvram:
        vram_state = VRAMState.LOW_VRAM
    elif args.novram:
        vram_state = VRAMState.NO_VRAM
    elif args.highvram or args.gpu_only:
        vram_state = VRAMState.HIGH_VRAM
    else:
        vram_state = VRAMState.NORMAL_VRAM
    logging.info(f"Set vram state to: {vram_state.name}")
    if args.disable_smart_memory:
        logging.info("Disabling smart memory management")
    logging.info(f"Device: {device.name}")

    if device.type == "cuda":
        streams = 0 if args.disable_async_offload else (args.async_offload or 2)
        if streams:
            logging.info(f"Using async weight offloading with {streams} streams")
        if not args.disable_pinned_memory:
            logging.info(f"Enabled pinned memory {ram_total() * 0.95 // MIB}")
    logging.info("Using pytorch attention")
    _device = device
    if knobs.native_multigpu and device.type == "cuda":
        allocator = device.name.rsplit(" : ", 1)[-1]
        _all_devices[:] = [device] + [
            Device("cuda", i, f"cuda:{i} {knobs.device_name} : {allocator}", device.vram_total, gpus, seen)
            for i in range(1, gpus)
        ]
    return device
