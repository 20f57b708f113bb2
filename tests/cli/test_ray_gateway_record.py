"""What a running ``comfyrig --workers --ray`` leaves for ``status``, ``monitor`` and ``stop``, with
a stand-in for the launch (a process that writes the record, serves the gateway's fleet view and
ends on SIGINT, as the launch does): no Ray needed. The real launch on a two-node cluster is in
tests/launch/test_ray_fleet_cluster.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from comfyrig.launch.ray_record import RayGatewayRecord, ray_records
from comfyrig.launch.registry import state_dir

from .conftest import free_port, run_cli

FLEET = {"backends": [
    {"name": "ray-0", "node": "head 10.0.0.1 aaaaaaaaaaaa", "url": "URL0", "live": True, "in_flight": 1, "completed": 7,
     "failed": 0},
    {"name": "ray-1.1", "node": "w1 10.0.0.3 bbbbbbbbbbbb", "url": "URL1", "live": True, "in_flight": 0, "completed": 2,
     "failed": 1}]}

STAND_IN = textwrap.dedent("""
    import json, os, signal, sys, threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from comfyrig.launch.ray_record import write_record
    from comfyrig.launch.registry import state_dir

    fleet = sys.argv[2].encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = fleet if self.path == "/comfyrig/fleet" else b'{"exec_info": {"queue_remaining": 0}}'
            self.send_response(200); self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
        def log_message(self, *a): pass

    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    path = write_record(state_dir(os.environ), f"http://127.0.0.1:{sys.argv[1]}", int(sys.argv[1]), "10.0.0.1:6379", False)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    print("ready", flush=True)
    stop.wait()
    path.unlink()
    print("stopped on SIGINT", flush=True)
""")


@pytest.fixture
def launch(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    port = free_port()
    fleet = json.dumps(FLEET).replace("URL0", f"http://127.0.0.1:{free_port()}").replace("URL1", f"http://127.0.0.1:{free_port()}")
    proc = subprocess.Popen([sys.executable, "-c", STAND_IN, str(port), fleet], env=os.environ.copy(),
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_status_lists_each_worker_with_its_node(launch: tuple[subprocess.Popen[str], int],
                                                 capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    _, port = launch
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = run_cli(capsys, "status", "--json")
    assert code == 0
    [ray] = json.loads(out)["ray"]
    assert (ray["port"], ray["ray"], ray["answering"]) == (port, "10.0.0.1:6379", True)
    assert [(w["name"], w["node"]) for w in ray["workers"]] == [("ray-0", "head 10.0.0.1 aaaaaaaaaaaa"),
                                                                ("ray-1.1", "w1 10.0.0.3 bbbbbbbbbbbb")]
    code, out, _ = run_cli(capsys, "status")
    assert "w1 10.0.0.3 bbbbbbbbbbbb" in out and f"behind http://127.0.0.1:{port}" in out


def test_monitor_watches_the_gateway_and_each_worker_by_node(launch: tuple[subprocess.Popen[str], int],
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    _, port = launch
    code, out, _ = run_cli(capsys, "monitor", "--once", "--json")
    assert code == 0
    rows = {i["url"]: i for i in json.loads(out)["instances"]}
    gateway = rows[f"http://127.0.0.1:{port}"]
    assert (gateway["state"], gateway["label"]) == ("up", "gateway (Ray 10.0.0.1:6379)")
    [worker] = [i for i in rows.values() if i["label"] == "ray-1.1 on w1 10.0.0.3 bbbbbbbbbbbb"]
    assert worker["state"] == "down"  # nothing listens at its URL here
    assert len(rows) == 3


def test_stop_port_stops_the_ray_launch_as_ctrl_c_does(launch: tuple[subprocess.Popen[str], int],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    proc, port = launch
    code, out, _ = run_cli(capsys, "stop", "--port", str(port))
    assert code == 0 and f"port {port}: stopped the gateway of the Ray cluster 10.0.0.1:6379" in out
    assert proc.wait(10) == 0 and proc.stdout is not None and "stopped on SIGINT" in proc.stdout.read()
    assert ray_records(state_dir(os.environ)) == []


def test_a_record_whose_launch_is_gone_or_reused_is_dropped(clean_env: pytest.MonkeyPatch) -> None:
    state = state_dir(os.environ)
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    dead = int(done.stdout)
    state.write_private("ray-gateway-9001.json", json.dumps(
        {"url": "http://127.0.0.1:9001", "port": 9001, "pid": dead, "start_ticks": 1, "ray": "auto", "auth": False}))
    # This process's pid with another start time: a pid reused since, never signalled.
    state.write_private("ray-gateway-9002.json", json.dumps(
        {"url": "http://127.0.0.1:9002", "port": 9002, "pid": os.getpid(), "start_ticks": 1, "ray": "auto", "auth": False}))
    state.write_private("ray-gateway-9003.json", "{not json")
    assert ray_records(state) == []
    assert sorted(p.name for p in state.root.glob("ray-gateway-*")) == ["ray-gateway-9003.json"]
    with pytest.raises(TypeError):
        RayGatewayRecord.from_json(json.dumps({"url": "u", "port": 1, "pid": 1, "start_ticks": "x"}))


def test_stop_port_with_nothing_there_says_so(clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "stop", "--port", str(free_port()))
    assert code == 1 and "No comfyrig-started ComfyUI on port" in out
