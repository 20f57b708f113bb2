"""Install a real ComfyUI (made into a local git repository) with real torch.

Slow (minutes: ComfyUI's requirements) and dependent on what the machine's
pip can reach, so it runs only when asked:

    pip download torch==2.14.1 torchvision==0.29.1 --only-binary=:all: -d /tmp/tidx
    COMFYRIG_TEST_REAL_INSTALL=1 COMFYRIG_REAL_TORCH_INDEX=/tmp/tidx \\
    .venv/bin/python -m pytest -q tests/install/test_install_real.py

(a folder of matching torch + torchvision wheels and their dependencies is a
local torch index: pip takes both from it, never a mismatched pair.)

COMFYRIG_REAL_PIP_CONFIG, if set, replaces pip's configuration (and PIP_*
variables): a find-links in pip.conf can make pip take torch from one place
and torchvision from another, which the install then reports.
COMFYRIG_REAL_COMFYUI_SRC (required) is a ComfyUI source
tree; it is copied, torchaudio is dropped from its requirements.txt (no
wheel for it here), committed and tagged v0.3.76. pip uses the machine's own
configuration for everything but torch. No GPU is simulated, so the check
expects CPU wheels, and ComfyUI must start with --quick-test-for-ci --cpu.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ..conftest import Cli
from .builders import commit_all, git

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.comfyui,
    pytest.mark.skipif(os.environ.get("COMFYRIG_TEST_REAL_INSTALL") != "1",
                       reason="set COMFYRIG_TEST_REAL_INSTALL=1 (and COMFYRIG_REAL_TORCH_INDEX) to install a real ComfyUI"),
]


def test_real_comfyui_installs_and_starts(tmp_path: Path) -> None:
    src = Path(os.environ.get("COMFYRIG_REAL_COMFYUI_SRC", ""))
    torch_index = os.environ.get("COMFYRIG_REAL_TORCH_INDEX")
    if not os.environ.get("COMFYRIG_REAL_COMFYUI_SRC") or not (src / "main.py").is_file() or not torch_index:
        pytest.skip("needs COMFYRIG_REAL_COMFYUI_SRC with main.py and COMFYRIG_REAL_TORCH_INDEX")
    repo = tmp_path / "ComfyUI.git"
    shutil.copytree(src, repo, ignore=shutil.ignore_patterns(".git", ".venv", "venv", "__pycache__", "custom_nodes"))
    (repo / "custom_nodes").mkdir()
    (repo / "custom_nodes" / "example_node.py.example").write_text("")
    req = repo / "requirements.txt"
    req.write_text("".join(line for line in req.read_text().splitlines(keepends=True) if line.strip() != "torchaudio"))
    git("init", "-q", cwd=repo)
    git("add", "-f", "custom_nodes", cwd=repo)  # tracked upstream despite ComfyUI's .gitignore; main.py lists it
    commit_all(repo, "ComfyUI", "v0.3.76")
    cli = Cli(tmp_path)
    cli.env["COMFYRIG_FAKE_GPUS"] = "[]"
    if os.environ.get("COMFYRIG_REAL_PIP_CONFIG"):
        cli.env["PIP_CONFIG_FILE"] = os.environ["COMFYRIG_REAL_PIP_CONFIG"]
        cli.env = {k: v for k, v in cli.env.items() if not k.startswith("PIP_") or k == "PIP_CONFIG_FILE"}
    target = tmp_path / "ComfyUI"
    result = cli("install", str(target), "--repo", f"file://{repo}", "--torch-index", torch_index, "--json", timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["ok"] and report["torch"]["torch_version"] and report["torch"]["cuda_available"] is False
    started = subprocess.run([str(target / ".venv/bin/python"), "main.py", "--quick-test-for-ci", "--cpu"],
                             cwd=target, capture_output=True, text=True, timeout=600, check=False)
    assert started.returncode == 0, started.stderr[-3000:]
    again = cli("install", str(target), "--repo", f"file://{repo}", "--torch-index", torch_index, "--json")
    assert json.loads(again.stdout)["ran"] == []
