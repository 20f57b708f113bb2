"""Fit planning on simulated GPUs with sparse Flux-, T5-, SDXL- and 60 GB-sized models."""

from __future__ import annotations

from pathlib import Path

import pytest

from comfyrig.comfy.vram import VramFacts
from comfyrig.errors import SelectionError
from comfyrig.fit.components import ModelInfo, analyze_model
from comfyrig.fit.fit import CUDA_CONTEXT, GIB, FitPlan, Reserve, comfy_reserve_vram, default_reserve, plan_fit
from comfyrig.host.gpus.inventory import Gpu
from comfyrig.host.gpus.simulated import parse_simulated
from tests.fit.distorch_mirror import byte_allocation, fractions, is_byte_form, place_modules
from tests.fit.layouts import (
    Layout,
    blocks_layout,
    flux_layout,
    nbytes,
    sdxl_checkpoint_layout,
    t5xxl_layout,
    vae_layout,
    write_sparse_safetensors,
)

MIB = 1 << 20


def gpus(*specs: tuple[int, int]) -> tuple[Gpu, ...]:
    """(total MiB, used MiB) per GPU."""
    return parse_simulated([{"name": f"GPU{i}", "memory_total_mib": t, "memory_used_mib": u} for i, (t, u) in enumerate(specs)]).gpus


def model(tmp_path: Path, name: str, layout: Layout) -> ModelInfo:
    path = tmp_path / name
    write_sparse_safetensors(path, layout)
    return analyze_model(path)


def reserve_for(m: ModelInfo) -> Reserve:
    return default_reserve(m.family, m.memory_usage_factor, None)


def modules(layout: Layout) -> list[tuple[str, int]]:
    out: dict[str, int] = {}
    for name, (dtype, shape) in layout.items():
        key = name.rpartition(".")[0]
        out[key] = out.get(key, 0) + nbytes(dtype, shape)
    return list(out.items())


def check_ledgers(plan: FitPlan) -> None:
    for ledger in plan.ledgers:
        if ledger.gpu is not None:
            assert ledger.headroom is not None and ledger.headroom >= 0, ledger


@pytest.fixture(scope="module")
def flux_t5_vae(tmp_path_factory: pytest.TempPathFactory) -> list[ModelInfo]:
    d = tmp_path_factory.mktemp("flux")
    return [model(d, "flux1-dev.safetensors", flux_layout()), model(d, "t5xxl_fp16.safetensors", t5xxl_layout()), model(d, "ae.safetensors", vae_layout())]


def test_flux_and_t5_on_two_24gb_gpus_split_with_distorch(flux_t5_vae: list[ModelInfo]) -> None:
    flux = flux_t5_vae[0]
    plan = plan_fit(flux_t5_vae, gpus((24576, 500), (24576, 500)), reserve=reserve_for(flux), ram_available=64 * GIB)
    assert (plan.verdict, plan.mode, plan.launch_args) == ("multi", "dual", ("--gpus", "0,1"))
    check_ledgers(plan)
    by_kind = {p.component.kind: p for p in plan.placements}
    assert by_kind["text_encoder"].device == "cuda:1" and by_kind["vae"].device == "cuda:1"
    (d,) = plan.distorch
    assert d.compute_device == "cuda:0" and d.expert.startswith("cuda:0,") and d.expert.endswith(";cuda:1,0.80gb;cpu,*")
    assert (d.virtual_vram_gb, d.donor_device, d.simple_equivalent) == (0.8, "cuda:1", True)
    assert plan.comfyui_flags == ()
    # ComfyUI-MultiGPU reads it as bytes, and gives every device exactly the planned share.
    dm = flux.components[0]
    assert is_byte_form(d.expert)
    alloc = byte_allocation(d.expert, dm.gpu_bytes)
    shares = {s.device: s.bytes for s in by_kind["diffusion_model"].shares}
    assert abs(alloc["cuda:0"] - (shares["cuda:0"] - dm.pinned_bytes)) < 0.01 * GIB
    assert abs(alloc["cuda:1"] - shares["cuda:1"]) < 0.01 * GIB
    assert alloc.get("cpu", 0) <= dm.pinned_bytes + 0.01 * GIB  # only the never-moved small modules' quota
    # Its module placement, with the 4-decimal fractions, stays inside what each GPU planned.
    totals = {"cuda:0": 24576 * MIB, "cuda:1": 24576 * MIB, "cpu": 64 * GIB}
    quotas = {dev: f * totals[dev] for dev, f in fractions(alloc, totals).items()}
    quotas.setdefault("cpu", 0.0)
    placed = place_modules(modules(flux_layout()), quotas, "cuda:0")
    ledger = {lg.device: lg for lg in plan.ledgers}
    buffer = dict(ledger["cuda:0"].items)["streaming buffer (2 largest modules)"]
    assert placed["cuda:0"] <= shares["cuda:0"] + buffer
    assert placed["cuda:1"] <= shares["cuda:1"] + ledger["cuda:1"].headroom  # type: ignore[operator]
    assert placed.get("cpu", 0) == 0


def test_sdxl_checkpoint_on_one_12gb_gpu(tmp_path: Path) -> None:
    sdxl = model(tmp_path, "sd_xl_base_1.0.safetensors", sdxl_checkpoint_layout())
    plan = plan_fit([sdxl], gpus((12288, 300)), reserve=reserve_for(sdxl), ram_available=32 * GIB)
    assert (plan.verdict, plan.mode, plan.launch_args) == ("single", "single", ("--single", "0"))
    assert all(p.device == "cuda:0" and not p.split for p in plan.placements)
    assert plan.distorch == () and plan.comfyui_flags == ()
    check_ledgers(plan)
    assert plan.headline.startswith("Fits on one GPU")


def test_60gb_model_on_two_24gb_gpus_offloads_to_ram(tmp_path: Path) -> None:
    big = model(tmp_path, "big.safetensors", blocks_layout(60 * 10**9))
    reserve = Reserve(3 * GIB, "cli")
    plan = plan_fit([big], gpus((24576, 500), (24576, 500)), reserve=reserve, ram_available=64 * GIB)
    assert (plan.verdict, plan.mode) == ("offload", "dual")
    check_ledgers(plan)
    (d,) = plan.distorch
    assert d.expert.count(";") == 2 and d.expert.endswith(";cpu,*") and not d.simple_equivalent
    dm = big.components[0]
    cpu_share = next(s.bytes for s in plan.placements[0].shares if s.device == "cpu")
    alloc = byte_allocation(d.expert, dm.gpu_bytes)
    assert abs(alloc["cpu"] - (cpu_share + dm.pinned_bytes)) < 0.02 * GIB
    assert any("slow" in w for w in plan.warnings)
    ram = plan.ledgers[-1]
    assert ram.device == "cpu" and ram.planned == cpu_share
    short = plan_fit([big], gpus((24576, 500), (24576, 500)), reserve=reserve, ram_available=5 * GIB)
    assert short.verdict == "too_big" and short.shortfall == cpu_share - 5 * GIB
    assert short.headline.startswith("Does not fit: short by")


def test_single_gpu_offload_gives_lowvram_and_a_two_device_string(flux_t5_vae: list[ModelInfo]) -> None:
    plan = plan_fit(flux_t5_vae, gpus((24576, 500)), reserve=reserve_for(flux_t5_vae[0]), ram_available=64 * GIB)
    assert plan.verdict == "offload" and plan.mode == "single"
    assert plan.comfyui_flags == ("--lowvram",)
    assert plan.launch_command == "comfyrig launch --single 0 -- --lowvram"
    (d,) = plan.distorch
    assert d.expert.startswith("cuda:0,") and d.expert.endswith(";cpu,*") and d.expert.count(";") == 1
    assert d.simple_equivalent and d.donor_device == "cpu"
    te = next(p for p in plan.placements if p.component.kind == "text_encoder")
    assert te.device == "cpu"  # as --lowvram does


@pytest.mark.parametrize(
    ("facts", "flags", "says"),
    [
        # Before 0.16 (or with dynamic VRAM turned off before 0.22): --lowvram splits the model.
        (VramFacts("legacy", "splits", version="0.3.76"), ("--lowvram",), "plain ComfyUI with --lowvram"),
        # 0.16+ by default: dynamic VRAM offloads by itself, and from 0.22 --lowvram is a no-op.
        (VramFacts("dynamic", "nothing", version="0.24.0"), (), "ComfyUI 0.24.0 loads models with dynamic VRAM"),
        (VramFacts("dynamic", "text-encoders", version="0.18.0"), (), "no flag is needed"),
        # 0.22+ with --disable-dynamic-vram: partial loading by estimate, --lowvram splits nothing.
        (VramFacts("dynamic-off", "text-encoders", off_by="--disable-dynamic-vram", version="0.24.0"), (), "loads partially"),
        # No checkout to read: the old flag, with when it applies.
        (VramFacts("unknown", "unknown"), ("--lowvram",), "only on ComfyUI before 0.16"),
    ],
)
def test_single_gpu_offload_advice_follows_the_comfyui(flux_t5_vae: list[ModelInfo], facts: VramFacts, flags: tuple[str, ...], says: str) -> None:
    plan = plan_fit(flux_t5_vae, gpus((24576, 500)), reserve=reserve_for(flux_t5_vae[0]), ram_available=64 * GIB, vram=facts)
    assert plan.verdict == "offload" and plan.comfyui_flags == flags
    assert any(says in r for r in plan.reasons)
    assert "--lowvram" not in plan.launch_command or facts.lowvram in ("splits", "unknown")


def test_picks_the_gpu_with_most_free_memory(tmp_path: Path) -> None:
    sdxl = model(tmp_path, "sdxl.safetensors", sdxl_checkpoint_layout())
    plan = plan_fit([sdxl], gpus((12288, 9000), (12288, 200)), reserve=reserve_for(sdxl), ram_available=None)
    assert plan.launch_args == ("--single", "1") and plan.gpus[0].index == 1
    assert any("GPU 0 is not needed" in r for r in plan.reasons)


def test_text_encoder_on_second_gpu_without_distorch(tmp_path: Path) -> None:
    flux8 = model(tmp_path, "flux-fp8.safetensors", flux_layout("F8_E4M3"))
    t5 = model(tmp_path, "t5xxl_fp16.safetensors", t5xxl_layout())
    plan = plan_fit([flux8, t5], gpus((16384, 500), (16384, 500)), reserve=reserve_for(flux8), ram_available=32 * GIB)
    assert (plan.verdict, plan.mode) == ("multi", "dual") and plan.distorch == ()
    devices = {p.component.kind: p.device for p in plan.placements}
    assert devices == {"diffusion_model": "cuda:0", "text_encoder": "cuda:1"}
    check_ledgers(plan)
    # One 16 GB GPU: the text encoder takes turns with the diffusion model.
    one = plan_fit([flux8, t5], gpus((16384, 500)), reserve=reserve_for(flux8), ram_available=32 * GIB)
    assert one.verdict == "single"
    te = next(p for p in one.placements if p.component.kind == "text_encoder")
    assert te.swapped and te.shares[0].device == "cpu"
    assert one.ledgers[-1].planned == t5.components[0].gpu_bytes


def test_text_encoder_goes_to_cpu_when_that_keeps_the_model_on_gpus(tmp_path: Path) -> None:
    dm = model(tmp_path, "dit.safetensors", blocks_layout(32 * 10**9, n_blocks=40))
    t5 = model(tmp_path, "t5xxl_fp16.safetensors", t5xxl_layout())
    plan = plan_fit([dm, t5], gpus((24576, 0), (16384, 0)), reserve=Reserve(2 * GIB, "cli"), ram_available=64 * GIB)
    assert plan.verdict == "multi"
    assert next(p for p in plan.placements if p.component.kind == "text_encoder").device == "cpu"
    assert any("text encoder runs on the CPU" in w for w in plan.warnings)
    assert all(s.device != "cpu" for s in plan.placements[0].shares)


def test_cpu_mode_counts_float32(flux_t5_vae: list[ModelInfo]) -> None:
    plan = plan_fit(flux_t5_vae, (), reserve=reserve_for(flux_t5_vae[0]), ram_available=128 * GIB, cpu_only=True)
    assert (plan.verdict, plan.mode, plan.launch_args) == ("cpu", "cpu", ("--cpu",))
    dm = flux_t5_vae[0].components[0]
    assert plan.placements[0].shares[0].bytes == dm.cpu_bytes == 2 * dm.gpu_bytes
    small = plan_fit(flux_t5_vae, (), reserve=reserve_for(flux_t5_vae[0]), ram_available=16 * GIB, cpu_only=True)
    assert small.verdict == "too_big" and small.shortfall and small.shortfall > 30 * GIB


def test_no_gpu_without_cpu_is_an_error(flux_t5_vae: list[ModelInfo]) -> None:
    with pytest.raises(SelectionError, match="no GPU"):
        plan_fit(flux_t5_vae, (), reserve=reserve_for(flux_t5_vae[0]), ram_available=None)


def test_gpu_smaller_than_working_memory_does_not_fit(flux_t5_vae: list[ModelInfo]) -> None:
    plan = plan_fit(flux_t5_vae[:1], gpus((2048, 1000)), reserve=reserve_for(flux_t5_vae[0]), ram_available=64 * GIB)
    assert plan.verdict == "too_big" and plan.shortfall and plan.shortfall > 0
    assert any("--cpu" in w for w in plan.warnings)


def test_default_reserve_follows_family_and_resolution() -> None:
    sdxl = default_reserve("sdxl", 0.8, None)
    assert sdxl.resolution == (1024, 1024) and sdxl.bytes == CUDA_CONTEXT + int(0.8 * GIB) + 400 * MIB  # ComfyUI's minimum
    flux = default_reserve("flux", 3.1, None)
    assert flux.activations == int(128 * 128 * 2 * 0.01 * 3.1 * MIB)
    big = default_reserve("flux", 3.1, (2048, 2048))
    assert abs(big.activations - 4 * flux.activations) < 4 and big.bytes > flux.bytes
    assert abs(default_reserve("flux", 3.1, None, batch=2).activations - 2 * flux.activations) < 2
    assert comfy_reserve_vram(Reserve(3 * GIB, "cli")) == 1.7
    assert comfy_reserve_vram(sdxl) == 0.4  # ComfyUI's own default


def test_reserve_from_cli_becomes_reserve_vram(flux_t5_vae: list[ModelInfo]) -> None:
    plan = plan_fit(flux_t5_vae, gpus((49152, 0)), reserve=Reserve(4 * GIB, "cli"), ram_available=None, reserve_from_cli=True)
    assert plan.verdict == "single" and plan.comfyui_flags == ("--reserve-vram", "2.7")


def test_text_encoder_alone_too_big_for_the_gpu_runs_on_the_cpu(tmp_path: Path) -> None:
    t5 = model(tmp_path, "t5xxl_fp16.safetensors", t5xxl_layout())
    plan = plan_fit([t5], gpus((6144, 100)), reserve=default_reserve("unknown", 2.0, None), ram_available=32 * GIB)
    assert plan.verdict == "single" and plan.placements[0].device == "cpu"
    assert any("no diffusion model" in r for r in plan.reasons)
    assert any("text encoder runs on the CPU" in w for w in plan.warnings)


def test_video_family_reserve_counts_frames() -> None:
    wan = default_reserve("wan", 5120 / 2222, None)
    assert wan.resolution == (832, 480) and "21 latent frames" in wan.explain()
    assert wan.activations > 10 * GIB  # ComfyUI's estimate for 81 frames at 832x480 with CFG
