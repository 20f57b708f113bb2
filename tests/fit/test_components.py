"""Components by key prefix, families, repeated blocks, sizes once loaded."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from comfyrig.errors import ModelFileError
from comfyrig.fit.components import analyze_model
from tests.fit.layouts import (
    blocks_layout,
    clip_l_layout,
    flux_layout,
    layout_bytes,
    sdxl_checkpoint_layout,
    t5xxl_layout,
    vae_layout,
    write_sparse_safetensors,
)


def test_flux_transformer_blocks_and_family(tmp_path: Path) -> None:
    path = tmp_path / "flux1-dev.safetensors"
    write_sparse_safetensors(path, flux_layout())
    info = analyze_model(path)
    assert (info.layout, info.family, info.memory_usage_factor) == ("diffusion_model", "flux", 3.1)
    (dm,) = info.components
    assert dm.kind == "diffusion_model" and dm.file_bytes == dm.gpu_bytes == layout_bytes(flux_layout())
    blocks = {b.name: b for b in dm.blocks}
    assert blocks["double_blocks"].count == 19 and blocks["single_blocks"].count == 38
    assert blocks["double_blocks"].bytes_max > blocks["single_blocks"].bytes_max
    # The largest module DisTorch moves: a single block's linear1 (21504 x 3072 bf16 + bias).
    assert dm.largest_module == (21504 * 3072 + 21504) * 2
    assert 0 < dm.pinned_bytes < dm.gpu_bytes * 0.001
    assert info.dtype_bytes == {"BF16": dm.file_bytes}


def test_fp32_weights_count_half_on_a_gpu_and_double_on_the_cpu(tmp_path: Path) -> None:
    path = tmp_path / "flux-fp32.safetensors"
    write_sparse_safetensors(path, flux_layout("F32"))
    (dm,) = analyze_model(path).components
    assert dm.gpu_bytes == dm.file_bytes // 2
    assert dm.cpu_bytes == dm.file_bytes
    fp8 = tmp_path / "flux-fp8.safetensors"
    write_sparse_safetensors(fp8, flux_layout("F8_E4M3"))
    (dm8,) = analyze_model(fp8).components
    assert dm8.gpu_bytes == dm8.file_bytes == dm.file_bytes // 4


def test_sdxl_checkpoint_splits_into_components(tmp_path: Path) -> None:
    path = tmp_path / "sd_xl_base_1.0.safetensors"
    write_sparse_safetensors(path, {**sdxl_checkpoint_layout(), "model_ema.decay": ("F32", ()), "alphas_cumprod": ("F32", (1000,))})
    info = analyze_model(path)
    assert (info.layout, info.family) == ("checkpoint", "sdxl")
    kinds = {c.kind: c for c in info.components if c.loaded}
    assert set(kinds) == {"diffusion_model", "text_encoder", "vae"}
    assert kinds["diffusion_model"].prefix == "model.diffusion_model."
    assert kinds["text_encoder"].label == "text encoder (CLIP-L, CLIP-G)"
    assert kinds["vae"].prefix == "first_stage_model."
    unused = [c for c in info.components if not c.loaded]
    assert len(unused) == 1 and unused[0].tensor_count == 2
    assert any("not loaded by ComfyUI" in n for n in info.notes)


def test_standalone_text_encoders_and_vae(tmp_path: Path) -> None:
    t5 = tmp_path / "t5xxl_fp16.safetensors"
    write_sparse_safetensors(t5, t5xxl_layout())
    info = analyze_model(t5)
    assert info.layout == "text_encoder" and info.components[0].label == "text encoder (T5)"
    assert {b.name: b.count for b in info.components[0].blocks} == {"encoder.block": 24}
    clip = tmp_path / "clip_l.safetensors"
    write_sparse_safetensors(clip, clip_l_layout())
    assert analyze_model(clip).components[0].label == "text encoder (CLIP)"
    vae = tmp_path / "ae.safetensors"
    write_sparse_safetensors(vae, vae_layout())
    assert analyze_model(vae).layout == "vae"


def test_real_small_sd15_style_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "tiny.safetensors"
    tensors = {
        f"model.diffusion_model.input_blocks.{i}.0.weight": np.zeros((8, 8), dtype=np.float32) for i in range(8)
    }
    tensors["model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"] = np.zeros((320, 768), dtype=np.float32)
    tensors["cond_stage_model.transformer.text_model.embeddings.position_ids"] = np.arange(77, dtype=np.int64)[None]
    tensors["first_stage_model.decoder.conv_in.weight"] = np.zeros((4, 4), dtype=np.float16)
    save_file(tensors, str(path))
    info = analyze_model(path)
    assert (info.layout, info.family) == ("checkpoint", "sd15")
    te = next(c for c in info.components if c.kind == "text_encoder")
    assert te.gpu_bytes == te.file_bytes == 77 * 8  # int64 stays as stored


def test_diffusers_pipeline_and_shard_folders(tmp_path: Path) -> None:
    pipe = tmp_path / "FLUX.1-dev"
    flux = flux_layout()
    names = list(flux)
    write_sparse_safetensors(pipe / "transformer" / "diffusion_pytorch_model-00001-of-00002.safetensors", {n: flux[n] for n in names[:400]})
    write_sparse_safetensors(pipe / "transformer" / "diffusion_pytorch_model-00002-of-00002.safetensors", {n: flux[n] for n in names[400:]})
    write_sparse_safetensors(pipe / "text_encoder_2" / "model.safetensors", t5xxl_layout())
    write_sparse_safetensors(pipe / "vae" / "diffusion_pytorch_model.safetensors", vae_layout())
    info = analyze_model(pipe)
    assert info.format == "folder" and len(info.files) == 4
    dm = info.of_kind("diffusion_model")[0]
    assert dm.gpu_bytes == layout_bytes(flux) and {b.name: b.count for b in dm.blocks}["single_blocks"] == 38
    assert info.family == "flux" and info.layout == "checkpoint"
    assert info.of_kind("text_encoder") and info.of_kind("vae")
    shards = tmp_path / "shards"
    for i in range(3):
        write_sparse_safetensors(shards / f"part-{i}.safetensors", {n: flux[n] for n in names[i::3]})
    only = analyze_model(shards)
    assert only.layout == "diffusion_model" and any("merge the shards" in n for n in only.notes)


def test_wan_width_scales_its_memory_factor(tmp_path: Path) -> None:
    path = tmp_path / "wan.safetensors"
    write_sparse_safetensors(path, blocks_layout(2 * 10**9, n_blocks=8))
    info = analyze_model(path)
    assert info.family == "wan" and info.memory_usage_factor == round(5120 / 2222, 3)


def test_empty_folder_and_missing_path(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no weights here")
    with pytest.raises(ModelFileError, match=re.escape("holds no .safetensors or .gguf file")):
        analyze_model(tmp_path / "empty")
    with pytest.raises(ModelFileError, match="no such file"):
        analyze_model(tmp_path / "missing.safetensors")


def test_gguf_diffusion_model_keeps_its_quantised_size(tmp_path: Path) -> None:
    gguf = pytest.importorskip("gguf", reason="the gguf package writes the real GGUF files for this test")
    path = tmp_path / "flux1-dev-Q4_K.gguf"
    writer = gguf.GGUFWriter(str(path), arch="flux")
    for i in range(4):
        writer.add_tensor(f"double_blocks.{i}.img_attn.qkv.weight", np.zeros((9216, 3072 // 256 * 144), dtype=np.uint8),
                          raw_dtype=gguf.GGMLQuantizationType.Q4_K)
        writer.add_tensor(f"double_blocks.{i}.img_attn.norm.key_norm.scale", np.ones(128, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    info = analyze_model(path)
    assert (info.format, info.layout, info.family) == ("gguf", "diffusion_model", "flux")
    (dm,) = info.components
    assert dm.dtype_bytes["Q4_K"] == 4 * 9216 * 3072 // 256 * 144
    # Quantised weights stay quantised on the GPU; the F32 norms become 16-bit.
    assert dm.gpu_bytes == dm.dtype_bytes["Q4_K"] + 4 * 128 * 2
    assert {b.name: b.count for b in dm.blocks} == {"double_blocks": 4}
