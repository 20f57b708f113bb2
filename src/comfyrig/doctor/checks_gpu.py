"""Checks of the driver, the GPUs, the selected mode, the device order and free VRAM."""

from __future__ import annotations

from ..comfy.vram import oom_advice
from ..config.modes import Selection
from ..host.gpus.inventory import Gpu
from .context import DoctorContext
from .result import CheckResult, Status

__all__ = ["check_device_order", "check_driver", "check_gpus", "check_mode", "check_vram"]

# The original guide's "GPU not detected" steps, in the order that narrows the cause.
NOT_DETECTED_STEPS = (
    "1) run nvidia-smi: it must list the GPUs (if not, install or reload the NVIDIA driver; reboot after a "
    "driver update; in a container, start it with --gpus all and the NVIDIA Container Toolkit); "
    "2) python -c 'import pynvml; pynvml.nvmlInit()' must not fail (NVML's libnvidia-ml.so.1 ships with the driver); "
    "3) comfyrig doctor --torch asks torch.cuda.is_available() in ComfyUI's interpreter."
)
_BUSY_FRACTION = 0.10  # more than this much of a GPU used before ComfyUI starts is worth a warning
_LOW_FREE_MIB = 4096


def _cpu_chosen(ctx: DoctorContext) -> bool:
    request = ctx.settings.gpu_request.value if ctx.settings is not None else None
    return request is not None and (request.kind == "cpu" or (request.kind == "visible" and not request.items))


def check_driver(ctx: DoctorContext) -> CheckResult:
    title = "NVIDIA driver"
    if ctx.inventory_error is not None:
        return CheckResult("gpu.driver", title, "fail", ctx.inventory_error.message, ctx.inventory_error.hint or NOT_DETECTED_STEPS)
    inv = ctx.inventory
    assert inv is not None  # gather sets one of inventory / inventory_error
    if inv.source == "none":
        if _cpu_chosen(ctx):
            return CheckResult("gpu.driver", title, "pass", f"{inv.problem} CPU mode was chosen, so none is needed.")
        return CheckResult("gpu.driver", title, "fail", inv.problem or "No NVIDIA driver found.", NOT_DETECTED_STEPS)
    version = f"driver {inv.driver_version or 'N/A'}" + (f", CUDA {inv.cuda_driver_version}" if inv.cuda_driver_version else "")
    if inv.source == "nvidia-smi":
        return CheckResult(
            "gpu.driver",
            title,
            "warn",
            f"NVML could not be loaded; nvidia-smi answered ({version}). {' '.join(inv.notes)}",
            "comfyrig monitor needs NVML: make libnvidia-ml.so.1 loadable (it ships with the driver; in a "
            "container use the NVIDIA Container Toolkit) and check that the nvidia-ml-py package is installed.",
        )
    via = "simulated (COMFYRIG_FAKE_GPUS)" if inv.source == "simulated" else "NVML"
    return CheckResult("gpu.driver", title, "pass", f"NVIDIA {version}, read through {via}.")


def _describe(gpu: Gpu) -> str:
    return f"{gpu.index}: {gpu.name} ({gpu.memory_total_gb:.1f} GiB)"


def check_gpus(ctx: DoctorContext) -> CheckResult:
    title = "GPUs"
    inv = ctx.inventory
    if inv is None or inv.source == "none":
        return CheckResult("gpu.devices", title, "skip", "No driver answered (see gpu.driver).")
    if not inv.gpus:
        status: Status = "pass" if _cpu_chosen(ctx) else "fail"
        return CheckResult(
            "gpu.devices",
            title,
            status,
            f"The NVIDIA driver {inv.driver_version or ''} answered but reports no GPU.".replace("  ", " "),
            None if status == "pass" else "Run nvidia-smi -L. " + NOT_DETECTED_STEPS,
        )
    mig = [g.index for g in inv.gpus if g.mig_uuids]
    extra = f" MIG is on for GPU {', '.join(map(str, mig))}: select a MIG- id, not the GPU." if mig else ""
    listing = "; ".join(_describe(g) for g in inv.gpus)
    return CheckResult("gpu.devices", title, "pass", f"{len(inv.gpus)} GPU{'s' if len(inv.gpus) != 1 else ''}: {listing}.{extra}")


def _selection_text(selection: Selection) -> str:
    if selection.is_cpu:
        return "CPU mode: every GPU hidden (CUDA_VISIBLE_DEVICES empty)"
    order = ", ".join(
        f"cuda:{n} = GPU {g.index}" for n, g in enumerate(selection.gpus)
    )
    return f"{selection.mode} mode: CUDA_VISIBLE_DEVICES={selection.cuda_visible_devices} ({order})"


def check_mode(ctx: DoctorContext) -> CheckResult:
    title = "GPU mode"
    if ctx.settings is None:
        return CheckResult("gpu.mode", title, "skip", "The settings could not be resolved (see config.settings).")
    source = ctx.settings.gpu_request.source
    if ctx.selection_error is not None:
        return CheckResult(
            "gpu.mode", title, "fail", f"{ctx.selection_error.message} (mode from {source})", ctx.selection_error.hint
            or "Run 'comfyrig gpus' to see the GPUs and their indices and UUIDs."
        )
    selection = ctx.selection
    if selection is None:
        return CheckResult("gpu.mode", title, "skip", "No GPU inventory (see gpu.driver).")
    message = f"{_selection_text(selection)}; mode from {source}."
    notes = " ".join(selection.notes)
    present = len(ctx.inventory.gpus) if ctx.inventory is not None else 0
    if selection.is_cpu and present and selection.request.kind == "visible":
        # The old launcher's "CPU only" was an empty CUDA_VISIBLE_DEVICES: easy to leave behind by accident.
        return CheckResult(
            "gpu.mode",
            title,
            "warn",
            f"CUDA_VISIBLE_DEVICES is empty ({source}), so ComfyUI runs on the CPU although this machine has "
            f"{present} GPU{'s' if present != 1 else ''}.",
            "Remove the empty CUDA_VISIBLE_DEVICES line, or choose --single N / --dual / --multi.",
        )
    return CheckResult("gpu.mode", title, "pass", f"{message} {notes}".strip())


def check_device_order(ctx: DoctorContext) -> CheckResult:
    title = "Device order"
    where = []
    if "CUDA_DEVICE_ORDER" in ctx.environ:
        where.append(("your environment", ctx.environ["CUDA_DEVICE_ORDER"]))
    settings = ctx.settings
    if settings is not None and "CUDA_DEVICE_ORDER" in settings.passthrough:
        src = settings.passthrough["CUDA_DEVICE_ORDER"]
        where.append((f".env ({src.source})", str(src.value)))
    ours = "comfyrig starts ComfyUI with CUDA_DEVICE_ORDER=PCI_BUS_ID, so cuda:N follows nvidia-smi's numbering"
    wrong = [(w, v) for w, v in where if v != "PCI_BUS_ID"]
    if not wrong:
        return CheckResult("gpu.device_order", title, "pass", f"{ours}.")
    gpus = ctx.inventory.gpus if ctx.inventory is not None else ()
    mixed = len({g.name for g in gpus}) > 1
    found = "; ".join(f"{w} sets {v!r}" for w, v in wrong)
    problems = []
    if any(v not in ("PCI_BUS_ID", "FASTEST_FIRST") for _, v in wrong):
        problems.append("CUDA knows only PCI_BUS_ID and FASTEST_FIRST")
    if mixed:
        problems.append(
            "with these different GPUs, fastest-first numbering differs from nvidia-smi's, so anything started by "
            "hand from this shell (python -c 'import torch', scripts) names other GPUs than comfyrig does"
        )
    else:
        problems.append("tools started by hand from this shell may number the GPUs differently from nvidia-smi")
    return CheckResult(
        "gpu.device_order",
        title,
        "warn",
        f"{found}: {'; '.join(problems)}. {ours} (the .env value is overridden).",
        "Remove CUDA_DEVICE_ORDER there, or set it to PCI_BUS_ID.",
    )


def check_vram(ctx: DoctorContext) -> CheckResult:
    title = "Free VRAM"
    selection = ctx.selection
    if selection is None or selection.is_cpu:
        return CheckResult("gpu.vram", title, "skip", "No GPU selected.")
    advice = oom_advice(ctx.comfy_args, version=ctx.version, several_gpus=len(selection.gpus) > 1,
                        native_multigpu=ctx.checkout.native if ctx.checkout is not None else None)
    busy, parts = [], []
    for gpu in selection.gpus:
        free = f"GPU {gpu.index}: {gpu.memory_free_mib / 1024:.1f} of {gpu.memory_total_gb:.1f} GiB free"
        if gpu.processes:
            who = ", ".join(
                f"pid {p.pid}{f' {p.name}' if p.name else ''} ({p.used_memory_mib if p.used_memory_mib is not None else '?'} MiB)"
                for p in gpu.processes
            )
            free += f", used by {who}"
        parts.append(free)
        if gpu.memory_used_mib > gpu.memory_total_mib * _BUSY_FRACTION or gpu.memory_free_mib < _LOW_FREE_MIB:
            busy.append(gpu.index)
    message = "; ".join(parts) + "."
    if busy:
        listed = ", ".join(map(str, busy))
        return CheckResult(
            "gpu.vram",
            title,
            "warn",
            f"GPU {listed} {'is' if len(busy) == 1 else 'are'} already busy. {message}",
            "Stop what runs there (see the pids), or select other GPUs. " + advice,
        )
    return CheckResult("gpu.vram", title, "pass", message, advice)
