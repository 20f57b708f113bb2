from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import run_cli
from tests.conftest import Stub

Capture = pytest.CaptureFixture[str]


def test_once_json_with_an_instance(fake_gpus: dict[str, Any], comfy_stub: Stub, capsys: Capture) -> None:
    comfy_stub.state.queue_remaining = 4
    code, out, _ = run_cli(capsys, "monitor", "--once", "--json", "--url", comfy_stub.url)
    assert code == 0
    data = json.loads(out)
    assert data["source"] == "simulated"
    assert [g["utilization_pct"] for g in data["gpus"]] == [45, None]
    assert data["gpus"][0]["owner_ports"] == [8188]
    assert data["instances"] == [
        {"url": comfy_stub.url, "state": "up", "running": 1, "pending": 3, "last_error": None, "port": comfy_stub.port,
         "label": None}
    ]
    assert data["host"]["cpu_count"] >= 1
    assert comfy_stub.state.requests == ["/prompt"]


def test_default_instance_only_if_it_answers(fake_gpus: dict[str, Any], capsys: Capture) -> None:
    code, out, _ = run_cli(capsys, "monitor", "--once", "--json")
    data = json.loads(out)
    assert code == 0 and data["instances"] == []
    assert data["notes"][0].startswith("No ComfyUI answers at http://127.0.0.1:")


def test_default_instance_is_the_configured_port(
    fake_gpus: dict[str, Any], comfy_stub: Stub, capsys: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COMFYUI_PORT", str(comfy_stub.port))
    _, out, _ = run_cli(capsys, "monitor", "--once", "--json")
    assert [i["url"] for i in json.loads(out)["instances"]] == [comfy_stub.url]


def test_default_is_every_instance_comfyrig_started(
    fake_gpus: dict[str, Any], comfy_stub: Stub, capsys: Capture, tmp_path: Path
) -> None:
    # A fleet of two recorded workers (one stands in for both: same stub, two ports recorded),
    # and one record whose process is gone: watched are the two that run.
    import os

    from comfyrig.host.processes import cmdline, start_time
    from comfyrig.launch.registry import InstanceRecord, state_dir

    state = state_dir(os.environ)
    me = cmdline(os.getpid()) or []
    for name, port, pid in (("worker-0", comfy_stub.port, os.getpid()), ("worker-1", 1, 2**22 + 7)):
        state.write(InstanceRecord(name=name, port=port, url=f"http://127.0.0.1:{port}", pid=pid, pgid=os.getpgid(os.getpid()),
                                   argv=me, cwd=None, cuda_visible_devices="0", mode="single", log_file=None,
                                   supervisor_pid=os.getpid(), started_at=0.0, owner="batch", start_ticks=start_time(pid)))
    _, out, _ = run_cli(capsys, "monitor", "--once", "--json")
    assert [i["url"] for i in json.loads(out)["instances"]] == [comfy_stub.url]
    _, out, _ = run_cli(capsys, "monitor", "--once", "--json", "--port", "9")  # --port: that one only
    assert json.loads(out)["instances"] == []


def test_json_lines_per_tick(fake_gpus: dict[str, Any], capsys: Capture) -> None:
    code, out, _ = run_cli(capsys, "monitor", "--json", "--count", "2", "--interval", "0.25")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 2
    assert [json.loads(line)["tick"] for line in lines] == [0, 1]


def test_dmon_and_csv(fake_gpus: dict[str, Any], capsys: Capture, tmp_path: Path) -> None:
    csv_file = tmp_path / "rec.csv"
    code, out, _ = run_cli(capsys, "monitor", "--dmon", "--once", "--csv", str(csv_file))
    lines = out.splitlines()
    assert code == 0
    assert lines[0].startswith("#Time") and len(lines) == 4
    assert lines[2].split()[1:] == ["0", "250", "65", "45", "20", "12288", "9501", "1980"]
    assert len(csv_file.read_text().splitlines()) == 3


def test_once_live_view_text(fake_gpus: dict[str, Any], capsys: Capture) -> None:
    code, out, _ = run_cli(capsys, "monitor", "--once")
    assert code == 0
    assert "GeForce RTX 3090" in out and "GPU processes" in out and "python main.py --port 8188" in out
    assert "No ComfyUI answers" in out


def test_live_mode_runs_and_stops(fake_gpus: dict[str, Any], capsys: Capture) -> None:
    code, out, _ = run_cli(capsys, "monitor", "--count", "2", "--interval", "0.25")
    assert code == 0 and "GeForce RTX 3090" in out


def test_no_gpu_at_all(clean_env: pytest.MonkeyPatch, capsys: Capture) -> None:
    from comfyrig.monitor.sampler import NoGpuSampler

    why = "No NVIDIA GPU or driver found: NVML could not start: Driver Not Loaded."
    clean_env.setattr("comfyrig.cli.monitor_cmd.open_sampler", lambda fake: NoGpuSampler(why))
    code, out, _ = run_cli(capsys, "monitor", "--once")
    assert code == 0 and "No GPU to show: No NVIDIA GPU or driver found" in out and "CPU" in out and "RAM" in out
    code, out, err = run_cli(capsys, "monitor", "--dmon", "--once")
    assert code == 0 and out.startswith("#Time") and "no GPU to show: No NVIDIA GPU" in err
    code, out, _ = run_cli(capsys, "monitor", "--json", "--once")
    data = json.loads(out)
    assert data["gpus"] == [] and data["source"] == "none" and data["problem"].startswith("No NVIDIA GPU")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--interval", "0.1"], "at least 0.25"),
        (["--json", "--dmon"], "--json or --dmon, not both"),
        (["--plot", "x.csv", "--once"], "does not take --once"),
        (["--url", "ftp://x"], "is not the URL of a ComfyUI"),
    ],
)
def test_bad_flags_are_one_paragraph_errors(fake_gpus: dict[str, Any], capsys: Capture, args: list[str], message: str) -> None:
    code, _out, err = run_cli(capsys, "monitor", *args)
    assert code == 2
    assert message in " ".join(err.split())
    assert "Traceback" not in err


def test_plot_without_matplotlib(fake_gpus: dict[str, Any], capsys: Capture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    csv_file = tmp_path / "rec.csv"
    run_cli(capsys, "monitor", "--once", "--json", "--csv", str(csv_file))
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code, _, err = run_cli(capsys, "monitor", "--plot", str(csv_file))
    assert code == 2
    assert "pip install 'comfyrig[plot]'" in err
