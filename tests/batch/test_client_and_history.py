"""The ComfyClient batch calls over httpx.MockTransport, and reading history entries."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from comfyrig.batch.worker import LocalSink, classify_history, output_refs, summarize_400
from comfyrig.comfy.client import ComfyClient
from comfyrig.errors import ComfyAPIError


def client(handler) -> ComfyClient:  # type: ignore[no-untyped-def]
    return ComfyClient("http://comfy:8188", http=httpx.Client(transport=httpx.MockTransport(handler)))


def test_submit_sends_our_prompt_id_and_client_id() -> None:
    seen = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.update(json.loads(request.content))
        return httpx.Response(200, json={"prompt_id": seen["prompt_id"], "number": 3, "node_errors": {}})

    assert client(handler).submit({"1": {}}, prompt_id="p-1", client_id="c")["number"] == 3
    assert seen == {"prompt": {"1": {}}, "prompt_id": "p-1", "client_id": "c"}


def test_a_server_that_ignores_prompt_id_is_refused() -> None:
    c = client(lambda r: httpx.Response(200, json={"prompt_id": "theirs", "number": 1, "node_errors": {}}))
    with pytest.raises(ComfyAPIError, match="did not keep the prompt id") as info:
        c.submit({}, prompt_id="ours")
    assert "PR #8189" in str(info.value)


def test_errors_keep_status_and_body() -> None:
    body = {"error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation"},
            "node_errors": {"4": {"class_type": "UNETLoader", "errors": [{"type": "value_not_in_list",
                                  "message": "Value not in list", "details": "unet_name: 'x' not in []"}]}}}
    c = client(lambda r: httpx.Response(400, json=body))
    with pytest.raises(ComfyAPIError) as info:
        c.submit({}, prompt_id="p")
    assert info.value.status == 400 and info.value.body == body
    assert summarize_400(info.value.body) == {
        "error_type": "prompt_outputs_failed_validation", "node": "4", "class_type": "UNETLoader",
        "exception_type": "value_not_in_list", "message": "Value not in list: unet_name: 'x' not in []"}

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(ComfyAPIError, match="did not answer /history/p: ConnectError") as info:
        client(refuse).history("p")
    assert info.value.status is None


def test_history_queue_view_interrupt() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append((request.method, request.url.path, request.url.query.decode(), request.content))
        if request.url.path == "/history/p1":
            return httpx.Response(200, json={"p1": {"outputs": {}, "status": {"status_str": "success"}}})
        if request.url.path.startswith("/history/"):
            return httpx.Response(200, json={})
        if request.url.path == "/queue" and request.method == "GET":
            return httpx.Response(200, json={"queue_running": [[0, "p2", {}, {}, []]], "queue_pending": [[1, "p3", {}, {}, []]]})
        if request.url.path == "/view":
            return httpx.Response(200, content=b"PNG")
        return httpx.Response(200)

    c = client(handler)
    assert c.history("p1") == {"outputs": {}, "status": {"status_str": "success"}}
    assert c.history("p9") is None
    assert c.queue_ids() == (["p2"], ["p3"])
    assert c.view("a b.png", "sub") == b"PNG"
    c.interrupt("p2")
    c.delete_queued(["p3"])
    assert ("GET", "/view", "filename=a+b.png&subfolder=sub&type=output", b"") in calls
    assert ("POST", "/interrupt", "", b'{"prompt_id":"p2"}') in calls
    assert ("POST", "/queue", "", b'{"delete":["p3"]}') in calls


def test_history_classification() -> None:
    ok = {"status": {"status_str": "success", "completed": True, "messages": [["execution_start", {}]]}}
    assert classify_history(ok) == ("success", {})
    err = {"status": {"status_str": "error", "messages": [["execution_error", {
        "node_id": "4", "node_type": "FakeSleep", "exception_type": "RuntimeError", "exception_message": "boom\n"}]]}}
    assert classify_history(err) == ("error", {"node": "4", "class_type": "FakeSleep", "exception_type": "RuntimeError", "message": "boom"})
    stop = {"status": {"status_str": "error", "messages": [["execution_interrupted", {"node_id": "2", "node_type": "X"}]]}}
    assert classify_history(stop)[0] == "interrupted"
    assert classify_history({"status": {"status_str": "error", "messages": []}})[0] == "unknown"


def test_output_refs_only_saved_files() -> None:
    entry = {"outputs": {
        "10": {"images": [{"filename": "b.png", "subfolder": "", "type": "output"}]},
        "9": {"images": [{"filename": "a.png", "subfolder": "s", "type": "output"},
                         {"filename": "prev.png", "subfolder": "", "type": "temp"}],
              "text": ["not a file"]},
    }}
    assert [(node, ref["filename"]) for node, ref in output_refs(entry)] == [("9", "a.png"), ("10", "b.png")]


def test_local_sink_writes_atomically(tmp_path: Path) -> None:
    sink = LocalSink(tmp_path)
    out = sink("job1", "9", 0, "ComfyUI_00001_.png", b"data")
    assert out.path == "outputs/job1-9-0.png" and (tmp_path / out.path).read_bytes() == b"data"
    assert out.sha256 == "3a6eb0790f39ac87c94f3856b2dd2c5d110e6811602261a9a923d3bb23adc8b7" and out.bytes == 4
    (tmp_path / "outputs" / ".job2-9-0.png.1.2.part").write_bytes(b"half")
    assert sink.clean_partials() == 1
    assert sorted(p.name for p in (tmp_path / "outputs").iterdir()) == ["job1-9-0.png"]
