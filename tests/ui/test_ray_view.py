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


def test_the_live_view_shows_each_worker_with_its_node_state_and_work() -> None:
    from comfyrig.ui.ray_view import ray_dashboard
    from tests.conftest import render

    workers = [
        {"worker": "ray-0", "backend": "ray-0", "state": "routed", "node_id": "a" * 28, "host": "10.0.0.1",
         "hostname": "head", "url": "http://127.0.0.1:40001"},
        {"worker": "ray-1", "backend": None, "state": "waiting", "node_id": "b" * 28, "host": "10.0.0.3",
         "hostname": "gpu2", "url": "http://10.0.0.3:40002"},
        {"worker": "ray-2", "backend": None, "state": "starting", "node_id": None, "host": None, "hostname": None,
         "url": None},
    ]
    view = {"queue_remaining": 3, "clients": 1, "counters": {"prompts": 9, "prompts_moved": 2},
            "backends": [{"name": "ray-0", "live": True, "in_flight": 2, "completed": 7, "failed": 0}]}
    text = render(ray_dashboard("10.0.0.1:6379", "http://127.0.0.1:8188", workers, view), width=140)
    assert "One ComfyUI URL: http://127.0.0.1:8188" in text and "2 node(s), 3 worker(s)" in text
    assert "1/1 workers routable · queue 3 · 1 client(s) · 9 prompt(s) routed · 2 re-submitted" in text
    rows = {line.split()[1]: line for line in text.splitlines() if line.strip("│ ").startswith("ray-")}
    assert "head 10.0.0.1 aaaaaaaaaaaa" in rows["ray-0"] and "routed" in rows["ray-0"] and rows["ray-0"].split()[-4:-1] == ["2", "7", "0"]
    assert "waiting for a GPU" in rows["ray-1"] and "gpu2 10.0.0.3 bbbbbbbbbbbb" in rows["ray-1"]
    assert "starting" in rows["ray-2"]
    # The gateway not answering in time: the table still shows the workers.
    assert "ray-2" in render(ray_dashboard("auto", "http://127.0.0.1:8188", workers, None), width=140)
