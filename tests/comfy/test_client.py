"""The one ComfyUI client over httpx.MockTransport: every route, and the error split.

Shapes are ComfyUI's (server.py): GET /prompt -> {exec_info: {queue_remaining}}, GET /queue
-> {queue_running, queue_pending} of [number, prompt_id, prompt, extra_data, outputs], a
rejected POST /prompt -> 400 {error, node_errors}, POST /queue and /interrupt -> empty 200.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from comfyrig.comfy.client import ComfyClient, Job, QueueCounts, Submitted, ready_stats
from comfyrig.comfy.history import summarize_400
from comfyrig.errors import ComfyAPIError, ComfyHTTPError, ComfyUnreachable, ConfigError

URL = "http://127.0.0.1:8188"
Handler = Callable[[httpx.Request], httpx.Response]


def client(handler: Handler, url: str = URL) -> ComfyClient:
    return ComfyClient(url, http=httpx.Client(transport=httpx.MockTransport(handler)))


def answer(body: object, status: int = 200) -> Handler:
    return lambda request: httpx.Response(status, json=body)


STATS = {"system": {"comfyui_version": "0.3.76", "pytorch_version": "2.9.1"}, "devices": [{"name": "cuda:0"}]}


# -- reading ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("remaining, expected", [(0, QueueCounts(0, 0)), (1, QueueCounts(1, 0)), (5, QueueCounts(1, 4))])
def test_prompt_counts_from_queue_remaining(remaining: int, expected: QueueCounts) -> None:
    c = client(answer({"exec_info": {"queue_remaining": remaining}}))
    assert c.prompt_counts() == expected
    assert c.queue_remaining() == remaining == expected.remaining


def test_queue_counts_and_ids() -> None:
    body = {"queue_running": [[0, "p2", {}, {}, []]], "queue_pending": [[1, "p3", {}, {}, []], [2, "p4", {}, {}, []]]}
    c = client(answer(body))
    assert c.queue() == QueueCounts(running=1, pending=2)
    assert c.queue_ids() == (["p2"], ["p3", "p4"])


def test_routes_and_trailing_slash() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url}")
        if request.url.path == "/object_info":
            return httpx.Response(200, json={"KSampler": {}, "UNETLoaderDisTorch2MultiGPU": {}, "CLIPLoaderMultiGPU": {}})
        return httpx.Response(200, json=STATS)

    c = client(handler, URL + "/")
    assert c.base_url == URL
    assert c.system_stats()["system"]["comfyui_version"] == "0.3.76"
    assert c.node_classes() == {"KSampler", "UNETLoaderDisTorch2MultiGPU", "CLIPLoaderMultiGPU"}
    assert c.multigpu_nodes() == ["CLIPLoaderMultiGPU", "UNETLoaderDisTorch2MultiGPU"]
    assert seen == [f"GET {URL}/system_stats", f"GET {URL}/object_info", f"GET {URL}/object_info"]


def test_multigpu_finding_reads_object_info_and_system_stats() -> None:
    from .recorded_multigpu import OBJECT_INFO_0_24

    stats = {"system": {"comfyui_version": "0.24.0"}, "devices": [
        {"name": f"cuda:{i} NVIDIA H100 80GB HBM3 : cudaMallocAsync", "type": "cuda", "index": i} for i in range(2)]}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/object_info":
            return httpx.Response(200, json={**OBJECT_INFO_0_24, "CLIPLoaderMultiGPU": {}})
        return httpx.Response(200, json=stats)

    c = client(handler)
    assert c.multigpu_nodes() == ["MultiGPU_WorkUnits", "SelectModelDevice", "SelectCLIPDevice", "SelectVAEDevice",
                                  "CLIPLoaderMultiGPU"]
    found = c.multigpu_finding()
    assert found.native[0] == "MultiGPU_WorkUnits" and found.pack == ("CLIPLoaderMultiGPU",)
    assert [d.label for d in found.gpus] == ["cuda:0", "cuda:1"] and found.version == "0.24.0"


def test_history_view_interrupt_delete() -> None:
    calls: list[tuple[str, str, str, bytes]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.raw_path.decode().split("?")[0]  # as sent: quoted
        calls.append((request.method, path, request.url.query.decode(), request.content))
        if request.url.path == "/history/p1":
            return httpx.Response(200, json={"p1": {"outputs": {}, "status": {"status_str": "success"}}})
        if request.url.path.startswith("/history/"):
            return httpx.Response(200, json={})
        if request.url.path == "/view":
            return httpx.Response(200, content=b"PNG")
        return httpx.Response(200)  # POST /queue and /interrupt answer an empty 200

    c = client(handler)
    assert c.history("p1") == {"outputs": {}, "status": {"status_str": "success"}}
    assert c.history("a/b") is None  # unknown, queued or running; the id is quoted in the path
    assert c.view("a b.png", "sub") == b"PNG"
    c.interrupt("p2")
    c.interrupt()
    c.delete_queued(["p3"])
    assert ("GET", "/history/a%2Fb", "", b"") in calls
    assert ("GET", "/view", "filename=a+b.png&subfolder=sub&type=output", b"") in calls
    assert ("POST", "/interrupt", "", b'{"prompt_id":"p2"}') in calls
    assert ("POST", "/interrupt", "", b"{}") in calls
    assert ("POST", "/queue", "", b'{"delete":["p3"]}') in calls


def test_submit_sends_our_prompt_id_and_client_id() -> None:
    seen: dict[str, object] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.update(json.loads(request.content))
        return httpx.Response(200, json={"prompt_id": seen["prompt_id"], "number": 3, "node_errors": {}})

    assert client(handler).submit({"1": {}}, prompt_id="p-1", client_id="c") == Submitted("p-1", 3, {})
    assert seen == {"prompt": {"1": {}}, "prompt_id": "p-1", "client_id": "c"}


def test_a_server_that_ignores_prompt_id_is_refused() -> None:
    c = client(answer({"prompt_id": "theirs", "number": 1, "node_errors": {}}))
    with pytest.raises(ComfyAPIError, match="did not keep the prompt id") as info:
        c.submit({}, prompt_id="ours")
    assert "PR #8189" in str(info.value) and info.value.status is None


def test_ready_stats_answers_or_none() -> None:
    # ready_stats builds its own client; here it meets nothing on a port where nothing listens.
    assert ready_stats("http://127.0.0.1:9") is None


# -- the error split --------------------------------------------------------------------------------
REJECTED = {
    "error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation",
              "details": "", "extra_info": {}},
    "node_errors": {"4": {"class_type": "UNETLoader", "dependent_outputs": ["9"], "errors": [
        {"type": "value_not_in_list", "message": "Value not in list", "details": "unet_name: 'x' not in []",
         "extra_info": {}}]}},
}


def test_400_with_node_errors_is_an_http_error_with_the_body() -> None:
    with pytest.raises(ComfyHTTPError) as info:
        client(answer(REJECTED, status=400)).submit({}, prompt_id="p")
    error = info.value
    assert error.status == 400 and error.body == REJECTED
    assert error.message == (f"{URL}/prompt: HTTP 400 Bad Request: Value not in list: unet_name: 'x' not in [] "
                             "(node 4, UNETLoader).")
    assert error.hint is None
    assert summarize_400(error.body) == {
        "error_type": "prompt_outputs_failed_validation", "node": "4", "class_type": "UNETLoader",
        "exception_type": "value_not_in_list", "message": "Value not in list: unet_name: 'x' not in []"}


def test_500_without_json() -> None:
    with pytest.raises(ComfyHTTPError) as info:
        client(lambda r: httpx.Response(500, text="500 Internal Server Error\n\nServer got itself in trouble")).queue()
    assert (info.value.status, info.value.body) == (500, None)
    assert info.value.message == f"{URL}/queue: HTTP 500 Internal Server Error."


def test_404_of_an_unknown_route() -> None:
    with pytest.raises(ComfyHTTPError, match=r"/object_info: HTTP 404 Not Found\.$") as info:
        client(lambda r: httpx.Response(404, text="404: Not Found")).object_info()
    assert info.value.status == 404


@pytest.mark.parametrize(
    "error, message",
    [
        (httpx.ConnectError("[Errno 111] Connection refused"), r"/prompt: nothing answers \(\[Errno 111\] Connection refused\)\.$"),
        (httpx.ConnectTimeout("timed out"), r"/prompt: no answer within the timeout \(ConnectTimeout\)\.$"),
        (httpx.ReadTimeout("timed out"), r"/prompt: no answer within the timeout \(ReadTimeout\)\.$"),
        (httpx.RemoteProtocolError("Server disconnected without sending a response."), "nothing answers .*disconnected"),
        (httpx.ReadError(""), r"nothing answers \(ReadError\)"),
    ],
)
def test_no_answer_is_unreachable(error: httpx.TransportError, message: str) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        error.request = request
        raise error

    with pytest.raises(ComfyUnreachable, match=message) as info:
        client(fail).queue_remaining()
    assert info.value.status is None and info.value.body is None
    assert info.value.message.startswith(f"{URL}/prompt: ")


@pytest.mark.parametrize(
    "call, handler, message",
    [
        ("queue_remaining", lambda r: httpx.Response(200, content=b"<html>"), "/prompt: the answer is not JSON"),
        ("queue_remaining", answer({"exec_info": {}}), "no exec_info.queue_remaining count"),
        ("queue_remaining", answer({"exec_info": {"queue_remaining": "x"}}), "no exec_info.queue_remaining count"),
        ("queue_remaining", answer({"exec_info": {"queue_remaining": -1}}), "no exec_info.queue_remaining count"),
        ("queue_remaining", answer([1, 2]), "no exec_info.queue_remaining count"),
        ("queue", answer({"queue_running": []}), "no queue_running/queue_pending lists"),
        ("queue_ids", answer({"queue_running": {}, "queue_pending": []}), "no queue_running/queue_pending lists"),
        ("system_stats", answer({"hello": 1}), "no 'system' object"),
        ("object_info", answer(["KSampler"]), "no object of node classes"),
        ("history", answer([]), "no object of history entries"),
        ("history", answer({"p": "done"}), "no object for prompt p"),
        ("submit", answer({"number": 1}), "no prompt_id"),
    ],
)
def test_answers_that_are_not_comfyui(call: str, handler: Handler, message: str) -> None:
    c = client(handler)
    method = getattr(c, call)
    args: tuple[object, ...] = {"history": ("p",), "submit": ({},)}.get(call, ())
    kwargs = {"prompt_id": "p"} if call == "submit" else {}
    with pytest.raises(ComfyAPIError, match=message) as info:
        method(*args, **kwargs)
    assert type(info.value) is ComfyAPIError and info.value.status is None
    assert info.value.message.startswith(f"{URL}/")


def test_a_body_that_cannot_be_decoded() -> None:
    broken = lambda r: httpx.Response(200, headers={"Content-Encoding": "gzip"}, content=b"not gzip")
    with pytest.raises(ComfyAPIError, match="the answer could not be read") as info:
        client(broken).view("a.png")
    assert type(info.value) is ComfyAPIError


@pytest.mark.parametrize("url", ["127.0.0.1:8188", "ftp://host/", "http://"])
def test_a_url_that_is_not_http_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match="is not an http"):
        ComfyClient(url)


def test_close_closes_the_http_client() -> None:
    http = httpx.Client(transport=httpx.MockTransport(answer({})))
    with ComfyClient(URL, http=http):
        pass
    assert http.is_closed


# -- one prompt's state: ComfyUI 0.24's /api/jobs/{id}, else /history + /queue ---------------------
ENTRY = {"outputs": {"9": {"images": [{"filename": "a.png", "subfolder": "", "type": "output"}]}},
         "status": {"status_str": "success", "completed": True, "messages": []}}


@pytest.mark.parametrize(("answer_", "expected"), [
    ({"id": "p", "status": "pending"}, Job("pending")),
    ({"id": "p", "status": "in_progress"}, Job("running")),
    ({"id": "p", "status": "completed", "outputs": ENTRY["outputs"], "execution_status": ENTRY["status"]}, Job("finished", ENTRY)),
    ({"id": "p", "status": "cancelled", "outputs": {}, "execution_status": {"status_str": "error"}},
     Job("finished", {"outputs": {}, "status": {"status_str": "error"}})),
])
def test_job_through_the_jobs_api(answer_: dict[str, object], expected: Job) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return httpx.Response(200, json=answer_)

    assert client(handler).job("p") == expected
    assert seen == ["/api/jobs/p"]


def test_job_unknown_to_the_jobs_api_is_unknown_without_asking_the_queue() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return httpx.Response(404, json={"error": "Job not found"})

    assert client(handler).job("p") == Job("unknown")
    assert seen == ["/api/jobs/p"]


def test_job_on_a_comfyui_before_the_jobs_api_asks_history_and_queue_and_remembers() -> None:
    seen: list[str] = []
    queue = {"queue_running": [[0, "r", {}, {}, []]], "queue_pending": [[1, "q", {}, {}, []]]}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        path = request.url.path
        if path.startswith("/api/jobs/"):
            return httpx.Response(404, text="404: Not Found")  # aiohttp's own: no such route
        if path == "/history/done":
            return httpx.Response(200, json={"done": ENTRY})
        if path.startswith("/history/"):
            return httpx.Response(200, json={})
        return httpx.Response(200, json=queue)

    c = client(handler)
    assert c.job("done") == Job("finished", ENTRY)
    assert [c.job(p) for p in ("r", "q", "gone")] == [Job("running"), Job("pending"), Job("unknown")]
    assert seen.count("/api/jobs/done") == 1 and not any(s.startswith("/api/jobs/") for s in seen[1:])


def test_a_job_answer_that_is_not_comfyuis_is_an_error() -> None:
    with pytest.raises(ComfyAPIError, match="unknown job status"):
        client(answer({"id": "p", "status": "exploded"})).job("p")


def test_view_stream_reads_in_bounded_chunks_and_maps_errors() -> None:
    """Issue 16 item 19: three 400 MB outputs were held whole (1.68 GB resident)."""
    body = bytes(range(256)) * (3 * 4096 + 7)  # a little over 3 MiB

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.params["filename"] == "gone.png":
            return httpx.Response(404, json={"error": "not found"})
        return httpx.Response(200, stream=httpx.ByteStream(body))

    c = client(handler)
    with c.view_stream("big.mp4") as chunks:
        sizes = [len(chunk) for chunk in chunks]
    assert sum(sizes) == len(body) and max(sizes) <= 1024 * 1024 and len(sizes) >= 4
    with pytest.raises(ComfyHTTPError, match="HTTP 404"), c.view_stream("gone.png") as chunks:
        list(chunks)
