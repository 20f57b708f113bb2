"""Pure fit planning: analysed models + GPUs + RAM -> where every component goes.

Sizes are bytes; "GiB" is 2**30 bytes, the unit ComfyUI and DisTorch print as
"GB" and the one DisTorch's ``gb`` suffix means. The verdicts, in order of
preference (each is tried only when the one before does not fit):

1. ``single``: everything on the GPU with the most free memory, plus the
   working-memory reserve. When only the diffusion model fits beside the
   reserve, the text encoder and VAE take turns with it (ComfyUI's own
   swapping), still on one GPU.
2. ``multi``: components on different GPUs (text encoder on a second GPU
   with ``CLIPLoaderMultiGPU``), and when the diffusion model alone is too big
   for one GPU, its blocks split across GPUs by DisTorch2.
3. ``offload``: the GPUs hold what they can; the rest of the diffusion model
   stays in system RAM (DisTorch ``cpu,*``, or plain ComfyUI's own offloading: dynamic VRAM, ``--lowvram`` before it).
4. ``too_big``: not even RAM is enough; the plan says by how much.
5. ``cpu`` (only with ``--cpu``): everything in RAM, computed on the CPU.

Memory a GPU must keep besides weights: the compute GPU keeps ``reserve``
(CUDA context + ComfyUI's inference memory, see ``default_reserve``); when
DisTorch splits the model it also keeps room for two of its largest modules
(the one being streamed in and one "orphan" DisTorch may leave there) plus the
modules under its 0.01 % threshold, which never move; a GPU that only runs a
text encoder or VAE keeps ComfyUI's minimum inference memory; a GPU that only
lends memory to DisTorch keeps the CUDA context.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from ..comfy.vram import VramFacts, plain_offload
from ..config.modes import ModeLabel
from ..errors import SelectionError
from ..host.gpus.inventory import Gpu
from .components import FAMILIES, Component, Family, ModelInfo

__all__ = [
    "AUX_WORKING",
    "CUDA_CONTEXT",
    "GIB",
    "WORKING",
    "CfgSplit",
    "DisTorchPlan",
    "FitPlan",
    "Ledger",
    "NativePlan",
    "PartPlacement",
    "Reserve",
    "Share",
    "Verdict",
    "comfy_reserve_vram",
    "default_reserve",
    "format_gib",
    "native_device",
    "plan_fit",
    "unused_reason",
]

GIB = 1 << 30
MIB = 1 << 20
# Not visible in NVML's "free" before ComfyUI starts: the CUDA context and
# cuBLAS workspace of the process, per GPU it touches.
CUDA_CONTEXT = 512 * MIB
# comfy/model_management.py: minimum_inference_memory() = 0.8 GiB + EXTRA_RESERVED_VRAM (400 MiB on Linux).
COMFY_MIN_INFERENCE = int(0.8 * GIB)
COMFY_EXTRA_RESERVED = 400 * MIB
AUX_RESERVE = CUDA_CONTEXT + COMFY_MIN_INFERENCE + COMFY_EXTRA_RESERVED
# Ledger item names that later steps (native.py) look for.
AUX_WORKING = "ComfyUI inference memory (text encoder/VAE)"
WORKING = "working memory (reserve)"

Verdict = Literal["single", "multi", "offload", "too_big", "cpu"]
VERDICT_TITLES: dict[Verdict, str] = {
    "single": "fits on one GPU",
    "multi": "fits across GPUs",
    "offload": "fits only with system RAM",
    "too_big": "does not fit",
    "cpu": "runs on the CPU",
}


def format_gib(n: float, digits: int = 2) -> str:
    return f"{n / GIB:.{digits}f} GiB"


@dataclass(frozen=True)
class Reserve:
    """Working memory kept free on the compute GPU (bytes), and where it came from."""

    bytes: int
    source: Literal["default", "cli"]
    family: Family = "unknown"
    resolution: tuple[int, int] = (1024, 1024)
    batch: int = 1
    activations: int = 0  # ComfyUI's estimate for one sampling step

    def explain(self) -> str:
        if self.source == "cli":
            return f"{format_gib(self.bytes)} working memory on the compute GPU (--reserve)"
        w, h = self.resolution
        info = FAMILIES[self.family]
        frames = f", {info.frames} latent frames" if info.frames > 1 else ""
        return (
            f"{format_gib(self.bytes)} working memory on the compute GPU: CUDA context {format_gib(CUDA_CONTEXT)} + "
            f"ComfyUI's inference reserve for {info.title} at {w}x{h}{frames}, batch {self.batch} "
            f"(activations ≈ {format_gib(self.activations)}, at least {format_gib(COMFY_MIN_INFERENCE + COMFY_EXTRA_RESERVED)})"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "bytes": self.bytes,
            "source": self.source,
            "family": self.family,
            "resolution": list(self.resolution),
            "batch": self.batch,
            "activations_bytes": self.activations,
        }


def default_reserve(family: Family, memory_usage_factor: float, resolution: tuple[int, int] | None, batch: int = 1) -> Reserve:
    """ComfyUI's own estimate (``BaseModel.memory_required`` with flash/pytorch
    attention: area x 2 bytes x 0.01 x memory_usage_factor MiB, area = batch x
    latent frames x latent height x latent width, batch doubled by CFG), kept
    at least at ``minimum_inference_memory``, plus the CUDA context."""
    info = FAMILIES[family]
    w, h = resolution or info.resolution
    down = info.downscale
    area = batch * (2 if info.cfg else 1) * info.frames * math.ceil(h / down) * math.ceil(w / down)
    activations = int(area * 2 * 0.01 * memory_usage_factor * MIB)
    working = max(COMFY_MIN_INFERENCE + COMFY_EXTRA_RESERVED, activations + COMFY_EXTRA_RESERVED)
    return Reserve(CUDA_CONTEXT + working, "default", family, (w, h), batch, activations)


def comfy_reserve_vram(reserve: Reserve) -> float:
    """ComfyUI's ``--reserve-vram`` (GiB) that makes it keep ``reserve`` free:
    it keeps max(0.8 GiB, activations) + reserve-vram after its own context."""
    tenths = round((reserve.bytes - CUDA_CONTEXT - COMFY_MIN_INFERENCE) / GIB * 10, 6)
    return max(0.0, math.ceil(tenths) / 10)


@dataclass(frozen=True)
class Share:
    device: str  # "cuda:N" (after CUDA_VISIBLE_DEVICES) or "cpu"
    bytes: int


@dataclass(frozen=True)
class PartPlacement:
    """Where one component of one model goes. ``device`` is where it computes
    (for a split diffusion model: the compute device); ``shares`` where its
    weights live. ``swapped``: kept in RAM, moved to ``device`` while it runs."""

    model: ModelInfo
    component: Component
    device: str
    shares: tuple[Share, ...]
    swapped: bool = False

    @property
    def split(self) -> bool:
        return len(self.shares) > 1

    def to_json(self) -> dict[str, Any]:
        return {
            "model": str(self.model.path),
            "component": self.component.kind,
            "label": self.component.label,
            "bytes": self.component.gpu_bytes,
            "device": self.device,
            "shares": [{"device": s.device, "bytes": s.bytes} for s in self.shares],
            "swapped": self.swapped,
        }


@dataclass(frozen=True)
class DisTorchPlan:
    """The DisTorch2 settings for one split diffusion model.

    ``expert`` is ComfyUI-MultiGPU's byte-form ``expert_mode_allocations``; the
    simple inputs (``virtual_vram_gb`` + ``donor_device``) say the same only
    when there is one donor (``simple_equivalent``).
    """

    model: ModelInfo
    compute_device: str
    expert: str
    virtual_vram_gb: float
    donor_device: str
    simple_equivalent: bool
    shares: tuple[Share, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "model": str(self.model.path),
            "compute_device": self.compute_device,
            "expert_mode_allocations": self.expert,
            "virtual_vram_gb": self.virtual_vram_gb,
            "donor_device": self.donor_device,
            "simple_equivalent": self.simple_equivalent,
            "shares": [{"device": s.device, "bytes": s.bytes} for s in self.shares],
        }


@dataclass(frozen=True)
class CfgSplit:
    """ComfyUI's ``MultiGPU_WorkUnits``: copies of the diffusion model on ``devices``
    (cuda:0 first), each sampling step's conditionings (positive and negative)
    shared out between them. ``max_gpus`` is the node's input."""

    max_gpus: int
    devices: tuple[str, ...]
    cfg: float  # the largest CFG among ``samplers``
    samplers: tuple[str, ...]  # workflow node ids of the samplers/guiders with CFG > 1

    def to_json(self) -> dict[str, Any]:
        return {"max_gpus": self.max_gpus, "devices": list(self.devices), "cfg": self.cfg, "samplers": list(self.samplers)}


@dataclass(frozen=True)
class NativePlan:
    """Which of ComfyUI's own multi-GPU nodes (0.24.0 and newer) the plan uses.

    ``placement``: the text encoder and VAE devices are set with
    ``SelectCLIPDevice``/``SelectVAEDevice`` after ComfyUI's own loaders, instead of
    ComfyUI-MultiGPU's loaders (False where DisTorch2 is needed, or the checkout has
    no such nodes). ``notes`` say why a node is not used.
    """

    source: str  # where the node list was read
    nodes: frozenset[str]  # the native multi-GPU nodes the checkout registers
    placement: bool
    cfg_split: CfgSplit | None = None
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "nodes": sorted(self.nodes),
            "placement": self.placement,
            "cfg_split": self.cfg_split.to_json() if self.cfg_split else None,
            "notes": list(self.notes),
        }


def native_device(device: str) -> str:
    """A plan device as the native Select*Device nodes name it: cuda:0, where
    ComfyUI's loaders put things anyway, is ``default``; cuda:N is ``gpu:N``
    (both numbered after CUDA_VISIBLE_DEVICES); ``cpu`` stays."""
    if device == "cuda:0":
        return "default"
    return "gpu:" + device.removeprefix("cuda:") if device.startswith("cuda:") else device


@dataclass(frozen=True)
class Ledger:
    """One device's budget: what is free (RAM: available; None if unknown) and what is planned on it."""

    device: str
    gpu: Gpu | None
    capacity: int | None
    items: tuple[tuple[str, int], ...] = ()

    @property
    def planned(self) -> int:
        return sum(n for _, n in self.items)

    @property
    def headroom(self) -> int | None:
        return None if self.capacity is None else self.capacity - self.planned

    def to_json(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "gpu_index": self.gpu.index if self.gpu else None,
            "name": self.gpu.name if self.gpu else "system RAM",
            "free_bytes": self.capacity,
            "planned_bytes": self.planned,
            "headroom_bytes": self.headroom,
            "items": [{"what": w, "bytes": n} for w, n in self.items],
        }


@dataclass(frozen=True)
class FitPlan:
    verdict: Verdict
    mode: ModeLabel
    gpus: tuple[Gpu, ...]  # the GPUs to launch with, in CUDA order (cuda:0 first)
    reserve: Reserve
    placements: tuple[PartPlacement, ...]
    distorch: tuple[DisTorchPlan, ...]
    ledgers: tuple[Ledger, ...]
    comfyui_flags: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    shortfall: int | None = None  # bytes missing, for "too_big"
    native: NativePlan | None = None  # None: the target ComfyUI's nodes are unknown (no checkout)

    @property
    def cfg_split(self) -> CfgSplit | None:
        return self.native.cfg_split if self.native else None

    @property
    def launch_args(self) -> tuple[str, ...]:
        if self.mode == "cpu" or not self.gpus:
            return ("--cpu",)
        if len(self.gpus) == 1:
            return ("--single", str(self.gpus[0].index))
        return ("--gpus", ",".join(str(g.index) for g in self.gpus))

    @property
    def launch_command(self) -> str:
        tail = f" -- {' '.join(self.comfyui_flags)}" if self.comfyui_flags else ""
        return f"comfyrig launch {' '.join(self.launch_args)}{tail}"

    @property
    def headline(self) -> str:
        """The verdict line."""
        where = ", ".join(f"cuda:{i} = GPU {g.index} ({g.name})" for i, g in enumerate(self.gpus))
        if self.verdict == "too_big":
            return f"Does not fit: short by {format_gib(self.shortfall or 0)}."
        if self.verdict == "cpu":
            return f"Runs on the CPU: {format_gib(self._ram_planned())} in system RAM (slow)."
        split = self.cfg_split
        if self.verdict == "single":
            if split:
                return f"Fits on one GPU; sampling split over {split.max_gpus} identical GPUs (CFG split): {self.mode} mode ({where})."
            return f"Fits on one GPU: single mode on {where}."
        if self.verdict == "multi":
            how = " with DisTorch2" if self.distorch else f", sampling split over {split.max_gpus} (CFG split)" if split else ""
            return f"Fits across {len(self.gpus)} GPUs{how}: {self.mode} mode ({where})."
        spilled = sum(s.bytes for p in self.placements if p.component.kind == "diffusion_model" for s in p.shares if s.device == "cpu")
        return f"Fits only with system RAM: {format_gib(spilled)} of the diffusion model offloaded; {self.mode} mode ({where})."

    def _ram_planned(self) -> int:
        return sum(ledger.planned for ledger in self.ledgers if ledger.device == "cpu")

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "mode": self.mode,
            "headline": self.headline,
            "launch": ["comfyrig", "launch", *self.launch_args, *(("--", *self.comfyui_flags) if self.comfyui_flags else ())],
            "cuda_visible_devices": ",".join(str(g.index) for g in self.gpus),
            "comfyui_flags": list(self.comfyui_flags),
            "reserve": self.reserve.to_json(),
            "devices": [ledger.to_json() for ledger in self.ledgers],
            "placements": [p.to_json() for p in self.placements],
            "distorch": [d.to_json() for d in self.distorch],
            "reasons": list(self.reasons),
            "warnings": list(self.warnings),
            "shortfall_bytes": self.shortfall,
            "native": self.native.to_json() if self.native else None,
        }


# --- planning ---------------------------------------------------------------------


@dataclass
class _Part:
    model: ModelInfo
    comp: Component

    @property
    def size(self) -> int:
        return self.comp.gpu_bytes

    @property
    def name(self) -> str:
        return f"{self.model.name}: {self.comp.title}"


@dataclass
class _Slot:
    """A GPU being filled: its free bytes and what is planned on it so far."""

    device: str
    gpu: Gpu
    free: int
    items: list[tuple[str, int]] = field(default_factory=list)
    runs_aux: bool = False

    @property
    def left(self) -> int:
        return self.free - sum(n for _, n in self.items)

    def add(self, what: str, n: int) -> None:
        if n:
            self.items.append((what, n))


def plan_fit(
    models: Sequence[ModelInfo],
    gpus: Sequence[Gpu],
    *,
    reserve: Reserve,
    ram_available: int | None,
    cpu_only: bool = False,
    reserve_from_cli: bool = False,
    vram: VramFacts | None = None,
) -> FitPlan:
    """Decide where every loaded component of ``models`` goes.

    ``gpus`` are the selected GPUs (their free memory counts); ``ram_available``
    is MemAvailable in bytes (None: unknown, not checked); ``vram``: how the target ComfyUI
    manages VRAM (None: unknown), for what plain ComfyUI needs when a model spills. Raises
    SelectionError when there is no GPU and ``cpu_only`` is not set.
    """
    parts = [_Part(m, c) for m in models for c in m.components if c.loaded]
    if cpu_only:
        return _cpu_plan(parts, reserve, ram_available)
    if not gpus:
        raise SelectionError(
            "There is no GPU to plan for.",
            hint="Plan for the CPU with --cpu, or check 'comfyrig gpus'.",
        )
    flags = (("--reserve-vram", f"{comfy_reserve_vram(reserve):.1f}"),) if reserve_from_cli else ()
    order = sorted(gpus, key=lambda g: (-g.memory_free_mib, g.index))
    dms = sorted((p for p in parts if p.comp.kind == "diffusion_model"), key=lambda p: -p.size)
    aux = sorted((p for p in parts if p.comp.kind != "diffusion_model"), key=lambda p: -p.size)
    free = {g.index: g.memory_free_mib * MIB for g in order}
    best = order[0]
    total = sum(p.size for p in parts)
    dm_total = sum(p.size for p in dms)
    reasons: list[str] = []

    # 1. Everything on the GPU with the most free memory.
    if total + reserve.bytes <= free[best.index]:
        reasons.append(
            f"All weights ({format_gib(total)}) and the working memory fit in GPU {best.index}'s "
            f"{format_gib(free[best.index])} free (the GPU with the most free memory)."
        )
        return _single(parts, order, free, reserve, reasons, (), flags, ram_available)

    dm_fits_one = dm_total + reserve.bytes <= free[best.index]
    # 2. Diffusion model whole on one GPU, the other components on other GPUs.
    if dm_fits_one and len(order) > 1:
        slots = _slots(order, free)
        slots[0].add(WORKING, reserve.bytes)
        placed = [_whole(p, slots[0]) for p in dms]
        aux_placed = _place_aux(aux, slots, allow_cpu=False)
        if aux_placed is not None:
            used = _used(slots, placed + aux_placed)
            reasons.append(
                f"The diffusion model ({format_gib(dm_total)}) fits on GPU {best.index} beside the working memory, "
                f"but not together with the other components ({format_gib(total - dm_total)}); "
                "those go to another GPU, so nothing has to be swapped."
            )
            return _finish("multi", placed + aux_placed, used, slots, reserve, reasons, [], flags, ram_available, 0)

    # 3. Diffusion model whole on one GPU; text encoder and VAE take turns with it.
    if dm_fits_one and all(sum(p.size for p in g) + AUX_RESERVE <= free[best.index] for g in _groups(aux)):
        reasons.append(
            f"The diffusion model ({format_gib(dm_total)}) fits on GPU {best.index} beside the working memory; "
            "the text encoder and VAE do not fit at the same time, so ComfyUI moves them in only while they run "
            "(kept in RAM otherwise; a new prompt reloads the text encoder)."
        )
        return _single(parts, order, free, reserve, reasons, tuple(aux), flags, ram_available)

    # 4. Split the diffusion model (DisTorch) over the GPUs, then RAM.
    return _distribute(dms, aux, order, free, reserve, flags, ram_available, vram)


def _slots(order: Sequence[Gpu], free: dict[int, int]) -> list[_Slot]:
    return [_Slot(f"cuda:{i}", g, free[g.index]) for i, g in enumerate(order)]


def _whole(part: _Part, slot: _Slot) -> PartPlacement:
    slot.add(part.name, part.size)
    return PartPlacement(part.model, part.comp, slot.device, (Share(slot.device, part.size),))


def _groups(aux: Sequence[_Part]) -> list[list[_Part]]:
    """Text encoders travel together (one Dual/Triple/QuadrupleCLIPLoader puts
    them on one device); every other component alone. Largest first."""
    te = [p for p in aux if p.comp.kind == "text_encoder"]
    groups = ([te] if te else []) + [[p] for p in aux if p.comp.kind != "text_encoder"]
    return sorted(groups, key=lambda g: -sum(p.size for p in g))


def _place_aux(aux: Sequence[_Part], slots: list[_Slot], *, allow_cpu: bool, te_on_cpu: bool = False) -> list[PartPlacement] | None:
    """Text encoders, VAEs and others: each group whole on the roomiest other GPU,
    else on the compute GPU, else (``allow_cpu``) on the CPU; None if one fits nowhere."""
    placed: list[PartPlacement] = []
    for group in _groups(aux):
        size = sum(p.size for p in group)
        if te_on_cpu and group[0].comp.kind == "text_encoder":
            placed.extend(PartPlacement(p.model, p.comp, "cpu", (Share("cpu", p.size),)) for p in group)
            continue
        target = None
        for slot in sorted(slots[1:], key=lambda s: -s.left):
            if size + (0 if slot.runs_aux else AUX_RESERVE - CUDA_CONTEXT) <= slot.left:
                target = slot
                break
        if target is None and size <= slots[0].left:
            target = slots[0]
        if target is None:
            if not allow_cpu:
                return None
            placed.extend(PartPlacement(p.model, p.comp, "cpu", (Share("cpu", p.size),)) for p in group)
            continue
        if target is not slots[0] and not target.runs_aux:
            target.add(AUX_WORKING, AUX_RESERVE - CUDA_CONTEXT)
            target.runs_aux = True
        placed.extend(_whole(p, target) for p in group)
    return placed


def _used(slots: list[_Slot], placements: Sequence[PartPlacement]) -> list[_Slot]:
    """The slots holding something, compute GPU first, renumbered cuda:0.. in that order."""
    devices = {s.device for p in placements for s in p.shares}
    return [s for s in slots if s.device in devices or s is slots[0]]


def _single(
    parts: Sequence[_Part],
    order: Sequence[Gpu],
    free: dict[int, int],
    reserve: Reserve,
    reasons: list[str],
    swapped: tuple[_Part, ...],
    flags: tuple[tuple[str, str], ...],
    ram_available: int | None,
) -> FitPlan:
    slots = _slots(order, free)
    slot = slots[0]
    slot.add(WORKING, reserve.bytes)
    placements = []
    for p in parts:
        if any(p is s for s in swapped):
            placements.append(PartPlacement(p.model, p.comp, "cuda:0", (Share("cpu", p.size),), swapped=True))
        else:
            placements.append(_whole(p, slot))
    return _finish("single", placements, [slot], slots, reserve, reasons, [], flags, ram_available, 0)


def _distribute(
    dms: Sequence[_Part],
    aux: Sequence[_Part],
    order: Sequence[Gpu],
    free: dict[int, int],
    reserve: Reserve,
    flags: tuple[tuple[str, str], ...],
    ram_available: int | None,
    vram: VramFacts | None,
) -> FitPlan:
    """Split the diffusion model(s) over the GPUs, compute GPU first, rest in RAM."""
    placements, slots, spill, compute_room = _fill(dms, aux, order, free, reserve, te_on_cpu=False)
    reasons: list[str] = []
    warnings: list[str] = []
    te_on_gpu = any(p.component.kind == "text_encoder" and p.device != "cpu" for p in placements)
    if spill and te_on_gpu and len(order) > 1:
        # The diffusion model works every step; a text encoder once per prompt.
        alt = _fill(dms, aux, order, free, reserve, te_on_cpu=True)
        if alt[2] == 0:
            placements, slots, spill, compute_room = alt
    if any(p.component.kind == "text_encoder" and p.device == "cpu" for p in placements):
        warnings.append(
            "The text encoder runs on the CPU (seconds per new prompt), so that the diffusion model keeps the "
            "GPU memory: it works every step."
        )
    best = order[0]
    if compute_room < 0:
        need = free[best.index] - compute_room
        reasons.append(
            f"GPU {best.index} has {format_gib(free[best.index])} free, less than the {format_gib(need)} of working "
            "memory and streaming buffer the compute GPU needs even with every weight in RAM."
        )
        warnings.append("Plan for the CPU with --cpu, or free memory on the GPU.")
        return _finish("too_big", placements, [slots[0]], slots, reserve, reasons, warnings, flags, ram_available, -compute_room)
    dm_total = sum(p.size for p in dms)
    used = _used(slots, placements)
    split = any(p.component.kind == "diffusion_model" and p.split for p in placements)
    gpu_list = ", ".join(f"cuda:{i}" for i in range(len(used)))
    if spill:
        reasons.append(
            f"The diffusion model ({format_gib(dm_total)}) does not fit in the free memory of {gpu_list} beside "
            f"the working memory: {format_gib(spill)} of it stays in system RAM and streams to the GPU every step."
        )
        warnings.append(
            "Offloading to system RAM is slow: every sampling step copies the offloaded blocks over PCIe "
            "(often several times slower than a model that fits)."
        )
    elif split:
        reasons.append(
            f"The diffusion model ({format_gib(dm_total)}) is too big for one GPU beside the working memory; "
            f"DisTorch2 keeps its blocks on {gpu_list} and computes on cuda:0."
        )
        warnings.append(
            "DisTorch is memory offloading, not parallel compute: the other GPUs hold weights, cuda:0 does the work "
            "(slower than one GPU that holds the whole model)."
        )
    elif dms:
        reasons.append(
            f"The diffusion model ({format_gib(dm_total)}) fits on cuda:0 beside the working memory; "
            "the other components go where they fit."
        )
    else:
        reasons.append("There is no diffusion model among the files; each component goes where it fits.")
    verdict: Verdict = "offload" if spill else "multi" if len(used) > 1 else "single"
    plain: tuple[tuple[str, str], ...] = ()
    if spill and len(used) == 1:
        on_gpu = sum(s.bytes for p in placements if p.component.kind == "diffusion_model" for s in p.shares if s.device != "cpu")
        flag, why = plain_offload(vram or VramFacts("unknown", "unknown"), little_on_gpu=on_gpu < GIB)
        if flag is not None:
            plain = ((flag, ""),)
            reasons.append(
                f"Two ways to run it: plain ComfyUI with {flag} ({why}), or ComfyUI-MultiGPU's DisTorch2 loader "
                f"with the allocation below (then no {flag} is needed)."
            )
        else:
            reasons.append(f"Two ways to run it: plain ComfyUI as it is ({why}), or ComfyUI-MultiGPU's DisTorch2 loader with the allocation below.")
    return _finish(verdict, placements, used, slots, reserve, reasons, warnings, flags + plain, ram_available, 0)


def _fill(
    dms: Sequence[_Part], aux: Sequence[_Part], order: Sequence[Gpu], free: dict[int, int], reserve: Reserve, *, te_on_cpu: bool
) -> tuple[list[PartPlacement], list[_Slot], int, int]:
    """-> (placements, slots, bytes of diffusion model in RAM, room left on the compute GPU)."""
    slots = _slots(order, free)
    compute = slots[0]
    compute.add(WORKING, reserve.bytes)
    for slot in slots[1:]:
        slot.add("CUDA context", CUDA_CONTEXT)
    placements: list[PartPlacement] = []
    if len(slots) == 1:
        # One GPU: the VAE runs on it while decoding (kept in RAM in between); the text
        # encoder stays on the CPU, as ComfyUI's --lowvram did before dynamic VRAM.
        for p in aux:
            on_gpu = not te_on_cpu and p.comp.kind != "text_encoder" and p.size + AUX_RESERVE <= compute.free
            placements.append(PartPlacement(p.model, p.comp, "cuda:0" if on_gpu else "cpu", (Share("cpu", p.size),), swapped=on_gpu))
    else:
        placements.extend(_place_aux(aux, slots, allow_cpu=True, te_on_cpu=te_on_cpu) or [])
    if sum(p.size for p in dms) <= compute.left:
        return [_whole(p, compute) for p in dms] + placements, slots, 0, compute.left
    largest = max((p.comp.largest_module for p in dms), default=0)
    compute.add("streaming buffer (2 largest modules)", 2 * largest)
    for p in dms:
        compute.add(f"{p.model.name}: small modules DisTorch never moves", p.comp.pinned_bytes)
    compute_room = compute.left
    spill = 0
    dm_placements: list[PartPlacement] = []
    for p in dms:
        remaining = p.size - p.comp.pinned_bytes
        shares: dict[str, int] = {"cuda:0": p.comp.pinned_bytes} if p.comp.pinned_bytes else {}
        for slot in slots:
            # Whole hundredths of a GiB: the quota as the expert string writes it.
            centi = max(slot.left, 0) * 100 // GIB
            room = -(-centi * GIB // 100)
            take = min(room, remaining)
            if take > 0:
                shares[slot.device] = shares.get(slot.device, 0) + take
                slot.add(f"{p.model.name}: diffusion model, DisTorch share", take)
                remaining -= take
        if remaining > 0:
            shares["cpu"] = remaining
            spill += remaining
        dm_placements.append(PartPlacement(p.model, p.comp, "cuda:0", tuple(Share(d, n) for d, n in shares.items())))
    return dm_placements + placements, slots, spill, compute_room


def _distorch(p: PartPlacement) -> DisTorchPlan:
    # DisTorch keeps modules under its threshold on the compute device beyond its
    # quota, so the compute device's quota is its share without them.
    gpu_shares = [
        Share(s.device, s.bytes - (p.component.pinned_bytes if s.device == p.device else 0))
        for s in p.shares
        if s.device != "cpu"
    ]
    parts = []
    for s in gpu_shares:
        # A full GPU's share is a whole number of hundredths (see _fill): written exactly.
        # A partial share is rounded up: quotas are filled in order with min(quota, what
        # is left), so the last GPU then takes exactly its share, never more.
        centi = s.bytes * 100 // GIB
        if -(-centi * GIB // 100) != s.bytes:
            centi += 1
        parts.append(f"{s.device},{centi / 100:.2f}gb")
    parts.append("cpu,*")
    donors = [s for s in p.shares if s.device != p.device and s.bytes > 0]
    offloaded = sum(s.bytes for s in donors)
    vvram = math.ceil(round(offloaded / GIB * 10, 6)) / 10
    return DisTorchPlan(
        model=p.model,
        compute_device=p.device,
        expert=";".join(parts),
        virtual_vram_gb=vvram,
        donor_device=donors[0].device if donors else "cpu",
        simple_equivalent=len(donors) <= 1,
        shares=p.shares,
    )


def _finish(
    verdict: Verdict,
    placements: Sequence[PartPlacement],
    used: list[_Slot],
    slots: list[_Slot],
    reserve: Reserve,
    reasons: list[str],
    warnings: list[str],
    flags: tuple[tuple[str, str], ...],
    ram_available: int | None,
    shortfall: int,
) -> FitPlan:
    # Renumber: the GPUs launched are the used ones, compute GPU first.
    rename = {s.device: f"cuda:{i}" for i, s in enumerate(used)}
    placements = [
        replace(p, device=rename.get(p.device, p.device), shares=tuple(Share(rename.get(s.device, s.device), s.bytes) for s in p.shares))
        for p in placements
    ]
    distorch = tuple(_distorch(p) for p in placements if p.component.kind == "diffusion_model" and p.split)
    ram_items = tuple(
        (f"{p.model.name}: {p.component.title}" + (" (between uses)" if p.swapped else ""), s.bytes)
        for p in placements
        for s in p.shares
        if s.device == "cpu"
    )
    ledgers = [Ledger(rename[s.device], s.gpu, s.free, tuple(s.items)) for s in used]
    ram = Ledger("cpu", None, ram_available, ram_items)
    ledgers.append(ram)
    if ram_available is None and ram_items:
        warnings.append("System RAM is unknown here, so the RAM share was not checked (give --ram GB).")
    if verdict != "too_big" and ram.headroom is not None and ram.headroom < 0:
        shortfall = -ram.headroom
        reasons.append(
            f"System RAM is short too: the plan keeps {format_gib(ram.planned)} in RAM, "
            f"{format_gib(ram_available or 0)} is available."
        )
        verdict = "too_big"
    mode: ModeLabel = "single" if len(used) == 1 else "dual" if len(used) == 2 else "multi"
    unused = [s.gpu.index for s in slots if s not in used]
    if unused and verdict in ("single", "multi"):
        reasons.append(unused_reason(unused))
    flat = tuple(x for flag, value in flags for x in ((flag, value) if value else (flag,)))
    return FitPlan(
        verdict=verdict,
        mode=mode,
        gpus=tuple(s.gpu for s in used),
        reserve=reserve,
        placements=tuple(placements),
        distorch=distorch,
        ledgers=tuple(ledgers),
        comfyui_flags=flat,
        reasons=tuple(reasons),
        warnings=tuple(warnings),
        shortfall=shortfall if verdict == "too_big" else None,
    )


def unused_reason(indices: Sequence[int]) -> str:
    return f"GPU {', '.join(map(str, indices))} is not needed for this plan."


def _cpu_plan(parts: Sequence[_Part], reserve: Reserve, ram_available: int | None) -> FitPlan:
    items = tuple((f"{p.model.name}: {p.comp.title}", p.comp.cpu_bytes) for p in parts)
    working = ("working memory", reserve.bytes - CUDA_CONTEXT)
    ram = Ledger("cpu", None, ram_available, (*items, working))
    placements = tuple(PartPlacement(p.model, p.comp, "cpu", (Share("cpu", p.comp.cpu_bytes),)) for p in parts)
    reasons = [
        ("--cpu: every component runs on the CPU; ComfyUI computes the diffusion model and VAE in float32 there, "
         f"so they take {format_gib(sum(p.comp.cpu_bytes for p in parts))} of RAM.")
    ]
    warnings = ["The CPU is one to two orders of magnitude slower than a GPU for diffusion models."]
    verdict: Verdict = "cpu"
    shortfall = None
    if ram.headroom is not None and ram.headroom < 0:
        verdict, shortfall = "too_big", -ram.headroom
    elif ram_available is None:
        warnings.append("System RAM is unknown here, so the plan was not checked against it (give --ram GB).")
    return FitPlan(
        verdict=verdict, mode="cpu", gpus=(), reserve=reserve, placements=placements, distorch=(),
        ledgers=(ram,), reasons=tuple(reasons), warnings=tuple(warnings), shortfall=shortfall,
    )
