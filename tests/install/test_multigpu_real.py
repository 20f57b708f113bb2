"""Contract test: the ComfyUI-MultiGPU commit the table picks for a real ComfyUI loads there (marker ``comfyui``).

Runs when COMFYUI_DIR and COMFYUI_PYTHON name a real checkout and MULTIGPU_REPO a git repository of
ComfyUI-MultiGPU (a clone, or a fetched snapshot: files missing from it are skipped). The commit
``choose_pack_ref`` picks for that checkout is written into ``custom_nodes/`` of a temporary
``--base-directory`` (nothing is added to the checkout), ComfyUI starts on the CPU, and "loads" means:
no "IMPORT FAILED" for the pack, and its nodes listed in ``/object_info``. A commit that imports
packages it does not declare (``undeclared``) is skipped when ComfyUI's Python lacks them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from comfyrig.install.nodes import choose_pack_ref, needed_files
from comfyrig.install.state import comfyui_version
from tests.fake_comfyui.harness import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.comfyui]

REAL_DIR = os.environ.get("COMFYUI_DIR")
REAL_PYTHON = os.environ.get("COMFYUI_PYTHON")
REPO = os.environ.get("MULTIGPU_REPO")


def _export(repo: Path, commit: str, dest: Path) -> None:
    """The files of ``commit`` under ``dest``, skipping blobs the repository lacks."""
    listing = subprocess.run(["git", "-C", str(repo), "ls-tree", "-r", "-z", commit], capture_output=True, check=True).stdout
    for entry in listing.split(b"\0"):
        if not entry:
            continue
        meta, _, path = entry.partition(b"\t")
        _, kind, sha = meta.split()
        if kind != b"blob":
            continue
        blob = subprocess.run(["git", "-C", str(repo), "cat-file", "blob", sha.decode()], capture_output=True, check=False)
        if blob.returncode == 0:
            target = dest / path.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(blob.stdout)


def test_the_chosen_multigpu_commit_loads(tmp_path: Path) -> None:
    if not (REAL_DIR and REAL_PYTHON and REPO):
        pytest.skip("set COMFYUI_DIR, COMFYUI_PYTHON and MULTIGPU_REPO (a ComfyUI-MultiGPU git repository) to run this")
    checkout = Path(REAL_DIR)
    present = frozenset(f for f in needed_files() if (checkout / f).is_file())
    choice = choose_pack_ref("multigpu", comfyui_version(checkout), present)
    assert choice.ref is not None
    if choice.undeclared is not None:
        wanted = [line.split("#")[0].strip() for line in choice.undeclared.read_text().splitlines() if line.split("#")[0].strip()]
        probe = subprocess.run([REAL_PYTHON, "-c", "import " + ", ".join(wanted)], capture_output=True, check=False)
        if probe.returncode != 0:
            pytest.skip(f"{choice.label} imports {', '.join(wanted)}, which {REAL_PYTHON} lacks")
    base = tmp_path / "base"
    pack = base / "custom_nodes" / "ComfyUI-MultiGPU"
    _export(Path(REPO), choice.ref, pack)
    (base / "models").mkdir()
    port = free_port()
    log_path = tmp_path / "comfyui.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [REAL_PYTHON, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port), "--base-directory", str(base)],
            cwd=checkout, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                deadline = time.monotonic() + 180
                while True:
                    assert proc.poll() is None, log_path.read_text()
                    try:
                        if client.get("/system_stats").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    assert time.monotonic() < deadline, "ComfyUI did not answer within 180 s"
                    time.sleep(0.5)
                info = client.get("/object_info").json()
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)
    text = log_path.read_text(errors="replace")
    assert not any("IMPORT FAILED" in line and "ComfyUI-MultiGPU" in line for line in text.splitlines()), text[-3000:]
    nodes = sorted(name for name, node in info.items() if "ComfyUI-MultiGPU" in str(node.get("python_module", "")))
    assert len(nodes) >= 25, nodes
    assert {"UNETLoaderDisTorch2MultiGPU", "CLIPLoaderMultiGPU", "VAELoaderMultiGPU", "CheckpointLoaderSimpleMultiGPU"} <= set(nodes)
