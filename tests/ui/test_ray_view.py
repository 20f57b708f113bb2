"""The Ray fleet's events as lines, and its dry run as a table."""

from __future__ import annotations

from comfyrig.launch.ray_fleet import (
    ClusterJoined,
    NodeJoined,
    NodeLeft,
    PlannedWorker,
    WorkerFailed,
    WorkerLost,
    WorkerRouted,
    WorkersStopping,
)
from comfyrig.launch.ray_worker import NodeGpus, WorkerPlace
from comfyrig.ui.ray_view import describe_ray, ray_plan_table

from ..conftest import render

NODE = NodeGpus("a" * 56, "10.0.0.2", "gpu-box", 2)
PLACE = WorkerPlace("a" * 56, "10.0.0.2", "gpu-box", "1", "http://10.0.0.2:40001", 77)


def test_every_event_is_one_line_naming_the_node() -> None:
    lines = [describe_ray(e) for e in (
        ClusterJoined("10.0.0.1:6379", (NODE,), 2), WorkerRouted("ray-1", PLACE, False),
        WorkerRouted("ray-1.1", PLACE, True), WorkerLost("ray-1", PLACE, "its Ray actor failed"),
        WorkerFailed("ray-3", "ValueError: no main.py"), NodeJoined(NODE, 0), NodeJoined(NODE, 2), NodeLeft(NODE),
        WorkersStopping(4))]
    assert all(line and "\n" not in line for line in lines)
    assert "1 node(s) with 2 GPU(s)" in lines[0]
    assert "gpu-box (10.0.0.2, node aaaaaaaaaaaa) GPU 1 at http://10.0.0.2:40001" in lines[1]
    assert "again" in lines[2] and "off the gateway" in lines[3] and "no main.py" in lines[4]
    assert "waiting for a GPU" in lines[5] and "2 new worker(s)" in lines[6]


def test_dry_run_table_says_where_each_worker_listens() -> None:
    local = NodeGpus("b" * 56, "10.0.0.1", "head", 1)
    text = render(ray_plan_table([PlannedWorker("ray-0", local, "127.0.0.1"), PlannedWorker("ray-1", NODE, "10.0.0.2")],
                                 "10.0.0.1:6379"))
    assert "127.0.0.1 (this machine)" in text and "10.0.0.2 (the node's cluster address)" in text


def test_a_worker_beyond_loopback_is_routed_with_a_warning() -> None:
    remote = describe_ray(WorkerRouted("ray-1", PLACE, False))
    assert "no authentication and listens on 10.0.0.2" in remote and "only from this machine" in remote
    here = WorkerPlace("b" * 56, "10.0.0.1", "head", "0", "http://127.0.0.1:40002", 78)
    assert "no authentication" not in describe_ray(WorkerRouted("ray-0", here, False))
