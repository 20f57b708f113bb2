"""HttpWorker against an in-memory ComfyUI: HTTP through ``httpx.MockTransport``, the websocket
through the injected connection factory. Commands in, typed events out; no process, no port."""

from __future__ import annotations

import json
import pickle
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Literal, TypeVar

import httpx
import pytest

from comfyrig.batch.events import reason_text
from comfyrig.batch.journal import OutputFile
from comfyrig.batch.protocol import (
    AppError,
    AppFailed,
    CancelPrompt,
    CollectOutputs,
    InterruptPrompt,
    OutputsCollected,
    PromptActivity,
    PromptCancelled,
    PromptCompleted,
    PromptInterrupted,
    PromptQueued,
    PromptStarted,
    RecoverPrompt,
    RestartServer,
    StopSignal,
    StopWorker,
    SubmitPrompt,
    SystemFailed,
    WorkerDown,
    WorkerEvent,
    WorkerUp,
)
from comfyrig.batch.worker import HttpWorker, LocalSink
from comfyrig.comfy.history import summarize_400

URL = "http://127.0.0.1:8188"
E = TypeVar("E")


class FakeSocket:
    """ComfyUI's /ws as the worker sees it: frames pushed by the test, a close it can cause."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.frames: queue.Queue[str | None] = queue.Queue()
        self.closed = False

    def recv(self, timeout: float | None = None) -> str | bytes:
        try:
            # A short wait whatever was asked: a fake may time out early, and the worker's
            # stop() then ends its listener at once.
            frame = self.frames.get(timeout=min(timeout or 0.01, 0.01))
        except queue.Empty:
            raise TimeoutError from None
        if frame is None:
            raise OSError("connection closed by the server")
        return frame

    def close(self) -> None:
        self.closed = True


class FakeComfy:
    """The state of one ComfyUI and its HTTP routes, as comfy/client.py calls them."""

    def __init__(self) -> None:
        self.up = True
        self.posted: list[dict[str, Any]] = []
        self.deleted: list[list[str]] = []
        self.interrupts: list[dict[str, Any]] = []
        self.history: dict[str, dict[str, Any]] = {}
        self.running: list[str] = []
        self.pending: list[str] = []
        self.files: dict[str, bytes] = {}
        self.answer_post: httpx.Response | None = None  # instead of accepting the prompt
        self.sockets: list[FakeSocket] = []
        self.lock = threading.Lock()
        self.jobs_api = False  # ComfyUI 0.24's GET /api/jobs/{id}
        self.queue_reads = 0  # GET /queue: its answer carries every queued workflow

    def handle(self, request: httpx.Request) -> httpx.Response:
        if not self.up:
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        with self.lock:
            return self._route(request.method, request.url.path, request)

    def _route(self, method: str, path: str, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        if (method, path) == ("GET", "/prompt"):
            return httpx.Response(200, json={"exec_info": {"queue_remaining": len(self.running) + len(self.pending)}})
        if (method, path) == ("GET", "/system_stats"):
            return httpx.Response(200, json={"system": {"comfyui_version": "0.3.76"}, "devices": [{"name": "cuda:0 Fake GPU"}]})
        if (method, path) == ("POST", "/prompt"):
            if self.answer_post is not None:
                return self.answer_post
            self.posted.append(body)
            self.pending.append(body["prompt_id"])
            return httpx.Response(200, json={"prompt_id": body["prompt_id"], "number": len(self.posted), "node_errors": {}})
        if self.jobs_api and method == "GET" and path.startswith("/api/jobs/"):
            pid = path.rsplit("/", 1)[1]
            if pid in self.history:
                entry = self.history[pid]
                failed = (entry.get("status") or {}).get("status_str") == "error"
                return httpx.Response(200, json={"id": pid, "status": "failed" if failed else "completed",
                                                 "outputs": entry.get("outputs", {}), "execution_status": entry.get("status", {})})
            if pid in self.running or pid in self.pending:
                return httpx.Response(200, json={"id": pid, "status": "in_progress" if pid in self.running else "pending"})
            return httpx.Response(404, json={"error": "Job not found"})
        if method == "GET" and path.startswith("/history/"):
            pid = path.rsplit("/", 1)[1]
            return httpx.Response(200, json={pid: self.history[pid]} if pid in self.history else {})
        if (method, path) == ("GET", "/queue"):
            self.queue_reads += 1

            def items(ids: list[str]) -> list[list[Any]]:
                return [[n, pid, {}, {}, []] for n, pid in enumerate(ids)]

            return httpx.Response(200, json={"queue_running": items(self.running), "queue_pending": items(self.pending)})
        if (method, path) == ("POST", "/queue"):
            self.deleted.append(body["delete"])
            self.pending = [p for p in self.pending if p not in body["delete"]]
            return httpx.Response(200)
        if (method, path) == ("POST", "/interrupt"):
            self.interrupts.append(body)
            return httpx.Response(200)
        if (method, path) == ("GET", "/view"):
            name = request.url.params["filename"]
            return httpx.Response(200, content=self.files[name]) if name in self.files else httpx.Response(404)
        return httpx.Response(404)

    def connect(self, url: str, *, open_timeout: float, proxy: Literal[True] | None) -> FakeSocket:
        if not self.up:
            raise ConnectionRefusedError(111, "Connection refused")
        socket = FakeSocket(url)
        with self.lock:
            self.sockets.append(socket)
        return socket

    def send(self, kind: str, **data: Any) -> None:
        """A websocket event to the newest connection."""
        self.sockets[-1].frames.put(json.dumps({"type": kind, "data": data}))

    def finish(self, prompt_id: str, outputs: dict[str, Any] | None = None, messages: list[Any] | None = None,
               status: str = "success") -> None:
        with self.lock:
            self.running = [p for p in self.running if p != prompt_id]
            self.pending = [p for p in self.pending if p != prompt_id]
            self.history[prompt_id] = {"prompt": [], "outputs": outputs or {},
                                       "status": {"status_str": status, "completed": status == "success",
                                                  "messages": messages or []}}

    def start(self, prompt_id: str) -> None:
        with self.lock:
            self.pending = [p for p in self.pending if p != prompt_id]
            self.running.append(prompt_id)


def wait_for(condition: Callable[[], object], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.002)


class Run:
    def __init__(self, comfy: FakeComfy, *, sink: Any = None, **kwargs: Any) -> None:
        self.comfy = comfy
        self.events: queue.Queue[WorkerEvent] = queue.Queue()
        self.stored: list[tuple[str, str, int, str, bytes]] = []
        self.worker = HttpWorker(
            "w0", URL, "GPU 0", client_id="comfyrig-batch-test", emit=self.events.put, sink=sink or self.sink,
            transport=httpx.MockTransport(comfy.handle), ws_connect=comfy.connect, retry_s=0.005, **kwargs,
        )

    def sink(self, job: str, node: str, n: int, source: str, chunks: bytes | Iterable[bytes]) -> OutputFile:
        data = chunks if isinstance(chunks, bytes) else b"".join(chunks)  # the worker streams them
        self.stored.append((job, node, n, source, data))
        return OutputFile(path=f"outputs/{job}-{node}-{n}.png", sha256="0" * 64, bytes=len(data), node=node, source=source)

    def next(self, timeout: float = 5.0) -> WorkerEvent:
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no event from the worker") from None

    def until(self, kind: type[E], timeout: float = 5.0) -> E:
        """The next event of ``kind``; events of other kinds before it are dropped."""
        deadline = time.monotonic() + timeout
        while True:
            event = self.next(max(deadline - time.monotonic(), 0.001))
            if isinstance(event, kind):
                return event

    def submit(self, job: str, prompt_id: str) -> None:
        """Submit, and return once the command thread is done with it."""
        self.worker.send(SubmitPrompt(job, prompt_id, {"1": {"class_type": "EmptyImage", "inputs": {}}}))
        self.settle()
        assert any(p["prompt_id"] == prompt_id for p in self.comfy.posted)

    def settle(self) -> None:
        """Commands are carried out in order: the answer to a marker means the ones before are done."""
        self.worker.send(RecoverPrompt("marker", "marker"))
        assert self.next() == SystemFailed("w0", "marker", "w0 no longer knows it (restarted since?)", charged=False)


@pytest.fixture(params=["routes-0.3", "jobs-api-0.24"])
def comfy(request: pytest.FixtureRequest) -> FakeComfy:
    """Every worker test runs against both ways of asking about a prompt: /history + /queue
    (ComfyUI before 0.24) and /api/jobs/{id} (0.24)."""
    fake = FakeComfy()
    fake.jobs_api = request.param == "jobs-api-0.24"
    return fake


@pytest.fixture
def run(comfy: FakeComfy) -> Iterator[Callable[..., Run]]:
    started: list[Run] = []

    def start(**kwargs: Any) -> Run:
        r = Run(comfy, **kwargs)
        r.worker.start()
        started.append(r)
        return r

    yield start
    for r in started:
        r.worker.stop()
        r.worker.join(2.0)
        assert not any(t.is_alive() for t in r.worker._threads), "a worker thread did not end"


def test_submit_events_complete_and_collect_through_the_sink(comfy: FakeComfy, run: Callable[..., Run]) -> None:
    r = run()
    assert r.next() == WorkerUp("w0", device="cuda:0 Fake GPU", comfyui="0.3.76")
    assert comfy.sockets[0].url == "ws://127.0.0.1:8188/ws?clientId=comfyrig-batch-test"
    r.submit("job1", "p1")
    assert comfy.posted == [{"prompt": {"1": {"class_type": "EmptyImage", "inputs": {}}}, "prompt_id": "p1",
                             "client_id": "comfyrig-batch-test"}]
    comfy.start("p1")
    comfy.send("status", status={"exec_info": {"queue_remaining": 1}})  # no prompt id: not ours to report
    comfy.send("execution_start", prompt_id="p1")
    comfy.send("executing", node="3", prompt_id="p1")
    comfy.send("progress", value=7, max=20, node="3", prompt_id="p1")
    comfy.send("executing", node="3", prompt_id="someone-else")  # another client's prompt
    assert r.next() == PromptStarted("w0", "p1")
    assert r.next() == PromptActivity("w0", "p1", node="3")
    assert r.next() == PromptActivity("w0", "p1", node="3", step=(7.0, 20.0))
    comfy.files = {"a.png": b"PNG-a", "b.png": b"PNG-b"}
    comfy.finish("p1", outputs={"9": {"images": [{"filename": "a.png", "subfolder": "", "type": "output"},
                                                 {"filename": "b.png", "subfolder": "", "type": "output"},
                                                 {"filename": "preview.png", "subfolder": "", "type": "temp"}]}})
    comfy.send("executing", node=None, prompt_id="p1")
    assert r.next() == PromptCompleted("w0", "p1")
    r.worker.send(CollectOutputs("job1", "p1"))
    collected = r.next()
    assert isinstance(collected, OutputsCollected) and (collected.worker, collected.prompt_id) == ("w0", "p1")
    assert [f.path for f in collected.files] == ["outputs/job1-9-0.png", "outputs/job1-9-1.png"]
    assert r.stored == [("job1", "9", 0, "a.png", b"PNG-a"), ("job1", "9", 1, "b.png", b"PNG-b")]  # temp files stay


def test_a_failed_download_leaves_no_file_of_the_job(comfy: FakeComfy, run: Callable[..., Run], tmp_path: Path) -> None:
    """Issue 16 item 19: the first output was in outputs/, listed nowhere, after the second failed."""
    r = run(sink=LocalSink(tmp_path))
    assert isinstance(r.next(), WorkerUp)
    r.submit("job1", "p1")
    comfy.files = {"a.png": b"PNG-a" * 1000}  # b.png is gone from the server: 404
    comfy.finish("p1", outputs={"9": {"images": [{"filename": "a.png", "subfolder": "", "type": "output"},
                                                 {"filename": "b.png", "subfolder": "", "type": "output"}]}})
    comfy.send("executing", node=None, prompt_id="p1")
    assert r.next() == PromptCompleted("w0", "p1")
    r.worker.send(CollectOutputs("job1", "p1"))
    failed = r.next()
    assert isinstance(failed, SystemFailed) and "HTTP 404" in failed.reason
    assert list((tmp_path / "outputs").iterdir()) == []


def test_a_rejected_prompt_is_an_application_failure_with_its_node_error(comfy: FakeComfy, run: Callable[..., Run]) -> None:
    comfy.answer_post = httpx.Response(400, json={
        "error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation",
                  "details": "", "extra_info": {}},
        "node_errors": {"1": {"errors": [{"type": "value_not_in_list", "message": "Value not in list",
                                          "details": "unet_name: 'flux.safetensors' not in []", "extra_info": {}}],
                              "dependent_outputs": ["3"], "class_type": "UNETLoader"}},
    })
    r = run()
    r.until(WorkerUp)
    r.worker.send(SubmitPrompt("job1", "p1", {}))
    assert r.next() == AppFailed("w0", "p1", AppError(
        "Value not in list: unet_name: 'flux.safetensors' not in []", node="1", class_type="UNETLoader",
        exception_type="value_not_in_list", error_type="prompt_outputs_failed_validation"))


def test_other_http_errors_and_no_answer_are_system_failures(comfy: FakeComfy, run: Callable[..., Run]) -> None:
    comfy.answer_post = httpx.Response(500, text="Internal Server Error")
    r = run()
    r.until(WorkerUp)
    r.worker.send(SubmitPrompt("job1", "p1", {}))
    assert r.next() == SystemFailed("w0", "p1", "w0 answered POST /prompt with HTTP 500", charged=True)


def test_an_execution_error_in_the_history_fails_the_job(comfy: FakeComfy, run: Callable[..., Run]) -> None:
    r = run()
    r.until(WorkerUp)
    r.submit("job1", "p1")
    comfy.finish("p1", status="error", messages=[
        ["execution_start", {"prompt_id": "p1"}],
        ["execution_error", {"prompt_id": "p1", "node_id": "4", "node_type": "FakeSleep",
                             "exception_type": "RuntimeError", "exception_message": "boom\n"}],
    ])
    comfy.send("execution_error", prompt_id="p1", node_id="4")
    comfy.send("executing", node=None, prompt_id="p1")
    assert r.until(AppFailed) == AppFailed("w0", "p1", AppError("boom", node="4", class_type="FakeSleep",
                                                                exception_type="RuntimeError"))


def test_connection_refused_is_down_then_up_when_it_answers(comfy: FakeComfy, run: Callable[..., Run]) -> None:
    comfy.up = False
    r = run()
    down = r.next()
    assert isinstance(down, WorkerDown) and not down.gone
    assert down.reason.startswith(f"{URL}/prompt: nothing answers") and "Connection refused" in down.reason
    r.worker.send(SubmitPrompt("job1", "p1", {}))  # the dispatcher has not heard yet
    failed = r.next()
    assert isinstance(failed, SystemFailed) and not failed.charged and "w0 did not take the prompt" in failed.reason
    comfy.up = True
    assert r.next() == WorkerUp("w0", device="cuda:0 Fake GPU", comfyui="0.3.76")  # down is said once


def test_a_closed_websocket_reconnects_and_settles_what_finished_meanwhile(comfy: FakeComfy, run: Callable[..., Run]) -> None:
    r = run()
    r.until(WorkerUp)
    r.submit("job1", "p1")
    comfy.finish("p1")  # its events were sent while the socket was down
    comfy.sockets[-1].frames.put(None)
    assert r.next() == PromptCompleted("w0", "p1")  # found in /history on reconnect, before "up"
    assert r.next() == WorkerUp("w0", device="cuda:0 Fake GPU", comfyui="0.3.76")  # a blip: no down
    assert len(comfy.sockets) == 2 and comfy.sockets[0].closed


def test_a_closed_websocket_of_a_server_that_died_is_down(comfy: FakeComfy, run: Callable[..., Run]) -> None:
    r = run()
    r.until(WorkerUp)
    r.submit("job1", "p1")
    comfy.up = False
    comfy.sockets[-1].frames.put(None)
    down = r.next()
    assert isinstance(down, WorkerDown) and "the websocket closed" in down.reason and not down.gone
    comfy.up = True
    assert isinstance(r.next(), WorkerUp)
    comfy.finish("p1")  # a restarted server knows nothing of it: its flight was dropped when it went down
    comfy.send("executing", node=None, prompt_id="p1")
    r.settle()  # nothing about p1 came before the marker's answer


def test_a_submit_sent_before_a_down_is_not_posted_to_the_restarted_server(comfy: FakeComfy) -> None:
    r = Run(comfy)
    r.worker.send(SubmitPrompt("job1", "p1", {}))  # queued for the command thread, epoch 0
    comfy.up = False
    r.worker._threads[1].start()  # the event thread alone: it reports down (epoch 1)
    assert isinstance(r.next(), WorkerDown)
    comfy.up = True
    r.worker._threads[0].start()
    r.worker.send(RecoverPrompt("job2", "unknown"))  # a marker after the stale submit
    assert isinstance(r.until(SystemFailed), SystemFailed)
    assert comfy.posted == []
    r.worker.stop()
    r.worker.join(2.0)


def test_recovering_prompts_of_an_earlier_run(comfy: FakeComfy, run: Callable[..., Run]) -> None:
    comfy.files = {"old.png": b"PNG-old"}
    comfy.finish("done-before", outputs={"9": {"images": [{"filename": "old.png", "subfolder": "", "type": "output"}]}})
    comfy.running, comfy.pending = ["running"], ["waiting"]
    r = run()
    r.until(WorkerUp)
    r.worker.send(RecoverPrompt("a", "done-before"))
    r.worker.send(RecoverPrompt("b", "running"))
    r.worker.send(RecoverPrompt("c", "waiting"))
    r.worker.send(RecoverPrompt("d", "lost"))
    assert [r.next() for _ in range(4)] == [
        PromptCompleted("w0", "done-before"), PromptStarted("w0", "running"), PromptQueued("w0", "waiting"),
        SystemFailed("w0", "lost", "w0 no longer knows it (restarted since?)", charged=False),
    ]
    r.worker.send(CollectOutputs("a", "done-before"))
    assert r.next() == OutputsCollected("w0", "done-before", (
        OutputFile(path="outputs/a-9-0.png", sha256="0" * 64, bytes=7, node="9", source="old.png"),))
    # The adopted running prompt is followed like one of ours.
    comfy.finish("running")
    comfy.send("executing", node=None, prompt_id="running")
    assert r.next() == PromptCompleted("w0", "running")
    if comfy.jobs_api:  # one small request a prompt; never the whole queue with its workflows
        assert comfy.queue_reads == 0


def test_cancel_takes_a_waiting_prompt_back(comfy: FakeComfy, run: Callable[..., Run]) -> None:
    r = run()
    r.until(WorkerUp)
    r.submit("job1", "p1")
    r.submit("job2", "p2")
    comfy.start("p1")
    r.worker.send(CancelPrompt("p1"))  # it runs already: it finishes normally, nothing is said
    r.worker.send(CancelPrompt("p2"))
    assert r.next() == PromptCancelled("w0", "p2")
    assert comfy.deleted == [["p1"], ["p2"]] and comfy.pending == []


def test_interrupt_posts_it_and_the_history_says_interrupted(comfy: FakeComfy, run: Callable[..., Run]) -> None:
    r = run()
    r.until(WorkerUp)
    r.submit("job1", "p1")
    comfy.start("p1")
    r.worker.send(InterruptPrompt("p1"))
    wait_for(lambda: comfy.interrupts, "POST /interrupt")
    assert comfy.interrupts == [{"prompt_id": "p1"}]
    comfy.finish("p1", status="error", messages=[["execution_interrupted", {"prompt_id": "p1", "node_id": "3",
                                                                            "node_type": "KSampler"}]])
    comfy.send("execution_interrupted", prompt_id="p1")
    comfy.send("executing", node=None, prompt_id="p1")
    assert r.until(PromptInterrupted) == PromptInterrupted("w0", "p1")


def test_restart_restarts_the_server_and_reconnects(comfy: FakeComfy, run: Callable[..., Run]) -> None:
    restarts: list[bool] = []
    r = run(on_restart=lambda: restarts.append(True))
    r.until(WorkerUp)
    r.worker.send(RestartServer())
    assert r.next() == WorkerDown("w0", "reconnecting")
    assert isinstance(r.next(), WorkerUp)
    assert restarts == [True]


def test_a_worker_given_up_by_its_fleet_is_gone(comfy: FakeComfy, run: Callable[..., Run]) -> None:
    gone = threading.Event()
    r = run(is_gone=gone.is_set)
    r.until(WorkerUp)
    gone.set()
    comfy.up = False
    comfy.sockets[-1].frames.put(None)
    r.until(WorkerDown)
    assert r.next() == WorkerDown("w0", "it was given up (see its log)", gone=True)
    wait_for(lambda: not r.worker._threads[1].is_alive(), "the event thread to end")


def test_an_unexpected_failure_of_the_event_thread_gives_the_worker_up(comfy: FakeComfy, run: Callable[..., Run]) -> None:
    # A dead event thread used to hang the batch for ever (seen with a websockets deprecation
    # warning turned into an error): the worker is given up instead, its jobs go elsewhere.
    def broken(url: str, *, open_timeout: float, proxy: object) -> object:
        raise RuntimeError("a bug in a library")

    r = Run(comfy)
    r.worker = HttpWorker("w0", URL, "GPU 0", client_id="c", emit=r.events.put, sink=r.sink,
                          transport=httpx.MockTransport(comfy.handle), ws_connect=broken, retry_s=0.005)  # type: ignore[arg-type]
    r.worker.start()
    try:
        down = r.until(WorkerDown)
        assert down.gone and "event thread failed: RuntimeError: a bug in a library" in down.reason
    finally:
        r.worker.stop()
        r.worker.join(2.0)


def test_not_ready_is_down_whatever_answers_on_the_port(comfy: FakeComfy, run: Callable[..., Run]) -> None:
    ready = threading.Event()
    r = run(is_ready=ready.is_set)
    assert r.next() == WorkerDown("w0", "w0 is not running (starting or restarting)")
    ready.set()
    assert isinstance(r.next(), WorkerUp)


@pytest.mark.parametrize("message", [
    WorkerUp("w0", device="cuda:0", comfyui="0.3.76"), WorkerDown("w0", "gone", gone=True),
    PromptActivity("w0", "p", node="3", step=(1.0, 2.0)),
    OutputsCollected("w0", "p", (OutputFile("outputs/x.png", "0" * 64, 1, "9", "x.png"),)),
    AppFailed("w0", "p", AppError("boom", node="4")), SystemFailed("w0", "p", "why", charged=False),
    SubmitPrompt("j", "p", {"1": {"class_type": "X", "inputs": {"a": [1, 2]}}}), RestartServer(), StopWorker(),
    StopSignal(2),
], ids=lambda m: type(m).__name__)
def test_messages_survive_pickling(message: object) -> None:
    # Ray carries events and commands between processes.
    assert pickle.loads(pickle.dumps(message)) == message


def test_app_error_keeps_what_comfyui_said() -> None:
    top_level = AppError.from_details(summarize_400({"error": {"type": "invalid_prompt", "message": "Cannot execute",
                                                               "details": "no outputs"}}))
    assert top_level.reason() == {"error_type": "invalid_prompt", "message": "Cannot execute: no outputs"}
    silent = AppError.from_details({"node": "4", "class_type": "FakeSleep", "exception_type": "RuntimeError", "message": ""})
    assert reason_text({"kind": "application", **silent.reason()}) == "node 4 (FakeSleep): RuntimeError: application"
