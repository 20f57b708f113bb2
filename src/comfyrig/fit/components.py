"""What is inside a model file: components by key prefix, family, repeated blocks.

Pure functions over headers (``header.py``). Sizes are bytes. Three sizes are
kept per component: in the file; once ComfyUI loaded it on a GPU (float32 and
float64 weights become 16-bit there: ``unet_dtype``, ``text_encoder_dtype`` and
``vae_dtype`` pick fp16/bf16 on CUDA; 8-bit and GGUF-quantised weights stay as
stored); and once loaded with ``--cpu`` (diffusion model and VAE in float32,
text encoders in fp16, as ComfyUI does on a CPU device).

Key prefixes are ComfyUI's (``comfy/model_detection.py::unet_prefix_from_state_dict``
and the ``vae_key_prefix``/``text_encoder_key_prefix`` of ``comfy/supported_models.py``);
diffusers pipelines are recognised by their sub-folder names.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..errors import ModelFileError
from .header import ModelHeader, TensorInfo, read_header

__all__ = [
    "COMPONENT_TITLES",
    "FAMILIES",
    "BlockGroup",
    "Component",
    "ComponentKind",
    "Family",
    "FamilyInfo",
    "Layout",
    "ModelInfo",
    "analyze_headers",
    "analyze_model",
]

ComponentKind = Literal["diffusion_model", "text_encoder", "vae", "other"]
COMPONENT_TITLES: dict[ComponentKind, str] = {
    "diffusion_model": "diffusion model",
    "text_encoder": "text encoder",
    "vae": "VAE",
    "other": "other",
}
# Which ComfyUI loader reads the file: decides the MultiGPU node to suggest.
Layout = Literal["checkpoint", "diffusion_model", "text_encoder", "vae", "diffusers", "other"]

Family = Literal[
    "sd15", "sd2", "sdxl", "sd3", "flux", "chroma", "auraflow", "pixart", "hunyuan_video",
    "wan", "ltxv", "lumina2", "hidream", "qwen_image", "unknown",
]


@dataclass(frozen=True)
class FamilyInfo:
    """Inputs of ComfyUI's activation estimate (``BaseModel.memory_required``).

    ``memory_usage_factor`` is the value in ``comfy/supported_models.py``;
    ``cfg`` doubles the batch (cond + uncond); ``frames`` is the default number
    of latent frames for video families; ``downscale`` the latent's spatial factor.
    """

    title: str
    memory_usage_factor: float
    cfg: bool
    resolution: tuple[int, int]  # width, height in pixels
    frames: int = 1
    downscale: int = 8


FAMILIES: dict[Family, FamilyInfo] = {
    "sd15": FamilyInfo("SD 1.x", 1.0, True, (512, 512)),
    "sd2": FamilyInfo("SD 2.x", 1.0, True, (768, 768)),
    "sdxl": FamilyInfo("SDXL", 0.8, True, (1024, 1024)),
    "sd3": FamilyInfo("SD3", 1.2, True, (1024, 1024)),
    "flux": FamilyInfo("Flux", 3.1, False, (1024, 1024)),
    "chroma": FamilyInfo("Chroma", 3.2, True, (1024, 1024)),
    "auraflow": FamilyInfo("AuraFlow", 2.0, True, (1024, 1024)),
    "pixart": FamilyInfo("PixArt", 0.5, True, (1024, 1024)),
    "hunyuan_video": FamilyInfo("HunyuanVideo", 1.8, False, (848, 480), frames=19),  # 73 frames
    "wan": FamilyInfo("Wan", 0.9, True, (832, 480), frames=21),  # 81 frames; factor scaled by width
    "ltxv": FamilyInfo("LTX-Video", 5.5, True, (768, 512), frames=13, downscale=32),  # 97 frames
    "lumina2": FamilyInfo("Lumina 2", 1.4, True, (1024, 1024)),
    "hidream": FamilyInfo("HiDream", 2.0, True, (1024, 1024)),
    "qwen_image": FamilyInfo("Qwen-Image", 1.8, True, (1328, 1328)),
    "unknown": FamilyInfo("unknown family", 2.0, True, (1024, 1024)),
}

# Checkpoint prefixes, most specific first. ComfyUI takes the diffusion-model
# prefix with more than 5 keys, falling back to "model." (AuraFlow and others).
_DM_PREFIXES = ("model.diffusion_model.", "model.model.", "net.")
_VAE_PREFIXES = ("first_stage_model.", "vae.", "pretransform.model.")
_CLIP_VISION_PREFIXES = ("clip_vision.", "embedder.model.visual.", "clip_l_vision.", "conditioner.embedders.0.open_clip.model.visual.", "cond_stage_model.model.visual.")
_TE_PREFIXES = ("cond_stage_model.", "conditioner.embedders.", "text_encoders.", "text_encoder.")

# Diffusers pipeline sub-folders.
_FOLDER_KINDS: tuple[tuple[str, ComponentKind], ...] = (
    ("transformer", "diffusion_model"), ("unet", "diffusion_model"), ("prior", "diffusion_model"),
    ("text_encoder", "text_encoder"), ("vae", "vae"),
)

_TE_MARKERS = (
    "encoder.block.", "shared.weight", "text_model.", "transformer.text_model.", "clip_l.", "clip_g.", "t5xxl.",
    "model.embed_tokens.", "model.layers.", "lm_head.", "token_embd.", "blk.", "enc.blk.", "transformer.resblocks.",
    "encoder.embed_tokens.",
)
_TE_ARCHS = {"t5", "t5encoder", "umt5", "llama", "qwen2", "qwen2vl", "qwen3", "gemma", "gemma2", "gemma3", "clip", "mistral3"}
_DM_ARCHS: dict[str, Family] = {"flux": "flux", "sd1": "sd15", "sdxl": "sdxl", "sd3": "sd3", "aura": "auraflow", "ltxv": "ltxv",
             "hyvid": "hunyuan_video", "wan": "wan", "lumina2": "lumina2", "hidream": "hidream", "qwen_image": "qwen_image",
             "chroma": "chroma"}
_DM_MARKERS = (
    "input_blocks.", "double_blocks.", "single_blocks.", "joint_blocks.", "blocks.", "transformer_blocks.",
    "single_transformer_blocks.", "layers.", "double_layers.", "down_blocks.", "img_in.", "x_embedder", "time_embed",
    "time_in.", "patch_embedding.", "adaln_single.", "t_block.", "cap_embedder.",
)

# DisTorch leaves modules under this share of the model on the compute device
# (distorch_2.py: MIN_BLOCK_THRESHOLD = total_memory * 0.0001).
DISTORCH_TINY_SHARE = 0.0001
_FLOAT_TYPES = {"F16", "BF16", "F32", "F64"}


@dataclass(frozen=True)
class BlockGroup:
    """A run of numbered, repeated blocks (``double_blocks.0`` .. ``double_blocks.18``)."""

    name: str
    count: int
    bytes_total: int  # once loaded on a GPU
    bytes_max: int  # the largest single block

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "count": self.count, "bytes_total": self.bytes_total, "bytes_max": self.bytes_max}


@dataclass(frozen=True)
class Component:
    """One part of a model: the diffusion model, text encoder(s), VAE, or other weights."""

    kind: ComponentKind
    label: str
    prefix: str
    tensor_count: int
    file_bytes: int
    gpu_bytes: int  # once ComfyUI loaded it on a GPU
    cpu_bytes: int  # once ComfyUI loaded it with --cpu
    dtype_bytes: Mapping[str, int]  # file bytes per dtype
    blocks: tuple[BlockGroup, ...] = ()
    largest_module: int = 0  # GPU bytes of the largest leaf module (what DisTorch moves)
    pinned_bytes: int = 0  # modules DisTorch never moves off the compute device
    loaded: bool = True  # False for checkpoint leftovers (EMA copies, schedule buffers)

    @property
    def title(self) -> str:
        return COMPONENT_TITLES[self.kind]

    def to_json(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "label": self.label,
            "prefix": self.prefix,
            "tensors": self.tensor_count,
            "file_bytes": self.file_bytes,
            "gpu_bytes": self.gpu_bytes,
            "cpu_bytes": self.cpu_bytes,
            "dtype_bytes": dict(self.dtype_bytes),
            "blocks": [b.to_json() for b in self.blocks],
            "largest_module_bytes": self.largest_module,
            "pinned_bytes": self.pinned_bytes,
            "loaded": self.loaded,
        }


@dataclass(frozen=True)
class ModelInfo:
    """A MODEL argument: one file or a folder of shards, analysed from headers only."""

    path: Path
    format: Literal["safetensors", "gguf", "folder"]
    files: tuple[Path, ...]
    file_bytes: int
    tensor_count: int
    layout: Layout
    family: Family
    memory_usage_factor: float
    components: tuple[Component, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def dtype_bytes(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for c in self.components:
            for dtype, n in c.dtype_bytes.items():
                out[dtype] += n
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def of_kind(self, kind: ComponentKind) -> tuple[Component, ...]:
        return tuple(c for c in self.components if c.kind == kind and c.loaded)

    def to_json(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "format": self.format,
            "files": [str(f) for f in self.files],
            "file_bytes": self.file_bytes,
            "tensors": self.tensor_count,
            "layout": self.layout,
            "family": self.family,
            "dtype_bytes": self.dtype_bytes,
            "components": [c.to_json() for c in self.components],
            "notes": list(self.notes),
        }


def analyze_model(path: Path) -> ModelInfo:
    """Read the header(s) of a file or a folder of shards; raises ModelFileError."""
    if path.is_dir():
        files = sorted(
            p for p in path.rglob("*")
            if p.is_file() and p.suffix.lower() in (".safetensors", ".sft", ".gguf")
        )
        if not files:
            raise ModelFileError(
                f"The folder {path} holds no .safetensors or .gguf file.",
                hint="Give a model file, or a folder of safetensors shards or a diffusers pipeline.",
            )
        headers = [read_header(f) for f in files]
        if not any(h.tensors for h in headers):
            raise ModelFileError(f"The folder {path} holds model files, but none lists a tensor.",
                                 hint="Check the download or the export that wrote them.")
        return analyze_headers(path, headers, folder=True)
    if not path.exists():
        raise ModelFileError(f"{path}: no such file or folder.")
    header = read_header(path)
    if not header.tensors:
        # An empty model "fits on one GPU": true, and useless; it is a broken download or export.
        raise ModelFileError(f"{path} holds no tensors: its header is valid but lists no weights.",
                             hint="Check the download or the export that wrote it.")
    return analyze_headers(path, [header], folder=False)


def analyze_headers(path: Path, headers: Sequence[ModelHeader], *, folder: bool) -> ModelInfo:
    """Group the tensors of one or more headers (shards) into components."""
    groups: dict[tuple[ComponentKind, str, bool], list[TensorInfo]] = defaultdict(list)
    arch = next((h.metadata.get("general.architecture") for h in headers if h.metadata.get("general.architecture")), None)
    for h in headers:
        hint = _folder_hint(h.path, path) if folder else None
        for (kind, prefix, loaded), tensors in _split(h.tensors, hint, arch).items():
            groups[(kind, prefix, loaded)].extend(tensors)
    dm_tensors = [t for (kind, prefix, loaded), ts in groups.items() if kind == "diffusion_model" for t in ts]
    dm_prefix = next((p for (k, p, _) in groups if k == "diffusion_model"), "")
    family, factor = _detect_family(dm_tensors, dm_prefix, arch)
    components = tuple(
        _component(kind, prefix, loaded, tensors, family)
        for (kind, prefix, loaded), tensors in sorted(groups.items(), key=lambda kv: _KIND_ORDER[kv[0][0]])
    )
    kinds = {c.kind for c in components if c.loaded}
    notes: list[str] = []
    subdirs = {h.path.relative_to(path).parts[0] for h in headers if folder and len(h.path.relative_to(path).parts) > 1}
    if folder and "unet" in subdirs:
        layout: Layout = "diffusers"
    elif "diffusion_model" in kinds and kinds & {"text_encoder", "vae"}:
        layout = "checkpoint"
    elif len(kinds) == 1:
        layout = next(iter(kinds))
    else:
        layout = "other"
    if folder and layout not in ("diffusers",) and len(headers) > 1:
        notes.append(
            f"{path.name} is a folder of {len(headers)} shards: ComfyUI's loaders read one file, "
            "so merge the shards into one .safetensors before loading it."
        )
    skipped = [c for c in components if not c.loaded]
    if skipped:
        notes.append(
            f"{sum(c.file_bytes for c in skipped):,} bytes of {path.name} are not loaded by ComfyUI "
            f"({', '.join(c.label for c in skipped)}) and are not planned."
        )
    if not kinds:
        raise ModelFileError(f"{path} holds no tensors ComfyUI would load.")
    formats = {h.format for h in headers}
    return ModelInfo(
        path=path,
        format="folder" if folder else headers[0].format,
        files=tuple(h.path for h in headers),
        file_bytes=sum(h.file_size for h in headers),
        tensor_count=sum(len(h.tensors) for h in headers),
        layout=layout,
        family=family if "diffusion_model" in kinds else "unknown",
        memory_usage_factor=factor,
        components=components,
        notes=tuple(notes) + (("Mixes GGUF and safetensors shards.",) if len(formats) > 1 else ()),
    )


_KIND_ORDER: dict[ComponentKind, int] = {"diffusion_model": 0, "text_encoder": 1, "vae": 2, "other": 3}


def _folder_hint(file: Path, root: Path) -> ComponentKind | None:
    parts = file.relative_to(root).parts
    if len(parts) < 2:
        return None
    top = parts[0].lower()
    return next((kind for name, kind in _FOLDER_KINDS if top.startswith(name)), None)


def _split(
    tensors: Sequence[TensorInfo], hint: ComponentKind | None, arch: str | None
) -> dict[tuple[ComponentKind, str, bool], list[TensorInfo]]:
    """Assign each tensor to (kind, prefix, loaded)."""
    if hint is not None:
        return {(hint, "", True): list(tensors)}
    names = [t.name for t in tensors]
    counts = {p: sum(1 for n in names if n.startswith(p)) for p in _DM_PREFIXES}
    dm_prefix = max(counts, key=lambda p: counts[p])
    has_dm = counts[dm_prefix] > 5
    has_parts = any(n.startswith(_VAE_PREFIXES + _TE_PREFIXES) for n in names)
    if not has_dm and has_parts and sum(1 for n in names if n.startswith("model.")) > 5:
        dm_prefix, has_dm = "model.", True
    if has_dm or has_parts:
        out: dict[tuple[ComponentKind, str, bool], list[TensorInfo]] = defaultdict(list)
        for t in tensors:
            out[_checkpoint_slot(t.name, dm_prefix if has_dm else None)].append(t)
        return out
    return {(_standalone_kind(names, arch), "", True): list(tensors)}


def _checkpoint_slot(name: str, dm_prefix: str | None) -> tuple[ComponentKind, str, bool]:
    if dm_prefix and name.startswith(dm_prefix):
        return ("diffusion_model", dm_prefix, True)
    for p in _VAE_PREFIXES:
        if name.startswith(p):
            return ("vae", p, True)
    for p in _CLIP_VISION_PREFIXES:
        if name.startswith(p):
            return ("other", p, True)
    for p in _TE_PREFIXES:
        if name.startswith(p):
            return ("text_encoder", p, True)
    # EMA copies, noise-schedule buffers and the like: the checkpoint loader ignores them.
    return ("other", "", False)


def _standalone_kind(names: Sequence[str], arch: str | None) -> ComponentKind:
    if arch in _TE_ARCHS:
        return "text_encoder"
    if arch in _DM_ARCHS:
        return "diffusion_model"
    t5_like = any(n.startswith(("encoder.block.", "decoder.block.", "enc.blk.")) for n in names)
    if not t5_like and any(n.startswith("decoder.") for n in names):
        return "vae"
    if any(n.startswith(_TE_MARKERS) for n in names):
        return "text_encoder"
    if any(n.startswith(_DM_MARKERS) for n in names):
        return "diffusion_model"
    return "other"


def _detect_family(tensors: Sequence[TensorInfo], prefix: str, arch: str | None) -> tuple[Family, float]:
    """Recognise the family from signature keys, as comfy/model_detection.py does."""
    shapes = {t.name[len(prefix):]: t.shape for t in tensors if t.name.startswith(prefix)}
    has = shapes.__contains__

    def starts(p: str) -> bool:
        return any(k.startswith(p) for k in shapes)

    family: Family = "unknown"
    if has("joint_blocks.0.context_block.attn.qkv.weight") or (has("transformer_blocks.0.attn.add_q_proj.weight") and has("pos_embed.proj.weight")):
        family = "sd3"
    elif has("double_blocks.0.img_attn.norm.key_norm.scale") and starts("distilled_guidance_layer."):
        family = "chroma"
    elif has("txt_in.individual_token_refiner.blocks.0.norm1.weight"):
        family = "hunyuan_video"
    elif has("double_blocks.0.img_attn.norm.key_norm.scale") or (has("x_embedder.weight") and starts("single_transformer_blocks.")):
        family = "flux"
    elif has("head.modulation"):
        dim = shapes["head.modulation"][-1] if shapes["head.modulation"] else 2222
        return "wan", round(dim / 2222, 3)
    elif has("double_layers.0.attn.w1q.weight") or has("joint_transformer_blocks.0.attn.add_k_proj.weight"):
        family = "auraflow"
    elif has("adaln_single.emb.timestep_embedder.linear_1.bias"):
        family = "pixart" if has("pos_embed.proj.bias") else "ltxv"
    elif has("t_block.1.weight"):
        family = "pixart"
    elif has("cap_embedder.1.weight"):
        family = "lumina2"
    elif has("caption_projection.0.linear.weight"):
        family = "hidream"
    elif has("txt_norm.weight") and starts("transformer_blocks."):
        family = "qwen_image"
    elif starts("input_blocks.") or has("conv_in.weight"):
        family = _unet_family(shapes)
    elif arch in _DM_ARCHS:
        family = _DM_ARCHS[arch]
    return family, FAMILIES[family].memory_usage_factor


def _unet_family(shapes: Mapping[str, tuple[int, ...]]) -> Family:
    # Cross-attention width: 768 SD1, 1024 SD2, 2048 SDXL (1280 for the refiner).
    for key in (
        "input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight",
        "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight",
        "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight",
        "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight",
    ):
        shape = shapes.get(key)
        if shape and len(shape) == 2:
            widths: dict[int, Family] = {768: "sd15", 1024: "sd2"}
            return widths.get(shape[1], "sdxl")
    adm = any(k.startswith(("label_emb.", "add_embedding.")) for k in shapes)
    return "sdxl" if adm else "sd15"


def _gpu_bytes(t: TensorInfo) -> int:
    return t.numel * 2 if t.dtype in ("F32", "F64") else t.nbytes


def _cpu_bytes(t: TensorInfo, kind: ComponentKind) -> int:
    if t.dtype not in _FLOAT_TYPES:
        return t.nbytes
    return t.numel * (2 if kind == "text_encoder" else 4)


def _component(kind: ComponentKind, prefix: str, loaded: bool, tensors: Sequence[TensorInfo], family: Family) -> Component:
    dtype_bytes: dict[str, int] = defaultdict(int)
    modules: dict[str, int] = defaultdict(int)
    blocks: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    gpu = cpu = 0
    for t in tensors:
        g = _gpu_bytes(t)
        gpu += g
        cpu += _cpu_bytes(t, kind)
        dtype_bytes[t.dtype] += t.nbytes
        local = t.name[len(prefix):]
        modules[local.rpartition(".")[0]] += g
        container, index = _block_of(local)
        if container:
            blocks[container][index] += g
    groups = tuple(
        BlockGroup(name=name, count=len(sizes), bytes_total=sum(sizes.values()), bytes_max=max(sizes.values()))
        for name, sizes in blocks.items()
        if len(sizes) >= 4
    )
    threshold = gpu * DISTORCH_TINY_SHARE
    return Component(
        kind=kind,
        label=_label(kind, prefix, loaded, [t.name for t in tensors], family),
        prefix=prefix,
        tensor_count=len(tensors),
        file_bytes=sum(t.nbytes for t in tensors),
        gpu_bytes=gpu,
        cpu_bytes=cpu,
        dtype_bytes=dict(sorted(dtype_bytes.items(), key=lambda kv: -kv[1])),
        blocks=tuple(sorted(groups, key=lambda g: -g.bytes_total)),
        largest_module=max(modules.values(), default=0),
        pinned_bytes=sum(v for v in modules.values() if v < threshold),
        loaded=loaded,
    )


_NUMBERED = re.compile(r"\.(\d+)(?:\.|$)")


def _block_of(name: str) -> tuple[str, str]:
    """("double_blocks", "3") for "double_blocks.3.img_attn.qkv.weight"; ("", "") if unnumbered."""
    m = _NUMBERED.search(name)
    if not m:
        return "", ""
    return name[: m.start()], m.group(1)


def _label(kind: ComponentKind, prefix: str, loaded: bool, names: Iterable[str], family: Family) -> str:
    if not loaded:
        return "unused weights"
    if kind == "diffusion_model":
        return f"{FAMILIES[family].title} diffusion model" if family != "unknown" else "diffusion model"
    if kind == "vae":
        return "VAE"
    if kind == "other":
        return "CLIP vision" if prefix in _CLIP_VISION_PREFIXES else "other weights"
    found: list[str] = []
    for n in names:
        for marker, what, anywhere in _TE_KINDS:
            if what not in found and (marker in n if anywhere else n.startswith(marker)):
                found.append(what)
    if "CLIP-L" in found or "CLIP-G" in found:
        found = [f for f in found if f != "CLIP"]
    return "text encoder (" + ", ".join(found) + ")" if found else "text encoder"


# (marker, name, whether the marker may appear after a prefix)
_TE_KINDS = (
    ("encoder.block.", "T5", True), ("enc.blk.", "T5", False), ("t5xxl.", "T5", True),
    ("clip_l.", "CLIP-L", True), ("clip_g.", "CLIP-G", True),
    ("embedders.0.transformer.", "CLIP-L", True), ("embedders.1.model.", "CLIP-G", True),
    ("text_model.", "CLIP", True), ("transformer.resblocks.", "CLIP", True),
    ("model.layers.", "LLM", True), ("blk.", "LLM", False),
)
