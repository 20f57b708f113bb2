"""The Ray fleet's watcher through its seams: a fake ray module and a recording router.

Scripted histories: actors that come up, a node that is lost (its actors fail, then
restart on a node that joins, with new URLs), a node that joins with more GPUs, an
actor whose constructor raises, and the order of a stop.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from comfyrig.errors import LaunchError
from comfyrig.gateway.backends import BackendSpec
from comfyrig.launch.ray_fleet import (
    ClusterJoined,
    NodeJoined,
    NodeLeft,
    RayFleet,
    RayFleetEvent,
    RayFleetOptions,
    WatchTrouble,
    WorkerFailed,
    WorkerLost,
    WorkerRouted,
    WorkerTrouble,
    listen_for,
    plan_workers,
)
from comfyrig.launch.ray_worker import RAY_SUPERVISOR, NodeGpus


class ActorDiedError(Exception):
    pass


@dataclass
class Ref:
    value: Any = None
    error: BaseException | None = None
    ready: bool = True
    actor: FakeActor | None = None  # a state call: answered when the actor can (as Ray's refs)

    def resolve(self) -> bool:
        if self.actor is not None:
            answer = self.actor.answer()
            if not answer.ready:
                return False
            self.value, self.error, self.actor = answer.value, answer.error, None
        return self.ready


@dataclass
class FakeActor:
    ray: FakeRay
    node: str | None = None  # None: pending (no GPU free)
    ready: bool = False
    gone: bool = False
    pid: int = 100
    port: int = 9000
    broken: str | None = None  # a constructor error
    failing: bool = False  # its node was lost: calls fail once, then queue until it restarts
    killed: bool = False
    calls: list[str] = field(default_factory=list)
    phase: str = "starting"  # its supervisor's, as GatewayWorker.state() reports it
    message: str = ""
    restarts: int = 0

    def answer(self) -> Ref:
        if self.broken:
            return Ref(error=ActorDiedError(f"The actor died because of an error raised in its creation task\n"
                                            f"ValueError: {self.broken}"))
        if self.failing:
            self.failing = False
            return Ref(error=ActorDiedError("node lost"))
        if self.node is None:
            return Ref(ready=False)
        place = {"node_id": self.node, "host": self.ray.hosts[self.node], "hostname": "h", "gpu": "0",
                 "url": f"http://{self.ray.hosts[self.node]}:{self.port}", "pid": self.pid}
        return Ref({"place": place, "ready": self.ready, "gone": self.gone, "phase": self.phase,
                    "message": self.message, "restarts": self.restarts, "log": f"/c/user/comfyrig-ray/{self.node}-gpu0/x.log"})


class Method:
    def __init__(self, actor: FakeActor, name: str) -> None:
        self.actor, self.name = actor, name

    def remote(self) -> Ref:
        self.actor.calls.append(self.name)
        if self.name == "state":
            return Ref(actor=self.actor)
        return Ref(None)


class Handle:
    def __init__(self, actor: FakeActor) -> None:
        self.fake = actor
        self.state = Method(actor, "state")
        self.shutdown = Method(actor, "shutdown")


class Remote:
    def __init__(self, ray: FakeRay) -> None:
        self.ray = ray

    def remote(self, *args: Any, **kwargs: Any) -> Handle:
        self.ray.started.append((args, kwargs))
        free = [n for n, g in self.ray.free.items() if g > 0]
        node = free[0] if free else None
        if node is not None:
            self.ray.free[node] -= 1
        actor = FakeActor(self.ray, node, broken=self.ray.broken, port=9000 + len(self.ray.actors))
        self.ray.actors.append(actor)
        return Handle(actor)


class Util:
    @staticmethod
    def get_node_ip_address() -> str:
        return "10.0.0.1"


class FakeRay:
    util = Util()

    def __init__(self, gpus: dict[str, int]) -> None:
        self.gpus = dict(gpus)
        self.free = dict(gpus)
        self.hosts = {n: f"10.0.0.{i + 1}" for i, n in enumerate(gpus)}
        self.actors: list[FakeActor] = []
        self.started: list[tuple[Any, Any]] = []
        self.killed: list[int] = []  # indexes, in order
        self.broken: str | None = None
        self.initialized = True
        self.options: dict[str, Any] = {}

    def is_initialized(self) -> bool:
        return self.initialized

    def nodes(self) -> list[dict[str, Any]]:
        return [{"NodeID": n, "Alive": True, "NodeManagerAddress": self.hosts[n], "NodeManagerHostname": n,
                 "Resources": {"GPU": float(g)}} for n, g in self.gpus.items()]

    def remote(self, **options: Any) -> Any:
        self.options = options
        return lambda cls: Remote(self)

    def wait(self, refs: list[Ref], *, num_returns: int, timeout: float) -> tuple[list[Ref], list[Ref]]:
        done = [r for r in refs if r.resolve()]
        return done, [r for r in refs if all(r is not d for d in done)]

    def get(self, ref: Ref, timeout: float | None = None) -> Any:
        if ref.error is not None:
            raise ref.error
        return ref.value

    def kill(self, handle: Handle, *, no_restart: bool) -> None:
        self.killed.append(self.actors.index(handle.fake))

    # -- the script ------------------------------------------------------------------------------
    def lose(self, node: str) -> None:
        del self.gpus[node], self.free[node]
        for actor in self.actors:
            if actor.node == node:
                actor.node, actor.failing, actor.ready = None, True, False

    def join(self, node: str, gpus: int) -> None:
        self.gpus[node], self.free[node] = gpus, gpus
        self.hosts[node] = f"10.0.1.{len(self.hosts)}"
        for actor in self.actors:  # pending actors restart first (a new process: new pid and port)
            if actor.node is None and self.free[node] > 0 and not actor.killed:
                actor.node, actor.pid, actor.port = node, actor.pid + 1, actor.port + 100
                self.free[node] -= 1


@dataclass
class Router:
    specs: dict[str, BackendSpec] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)

    def add_backend(self, spec: BackendSpec) -> None:
        self.specs[spec.name] = spec
        self.log.append(f"+{spec.name}")

    def remove_backend(self, name: str) -> None:
        del self.specs[name]
        self.log.append(f"-{name}")


def fleet(ray: FakeRay, **options: Any) -> tuple[RayFleet, Router, list[RayFleetEvent]]:
    router, events = Router(), []
    f = RayFleet(ray, RayFleetOptions("10.0.0.1:6379", "/c", "/py", ("--lowvram",), **options), router, events.append)
    return f, router, events


def ready_all(ray: FakeRay) -> None:
    for actor in ray.actors:
        if actor.node is not None:
            actor.ready = True


def test_one_actor_per_gpu_each_routed_once_ready_with_its_node() -> None:
    ray = FakeRay({"head": 2, "w1": 1})
    f, router, events = fleet(ray)
    f.start()
    assert ray.options == {"num_gpus": 1, "max_restarts": -1, "max_concurrency": 4}
    assert len(ray.actors) == 3 and ray.started[0] == (("/c", "/py", ["--lowvram"]),
                                                       {"local_ip": "10.0.0.1", "supervisor": RAY_SUPERVISOR,
                                                        "log_dir": None})
    assert isinstance(events[0], ClusterJoined) and events[0].workers == 3
    f.step()
    assert router.specs == {}  # nothing ready yet
    ray.actors[0].ready = True
    f.step()
    f.step()
    assert list(router.specs) == ["ray-0"]
    ready_all(ray)
    f.step()
    f.step()
    assert sorted(router.specs) == ["ray-0", "ray-1", "ray-2"]
    spec = router.specs["ray-2"]
    assert spec.url == "http://10.0.0.2:9002" and spec.group == "ray-w1" and "w1" in spec.node
    assert router.specs["ray-0"].group == router.specs["ray-1"].group == "ray-head"  # one checkout per node
    assert [e.name for e in events if isinstance(e, WorkerRouted)] == ["ray-0", "ray-1", "ray-2"]
    assert {w["node_id"] for w in f.workers()} == {"head", "w1"}


def test_a_lost_node_takes_its_workers_off_and_a_node_that_joins_brings_them_back_under_new_names() -> None:
    ray = FakeRay({"head": 1, "w1": 2})
    f, router, events = fleet(ray)
    f.start()
    ready_all(ray)
    f.step()
    f.step()
    assert sorted(router.specs) == ["ray-0", "ray-1", "ray-2"]
    ray.lose("w1")
    f.step()  # the answers in flight were collected before the loss; these calls fail
    f.step()
    assert sorted(router.specs) == ["ray-0"]
    lost = [e for e in events if isinstance(e, WorkerLost)]
    assert sorted(e.name for e in lost) == ["ray-1", "ray-2"] and all(e.place.node_id == "w1" for e in lost)
    assert [e.node.node_id for e in events if isinstance(e, NodeLeft)] == ["w1"]
    f.step()
    assert len(ray.actors) == 3  # no new actor: the lost ones wait for a GPU
    ray.join("w2", 2)
    ready_all(ray)
    for _ in range(3):
        f.step()
    assert len(ray.actors) == 3  # the pending actors took the new node's GPUs
    assert sorted(router.specs) == ["ray-0", "ray-1.1", "ray-2.1"]
    assert router.specs["ray-1.1"].url == "http://10.0.1.2:9101"
    back = [e for e in events if isinstance(e, WorkerRouted) and e.restarted]
    assert {e.place.node_id for e in back} == {"w2"}
    assert [e.new_workers for e in events if isinstance(e, NodeJoined)] == [0]


def test_a_node_that_joins_before_the_lost_one_is_marked_dead_gets_the_lost_actors_not_new_ones() -> None:
    ray = FakeRay({"head": 1, "w1": 1})
    f, router, _ = fleet(ray)
    f.start()
    ready_all(ray)
    f.step()
    f.step()
    gpus = dict(ray.gpus)
    ray.lose("w1")
    ray.gpus["w1"] = gpus["w1"]  # Ray still lists it alive: heartbeats not yet missed
    f.step()
    f.step()
    ray.join("w2", 1)
    ready_all(ray)
    for _ in range(3):
        f.step()
    assert len(ray.actors) == 2 and sorted(router.specs) == ["ray-0", "ray-1.1"]


def test_a_node_that_joins_with_more_gpus_gets_new_actors() -> None:
    ray = FakeRay({"head": 1})
    f, router, events = fleet(ray)
    f.start()
    ready_all(ray)
    f.step()
    ray.join("w1", 2)
    f.step()
    assert len(ray.actors) == 3 and [a.node for a in ray.actors] == ["head", "w1", "w1"]
    assert [(e.node.node_id, e.new_workers) for e in events if isinstance(e, NodeJoined)] == [("w1", 2)]
    ready_all(ray)
    f.step()
    f.step()
    assert sorted(router.specs) == ["ray-0", "ray-1", "ray-2"]


def test_max_workers_caps_growth() -> None:
    ray = FakeRay({"head": 2})
    f, _, _ = fleet(ray, max_workers=1)
    f.start()
    ray.join("w1", 2)
    f.step()
    assert len(ray.actors) == 1


def test_a_comfyui_that_gives_up_leaves_the_routing_and_comes_back_when_ready() -> None:
    ray = FakeRay({"head": 1})
    f, router, events = fleet(ray)
    f.start()
    ready_all(ray)
    f.step()
    f.step()
    ray.actors[0].gone, ray.actors[0].ready = True, False
    f.step()
    assert router.specs == {} and "gave up" in next(e for e in events if isinstance(e, WorkerLost)).reason
    ray.actors[0].gone, ray.actors[0].ready = False, True
    f.step()
    assert list(router.specs) == ["ray-0.1"]


def test_an_actor_whose_constructor_raises_is_reported_once_and_not_replaced() -> None:
    ray = FakeRay({"head": 1})
    ray.broken = "no main.py in /c"
    f, router, events = fleet(ray)
    f.start()
    for _ in range(3):
        f.step()
    failed = [e for e in events if isinstance(e, WorkerFailed)]
    assert len(failed) == 1 and failed[0].reason == "ValueError: no main.py in /c"
    assert len(ray.actors) == 1 and router.specs == {}


def test_no_gpu_in_the_cluster_is_one_clear_error() -> None:
    ray = FakeRay({})
    f, _, _ = fleet(ray)
    with pytest.raises(LaunchError, match="no node with a GPU"):
        f.start()


def test_stop_kills_the_down_actors_before_any_gpu_is_freed() -> None:
    ray = FakeRay({"head": 1, "w1": 1})
    f, _, _ = fleet(ray)
    f.start()
    ready_all(ray)
    f.step()
    ray.lose("w1")
    f.step()
    f.stop()
    assert ray.killed[0] == 1 and sorted(ray.killed) == [0, 1]
    assert "shutdown" in ray.actors[0].calls and "shutdown" not in ray.actors[1].calls


def test_a_gateway_that_does_not_answer_in_time_is_said_and_tried_again() -> None:
    ray = FakeRay({"head": 1})

    class SlowRouter(Router):
        def add_backend(self, spec: BackendSpec) -> None:
            if not self.log:
                self.log.append("timeout")
                raise TimeoutError("the gateway's loop did not answer")
            super().add_backend(spec)

    router, events = SlowRouter(), []
    f = RayFleet(ray, RayFleetOptions("a:1", "/c", "/py", poll_s=0.01), router, events.append)
    f.start()
    ready_all(ray)
    stop = threading.Event()
    thread = threading.Thread(target=f.run, args=(stop,))
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while "ray-0" not in router.specs and time.monotonic() < deadline:
            stop.wait(0.01)
    finally:
        stop.set()
        thread.join(2)
    assert list(router.specs) == ["ray-0"]  # under its first name: the failed try left no trace
    assert [e.reason for e in events if isinstance(e, WatchTrouble)] == ["TimeoutError: the gateway's loop did not answer"]


def test_run_stops_when_asked() -> None:
    ray = FakeRay({"head": 1})
    f, _, _ = fleet(ray, poll_s=0.01)
    f.start()
    stop = threading.Event()
    thread = threading.Thread(target=f.run, args=(stop,))
    thread.start()
    stop.set()
    thread.join(2)
    assert not thread.is_alive()


def test_plan_and_listen_address() -> None:
    nodes = [NodeGpus("a" * 56, "10.0.0.1", "head", 2), NodeGpus("b" * 56, "10.0.0.2", "w1", 1)]
    rows = plan_workers(nodes, "10.0.0.1")
    assert [(r.worker, r.node.hostname, r.listen) for r in rows] == [
        ("ray-0", "head", "127.0.0.1"), ("ray-1", "head", "127.0.0.1"), ("ray-2", "w1", "10.0.0.2")]
    assert len(plan_workers(nodes, "10.0.0.1", limit=2)) == 2
    assert listen_for("10.0.0.9", "10.0.0.1") == "10.0.0.9"


def test_a_workers_comfyui_failing_on_its_node_is_said_once_per_failure() -> None:
    """Before, a bad flag on the nodes showed nothing: the workers never became routable and the
    launch said only that it was starting them."""
    from comfyrig.ui.ray_view import describe_ray

    ray = FakeRay({"head": 1})
    f, router, events = fleet(ray)
    f.start()
    actor = ray.actors[0]
    actor.phase, actor.message, actor.restarts = "backoff", "crash: exit code 1 (CUDA error: out of memory)", 0
    f.step()
    f.step()
    f.step()
    actor.restarts = 1
    f.step()
    f.step()
    actor.phase, actor.message, actor.gone = "failed", "bad flag: main.py: error: argument --user-directory: no such path", True
    f.step()
    f.step()
    f.step()
    trouble = [e for e in events if isinstance(e, WorkerTrouble)]
    assert [(t.restarts, t.gave_up) for t in trouble] == [(0, False), (1, False), (1, True)]
    assert router.specs == {}
    line = describe_ray(trouble[-1])
    assert "ray-0 on h (10.0.0.1, node head) GPU 0: ComfyUI ended: bad flag: main.py: error: argument --user-directory" in line
    assert "supervisor gave up" in line and "its log on that node: /c/user/comfyrig-ray/head-gpu0/x.log" in line
    assert "restart 2" in describe_ray(trouble[1])
