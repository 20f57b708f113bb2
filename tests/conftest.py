"""Shared test helpers: a string console, simulated machines, a stub ComfyUI on loopback."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from rich.console import Console, RenderableType


def render(renderable: RenderableType, width: int = 100) -> str:
    """Plain text as a 100-column terminal would show it, trailing spaces trimmed."""
    console = Console(file=io.StringIO(), width=width, color_system=None, legacy_windows=False)
    console.print(renderable)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    return "\n".join(line.rstrip() for line in text.splitlines())


TWO_3090 = {
    "driver_version": "550.54",
    "cuda_driver_version": "12.4",
    "gpus": [
        {
            "name": "NVIDIA GeForce RTX 3090",
            "memory_total_mib": 24576,
            "memory_used_mib": 12288,
            "utilization_pct": 45,
            "memory_util_pct": 20,
            "temperature_c": 65,
            "power_w": 250.4,
            "power_limit_w": 350,
            "sm_clock_mhz": 1980,
            "mem_clock_mhz": 9501,
            "processes": [
                {"pid": 4242, "used_memory_mib": 12000, "user": "alice", "command": "python main.py --port 8188", "port": 8188}
            ],
        },
        {"name": "NVIDIA GeForce RTX 3090", "memory_total_mib": 24576, "memory_used_mib": 0},
    ],
}


@pytest.fixture
def two_3090() -> dict[str, Any]:
    return json.loads(json.dumps(TWO_3090))


@dataclass
class StubState:
    """What the stub ComfyUI answers; tests change it between requests."""

    queue_remaining: int = 0
    status: int = 200
    requests: list[str] = field(default_factory=list)
    system_stats: dict[str, Any] = field(
        default_factory=lambda: {
            "system": {"comfyui_version": "0.3.76", "python_version": "3.12.3", "pytorch_version": "2.9.1+cu128"},
            "devices": [{"name": "cuda:0 NVIDIA GeForce RTX 3090 : cudaMallocAsync", "type": "cuda", "index": 0}],
        }
    )


class _Handler(BaseHTTPRequestHandler):
    state: StubState

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.state.requests.append(self.path)
        bodies = {
            "/prompt": {"exec_info": {"queue_remaining": self.state.queue_remaining}},
            "/queue": {"queue_running": [[0, "a"]][: min(self.state.queue_remaining, 1)],
                       "queue_pending": [[1, "b"]] * max(self.state.queue_remaining - 1, 0)},
            "/system_stats": self.state.system_stats,
        }
        body = bodies.get(self.path)
        status = self.state.status if body is not None else 404
        data = json.dumps(body or {}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class Stub:
    url: str
    port: int
    state: StubState


@pytest.fixture
def comfy_stub() -> Iterator[Stub]:
    """A tiny ComfyUI stand-in on a free loopback port, in a thread."""
    state = StubState()
    handler = type("Handler", (_Handler,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    port = server.server_address[1]
    try:
        yield Stub(url=f"http://127.0.0.1:{port}", port=port, state=state)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
