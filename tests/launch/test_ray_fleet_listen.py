"""A worker on a node that is not the gateway's machine listens on its node's cluster address,
and the URL its actor reports answers there (a local Ray instance; the gateway's machine is
said to be another address)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import httpx
import pytest

from ..batch.e2e import FAKE_DIR

try:
    import ray
except ImportError:
    ray = None

pytestmark = [
    pytest.mark.ray,
    pytest.mark.e2e,
    pytest.mark.xdist_group("ray-cluster"),  # one Ray at a time on this machine
    pytest.mark.skipif(ray is None, reason="ray is not installed: pip install 'comfyrig[ray]'"),
]


def test_a_remote_worker_listens_on_its_node_address(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from comfyrig.launch.ray_fleet import GatewayWorker

    monkeypatch.setenv("COMFYRIG_FAKE_GPUS", json.dumps([{"name": "sim", "memory_total_mib": 1024,
                                                          "cpu_affinity": sorted(os.sched_getaffinity(0))}]))
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False, object_store_memory=80 * 2**20,
             configure_logging=False)
    try:
        actor = ray.remote(num_gpus=1, max_restarts=0)(GatewayWorker).remote(
            str(FAKE_DIR), sys.executable, ["--output-directory", str(tmp_path / "o")], local_ip="203.0.113.9")
        deadline = time.monotonic() + 90
        while True:
            state = ray.get(actor.state.remote(), timeout=90)
            if state["ready"] or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert state["ready"], state
        place = state["place"]
        assert place["url"] == f"http://{place['host']}:{place['url'].rsplit(':', 1)[1]}"
        if place["host"] not in ("127.0.0.1", "localhost"):
            assert httpx.get(place["url"] + "/system_stats", trust_env=False, timeout=10).status_code == 200
            with pytest.raises(httpx.ConnectError):  # not on the loopback: only the node's address
                httpx.get(f"http://127.0.0.1:{place['url'].rsplit(':', 1)[1]}/system_stats", trust_env=False, timeout=5)
        ray.get(actor.shutdown.remote(), timeout=60)
    finally:
        ray.shutdown()
