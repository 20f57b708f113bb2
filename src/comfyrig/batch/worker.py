"""One ComfyUI server as seen by the dispatcher: commands in, events out, over HTTP and /ws.

Two threads per worker. The *command* thread submits prompts, interrupts,
takes prompts back from the queue and downloads outputs. The *event* thread
owns the connection: it probes the server, keeps the websocket open, turns
ComfyUI's events into ``WorkerEvent``s, and when a prompt ends reads
``/history/{prompt_id}`` to decide: success, application error or interrupt.
A prompt is registered *before* it is posted, so events of a prompt that
finishes before the POST returns are not lost. When nothing was heard about
a prompt for ``poll_s`` seconds the history is read anyway (a missed event,
or a prompt adopted from an earlier run).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ..comfy.client import ComfyClient, Job, http_client
from ..comfy.history import classify_history, output_refs, summarize_400
from ..comfy.websocket import ComfyEvents, WsConnect, open_websocket
from ..errors import ComfyAPIError, ComfyHTTPError
from .journal import OutputFile
from .protocol import (
    AppError,
    AppFailed,
    CancelPrompt,
    CollectOutputs,
    DiscardingSink,
    Emit,
    InterruptPrompt,
    OutputsCollected,
    OutputSink,
    PromptActivity,
    PromptCancelled,
    PromptCompleted,
    PromptInterrupted,
    PromptQueued,
    PromptStarted,
    RecoverPrompt,
    RestartServer,
    StopWorker,
    SubmitPrompt,
    SystemFailed,
    WorkerCommand,
    WorkerDown,
    WorkerUp,
)

__all__ = ["HttpWorker", "LocalSink", "write_stream"]


def write_stream(path: Path, data: bytes | Iterable[bytes]) -> tuple[str, int]:
    """Write ``data`` to ``path`` as it comes (memory stays bounded whatever its size); its
    sha256 and size. A stream that breaks, or a full disk, leaves no file behind."""
    digest, size = hashlib.sha256(), 0
    try:
        with open(path, "wb") as handle:
            for chunk in (data,) if isinstance(data, bytes) else data:
                handle.write(chunk)
                digest.update(chunk)
                size += len(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return digest.hexdigest(), size


class LocalSink:
    """Writes outputs as ``outputs/<job>-<node>-<n><ext>`` under the output folder,
    atomically: a hidden ``.part`` file in the same folder, then a rename."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.folder = out_dir / "outputs"
        self.folder.mkdir(parents=True, exist_ok=True)

    def __call__(self, job: str, node: str, n: int, source: str, data: bytes | Iterable[bytes]) -> OutputFile:
        ext = os.path.splitext(source)[1] or ".bin"
        safe_node = "".join(c if c.isalnum() or c in "-_" else "_" for c in node)
        name = f"{job}-{safe_node}-{n}{ext}"
        target = self.folder / name
        tmp = self.folder / f".{name}.{os.getpid()}.{threading.get_ident()}.part"
        sha256, size = write_stream(tmp, data)  # a broken download or a full disk leaves no .part behind
        try:
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return OutputFile(path=str(target.relative_to(self.out_dir)), sha256=sha256, bytes=size, node=node, source=source)

    def discard(self, files: Sequence[OutputFile]) -> None:
        for file in files:
            (self.out_dir / file.path).unlink(missing_ok=True)

    def clean_partials(self) -> int:
        """Remove ``.part`` files a killed run left behind; returns how many."""
        n = 0
        for stray in self.folder.glob(".*.part"):
            stray.unlink(missing_ok=True)
            n += 1
        return n


@dataclass
class _Flight:
    job: str
    last_heard: float
    ended: bool = False
    # The server has it: its POST returned, or an earlier run's prompt is being recovered.
    # Until then a reconnect must not call it lost; the command thread is still posting it.
    posted: bool = True


@dataclass
class _Shared:
    lock: threading.Lock = field(default_factory=threading.Lock)
    flights: dict[str, _Flight] = field(default_factory=dict)
    results: dict[str, Mapping[str, Any]] = field(default_factory=dict)  # history entries of successes


class HttpWorker:
    """A ComfyUI server at ``url``. ``emit`` receives every WorkerEvent (thread-safe queue put);
    ``sink`` stores downloaded outputs; ``is_gone()`` tells when the server will never come back
    (a local fleet that gave up on it); ``is_ready()`` whether the process we started is the
    one answering (its supervisor saw it become ready); ``on_restart`` kills it for a restart.

    The network is two seams: ``transport`` replaces httpx's (tests pass an
    ``httpx.MockTransport``), ``ws_connect`` opens the websocket (see ``comfy.websocket``).
    ``poll_s``: seconds without news of a prompt before its history is read anyway;
    ``retry_s``: seconds between tries to reach a server that is down."""

    def __init__(
        self,
        name: str,
        url: str,
        label: str,
        *,
        client_id: str,
        emit: Emit,
        sink: OutputSink,
        is_gone: Callable[[], bool] = lambda: False,
        is_ready: Callable[[], bool] = lambda: True,
        on_restart: Callable[[], None] | None = None,
        poll_s: float = 5.0,
        retry_s: float = 0.25,
        http_timeout_s: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        ws_connect: WsConnect = open_websocket,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name, self.url, self.label = name, url.rstrip("/"), label
        self.client_id = client_id
        self._emit = emit
        self._sink = sink
        self._is_gone = is_gone
        self._is_ready = is_ready
        self._on_restart = on_restart
        self._poll_s = poll_s
        self._retry_s = retry_s
        self._timeout = http_timeout_s
        self._transport = transport
        self._ws_connect = ws_connect
        self._clock = clock
        self._inbox: queue.Queue[tuple[int, WorkerCommand]] = queue.Queue()
        self._epoch = 0  # +1 each time the server is reported down
        self._stop = threading.Event()
        self._reconnect = threading.Event()
        self._shared = _Shared()
        self._threads = [
            threading.Thread(target=self._commands, name=f"batch-{name}-commands", daemon=True),
            threading.Thread(target=self._events, name=f"batch-{name}-events", daemon=True),
        ]

    def _client(self, timeout: float | None = None) -> ComfyClient:
        http = http_client(self.url, timeout_s=timeout or self._timeout, transport=self._transport)
        return ComfyClient(self.url, http=http)

    # -- Endpoint ---------------------------------------------------------------------------------
    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def send(self, command: WorkerCommand) -> None:
        self._inbox.put((self._epoch, command))

    def stop(self) -> None:
        self._stop.set()
        self._inbox.put((self._epoch, StopWorker()))

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0.0))

    # -- the command thread -------------------------------------------------------------------------
    def _commands(self) -> None:
        with self._client() as client:
            while not self._stop.is_set():
                epoch, command = self._inbox.get()
                if isinstance(command, StopWorker):
                    return
                if isinstance(command, SubmitPrompt) and epoch != self._epoch:
                    # Sent before the server was reported down: the dispatcher has requeued
                    # that job already, so posting it to the restarted server would run it twice.
                    continue
                try:
                    self._command(client, command)
                except Exception as exc:  # noqa: BLE001 - a thread must report, never die silently
                    prompt_id = _prompt_of(command)
                    if prompt_id is not None:
                        self._forget(prompt_id)
                        what = type(command).__name__
                        self._emit(SystemFailed(self.name, prompt_id, f"{what} failed: {exc!r}", charged=True))

    def _command(self, client: ComfyClient, command: WorkerCommand) -> None:
        match command:
            case SubmitPrompt(job=job, prompt_id=pid, prompt=prompt):
                self._submit(client, job, pid, prompt)
            case InterruptPrompt(prompt_id=pid):
                with contextlib.suppress(ComfyAPIError):  # gone: the event thread reports the server down
                    client.interrupt(pid)
            case CancelPrompt(prompt_id=pid):
                self._cancel(client, pid)
            case RecoverPrompt(job=job, prompt_id=pid):
                with self._shared.lock:
                    self._shared.flights[pid] = _Flight(job, self._clock())
                self._recover(client, pid)
            case CollectOutputs(job=job, prompt_id=pid):
                self._collect(client, job, pid)
            case RestartServer():
                if self._on_restart is not None:
                    self._on_restart()
                self._reconnect.set()
            case StopWorker():
                pass  # handled by the loop

    def _submit(self, client: ComfyClient, job: str, prompt_id: str, prompt: Mapping[str, Any]) -> None:
        # Registered before the POST: a prompt that ends before the answer arrives is not missed.
        flight = _Flight(job, self._clock(), posted=False)
        with self._shared.lock:
            self._shared.flights[prompt_id] = flight
        try:
            client.submit(prompt, prompt_id=prompt_id, client_id=self.client_id)
            with self._shared.lock:
                flight.posted = True
        except ComfyHTTPError as exc:
            self._forget(prompt_id)
            if exc.status == 400:
                self._emit(AppFailed(self.name, prompt_id, AppError.from_details(summarize_400(exc.body))))
            else:
                why = f"{self.name} answered POST /prompt with HTTP {exc.status}"
                self._emit(SystemFailed(self.name, prompt_id, why, charged=True))
        except ComfyAPIError as exc:
            self._forget(prompt_id)
            # No answer (or not ComfyUI's): the server is going away; not the job's fault.
            why = f"{self.name} did not take the prompt: {exc.message}"
            self._emit(SystemFailed(self.name, prompt_id, why, charged=False))

    def _forget(self, prompt_id: str) -> None:
        with self._shared.lock:
            self._shared.flights.pop(prompt_id, None)
            self._shared.results.pop(prompt_id, None)

    def _cancel(self, client: ComfyClient, prompt_id: str) -> None:
        try:
            client.delete_queued([prompt_id])
            job = client.job(prompt_id)
        except ComfyAPIError:
            return  # the event thread will notice the server going away
        if job.state != "unknown":
            return  # it started or finished meanwhile: the event thread reports how it ends
        self._forget(prompt_id)
        self._emit(PromptCancelled(self.name, prompt_id))

    def _recover(self, client: ComfyClient, prompt_id: str) -> None:
        """An earlier run submitted ``prompt_id`` here: finished, still queued, or lost?"""
        try:
            job = client.job(prompt_id)
        except ComfyAPIError as exc:
            self._forget(prompt_id)
            self._emit(SystemFailed(self.name, prompt_id, f"recovery on {self.name} failed: {exc.message}", charged=False))
            return
        match job:
            case Job(state="running"):
                self._emit(PromptStarted(self.name, prompt_id))
            case Job(state="pending"):
                self._emit(PromptQueued(self.name, prompt_id))
            case Job(state="finished", entry=entry) if entry is not None:
                self._finish(prompt_id, entry)
            case _:
                self._forget(prompt_id)
                why = f"{self.name} no longer knows it (restarted since?)"
                self._emit(SystemFailed(self.name, prompt_id, why, charged=False))

    def _collect(self, client: ComfyClient, job: str, prompt_id: str) -> None:
        with self._shared.lock:
            entry = self._shared.results.pop(prompt_id, None)
        files: list[OutputFile] = []
        try:
            if entry is None:
                entry = client.job(prompt_id).entry
                if entry is None:
                    raise ComfyAPIError(f"{self.name} lost the history of prompt {prompt_id}")
            counts: dict[str, int] = {}
            for node, ref in output_refs(entry):
                n = counts.get(node, 0)
                counts[node] = n + 1
                # Streamed from the socket to the file: memory stays bounded whatever the output's size.
                with client.view_stream(str(ref["filename"]), str(ref.get("subfolder") or ""),
                                        str(ref.get("type") or "output")) as chunks:
                    files.append(self._sink(job, node, n, str(ref["filename"]), chunks))
        except (ComfyAPIError, OSError) as exc:
            if isinstance(self._sink, DiscardingSink):
                self._sink.discard(files)  # the job is not done: none of its files may stay unlisted
            message = exc.message if isinstance(exc, ComfyAPIError) else f"writing an output failed: {exc}"
            why = f"downloading the outputs from {self.name} failed: {message}"
            self._emit(SystemFailed(self.name, prompt_id, why, charged=True))
            return
        self._emit(OutputsCollected(self.name, prompt_id, tuple(files)))

    # -- the event thread ---------------------------------------------------------------------------
    def _events(self) -> None:
        try:
            self._follow()
        except Exception as exc:  # noqa: BLE001 - a thread must report, never die silently
            # Without this thread nothing about this worker would ever arrive again, and the
            # batch would wait for its jobs for ever: give it up, its jobs go elsewhere.
            self._drop_flights()
            self._emit(WorkerDown(self.name, f"its event thread failed: {type(exc).__name__}: {exc}", gone=True))

    def _follow(self) -> None:
        down_reported = False
        with self._client(timeout=5.0) as client:
            while not self._stop.is_set():
                if self._is_gone():
                    self._emit(WorkerDown(self.name, "it was given up (see its log)", gone=True))
                    return
                try:
                    if not self._is_ready():
                        # Our own process is not up: whatever answers on its port is not ours.
                        raise ComfyAPIError(f"{self.name} is not running (starting or restarting)")
                    client.queue_remaining()
                    ws = ComfyEvents(self.url, self.client_id, connect=self._ws_connect)
                except ComfyAPIError as exc:
                    if not down_reported:
                        self._drop_flights()
                        self._emit(WorkerDown(self.name, exc.message))
                        down_reported = True
                    self._stop.wait(self._retry_s)
                    continue
                down_reported = False
                self._reconnect.clear()
                # Settled before the dispatcher hears "up" (and sends anything new), so what
                # finished while the socket was closed is reported before new work arrives.
                self._reconcile(client)
                self._emit(self._up(client))
                reason = self._listen(client, ws)
                ws.close()
                if self._stop.is_set():
                    return
                # The socket closed. A blip, or the server is gone? Ask it.
                try:
                    if self._reconnect.is_set():
                        raise ComfyAPIError(reason)
                    client.queue_remaining()
                except ComfyAPIError:
                    self._drop_flights()
                    self._emit(WorkerDown(self.name, reason))
                    down_reported = True

    def _up(self, client: ComfyClient) -> WorkerUp:
        try:
            stats = client.system_stats()
        except ComfyAPIError:
            return WorkerUp(self.name)
        devices = stats.get("devices")
        device = devices[0] if isinstance(devices, list) and devices and isinstance(devices[0], dict) else {}
        name, version = device.get("name"), stats["system"].get("comfyui_version")
        return WorkerUp(self.name, device=None if name is None else str(name),
                        comfyui=None if version is None else str(version))

    def _drop_flights(self) -> None:
        self._epoch += 1
        with self._shared.lock:
            self._shared.flights.clear()
            self._shared.results.clear()

    def _reconcile(self, client: ComfyClient) -> None:
        """After a reconnect: settle every prompt we still think is here."""
        with self._shared.lock:
            pending = [prompt_id for prompt_id, flight in self._shared.flights.items() if flight.posted]
        for prompt_id in pending:
            self._poll(client, prompt_id, lost_if_unknown=True)

    def _listen(self, client: ComfyClient, ws: ComfyEvents) -> str:
        next_poll = self._clock() + 1.0
        while not self._stop.is_set() and not self._reconnect.is_set():
            try:
                event = ws.next(0.2)
            except ComfyAPIError as exc:
                return exc.message
            now = self._clock()
            if event is not None:
                self._on_event(client, *event)
            if now >= next_poll:
                next_poll = now + 1.0
                self._poll_quiet(client, now)
        return "reconnecting"

    def _on_event(self, client: ComfyClient, kind: str, data: dict[str, Any]) -> None:
        prompt_id = data.get("prompt_id")
        if not isinstance(prompt_id, str):
            return
        with self._shared.lock:
            flight = self._shared.flights.get(prompt_id)
            if flight is None:
                return
            flight.last_heard = self._clock()
        match kind:
            case "execution_start":
                self._emit(PromptStarted(self.name, prompt_id))
            case "executing" if data.get("node") is None:
                self._poll(client, prompt_id, lost_if_unknown=False, wait_s=2.0)
            case "executing":
                self._emit(PromptActivity(self.name, prompt_id, node=str(data["node"])))
            case "progress":
                self._emit(PromptActivity(self.name, prompt_id, node=str(data.get("node")), step=_step(data)))
            case "executed" | "execution_cached":
                self._emit(PromptActivity(self.name, prompt_id))
            case "execution_success" | "execution_error" | "execution_interrupted":
                with self._shared.lock:
                    flight.ended = True

    def _poll_quiet(self, client: ComfyClient, now: float) -> None:
        with self._shared.lock:
            quiet = [p for p, f in self._shared.flights.items() if f.ended or now - f.last_heard >= self._poll_s]
        for prompt_id in quiet:
            with self._shared.lock:
                if prompt_id in self._shared.flights:
                    self._shared.flights[prompt_id].last_heard = now
            self._poll(client, prompt_id, lost_if_unknown=False)

    def _poll(self, client: ComfyClient, prompt_id: str, *, lost_if_unknown: bool, wait_s: float = 0.0) -> None:
        deadline = self._clock() + wait_s
        while True:
            try:
                job = client.job(prompt_id)
            except ComfyAPIError:
                return  # the listener finds out that the server is gone
            if job.entry is not None:
                self._finish(prompt_id, job.entry)
                return
            if job.state == "unknown" and lost_if_unknown:
                self._forget(prompt_id)
                why = f"{self.name} no longer knows it (restarted?)"
                self._emit(SystemFailed(self.name, prompt_id, why, charged=False))
                return
            if job.state != "unknown" and lost_if_unknown:
                return  # still queued or running: its events will come
            if self._clock() >= deadline:
                return
            time.sleep(0.02)  # history is written right after the last event; a brief retry

    def _finish(self, prompt_id: str, entry: Mapping[str, Any]) -> None:
        with self._shared.lock:
            if self._shared.flights.pop(prompt_id, None) is None:
                return  # reported already (event and poll raced)
            outcome, details = classify_history(entry)
            if outcome == "success":
                self._shared.results[prompt_id] = entry
        match outcome:
            case "success":
                self._emit(PromptCompleted(self.name, prompt_id))
            case "error":
                self._emit(AppFailed(self.name, prompt_id, AppError.from_details(details)))
            case "interrupted":
                self._emit(PromptInterrupted(self.name, prompt_id))
            case "unknown":
                self._emit(SystemFailed(self.name, prompt_id, str(details["message"]), charged=True))


def _prompt_of(command: WorkerCommand) -> str | None:
    match command:
        case SubmitPrompt(prompt_id=pid) | InterruptPrompt(prompt_id=pid) | CancelPrompt(prompt_id=pid) \
                | RecoverPrompt(prompt_id=pid) | CollectOutputs(prompt_id=pid):
            return pid
        case RestartServer() | StopWorker():
            return None


def _step(data: Mapping[str, Any]) -> tuple[float, float] | None:
    """A ``progress`` event's (value, max); None when they are not numbers."""
    value, top = data.get("value", 0), data.get("max", 0)
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (value, top))
    return (float(value), float(top)) if numbers else None
