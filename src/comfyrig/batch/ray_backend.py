"""Ray: one actor per GPU of the cluster, each running and supervising its own ComfyUI.

The actor asks for ``num_gpus=1``; Ray sets CUDA_VISIBLE_DEVICES for it, and
the actor starts ComfyUI with comfyrig's own planner and Supervisor on its
node (restart policy on-failure), listening on 127.0.0.1 only. Inside, the
same HttpWorker as for a local fleet talks to that ComfyUI; its events go
back to the driver through the actor's ``poll`` method. Output files are
spooled to the node's local disk as they come from ComfyUI's /view, and the
driver pulls them in chunks (``read``; memory bounded on both sides, whatever
the size of a video) and checks each against the sha256 the actor computed.
The driver keeps the journal and writes every output file.
An actor that dies (its node lost, ``ray.kill``) makes the driver-side
endpoint report the worker down, so its jobs are requeued elsewhere; Ray
restarts the actor (``max_restarts``), which then comes back up.

Ray is an optional extra: ``pip install 'comfyrig[ray]'``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ..config.settings import Settings
from ..errors import ConfigError, LaunchError
from ..events import Reporter, discard
from ..launch.ray_worker import RAY_HINT, ComfyWorker, WorkerPlace, cluster_gpus, connect, node_python, require_ray
from ..launch.supervisor import SupervisorOptions
from .events import ActorsStarting, BatchEvent
from .journal import OutputFile
from .protocol import (
    DiscardingSink,
    Emit,
    Endpoint,
    OutputsCollected,
    OutputSink,
    SystemFailed,
    WorkerCommand,
    WorkerDown,
    WorkerEvent,
)

# require_ray and RAY_HINT live in launch/ray_worker.py (shared by every Ray path); kept importable here.
__all__ = ["RAY_HINT", "ComfyActor", "RayBackend", "require_ray"]

# One ``read`` call's bytes: large enough that a call's cost is small beside its transfer, small
# enough that neither side ever holds much of a large output.
CHUNK_BYTES = 8 << 20


def spool_folder(root: Path | None = None) -> Path:
    """This actor's spool, ``<tmp>/comfyrig-ray-outputs-UID/PID``; the spools of actors that are
    gone (killed as lost, restarted by Ray, ended with their driver: none of them ran shutdown)
    are removed first, so unfetched outputs never pile up on a node."""
    import stat

    from ..host.processes import pid_alive

    base = (root or Path(tempfile.gettempdir())) / f"comfyrig-ray-outputs-{os.getuid()}"
    base.mkdir(mode=0o700, exist_ok=True)
    info = os.lstat(base)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        # Planted by someone else in a shared /tmp (a link, another owner, open to others): not ours.
        return Path(tempfile.mkdtemp(prefix="comfyrig-ray-outputs-", dir=root))
    for old in base.iterdir():
        if old.name.isdigit() and int(old.name) != os.getpid() and not pid_alive(int(old.name)):
            shutil.rmtree(old, ignore_errors=True)
    mine = base / str(os.getpid())
    shutil.rmtree(mine, ignore_errors=True)  # a pid reused since
    mine.mkdir(mode=0o700)
    return mine


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
        # Outputs wait here, on the node's local disk, until the driver has pulled them.
        self._spool = spool_folder()
        self._spooled: dict[str, Path] = {}
        self._lock = threading.Lock()
        self.worker = HttpWorker(name, self.instance.url, self.label, client_id=client_id, emit=self._events.put,
                                 sink=self._keep, is_gone=self.is_gone, is_ready=self.is_ready, on_restart=self.restart)
        self.worker.start()

    def _keep(self, job: str, node: str, n: int, source: str, chunks: bytes | Iterable[bytes]) -> OutputFile:
        """Spool one output as it streams from ComfyUI; its placeholder names it by key."""
        from .worker import write_stream

        key = f"{job}|{node}|{n}"
        path = self._spool / f"{len(self._spooled)}-{threading.get_ident()}-{time.monotonic_ns()}"
        sha256, size = write_stream(path, chunks)
        with self._lock:
            old = self._spooled.pop(key, None)
            self._spooled[key] = path
        if old is not None:
            old.unlink(missing_ok=True)  # the same output fetched again (a retried collection)
        return OutputFile(path=key, sha256=sha256, bytes=size, node=node, source=source)

    # -- called by the driver ------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "label": self.label, **self.place()}

    def send(self, command: WorkerCommand) -> None:
        self.worker.send(command)

    def poll(self, timeout_s: float) -> list[WorkerEvent]:
        """Events since the last call (waits up to ``timeout_s`` for the first); the files of an
        OutputsCollected are placeholders whose ``path`` is the key to ``read`` them by."""
        out: list[WorkerEvent] = []
        try:
            out.append(self._events.get(timeout=timeout_s))
        except queue.Empty:
            return out
        while True:
            try:
                out.append(self._events.get_nowait())
            except queue.Empty:
                return out

    def read(self, key: str, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes of a spooled output from ``offset`` (b"" at its end). Raises
        KeyError for an output this actor does not hold (released, or a restarted actor)."""
        with self._lock:
            path = self._spooled[key]
        with open(path, "rb") as handle:
            handle.seek(offset)
            return handle.read(min(size, CHUNK_BYTES))

    def release(self, keys: list[str]) -> None:
        """The driver has written these outputs: their spooled copies go."""
        with self._lock:
            paths = [self._spooled.pop(k) for k in keys if k in self._spooled]
        for path in paths:
            path.unlink(missing_ok=True)

    def object_info(self, timeout_s: float) -> dict[str, Any]:
        from .backends import wait_object_info

        me = self.instance.name
        return wait_object_info([self.instance.url], timeout_s, alive=lambda: not self.fleet.is_gone(me),
                                what="ComfyUI on this Ray node")

    def shutdown(self) -> None:
        self.worker.stop()
        super().shutdown()
        shutil.rmtree(self._spool, ignore_errors=True)


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
            for event in batch:
                self._emit(self._store(event))

    def _store(self, event: WorkerEvent) -> WorkerEvent:
        """An OutputsCollected from the actor names placeholders: pull each file in chunks, write
        it here through the driver's sink, check it against the actor's sha256, release the
        actor's copy, and pass on the files as written. A file that cannot be pulled (the actor
        died mid-transfer) or arrives different makes it a SystemFailed, as a failed download
        from a local worker: the job runs again, and none of its files stays."""
        if not isinstance(event, OutputsCollected):
            return event
        files: list[OutputFile] = []
        try:
            for placeholder in event.files:
                job, node, n = placeholder.path.split("|")
                written = self._sink(job, node, int(n), placeholder.source, self._pull(placeholder.path, placeholder.bytes))
                files.append(written)
                if (written.sha256, written.bytes) != (placeholder.sha256, placeholder.bytes):
                    raise OSError(f"it arrived as {written.bytes} bytes (sha256 {written.sha256[:12]}), the actor "
                                  f"sent {placeholder.bytes} (sha256 {placeholder.sha256[:12]})")
        except Exception as exc:  # noqa: BLE001 - RayActorError, GetTimeoutError, OSError...
            if isinstance(self._sink, DiscardingSink):
                self._sink.discard(files)
            why = f"fetching the outputs from the Ray actor {self.name} failed: {exc.__class__.__name__}: {exc}"
            return SystemFailed(self.name, event.prompt_id, why, charged=True)
        finally:
            with contextlib.suppress(Exception):  # an actor gone meanwhile: the next actor on its node sweeps its spool
                self.actor.release.remote([f.path for f in event.files])
        return dataclasses.replace(event, files=tuple(files))

    def _pull(self, key: str, size: int) -> Iterator[bytes]:
        offset = 0
        while offset < size:
            chunk: bytes = self._ray.get(self.actor.read.remote(key, offset, CHUNK_BYTES), timeout=120)
            if not chunk:
                raise OSError(f"the output ended after {offset} of {size} bytes")
            offset += len(chunk)
            yield chunk


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
