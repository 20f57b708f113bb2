"""Models shared by the native-node tests: sparse files shaped like the real ones."""

from __future__ import annotations

import pytest

from comfyrig.fit.components import ModelInfo, analyze_model
from comfyrig.fit.fit import GIB
from tests.fit.layouts import (
    blocks_layout,
    clip_l_layout,
    flux_layout,
    sdxl_checkpoint_layout,
    t5xxl_layout,
    vae_layout,
    write_sparse_safetensors,
)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ModelInfo]:
    """SDXL, Flux (bf16 and fp8), CLIP-L, T5-XXL, the Flux VAE and a 12 GiB DiT, by short name."""
    d = tmp_path_factory.mktemp("native")
    layouts = {
        "sdxl": ("sdxl.safetensors", sdxl_checkpoint_layout()),
        "flux8": ("flux8.safetensors", flux_layout("F8_E4M3")),
        "flux": ("flux1-dev.safetensors", flux_layout()),
        "clip_l": ("clip_l.safetensors", clip_l_layout()),
        "t5": ("t5xxl_fp16.safetensors", t5xxl_layout()),
        "vae": ("ae.safetensors", vae_layout()),
        "dit": ("dit.safetensors", blocks_layout(12 * GIB, n_blocks=40)),
    }
    out = {}
    for key, (name, layout) in layouts.items():
        write_sparse_safetensors(d / name, layout)
        out[key] = analyze_model(d / name)
    return out
