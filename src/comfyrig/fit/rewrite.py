"""Rewrite a workflow for a fit plan: ComfyUI-MultiGPU's loaders, or ComfyUI's own
multi-GPU nodes (0.24.0 and newer) inserted between the loaders and their users.

Workflows are ``comfy.workflow.Workflow`` (loaded and checked there, in the
API format); this module only finds loaders and rewrites them.

With ComfyUI-MultiGPU, only loader nodes change: their ``class_type`` and the
MultiGPU inputs (``device``, or DisTorch2's ``compute_device``,
``virtual_vram_gb``, ``donor_device``, ``expert_mode_allocations``,
``eject_models``). Every other input, and so every link (``[node_id,
output_index]``), is kept as it was: the MultiGPU nodes subclass the loaders
and return the same outputs.

With the native nodes (``plan.native``), loaders stay ComfyUI's own (a MultiGPU
loader from an earlier rewrite goes back to its base) and new nodes are
inserted: ``SelectCLIPDevice``/``SelectVAEDevice`` on a loader's CLIP/VAE output,
every user of that output re-pointed to the new node's output 0, and
``MultiGPU_WorkUnits`` on the ``model`` input of each sampler at CFG > 1 (after
whatever patched the model, as its docstring asks). A node inserted before is
found again and only its setting updated, so rewriting twice changes nothing.

Node and input names are ComfyUI-MultiGPU's (``__init__.py`` NODE_CLASS_MAPPINGS,
``wrappers.py``, ``checkpoint_multigpu.py``); the loaders' own input names are
ComfyUI's ``nodes.py`` and ComfyUI-GGUF's.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Literal

from ..comfy.workflow import Prompt, Workflow
from ..errors import WorkflowError
from .components import COMPONENT_TITLES, ComponentKind, Layout, ModelInfo
from .fit import FitPlan, PartPlacement, native_device
from .native import SELECT_NODES, sampler_cfgs

__all__ = [
    "LOADERS",
    "MULTIGPU_INPUTS",
    "LoaderNode",
    "NodeChange",
    "find_loaders",
    "model_folders",
    "rewrite_workflow",
    "suggested_loaders",
    "suggested_nodes",
]


@dataclass(frozen=True)
class LoaderSpec:
    layout: Layout
    file_inputs: tuple[str, ...]


# The loaders comfyrig rewrites, by ComfyUI class name.
LOADERS: dict[str, LoaderSpec] = {
    "CheckpointLoaderSimple": LoaderSpec("checkpoint", ("ckpt_name",)),
    "UNETLoader": LoaderSpec("diffusion_model", ("unet_name",)),
    "UnetLoaderGGUF": LoaderSpec("diffusion_model", ("unet_name",)),
    "UnetLoaderGGUFAdvanced": LoaderSpec("diffusion_model", ("unet_name",)),
    "CLIPLoader": LoaderSpec("text_encoder", ("clip_name",)),
    "DualCLIPLoader": LoaderSpec("text_encoder", ("clip_name1", "clip_name2")),
    "TripleCLIPLoader": LoaderSpec("text_encoder", ("clip_name1", "clip_name2", "clip_name3")),
    "QuadrupleCLIPLoader": LoaderSpec("text_encoder", ("clip_name1", "clip_name2", "clip_name3", "clip_name4")),
    "CLIPLoaderGGUF": LoaderSpec("text_encoder", ("clip_name",)),
    "DualCLIPLoaderGGUF": LoaderSpec("text_encoder", ("clip_name1", "clip_name2")),
    "TripleCLIPLoaderGGUF": LoaderSpec("text_encoder", ("clip_name1", "clip_name2", "clip_name3")),
    "QuadrupleCLIPLoaderGGUF": LoaderSpec("text_encoder", ("clip_name1", "clip_name2", "clip_name3", "clip_name4")),
    "VAELoader": LoaderSpec("vae", ("vae_name",)),
    "DiffusersLoader": LoaderSpec("diffusers", ("model_path",)),
}
# MultiGPU classes that are not "<Loader>MultiGPU": the checkpoint loaders with a device per part.
_ADVANCED = {"CheckpointLoaderAdvancedMultiGPU": "CheckpointLoaderSimple", "CheckpointLoaderAdvancedDisTorch2MultiGPU": "CheckpointLoaderSimple"}
# Inputs the MultiGPU wrappers add; removed before a node is rewritten again.
MULTIGPU_INPUTS = frozenset({
    "device", "compute_device", "virtual_vram_gb", "donor_device", "expert_mode_allocations", "eject_models",
    "use_other_vram", "unet_device", "clip_device", "vae_device", "unet_compute_device", "unet_virtual_vram_gb",
    "unet_donor_device", "clip_compute_device", "clip_virtual_vram_gb", "clip_donor_device",
    "unet_expert_mode_allocations", "clip_expert_mode_allocations", "high_precision_loras",
})
# Where ComfyUI looks for each loader's files (folder_paths.py), under models/.
_FOLDERS: dict[Layout, tuple[str, ...]] = {
    "checkpoint": ("checkpoints",),
    "diffusion_model": ("diffusion_models", "unet"),
    "text_encoder": ("text_encoders", "clip"),
    "vae": ("vae",),
    "diffusers": ("diffusers",),
    "other": (),
}


@dataclass(frozen=True)
class LoaderNode:
    node_id: str
    class_type: str
    base: str  # the plain ComfyUI loader it is or wraps
    files: tuple[str, ...]  # the file names its inputs hold, as ComfyUI lists them

    @property
    def layout(self) -> Layout:
        return LOADERS[self.base].layout


ChangeAction = Literal["replace", "insert", "set"]


@dataclass(frozen=True)
class NodeChange:
    """One node rewritten (``replace``: its class and MultiGPU inputs), inserted
    (``insert``: a native node; ``links`` are the inputs re-pointed to it, as
    ``node.input``) or updated in place (``set``: a native node found there)."""

    node_id: str
    old_class: str
    new_class: str
    inputs: Mapping[str, Any]  # the inputs set
    note: str = ""
    action: ChangeAction = "replace"
    links: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "node": self.node_id, "action": self.action, "from": self.old_class, "to": self.new_class,
            "inputs": dict(self.inputs), "links": list(self.links), "note": self.note,
        }

    def describe(self) -> str:
        inputs = ", ".join(f"{k}={v!r}" for k, v in self.inputs.items())
        if self.action == "insert":
            fed = f"; feeds {', '.join(self.links)}" if self.links else ""
            return f"node {self.node_id}: new {self.new_class} ({inputs}) {self.note}{fed}"
        if self.action == "set":
            return f"node {self.node_id}: {self.new_class} set ({inputs}){'; feeds ' + ', '.join(self.links) if self.links else ''}"
        return f"node {self.node_id}: {self.old_class} -> {self.new_class} ({inputs})"


def _base(class_type: str) -> str | None:
    if class_type in _ADVANCED:
        return _ADVANCED[class_type]
    for suffix in ("DisTorch2MultiGPU", "DisTorchMultiGPU", "MultiGPU", ""):
        if class_type.endswith(suffix):
            base = class_type[: len(class_type) - len(suffix)] if suffix else class_type
            if base in LOADERS:
                return base
    return None


def find_loaders(wf: Workflow) -> list[LoaderNode]:
    """The loader nodes of a workflow, plain or already MultiGPU."""
    found = []
    for node_id, node in wf.prompt.items():
        base = _base(node["class_type"])
        if base is None:
            continue
        inputs = node.get("inputs", {})
        files = tuple(str(inputs[k]) for k in LOADERS[base].file_inputs if isinstance(inputs.get(k), str))
        found.append(LoaderNode(str(node_id), node["class_type"], base, files))
    return found


def model_folders(layout: Layout) -> tuple[str, ...]:
    """The folders under ComfyUI's models/ that a loader of ``layout`` reads."""
    return _FOLDERS[layout]


def _matches(name: str, model: ModelInfo) -> bool:
    # ComfyUI names files relative to their models/ folder, with "/" or "\\".
    wanted = PurePosixPath(name.replace("\\", "/"))
    path = model.path.resolve() if model.path.exists() else model.path
    return path.name == wanted.name and path.as_posix().endswith(wanted.as_posix())


def rewrite_workflow(
    wf: Workflow, plan: FitPlan, models: Sequence[ModelInfo]
) -> tuple[Workflow, list[NodeChange], list[str]]:
    """-> (the new workflow, what changed, notes). Raises WorkflowError when the
    workflow has no loader node at all."""
    loaders = find_loaders(wf)
    if not loaders:
        raise WorkflowError(
            f"The workflow {wf.source} has no loader node to rewrite (CheckpointLoaderSimple, UNETLoader, CLIPLoader, "
            "DualCLIPLoader, VAELoader, their GGUF versions or DiffusersLoader)."
        )
    out: Prompt = copy.deepcopy(wf.prompt)
    changes: list[NodeChange] = []
    notes: list[str] = []
    native = plan.native is not None and plan.native.placement
    for loader in loaders:
        placements = [
            p for p in plan.placements
            if any(_matches(f, p.model) for f in loader.files) and _wanted(loader.layout, p)
        ]
        unmatched = [f for f in loader.files if not any(_matches(f, m) for m in models)]
        if unmatched:
            notes.append(f"Node {loader.node_id} ({loader.class_type}) loads {', '.join(unmatched)}, which was not planned; left as it is.")
            continue
        if native:
            changes.extend(_native_loader(out, loader, placements))
            continue
        change = _rewrite_node(loader, placements, plan)
        if change is not None:
            _apply(out, change)
            changes.append(change)
        # A Select node left behind the loader by an earlier native rewrite would override the
        # device set here: back to "default", the loader's own choice.
        for kind, slot in _OUTPUTS[loader.layout].items():
            if kind in SELECT_NODES:
                reset = _select(out, loader, slot, kind, "default")
                if reset is not None:
                    changes.append(reset)
    split = plan.cfg_split
    if split is not None:
        for sampler in sampler_cfgs(Workflow(prompt=out, source=wf.source)):
            if sampler.cfg is not None and sampler.cfg > 1:
                change = _work_units(out, sampler.node_id, split.max_gpus, notes)
                if change is not None:
                    changes.append(change)
    elif plan.native is not None:
        # The target ComfyUI is known and this plan splits no CFG: max_gpus 1 makes no copies.
        for node_id, node in out.items():
            if node["class_type"] == "MultiGPU_WorkUnits" and node.get("inputs", {}).get("max_gpus") != 1:
                node["inputs"]["max_gpus"] = 1
                changes.append(NodeChange(node_id, "MultiGPU_WorkUnits", "MultiGPU_WorkUnits", {"max_gpus": 1},
                                          "this plan splits no CFG", "set"))
    if not changes and not notes:
        if native or split is not None:
            notes.append("Nothing to rewrite: the workflow already has the nodes this plan needs.")
        else:
            notes.append("Nothing to rewrite: the standard loaders already run this plan (everything on cuda:0).")
    return Workflow(prompt=out, source=wf.source), changes, notes


def _apply(out: Prompt, change: NodeChange) -> None:
    node = out[change.node_id]
    inputs = {k: v for k, v in node.get("inputs", {}).items() if k not in MULTIGPU_INPUTS}
    inputs.update(change.inputs)
    node["class_type"] = change.new_class
    node["inputs"] = inputs


# Which output of a loader carries each component (ComfyUI's nodes.py RETURN_TYPES).
_OUTPUTS: dict[Layout, dict[ComponentKind, int]] = {
    "checkpoint": {"diffusion_model": 0, "text_encoder": 1, "vae": 2},
    "diffusers": {"diffusion_model": 0, "text_encoder": 1, "vae": 2},
    "diffusion_model": {"diffusion_model": 0},
    "text_encoder": {"text_encoder": 0},
    "vae": {"vae": 0},
    "other": {},
}


def _native_loader(out: Prompt, loader: LoaderNode, placements: Sequence[PartPlacement]) -> list[NodeChange]:
    """ComfyUI's own loader, then a Select node on each output the plan moves."""
    changes = []
    if loader.class_type != loader.base:
        change = NodeChange(loader.node_id, loader.class_type, loader.base, {},
                            "ComfyUI's own loader: the native nodes place what it loads")
        _apply(out, change)
        changes.append(change)
    by_kind = {p.component.kind: p for p in placements}
    for kind, slot in _OUTPUTS[loader.layout].items():
        placed = by_kind.get(kind)
        if kind not in SELECT_NODES or placed is None:
            continue
        select = _select(out, loader, slot, kind, native_device(placed.device))
        if select is not None:
            changes.append(select)
    return changes


def _is_link(value: Any, node_id: str, slot: int) -> bool:
    return isinstance(value, list) and len(value) == 2 and str(value[0]) == node_id and value[1] == slot


def _users(out: Prompt, node_id: str, slot: int) -> list[tuple[str, str]]:
    """(node, input) pairs linked to output ``slot`` of ``node_id``, in workflow order."""
    return [(nid, name) for nid, node in out.items() for name, v in node.get("inputs", {}).items() if _is_link(v, node_id, slot)]


def _new_id(out: Prompt) -> str:
    """The next free numeric node id (ComfyUI's own ids are numbers as strings)."""
    numbers = [int(k) for k in out if k.isdigit()]
    n = max(numbers, default=0) + 1
    while str(n) in out:
        n += 1
    return str(n)


def _select(out: Prompt, loader: LoaderNode, slot: int, kind: ComponentKind, device: str) -> NodeChange | None:
    """Put a Select node of ``kind`` on output ``slot`` of ``loader``, all its users behind it."""
    cls, input_name, title = SELECT_NODES[kind]
    users = _users(out, loader.node_id, slot)
    found = next((nid for nid, name in users if out[nid]["class_type"] == cls and name == input_name), None)
    if found is None:
        if device == "default":
            return None
        found = _new_id(out)
        out[found] = {"class_type": cls, "inputs": {input_name: [loader.node_id, slot], "device": device}, "_meta": {"title": title}}
        for nid, name in users:
            out[nid]["inputs"][name] = [found, 0]
        return NodeChange(found, "", cls, {"device": device}, f"after node {loader.node_id} ({loader.class_type}) output {slot}",
                          "insert", tuple(f"{nid}.{name}" for nid, name in users))
    others = [(nid, name) for nid, name in users if nid != found]
    inputs = out[found]["inputs"]
    if inputs.get("device") == device and not others:
        return None
    inputs["device"] = device
    for nid, name in others:
        out[nid]["inputs"][name] = [found, 0]
    return NodeChange(found, cls, cls, {"device": device}, action="set", links=tuple(f"{nid}.{name}" for nid, name in others))


def _work_units(out: Prompt, sampler_id: str, max_gpus: int, notes: list[str]) -> NodeChange | None:
    """Put MultiGPU_WorkUnits on the ``model`` input of ``sampler_id`` (one per model source)."""
    sampler = out[sampler_id]
    link = sampler.get("inputs", {}).get("model")
    if not (isinstance(link, list) and len(link) == 2):
        notes.append(f"Node {sampler_id} ({sampler['class_type']}) has no model link: no MultiGPU_WorkUnits before it.")
        return None
    source = str(link[0])
    found: str | None = source
    if out.get(source, {}).get("class_type") != "MultiGPU_WorkUnits":
        found = next((nid for nid, n in out.items() if n["class_type"] == "MultiGPU_WorkUnits"
                      and _is_link(n.get("inputs", {}).get("model"), source, link[1])), None)
    if found is None:
        found = _new_id(out)
        out[found] = {"class_type": "MultiGPU_WorkUnits", "inputs": {"model": [source, link[1]], "max_gpus": max_gpus},
                      "_meta": {"title": "MultiGPU CFG Split"}}
        sampler["inputs"]["model"] = [found, 0]
        return NodeChange(found, "", "MultiGPU_WorkUnits", {"max_gpus": max_gpus},
                          f"between node {source} output {link[1]} and node {sampler_id} ({sampler['class_type']})",
                          "insert", (f"{sampler_id}.model",))
    inputs = out[found]["inputs"]
    relinked = not _is_link(link, found, 0)
    if inputs.get("max_gpus") == max_gpus and not relinked:
        return None
    inputs["max_gpus"] = max_gpus
    if relinked:
        sampler["inputs"]["model"] = [found, 0]
    return NodeChange(found, "MultiGPU_WorkUnits", "MultiGPU_WorkUnits", {"max_gpus": max_gpus}, action="set",
                      links=(f"{sampler_id}.model",) if relinked else ())


def suggested_nodes(plan: FitPlan, models: Sequence[ModelInfo]) -> list[tuple[str, NodeChange]]:
    """The native nodes the plan asks for, per file, as the rewrite would insert them."""
    native = plan.native
    if native is None:
        return []
    out: list[tuple[str, NodeChange]] = []
    if native.placement:
        for kind, (cls, _, _) in SELECT_NODES.items():
            moved = [p for p in plan.placements if p.component.kind == kind and p.device != "cuda:0"]
            for device in dict.fromkeys(p.device for p in moved):
                files = " + ".join(dict.fromkeys(p.model.name for p in moved if p.device == device))
                after = f"after the {COMPONENT_TITLES[kind]}'s loader"
                out.append((files, NodeChange("", "", cls, {"device": native_device(device)}, after, "insert")))
    if native.cfg_split is not None:
        files = " + ".join(dict.fromkeys(p.model.name for p in plan.placements if p.component.kind == "diffusion_model"))
        where = ", ".join(f"node {n}" for n in native.cfg_split.samplers)
        out.append((files, NodeChange("", "", "MultiGPU_WorkUnits", {"max_gpus": native.cfg_split.max_gpus},
                                      f"on the model input of {where}", "insert")))
    return out


def suggested_loaders(plan: FitPlan, models: Sequence[ModelInfo]) -> list[tuple[str, NodeChange]]:
    """The MultiGPU loader each planned file needs, as the rewrite would set it:
    (file names, change). Text encoders share one Dual/Triple/Quadruple loader.
    Files the standard loaders already serve are left out, and so is everything
    when the native nodes place the parts (``suggested_nodes``)."""
    if plan.verdict == "cpu" or (plan.native is not None and plan.native.placement):
        return []
    out: list[tuple[str, NodeChange]] = []
    groups: list[tuple[str, list[ModelInfo]]] = []
    te = [m for m in models if m.layout == "text_encoder"]
    for m in models:
        if m.layout in _PLAIN:
            base = "UnetLoaderGGUF" if m.layout == "diffusion_model" and m.format == "gguf" else _PLAIN[m.layout]
            groups.append((base, [m]))
    if te:
        count = {1: "", 2: "Dual", 3: "Triple", 4: "Quadruple"}.get(len(te), "Quadruple")
        groups.append((f"{count}CLIPLoader" + ("GGUF" if any(m.format == "gguf" for m in te) else ""), te))
    for base, members in groups:
        loader = LoaderNode("", base, base, tuple(m.name for m in members))
        paths = {m.path for m in members}
        placements = [p for p in plan.placements if p.model.path in paths and _wanted(loader.layout, p)]
        change = _rewrite_node(loader, placements, plan)
        if change is not None:
            out.append((" + ".join(loader.files), change))
    return out


_PLAIN: dict[Layout, str] = {
    "checkpoint": "CheckpointLoaderSimple",
    "diffusion_model": "UNETLoader",
    "vae": "VAELoader",
    "diffusers": "DiffusersLoader",
}


def _wanted(layout: Layout, p: PartPlacement) -> bool:
    if layout in ("checkpoint", "diffusers"):
        return True
    return p.component.kind == layout


def _rewrite_node(loader: LoaderNode, placements: Sequence[PartPlacement], plan: FitPlan) -> NodeChange | None:
    by_kind = {p.component.kind: p for p in placements}
    dm = by_kind.get("diffusion_model")
    te = by_kind.get("text_encoder")
    vae = by_kind.get("vae")
    # Swapping between RAM and cuda:0 is what ComfyUI does by itself: no MultiGPU node needed.
    default = all(p.device == "cuda:0" and not p.split for p in placements) or not placements
    if default and loader.class_type == loader.base:
        return None
    base = loader.base
    if loader.layout in ("diffusion_model", "diffusers") and dm is not None and dm.split:
        return NodeChange(loader.node_id, loader.class_type, f"{base}DisTorch2MultiGPU", _distorch_inputs(plan, dm), _SPLIT_NOTE)
    if loader.layout == "checkpoint" and dm is not None:
        te_dev = te.device if te else dm.device
        vae_dev = vae.device if vae else dm.device
        if dm.split:
            if te_dev == dm.device and vae_dev == dm.device:
                return NodeChange(loader.node_id, loader.class_type, "CheckpointLoaderSimpleDisTorch2MultiGPU", _distorch_inputs(plan, dm), _SPLIT_NOTE)
            d = _distorch_inputs(plan, dm)
            inputs = {
                "unet_compute_device": d["compute_device"],
                "unet_virtual_vram_gb": d["virtual_vram_gb"],
                "unet_donor_device": d["donor_device"],
                "clip_compute_device": te_dev,
                "clip_virtual_vram_gb": 0.0,
                "clip_donor_device": "cpu",
                "vae_device": vae_dev,
                "unet_expert_mode_allocations": d["expert_mode_allocations"],
                "clip_expert_mode_allocations": "",
                "high_precision_loras": True,
                "eject_models": True,
            }
            return NodeChange(loader.node_id, loader.class_type, "CheckpointLoaderAdvancedDisTorch2MultiGPU", inputs, _SPLIT_NOTE)
        if te_dev == dm.device and vae_dev == dm.device:
            return NodeChange(loader.node_id, loader.class_type, "CheckpointLoaderSimpleMultiGPU", {"device": dm.device})
        inputs = {"unet_device": dm.device, "clip_device": te_dev, "vae_device": vae_dev}
        return NodeChange(loader.node_id, loader.class_type, "CheckpointLoaderAdvancedMultiGPU", inputs)
    target = {"diffusion_model": dm, "diffusers": dm, "text_encoder": te, "vae": vae}.get(loader.layout)
    if target is None:
        return None
    return NodeChange(loader.node_id, loader.class_type, f"{base}MultiGPU", {"device": target.device})


def _distorch_inputs(plan: FitPlan, dm: PartPlacement) -> dict[str, Any]:
    d = next(x for x in plan.distorch if x.model.path == dm.model.path)
    return {
        "compute_device": d.compute_device,
        "virtual_vram_gb": d.virtual_vram_gb,
        "donor_device": d.donor_device,
        "expert_mode_allocations": d.expert,
        "eject_models": True,
    }


_SPLIT_NOTE = (
    "expert_mode_allocations decides the split; virtual_vram_gb (what leaves the compute device) "
    "feeds ComfyUI's memory accounting"
)
