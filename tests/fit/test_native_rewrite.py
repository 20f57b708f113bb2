"""Workflow rewrite with ComfyUI's native multi-GPU nodes: inserted between a loader (or the
model's source) and its users, every other input and link kept, a second rewrite a no-op."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from comfyrig.comfy.multigpu import NativeNodes
from comfyrig.comfy.workflow import workflow_from_json
from comfyrig.fit.components import ModelInfo
from comfyrig.fit.fit import GIB, FitPlan, Reserve, default_reserve, plan_fit
from comfyrig.fit.native import plan_native, sampler_cfgs
from comfyrig.fit.rewrite import NodeChange, rewrite_workflow, suggested_loaders, suggested_nodes
from tests.fit.layouts import simulated_gpus

from ..native_checkout import NATIVE_NAMES

NATIVE = NativeNodes("test checkout", frozenset(NATIVE_NAMES))
PASS_THROUGH = {"SelectCLIPDevice": "clip", "SelectVAEDevice": "vae", "SelectModelDevice": "model", "MultiGPU_WorkUnits": "model"}
TWO_4080 = (("RTX 4080", 16384, "8.9"), ("RTX 4080", 16384, "8.9"))
TWO_3090 = (("RTX 3090", 24576, "8.6"), ("RTX 3090", 24576, "8.6"))


def flux_workflow(cfg: float = 1.0) -> dict[str, Any]:
    return {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": "flux8.safetensors", "weight_dtype": "default"}},
        "2": {"class_type": "DualCLIPLoader", "inputs": {"clip_name1": "clip_l.safetensors", "clip_name2": "t5xxl_fp16.safetensors",
                                                         "type": "flux", "device": "default"}},
        "3": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red fox", "clip": ["2", 0]}},
        "11": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["2", 0]}},
        "5": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 1024, "height": 1024, "batch_size": 1}},
        "6": {"class_type": "KSampler", "inputs": {"model": ["1", 0], "positive": ["4", 0], "negative": ["11", 0], "latent_image": ["5", 0],
                                                   "seed": 1, "steps": 20, "cfg": cfg, "sampler_name": "euler", "scheduler": "simple",
                                                   "denoise": 1.0}},
        "7": {"class_type": "VAEDecode", "inputs": {"samples": ["6", 0], "vae": ["3", 0]}, "_meta": {"title": "Decode"}},
        "8": {"class_type": "SaveImage", "inputs": {"images": ["7", 0], "filename_prefix": "fox"}},
    }


def sdxl_workflow() -> dict[str, Any]:
    """A checkpoint, a LoRA, a base sampler at CFG 7 and a refining one at CFG 1 on the same model."""
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl.safetensors"}},
        "10": {"class_type": "LoraLoader", "inputs": {"model": ["4", 0], "clip": ["4", 1], "lora_name": "x.safetensors",
                                                      "strength_model": 1.0, "strength_clip": 1.0}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "fox", "clip": ["10", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["10", 1]}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 1024, "height": 1024, "batch_size": 1}},
        "3": {"class_type": "KSampler", "inputs": {"model": ["10", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0],
                                                   "seed": 1, "steps": 20, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal",
                                                   "denoise": 1.0}},
        "12": {"class_type": "KSampler", "inputs": {"model": ["10", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["3", 0],
                                                    "seed": 1, "steps": 5, "cfg": 1.0, "sampler_name": "euler", "scheduler": "normal",
                                                    "denoise": 0.3}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["12", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "x"}},
    }


def native_plan(models: list[ModelInfo], hw: tuple[tuple[str, int, str | None], ...], prompt: dict[str, Any],
                reserve: Reserve | None = None, nodes: NativeNodes | None = NATIVE) -> FitPlan:
    dm = models[0]
    base = plan_fit(models, simulated_gpus(*hw), reserve=reserve or default_reserve(dm.family, dm.memory_usage_factor, None), ram_available=64 * GIB)
    return plan_native(base, simulated_gpus(*hw), nodes, sampler_cfgs(workflow_from_json(prompt, "wf.json")))


def rewrite(prompt: dict[str, Any], plan: FitPlan, models: list[ModelInfo]) -> tuple[dict[str, Any], list[NodeChange], list[str]]:
    new, changes, notes = rewrite_workflow(workflow_from_json(prompt, "wf.json"), plan, models)
    return new.prompt, changes, notes


def resolve(prompt: dict[str, Any], link: list[Any]) -> tuple[str, int]:
    """Where a link's value really comes from, looking through the inserted native nodes."""
    node_id, slot = str(link[0]), link[1]
    while prompt[node_id]["class_type"] in PASS_THROUGH:
        upstream = prompt[node_id]["inputs"][PASS_THROUGH[prompt[node_id]["class_type"]]]
        node_id, slot = str(upstream[0]), upstream[1]
    return node_id, slot


def assert_kept(old: dict[str, Any], new: dict[str, Any]) -> None:
    """Every node and input of ``old`` is in ``new``; literals equal, links from the same source."""
    for node_id, node in old.items():
        assert new[node_id]["class_type"] == node["class_type"] and new[node_id].get("_meta") == node.get("_meta")
        assert set(new[node_id]["inputs"]) == set(node["inputs"]), node_id
        for name, value in node["inputs"].items():
            if isinstance(value, list):
                assert resolve(new, new[node_id]["inputs"][name]) == (value[0], value[1]), (node_id, name)
            else:
                assert new[node_id]["inputs"][name] == value, (node_id, name)


def test_select_nodes_after_the_text_encoder_and_vae_loaders(files: dict[str, ModelInfo]) -> None:
    models = [files["flux8"], files["clip_l"], files["t5"], files["vae"]]
    wf = flux_workflow()
    plan = native_plan(models, TWO_4080, wf)
    new, changes, notes = rewrite(wf, plan, models)
    assert notes == []
    assert [(c.action, c.node_id, c.new_class, dict(c.inputs), c.links) for c in changes] == [
        ("insert", "12", "SelectCLIPDevice", {"device": "gpu:1"}, ("4.clip", "11.clip")),
        ("insert", "13", "SelectVAEDevice", {"device": "gpu:1"}, ("7.vae",)),
    ]
    assert new["12"] == {"class_type": "SelectCLIPDevice", "inputs": {"clip": ["2", 0], "device": "gpu:1"}, "_meta": {"title": "Select CLIP Device"}}
    assert new["13"]["inputs"] == {"vae": ["3", 0], "device": "gpu:1"}
    assert new["4"]["inputs"]["clip"] == ["12", 0] and new["11"]["inputs"]["clip"] == ["12", 0] and new["7"]["inputs"]["vae"] == ["13", 0]
    assert_kept(wf, new)
    # The loaders stay ComfyUI's own; no ComfyUI-MultiGPU node anywhere.
    assert not any("MultiGPU" in n["class_type"] and n["class_type"] != "MultiGPU_WorkUnits" for n in new.values())
    assert suggested_loaders(plan, models) == []
    assert [(f, c.new_class, dict(c.inputs)) for f, c in suggested_nodes(plan, models)] == [
        ("t5xxl_fp16.safetensors + clip_l.safetensors", "SelectCLIPDevice", {"device": "gpu:1"}),
        ("ae.safetensors", "SelectVAEDevice", {"device": "gpu:1"}),
    ]


def test_rewriting_twice_changes_nothing(files: dict[str, ModelInfo]) -> None:
    models = [files["flux8"], files["clip_l"], files["t5"], files["vae"]]
    wf = flux_workflow(cfg=3.5)
    plan = native_plan(models, TWO_4080, wf, reserve=Reserve(2 * GIB, "cli"))
    once, changes, _ = rewrite(wf, plan, models)
    assert {c.new_class for c in changes} == {"SelectCLIPDevice", "SelectVAEDevice", "MultiGPU_WorkUnits"}
    again_plan = native_plan(models, TWO_4080, once, reserve=Reserve(2 * GIB, "cli"))
    twice, changes2, notes2 = rewrite(once, again_plan, models)
    assert twice == once and changes2 == []
    assert notes2 == ["Nothing to rewrite: the workflow already has the nodes this plan needs."]


def test_work_units_only_before_samplers_at_cfg_above_one(files: dict[str, ModelInfo]) -> None:
    models = [files["sdxl"]]
    wf = sdxl_workflow()
    plan = native_plan(models, TWO_3090, wf)
    assert plan.cfg_split is not None and plan.cfg_split.samplers == ("3",)
    new, changes, _ = rewrite(wf, plan, models)
    assert [(c.action, c.node_id, c.new_class, dict(c.inputs), c.links) for c in changes] == [
        ("insert", "13", "MultiGPU_WorkUnits", {"max_gpus": 2}, ("3.model",)),
    ]
    # After the LoRA (it patches the model), before the CFG 7 sampler only.
    assert new["13"]["inputs"] == {"model": ["10", 0], "max_gpus": 2}
    assert new["3"]["inputs"]["model"] == ["13", 0] and new["12"]["inputs"]["model"] == ["10", 0]
    assert_kept(wf, new)
    assert rewrite(new, plan, models)[0] == new


def test_samplers_sharing_a_model_share_one_work_units_node(files: dict[str, ModelInfo]) -> None:
    models = [files["sdxl"]]
    wf = sdxl_workflow()
    wf["12"]["inputs"]["cfg"] = 4.0
    plan = native_plan(models, TWO_3090, wf)
    new, changes, _ = rewrite(wf, plan, models)
    assert [(c.action, c.node_id, c.links) for c in changes] == [("insert", "13", ("3.model",)), ("set", "13", ("12.model",))]
    assert new["3"]["inputs"]["model"] == new["12"]["inputs"]["model"] == ["13", 0]
    assert_kept(wf, new)
    # max_gpus follows the plan: three identical GPUs next time.
    three = native_plan(models, (*TWO_3090, TWO_3090[0]), new)
    newer, changes3, _ = rewrite(new, three, models)
    assert [(c.action, dict(c.inputs)) for c in changes3] == [("set", {"max_gpus": 3})] and newer["13"]["inputs"]["max_gpus"] == 3


def test_checkpoint_text_encoder_and_vae_to_the_second_gpu(files: dict[str, ModelInfo]) -> None:
    # An SDXL checkpoint on two 8 GB GPUs: the UNet fits beside the working memory, not the rest.
    models = [files["sdxl"]]
    hw = (("RTX 3070", 8192, "8.6"), ("RTX 3070", 8192, "8.6"))
    wf = sdxl_workflow()
    wf["3"]["inputs"]["cfg"] = 1.0
    plan = native_plan(models, hw, wf)
    assert plan.verdict == "multi" and plan.native is not None and plan.native.placement
    new, changes, _ = rewrite(wf, plan, models)
    assert [(c.new_class, c.inputs["device"], c.note) for c in changes] == [
        ("SelectCLIPDevice", "gpu:1", "after node 4 (CheckpointLoaderSimple) output 1"),
        ("SelectVAEDevice", "gpu:1", "after node 4 (CheckpointLoaderSimple) output 2"),
    ]
    assert new["10"]["inputs"]["clip"] == ["13", 0] and new["8"]["inputs"]["vae"] == ["14", 0] and new["10"]["inputs"]["model"] == ["4", 0]
    assert_kept(wf, new)


def test_multigpu_loaders_from_an_earlier_rewrite_go_back_to_comfyuis(files: dict[str, ModelInfo]) -> None:
    models = [files["flux8"], files["clip_l"], files["t5"], files["vae"]]
    wf = flux_workflow()
    old = copy.deepcopy(wf)
    old["2"]["class_type"] = "DualCLIPLoaderMultiGPU"
    old["2"]["inputs"]["device"] = "cuda:1"
    old["3"] = {"class_type": "VAELoaderMultiGPU", "inputs": {"vae_name": "ae.safetensors", "device": "cuda:1"}}
    plan = native_plan(models, TWO_4080, wf)
    new, changes, _ = rewrite(old, plan, models)
    assert new["2"]["class_type"] == "DualCLIPLoader" and "device" not in new["2"]["inputs"]
    assert new["3"] == {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}}
    assert [c.action for c in changes] == ["replace", "insert", "replace", "insert"]


def test_without_native_nodes_or_when_the_model_does_not_fit_the_rewrite_is_as_before(files: dict[str, ModelInfo]) -> None:
    # Flux bf16 does not fit one 24 GB GPU beside its working memory: DisTorch2 either way.
    models = [files["flux"], files["clip_l"], files["t5"], files["vae"]]
    wf = flux_workflow(cfg=3.5)
    wf["1"]["inputs"]["unet_name"] = "flux1-dev.safetensors"
    before = rewrite(wf, native_plan(models, TWO_3090, wf, nodes=None), models)
    for nodes in (NATIVE, NativeNodes("0.3.76", frozenset())):
        assert rewrite(wf, native_plan(models, TWO_3090, wf, nodes=nodes), models) == before
    assert before[0]["1"]["class_type"] == "UNETLoaderDisTorch2MultiGPU"
    # A model that fits, on a checkout without native nodes: ComfyUI-MultiGPU's loaders, as before.
    small = [files["flux8"], files["clip_l"], files["t5"], files["vae"]]
    old_path = rewrite(flux_workflow(), native_plan(small, TWO_4080, flux_workflow(), nodes=NativeNodes("0.3.76", frozenset())), small)
    assert old_path == rewrite(flux_workflow(), native_plan(small, TWO_4080, flux_workflow(), nodes=None), small)
    assert [old_path[0][k]["class_type"] for k in "23"] == ["DualCLIPLoaderMultiGPU", "VAELoaderMultiGPU"]


@pytest.mark.parametrize("model_input", [None, 5])
def test_a_sampler_without_a_model_link_is_noted(files: dict[str, ModelInfo], model_input: Any) -> None:
    models = [files["sdxl"]]
    wf = sdxl_workflow()
    plan = native_plan(models, TWO_3090, wf)
    if model_input is None:
        del wf["3"]["inputs"]["model"]
    else:
        wf["3"]["inputs"]["model"] = model_input
    new, changes, notes = rewrite(wf, plan, models)
    assert changes == [] and new == wf and notes == ["Node 3 (KSampler) has no model link: no MultiGPU_WorkUnits before it."]


def test_a_plan_without_native_nodes_neutralises_those_left_by_an_earlier_rewrite(files: dict[str, ModelInfo]) -> None:
    # Rewritten for two 16 GB GPUs (Select*Device gpu:1, a CFG split), then planned for one 24 GB
    # GPU plus a smaller one: Select nodes go back to "default", MultiGPU_WorkUnits to max_gpus 1.
    models = [files["flux8"], files["clip_l"], files["t5"], files["vae"]]
    wf = flux_workflow(cfg=3.5)
    once, _, _ = rewrite(wf, native_plan(models, TWO_4080, wf, reserve=Reserve(2 * GIB, "cli")), models)
    mixed = (("RTX 3090", 24576, "8.6"), ("RTX 3060", 12288, "8.6"))
    single = native_plan(models, mixed, once, reserve=Reserve(2 * GIB, "cli"))
    assert single.verdict == "single" and single.cfg_split is None
    new, changes, _ = rewrite(once, single, models)
    assert sorted((c.new_class, dict(c.inputs)["device" if "device" in c.inputs else "max_gpus"]) for c in changes) == [
        ("MultiGPU_WorkUnits", 1), ("SelectCLIPDevice", "default"), ("SelectVAEDevice", "default")]
    assert_kept(wf, new)
    # And with ComfyUI-MultiGPU's loaders (no native nodes known): the Select nodes must not override them.
    old = native_plan(models, TWO_4080, once, reserve=Reserve(2 * GIB, "cli"), nodes=None)
    new_old, _, _ = rewrite(once, old, models)
    assert new_old["2"]["class_type"] == "DualCLIPLoaderMultiGPU" and new_old["2"]["inputs"]["device"] == "cuda:1"
    assert {n["inputs"]["device"] for n in new_old.values() if n["class_type"].startswith("Select")} == {"default"}
    assert new_old["14"]["inputs"]["max_gpus"] == 2  # the target is unknown: a CFG split the user chose stays
