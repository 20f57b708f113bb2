#!/usr/bin/env python3
"""Load the random SD1.5 checkpoint through ComfyUI's own loader and say what it saw.

Run with ComfyUI's Python, from the repository root, with the ComfyUI tree on
PYTHONPATH (it imports ComfyUI's ``comfy`` package, as ComfyUI's main.py does)::

    PYTHONPATH=/tmp/comfyui python -m gpulab.check_sd15_checkpoint --comfyui-dir /tmp/comfyui [--cpu]

It calls ``comfy.sd.load_checkpoint_guess_config`` -- the function behind the
``CheckpointLoaderSimple`` node -- and prints one JSON object: the detected model
config class and model type, the text-encoder class, the VAE class and the load
time.  Exit 0 only if ComfyUI detected SD1.5 (``SD15``, ``EPS``,
``SD1ClipModel``, ``AutoencoderKL``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

EXPECTED = {
    "model_config": "SD15",
    "model_type": "EPS",
    "clip_model": "SD1ClipModel",
    "vae_model": "AutoencoderKL",
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--comfyui-dir", type=Path, default=Path(os.environ.get("COMFYUI_DIR", "/tmp/comfyui")))
    p.add_argument("--ckpt", default="sd15_random.safetensors")
    p.add_argument("--cpu", action="store_true", help="make ComfyUI's model management use the CPU")
    args = p.parse_args(argv)

    comfy_dir = args.comfyui_dir.resolve()
    spec = importlib.util.find_spec("comfy")  # a namespace package: no __init__.py
    if spec is None or comfy_dir / "comfy" not in {Path(p).resolve() for p in spec.submodule_search_locations or ()}:
        p.error(f"ComfyUI's comfy package is not importable from {comfy_dir}: run with PYTHONPATH={comfy_dir}")
    os.chdir(comfy_dir)
    # comfy.cli_args parses sys.argv only when asked to; this is how ComfyUI's
    # main.py switches it on, so --cpu reaches comfy.model_management.
    import comfy.options

    comfy.options.enable_args_parsing()
    sys.argv = [sys.argv[0]] + (["--cpu"] if args.cpu else [])
    import comfy.sd

    ckpt = comfy_dir / "models" / "checkpoints" / args.ckpt
    t0 = time.perf_counter()
    model, clip, vae, _clipvision = comfy.sd.load_checkpoint_guess_config(
        str(ckpt), output_vae=True, output_clip=True, embedding_directory=None
    )[:4]
    seen = {
        "model_config": type(model.model.model_config).__name__,
        "model_type": model.model.model_type.name,
        "clip_model": type(clip.cond_stage_model).__name__,
        "clip_inner": getattr(clip.cond_stage_model, "clip", None),
        "vae_model": type(vae.first_stage_model).__name__,
        "unet_dtype": str(model.model.get_dtype()),
        "load_device": str(model.load_device),
        "load_s": round(time.perf_counter() - t0, 2),
        "checkpoint": str(ckpt),
    }
    seen["ok"] = all(seen[k] == v for k, v in EXPECTED.items())
    print(json.dumps(seen, indent=2))
    return 0 if seen["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
