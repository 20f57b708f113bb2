"""On real NVIDIA GPUs (marker ``gpu``): what NVML, torch and real ComfyUI really see per mode.

Skipped with a reason on machines without an NVIDIA driver. With
COMFYRIG_RESULTS_DIR set, each test appends what it observed to
``gpu_observations.jsonl`` there, so the harness brings the numbers back.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from comfyrig.host.gpus.inventory import Inventory
from comfyrig.host.gpus.probe import probe_inventory
from comfyrig.host.gpus.smi import probe_smi

from ..conftest import Cli
from ..launching import Launched, wait_until

pytestmark = [pytest.mark.gpu, pytest.mark.e2e]


def _inventory() -> Inventory:
    return probe_inventory(None)


INVENTORY = _inventory()
if INVENTORY.source not in ("nvml", "nvidia-smi") or not INVENTORY.gpus:
    pytest.skip(f"no NVIDIA GPU here ({INVENTORY.problem or INVENTORY.source})", allow_module_level=True)

GPUS = len(INVENTORY.gpus)
COMFYUI_DIR = os.environ.get("COMFYUI_DIR")
COMFYUI_PYTHON = os.environ.get("COMFYUI_PYTHON")
needs_comfyui = pytest.mark.skipif(not (COMFYUI_DIR and COMFYUI_PYTHON), reason="set COMFYUI_DIR and COMFYUI_PYTHON to a real ComfyUI")
needs_two = pytest.mark.skipif(GPUS < 2, reason="needs two GPUs")


def record(name: str, data: dict[str, Any]) -> None:
    out = os.environ.get("COMFYRIG_RESULTS_DIR")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        with open(Path(out) / "gpu_observations.jsonl", "a") as f:
            f.write(json.dumps({"test": name, **data}) + "\n")


@pytest.fixture
def real_cli(tmp_path: Path) -> Cli:
    cli = Cli(tmp_path)
    cli.env["COMFYRIG_STATE_DIR"] = str(tmp_path / "state")
    return cli


def test_nvml_agrees_with_nvidia_smi() -> None:
    smi = probe_smi()
    assert [g.uuid for g in INVENTORY.gpus] == [g.uuid for g in smi.gpus]
    assert [g.pci_bus_id.lower()[-12:] for g in INVENTORY.gpus] == [g.pci_bus_id.lower()[-12:] for g in smi.gpus]
    assert all(g.cpu_affinity for g in INVENTORY.gpus), "NVML gave no CPU affinity"
    record("nvml_vs_smi", {"gpus": [{"index": g.index, "name": g.name, "uuid": g.uuid, "pci": g.pci_bus_id,
                                     "memory_total_mib": g.memory_total_mib, "cpus": len(g.cpu_affinity or ())}
                                    for g in INVENTORY.gpus],
                           "driver": INVENTORY.driver_version, "cuda": INVENTORY.cuda_driver_version})


MODES = [["--cpu"], ["--single", "0"], ["--auto"]]
if GPUS >= 2:
    MODES += [["--dual"], ["--single", "1"], ["--gpus", "1,0"], ["--multi"]]


@pytest.mark.parametrize("mode", MODES, ids=lambda m: " ".join(m))
def test_torch_sees_exactly_the_selection(real_cli: Cli, mode: list[str]) -> None:
    python = COMFYUI_PYTHON or os.environ.get("COMFYRIG_TORCH_PYTHON") or "python3"
    result = real_cli("gpus", "--json", "--torch-check", "--python", python, *mode, timeout=180)
    report = json.loads(result.stdout)
    torch = report["torch"]
    record("torch_check", {"mode": " ".join(mode), "cuda_visible_devices": report["cuda_visible_devices"], "torch": torch})
    assert result.returncode == 0 and torch["ok"], torch
    selected = [g for g in report["gpus"] if g["selected"]]
    assert torch["device_count"] == len([g for g in report["gpus"] if g["selected"]]) or report["mode"] == "cpu"
    # cuda:N in torch is the N-th GPU of the selection, by UUID.
    order = [int(i) for i in report["cuda_visible_devices"].split(",") if i] if report["mode"] != "cpu" else []
    for cuda_index, physical in enumerate(order):
        nvml_uuid = INVENTORY.gpus[physical].uuid.removeprefix("GPU-")
        torch_uuid = torch["devices"][cuda_index].get("uuid", "")
        if torch_uuid:
            assert torch_uuid.removeprefix("GPU-") == nvml_uuid
    assert len(selected) == len(order)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _gpu_pids() -> dict[int, set[int]]:
    """Physical GPU index -> pids with a context on it, right now."""
    return {g.index: {p.pid for p in g.processes} for g in _inventory().gpus}


def _descendants(pid: int) -> set[int]:
    found = {pid}
    out = subprocess.run(["ps", "-eo", "pid,ppid"], capture_output=True, text=True, check=True).stdout.splitlines()[1:]
    pairs = [tuple(int(x) for x in line.split()) for line in out if line.strip()]
    changed = True
    while changed:
        changed = False
        for child, parent in pairs:
            if parent in found and child not in found:
                found.add(child)
                changed = True
    return found


def _launch(real_cli: Cli, *args: str) -> tuple[Launched, list[int]]:
    port = _free_port()
    argv = ["launch", "--plain", "--comfyui-dir", str(COMFYUI_DIR), "--python", str(COMFYUI_PYTHON),
            "--port", str(port), "--log-dir", str(real_cli.cwd / "logs"), *args]
    launched = Launched(argv, real_cli.env, real_cli.cwd)
    launched.default_timeout = 240
    return launched, [port]


def _comfy_pids(launched: Launched) -> list[int]:
    return [int(p) for p in re.findall(r"started pid (\d+)", launched.text)]


@needs_comfyui
@pytest.mark.comfyui
@pytest.mark.parametrize(
    ("mode", "expect_on"),
    [(["--cpu"], []), (["--single", "0"], [0])]
    + ([(["--single", "1"], [1]), (["--gpus", "1,0"], [1]), (["--dual"], [0])] if GPUS >= 2 else []),
    ids=lambda v: " ".join(v) if isinstance(v, list) and v and isinstance(v[0], str) else str(v),
)
def test_real_comfyui_runs_on_the_chosen_gpu(real_cli: Cli, mode: list[str], expect_on: list[int]) -> None:
    """Where ComfyUI's CUDA context lives: cuda:0 must be the first GPU of the selection."""
    launched, (port,) = _launch(real_cli, *mode)
    try:
        launched.wait_for("READY")
        pids = _descendants(_comfy_pids(launched)[0])
        # ComfyUI creates its CUDA context while starting; NVML lists it per GPU.
        on = wait_until(lambda: sorted(i for i, ps in _gpu_pids().items() if ps & pids) or (expect_on == [] and ["none"]), 30,
                        "ComfyUI's CUDA context")
        on = [] if on == ["none"] else on
        import urllib.request

        stats = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/system_stats", timeout=10).read())
        record("real_comfyui_mode", {"mode": " ".join(mode), "gpus_with_comfyui_context": on,
                                     "system_stats_device": stats["devices"][0]["name"],
                                     "ready_line": next(line for line in launched.lines if "READY" in line)})
        assert on == expect_on
        if "--dual" in mode:
            assert "No multi-GPU node pack is loaded" in launched.text or "ComfyUI-MultiGPU is loaded" in launched.text
    finally:
        launched.interrupt()
        assert launched.wait(timeout=60) == 0


@needs_comfyui
@needs_two
@pytest.mark.comfyui
def test_real_workers_each_on_its_own_gpu(real_cli: Cli) -> None:
    launched, _ = _launch(real_cli, "--workers", "--gpus", "0,1")
    try:
        launched.wait_for("READY", count=2)
        comfy = _comfy_pids(launched)
        assert len(comfy) == 2
        placement = {}
        for pid in comfy:
            tree = _descendants(pid)
            on = wait_until(lambda tree=tree: sorted(i for i, ps in _gpu_pids().items() if ps & tree), 30, f"pid {pid} on a GPU")
            placement[pid] = on
            cpus = Path(f"/proc/{pid}/status").read_text().split("Cpus_allowed_list:")[1].split()[0]
            record("real_worker", {"pid": pid, "gpus": on, "cpus_allowed": cpus})
        assert sorted(tuple(v) for v in placement.values()) == [(0,), (1,)]
    finally:
        launched.interrupt()
        assert launched.wait(timeout=60) == 0
    status = real_cli("status", "--json")
    assert json.loads(status.stdout)["instances"] == []
