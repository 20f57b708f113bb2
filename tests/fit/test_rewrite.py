"""Workflow rewrite: loaders become their ComfyUI-MultiGPU twins, every link stays."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from comfyrig.comfy.workflow import workflow_from_json
from comfyrig.errors import WorkflowError
from comfyrig.fit.components import ModelInfo, analyze_model
from comfyrig.fit.fit import GIB, FitPlan, default_reserve, plan_fit
from comfyrig.fit.rewrite import NodeChange, find_loaders, rewrite_workflow
from comfyrig.host.gpus.simulated import parse_simulated
from tests.fit.layouts import (
    clip_l_layout,
    flux_layout,
    sdxl_checkpoint_layout,
    t5xxl_layout,
    vae_layout,
    write_sparse_safetensors,
)

# Inputs the DisTorch2 wrappers add (ComfyUI-MultiGPU wrappers.py, _create_distorch_safetensor_v2_override).
DISTORCH2_INPUTS = {"compute_device", "virtual_vram_gb", "donor_device", "expert_mode_allocations", "eject_models"}


def flux_workflow() -> dict[str, Any]:
    return {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": "flux/flux1-dev.safetensors", "weight_dtype": "default"}},
        "2": {"class_type": "DualCLIPLoader", "inputs": {"clip_name1": "clip_l.safetensors", "clip_name2": "t5xxl_fp16.safetensors", "type": "flux", "device": "default"}},
        "3": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red fox", "clip": ["2", 0]}},
        "5": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 1024, "height": 1024, "batch_size": 1}},
        "6": {"class_type": "KSampler", "inputs": {"model": ["1", 0], "positive": ["4", 0], "negative": ["4", 0], "latent_image": ["5", 0],
                                                     "seed": 1, "steps": 20, "cfg": 1.0, "sampler_name": "euler", "scheduler": "simple", "denoise": 1.0}},
        "7": {"class_type": "VAEDecode", "inputs": {"samples": ["6", 0], "vae": ["3", 0]}},
        "8": {"class_type": "SaveImage", "inputs": {"images": ["7", 0], "filename_prefix": "fox"}},
    }


def rewrite(prompt: dict[str, Any], plan: FitPlan, models: list[ModelInfo]) -> tuple[dict[str, Any], list[NodeChange], list[str]]:
    """rewrite_workflow on the one Workflow type, for API-format dicts."""
    new, changes, notes = rewrite_workflow(workflow_from_json(prompt, "wf.json"), plan, models)
    assert new.source == "wf.json" and new.ui is None
    return new.prompt, changes, notes


def links(workflow: dict[str, Any]) -> set[tuple[str, str, str, int]]:
    return {
        (node_id, name, value[0], value[1])
        for node_id, node in workflow.items()
        for name, value in node["inputs"].items()
        if isinstance(value, list)
    }


@pytest.fixture(scope="module")
def flux_models(tmp_path_factory: pytest.TempPathFactory) -> list[ModelInfo]:
    d = tmp_path_factory.mktemp("models")
    files = {
        "flux/flux1-dev.safetensors": flux_layout(),
        "clip_l.safetensors": clip_l_layout(),
        "t5xxl_fp16.safetensors": t5xxl_layout(),
        "ae.safetensors": vae_layout(),
    }
    for name, layout in files.items():
        write_sparse_safetensors(d / name, layout)
    return [analyze_model(d / name) for name in files]


def two_3090s() -> Any:
    return parse_simulated([{"name": "RTX 3090", "memory_total_mib": 24576, "memory_used_mib": 500}] * 2).gpus


def flux_plan(models: list[ModelInfo]) -> FitPlan:
    return plan_fit(models, two_3090s(), reserve=default_reserve("flux", 3.1, None), ram_available=64 * GIB)


def test_flux_workflow_rewritten_for_two_gpus(flux_models: list[ModelInfo]) -> None:
    plan = flux_plan(flux_models)
    original = flux_workflow()
    new, changes, notes = rewrite(original, plan, flux_models)
    assert original == flux_workflow()  # the input is not modified
    assert {c.node_id: c.new_class for c in changes} == {
        "1": "UNETLoaderDisTorch2MultiGPU",
        "2": "DualCLIPLoaderMultiGPU",
        "3": "VAELoaderMultiGPU",
    }
    unet = new["1"]["inputs"]
    assert set(unet) == {"unet_name", "weight_dtype"} | DISTORCH2_INPUTS
    assert unet["expert_mode_allocations"] == plan.distorch[0].expert and unet["compute_device"] == "cuda:0"
    assert unet["virtual_vram_gb"] == plan.distorch[0].virtual_vram_gb and unet["donor_device"] == "cuda:1"
    assert new["2"]["inputs"] == {"clip_name1": "clip_l.safetensors", "clip_name2": "t5xxl_fp16.safetensors", "type": "flux", "device": "cuda:1"}
    assert new["3"]["inputs"] == {"vae_name": "ae.safetensors", "device": "cuda:1"}
    assert links(new) == links(original)
    for node_id in ("4", "5", "6", "7", "8"):
        assert new[node_id] == original[node_id]
    assert notes == []
    # Planning the rewritten workflow again gives the same workflow.
    again, _, _ = rewrite(new, plan, flux_models)
    assert again == new


def test_unplanned_files_are_left_alone(flux_models: list[ModelInfo]) -> None:
    plan = flux_plan(flux_models)
    wf = flux_workflow()
    wf["9"] = {"class_type": "VAELoader", "inputs": {"vae_name": "other_vae.safetensors"}}
    new, changes, notes = rewrite(wf, plan, flux_models)
    assert new["9"] == wf["9"] and "9" not in {c.node_id for c in changes}
    assert any("other_vae.safetensors" in n and "not planned" in n for n in notes)


def test_single_gpu_plan_needs_no_rewrite(tmp_path: Path) -> None:
    write_sparse_safetensors(tmp_path / "sdxl.safetensors", sdxl_checkpoint_layout())
    sdxl = analyze_model(tmp_path / "sdxl.safetensors")
    plan = plan_fit([sdxl], parse_simulated([{"name": "A", "memory_total_mib": 12288}]).gpus,
                    reserve=default_reserve("sdxl", 0.8, None), ram_available=None)
    wf = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl.safetensors"}},
          "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "x", "clip": ["1", 1]}}}
    new, changes, notes = rewrite(wf, plan, [sdxl])
    assert new == wf and changes == [] and "Nothing to rewrite" in notes[0]


def test_split_checkpoint_with_clip_elsewhere_uses_the_advanced_distorch_loader(tmp_path: Path) -> None:
    write_sparse_safetensors(tmp_path / "sdxl.safetensors", sdxl_checkpoint_layout())
    sdxl = analyze_model(tmp_path / "sdxl.safetensors")
    small = parse_simulated([{"name": "A", "memory_total_mib": 6144, "memory_used_mib": 100}] * 2).gpus
    plan = plan_fit([sdxl], small, reserve=default_reserve("sdxl", 0.8, None), ram_available=32 * GIB)
    assert plan.verdict == "multi" and plan.distorch
    wf = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl.safetensors"}},
          "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "x", "clip": ["1", 1]}},
          "3": {"class_type": "VAEDecode", "inputs": {"samples": ["2", 0], "vae": ["1", 2]}}}
    new, _changes, _ = rewrite(wf, plan, [sdxl])
    node = new["1"]
    assert node["class_type"] == "CheckpointLoaderAdvancedDisTorch2MultiGPU"
    # checkpoint_multigpu.py's required inputs, all present
    assert {"ckpt_name", "unet_compute_device", "unet_virtual_vram_gb", "unet_donor_device", "clip_compute_device",
            "clip_virtual_vram_gb", "clip_donor_device", "vae_device"} <= set(node["inputs"])
    assert node["inputs"]["clip_compute_device"] == "cuda:1" and node["inputs"]["unet_expert_mode_allocations"] == plan.distorch[0].expert
    assert links(new) == links(wf)


def test_a_workflow_without_loaders(flux_models: list[ModelInfo]) -> None:
    plan = flux_plan(flux_models)
    with pytest.raises(WorkflowError, match=re.escape("The workflow wf.json has no loader node")):
        rewrite({"1": {"class_type": "EmptyImage", "inputs": {}}}, plan, flux_models)


def test_find_loaders_knows_multigpu_and_gguf_names() -> None:
    wf = {
        "1": {"class_type": "UnetLoaderGGUFDisTorch2MultiGPU", "inputs": {"unet_name": "flux-Q4.gguf"}},
        "2": {"class_type": "CheckpointLoaderAdvancedMultiGPU", "inputs": {"ckpt_name": "x.safetensors"}},
        "3": {"class_type": "QuadrupleCLIPLoader", "inputs": {f"clip_name{i}": f"c{i}" for i in range(1, 5)}},
        "4": {"class_type": "KSampler", "inputs": {}},
    }
    found = {n.node_id: (n.base, n.files) for n in find_loaders(workflow_from_json(wf, "wf.json"))}
    assert found == {
        "1": ("UnetLoaderGGUF", ("flux-Q4.gguf",)),
        "2": ("CheckpointLoaderSimple", ("x.safetensors",)),
        "3": ("QuadrupleCLIPLoader", ("c1", "c2", "c3", "c4")),
    }
