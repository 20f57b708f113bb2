"""Shared fixtures: simulated inventories, running the installed command, a string console, a stub ComfyUI."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console, RenderableType

from comfyrig.host.gpus.inventory import Inventory
from comfyrig.host.gpus.simulated import parse_simulated

REPO = Path(__file__).resolve().parents[1]


def fake_gpus(count: int, *, memory_mib: int = 24576, name: str = "NVIDIA GeForce RTX 3090") -> list[dict[str, object]]:
    return [
        {
            "name": name,
            "memory_total_mib": memory_mib,
            "memory_used_mib": 300,
            "uuid": f"GPU-{i:08x}-1111-2222-3333-444444444444",
            "pci_bus_id": f"00000000:{0x17 + i:02X}:00.0",
        }
        for i in range(count)
    ]


def inventory_of(count: int, **kwargs: object) -> Inventory:
    return parse_simulated(fake_gpus(count, **kwargs))  # type: ignore[arg-type]


@pytest.fixture
def inventories() -> Callable[[int], Inventory]:
    return inventory_of


def comfyrig_exe() -> list[str]:
    """The installed console script, or the module form when run from a source tree."""
    exe = shutil.which("comfyrig", path=str(Path(sys.executable).parent)) or shutil.which("comfyrig")
    return [exe] if exe else [sys.executable, "-m", "comfyrig"]


class Cli:
    """Runs the installed ``comfyrig`` command in a subprocess with a clean environment."""

    def __init__(self, tmp_path: Path) -> None:
        self.cwd = tmp_path
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("COMFYUI_", "COMFYRIG_", "CUDA_"))}
        self.env.pop("ENABLE_COMFYUI_MANAGER", None)
        self.env["NO_COLOR"] = "1"
        self.env["COLUMNS"] = "100"
        self.env["COMFYRIG_STATE_DIR"] = str(tmp_path / "state")  # never the developer's registry

    def gpus(self, count: int, **kwargs: object) -> None:
        self.env["COMFYRIG_FAKE_GPUS"] = json.dumps(fake_gpus(count, **kwargs))

    def __call__(self, *args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*comfyrig_exe(), *args],
            cwd=self.cwd,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


class InProcessCli(Cli):
    """The same calls as ``Cli``, answered by ``comfyrig.cli.main`` in this process (the
    environment and folder swapped in for the call): for tests where the process itself is
    not the point, a tenth of the time."""

    def __call__(self, *args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        from contextlib import redirect_stderr, redirect_stdout

        from comfyrig.cli import main

        saved, cwd = dict(os.environ), os.getcwd()
        out, err = io.StringIO(), io.StringIO()
        os.environ.clear()
        os.environ.update({**self.env, **(env or {})})
        os.chdir(self.cwd)
        try:
            with redirect_stdout(out), redirect_stderr(err):
                code = main(list(args))
        finally:
            os.environ.clear()
            os.environ.update(saved)
            os.chdir(cwd)
        return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """The installed command in a subprocess: for tests about processes, signals, the entry point."""
    return Cli(tmp_path)


@pytest.fixture
def run(tmp_path: Path) -> InProcessCli:
    """The command in this process, with the same clean environment as ``cli``."""
    return InProcessCli(tmp_path)


@pytest.fixture
def comfy_tree(tmp_path: Path) -> Path:
    """A minimal ComfyUI checkout: main.py, comfyui_version.py, comfy/cli_args.py."""
    root = tmp_path / "ComfyUI"
    (root / "comfy").mkdir(parents=True)
    (root / "custom_nodes").mkdir()
    (root / "main.py").write_text("print('not really ComfyUI')\n")
    (root / "comfyui_version.py").write_text('__version__ = "0.3.76"\n')
    # Shaped as in 0.3.76 (--cpu takes no value, --listen an optional one...): comfyrig reads it as argparse would.
    from tests.comfy.cli_args_versions import cli_args_text

    flags = ("--listen", "--port", "--cpu", "--lowvram", "--novram", "--enable-manager", "--cuda-device", "--enable-cors-header",
             "--user-directory", "--base-directory")
    (root / "comfy" / "cli_args.py").write_text(cli_args_text("0.3.76", only=flags))
    return root


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


# (path) -> (HTTP status, JSON body): what a stand-in server answers to a GET.
Answer = Callable[[str], tuple[int, Any]]


@contextmanager
def json_server(answer: Answer, host: str = "127.0.0.1") -> Iterator[tuple[str, int]]:
    """A loopback HTTP server in a thread answering GETs as ``answer`` says; yields (url, port)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = answer(self.path)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    port = int(server.server_address[1])
    try:
        yield f"http://{host}:{port}", port
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@dataclass
class Stub:
    url: str
    port: int
    state: StubState


@pytest.fixture
def comfy_stub() -> Iterator[Stub]:
    """A tiny ComfyUI stand-in on a free loopback port: GET /prompt, /queue, /system_stats."""
    state = StubState()

    def answer(path: str) -> tuple[int, Any]:
        state.requests.append(path)
        bodies = {
            "/prompt": {"exec_info": {"queue_remaining": state.queue_remaining}},
            "/queue": {"queue_running": [[0, "a"]][: min(state.queue_remaining, 1)],
                       "queue_pending": [[1, "b"]] * max(state.queue_remaining - 1, 0)},
            "/system_stats": state.system_stats,
        }
        return (state.status, bodies[path]) if path in bodies else (404, {})

    with json_server(answer) as (url, port):
        yield Stub(url=url, port=port, state=state)
