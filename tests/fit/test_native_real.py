"""Contract test: real ComfyUI (0.24.0 or newer, on the CPU) accepts what ``comfyrig plan --write``
makes with its native multi-GPU nodes (marker ``comfyui``).

Runs when COMFYUI_DIR and COMFYUI_PYTHON name a checkout that has ``comfy_extras/nodes_multigpu.py``.
``comfyrig plan`` plans sparse model files on two simulated RTX 4080s and rewrites a workflow whose
text encoder and VAE move to the second GPU (SelectCLIPDevice, SelectVAEDevice) and whose sampler
runs at CFG 4.5 (MultiGPU_WorkUnits). ComfyUI then starts with ``--base-directory`` on a temporary
folder whose ``models/`` holds empty files of the same names (its loaders' inputs are lists of the
files there) and ``POST /prompt`` must accept the rewritten workflow: HTTP 200, a prompt id, no node
errors. Running it is not the point: the empty files make the first loader fail at once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from comfyrig.cli import main
from comfyrig.comfy.multigpu import native_nodes
from tests.fake_comfyui.harness import free_port
from tests.fit.layouts import blocks_layout, t5xxl_layout, vae_layout, write_sparse_safetensors

pytestmark = [pytest.mark.e2e, pytest.mark.comfyui]

REAL_DIR = os.environ.get("COMFYUI_DIR")
REAL_PYTHON = os.environ.get("COMFYUI_PYTHON")
RTX4080 = {"name": "RTX 4080", "memory_total_mib": 16384, "memory_used_mib": 500, "compute_capability": "8.9"}
# Where each loader's file goes under the base directory's models/ (ComfyUI's folder_paths.py).
FOLDERS = {"dit.safetensors": "diffusion_models", "t5xxl_fp16.safetensors": "text_encoders", "ae.safetensors": "vae"}
WORKFLOW = {
    "1": {"class_type": "UNETLoader", "inputs": {"unet_name": "dit.safetensors", "weight_dtype": "default"}},
    "2": {"class_type": "CLIPLoader", "inputs": {"clip_name": "t5xxl_fp16.safetensors", "type": "sd3"}},
    "3": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}},
    "4": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red fox", "clip": ["2", 0]}},
    "5": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["2", 0]}},
    "6": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}},
    "7": {"class_type": "KSampler", "inputs": {"model": ["1", 0], "positive": ["4", 0], "negative": ["5", 0], "latent_image": ["6", 0],
                                               "seed": 1, "steps": 2, "cfg": 4.5, "sampler_name": "euler", "scheduler": "simple",
                                               "denoise": 1.0}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["7", 0], "vae": ["3", 0]}},
    "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "native"}},
}


def _real_checkout() -> Path:
    if not (REAL_DIR and REAL_PYTHON):
        pytest.skip("set COMFYUI_DIR and COMFYUI_PYTHON to a real ComfyUI checkout (0.24.0 or newer) to run this")
    checkout = Path(REAL_DIR)
    if not native_nodes(checkout).can_place or not native_nodes(checkout).can_split_cfg:
        pytest.skip(f"{checkout} has no native multi-GPU nodes (ComfyUI 0.24.0 and newer)")
    if "--base-directory" not in (checkout / "comfy" / "cli_args.py").read_text(encoding="utf-8"):
        pytest.skip(f"{checkout} has no --base-directory")
    return checkout


def _rewrite(tmp_path: Path, checkout: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    models = tmp_path / "planned"
    models.mkdir()
    for name, layout in (("dit.safetensors", blocks_layout(12 << 30, n_blocks=40)), ("t5xxl_fp16.safetensors", t5xxl_layout()),
                         ("ae.safetensors", vae_layout())):
        write_sparse_safetensors(models / name, layout)
    (tmp_path / "in.json").write_text(json.dumps(WORKFLOW))
    monkeypatch.setenv("COMFYRIG_FAKE_GPUS", json.dumps([RTX4080, RTX4080]))
    code = main(["plan", *(str(models / n) for n in FOLDERS), "--reserve", "2", "--ram", "64", "--comfyui-dir", str(checkout),
                 "--workflow", str(tmp_path / "in.json"), "--write", str(tmp_path / "out.json")])
    out = capsys.readouterr().out
    assert code == 0, out
    new: dict[str, Any] = json.loads((tmp_path / "out.json").read_text())
    assert {n["class_type"] for n in new.values()} >= {"SelectCLIPDevice", "SelectVAEDevice", "MultiGPU_WorkUnits"}, out
    return new


def test_real_comfyui_accepts_the_native_rewrite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    checkout = _real_checkout()
    workflow = _rewrite(tmp_path, checkout, monkeypatch, capsys)
    base = tmp_path / "base"
    (base / "custom_nodes").mkdir(parents=True)  # ComfyUI lists it before anything else
    for name, folder in FOLDERS.items():
        (base / "models" / folder).mkdir(parents=True, exist_ok=True)
        (base / "models" / folder / name).write_bytes(b"")
    port = free_port()
    log = (tmp_path / "comfyui.log").open("w")
    proc = subprocess.Popen(
        [str(REAL_PYTHON), "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port), "--base-directory", str(base)],
        cwd=checkout, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            deadline = time.monotonic() + 180
            while True:
                assert proc.poll() is None, (tmp_path / "comfyui.log").read_text()
                try:
                    if client.get("/system_stats").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "ComfyUI did not answer within 180 s"
                time.sleep(0.5)
            # The nodes are there; on the CPU their device lists have no gpu:N, which validation allows.
            info = client.get("/object_info/SelectCLIPDevice").json()["SelectCLIPDevice"]
            assert info["input"]["required"]["device"][1]["options"] == ["default", "cpu"]
            # Validation looks at the inserted nodes: max_gpus below its minimum is refused.
            work_units = next(k for k, n in workflow.items() if n["class_type"] == "MultiGPU_WorkUnits")
            bad = json.loads(json.dumps(workflow))
            bad[work_units]["inputs"]["max_gpus"] = 0
            refused = client.post("/prompt", json={"prompt": bad, "client_id": "comfyrig-test"})
            assert refused.status_code == 400 and work_units in refused.json()["node_errors"], refused.text
            response = client.post("/prompt", json={"prompt": workflow, "client_id": "comfyrig-test"})
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["prompt_id"] and body["node_errors"] == {}
            # Let the run end (the empty model files fail the first loader) before stopping the server.
            deadline = time.monotonic() + 60
            while not client.get(f"/history/{body['prompt_id']}").json():
                assert time.monotonic() < deadline, "the prompt did not finish"
                time.sleep(0.5)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        log.close()
