from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from typing import Any

import pytest

from comfyrig.doctor.runner import CHECKS
from tests.cli.conftest import run_cli
from tests.doctor.conftest import MULTIGPU_263, comfy_tree, fake_python

Capture = pytest.CaptureFixture[str]


def healthy_comfyui(root: Path) -> Path:
    comfy = comfy_tree(root, comfy_modules=("model_management", "utils", "memory_management"),
                       packs={"ComfyUI-MultiGPU": MULTIGPU_263})
    fake_python(comfy)
    return comfy


def test_json_shape_and_exit_0_when_nothing_failed(fake_gpus: dict[str, Any], tmp_path: Path, capsys: Capture) -> None:
    comfy = healthy_comfyui(tmp_path / "ComfyUI")
    code, out, _ = run_cli(capsys, "doctor", "--json", "--comfyui-dir", str(comfy), "--single", "1")
    data = json.loads(out)
    assert list(data) == ["checks"]
    assert all(list(c) == ["id", "status", "message", "fix"] for c in data["checks"])
    assert len(data["checks"]) == len(CHECKS) == len({c["id"] for c in data["checks"]})
    statuses = {c["id"]: c["status"] for c in data["checks"]}
    assert "fail" not in statuses.values(), data
    assert statuses["torch.import"] == "skip"  # simulated GPUs: torch is not asked by default
    assert code == 0


def test_a_failure_exits_1(fake_gpus: dict[str, Any], tmp_path: Path, capsys: Capture) -> None:
    comfy = healthy_comfyui(tmp_path / "ComfyUI")
    code, out, _ = run_cli(capsys, "doctor", "--json", "--comfyui-dir", str(comfy), "--single", "1", "--", "--medvram")
    failed = [c["id"] for c in json.loads(out)["checks"] if c["status"] == "fail"]
    assert (code, failed) == (1, ["comfyui.args"])


def test_table(fake_gpus: dict[str, Any], tmp_path: Path, capsys: Capture, monkeypatch: pytest.MonkeyPatch) -> None:
    # A port nothing holds: 8188 may be taken on a shared machine, which makes net.port a warning.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        monkeypatch.setenv("COMFYUI_PORT", str(s.getsockname()[1]))
    code, out, _ = run_cli(capsys, "doctor", "--no-torch")
    assert code == 1  # no ComfyUI directory here
    assert "comfyrig doctor" in out and "No ComfyUI found" in out
    # The counts of passes and warnings depend on the machine (a port or GPU that something else
    # on a shared machine holds turns a pass into a warning): the table's shape is the point.
    summary = re.fullmatch(r"(\d+) passed, (\d+) warnings?, 1 failed, (\d+) skipped", out.rstrip().splitlines()[-1])
    assert summary is not None, out.rstrip().splitlines()[-1]
    assert sum(int(n) for n in summary.groups()) + 1 == len(CHECKS)


def test_torch_flag_runs_the_child(fake_gpus: dict[str, Any], tmp_path: Path, capsys: Capture) -> None:
    comfy = healthy_comfyui(tmp_path / "ComfyUI")
    _, out, _ = run_cli(capsys, "doctor", "--json", "--torch", "--comfyui-dir", str(comfy), "--dual")
    statuses = {c["id"]: c["status"] for c in json.loads(out)["checks"]}
    assert [statuses[i] for i in ("torch.import", "torch.build", "torch.devices")] == ["pass", "pass", "pass"]


def test_conflicting_modes_are_a_usage_error(fake_gpus: dict[str, Any], capsys: Capture) -> None:
    code, _, err = run_cli(capsys, "doctor", "--dual", "--cpu")
    assert code == 2 and "Choose one GPU mode" in err
