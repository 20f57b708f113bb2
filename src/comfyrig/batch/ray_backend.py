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
import os
import queue
import shlex
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..config.settings import Settings
from ..errors import ConfigError, LaunchError
from ..events import Reporter, discard
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

__all__ = ["ComfyActor", "RayBackend", "require_ray"]

RAY_HINT = "pip install 'comfyrig[ray]'"


def require_ray() -> Any:
    """The ray module, or ConfigError with the install command."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs Ray, which is not installed here.", hint=f"Install it: {RAY_HINT}") from None
    return ray


class ComfyActor:
    """Runs on a Ray worker node. Plain class; ``RayBackend`` wraps it with ``ray.remote``."""

    def __init__(self, name: str, comfyui_dir: str, python: str, comfyui_args: list[str], client_id: str,
                 restart_delay_s: float = 0.5) -> None:
        from ..config.settings import CliOverrides, resolve_settings
        from ..launch.compose import LaunchRequest, compose, gather_facts
        from ..launch.fleet import Fleet
        from ..launch.placement import THREAD_VARIABLES
        from ..launch.supervisor import SupervisorOptions
        from .worker import HttpWorker

        self.name = name
        # Ray sets OMP_NUM_THREADS (to the actor's num_cpus, 1 by default) in its
        # workers; ComfyUI must not inherit that: it gets the placement's budget.
        environ = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
        cvd = environ.get("CUDA_VISIBLE_DEVICES", "")
        # The GPU Ray assigned arrives as CUDA_VISIBLE_DEVICES, which the settings read as a
        # selection like any other; the node's NVML names it (or refuses a GPU it lacks).
        settings = resolve_settings(
            CliOverrides(comfyui_dir=Path(comfyui_dir), python=python, comfyui_args=shlex.join(comfyui_args), listen="127.0.0.1"),
            environ, Path(comfyui_dir),
        )
        # Several actors share a node: the kernel picks each port, and each takes its GPU's
        # share of the node's CPU placement, as 'launch --workers' would place them.
        request = LaunchRequest(
            workers=True, ports="ephemeral", share_node=bool(cvd), owner="ray",
            log_dir=Path(comfyui_dir) / "user" / "comfyrig-ray" / os.uname().nodename,
        )
        plan = compose(settings, gather_facts(settings), request)
        self.instance = plan.instances[0]
        self.label = f"{os.uname().nodename} GPU {cvd}" if cvd else f"{os.uname().nodename} CPU"
        self.fleet = Fleet(plan, environ, SupervisorOptions(restart="on-failure", restart_delay_s=restart_delay_s))
        self.fleet.start()
        self._events: queue.Queue[WorkerEvent] = queue.Queue()
        self._blobs: dict[str, bytes] = {}
        self._lock = threading.Lock()
        me = self.instance.name
        self.worker = HttpWorker(name, self.instance.url, self.label, client_id=client_id, emit=self._events.put,
                                 sink=self._keep, is_gone=lambda: self.fleet.is_gone(me),
                                 is_ready=lambda: self.fleet.is_ready(me), on_restart=lambda: self.fleet.restart(me))
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
        return {"name": self.name, "label": self.label, "url": self.instance.url, "pid": os.getpid()}

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
        self.fleet.stop()


class RayEndpoint:
    """The driver's side of one actor: forwards commands, relays events, writes outputs."""

    def __init__(self, ray: Any, actor: Any, name: str, url: str, label: str, emit: Emit,
                 sink: OutputSink, *, gone_after_s: float = 60.0) -> None:
        self.name, self.url, self.label = name, url, label
        self._ray = ray
        self.actor = actor
        self._emit = emit
        self._sink = sink
        self._gone_after = gone_after_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._relay, name=f"ray-{name}", daemon=True)

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
        failing_since: float | None = None
        while not self._stop.is_set():
            try:
                batch = self._ray.get(self.actor.poll.remote(0.5), timeout=30)
            except Exception as exc:  # noqa: BLE001 - RayActorError, ActorDiedError, GetTimeoutError...
                now = time.monotonic()
                if failing_since is None:
                    failing_since = now
                    self._emit(WorkerDown(self.name, f"Ray actor failed: {exc.__class__.__name__}"))
                elif now - failing_since > self._gone_after:
                    self._emit(WorkerDown(self.name, f"Ray actor did not come back: {exc.__class__.__name__}", gone=True))
                    return
                self._stop.wait(0.5)
                continue
            failing_since = None
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
    --address HEAD:6379`` on each worker node); ``--ray ADDRESS`` names it. One actor per GPU."""

    kind = "ray"

    def __init__(self, address: str | None, settings: Settings, *, actors: int | None = None, gpus_per_actor: float = 1.0,
                 max_restarts: int = 3) -> None:
        self.ray = require_ray()
        self.address = address
        self.settings = settings
        self.count = actors
        self.gpus_per_actor = gpus_per_actor
        self.max_restarts = max_restarts
        self.actors: list[Any] = []
        self.info: list[dict[str, Any]] = []
        if settings.comfyui_dir.value is None:
            raise ConfigError("--ray needs --comfyui-dir (or COMFYUI_DIR): the ComfyUI folder, the same path on every node.")

    def members(self) -> list[tuple[str, str, str]]:
        if self.info:
            return [(i["name"], i["url"], i["label"]) for i in self.info]
        return [(f"ray-{n}", "(on a Ray node)", "1 GPU") for n in range(self.count or 0)]

    def start(self, client_id: str, reporter: Reporter[BatchEvent] = discard) -> None:
        ray = self.ray
        if not ray.is_initialized():
            try:
                ray.init(address=self.address if self.address else "auto", log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise LaunchError(
                    f"Cannot join the Ray cluster at {self.address or 'auto'}: {exc}",
                    hint="Start it first: 'ray start --head' on the head node, 'ray start --address HEAD:6379' on the others.",
                ) from exc
        count = self.count or int(ray.cluster_resources().get("GPU", 0) // self.gpus_per_actor)
        if count < 1:
            raise LaunchError("The Ray cluster has no GPU for a ComfyUI actor (ray.cluster_resources() lists none).")
        self.count = count
        remote = ray.remote(num_gpus=self.gpus_per_actor, max_restarts=self.max_restarts, max_concurrency=4)(ComfyActor)
        reporter(ActorsStarting(count))
        settings = self.settings
        args = [*settings.comfyui_args.value, *settings.extra_args]
        self.actors = [
            remote.remote(f"ray-{n}", str(settings.comfyui_dir.value), str(settings.python.value), args, client_id)
            for n in range(count)
        ]
        try:
            self.info = ray.get([a.describe.remote() for a in self.actors], timeout=300)
        except Exception as exc:
            raise LaunchError(f"A Ray actor could not start ComfyUI: {exc}") from exc

    def endpoints(self, emit: Emit, sink: OutputSink) -> list[Endpoint]:
        return [RayEndpoint(self.ray, actor, i["name"], f"ray://{i['label']}/{i['url']}", i["label"], emit, sink)
                for actor, i in zip(self.actors, self.info, strict=True)]

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
        for actor in self.actors:
            with contextlib.suppress(Exception):  # already dead
                ray.get(actor.shutdown.remote(), timeout=60)
            with contextlib.suppress(Exception):  # killed with it
                ray.kill(actor, no_restart=True)
