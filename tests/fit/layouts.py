"""Model layouts for tests: tensor names and shapes shaped like the real models,
written as sparse files (the header declares tens of GB; the file system
allocates nothing) or as small real files with the safetensors library."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from comfyrig.host.gpus.inventory import Gpu
from comfyrig.host.gpus.simulated import parse_simulated

Layout = dict[str, tuple[str, tuple[int, ...]]]

_BITS = {"F32": 32, "F16": 16, "BF16": 16, "F8_E4M3": 8, "I64": 64, "U8": 8}


def nbytes(dtype: str, shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n * _BITS[dtype] // 8


def write_sparse_safetensors(path: Path, layout: Layout, metadata: dict[str, str] | None = None) -> int:
    """Write a valid safetensors header for ``layout`` and extend the file to its
    full size without writing data; returns the file size in bytes."""
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = metadata
    offset = 0
    for name, (dtype, shape) in layout.items():
        n = nbytes(dtype, shape)
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        f.truncate(8 + len(raw) + offset)
    return 8 + len(raw) + offset


def _linear(layout: Layout, name: str, out_f: int, in_f: int, dtype: str, bias: bool = True) -> None:
    layout[f"{name}.weight"] = (dtype, (out_f, in_f))
    if bias:
        layout[f"{name}.bias"] = (dtype, (out_f,))


def flux_layout(dtype: str = "BF16", prefix: str = "") -> Layout:
    """Flux.1-dev's transformer: 19 double blocks, 38 single blocks, hidden 3072 (~11.9 B parameters)."""
    h, mlp = 3072, 12288
    out: Layout = {}
    p = prefix
    _linear(out, f"{p}img_in", h, 64, dtype)
    _linear(out, f"{p}txt_in", h, 4096, dtype)
    for name in ("time_in", "vector_in", "guidance_in"):
        _linear(out, f"{p}{name}.in_layer", h, {"time_in": 256, "vector_in": 768, "guidance_in": 256}[name], dtype)
        _linear(out, f"{p}{name}.out_layer", h, h, dtype)
    for i in range(19):
        for s in ("img", "txt"):
            b = f"{p}double_blocks.{i}.{s}"
            _linear(out, f"{b}_mod.lin", 6 * h, h, dtype)
            _linear(out, f"{b}_attn.qkv", 3 * h, h, dtype)
            out[f"{b}_attn.norm.query_norm.scale"] = (dtype, (128,))
            out[f"{b}_attn.norm.key_norm.scale"] = (dtype, (128,))
            _linear(out, f"{b}_attn.proj", h, h, dtype)
            _linear(out, f"{b}_mlp.0", mlp, h, dtype)
            _linear(out, f"{b}_mlp.2", h, mlp, dtype)
    for i in range(38):
        b = f"{p}single_blocks.{i}"
        _linear(out, f"{b}.linear1", 3 * h + mlp, h, dtype)
        _linear(out, f"{b}.linear2", h, h + mlp, dtype)
        out[f"{b}.norm.query_norm.scale"] = (dtype, (128,))
        out[f"{b}.norm.key_norm.scale"] = (dtype, (128,))
        _linear(out, f"{b}.modulation.lin", 3 * h, h, dtype)
    _linear(out, f"{p}final_layer.linear", 64, h, dtype)
    _linear(out, f"{p}final_layer.adaLN_modulation.1", 2 * h, h, dtype)
    return out


def t5xxl_layout(dtype: str = "F16") -> Layout:
    """T5-XXL encoder as ComfyUI's text_encoders folder holds it (~4.8 B parameters)."""
    d, ff = 4096, 10240
    out: Layout = {"shared.weight": (dtype, (32128, d))}
    for i in range(24):
        b = f"encoder.block.{i}.layer"
        for m in ("q", "k", "v", "o"):
            out[f"{b}.0.SelfAttention.{m}.weight"] = (dtype, (d, d))
        out[f"{b}.0.layer_norm.weight"] = (dtype, (d,))
        out[f"{b}.1.DenseReluDense.wi_0.weight"] = (dtype, (ff, d))
        out[f"{b}.1.DenseReluDense.wi_1.weight"] = (dtype, (ff, d))
        out[f"{b}.1.DenseReluDense.wo.weight"] = (dtype, (d, ff))
        out[f"{b}.1.layer_norm.weight"] = (dtype, (d,))
    out["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"] = (dtype, (32, 64))
    out["encoder.final_layer_norm.weight"] = (dtype, (d,))
    return out


def clip_l_layout(dtype: str = "F16", prefix: str = "") -> Layout:
    d = 768
    out: Layout = {f"{prefix}text_model.embeddings.token_embedding.weight": (dtype, (49408, d)),
                   f"{prefix}text_model.embeddings.position_embedding.weight": (dtype, (77, d))}
    for i in range(12):
        b = f"{prefix}text_model.encoder.layers.{i}"
        for m in ("q_proj", "k_proj", "v_proj", "out_proj"):
            _linear(out, f"{b}.self_attn.{m}", d, d, dtype)
        _linear(out, f"{b}.mlp.fc1", 4 * d, d, dtype)
        _linear(out, f"{b}.mlp.fc2", d, 4 * d, dtype)
        for n in ("layer_norm1", "layer_norm2"):
            _linear(out, f"{b}.{n}", d, 1, dtype)
            out[f"{b}.{n}.weight"] = (dtype, (d,))
    out[f"{prefix}text_model.final_layer_norm.weight"] = (dtype, (d,))
    return out


def vae_layout(dtype: str = "F16", prefix: str = "", latent: int = 16) -> Layout:
    """An AutoencoderKL-shaped VAE (~84 M parameters)."""
    out: Layout = {}
    chans = (128, 256, 512, 512)
    for side, blocks in (("encoder", "down"), ("decoder", "up")):
        out[f"{prefix}{side}.conv_in.weight"] = (dtype, (128, latent if side == "decoder" else 3, 3, 3))
        for i, c in enumerate(chans):
            for j in range(2 if side == "encoder" else 3):
                out[f"{prefix}{side}.{blocks}.{i}.block.{j}.conv1.weight"] = (dtype, (c, c, 3, 3))
                out[f"{prefix}{side}.{blocks}.{i}.block.{j}.conv2.weight"] = (dtype, (c, c, 3, 3))
        out[f"{prefix}{side}.mid.block_1.conv1.weight"] = (dtype, (512, 512, 3, 3))
        out[f"{prefix}{side}.mid.block_2.conv1.weight"] = (dtype, (512, 512, 3, 3))
    return out


def sdxl_checkpoint_layout(dtype: str = "F16") -> Layout:
    """An SDXL checkpoint: UNet ~2.57 B, CLIP-L + CLIG-G ~0.8 B, VAE ~84 M parameters."""
    out: Layout = {}
    p = "model.diffusion_model."
    out[f"{p}label_emb.0.0.weight"] = (dtype, (1280, 2816))
    out[f"{p}input_blocks.0.0.weight"] = (dtype, (320, 4, 3, 3))
    # 2.5 B parameters spread over input/middle/output blocks like the real UNet.
    for part, count, width in (("input_blocks", 9, 1280), ("middle_block", 3, 1280), ("output_blocks", 9, 1280)):
        for i in range(count):
            b = f"{p}{part}.{i}.1.transformer_blocks"
            for t in range(10):
                _linear(out, f"{b}.{t}.attn1.to_q", width, width, dtype, bias=False)
                _linear(out, f"{b}.{t}.ff.net.0.proj", 4 * width, width, dtype)
                _linear(out, f"{b}.{t}.ff.net.2", width, 2 * width, dtype)
    out[f"{p}input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight"] = (dtype, (640, 2048))
    for k, v in clip_l_layout(dtype, "conditioner.embedders.0.transformer.").items():
        out[k] = v
    g = "conditioner.embedders.1.model."
    out[f"{g}token_embedding.weight"] = (dtype, (49408, 1280))
    for i in range(32):
        _linear(out, f"{g}transformer.resblocks.{i}.attn.in_proj", 3 * 1280, 1280, dtype)
        _linear(out, f"{g}transformer.resblocks.{i}.attn.out_proj", 1280, 1280, dtype)
        _linear(out, f"{g}transformer.resblocks.{i}.mlp.c_fc", 5120, 1280, dtype)
        _linear(out, f"{g}transformer.resblocks.{i}.mlp.c_proj", 1280, 5120, dtype)
    for k, v in vae_layout(dtype, "first_stage_model.", latent=4).items():
        out[k] = v
    return out


def blocks_layout(total_bytes: int, n_blocks: int = 60, dtype: str = "BF16", prefix: str = "") -> Layout:
    """A Wan-like DiT of about ``total_bytes``: ``n_blocks`` equal blocks of four linears."""
    dim = 5120
    per_block = total_bytes // n_blocks
    ff = max(1, (per_block // 2 - 4 * dim * dim) // (2 * dim))
    out: Layout = {f"{prefix}head.modulation": (dtype, (1, 2, dim)), f"{prefix}patch_embedding.weight": (dtype, (dim, 16, 1, 2, 2))}
    for i in range(n_blocks):
        b = f"{prefix}blocks.{i}"
        for m in ("q", "k", "v", "o"):
            _linear(out, f"{b}.self_attn.{m}", dim, dim, dtype)
        _linear(out, f"{b}.ffn.0", ff, dim, dtype)
        _linear(out, f"{b}.ffn.2", dim, ff, dtype)
        out[f"{b}.norm3.weight"] = (dtype, (dim,))
    _linear(out, f"{prefix}head.head", 64, dim, dtype)
    return out


def layout_bytes(layout: Layout) -> int:
    return sum(nbytes(d, s) for d, s in layout.values())


def simulated_gpus(*specs: tuple[str, int, str | None]) -> tuple[Gpu, ...]:
    """(name, total MiB, compute capability) per GPU, 500 MiB used on each."""
    return parse_simulated([
        {"name": name, "memory_total_mib": total, "memory_used_mib": 500, "compute_capability": cc} for name, total, cc in specs
    ]).gpus
