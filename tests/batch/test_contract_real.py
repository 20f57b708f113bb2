"""Contract test: ``comfyrig batch`` against a real ComfyUI on the CPU (marker ``comfyui``).

Runs against each real checkout COMFYUI_DIRS (or COMFYUI_DIR) names (tests/real_comfyui.py; 0.3.64,
0.3.76 and 0.24.0 here): a local fleet of one CPU worker, the model-free workflow EmptyImage -> ImageBlur -> SaveImage, sweeping colour and size,
in API and in UI format (converted with the real /object_info).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ..conftest import Cli
from ..real_comfyui import Checkout, real_params, usable
from .e2e import check_invariants, harness, rows, write

pytestmark = pytest.mark.e2e  # starts real processes

API = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 16, "batch_size": 1, "color": 0}, "_meta": {"title": "Canvas"}},
    "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 1, "sigma": 1.0}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "contract"}},
}
UI = {
    "nodes": [
        {"id": 1, "type": "EmptyImage", "mode": 0, "title": "Canvas", "inputs": [], "widgets_values": [16, 16, 1, 0]},
        {"id": 2, "type": "ImageBlur", "mode": 0, "inputs": [{"name": "image", "type": "IMAGE", "link": 1}], "widgets_values": [1, 1.0]},
        {"id": 3, "type": "SaveImage", "mode": 0, "inputs": [{"name": "images", "type": "IMAGE", "link": 2}], "widgets_values": ["contract"]},
    ],
    "links": [[1, 1, 0, 2, 0, "IMAGE"], [2, 2, 0, 3, 0, "IMAGE"]],
}


@pytest.mark.parametrize("checkout", real_params())
@pytest.mark.parametrize("fmt", ["api", "ui"])
def test_real_comfyui_sweeps_colour_and_size(cli: Cli, tmp_path: Path, fmt: str, checkout: Checkout | None) -> None:
    real = usable(checkout)
    wf = write(tmp_path / "wf.json", API if fmt == "api" else UI)
    out = tmp_path / "out"
    result = cli("batch", str(wf), "--out", str(out), "--cpu", "--comfyui-dir", real.dir, "--python", real.python,
                 "--port", str(harness.free_port()), "--comfyui-args", f"--output-directory {tmp_path / 'comfy-out'}",
                 "--sweep", "Canvas.color=0xff0000|0x00ff00", "--sweep", "1.width=16|24", "--json", "--plain", timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert (report["done"], report["failed"], report["output_files"]) == (4, 0, 4)
    check_invariants(out, total=4)
    for job in rows(out):
        values = json.loads(job["vars"])
        data = (out / json.loads(job["outputs"])[0]["path"]).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        width = int.from_bytes(data[16:20], "big")
        height = int.from_bytes(data[20:24], "big")
        assert (width, height) == (values["1.width"], 16)
