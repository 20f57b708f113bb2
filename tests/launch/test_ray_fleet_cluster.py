"""``comfyrig --workers --ray HOST:PORT`` on a real two-node Ray cluster on this machine (the
cluster of tests/batch/test_ray_cluster.py: ``ray start --head`` and ``ray start --address``, own
temp dirs, 2 simulated GPUs each, token authentication on), with the fake ComfyUI: one gateway URL,
prompts of one websocket client run on both nodes, then the second node's raylet is killed
mid-run and every prompt still completes for its client. Skips where Ray cannot start; the
cluster is always torn down by its processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from ..batch.e2e import FAKE_DIR, harness
from ..batch.test_ray_cluster import Cluster, _driver_env, cluster  # noqa: F401 - the module-scoped cluster fixture
from ..gateway.test_gateway_fake import events_until_done, slow

pytestmark = [
    pytest.mark.ray,
    pytest.mark.e2e,
    pytest.mark.xdist_group("ray-cluster"),  # one cluster at a time on this machine
]


def _fleet(http: httpx.Client, url: str) -> dict[str, Any]:
    try:
        view: dict[str, Any] = http.get(url + "/comfyrig/fleet").json()
        return view
    except (httpx.HTTPError, ValueError):
        return {"backends": []}


def test_gateway_on_both_nodes_keeps_every_prompt_when_one_node_is_lost(cluster: Cluster, tmp_path: Path) -> None:  # noqa: F811
    port = harness.free_port()
    url = f"http://127.0.0.1:{port}"
    out = tmp_path / "stdout.txt"
    env = _driver_env(cluster, COMFYRIG_STATE_DIR=str(tmp_path / "state"), NO_COLOR="1", COLUMNS="200")
    # No ComfyUI flags: each node's own (its --base-directory, a disk of its own) apply there.
    argv = [sys.executable, "-m", "comfyrig", "--workers", "--ray", cluster.address, "--port", str(port), "--plain",
            "--comfyui-dir", str(FAKE_DIR), "--python", sys.executable]
    started = time.monotonic()
    marks: dict[str, float] = {}
    total = 24
    err = tmp_path / "stderr.txt"
    with open(out, "w") as sink, open(err, "w") as err_sink, httpx.Client(trust_env=False, timeout=20) as http:
        proc = subprocess.Popen(argv, env=env, stdout=sink, stderr=err_sink, text=True)
        try:
            def routed() -> list[dict[str, Any]]:
                assert proc.poll() is None, "the launch ended: " + out.read_text()[-3000:]
                backends: list[dict[str, Any]] = [b for b in _fleet(http, url)["backends"] if b["live"]]
                return backends if len(backends) == 4 else []

            backends = harness.wait_until(routed, 120, "four workers routable behind the gateway")
            marks["routable"] = time.monotonic() - started
            node_of = {b["name"]: b["node"] for b in backends}
            assert len(set(node_of.values())) == 2, node_of  # two per node
            status = subprocess.run([sys.executable, "-m", "comfyrig", "status", "--json"], env=env,
                                    capture_output=True, text=True, timeout=60, check=False)
            assert status.returncode == 0, status.stderr
            [ray_status] = json.loads(status.stdout)["ray"]
            assert {w["name"]: w["node"] for w in ray_status["workers"]} == node_of
            # monitor watches the gateway and each worker, named with its node.
            watched = subprocess.run([sys.executable, "-m", "comfyrig", "monitor", "--once", "--json"], env=env,
                                     capture_output=True, text=True, timeout=60, check=False)
            assert watched.returncode == 0, watched.stderr
            labels = {i["label"] for i in json.loads(watched.stdout)["instances"]}
            assert {f"{name} on {node}" for name, node in node_of.items()} <= labels
            assert f"gateway (Ray {cluster.address})" in labels

            # No shared disk: an upload through the gateway reaches each node's own input folder,
            # through ComfyUI's /upload/image.
            picture = b"\x89PNG\r\n\x1a\n" + b"\0" * 64
            answer = http.post(url + "/upload/image", files={"image": ("from-gateway.png", picture, "image/png")},
                               data={"overwrite": "true"})
            assert answer.status_code == 200, answer.text
            for node_dir in (cluster.head_dir, cluster.worker_dir):
                assert (Path(node_dir) / "base" / "input" / "from-gateway.png").read_bytes() == picture
            # The model only the second node holds is named: at start, and by doctor.
            harness.wait_until(lambda: "only-on-b.safetensors" in out.read_text(), 30, "the model difference said")
            doctor = subprocess.run([sys.executable, "-m", "comfyrig", "doctor", "--json", "--no-torch"], env=env,
                                    capture_output=True, text=True, timeout=120, check=False)
            [check] = [c for c in json.loads(doctor.stdout)["checks"] if c["id"] == "net.gateway"]
            assert check["status"] == "warn" and "only-on-b.safetensors" in check["message"], check

            client = uuid.uuid4().hex
            with connect(url.replace("http", "ws") + f"/ws?clientId={client}", proxy=None, max_size=2**24) as socket:
                socket.recv(timeout=10)
                ids = [http.post(url + "/prompt", json={"prompt": slow(n, 1.0), "client_id": client}).json()["prompt_id"]
                       for n in range(total)]
                done: dict[str, int] = {}

                def both_nodes_done() -> bool:
                    for b in _fleet(http, url)["backends"]:
                        done[b["name"]] = max(done.get(b["name"], 0), b["completed"])
                    return len({node_of[n] for n, c in done.items() if c and n in node_of}) == 2

                harness.wait_until(both_nodes_done, 60, "prompts done on both nodes")
                os.kill(cluster.raylet_of_worker_node(), signal.SIGKILL)  # the second node is lost mid-run
                marks["lost"] = time.monotonic() - started
                done_before_loss = dict(done)
                events = events_until_done(socket, set(ids), timeout=120)
                marks["all done"] = time.monotonic() - started
            succeeded = {e["data"]["prompt_id"] for e in events if e["type"] == "execution_success"}
            assert succeeded == set(ids)
            errors = [e for e in events if e["type"] in ("execution_error", "execution_interrupted")]
            assert errors == []
            # The lost node's workers are off the routing table, the head's still routable.
            left = harness.wait_until(lambda: [b for b in _fleet(http, url)["backends"]
                                               if b["live"] and len(_fleet(http, url)["backends"]) == 2] or None,
                                      90, "the lost node's workers off the gateway")
            marks["lost workers off"] = time.monotonic() - started
            assert len({b["node"] for b in left}) == 1
            # The history of the lost node's workers left with them; the head's workers show theirs.
            history = http.get(url + "/history").json()
            kept = len(set(ids) & set(history))
            assert kept == sum(b["completed"] for b in left), (kept, left)
            moved = _fleet(http, url)["counters"]["prompts_moved"]

            # The lost node comes back (a new node id): the actors waiting for a GPU restart there,
            # and their workers are routed again under new names, with new URLs.
            cluster.join_node()
            marks["rejoined"] = time.monotonic() - started
            back = harness.wait_until(routed, 120, "four workers routable again")
            marks["routable again"] = time.monotonic() - started
            renamed = {b["name"] for b in back} - set(node_of)
            assert len(renamed) == 2 and all("." in n for n in renamed), back
            assert len({b["node"] for b in back} - set(node_of.values())) == 1  # the new node
            later = [http.post(url + "/prompt", json={"prompt": slow(100 + n, 0.5)}).json()["prompt_id"]
                     for n in range(8)]
            harness.wait_until(lambda: set(later) <= set(http.get(url + "/history").json()), 60, "later prompts done")
            on_new = sum(b["completed"] for b in _fleet(http, url)["backends"] if b["name"] in renamed)
            assert on_new >= 1
            marks["later done"] = time.monotonic() - started

            # A node with GPUs beyond every actor joins: new actors start there and are routed.
            cluster.join_node()
            grown = harness.wait_until(lambda: [b for b in _fleet(http, url)["backends"] if b["live"]]
                                       if sum(b["live"] for b in _fleet(http, url)["backends"]) == 6 else None,
                                       120, "six workers routable")
            marks["grown to 6"] = time.monotonic() - started
            assert {b["name"] for b in grown} - {b["name"] for b in back} == {"ray-4", "ray-5"}
            assert len({b["node"] for b in grown}) == 3
            # The third node is lost for good: its actors wait for a GPU that never comes. Stopping
            # kills them first (their pending restart would take a GPU the others free) and does
            # not wait on them.
            os.kill(cluster.raylet_of(cluster.dirs[-1]), signal.SIGKILL)
            harness.wait_until(lambda: sum(b["live"] for b in _fleet(http, url)["backends"]) == 4, 90,
                               "the third node's workers off the gateway")
            marks["third node lost"] = time.monotonic() - started
            # 'comfyrig stop --port' stops it as Ctrl-C would: every worker, then the gateway.
            stopping = time.monotonic()
            stopped = subprocess.run([sys.executable, "-m", "comfyrig", "stop", "--port", str(port)], env=env,
                                     capture_output=True, text=True, timeout=120, check=False)
            assert stopped.returncode == 0 and "stopped the gateway of the Ray cluster" in stopped.stdout, stopped
            proc.wait(10)
            stop_s = time.monotonic() - stopping
            assert stop_s < 25, stop_s  # the lost actors are not waited for (20 s would be their shutdown call)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(90)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    log = out.read_text()
    marks["stopped"] = time.monotonic() - started
    assert proc.returncode == 0, log[-3000:] + err.read_text()[-3000:]
    assert "is off the gateway" in log and "comfyrig: stopped" in log, log[-3000:]
    # stdout is comfyrig's lines alone: Ray's own notices ("(raylet) ... marked dead") go to stderr.
    assert "(raylet)" not in log and all(line.startswith("comfyrig: ") for line in log.splitlines()), log[-3000:]
    raylet_said = "marked dead" in err.read_text()
    per_node: dict[str, int] = {}
    for name, count in done_before_loss.items():
        per_node[node_of[name][-12:]] = per_node.get(node_of[name][-12:], 0) + count
    summary = (f"two-node gateway: {total} prompts of one client, all succeeded; done per node before the loss "
               f"{per_node}; {moved} re-submitted after the loss; "
               f"history kept {kept}; after the node rejoined, {on_new} of 8 later prompts ran on it; a third node "
               "joined and got 2 new workers; an upload reached both nodes' own input folders; the model only "
               f"one node holds was named; Ray's node notice went to stderr: {raylet_said}; with a third node lost "
               f"for good, 'stop --port' took {stop_s:.1f} s; "
               f"{ {k: round(v, 1) for k, v in marks.items()} }")
    Path(os.environ.get("COMFYRIG_RAY_GATEWAY_SUMMARY", tmp_path / "summary.txt")).write_text(summary + "\n")


def test_dry_run_lists_a_worker_per_gpu_of_both_nodes(cluster: Cluster, tmp_path: Path) -> None:  # noqa: F811
    env = _driver_env(cluster, COMFYRIG_STATE_DIR=str(tmp_path / "state"))
    done = subprocess.run([sys.executable, "-m", "comfyrig", "--workers", "--ray", cluster.address, "--dry-run", "--json",
                           "--comfyui-dir", str(FAKE_DIR)], env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    plan = json.loads(done.stdout)
    nodes = {w["node_id"] for w in plan["workers"]}
    # Both nodes (or, after the other test, the head and the nodes that joined): two GPUs each.
    assert len(nodes) >= 2 and len(plan["workers"]) == 2 * len(nodes), plan["workers"]
    assert {w["listen"] for w in plan["workers"]} == {"127.0.0.1"}  # every node is this machine
    assert plan["gateway"] == {"listen": "127.0.0.1", "port": 8188, "auth": False}
