"""Checks of what can use the GPUs after the first: ComfyUI's own multi-GPU nodes (0.23+), the
conditions of their CFG split, and what a running ComfyUI registered and lists.

ComfyUI-MultiGPU's presence and compatibility is ``checks_comfyui.check_multigpu`` (multigpu.pack).
"""

from __future__ import annotations

from ..comfy.multigpu import NATIVE_NODES, NATIVE_SINCE, MultiGpuFinding, cfg_split_lines, device_lines, gpu_map, judge
from .context import DoctorContext
from .result import CheckResult

__all__ = ["check_cfg_split", "check_multigpu_native", "check_multigpu_running"]

_NOT_MULTI = "Not dual/multi mode: with one GPU per ComfyUI there is nothing to split."


def _update_fix(ctx: DoctorContext) -> str:
    where = f" in {ctx.comfyui_dir}" if ctx.comfyui_dir is not None else ""
    return (f"Update ComfyUI to {NATIVE_SINCE} or newer (git pull{where}, or 'comfyrig install --ref v0.24.0'), install "
            "ComfyUI-MultiGPU ('comfyrig nodes add multigpu'), or run 'comfyrig launch --workers' for one ComfyUI per "
            "GPU (throughput).")


def check_multigpu_native(ctx: DoctorContext) -> CheckResult:
    """Does the checkout have ComfyUI's own multi-GPU nodes (comfy_extras/nodes_multigpu.py)?"""
    title = "Native multi-GPU"
    selection = ctx.selection
    if selection is None or len(selection.gpus) < 2:
        return CheckResult("multigpu.native", title, "skip", _NOT_MULTI)
    checkout = ctx.checkout
    if checkout is None:
        return CheckResult("multigpu.native", title, "skip", "No ComfyUI checkout to read (see comfyui.dir).")
    if checkout.native:
        return CheckResult(
            "multigpu.native", title, "pass",
            f"{checkout.who} has native multi-GPU nodes (comfy_extras/nodes_multigpu.py): MultiGPU CFG Split puts a copy "
            "of the model on each GPU and splits every sampling step's conditionings between them (faster only with "
            "CFG > 1, on identical GPUs); Select Model Device, Select CLIP Device and Select VAE Device put a model, "
            f"text encoder or VAE on gpu:N ({gpu_map(selection.gpus)}).",
            "In a workflow: MultiGPU CFG Split after the model loader (and after nodes that patch the model), "
            f"max_gpus {len(selection.gpus)}; or Select ... Device between a loader and the nodes that use it.",
        )
    missing = f"{checkout.who} has no native multi-GPU nodes (they came with ComfyUI {NATIVE_SINCE})"
    if checkout.pack_enabled:
        return CheckResult("multigpu.native", title, "pass",
                           f"{missing}; ComfyUI-MultiGPU in custom_nodes is what can use the other GPUs here "
                           "(whether it loads in this ComfyUI: see multigpu.pack).")
    others = ", ".join(f"GPU {g.index}" for g in selection.gpus[1:])
    return CheckResult(
        "multigpu.native", title, "warn",
        f"{missing}, and ComfyUI-MultiGPU is not enabled either: in {selection.mode} mode ComfyUI computes only on "
        f"cuda:0 (GPU {selection.gpus[0].index}) and {others} {'stays' if len(selection.gpus) == 2 else 'stay'} idle.",
        _update_fix(ctx),
    )


def check_cfg_split(ctx: DoctorContext) -> CheckResult:
    """MultiGPU CFG Split's conditions against the selected GPUs (NVML's names, memory, compute capability)."""
    title = "CFG split GPUs"
    selection = ctx.selection
    if selection is None or len(selection.gpus) < 2:
        return CheckResult("multigpu.cfg_split", title, "skip", _NOT_MULTI)
    checkout = ctx.checkout
    if checkout is None:
        return CheckResult("multigpu.cfg_split", title, "skip",
                           "No ComfyUI checkout was read, so whether it has MultiGPU CFG Split is unknown (see comfyui.dir).")
    if not checkout.native:
        return CheckResult("multigpu.cfg_split", title, "skip", f"{checkout.who} has no MultiGPU CFG Split (see multigpu.native).")
    lines = cfg_split_lines(selection.gpus)
    message = " ".join(line.text.removeprefix("CFG split: ") for line in lines)
    if any(line.level == "warn" for line in lines):
        return CheckResult(
            "multigpu.cfg_split", title, "warn", message,
            "For CFG split, select identical GPUs, Ampere or newer (--gpus A,B picks which); Select Model/CLIP/VAE Device "
            "works with any GPUs; for throughput on many jobs, 'comfyrig launch --workers' runs one ComfyUI per GPU.",
        )
    return CheckResult("multigpu.cfg_split", title, "pass", message)


def check_multigpu_running(ctx: DoctorContext) -> CheckResult:
    """What the ComfyUI answering at the configured address registered and lists, against the selection."""
    title = "Running multi-GPU"
    selection = ctx.selection
    if selection is None or len(selection.gpus) < 2:
        return CheckResult("multigpu.running", title, "skip", _NOT_MULTI)
    http = ctx.http
    if http is None or http.stats is None:
        url = f" at {http.url}" if http is not None else ""
        return CheckResult("multigpu.running", title, "skip", f"No ComfyUI answers{url} (see comfyui.running).")
    finding = http.multigpu
    if finding is None:
        return CheckResult("multigpu.running", title, "warn",
                           f"The ComfyUI at {http.url} answers, but its /object_info could not be read: {http.multigpu_error}",
                           "A ComfyUI with many node packs answers /object_info slowly; run doctor again once it is idle.")
    devices = device_lines(finding, selection.gpus)
    if finding.native:
        pack = f" and {len(finding.pack)} ComfyUI-MultiGPU nodes" if finding.pack else ""
        nodes = f"{_who(finding)} registered its native multi-GPU nodes ({_titles(finding.native)}){pack}."
    elif finding.pack:
        nodes = f"{_who(finding)} registered {len(finding.pack)} ComfyUI-MultiGPU nodes and no native ones."
    else:
        nodes = judge(finding, selection.gpus).lines[0].text  # the "no multi-GPU nodes" warning
    message = f"The ComfyUI at {http.url}: " + " ".join([nodes, *(line.text for line in devices)])
    if any(line.level == "warn" for line in devices):
        fix = (f"That ComfyUI sees other devices than this selection ({selection.cuda_visible_devices}): start it "
               "through 'comfyrig launch' with this selection, and keep --cpu, --cuda-device and --default-device "
               "out of its flags.")
        return CheckResult("multigpu.running", title, "warn", message, fix)
    if not finding.native and not finding.pack:
        return CheckResult("multigpu.running", title, "warn", message, _update_fix(ctx))
    return CheckResult("multigpu.running", title, "pass", message)


def _who(finding: MultiGpuFinding) -> str:
    return f"ComfyUI {finding.version}" if finding.version else "It"


def _titles(names: tuple[str, ...]) -> str:
    titles = {n.name: n.title for n in NATIVE_NODES}
    return ", ".join(titles.get(n, n) for n in names)
