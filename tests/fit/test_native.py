"""ComfyUI's native multi-GPU nodes in the plan: which checkout has them, the workflow's CFG,
Select*Device for parts moved off cuda:0, MultiGPU_WorkUnits over identical GPUs."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from comfyrig.comfy.multigpu import NativeNodes, native_nodes
from comfyrig.comfy.workflow import workflow_from_json
from comfyrig.fit.components import ModelInfo
from comfyrig.fit.fit import GIB, FitPlan, Reserve, default_reserve, native_device, plan_fit
from comfyrig.fit.native import SamplerCfg, plan_native, sampler_cfgs
from comfyrig.host.gpus.inventory import Gpu
from comfyrig.host.gpus.simulated import parse_simulated
from tests.fit.layouts import simulated_gpus

from ..native_checkout import NATIVE_NAMES, write_native_module

NATIVE = NativeNodes("test checkout", frozenset(NATIVE_NAMES))
CFG7 = (SamplerCfg("3", "KSampler", 7.0),)
CFG1 = (SamplerCfg("3", "KSampler", 1.0),)


def plan(models: list[ModelInfo], hw: tuple[Gpu, ...], samplers: tuple[SamplerCfg, ...] | None = CFG7,
         nodes: NativeNodes | None = NATIVE, reserve: Reserve | None = None) -> tuple[FitPlan, FitPlan]:
    """(memory plan, with the native part decided)."""
    dm = models[0]
    base = plan_fit(models, hw, reserve=reserve or default_reserve(dm.family, dm.memory_usage_factor, None), ram_available=64 * GIB)
    return base, plan_native(base, hw, nodes, samplers)


def check_ledgers(p: FitPlan) -> None:
    for ledger in p.ledgers:
        assert ledger.headroom is None or ledger.headroom >= 0, ledger


# --- the checkout and the workflow ------------------------------------------------


def fake_checkout(root: Path, *, loaded: bool = True, nodes: tuple[str, ...] = NATIVE_NAMES) -> Path:
    root.mkdir(parents=True)
    (root / "main.py").write_text("")
    (root / "nodes.py").write_text('extras = ["nodes_images.py", ' + ('"nodes_multigpu.py"' if loaded else "") + "]\n")
    write_native_module(root, nodes)
    return root


def test_native_nodes_are_read_from_the_checkout(tmp_path: Path) -> None:
    found = native_nodes(fake_checkout(tmp_path / "new"))
    assert found.names == frozenset(NATIVE_NAMES) and found.can_place and found.can_split_cfg
    assert found.source.endswith("comfy_extras/nodes_multigpu.py")
    # Not loaded by nodes.py, or absent (ComfyUI before 0.24.0): none.
    assert native_nodes(fake_checkout(tmp_path / "unloaded", loaded=False)).names == frozenset()
    old = tmp_path / "old"
    old.mkdir()
    (old / "nodes.py").write_text("")
    absent = native_nodes(old)
    assert absent.names == frozenset() and "no comfy_extras/nodes_multigpu.py" in absent.source
    partial = native_nodes(fake_checkout(tmp_path / "partial", nodes=("MultiGPU_WorkUnits",)))
    assert partial.can_split_cfg and not partial.can_place


def test_sampler_cfgs_from_the_workflow() -> None:
    wf = workflow_from_json({
        "1": {"class_type": "KSampler", "inputs": {"model": ["9", 0], "cfg": 7}},
        "2": {"class_type": "CFGGuider", "inputs": {"model": ["9", 0], "cfg": ["8", 0]}},
        "3": {"class_type": "DualCFGGuider", "inputs": {"model": ["9", 0], "cfg_conds": 1.0, "cfg_cond2_negative": 3.5}},
        "4": {"class_type": "BasicGuider", "inputs": {"model": ["9", 0]}},
        "5": {"class_type": "KSamplerAdvanced", "inputs": {"model": ["9", 0], "cfg": 1.0}},
        "8": {"class_type": "PrimitiveFloat", "inputs": {"value": 4.0}},
        "9": {"class_type": "UNETLoader", "inputs": {"unet_name": "m.safetensors", "weight_dtype": "default"}},
    }, "wf.json")
    assert sampler_cfgs(wf) == (
        SamplerCfg("1", "KSampler", 7.0), SamplerCfg("2", "CFGGuider", None),
        SamplerCfg("3", "DualCFGGuider", 3.5), SamplerCfg("5", "KSamplerAdvanced", 1.0),
    )


def test_native_device_names() -> None:
    assert [native_device(d) for d in ("cuda:0", "cuda:1", "cuda:12", "cpu")] == ["default", "gpu:1", "gpu:12", "cpu"]


# --- CFG split --------------------------------------------------------------------


def test_cfg_split_over_two_identical_ampere_simulated_gpus(files: dict[str, ModelInfo]) -> None:
    base, p = plan([files["sdxl"]], simulated_gpus(("RTX 3090", 24576, "8.6"), ("RTX 3090", 24576, "8.6")))
    assert base.mode == "single" and base.launch_args == ("--single", "0")
    assert p.native is not None and p.cfg_split is not None
    assert (p.cfg_split.max_gpus, p.cfg_split.devices, p.cfg_split.cfg, p.cfg_split.samplers) == (2, ("cuda:0", "cuda:1"), 7.0, ("3",))
    assert (p.verdict, p.mode, p.launch_args) == ("single", "dual", ("--gpus", "0,1"))
    assert "sampling split over 2 identical GPUs" in p.headline
    copy = p.ledgers[1]
    dm = files["sdxl"].of_kind("diffusion_model")[0].gpu_bytes
    assert copy.device == "cuda:1" and dict(copy.items) == {
        "working memory (reserve)": p.reserve.bytes, "sdxl.safetensors: diffusion model copy (MultiGPU_WorkUnits)": dm}
    assert not any("not needed" in r for r in p.reasons) and any("MultiGPU_WorkUnits (max_gpus 2)" in r for r in p.reasons)
    assert any("--workers" in w for w in p.warnings)
    check_ledgers(p)
    assert p.to_json()["native"]["cfg_split"] == {"max_gpus": 2, "devices": ["cuda:0", "cuda:1"], "cfg": 7.0, "samplers": ["3"]}


@pytest.mark.parametrize(
    ("hw", "samplers", "why"),
    [
        ((("RTX 3090", 24576, "8.6"), ("RTX 3090", 24576, "8.6")), CFG1, "No sampler runs at CFG > 1"),
        ((("RTX 3090", 24576, "8.6"), ("RTX 3090", 24576, "8.6")), (SamplerCfg("3", "KSampler", None),), "from a link"),
        ((("RTX 3090", 24576, "8.6"), ("RTX 4090", 24576, "8.9")), CFG7, "No other selected GPU is identical"),
        ((("Tesla T4", 15360, "7.5"), ("Tesla T4", 15360, "7.5")), CFG7, "older than Ampere"),
        ((("RTX 3090", 24576, None), ("RTX 3090", 24576, None)), CFG7, "compute capability is unknown"),
        ((("RTX 3090", 24576, "8.6"), ("RTX 3090", 24576, "8.6")), None, "With a workflow that samples at CFG > 1"),
        ((("RTX 3090", 24576, "8.6"),), CFG7, "No other selected GPU"),
    ],
)
def test_no_cfg_split_says_why(files: dict[str, ModelInfo], hw: tuple[tuple[str, int, str | None], ...],
                               samplers: tuple[SamplerCfg, ...] | None, why: str) -> None:
    base, p = plan([files["sdxl"]], simulated_gpus(*hw), samplers)
    assert p.native is not None and p.cfg_split is None
    assert any(why in n for n in p.native.notes), p.native.notes
    # Nothing else changes.
    assert (p.mode, p.gpus, p.placements, p.ledgers, p.reasons) == (base.mode, base.gpus, base.placements, base.ledgers, base.reasons)


def test_identical_gpu_without_room_for_a_copy(files: dict[str, ModelInfo]) -> None:
    hw = parse_simulated([
        {"name": "RTX 3090", "memory_total_mib": 24576, "memory_used_mib": 500, "compute_capability": "8.6"},
        {"name": "RTX 3090", "memory_total_mib": 24576, "memory_used_mib": 20000, "compute_capability": "8.6"},
    ]).gpus
    _, p = plan([files["sdxl"]], hw)
    assert p.cfg_split is None and p.native is not None and any("too little free memory" in n for n in p.native.notes)


def test_text_encoder_and_vae_on_the_copy_gpu_take_turns(files: dict[str, ModelInfo]) -> None:
    # A 12 GiB model and a 9 GiB text encoder on two 16 GB GPUs: the text encoder and VAE go
    # to cuda:1 (Select*Device); the copy of the model there leaves no room for them as well.
    hw = simulated_gpus(("RTX 4080", 16384, "8.9"), ("RTX 4080", 16384, "8.9"))
    base, p = plan([files["dit"], files["t5"], files["vae"]], hw, reserve=Reserve(2 * GIB, "cli"))
    assert base.verdict == "multi" and {q.component.kind: q.device for q in base.placements}["text_encoder"] == "cuda:1"
    assert p.native is not None and p.native.placement and p.cfg_split is not None and p.cfg_split.max_gpus == 2
    te = next(q for q in p.placements if q.component.kind == "text_encoder")
    assert te.device == "cuda:1" and te.swapped and te.shares[0].device == "cpu"
    assert any("take turns with the model copy" in r for r in p.reasons)
    assert any("(between uses)" in w for w, _ in p.ledgers[-1].items)
    check_ledgers(p)


def test_copies_come_first_in_cuda_order(files: dict[str, ModelInfo]) -> None:
    # GPU 1 (a different model) holds the text encoder; GPU 2 is GPU 0's twin: MultiGPU_WorkUnits
    # takes the next GPUs in CUDA order, so the twin must be cuda:1 and the other GPU cuda:2.
    hw = parse_simulated([
        {"name": "RTX 4080", "memory_total_mib": 16384, "memory_used_mib": 0, "compute_capability": "8.9"},
        {"name": "RTX 4080 SUPER", "memory_total_mib": 16384, "memory_used_mib": 100, "compute_capability": "8.9"},
        {"name": "RTX 4080", "memory_total_mib": 16384, "memory_used_mib": 200, "compute_capability": "8.9"},
    ]).gpus
    base, p = plan([files["dit"], files["t5"]], hw, reserve=Reserve(2 * GIB, "cli"))
    assert [g.index for g in base.gpus] == [0, 1]
    assert [g.index for g in p.gpus] == [0, 2, 1] and p.launch_args == ("--gpus", "0,2,1") and p.mode == "multi"
    te = next(q for q in p.placements if q.component.kind == "text_encoder")
    assert te.device == "cuda:2" and not te.swapped
    assert [ledger.device for ledger in p.ledgers] == ["cuda:0", "cuda:1", "cuda:2", "cpu"]
    assert p.ledgers[2].gpu is not None and p.ledgers[2].gpu.index == 1
    check_ledgers(p)


# --- placement: Select*Device, or ComfyUI-MultiGPU where the model does not fit ----


def test_text_encoder_and_vae_moved_with_select_nodes(files: dict[str, ModelInfo]) -> None:
    hw = simulated_gpus(("RTX 4080", 16384, "8.9"), ("RTX 4080", 16384, "8.9"))
    base, p = plan([files["flux8"], files["clip_l"], files["t5"], files["vae"]], hw, CFG1)
    assert p.native is not None and p.native.placement and p.cfg_split is None
    assert p.placements == base.placements and p.gpus == base.gpus
    assert any("SelectCLIPDevice/SelectVAEDevice" in n for n in p.native.notes)


def test_model_that_does_not_fit_keeps_the_distorch_path(files: dict[str, ModelInfo]) -> None:
    hw = simulated_gpus(("RTX 3090", 24576, "8.6"), ("RTX 3090", 24576, "8.6"))
    base, p = plan([files["flux"], files["clip_l"], files["t5"], files["vae"]], hw, CFG7)
    assert base.distorch and p.native is not None and not p.native.placement and p.cfg_split is None
    assert replace(p, native=None) == base
    assert any("DisTorch2" in n for n in p.native.notes)


def test_checkout_without_native_nodes(files: dict[str, ModelInfo]) -> None:
    hw = simulated_gpus(("RTX 3090", 24576, "8.6"), ("RTX 3090", 24576, "8.6"))
    base, p = plan([files["sdxl"]], hw, nodes=NativeNodes("ComfyUI 0.3.76", frozenset()))
    assert p.native is not None and not p.native.placement and p.native.nodes == frozenset()
    assert replace(p, native=None) == base and "no native multi-GPU nodes" in p.native.notes[0]
    _, unknown = plan([files["sdxl"]], hw, nodes=None)
    assert unknown == base


def test_gguf_text_encoder_cannot_be_moved_natively(files: dict[str, ModelInfo]) -> None:
    hw = simulated_gpus(("RTX 4080", 16384, "8.9"), ("RTX 4080", 16384, "8.9"))
    t5_gguf = replace(files["t5"], format="gguf")
    _, p = plan([files["flux8"], t5_gguf, files["vae"]], hw, CFG1)
    assert p.native is not None and not p.native.placement
    assert any("ComfyUI-GGUF" in n for n in p.native.notes)
