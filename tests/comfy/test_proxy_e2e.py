"""A proxy in the environment must not cut comfyrig off from a ComfyUI on loopback.

GPU clusters commonly set HTTP_PROXY / ALL_PROXY for every process. A request to
127.0.0.1 that follows them goes to the proxy instead of ComfyUI: 'launch' then waited
for a ready ComfyUI that was there all along. Here every proxy variable points at a port
where nothing listens, and the installed comfyrig runs against one fake ComfyUI: launch
(the readiness probe the batch fleet shares), a batch against it (HTTP and the
websocket), monitor and doctor. (A SOCKS ALL_PROXY is covered in test_proxy_rule.py.)
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..batch.e2e import IMAGE_WF, harness, write
from ..conftest import Cli
from ..launching import FAKE_DIR, Launched

pytestmark = pytest.mark.e2e  # starts real processes

DEAD_PROXY = "http://127.0.0.1:9"  # the discard port: nothing listens there
PROXY_ENV = {
    "HTTP_PROXY": DEAD_PROXY,
    "http_proxy": DEAD_PROXY,
    "HTTPS_PROXY": DEAD_PROXY,
    "https_proxy": DEAD_PROXY,
    "ALL_PROXY": DEAD_PROXY,
    "all_proxy": DEAD_PROXY,
}


@pytest.fixture
def proxied(cli: Cli) -> Cli:
    for name in ("NO_PROXY", "no_proxy"):  # a NO_PROXY naming 127.0.0.1 would hide the bug
        cli.env.pop(name, None)
    cli.env.update(PROXY_ENV)
    cli.gpus(1)
    return cli


@pytest.fixture
def launched(proxied: Cli, tmp_path: Path) -> Iterator[tuple[Launched, str, int]]:
    port = harness.free_port()
    argv = ["launch", "--plain", "--cpu", "--comfyui-dir", str(FAKE_DIR), "--python", sys.executable,
            "--port", str(port), "--log-dir", str(tmp_path / "logs"),
            "--comfyui-args", f"--output-directory {tmp_path / 'comfy-out'}"]
    running = Launched(argv, {**proxied.env, "COMFYRIG_STATE_DIR": str(tmp_path / "state")}, proxied.cwd)
    try:
        yield running, f"http://127.0.0.1:{port}", port
    finally:
        running.kill()


def test_launch_batch_monitor_and_doctor_ignore_the_proxy_for_loopback(
    proxied: Cli, launched: tuple[Launched, str, int], tmp_path: Path
) -> None:
    running, url, port = launched
    running.wait_for("READY", timeout=30)  # was: "not ready after 300 s"

    wf = write(tmp_path / "wf.json", IMAGE_WF)
    batch = proxied("batch", str(wf), "--out", str(tmp_path / "out"), "--sweep", "Canvas.color=1..2",
                    "--url", url, "--ready-timeout", "20", "--plain", "--json", timeout=40)
    assert batch.returncode == 0, batch.stdout + batch.stderr
    report = json.loads(batch.stdout)
    assert (report["done"], report["failed"], report["output_files"]) == (2, 0, 2)

    monitor = proxied("monitor", "--once", "--json", "--url", url)
    assert monitor.returncode == 0, monitor.stdout + monitor.stderr
    [instance] = json.loads(monitor.stdout)["instances"]
    assert (instance["state"], instance["running"], instance["pending"]) == ("up", 0, 0), instance

    doctor = proxied("doctor", "--json", "--comfyui-dir", str(FAKE_DIR), "--python", sys.executable,
                     "--port", str(port), "--no-torch")
    assert doctor.stdout.startswith("{"), doctor.stdout + doctor.stderr
    checks = {c["id"]: c for c in json.loads(doctor.stdout)["checks"]}
    running_check = checks["comfyui.running"]
    assert running_check["status"] == "pass" and f"answers at {url}" in running_check["message"], running_check

    running.interrupt()
    assert running.wait() == 0
