"""``launch --workers --ray ADDRESS``: one Ray actor per GPU of the cluster, behind the gateway.

Each actor is a ``ComfyWorker`` (``launch/ray_worker.py``: one supervised ComfyUI
built by the one composition root); the gateway (``gateway/``) runs on the
machine where the command runs and reaches every worker by the URL its actor
reports. A worker on this machine listens on the loopback; a worker on another
node listens on that node's cluster address (what Ray calls its node IP), since
the gateway must reach it from here.

``RayFleet.step`` is one look at the cluster, never blocking on an actor: one
call in flight per actor, collected with ``ray.wait(timeout=0)``. Every ~2 s
(``RayFleet.run``, on a thread of its own) it:
- routes a worker once its ComfyUI is ready (``add_backend`` with its URL);
- takes a worker off the routing table when its actor fails (its node lost) or its
  ComfyUI gave up (``remove_backend``: the gateway re-submits its prompts elsewhere);
- routes it again, under a new name, when Ray restarted the actor (maybe on another
  node, always with a new URL);
- starts actors for GPUs the cluster gained (a node that joined).

Actors restart without limit (``max_restarts=-1``): one whose node was lost waits
for a free GPU and comes back when a node joins, so the number of actors never
drops; new ones start only when the cluster's GPUs outnumber them.

Ray is an optional extra: ``pip install 'comfyrig[ray]'``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from ..errors import LaunchError
from ..events import Reporter, discard
from ..gateway.backends import BackendSpec
from .ray_worker import RAY_SUPERVISOR, ComfyWorker, NodeGpus, WorkerPlace, _answers, cluster_gpus, connect, connect_error
from .supervisor import SupervisorOptions

__all__ = [
    "ClusterJoined", "GatewayWorker", "NodeJoined", "NodeLeft", "PlannedWorker", "RayFleet", "RayFleetEvent",
    "RayFleetOptions", "Router", "WatchTrouble", "WorkerFailed", "WorkerLost", "WorkerRouted", "WorkerTrouble",
    "WorkersStopping", "plan_workers",
]

LOOPBACK = "127.0.0.1"


class GatewayWorker(ComfyWorker):
    """A ``ComfyWorker`` that listens where the gateway can reach it: the loopback when its node
    is the gateway's machine (``local_ip``), else its node's cluster address. Decided inside the
    actor, since Ray may restart it on another node. Plain class; wrap it with ``ray.remote``."""

    def __init__(self, comfyui_dir: str, python: str, comfyui_args: list[str], *, local_ip: str,
                 supervisor: SupervisorOptions | None = None, log_dir: str | None = None) -> None:
        import ray

        ip: str = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
        super().__init__(comfyui_dir, python, comfyui_args, listen=listen_for(ip, local_ip), supervisor=supervisor,
                         log_dir=log_dir)

    def state(self) -> dict[str, Any]:
        """One answer per poll: where it runs, whether its ComfyUI is ready or gave up, and its
        supervisor's phase, last message, restarts and log (what a person needs to see why)."""
        view = self.fleet.snapshot().view(self.instance.name)
        return {"place": self.place(), "ready": self.is_ready(), "gone": self.is_gone(),
                "phase": view.phase if view else "starting", "message": view.message if view else "",
                "restarts": view.restarts if view else 0, "log": str(self.instance.log_file or "")}


def listen_for(node_ip: str, local_ip: str) -> str:
    """Where a worker on ``node_ip`` listens: the loopback on the gateway's machine, else the
    node's cluster address (reachable by every machine that reaches the node)."""
    return LOOPBACK if node_ip == local_ip else node_ip


# -- events (services report, the edge renders) ---------------------------------------------------
@dataclass(frozen=True)
class ClusterJoined:
    address: str
    nodes: tuple[NodeGpus, ...]
    workers: int  # actors started now, one per GPU


@dataclass(frozen=True)
class WorkerRouted:
    """A worker's ComfyUI is ready and behind the gateway (again, after a restart, under a new name)."""

    name: str
    place: WorkerPlace
    restarted: bool


@dataclass(frozen=True)
class WorkerLost:
    """Off the routing table: its prompts go elsewhere. Its actor restarts when a GPU is free."""

    name: str
    place: WorkerPlace
    reason: str


@dataclass(frozen=True)
class WorkerFailed:
    """An actor that could not start ComfyUI at all (its constructor raised): not retried."""

    worker: str
    reason: str


@dataclass(frozen=True)
class WorkerTrouble:
    """A worker's ComfyUI ended on its node: its supervisor restarts it (``gave_up`` False) or
    gave up (the restart policy or a bad flag). Said once per new failure, with its log's path
    on that node."""

    name: str
    place: WorkerPlace
    message: str
    restarts: int
    gave_up: bool
    log: str


@dataclass(frozen=True)
class NodeJoined:
    node: NodeGpus
    new_workers: int


@dataclass(frozen=True)
class NodeLeft:
    node: NodeGpus


@dataclass(frozen=True)
class WorkersStopping:
    workers: int


@dataclass(frozen=True)
class WatchTrouble:
    """One look at the cluster failed (the next one, ``poll_s`` later, tries again)."""

    reason: str


RayFleetEvent = (ClusterJoined | WorkerRouted | WorkerLost | WorkerFailed | WorkerTrouble | NodeJoined | NodeLeft
                 | WorkersStopping | WatchTrouble)


# -- planning (pure) ------------------------------------------------------------------------------
@dataclass(frozen=True)
class PlannedWorker:
    worker: str
    node: NodeGpus
    listen: str

    def to_json(self) -> dict[str, Any]:
        return {"worker": self.worker, "node_id": self.node.node_id, "host": self.node.host,
                "hostname": self.node.hostname, "listen": self.listen}


def plan_workers(nodes: Sequence[NodeGpus], local_ip: str, limit: int | None = None) -> list[PlannedWorker]:
    """One worker per GPU of each node, as a dry run shows it (Ray places the actors; this is
    where they would go on an idle cluster)."""
    each = [node for node in nodes for _ in range(node.gpus)]
    rows = [PlannedWorker(f"ray-{n}", node, listen_for(node.host, local_ip)) for n, node in enumerate(each)]
    return rows[:limit] if limit else rows


# -- the service ----------------------------------------------------------------------------------
class Router(Protocol):
    """The gateway, as the fleet sees it (``GatewayThread``)."""

    def add_backend(self, spec: BackendSpec) -> None: ...

    def remove_backend(self, name: str) -> None: ...


@dataclass(frozen=True)
class RayFleetOptions:
    address: str | None  # HEAD:PORT, or None/'auto' for the cluster on this machine
    comfyui_dir: str  # the same path on every node
    python: str
    comfyui_args: tuple[str, ...] = ()
    max_workers: int | None = None
    poll_s: float = 2.0
    stop_wait_s: float = 20.0  # seconds for the actors to stop their ComfyUI together
    supervisor: SupervisorOptions = RAY_SUPERVISOR  # each worker's restart policy and timeouts (launch's flags)
    log_dir: str | None = None  # the same path on every node; default: the checkout's user/comfyrig-ray


SlotState = Literal["starting", "routed", "waiting", "failing", "failed"]


@dataclass
class Slot:
    """One actor and what the fleet knows of it (changed by the watcher thread only)."""

    index: int
    actor: Any
    state: SlotState = "starting"
    place: WorkerPlace | None = None
    backend: str | None = None  # its name in the gateway while routed
    routed_times: int = 0
    ref: Any = None  # the one call in flight
    restarts_seen: int = 0
    trouble_said: tuple[Any, ...] | None = None  # the last failure said (incarnation, restarts, message)

    @property
    def name(self) -> str:
        return f"ray-{self.index}"


@dataclass
class RayFleet:
    """Actors on a Ray cluster behind a ``Router``. ``ray`` is the module (a fake in tests)."""

    ray: Any
    options: RayFleetOptions
    router: Router
    reporter: Reporter[RayFleetEvent] = discard
    environ: Mapping[str, str] = field(default_factory=dict)
    actor_class: type = GatewayWorker
    clock: Callable[[], float] = time.monotonic
    answers: Callable[[str], bool] = _answers  # whether HOST:PORT accepts a connection
    slots: list[Slot] = field(default_factory=list)
    local_ip: str = LOOPBACK
    _remote: Any = None
    _nodes: dict[str, NodeGpus] = field(default_factory=dict)
    _joined: bool = False
    _suspect: set[str] = field(default_factory=set)  # nodes where an actor failed and none answered since
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- start ------------------------------------------------------------------------------------
    def join(self) -> list[NodeGpus]:
        """Connect (unless this process already is) and list the GPUs. Raises LaunchError."""
        if not self.ray.is_initialized():
            address = self.options.address
            if address not in (None, "auto") and not self.answers(address):
                # ray.init retries an address where nothing listens for minutes; say it now.
                raise LaunchError(connect_error(address, ConnectionError("connection refused"), None, None))
            connect(self.ray, address, self.environ)
            self._joined = True
        self.local_ip = self.ray.util.get_node_ip_address()
        nodes = cluster_gpus(self.ray)
        if not nodes:
            self.leave()
            raise LaunchError(f"The Ray cluster at {self.options.address or 'auto'} has no node with a GPU: "
                              "start its nodes with GPUs ('ray start ... --num-gpus N' where Ray does not see "
                              "them itself) and run this again.")
        return nodes

    def start(self) -> None:
        """Join and start one actor per GPU; the watcher routes each once ready. Raises LaunchError."""
        nodes = self.join()
        self._remote = self.ray.remote(num_gpus=1, max_restarts=-1, max_concurrency=4)(self.actor_class)
        self._nodes = {n.node_id: n for n in nodes}
        count = sum(n.gpus for n in nodes)
        if self.options.max_workers:
            count = min(count, self.options.max_workers)
        self._grow(count)
        self.reporter(ClusterJoined(self.options.address or "auto", tuple(nodes), count))

    def _grow(self, count: int) -> None:
        opts = self.options
        for _ in range(count):
            actor = self._remote.remote(opts.comfyui_dir, opts.python, list(opts.comfyui_args), local_ip=self.local_ip,
                                        supervisor=opts.supervisor, log_dir=opts.log_dir)
            self.slots.append(Slot(len(self.slots), actor))

    # -- watch ------------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """The watcher: a step every ``poll_s`` until ``stop`` is set."""
        while not stop.is_set():
            try:
                self.step()
            except Exception as exc:  # noqa: BLE001 - the GCS or the gateway busy: said, then looked at again
                self.reporter(WatchTrouble(f"{exc.__class__.__name__}: {_first_line(str(exc))}"))
            stop.wait(self.options.poll_s)

    def step(self) -> None:
        """One look: collect the answers that came, act on them, ask again, and grow the fleet
        when the cluster has more GPUs than actors. Never waits on an actor."""
        with self._lock:
            self._collect()
            for slot in self.slots:
                if slot.ref is None and slot.state != "failed":
                    try:
                        slot.ref = slot.actor.state.remote()
                    except Exception as exc:  # noqa: BLE001 - an actor killed for good
                        self._failure(slot, exc)
            self._watch_nodes()

    def _collect(self) -> None:
        asked = {id(s.ref): s for s in self.slots if s.ref is not None}
        if not asked:
            return
        refs = [s.ref for s in asked.values()]
        done, _ = self.ray.wait(refs, num_returns=len(refs), timeout=0)
        for ref in done:
            slot = asked[id(ref)]
            slot.ref = None
            try:
                answer = self.ray.get(ref, timeout=0)
            except Exception as exc:  # noqa: BLE001 - RayActorError, ActorDiedError, ActorUnavailableError...
                self._failure(slot, exc)
                continue
            self._answer(slot, answer)

    def _answer(self, slot: Slot, answer: Mapping[str, Any]) -> None:
        place = WorkerPlace(**answer["place"])
        if slot.place is not None and (place.url, place.node_id, place.pid) != (slot.place.url, slot.place.node_id,
                                                                              slot.place.pid):
            # A new incarnation (Ray restarted the actor) that the failure did not announce.
            self._unroute(slot, "its Ray actor restarted")
        slot.place = place
        self._suspect.discard(place.node_id)  # an actor answers from it: alive after all
        self._trouble(slot, place, answer)
        if answer["gone"]:
            if slot.backend is not None:
                self._unroute(slot, "its ComfyUI gave up (restart limit reached)")
            slot.state = "waiting"
        elif answer["ready"] and slot.backend is None:
            name = slot.name if slot.routed_times == 0 else f"{slot.name}.{slot.routed_times}"
            # Routed only once the gateway took it (add_backend may time out: next look tries again).
            self.router.add_backend(BackendSpec(name, place.url.rstrip("/"), f"ray-{place.node_id[:12]}",
                                                node=f"{place.hostname} {place.host} {place.node_id[:12]}"))
            slot.backend, slot.state = name, "routed"
            slot.routed_times += 1
            self.reporter(WorkerRouted(name, place, slot.routed_times > 1))
        elif slot.backend is None:
            slot.state = "starting" if slot.routed_times == 0 else "waiting"

    def _trouble(self, slot: Slot, place: WorkerPlace, answer: Mapping[str, Any]) -> None:
        """Say once why a worker's ComfyUI ended (before, a bad flag on a node showed nothing
        while the worker never became routable)."""
        phase = answer.get("phase")
        if phase not in ("backoff", "exited", "failed"):
            return
        key = (place.pid, answer.get("restarts", 0), answer.get("message", ""), bool(answer["gone"]))
        if key == slot.trouble_said:
            return
        slot.trouble_said = key
        self.reporter(WorkerTrouble(slot.name, place, str(answer.get("message") or f"ComfyUI {phase}"),
                                    int(answer.get("restarts", 0)), bool(answer["gone"]), str(answer.get("log") or "")))

    def _failure(self, slot: Slot, exc: BaseException) -> None:
        text = str(exc)
        if slot.place is None and slot.routed_times == 0 and "creation task" in text:
            slot.state = "failed"  # its constructor raised: Ray does not restart that
            self.reporter(WorkerFailed(slot.name, _first_line(text)))
            return
        if slot.place is not None:
            self._suspect.add(slot.place.node_id)
        if slot.backend is not None:
            self._unroute(slot, f"its Ray actor failed ({exc.__class__.__name__}: its node lost, or the actor died)")
        slot.state = "failing"

    def _unroute(self, slot: Slot, reason: str) -> None:
        name, place = slot.backend, slot.place
        slot.backend = None
        if name is None or place is None:
            return
        self.router.remove_backend(name)
        self.reporter(WorkerLost(name, place, reason))

    def _watch_nodes(self) -> None:
        try:
            nodes = cluster_gpus(self.ray)
        except Exception:  # noqa: BLE001 - the GCS busy for a moment: look again next step
            return
        now = {n.node_id: n for n in nodes}
        for node_id, node in list(self._nodes.items()):
            if node_id not in now:
                del self._nodes[node_id]
                self.reporter(NodeLeft(node))
        # A node whose actors just failed may still be listed alive (Ray marks a lost node dead
        # only after missed heartbeats): its GPUs do not count, or a node joining meanwhile would
        # get new actors while the lost ones wait for its GPUs, forever.
        self._suspect &= set(now)
        want = sum(n.gpus for n in nodes if n.node_id not in self._suspect)
        if self.options.max_workers:
            want = min(want, self.options.max_workers)
        new = [n for n in nodes if n.node_id not in self._nodes]
        # Actors of a lost node restart on the GPUs of a node that joins: only GPUs beyond every
        # actor (failed ones too: a constructor that raised would raise again) get new actors.
        grow = max(want - len(self.slots), 0)
        if grow:
            self._grow(grow)
        for node in new:
            self._nodes[node.node_id] = node
            self.reporter(NodeJoined(node, grow))
            grow = 0

    # -- views ------------------------------------------------------------------------------------
    def workers(self) -> list[dict[str, Any]]:
        """Each actor: its name in the gateway, state, node and URL (for status and the CLI)."""
        with self._lock:
            return [{"worker": s.name, "backend": s.backend, "state": s.state,
                     "node_id": s.place.node_id if s.place else None, "host": s.place.host if s.place else None,
                     "hostname": s.place.hostname if s.place else None, "url": s.place.url if s.place else None}
                    for s in self.slots]

    # -- stop -------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop every ComfyUI, then the actors. Those that are down go first (killed before any GPU
        is freed, so their pending restart never starts a ComfyUI for nothing)."""
        ray = self.ray
        with self._lock:
            self.reporter(WorkersStopping(len(self.slots)))
            down = [s for s in self.slots if s.state in ("failing", "failed")]
            up = [s for s in self.slots if s not in down]
            for slot in down:
                with contextlib.suppress(Exception):
                    ray.kill(slot.actor, no_restart=True)
            refs: dict[int, Slot] = {}
            asked = []
            for slot in up:
                with contextlib.suppress(Exception):  # already dead
                    ref = slot.actor.shutdown.remote()
                    refs[id(ref)] = slot
                    asked.append(ref)
            done: list[Any] = []
            if asked:
                with contextlib.suppress(Exception):
                    done, _ = ray.wait(asked, num_returns=len(asked), timeout=self.options.stop_wait_s)
            answered = {id(refs[id(r)]) for r in done if id(r) in refs}
            for slot in sorted(up, key=lambda s: id(s) in answered):
                with contextlib.suppress(Exception):
                    ray.kill(slot.actor, no_restart=True)
        self.leave()

    def leave(self) -> None:
        if self._joined:
            self._joined = False
            with contextlib.suppress(Exception):
                self.ray.shutdown()


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    # Ray's creation-task errors end with the actor's own exception: the most useful line.
    return lines[-1] if lines else "no reason given"
