"""``comfyrig --workers --ray`` with real ComfyUI (marker ``comfyui``: COMFYUI_DIRS) on a real
two-node Ray cluster on this machine, one simulated GPU per node and ComfyUI on the CPU: both
workers routable, prompts run on both nodes through one URL and their images come back through
it, and on ComfyUI 0.24 each worker has its own database (Ray shows every actor its GPU as
index 0; before, both nodes' workers took ``comfyui-gpu0.db`` and the second ran without one,
"Could not acquire lock on database")."""

from __future__ import annotations

import subprocess
import sys
import urllib.parse
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..batch.e2e import harness
from ..batch.test_ray_cluster import _driver_env, ray, two_nodes
from ..real_comfyui import Checkout, real_params, usable
from .test_launch_e2e import IMAGE_PROMPT

pytestmark = [
    pytest.mark.ray,
    pytest.mark.e2e,
    pytest.mark.skipif(ray is None, reason="ray is not installed: pip install 'comfyrig[ray]'"),
]


@pytest.mark.timeout(900)  # two real ComfyUI start on the CPU beside a Ray cluster, on 2 cores
@pytest.mark.parametrize("checkout", real_params())
def test_real_comfyui_workers_on_two_nodes_behind_one_url(checkout: Checkout | None, tmp_path: Path) -> None:
    real = usable(checkout)
    (tmp_path / "user").mkdir()  # ComfyUI refuses a --user-directory that does not exist
    with two_nodes(gpus=1) as cluster, httpx.Client(trust_env=False, timeout=30) as http:
        port = harness.free_port()
        url = f"http://127.0.0.1:{port}"
        env = _driver_env(cluster, COMFYRIG_STATE_DIR=str(tmp_path / "state"), NO_COLOR="1", COLUMNS="200")
        argv = [sys.executable, "-m", "comfyrig", "--workers", "--ray", cluster.address, "--port", str(port), "--plain",
                "--comfyui-dir", real.dir, "--python", real.python, "--ready-timeout", "300",
                "--log-dir", str(tmp_path / "logs"),
                "--", "--cpu", "--user-directory", str(tmp_path / "user"), "--output-directory", str(tmp_path / "out")]
        out = tmp_path / "stdout.txt"
        with open(out, "w") as sink:
            proc = subprocess.Popen(argv, env=env, stdout=sink, stderr=subprocess.STDOUT, text=True)
            try:
                def routed() -> list[dict[str, Any]]:
                    assert proc.poll() is None, "the launch ended: " + out.read_text()[-3000:]
                    try:
                        backends = http.get(url + "/comfyrig/fleet").json()["backends"]
                    except (httpx.HTTPError, ValueError):
                        return []
                    live: list[dict[str, Any]] = [b for b in backends if b["live"]]
                    return live if len(live) == 2 else []

                backends = harness.wait_until(routed, 360, "both real workers routable")
                assert len({b["node"] for b in backends}) == 2, backends  # one per node
                # Two clients' prompts at once: the first takes a few seconds (SaveImage compresses two
                # 2048x2048 PNGs on the CPU), so the second goes to the idle worker, on the other node.
                ids = []
                for client, size in (("first", 2048), ("second", 8)):
                    prompt = {**IMAGE_PROMPT, "1": {**IMAGE_PROMPT["1"], "inputs": {
                        **IMAGE_PROMPT["1"]["inputs"], "width": size, "height": size, "batch_size": 2}}}
                    answer = http.post(url + "/prompt", json={"prompt": prompt, "client_id": client})
                    assert answer.status_code == 200, answer.text
                    ids.append(answer.json()["prompt_id"])
                def finished() -> dict[str, Any] | None:
                    history: dict[str, Any] = http.get(url + "/history").json()
                    return history if set(ids) <= set(history) else None

                history = harness.wait_until(finished, 180, "both prompts done")
                for prompt_id in ids:
                    assert history[prompt_id]["status"]["status_str"] == "success", history[prompt_id]["status"]
                    image = history[prompt_id]["outputs"]["3"]["images"][0]
                    picture = http.get(url + "/view?" + urllib.parse.urlencode(image))
                    assert picture.status_code == 200 and picture.content.startswith(b"\x89PNG")
                fleet = http.get(url + "/comfyrig/fleet").json()["backends"]
                assert sorted(b["completed"] for b in fleet) == [1, 1], fleet  # one prompt on each node
                stopped = subprocess.run([sys.executable, "-m", "comfyrig", "stop", "--port", str(port)], env=env,
                                         capture_output=True, text=True, timeout=120, check=False)
                assert stopped.returncode == 0, stopped.stdout + stopped.stderr
                assert proc.wait(30) == 0
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    logs = "".join(p.read_text(errors="replace") for p in (tmp_path / "logs").rglob("*.log"))
    assert len(list((tmp_path / "logs").iterdir())) == 2  # a log folder per node and GPU
    assert "Could not acquire lock on database" not in logs
    databases = sorted(p.name for p in (tmp_path / "user").glob("comfyui-ray-*.db"))
    if "--database-url" in (Path(real.dir) / "comfy" / "cli_args.py").read_text():  # 0.24 (0.3.x: no database flag)
        assert len(databases) == 2 and len({d.split("-")[2] for d in databases}) == 2, databases
