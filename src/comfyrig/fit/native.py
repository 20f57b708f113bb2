"""ComfyUI's own multi-GPU nodes (0.24.0 and newer): which a checkout has, the CFG a
workflow samples with, and the pure decision of which of them a fit plan uses.

The nodes, as ComfyUI 0.24.0's ``comfy_extras/nodes_multigpu.py`` defines them:

- ``SelectCLIPDevice`` (clip, device) -> CLIP and ``SelectVAEDevice`` (vae, device) -> VAE
  put a text encoder or a VAE on ``default`` (where the loader put it), ``cpu`` (CLIP
  only) or ``gpu:N``, numbered after CUDA_VISIBLE_DEVICES. Another GPU means a fresh
  copy made by the loader's reload factory (``cached_patcher_init``), which ComfyUI's
  own loaders register and ComfyUI-GGUF's loaders and DiffusersLoader do not: there
  the node passes its input through unchanged.
- ``MultiGPU_WorkUnits`` ("MultiGPU CFG Split"; model, max_gpus) -> MODEL copies the
  diffusion model (with the same factory) onto the next ``max_gpus - 1`` GPUs in CUDA
  order and shares each sampling step's conditionings out between them. At CFG 1
  ComfyUI skips the negative pass, so there is one conditioning and nothing to
  share. Documented for identical GPUs, Ampere (compute capability 8.0) or newer.
- ``SelectModelDevice`` is not needed: a plan computes on cuda:0, ComfyUI's default.

The decision (``plan_native``), on top of ``plan_fit``'s memory plan:

1. Where the plan splits a diffusion model over GPUs (DisTorch2) or offloads it to
   RAM, ComfyUI-MultiGPU's loaders stay, as without native nodes: no native node
   splits a model.
2. Otherwise a text encoder or VAE the plan puts on another GPU (because the
   diffusion model needs the room on cuda:0) is moved there with
   SelectCLIPDevice/SelectVAEDevice after ComfyUI's own loader.
3. With a sampler at CFG > 1 and other selected GPUs identical to the compute GPU
   (same name and compute capability, 8.0 or more) with room for a copy of the
   diffusion model and the working memory, ``MultiGPU_WorkUnits`` with max_gpus =
   1 + their number goes before that sampler. Those GPUs become cuda:1.., so that
   the node's "next GPUs in CUDA order" are exactly them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from ..comfy.multigpu import AMPERE, NativeNodes
from ..comfy.workflow import Workflow
from ..host.gpus.inventory import Gpu
from .components import ComponentKind, ModelInfo
from .fit import (
    AUX_WORKING,
    WORKING,
    CfgSplit,
    FitPlan,
    Ledger,
    NativePlan,
    PartPlacement,
    Share,
    format_gib,
    unused_reason,
)

__all__ = [
    "CFG_INPUTS",
    "SELECT_NODES",
    "NativeNode",
    "SamplerCfg",
    "native_capable",
    "plan_native",
    "sampler_cfgs",
]

MIB = 1 << 20
NativeNode = Literal["MultiGPU_WorkUnits", "SelectModelDevice", "SelectCLIPDevice", "SelectVAEDevice"]
# The Select node for each component kind a loader outputs, and the node's input name.
SELECT_NODES: dict[ComponentKind, tuple[NativeNode, str, str]] = {
    "text_encoder": ("SelectCLIPDevice", "clip", "Select CLIP Device"),
    "vae": ("SelectVAEDevice", "vae", "Select VAE Device"),
}
# Samplers and guiders, and the inputs that hold their CFG (ComfyUI 0.24.0: nodes.py,
# comfy_extras/nodes_custom_sampler.py, nodes_perpneg.py); each takes the model as ``model``.
CFG_INPUTS: dict[str, tuple[str, ...]] = {
    "KSampler": ("cfg",),
    "KSamplerAdvanced": ("cfg",),
    "SamplerCustom": ("cfg",),
    "CFGGuider": ("cfg",),
    "DualCFGGuider": ("cfg_conds", "cfg_cond2_negative"),
    "PerpNegGuider": ("cfg",),
}


@dataclass(frozen=True)
class SamplerCfg:
    """A sampler or guider node of a workflow and its CFG (None: set by a link)."""

    node_id: str
    class_type: str
    cfg: float | None

    def describe(self) -> str:
        cfg = "" if self.cfg is None else f", CFG {self.cfg:g}"
        return f"node {self.node_id} ({self.class_type}{cfg})"


def sampler_cfgs(wf: Workflow) -> tuple[SamplerCfg, ...]:
    """The workflow's samplers and guiders with their CFG, in workflow order. A node
    with two CFG inputs (DualCFGGuider) counts with the larger."""
    out = []
    for node_id, node in wf.prompt.items():
        names = CFG_INPUTS.get(node["class_type"])
        if names is None:
            continue
        inputs = node.get("inputs", {})
        values = [inputs.get(n) for n in names]
        numbers = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        out.append(SamplerCfg(str(node_id), node["class_type"], max(numbers) if len(numbers) == len(names) else None))
    return tuple(out)


def native_capable(model: ModelInfo) -> bool:
    """Whether ComfyUI's own loaders (which register the reload factory the native
    nodes copy models with) load ``model``: not a GGUF file (ComfyUI-GGUF), not a
    diffusers folder (DiffusersLoader)."""
    return model.format != "gguf" and model.layout != "diffusers"


def plan_native(
    plan: FitPlan, gpus: Sequence[Gpu], nodes: NativeNodes | None, samplers: Sequence[SamplerCfg] | None
) -> FitPlan:
    """``plan`` with its ``native`` part decided (see the module docstring).

    ``gpus`` are all the selected GPUs (also those the memory plan left unused);
    ``nodes`` what the target ComfyUI has (None: unknown, the plan is returned as
    it is); ``samplers`` the workflow's (None: no workflow, so no CFG to go by).
    Pure.
    """
    if nodes is None or plan.mode == "cpu" or not plan.gpus:
        return plan
    if not nodes.names:
        note = (f"This ComfyUI has no native multi-GPU nodes (they came with 0.24.0; read {nodes.source}): "
                "ComfyUI-MultiGPU's loaders set the devices.")
        return replace(plan, native=NativePlan(nodes.source, frozenset(), False, None, (note,)))
    notes: list[str] = []
    dm_split = bool(plan.distorch) or any(
        s.device == "cpu" for p in plan.placements if p.component.kind == "diffusion_model" for s in p.shares
    )
    if plan.verdict not in ("single", "multi") or dm_split:
        notes.append(
            "The diffusion model does not fit whole on one GPU, and no native node splits a model: "
            "ComfyUI-MultiGPU's DisTorch2 does, and its loaders place the other parts as well."
        )
        return replace(plan, native=NativePlan(nodes.source, nodes.names, False, None, tuple(notes)))
    moved = [p for p in plan.placements if p.component.kind in SELECT_NODES and p.device != "cuda:0"]
    placement = nodes.can_place
    if moved and not placement:
        notes.append("This ComfyUI lacks SelectCLIPDevice/SelectVAEDevice: ComfyUI-MultiGPU's loaders set the devices.")
    foreign = sorted({p.model.name for p in moved if not native_capable(p.model)})
    if moved and placement and foreign:
        placement = False
        notes.append(
            f"{', '.join(foreign)} load through ComfyUI-GGUF's or the diffusers loader, which register no reload "
            "factory, so SelectCLIPDevice/SelectVAEDevice could not move them: ComfyUI-MultiGPU's loaders set the devices."
        )
    if moved and placement:
        where = sorted({p.device for p in moved})
        kinds = " and ".join(dict.fromkeys(p.component.title for p in moved))
        notes.append(
            f"The {kinds} go to {', '.join(where)} with ComfyUI's own SelectCLIPDevice/SelectVAEDevice "
            "(no node pack needed), so that the diffusion model keeps cuda:0's memory."
        )
    split_plan, split, split_notes = _cfg_split(plan, gpus, nodes, samplers)
    notes.extend(split_notes)
    return replace(split_plan, native=NativePlan(nodes.source, nodes.names, placement, split, tuple(notes)))


def _cc(gpu: Gpu) -> tuple[int, ...] | None:
    m = re.fullmatch(r"\s*(\d+)\.(\d+)\s*", gpu.compute_capability or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def _twins(primary: Gpu, gpus: Sequence[Gpu], need: int) -> tuple[list[Gpu], str | None]:
    """The selected GPUs identical to ``primary`` with ``need`` bytes free, or why there are none."""
    cc = _cc(primary)
    what = f"GPU {primary.index} ({primary.name})"
    if cc is None:
        return [], (f"{what}'s compute capability is unknown, and MultiGPU_WorkUnits is documented for Ampere (8.0) "
                    "or newer: no CFG split.")
    if cc < AMPERE:
        return [], (f"{what} has compute capability {primary.compute_capability}, older than Ampere (8.0), for which "
                    "MultiGPU_WorkUnits is documented: no CFG split.")
    same = [g for g in gpus if g.index != primary.index and g.name == primary.name and _cc(g) == cc]
    if not same:
        return [], (f"No other selected GPU is identical to {what}, compute capability {primary.compute_capability} "
                    "(MultiGPU_WorkUnits is documented for identical GPUs): no CFG split.")
    roomy = [g for g in same if g.memory_free_mib * MIB >= need]
    if not roomy:
        frees = ", ".join(f"GPU {g.index} {format_gib(g.memory_free_mib * MIB)}" for g in same)
        return [], (f"The identical GPUs have too little free memory ({frees}) for a copy of the diffusion model and "
                    f"its working memory ({format_gib(need)}): no CFG split.")
    return roomy, None


def _cfg_split(
    plan: FitPlan, gpus: Sequence[Gpu], nodes: NativeNodes, samplers: Sequence[SamplerCfg] | None
) -> tuple[FitPlan, CfgSplit | None, list[str]]:
    dms = [p for p in plan.placements if p.component.kind == "diffusion_model"]
    if not dms:
        return plan, None, []
    if not nodes.can_split_cfg:
        return plan, None, ["This ComfyUI lacks MultiGPU_WorkUnits: no CFG split."]
    primary = plan.gpus[0]
    dm_bytes = sum(p.component.gpu_bytes for p in dms)
    twins, why = _twins(primary, gpus, dm_bytes + plan.reserve.bytes)
    if samplers is None:
        hint = (f"With a workflow that samples at CFG > 1 (--workflow), MultiGPU_WorkUnits could share each step "
                f"out over {1 + len(twins)} identical GPUs.")
        return plan, None, [hint] if twins else []
    notes = [f"{s.describe()} takes its CFG from a link, unknown before the run: not split." for s in samplers if s.cfg is None]
    wanted = [s for s in samplers if s.cfg is not None and s.cfg > 1]
    if not wanted:
        notes.append("No sampler runs at CFG > 1 (at CFG 1 there is no negative pass to share out): no CFG split.")
        return plan, None, notes
    if why:
        return plan, None, [*notes, why]
    foreign = sorted({p.model.name for p in dms if not native_capable(p.model)})
    if foreign:
        notes.append(f"{', '.join(foreign)} loads through ComfyUI-GGUF's or the diffusers loader, which MultiGPU_WorkUnits "
                     "cannot copy: no CFG split.")
        return plan, None, notes
    new = _with_copies(plan, gpus, twins, dms)
    if new is None:
        notes.append("System RAM could not hold the parts that would take turns with the model copies: no CFG split.")
        return plan, None, notes
    cfg = max(s.cfg for s in wanted if s.cfg is not None)
    split = CfgSplit(1 + len(twins), tuple(f"cuda:{i}" for i in range(1 + len(twins))), cfg, tuple(s.node_id for s in wanted))
    reason = (
        f"Sampling at CFG > 1 in {', '.join(s.describe() for s in wanted)}: ComfyUI's MultiGPU_WorkUnits (max_gpus "
        f"{split.max_gpus}) copies the diffusion model ({format_gib(dm_bytes)}) onto {', '.join(split.devices[1:])} and "
        f"shares each sampling step's positive and negative passes out between {split.max_gpus} identical {primary.name} GPUs."
    )
    warning = (
        "A CFG split makes each image faster (ComfyUI reports up to 1.95x on two identical GPUs); for many images, "
        "one ComfyUI per GPU (comfyrig launch --workers) gives more throughput."
    )
    return replace(new, reasons=(*new.reasons, reason), warnings=(*new.warnings, warning)), split, notes


def _with_copies(plan: FitPlan, gpus: Sequence[Gpu], twins: Sequence[Gpu], dms: Sequence[PartPlacement]) -> FitPlan | None:
    """``plan`` launched on the compute GPU, ``twins`` (each holding a copy of the
    diffusion model and its working memory) and then the other GPUs it used,
    renumbered in that order. A text encoder or VAE that no longer fits beside a
    copy takes turns with it (kept in RAM between uses). None when RAM is short."""
    primary = plan.gpus[0]
    used = {g.index for g in plan.gpus}
    twins = sorted(twins, key=lambda g: (g.index not in used, -g.memory_free_mib, g.index))
    twin_ids = {g.index for g in twins}
    order = [primary, *twins, *(g for g in plan.gpus[1:] if g.index not in twin_ids)]
    old = {f"cuda:{i}": g.index for i, g in enumerate(plan.gpus)}
    new = {g.index: f"cuda:{i}" for i, g in enumerate(order)}

    def rename(device: str) -> str:
        return new[old[device]] if device in old else device

    placements = [
        replace(p, device=rename(p.device), shares=tuple(Share(rename(s.device), s.bytes) for s in p.shares))
        for p in plan.placements
    ]
    ledgers = {ledger.gpu.index: ledger for ledger in plan.ledgers if ledger.gpu is not None}
    ram = next(ledger for ledger in plan.ledgers if ledger.gpu is None)
    ram_items = list(ram.items)
    out: list[Ledger] = []
    for g in order:
        device = new[g.index]
        before = ledgers.get(g.index)
        items = list(before.items) if before else []
        capacity = before.capacity if before else g.memory_free_mib * MIB
        if g.index in twin_ids:
            copies = [(WORKING, plan.reserve.bytes)] + [
                (f"{p.model.name}: diffusion model copy (MultiGPU_WorkUnits)", p.component.gpu_bytes) for p in dms
            ]
            others = [item for item in items if item[0] != AUX_WORKING]
            items = copies + others
            if capacity is not None and sum(n for _, n in items) > capacity:
                items = copies
                for i, p in enumerate(placements):
                    if p.device == device and not p.swapped:
                        placements[i] = replace(p, shares=(Share("cpu", p.component.gpu_bytes),), swapped=True)
                        ram_items.append((f"{p.model.name}: {p.component.title} (between uses)", p.component.gpu_bytes))
        out.append(Ledger(device, g, capacity, tuple(items)))
    ram = Ledger("cpu", None, ram.capacity, tuple(ram_items))
    if ram.headroom is not None and ram.headroom < 0:
        return None
    before_unused = [g.index for g in sorted(gpus, key=lambda g: (-g.memory_free_mib, g.index)) if g.index not in used]
    after_unused = [i for i in before_unused if i not in twin_ids]
    reasons = [r for r in plan.reasons if not before_unused or r != unused_reason(before_unused)]
    if after_unused:
        reasons.append(unused_reason(after_unused))
    turns = sorted({p.device for p in placements if p.swapped and p.device != "cuda:0"})
    if turns:
        reasons.append(
            f"The text encoder/VAE on {', '.join(turns)} take turns with the model copy there: ComfyUI keeps them in RAM "
            "between uses."
        )
    return replace(
        plan,
        mode="single" if len(order) == 1 else "dual" if len(order) == 2 else "multi",
        gpus=tuple(order),
        placements=tuple(placements),
        ledgers=(*out, ram),
        reasons=tuple(reasons),
    )

