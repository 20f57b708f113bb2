#!/usr/bin/env python3
"""Write a random-weight SD1.5 checkpoint that ComfyUI detects as a real SD1.5.

The layout file (``sd15_checkpoint_layout.json``, copied into the bundle by
``make_bundle.py``) is a flat JSON object ``{tensor_name: [dim, ...]}``: 1,130
tensors, 1,066 M parameters, no dtypes.  Every tensor is written as float16:

* 1-D ``*.weight`` tensors are the GroupNorm/LayerNorm scales -> 1.0
* ``*.bias`` tensors -> 0.0
* everything else -> normal(0, 0.02)

and, like the real SD1.5 files, ``cond_stage_model.transformer.embeddings.position_ids``
is added as int64 ``[[0, 1, ..., 76]]`` (ComfyUI only accepts int64 or rounded
float32 there).  Small random values keep activations finite so that the
sampler and VAE run the same kernels, at the same cost, as with real weights.

The weights are drawn on CUDA when torch sees a GPU (seconds), else on the CPU
(about 10 s on 2 cores).  The output is deterministic for a given seed and device
kind.  An existing file with the same tensor names, shapes and dtypes is kept
(pass ``--force`` to rewrite it), so running this twice costs only a header read.

Usage::

    python3 -m gpulab.make_sd15_checkpoint --comfyui-dir /tmp/comfyui \
        [--layout bundle/sd15_checkpoint_layout.json] [--seed 0] [--device auto]

writes ``<comfyui-dir>/models/checkpoints/sd15_random.safetensors`` (2.1 GB).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import struct
import sys
import time
from pathlib import Path

from gpulab.paths import BUNDLE, shared_data

CKPT_NAME = "sd15_random.safetensors"
POSITION_IDS_KEY = "cond_stage_model.transformer.embeddings.position_ids"
N_POSITIONS = 77
WEIGHT_STD = 0.02


def default_layout() -> Path:
    """The bundled copy first, then the team's shared data folder."""
    bundled = BUNDLE / "sd15_checkpoint_layout.json"
    return bundled if bundled.is_file() else shared_data(bundled.name) or bundled


def load_layout(path: Path) -> dict[str, list[int]]:
    """Read ``{name: shape}``; raise ValueError on anything else."""
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{path}: expected a non-empty JSON object of name -> shape")
    for name, shape in data.items():
        if not (isinstance(shape, list) and all(isinstance(d, int) and d > 0 for d in shape)):
            raise ValueError(f"{path}: {name!r} has shape {shape!r}, expected a list of positive ints")
    return data


def planned_header(layout: dict[str, list[int]], position_ids: bool) -> dict[str, tuple[str, list[int]]]:
    """name -> (safetensors dtype, shape) of what this script writes."""
    plan = {name: ("F16", list(shape)) for name, shape in layout.items()}
    if position_ids:
        plan[POSITION_IDS_KEY] = ("I64", [1, N_POSITIONS])
    return plan


def read_header(path: Path) -> dict[str, tuple[str, list[int]]] | None:
    """name -> (dtype, shape) from a safetensors header, or None if unreadable."""
    try:
        with path.open("rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > 100 * 1024 * 1024:
                return None
            header = json.loads(f.read(n))
    except (OSError, ValueError, struct.error):
        return None
    header.pop("__metadata__", None)
    return {k: (v["dtype"], list(v["shape"])) for k, v in header.items()}


def init_kind(name: str, shape: list[int]) -> str:
    if name.endswith(".bias"):
        return "zeros"
    if name.endswith(".weight") and len(shape) == 1:
        return "ones"  # GroupNorm / LayerNorm scale
    return "normal"


def build(layout: dict[str, list[int]], seed: int, device: str, position_ids: bool):  # -> dict[str, torch.Tensor]
    import torch

    gen = torch.Generator(device=device).manual_seed(seed)
    tensors = {}
    for name in sorted(layout):  # sorted: the random stream does not depend on JSON order
        shape = layout[name]
        kind = init_kind(name, shape)
        if kind == "zeros":
            t = torch.zeros(shape, dtype=torch.float16)
        elif kind == "ones":
            t = torch.ones(shape, dtype=torch.float16)
        else:
            t = torch.empty(shape, dtype=torch.float16, device=device)
            t.normal_(0.0, WEIGHT_STD, generator=gen)
            t = t.cpu()
        tensors[name] = t
    if position_ids:
        tensors[POSITION_IDS_KEY] = torch.arange(N_POSITIONS, dtype=torch.int64).unsqueeze(0)
    return tensors


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--comfyui-dir", type=Path, default=Path(os.environ.get("COMFYUI_DIR", "/tmp/comfyui")))
    p.add_argument("--layout", type=Path, default=None, help="name -> shape JSON (default: bundle/ copy)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (cuda if available), cuda, cuda:N or cpu")
    p.add_argument("--no-position-ids", action="store_true", help="omit the int64 position_ids tensor")
    p.add_argument("--force", action="store_true", help="rewrite even if an identical layout exists")
    args = p.parse_args(argv)

    layout_path = args.layout or default_layout()
    layout = load_layout(layout_path)
    want = planned_header(layout, position_ids=not args.no_position_ids)
    out = args.comfyui_dir / "models" / "checkpoints" / CKPT_NAME
    n_params = sum(math.prod(s) for s in layout.values())

    if not args.force and out.is_file() and read_header(out) == want:
        print(f"checkpoint: {out} already has the {len(want)} planned tensors; kept "
              f"({out.stat().st_size / 2**30:.2f} GiB)")
        return 0

    t0 = time.perf_counter()
    import torch
    from safetensors.torch import save_file

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    t1 = time.perf_counter()
    tensors = build(layout, args.seed, device, position_ids=not args.no_position_ids)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t2 = time.perf_counter()

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    save_file(tensors, str(tmp), metadata={"format": "pt", "comfyrig": f"random sd15 seed={args.seed} device={device}"})
    os.chmod(tmp, 0o644)
    os.replace(tmp, out)  # a killed run never leaves a half-written checkpoint under the real name
    t3 = time.perf_counter()

    got = read_header(out)
    if got != want:
        print(f"checkpoint: {out} header does not match the layout", file=sys.stderr)
        return 1
    print(f"checkpoint: wrote {out}: {len(tensors)} tensors, {n_params / 1e6:.0f} M params, "
          f"{out.stat().st_size / 2**30:.2f} GiB; import torch {t1 - t0:.1f} s, "
          f"generate on {device} {t2 - t1:.1f} s, save {t3 - t2:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
