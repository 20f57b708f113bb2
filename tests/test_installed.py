"""The installed ``comfyrig`` command, run as a user would, on simulated GPUs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import free_port
from tests.conftest import TWO_3090, Stub
from tests.doctor.conftest import MULTIGPU_263, comfy_tree, fake_python

EXE = shutil.which("comfyrig", path=str(Path(sys.executable).parent)) or shutil.which("comfyrig")
pytestmark = [pytest.mark.skipif(EXE is None, reason="the comfyrig command is not installed (pip install -e '.[test]')"), pytest.mark.e2e]


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    assert EXE is not None
    base = {k: v for k, v in os.environ.items() if not k.startswith(("COMFYUI_", "CUDA_", "PYTORCH_", "COMFYRIG_"))}
    full = {**base, "COMFYRIG_FAKE_GPUS": json.dumps(TWO_3090), "COMFYUI_PORT": str(free_port()), "NO_COLOR": "1", **env}
    return subprocess.run([EXE, *args], cwd=cwd, env=full, capture_output=True, text=True, timeout=60, check=False)


def test_doctor_json(tmp_path: Path) -> None:
    comfy = comfy_tree(tmp_path / "ComfyUI", version="0.3.64", packs={"ComfyUI-MultiGPU": MULTIGPU_263})
    fake_python(comfy)
    (comfy / ".env").write_text("CUDA_VISIBLE_DEVICES=0,1\nCOMFY_PORT=8190\nCOMFYUI_ARGS=\"--medvram\"\n")
    result = run(["doctor", "--json"], cwd=tmp_path, COMFYUI_DIR=str(comfy))
    assert result.returncode == 1, result.stderr
    checks: list[dict[str, Any]] = json.loads(result.stdout)["checks"]
    failed = sorted(c["id"] for c in checks if c["status"] == "fail")
    warned = sorted(c["id"] for c in checks if c["status"] == "warn")
    assert failed == ["comfyui.args", "multigpu.pack"]
    assert warned == ["env.keys", "gpu.vram"]


def test_monitor_once_json(tmp_path: Path, comfy_stub: Stub) -> None:
    comfy_stub.state.queue_remaining = 2
    result = run(["monitor", "--once", "--json", "--url", comfy_stub.url], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert [g["name"] for g in data["gpus"]] == ["NVIDIA GeForce RTX 3090"] * 2
    assert data["instances"][0]["state"] == "up" and data["instances"][0]["pending"] == 1


def test_bad_fake_gpus_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    result = run(["monitor", "--once"], cwd=tmp_path, COMFYRIG_FAKE_GPUS="[{")
    assert result.returncode == 2
    assert "COMFYRIG_FAKE_GPUS (inline JSON) is not valid JSON" in result.stderr
    assert "Traceback" not in result.stderr
