"""Node types and model files from /object_info, on answers recorded from real ComfyUI 0.24.0 and
0.3.64 (trimmed to a few nodes; models/ held sd15.safetensors and a LoRA detail.safetensors)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from comfyrig.comfy.catalog import Catalog, CatalogDiff, catalog_of

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize("version", ["0.24.0", "0.3.64"])
def test_models_are_the_loaders_files_not_uploads_or_sampler_names(version: str) -> None:
    info = json.loads((FIXTURES / f"object_info-{version}.json").read_text())
    catalog = catalog_of(info)
    assert catalog.models == {"sd15.safetensors", "detail.safetensors"}
    assert {"LoadImage", "KSampler", "CheckpointLoaderSimple"} <= catalog.nodes
    # An uploaded image is listed by LoadImage: it differs between workers until uploaded everywhere.
    info["LoadImage"]["input"]["required"]["image"][0] = ["cat.png", "weights.safetensors"]
    assert catalog_of(info).models == catalog.models


def test_both_combo_shapes_and_malformed_nodes() -> None:
    info = {
        "New": {"input": {"optional": {"unet": ["COMBO", {"options": ["flux/dev.sft", "none"]}]}}},
        "Old": {"input": {"required": {"vae": [["ae.safetensors"]]}}},
        "Broken": {"input": {"required": {"x": "not a spec", "y": [], "z": [None]}}},
        "Odd": 5,
        "NoInputs": {"input": None},
    }
    assert catalog_of(info) == Catalog(frozenset(info), frozenset({"flux/dev.sft", "ae.safetensors"}))


def test_a_difference_names_nodes_and_models_each_way() -> None:
    ref = Catalog(frozenset({"A", "B", "C"}), frozenset({"sd15.safetensors", "lora.safetensors"}))
    other = Catalog(frozenset({"A", "D"}), frozenset({"sd15.safetensors", "x.gguf"}))
    diff = CatalogDiff.between(ref, other)
    assert diff and diff == CatalogDiff(("B", "C"), ("D",), ("lora.safetensors",), ("x.gguf",))
    assert diff.describe("ray-0") == ("lacks node type(s) B, C; lacks model(s) lora.safetensors; has node type(s) ray-0 "
                                      "lacks: D; has model(s) ray-0 lacks: x.gguf")
    assert not CatalogDiff.between(ref, ref)
    many = CatalogDiff(tuple(f"N{i}" for i in range(12)), (), (), ())
    assert many.describe("w", limit=10).endswith("N9 and 2 more")
