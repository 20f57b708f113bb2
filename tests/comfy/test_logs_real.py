"""Live: every real ComfyUI checkout configured (tests/real_comfyui.py) started through
``comfyrig launch --plain``. The lines comfyrig passed on as ``[comfyui] ...`` are the ones its
supervisor parses for the dashboard; read the same way, they give the System facts, which
agree with what ComfyUI's /system_stats answers."""

from __future__ import annotations

import json
import socket
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from comfyrig.comfy.logs import StartupInfo, parse_line

from ..conftest import Cli
from ..launching import Launched
from ..real_comfyui import Checkout, real_params, usable
from .test_logs_versions import cpu_view

pytestmark = pytest.mark.e2e  # starts real processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def newer_than_0_3(version: str) -> bool:
    head = version.split(".")[:2]
    return all(part.isdigit() for part in head) and tuple(int(p) for p in head) > (0, 3)


@pytest.mark.parametrize("checkout", real_params())
def test_real_startup_log_gives_the_system_facts(cli: Cli, tmp_path: Path, checkout: Checkout | None) -> None:
    real = usable(checkout)
    port = free_port()
    argv = ["launch", "--plain", "--cpu", "--comfyui-dir", real.dir, "--python", real.python, "--port", str(port),
            "--log-dir", str(tmp_path / "logs")]
    launched = Launched(argv, cli.env, cli.cwd)
    launched.default_timeout = 180.0
    try:
        launched.wait_for("READY")
        stats = get(f"http://127.0.0.1:{port}/system_stats")["system"]
        launched.interrupt()
        assert launched.wait() == 0
    finally:
        launched.kill()
    info = StartupInfo()
    for line in launched.lines:
        if line.startswith("[comfyui] "):
            info = parse_line(info, line.removeprefix("[comfyui] "))
    system = info.system
    assert system["comfyui"] == real.version == stats["comfyui_version"]
    assert system["pytorch"] == stats["pytorch_version"] and system["python"] == stats["python_version"]
    assert system["device"] == "cpu" and system["memory"].startswith("Total VRAM ") and system["vram_state"] == "DISABLED"
    assert system["frontend"][:1].isdigit()  # 0.3.x: "ComfyUI frontend version:"; 0.24: the package's line
    if newer_than_0_3(real.version):
        assert {"comfy_kitchen", "comfy_aimdo", "cache"} <= set(system)
    assert [n.failed for n in info.imports if n.path.endswith("websocket_image_save.py")] == [False]
    assert info.gui_urls == (f"http://127.0.0.1:{port}",)
    assert not [p.text for p in info.problems if "\x1b" in p.text or p.text.startswith("[")]
    shown = cpu_view(info, tmp_path)
    assert f"ComfyUI {real.version} Frontend {system['frontend'].split()[0]}" in shown
    assert f"PyTorch {stats['pytorch_version']}" in shown and "Device cpu" in shown
