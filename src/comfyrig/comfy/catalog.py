"""What a ComfyUI can run, from its ``/object_info``: its node types and the model files it lists.

Workers behind one gateway must agree on both: a prompt that uses a node type or a model one
worker lacks fails only where it is routed, which looks random to the client. Workers on
different machines (a Ray cluster without a shared disk) drift apart easily.

Model files are read from the loaders' inputs: ComfyUI lists a folder's files as the options of
a combo input (``ckpt_name``, ``lora_name``, ``vae_name``...), as ``[[...], {...}]`` up to 0.3.x
and also as ``["COMBO", {"options": [...]}]`` in newer versions. Inputs that list uploads
(``image_upload`` and the like: LoadImage's input folder, which differs by design until a file
is uploaded) are not models, nor are options without a model file's extension (sampler names).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Catalog", "CatalogDiff", "catalog_of"]

MODEL_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".sft", ".onnx", ".pt2", ".pkl")
UPLOAD_FLAGS = ("image_upload", "video_upload", "audio_upload", "file_upload", "upload")


@dataclass(frozen=True)
class Catalog:
    nodes: frozenset[str]
    models: frozenset[str]  # "file name" as ComfyUI lists it (sub-folder included)


@dataclass(frozen=True)
class CatalogDiff:
    """What ``other`` lacks compared with ``reference``, and what it has beyond it (sorted)."""

    missing_nodes: tuple[str, ...]
    extra_nodes: tuple[str, ...]
    missing_models: tuple[str, ...]
    extra_models: tuple[str, ...]

    @classmethod
    def between(cls, reference: Catalog, other: Catalog) -> CatalogDiff:
        return cls(tuple(sorted(reference.nodes - other.nodes)), tuple(sorted(other.nodes - reference.nodes)),
                   tuple(sorted(reference.models - other.models)), tuple(sorted(other.models - reference.models)))

    def __bool__(self) -> bool:
        return bool(self.missing_nodes or self.extra_nodes or self.missing_models or self.extra_models)

    def describe(self, reference: str, limit: int = 10) -> str:
        """One clause per kind of difference, e.g. "lacks node types A, B; lacks models x.safetensors"."""
        parts = []
        for words, names in (("lacks node type(s)", self.missing_nodes), ("lacks model(s)", self.missing_models),
                             (f"has node type(s) {reference} lacks:", self.extra_nodes),
                             (f"has model(s) {reference} lacks:", self.extra_models)):
            if names:
                more = f" and {len(names) - limit} more" if len(names) > limit else ""
                parts.append(f"{words} {', '.join(names[:limit])}{more}")
        return "; ".join(parts)


def catalog_of(object_info: Mapping[str, Any]) -> Catalog:
    """The node types and model files of one ``/object_info`` answer (anything malformed in a
    node's description is skipped, never raised)."""
    models: set[str] = set()
    for node in object_info.values():
        for options in _combo_options(node):
            models.update(o for o in options if isinstance(o, str) and o.lower().endswith(MODEL_SUFFIXES))
    return Catalog(frozenset(object_info), frozenset(models))


def _combo_options(node: Any) -> Iterator[list[Any]]:
    inputs = node.get("input") if isinstance(node, dict) else None
    if not isinstance(inputs, dict):
        return
    for group in ("required", "optional"):
        specs = inputs.get(group)
        if not isinstance(specs, dict):
            continue
        for spec in specs.values():
            if not isinstance(spec, (list, tuple)) or not spec:
                continue
            extra = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            if any(extra.get(flag) for flag in UPLOAD_FLAGS):
                continue
            if isinstance(spec[0], list):
                yield spec[0]
            elif spec[0] == "COMBO" and isinstance(extra.get("options"), list):
                yield extra["options"]
