"""`comfyrig doctor` and `comfyrig monitor --once` on real NVIDIA GPUs (marker ``gpu``)."""

from __future__ import annotations

import json
import os

import pytest

from comfyrig.host.gpus.probe import probe_inventory

from ..conftest import Cli
from .test_real_gpus import COMFYUI_DIR, COMFYUI_PYTHON, record

pytestmark = [pytest.mark.gpu, pytest.mark.e2e]

INVENTORY = probe_inventory(None)
if INVENTORY.source not in ("nvml", "nvidia-smi") or not INVENTORY.gpus:
    pytest.skip(f"no NVIDIA GPU here ({INVENTORY.problem or INVENTORY.source})", allow_module_level=True)


@pytest.fixture
def real_cli(tmp_path) -> Cli:  # type: ignore[no-untyped-def]
    cli = Cli(tmp_path)
    cli.env["COMFYRIG_STATE_DIR"] = str(tmp_path / "state")
    return cli


def test_doctor_on_real_gpus(real_cli: Cli) -> None:
    args = ["doctor", "--json", "--multi"]
    if COMFYUI_DIR and COMFYUI_PYTHON:
        args += ["--comfyui-dir", COMFYUI_DIR, "--python", COMFYUI_PYTHON]
    result = real_cli(*args, timeout=180)
    checks = {c["id"]: c for c in json.loads(result.stdout)["checks"]}
    record("doctor", {"exit": result.returncode, "checks": {k: [v["status"], v["message"]] for k, v in checks.items()}})
    assert checks["gpu.driver"]["status"] == "pass"
    failed = [c for c in checks.values() if c["status"] == "fail"]
    assert not failed, failed
    if COMFYUI_DIR:
        torch_checks = [c for k, c in checks.items() if k.startswith("torch")]
        assert torch_checks and all(c["status"] in ("pass", "warn") for c in torch_checks)


def test_monitor_once_json_on_real_gpus(real_cli: Cli) -> None:
    result = real_cli("monitor", "--once", "--json", timeout=60)
    assert result.returncode == 0, result.stderr
    snapshot = json.loads(result.stdout)
    record("monitor_once", {"source": snapshot["source"], "gpus": snapshot["gpus"]})
    assert snapshot["source"] == "nvml"
    assert [g["uuid"] for g in snapshot["gpus"]] == [g.uuid for g in INVENTORY.gpus]
    for gpu in snapshot["gpus"]:
        assert gpu["memory_total_mib"] > 0 and gpu.get("temperature_c") is not None
    assert os.environ.get("COMFYRIG_FAKE_GPUS") is None
