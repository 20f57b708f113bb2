"""Ray: one actor per GPU of the cluster, each running and supervising its own ComfyUI.

The actor asks for ``num_gpus=1``; Ray sets CUDA_VISIBLE_DEVICES for it, and
the actor starts ComfyUI with comfyrig's own planner and Supervisor on its
node (restart policy on-failure), listening on 127.0.0.1 only. Inside, the
same HttpWorker as for a local fleet talks to that ComfyUI; its events and
the downloaded output bytes go back to the driver through the actor's
``poll`` method. The driver keeps the journal and writes every output file.
An actor that dies (its node lost, ``ray.kill``) makes the driver-side
endpoint report the worker down, so its jobs are requeued elsewhere; Ray
restarts the actor (``max_restarts``), which then comes back up.

Ray is an optional extra: ``pip install 'comfyrig[ray]'``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import queue
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from ..config.settings import Settings
from ..errors import ConfigError, LaunchError
from ..events import Reporter, discard
from ..launch.ray_worker import RAY_HINT, ComfyWorker, WorkerPlace, cluster_gpus, connect, node_python, require_ray
from ..launch.supervisor import SupervisorOptions
from .events import ActorsStarting, BatchEvent
from .journal import OutputFile
from .protocol import (
    Emit,
    Endpoint,
    OutputsCollected,
    OutputSink,
    WorkerCommand,
    WorkerDown,
    WorkerEvent,
)

# require_ray and RAY_HINT live in launch/ray_worker.py (shared by every Ray path); kept importable here.
__all__ = ["RAY_HINT", "ComfyActor", "RayBackend", "require_ray"]

class ComfyActor(ComfyWorker):
    """Runs on a Ray worker node: ``ComfyWorker`` (one supervised ComfyUI on the actor's GPU)
    plus the batch's HttpWorker talking to it. Plain class; ``RayBackend`` wraps it with ``ray.remote``."""

    def __init__(self, name: str, comfyui_dir: str, python: str, comfyui_args: list[str], client_id: str,
                 supervisor: SupervisorOptions | None = None) -> None:
        from .worker import HttpWorker

        super().__init__(comfyui_dir, python, comfyui_args, supervisor=supervisor)
        self.name = name
        where = WorkerPlace(**self.place())
        self.label = f"{where.hostname} GPU {where.gpu} (node {where.node_id[:8]})"
        self._events: queue.Queue[WorkerEvent] = queue.Queue()
        self._blobs: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self.worker = HttpWorker(name, self.instance.url, self.label, client_id=client_id, emit=self._events.put,
                                 sink=self._keep, is_gone=self.is_gone, is_ready=self.is_ready, on_restart=self.restart)
        self.worker.start()

    def _keep(self, job: str, node: str, n: int, source: str, chunks: bytes | Iterable[bytes]) -> OutputFile:
        import hashlib

        # The bytes travel to the driver through Ray's object store, so here they are held whole.
        data = chunks if isinstance(chunks, bytes) else b"".join(chunks)
        key = f"{job}|{node}|{n}"
        with self._lock:
            self._blobs[key] = data
        return OutputFile(path=key, sha256=hashlib.sha256(data).hexdigest(), bytes=len(data), node=node, source=source)

    # -- called by the driver ------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "label": self.label, **self.place()}

    def send(self, command: WorkerCommand) -> None:
        self.worker.send(command)

    def poll(self, timeout_s: float) -> list[tuple[WorkerEvent, list[bytes] | None]]:
        """Events since the last call (waits up to ``timeout_s`` for the first); an
        OutputsCollected comes with the bytes of its files (its files' paths are placeholders)."""
        out: list[tuple[WorkerEvent, list[bytes] | None]] = []
        try:
            event = self._events.get(timeout=timeout_s)
        except queue.Empty:
            return out
        while True:
            blobs = None
            if isinstance(event, OutputsCollected):
                with self._lock:
                    blobs = [self._blobs.pop(f.path) for f in event.files]
            out.append((event, blobs))
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                return out

    def object_info(self, timeout_s: float) -> dict[str, Any]:
        from .backends import wait_object_info

        me = self.instance.name
        return wait_object_info([self.instance.url], timeout_s, alive=lambda: not self.fleet.is_gone(me),
                                what="ComfyUI on this Ray node")

    def shutdown(self) -> None:
        self.worker.stop()
        super().shutdown()


def endpoint_url(info: Mapping[str, Any]) -> str:
    """The worker's URL as journals and reports carry it: its node (host, node id), its GPU
    there, and its ComfyUI's URL on that node (which changes when the actor restarts)."""
    return f"ray://{info['host']}/{info['node_id'][:12]}/gpu{info['gpu']}/{info['url']}"


class RayEndpoint:
    """The driver's side of one actor: forwards commands, relays events, writes outputs.

    After any failure of the actor it asks the actor where it runs again (a restarted actor
    has a new URL, maybe on another node), so ``url``, ``node_id`` and ``host`` are current.
    Gone (down longer than ``gone_after_s``) is not the end: the actor restarts when a node
    with a free GPU (re)joins, and then the worker comes up again."""

    def __init__(self, ray: Any, actor: Any, info: Mapping[str, Any], emit: Emit,
                 sink: OutputSink, *, gone_after_s: float = 60.0) -> None:
        self.name = str(info["name"])
        self._ray = ray
        self.actor = actor
        self._emit = emit
        self._sink = sink
        self._gone_after = gone_after_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._relay, name=f"ray-{self.name}", daemon=True)
        self.failing = False
        self._set_place(info)

    def _set_place(self, info: Mapping[str, Any]) -> None:
        self.url, self.label = endpoint_url(info), str(info["label"])
        self.node_id, self.host = str(info["node_id"]), str(info["host"])

    def start(self) -> None:
        self._thread.start()

    def send(self, command: WorkerCommand) -> None:
        with contextlib.suppress(Exception):  # a dead actor: the relay thread reports it
            self.actor.send.remote(command)

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _relay(self) -> None:
        ray = self._ray
        failing_since: float | None = None
        gone = False
        ref = None
        while not self._stop.is_set():
            try:
                # One call in flight: a restarting actor queues it, and it answers once back.
                ref = ref or self.actor.poll.remote(0.5)
                batch = ray.get(ref, timeout=5 if failing_since is not None else 30)
                ref = None
                if failing_since is not None:
                    self._set_place(ray.get(self.actor.describe.remote(), timeout=30))
            except Exception as exc:  # noqa: BLE001 - RayActorError, ActorDiedError, GetTimeoutError...
                if exc.__class__.__name__ != "GetTimeoutError":
                    ref = None
                now = time.monotonic()
                self.failing = True
                if failing_since is None:
                    failing_since = now
                    self._emit(WorkerDown(self.name, f"Ray actor failed: {exc.__class__.__name__}"))
                elif not gone and now - failing_since > self._gone_after:
                    gone = True
                    self._emit(WorkerDown(self.name, f"Ray actor did not come back: {exc.__class__.__name__}", gone=True))
                self._stop.wait(0.5)
                continue
            failing_since, gone, self.failing = None, False, False
            for event, blobs in batch:
                self._emit(self._store(event, blobs))

    def _store(self, event: WorkerEvent, blobs: list[bytes] | None) -> WorkerEvent:
        """An OutputsCollected from the actor names placeholders: write its bytes here, through
        the driver's sink, and pass on the files as written."""
        if not isinstance(event, OutputsCollected) or blobs is None:
            return event
        files = []
        for placeholder, data in zip(event.files, blobs, strict=True):
            job, node, n = placeholder.path.split("|")
            files.append(self._sink(job, node, int(n), placeholder.source, data))
        return dataclasses.replace(event, files=tuple(files))


class RayBackend:
    """``--ray auto`` joins the running cluster (``ray start --head`` on the head, ``ray start
    --address HEAD:6379`` on each worker node); ``--ray ADDRESS`` names it. One actor per GPU.

    Actors restart without limit (``max_restarts=-1``): one whose node was lost comes back when
    a node with a free GPU joins. At ``stop`` the actors that are down are killed first, so
    their pending restart cannot take a GPU the others free."""

    kind = "ray"

    def __init__(self, address: str | None, settings: Settings, *, actors: int | None = None, gpus_per_actor: float = 1.0,
                 max_restarts: int = -1, gone_after_s: float = 60.0, stop_wait_s: float = 20.0,
                 supervisor: SupervisorOptions | None = None) -> None:
        self.ray = require_ray()
        self.address = address
        self.settings = settings
        self.count = actors
        self.gpus_per_actor = gpus_per_actor
        self.max_restarts = max_restarts
        self.gone_after_s = gone_after_s
        self.stop_wait_s = stop_wait_s
        self.supervisor = supervisor  # each actor's ComfyUI: restart policy, ready timeout
        self.actors: list[Any] = []
        self.info: list[dict[str, Any]] = []
        self._endpoints: list[RayEndpoint] = []
        self._joined = False  # this backend called ray.init (so it leaves the cluster at stop)
        if settings.comfyui_dir.value is None:
            raise ConfigError("--ray needs --comfyui-dir (or COMFYUI_DIR): the ComfyUI folder, the same path on every node.")

    def _connect(self) -> None:
        if not self.ray.is_initialized():
            connect(self.ray, self.address, self.settings.environ)
            self._joined = True

    def members(self) -> list[tuple[str, str, str]]:
        """The workers: once started, each actor's place; before (a dry run), one per GPU of
        the cluster's live nodes, from its resources (joining the cluster, starting nothing)."""
        if self._endpoints:
            return [(e.name, e.url, e.label) for e in self._endpoints]
        if self.info:
            return [(i["name"], endpoint_url(i), i["label"]) for i in self.info]
        self._connect()
        try:
            nodes = cluster_gpus(self.ray)
        finally:
            self.leave()  # a dry run joined only to look
        rows: list[tuple[str, str, str]] = []
        for node in nodes:
            for g in range(int(node.gpus // self.gpus_per_actor)):
                rows.append((f"ray-{len(rows)}", f"ray://{node.host}/{node.node_id[:12]}/(GPU {g + 1} of {node.gpus})",
                             f"{node.hostname} (node {node.node_id[:8]})"))
        return rows[: self.count] if self.count else rows

    def start(self, client_id: str, reporter: Reporter[BatchEvent] = discard) -> None:
        ray = self.ray
        self._connect()
        count = self.count or int(ray.cluster_resources().get("GPU", 0) // self.gpus_per_actor)
        if count < 1:
            raise LaunchError("The Ray cluster has no GPU for a ComfyUI actor (ray.cluster_resources() lists none).")
        self.count = count
        remote = ray.remote(num_gpus=self.gpus_per_actor, max_restarts=self.max_restarts, max_concurrency=4)(ComfyActor)
        reporter(ActorsStarting(count))
        settings = self.settings
        args = [*settings.comfyui_args.value, *settings.extra_args]
        # Absolute paths: an actor's working folder is Ray's, not the command's.
        comfyui_dir = str(settings.comfyui_dir.value.absolute()) if settings.comfyui_dir.value else ""
        python = node_python(str(settings.python.value))
        self.actors = [remote.remote(f"ray-{n}", comfyui_dir, python, args, client_id, supervisor=self.supervisor)
                       for n in range(count)]
        try:
            self.info = ray.get([a.describe.remote() for a in self.actors], timeout=300)
        except Exception as exc:
            raise LaunchError(f"A Ray actor could not start ComfyUI: {exc}") from exc

    def endpoints(self, emit: Emit, sink: OutputSink) -> list[Endpoint]:
        self._endpoints = [RayEndpoint(self.ray, actor, i, emit, sink, gone_after_s=self.gone_after_s)
                           for actor, i in zip(self.actors, self.info, strict=True)]
        return list(self._endpoints)

    def object_info(self, timeout_s: float) -> dict[str, Any]:
        ray = self.ray
        refs = [a.object_info.remote(timeout_s) for a in self.actors]
        while refs:
            ready, refs = ray.wait(refs, num_returns=1, timeout=timeout_s + 30)
            if not ready:
                break
            try:
                info: dict[str, Any] = ray.get(ready[0])
                return info
            except Exception:  # noqa: BLE001, S112 - that actor failed; the next may answer
                continue
        raise LaunchError(f"No Ray actor's ComfyUI answered within {timeout_s:g} s.")

    def stop(self) -> None:
        ray = self.ray
        failing = {id(e.actor) for e in self._endpoints if e.failing}
        # First the actors that are down (a lost node's, waiting for a GPU to restart on): killed
        # before any GPU is freed, their restart never starts a ComfyUI for nothing.
        for actor in self.actors:
            if id(actor) in failing:
                with contextlib.suppress(Exception):
                    ray.kill(actor, no_restart=True)
        live = [a for a in self.actors if id(a) not in failing]
        refs: dict[Any, Any] = {}
        for actor in live:
            with contextlib.suppress(Exception):  # already dead
                refs[actor.shutdown.remote()] = actor
        done: list[Any] = []
        if refs:
            # All at once, bounded: one that lost its node just now does not stall the others.
            with contextlib.suppress(Exception):
                done, _ = ray.wait(list(refs), num_returns=len(refs), timeout=self.stop_wait_s)
        # An actor holds its GPU until it is killed: those that did not answer (lost meanwhile)
        # go first, so their restart finds no GPU freed by the others.
        answered = {id(refs[r]) for r in done}
        for actor in sorted(self.actors, key=lambda a: id(a) in answered):
            with contextlib.suppress(Exception):  # killed with it
                ray.kill(actor, no_restart=True)
        self.leave()

    def leave(self) -> None:
        """Disconnect from the cluster if this backend joined it: now, while the caller still
        routes Ray's prints (``--json`` keeps stdout for the JSON), not at interpreter exit."""
        if self._joined:
            self._joined = False
            with contextlib.suppress(Exception):
                self.ray.shutdown()
