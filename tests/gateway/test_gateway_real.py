"""The gateway in front of two real ComfyUI servers (marker ``comfyui``; CPU), per installed version.

The same client-side checks as against the fake ComfyUI, on what only the real thing has:
its validation answers, its event stream, LoadImage reading an upload, SaveImageWebsocket's
binary frames, and (0.24) the jobs API.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from comfyrig.gateway.backends import BackendSpec
from comfyrig.gateway.server import GatewayOptions
from comfyrig.gateway.service import GatewayThread

from ..batch.e2e import harness
from ..real_comfyui import Checkout, real_params, usable
from .test_gateway_fake import Rig, events_until_done

pytestmark = pytest.mark.e2e


def blur(color: int) -> dict[str, Any]:
    """About a second of real work on the CPU, never cached (a new colour each time)."""
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 1024, "height": 1024, "batch_size": 1, "color": color}},
        "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 31, "sigma": 10.0}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "gw-real"}},
    }


@contextlib.contextmanager
def real_server(checkout: Checkout, root: Path, n: int) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = harness.free_port()
    for sub in ("input", f"out{n}", f"tmp{n}", "user"):
        (root / sub).mkdir(exist_ok=True)
    log = (root / f"server{n}.log").open("wb")
    proc = subprocess.Popen(
        [checkout.python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port), "--input-directory",
         str(root / "input"), "--output-directory", str(root / f"out{n}"), "--temp-directory", str(root / f"tmp{n}"),
         "--user-directory", str(root / "user"), "--database-url", f"sqlite:///{root / f'db{n}.sqlite'}"],
        cwd=checkout.dir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError((root / f"server{n}.log").read_text()[-3000:])
            try:
                return httpx.get(url + "/prompt", timeout=2, trust_env=False).status_code == 200
            except httpx.HTTPError:
                return False

        harness.wait_until(ready, 240, f"ComfyUI {checkout.version} to answer")
        yield url, proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()


@pytest.fixture(scope="module", params=real_params())
def real(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Rig, Checkout]]:
    checkout = usable(request.param)
    root = tmp_path_factory.mktemp(f"gw-real-{checkout.version}")
    # The database flag only exists from 0.3.7x on; drop it for older checkouts.
    with contextlib.ExitStack() as stack:
        servers = [stack.enter_context(real_server(checkout, root, n)) for n in range(2)]
        gateway = GatewayThread([BackendSpec(f"worker-{n}", u, "local") for n, (u, _) in enumerate(servers)],
                                GatewayOptions(port=harness.free_port(), lost_grace_s=1.0))
        gateway.start()
        stack.callback(gateway.stop)
        http = stack.enter_context(httpx.Client(trust_env=False, timeout=60))
        rig = Rig(gateway.url, [proc for _, proc in servers], gateway, http)
        harness.wait_until(lambda: rig.live() == 2, 20, "both real workers routable")
        yield rig, checkout


def test_one_client_two_prompts_two_workers_in_order(real: tuple[Rig, Checkout]) -> None:
    rig, _ = real
    client = uuid.uuid4().hex
    with rig.ws(client) as socket:
        assert json.loads(socket.recv(timeout=10))["data"]["sid"] == client
        ids = [rig.post("/prompt", {"prompt": blur(1000 + n), "client_id": client}).json()["prompt_id"] for n in range(2)]
        events = events_until_done(socket, set(ids), timeout=120)
    order = [e["data"]["prompt_id"] for e in events if isinstance(e.get("data"), dict) and e["data"].get("prompt_id") in ids]
    last_first = max(i for i, p in enumerate(order) if p == ids[0])
    assert all(p == ids[1] for p in order[last_first + 1:]) and ids[1] in order
    assert {e["data"]["prompt_id"] for e in events if e["type"] == "execution_success"} == set(ids)
    history = rig.get("/history").json()
    for pid in ids:
        assert history[pid]["prompt"][3]["client_id"] == client
        image = history[pid]["outputs"]["3"]["images"][0]
        assert rig.get("/view", **image).content.startswith(b"\x89PNG")
    ran = [[pid for pid in ids if pid in httpx.get(b["url"] + "/history", trust_env=False).json()]
           for b in rig.get("/comfyrig/fleet").json()["backends"]]
    assert sorted(map(len, ran)) == [1, 1]  # one on each worker, at the same time
    bad = {"prompt": {"1": {"class_type": "NoSuchNode", "inputs": {}}}}
    refused = rig.post("/prompt", bad)
    worker = rig.get("/comfyrig/fleet").json()["backends"][0]["url"]
    direct = httpx.post(worker + "/prompt", json=bad, trust_env=False)
    assert refused.status_code == 400 == direct.status_code and refused.json() == direct.json()  # ComfyUI's own answer


def test_an_upload_is_loaded_by_every_worker(real: tuple[Rig, Checkout]) -> None:
    rig, _ = real
    first = rig.post("/prompt", {"prompt": blur(2000)}).json()["prompt_id"]
    entry = harness.wait_until(lambda: rig.get(f"/history/{first}").json().get(first), 120, "a PNG to upload")
    png = rig.get("/view", **entry["outputs"]["3"]["images"][0]).content
    name = rig.http.post(rig.url + "/upload/image", files={"image": (f"up-{uuid.uuid4().hex[:6]}.png", png, "image/png")}).json()["name"]
    load = {"1": {"class_type": "LoadImage", "inputs": {"image": name}},
            "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "gw-load"}}}
    ids = []
    for n in range(2):  # the second goes to the other worker (the first is busy or just done: least loaded)
        answer = rig.post("/prompt", {"prompt": load, "prompt_id": str(uuid.uuid4())})
        assert answer.status_code == 200, answer.text
        ids.append(answer.json()["prompt_id"])
        load["2"] = {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}, "_meta": {"n": n}}
    done = harness.wait_until(lambda: all(pid in (h := rig.get("/history").json()) and h[pid]["status"]["completed"]
                                          for pid in ids) and h, 120, "both LoadImage prompts")
    assert all(done[pid]["status"]["status_str"] == "success" for pid in ids)


def test_jobs_api_where_comfyui_has_it(real: tuple[Rig, Checkout]) -> None:
    rig, checkout = real
    answer = rig.get("/api/jobs", limit=3)
    if checkout.version.startswith("0.3."):
        assert answer.status_code == 404  # ComfyUI 0.3.x has no jobs API: the gateway says what the workers say
        return
    jobs = answer.json()
    assert len(jobs["jobs"]) == 3 and jobs["pagination"]["total"] >= 3
    one = rig.get(f"/api/jobs/{jobs['jobs'][0]['id']}").json()
    assert one["id"] == jobs["jobs"][0]["id"] and "outputs" in one


def test_zz_kill_9_of_a_worker_mid_prompt_and_the_prompt_still_completes(real: tuple[Rig, Checkout]) -> None:
    """Last in the module: it kills one of the two servers."""
    rig, _ = real
    client = uuid.uuid4().hex
    with rig.ws(client) as socket:
        socket.recv(timeout=10)
        ids = [rig.post("/prompt", {"prompt": blur(3000 + n), "client_id": client}).json()["prompt_id"] for n in range(2)]
        backends = rig.get("/comfyrig/fleet").json()["backends"]

        def running_on() -> dict[str, str] | None:
            found = {}
            for b in backends:
                queue = httpx.get(b["url"] + "/queue", trust_env=False).json()
                for item in queue["queue_running"]:
                    found[item[1]] = b["url"]
            return found if len(found) == 2 else None

        where = harness.wait_until(running_on, 60, "both prompts running")
        victim_url = where[ids[1]]
        victim = rig.fakes[[b["url"] for b in backends].index(victim_url)]
        victim.kill()  # SIGKILL, mid-prompt
        events = events_until_done(socket, set(ids), timeout=180)
    assert {e["data"]["prompt_id"] for e in events if e["type"] == "execution_success"} == set(ids)
    survivor = next(b["url"] for b in backends if b["url"] != victim_url)
    assert ids[1] in httpx.get(f"{survivor}/history/{ids[1]}", trust_env=False).json()
    assert rig.get("/comfyrig/fleet").json()["counters"]["prompts_moved"] >= 1
