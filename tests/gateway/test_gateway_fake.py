"""The gateway in front of two real fake-ComfyUI processes on loopback: what a client sees.

Each test talks to the gateway only as a ComfyUI client would (HTTP and the
websocket), then checks the workers directly where the point is where work ran.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from comfyrig.gateway.backends import BackendSpec
from comfyrig.gateway.server import GatewayOptions
from comfyrig.gateway.service import GatewayThread

from ..batch.e2e import harness

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("gateway-fake")]

SLOW_WF: dict[str, Any] = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 255}},
    "4": {"class_type": "FakeSleep", "inputs": {"seconds": 0.6, "steps": 3, "any": ["1", 0], "fail": False}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["4", 0], "filename_prefix": "gw"}},
}


def slow(color: int = 255, seconds: float = 0.6) -> dict[str, Any]:
    """A prompt that takes ``seconds`` and is never cached (FakeSleep is never cached)."""
    wf = json.loads(json.dumps(SLOW_WF))
    wf["1"]["inputs"]["color"] = color
    wf["4"]["inputs"]["seconds"] = seconds
    return wf


@dataclass
class Rig:
    url: str
    fakes: list[Any]
    gateway: GatewayThread
    http: httpx.Client

    def post(self, path: str, body: Any) -> httpx.Response:
        return self.http.post(self.url + path, json=body)

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.http.get(self.url + path, params=params)

    def ws(self, client_id: str, *, metadata: bool = False) -> ClientConnection:
        socket = connect(self.url.replace("http", "ws") + f"/ws?clientId={client_id}", proxy=None, max_size=2**24)
        socket.__enter__()  # websockets 17.1 wants the connection entered before its first use
        if metadata:
            socket.send(json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}}))
        return socket

    def live(self) -> int:
        return sum(b["live"] for b in self.get("/comfyrig/fleet").json()["backends"])


def events_until_done(socket: ClientConnection, prompt_ids: set[str], timeout: float = 20) -> list[dict[str, Any]]:
    """Every JSON event until each prompt in ``prompt_ids`` sent ``executing`` with node null."""
    pending, seen = set(prompt_ids), []
    while pending:
        raw = socket.recv(timeout=timeout)
        if isinstance(raw, bytes):
            seen.append({"type": "binary", "data": {"size": len(raw)}})
            continue
        event = json.loads(raw)
        seen.append(event)
        data = event.get("data") or {}
        if event["type"] == "executing" and data.get("node") is None and data.get("prompt_id") in pending:
            pending.discard(data["prompt_id"])
    return seen


@contextlib.contextmanager
def rig(tmp_path: Path, *, workers: int = 2, env: dict[str, str] | None = None, token: str | None = None,
        envs: list[dict[str, str]] | None = None, reporter: Any = None,
        args: list[list[str]] | None = None) -> Iterator[Rig]:
    inputs = tmp_path / "input"
    inputs.mkdir(exist_ok=True)
    (tmp_path / "user").mkdir(exist_ok=True)
    with contextlib.ExitStack() as stack:
        fakes = [
            stack.enter_context(harness.running_fake(
                env={"FAKE_COMFYUI_JOBS_API": "1", **(env or {}), **(envs[n] if envs else {})},
                args=["--cpu", "--output-directory", str(tmp_path / f"out{n}"), "--input-directory", str(inputs),
                      "--temp-directory", str(tmp_path / f"tmp{n}"), "--user-directory", str(tmp_path / "user"),
                      *(args[n] if args else [])],
            ))
            for n in range(workers)
        ]
        specs = [BackendSpec(f"worker-{n}", fake.url, "local") for n, fake in enumerate(fakes)]
        gateway = GatewayThread(specs, GatewayOptions(port=harness.free_port(), token=token, lost_grace_s=0.5,
                                                      requeue_timeout_s=5), **({"reporter": reporter} if reporter else {}))
        gateway.start()
        stack.callback(gateway.stop)
        http = stack.enter_context(httpx.Client(trust_env=False, timeout=20,
                                                headers={"Authorization": f"Bearer {token}"} if token else {}))
        result = Rig(gateway.url, fakes, gateway, http)
        harness.wait_until(lambda: result.live() == workers, 15, "every worker to be live behind the gateway")
        yield result


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with rig(tmp_path_factory.mktemp("gw")) as result:
        yield result


def test_prompts_of_one_client_run_at_once_on_both_workers_and_report_in_order(two: Rig) -> None:
    client = uuid.uuid4().hex
    with two.ws(client) as socket:
        first = json.loads(socket.recv(timeout=5))
        assert first["type"] == "status" and first["data"]["sid"] == client
        ids = [two.post("/prompt", {"prompt": slow(n), "client_id": client}).json()["prompt_id"] for n in (1, 2)]
        # Both run at the same time, one per worker.
        running = harness.wait_until(lambda: (q := two.get("/queue").json())["queue_running"] and
                                     len(q["queue_running"]) == 2 and q, 10, "both prompts running")
        assert {item[1] for item in running["queue_running"]} == set(ids)
        assert all(item[3]["client_id"] == client for item in running["queue_running"])  # the client's own id back
        per_worker = [f.get_json("/queue")["queue_running"] for f in two.fakes]
        assert sorted(len(r) for r in per_worker) == [1, 1]
        events = events_until_done(socket, set(ids))
    # Every event of the first prompt comes before any of the second (as one ComfyUI sends them).
    order = [e["data"].get("prompt_id") for e in events if isinstance(e.get("data"), dict) and e["data"].get("prompt_id")]
    assert order.index(ids[1]) > max(i for i, p in enumerate(order) if p == ids[0])
    kinds = [e["type"] for e in events if e.get("data", {}).get("prompt_id") == ids[0]]
    assert kinds[0] == "execution_start" and "executed" in kinds and "execution_success" in kinds
    # History shows both, with outputs the gateway serves from the worker that wrote them.
    history = two.get("/history").json()
    assert set(ids) <= set(history)
    for pid in ids:
        image = history[pid]["outputs"]["3"]["images"][0]
        view = two.get("/view", **image)
        assert view.status_code == 200 and view.content.startswith(b"\x89PNG")
        assert history[pid]["prompt"][3]["client_id"] == client
    one = two.get(f"/history/{ids[1]}").json()
    assert list(one) == [ids[1]]


def test_comfyui_refusals_come_back_unchanged(two: Rig) -> None:
    bad = {"1": {"class_type": "EmptyImage", "inputs": {"width": 0, "height": 8, "batch_size": 1, "color": 0}},
           "3": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}}
    through = two.post("/prompt", {"prompt": bad})
    direct = two.fakes[0].request("POST", "/prompt", {"prompt": bad})
    assert through.status_code == 400 == direct[0]
    assert through.json() == json.loads(direct[1])
    assert two.post("/prompt", {"nothing": 1}).json()["error"]["type"] == "no_prompt"
    assert two.http.post(two.url + "/prompt", content=b"{nope").status_code == 400


def test_a_client_chosen_prompt_id_is_kept_and_not_given_to_another_client(two: Rig) -> None:
    pid = str(uuid.uuid4())
    answer = two.post("/prompt", {"prompt": slow(3, 0.1), "prompt_id": pid, "client_id": "krita"}).json()
    assert answer["prompt_id"] == pid and answer["node_errors"] == {}
    again = two.post("/prompt", {"prompt": slow(3, 0.1), "prompt_id": pid, "client_id": "krita"})
    assert again.json() == answer  # the same client re-sending: one prompt
    other = two.post("/prompt", {"prompt": slow(3, 0.1), "prompt_id": pid, "client_id": "someone-else"})
    assert other.status_code == 400
    harness.wait_until(lambda: pid in two.get("/history").json(), 10, "the prompt to finish")


def test_merged_reads_count_every_worker(two: Rig) -> None:
    ids = [two.post("/prompt", {"prompt": slow(10 + n, 0.8)}).json()["prompt_id"] for n in range(4)]
    harness.wait_until(lambda: two.get("/prompt").json()["exec_info"]["queue_remaining"] == 4, 5, "4 in the fleet's queue")
    queue = two.get("/queue").json()
    assert [i[1] for i in queue["queue_running"] + queue["queue_pending"]] and \
        {i[1] for i in queue["queue_running"] + queue["queue_pending"]} == set(ids)
    numbers = [i[0] for i in queue["queue_pending"]]
    assert numbers == sorted(numbers)
    jobs = two.get("/api/jobs", status="pending,in_progress").json()
    assert {j["id"] for j in jobs["jobs"]} == set(ids) and jobs["pagination"]["total"] == 4
    harness.wait_until(lambda: set(ids) <= set(two.get("/history").json()), 20, "all 4 done")
    page = two.get("/history", max_items=2).json()
    assert len(page) == 2
    everything = list(two.get("/history").json())
    assert list(page) == everything[-2:]  # the newest two, oldest first, as ComfyUI orders it
    first_page = two.get("/api/jobs", limit=2, offset=0).json()
    second_page = two.get("/api/jobs", limit=2, offset=2).json()
    assert first_page["pagination"]["has_more"] and len(first_page["jobs"]) == 2
    assert not {j["id"] for j in first_page["jobs"]} & {j["id"] for j in second_page["jobs"]}
    job = two.get(f"/api/jobs/{ids[0]}").json()
    assert job["id"] == ids[0] and job["status"] == "completed"
    assert two.get("/api/jobs/nope").status_code == 404
    stats = two.get("/system_stats").json()
    assert len(stats["devices"]) == 2 and {d["comfyrig_worker"] for d in stats["devices"]} == {"worker-0", "worker-1"}


def test_interrupt_by_prompt_reaches_its_worker_and_clear_reaches_all(two: Rig) -> None:
    client = uuid.uuid4().hex
    with two.ws(client) as socket:
        long = two.post("/prompt", {"prompt": slow(20, 30), "client_id": client}).json()["prompt_id"]
        harness.wait_until(lambda: any(i[1] == long for i in two.get("/queue").json()["queue_running"]), 5, "it runs")
        assert two.post("/interrupt", {"prompt_id": long}).status_code == 200
        events = events_until_done(socket, {long})
    assert any(e["type"] == "execution_interrupted" for e in events)
    pending = [two.post("/prompt", {"prompt": slow(30 + n, 5)}).json()["prompt_id"] for n in range(4)]
    harness.wait_until(lambda: len(two.get("/queue").json()["queue_running"]) == 2, 5, "two running")
    two.post("/queue", {"clear": True})
    queue = two.get("/queue").json()
    assert queue["queue_pending"] == []
    two.post("/interrupt", {})
    harness.wait_until(lambda: not two.get("/queue").json()["queue_running"], 10, "both interrupted")
    history = two.get("/history").json()
    ran = [pid for pid in pending if pid in history]
    assert len(ran) == 2  # the two running were interrupted; the two cleared from the queue never ran
    assert all(any(m[0] == "execution_interrupted" for m in history[pid]["status"]["messages"]) for pid in ran)


def test_uploads_are_seen_by_every_worker(two: Rig, tmp_path: Path) -> None:
    png = two.get("/view", filename="missing.png").status_code
    assert png == 404
    prompt_id = two.post("/prompt", {"prompt": slow(40, 0.05)}).json()["prompt_id"]
    harness.wait_until(lambda: prompt_id in two.get("/history").json(), 10, "done")
    image = two.get("/history").json()[prompt_id]["outputs"]["3"]["images"][0]
    data = two.get("/view", **image).content
    files = {"image": ("gw-upload.png", data, "image/png")}
    answer = two.http.post(two.url + "/upload/image", files=files, data={"overwrite": "true"})
    assert answer.status_code == 200, answer.text
    name = answer.json()["name"]
    for fake in two.fakes:
        status, body = fake.request("GET", f"/view?filename={name}&type=input")
        assert status == 200 and body == data


def test_the_origin_check_of_comfyui_applies_at_the_gateway(two: Rig) -> None:
    port = two.url.rsplit(":", 1)[1]
    evil = two.http.get(two.url + "/queue", headers={"Origin": "http://evil.example", "Host": f"127.0.0.1:{port}"})
    assert evil.status_code == 403
    same = two.http.get(two.url + "/queue", headers={"Origin": f"http://127.0.0.1:{port}"})
    assert same.status_code == 200  # the workers never see the browser's Origin


def test_other_routes_come_from_the_home_worker(two: Rig) -> None:
    info = two.get("/object_info/EmptyImage").json()
    assert "EmptyImage" in info
    assert two.get("/api/object_info/EmptyImage").json() == info
    assert two.get("/embeddings").json() == []
    fleet = two.get("/comfyrig/fleet").json()
    assert [b["name"] for b in fleet["backends"]] == ["worker-0", "worker-1"]
    metrics = two.get("/comfyrig/metrics").text
    assert 'comfyrig_gateway_backend_up{backend="worker-0"} 1.0' in metrics


def test_a_lost_worker_s_prompts_finish_on_another(tmp_path: Path) -> None:
    with rig(tmp_path) as r:
        client = uuid.uuid4().hex
        with r.ws(client) as socket:
            ids = [r.post("/prompt", {"prompt": slow(50 + n, 1.5), "client_id": client}).json()["prompt_id"] for n in range(2)]
            harness.wait_until(lambda: len(r.get("/queue").json()["queue_running"]) == 2, 5, "both running")
            victim = next(f for f in r.fakes if f.get_json("/queue")["queue_running"][0][1] == ids[1])
            victim.proc.kill()
            events = events_until_done(socket, set(ids), timeout=30)
        successes = {e["data"]["prompt_id"] for e in events if e["type"] == "execution_success"}
        assert successes == set(ids)
        survivor = next(f for f in r.fakes if f is not victim)
        assert ids[1] in survivor.get_json(f"/history/{ids[1]}")


def test_with_no_worker_a_prompt_gets_a_comfyui_shaped_503(tmp_path: Path) -> None:
    with rig(tmp_path, workers=1) as r:
        r.fakes[0].proc.kill()
        harness.wait_until(lambda: r.live() == 0, 10, "the worker to be lost")
        answer = r.post("/prompt", {"prompt": slow()})
        assert answer.status_code == 503 and answer.json()["error"]["type"] == "no_worker"


def test_a_token_is_required_when_one_is_set(tmp_path: Path) -> None:
    with rig(tmp_path, workers=1, token="s3cret-token") as r:
        assert r.get("/queue").status_code == 200
        anonymous = httpx.get(r.url + "/queue", trust_env=False)
        assert anonymous.status_code == 401 and "s3cret" not in anonymous.text
        browser = httpx.get(r.url + "/queue?token=s3cret-token", trust_env=False)
        assert browser.status_code == 200 and browser.cookies.get("comfyrig_token") == "s3cret-token"
        wrong = httpx.get(r.url + "/queue", headers={"Authorization": "Bearer nope"}, trust_env=False)
        assert wrong.status_code == 401


def test_previews_and_websocket_images_reach_old_and_new_clients(tmp_path: Path) -> None:
    """A client that announced supports_preview_metadata gets ComfyUI's type-4 frames; one that
    did not gets the type-1 frames ComfyUI would send it (the gateway always asks for type 4)."""
    wf = slow(7, 0.3)
    wf["5"] = {"class_type": "SaveImageWebsocket", "inputs": {"images": ["4", 0]}}
    with rig(tmp_path, workers=1, env={"FAKE_COMFYUI_PREVIEWS": "1"}) as r:
        for metadata in (True, False):
            client = uuid.uuid4().hex
            with r.ws(client, metadata=metadata) as socket:
                socket.recv(timeout=5)  # status
                if metadata:
                    assert json.loads(socket.recv(timeout=5))["type"] == "feature_flags"
                pid = r.post("/prompt", {"prompt": wf, "client_id": client}).json()["prompt_id"]
                frames: list[bytes] = []
                while True:
                    raw = socket.recv(timeout=20)
                    if isinstance(raw, bytes):
                        frames.append(raw)
                    elif (e := json.loads(raw))["type"] == "executing" and e["data"]["node"] is None and e["data"]["prompt_id"] == pid:
                        break
            parsed = [harness.parse_binary_frame(f) for f in frames]
            kinds = {p.event for p in parsed}
            assert kinds == ({4} if metadata else {1}), kinds
            pngs = [f for f in frames if b"\x89PNG" in f]
            assert len(pngs) == 1  # SaveImageWebsocket's image, delivered once
            jpegs = [f for f in frames if b"\xff\xd8" in f[:64] or b"image/jpeg" in f[:200]]
            assert len(jpegs) == 3  # one preview per FakeSleep step


def test_a_restarted_gateway_adopts_the_prompts_in_flight(tmp_path: Path) -> None:
    """The gateway restarts while one prompt runs and one waits: the running one (whose events go
    to the old connection's client id) is reported from /history, the waiting one is re-queued
    under the new id; the client, reconnecting with its id, sees both end, in order."""
    with rig(tmp_path, workers=1) as r:
        client = uuid.uuid4().hex
        with r.ws(client) as socket:
            socket.recv(timeout=5)
            running = r.post("/prompt", {"prompt": slow(60, 1.5), "client_id": client}).json()["prompt_id"]
            waiting = r.post("/prompt", {"prompt": slow(61, 0.2), "client_id": client}).json()["prompt_id"]
            harness.wait_until(lambda: any(i[1] == running for i in r.get("/queue").json()["queue_running"]), 5, "it runs")
        port = int(r.url.rsplit(":", 1)[1])
        r.gateway.stop()
        again = GatewayThread(r.gateway.specs, GatewayOptions(port=port, lost_grace_s=0.5, requeue_timeout_s=5))
        again.start()
        try:
            harness.wait_until(lambda: r.live() == 1, 10, "the new gateway to reach the worker")
            queue = r.get("/queue").json()
            assert {i[1] for i in queue["queue_running"] + queue["queue_pending"]} == {running, waiting}
            assert all(i[3].get("client_id") == client for i in queue["queue_running"] + queue["queue_pending"])
            with r.ws(client) as socket:
                events = events_until_done(socket, {running, waiting}, timeout=30)
        finally:
            again.stop()
    ends = [e["data"]["prompt_id"] for e in events if e["type"] == "executing" and e["data"].get("node") is None]
    assert ends == [running, waiting]
    assert {e["data"]["prompt_id"] for e in events if e["type"] == "execution_success"} == {running, waiting}


def test_workers_with_different_nodes_or_models_are_named_at_start(tmp_path: Path) -> None:
    from comfyrig.gateway.events import NodesDiffer
    from comfyrig.ui.gateway_view import describe_gateway

    # Each worker's own models folder (as on machines without a shared disk), one model apart.
    for n, models in enumerate((["sd15.safetensors", "vae/ae.safetensors"], ["sd15.safetensors"])):
        for model in models:
            folder = "checkpoints" if "/" not in model else ""
            path = tmp_path / f"base{n}" / "models" / folder / model
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"")
        (tmp_path / f"base{n}" / "custom_nodes").mkdir()
    seen: list[object] = []
    with rig(tmp_path, envs=[{}, {"FAKE_COMFYUI_NODE_PACKS": "multigpu"}], reporter=seen.append,
             args=[["--base-directory", str(tmp_path / f"base{n}")] for n in range(2)]):
        differ = harness.wait_until(lambda: [e for e in seen if isinstance(e, NodesDiffer)], 10, "the node comparison")
    assert len(differ) == 1 and (differ[0].name, differ[0].reference) == ("worker-1", "worker-0")
    diff = differ[0].diff
    assert diff.missing_nodes == () and "UNETLoaderMultiGPU" in diff.extra_nodes and len(diff.extra_nodes) == 14
    assert (diff.missing_models, diff.extra_models) == (("ae.safetensors",), ())
    assert "worker-1 lacks model(s) ae.safetensors" in describe_gateway(differ[0])


def test_workers_join_and_leave_while_prompts_run(tmp_path: Path) -> None:
    """A worker taken off for good (its node left) has its prompts re-submitted at once; a worker
    that joins later becomes routable (what a Ray cluster's nodes do)."""
    with rig(tmp_path) as r:
        client = uuid.uuid4().hex
        with r.ws(client) as socket:
            socket.recv(timeout=5)
            ids = [r.post("/prompt", {"prompt": slow(70 + n, 1.0), "client_id": client}).json()["prompt_id"] for n in range(2)]
            harness.wait_until(lambda: len(r.get("/queue").json()["queue_running"]) == 2, 5, "both running")
            leaving = next(n for n, f in enumerate(r.fakes) if f.get_json("/queue")["queue_running"][0][1] == ids[1])
            r.gateway.remove_backend(f"worker-{leaving}")
            events = events_until_done(socket, set(ids), timeout=30)
        assert {e["data"]["prompt_id"] for e in events if e["type"] == "execution_success"} == set(ids)
        assert [b["name"] for b in r.get("/comfyrig/fleet").json()["backends"]] == [f"worker-{1 - leaving}"]
        r.gateway.add_backend(BackendSpec("joined", r.fakes[leaving].url, "local"))
        harness.wait_until(lambda: r.live() == 2, 10, "the joined worker to be routable")
        later = [r.post("/prompt", {"prompt": slow(80 + n, 0.5)}).json()["prompt_id"] for n in range(2)]
        harness.wait_until(lambda: set(later) <= set(r.get("/history").json()), 20, "both done")
        assert later[1] in r.fakes[leaving].get_json(f"/history/{later[1]}") or later[0] in r.fakes[leaving].get_json(
            f"/history/{later[0]}")
