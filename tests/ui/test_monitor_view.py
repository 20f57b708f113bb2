from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from typing import Any

import pytest

from comfyrig.monitor.history import Trend
from comfyrig.monitor.sampler import SimulatedSampler
from comfyrig.monitor.snapshot import HostSample, InstanceSample, Snapshot
from comfyrig.ui.monitor_view import bar, dmon_header, dmon_line, monitor_view, sparkline
from tests.conftest import render

HOST = HostSample(cpu_pct=12.5, cpu_count=16, ram_used_mib=10445, ram_total_mib=64302)
T0 = 1_700_000_000.0  # 22:13:20 UTC


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def snapshot(data: dict[str, Any], **changes: Any) -> Snapshot:
    sampler = SimulatedSampler(data)
    base = Snapshot(time=T0, tick=0, source="simulated", gpus=sampler.sample(0), host=HOST, driver_version="550.54")
    return dataclasses.replace(base, **changes)


INSTANCES = (
    InstanceSample("http://127.0.0.1:8188", "up", running=1, pending=3, port=8188),
    InstanceSample(
        "http://127.0.0.1:8189", "down", last_error="22:13:19 /prompt: nothing answers (connection refused).", port=8189
    ),
)

FULL = """\
comfyrig monitor · 22:13:20 · 2 GPUs via simulated (COMFYRIG_FAKE_GPUS) · driver 550.54 · CPU 12% of
16 cores · RAM 10.2/62.8 GiB
  #  GPU                    util           memory GiB           temp    power W  SM/mem MHz  ComfyUI
 ───────────────────────────────────────────────────────────────────────────────────────────────────
  0  GeForce RTX 3090       ████░░░░  45%  ████░░░░ 12.0/24.0   65°C    250/350   1980/9501  :8188
                            ▁▅█            ▅▅▅
  1  GeForce RTX 3090                 N/A  ░░░░░░░░  0.0/24.0    N/A        N/A         N/A  -
                                           ▁▁▁

GPU processes
 GPU      pid  user           memory  command
 ───────────────────────────────────────────────────────────────────────────────────────────────────
   0     4242  alice       12000 MiB  python main.py --port 8188

ComfyUI instances
 URL                    state  running  pending  GPUs   last error
 ───────────────────────────────────────────────────────────────────────────────────────────────────
 http://127.0.0.1:8188  up           1        3  0
 http://127.0.0.1:8189  down         -        -  -      22:13:19 /prompt: nothing answers (connecti…
"""


def test_full_view_at_100_columns(two_3090: dict[str, Any]) -> None:
    trends = {
        "GPU-5a5a5a5a-0000-4000-8000-000000000000": Trend((0.0, 50.0, 100.0), (50.0, 50.0, 50.0)),
        "GPU-5a5a5a5a-0000-4000-8000-000000000001": Trend((None, None, None), (0.0, 0.0, 0.0)),
    }
    assert render(monitor_view(snapshot(two_3090, instances=INSTANCES), trends)) + "\n" == FULL


def test_narrow_terminal_drops_clocks_not_names(two_3090: dict[str, Any]) -> None:
    text = render(monitor_view(snapshot(two_3090)), width=80)
    assert "SM/mem MHz" not in text
    assert "GeForce" in text and ":8188" in text and "250" in text
    assert max(len(line) for line in text.splitlines()) <= 80


def test_no_gpu_shows_host_and_why() -> None:
    snap = Snapshot(time=T0, tick=0, source="none", gpus=(), host=HOST, problem="No NVIDIA GPU or driver found: NVML could not start: Driver Not Loaded.")
    text = render(monitor_view(snap))
    assert text == (
        "comfyrig monitor · 22:13:20 · 0 GPUs via no driver · CPU 12% of 16 cores · RAM 10.2/62.8 GiB\n"
        "No GPU to show: No NVIDIA GPU or driver found: NVML could not start: Driver Not Loaded. Showing CPU\n"
        "and RAM only."
    )


def test_notes_are_shown(two_3090: dict[str, Any]) -> None:
    text = render(monitor_view(snapshot(two_3090, notes=("No ComfyUI answers at http://127.0.0.1:8188.",))))
    assert text.splitlines()[-1] == "No ComfyUI answers at http://127.0.0.1:8188."


def test_bar_and_sparkline() -> None:
    assert bar(50, 10).plain == "█████░░░░░"
    assert bar(None, 4).plain == "    "
    assert bar(150, 4).plain == "████"
    assert sparkline([0, 100, None, 50]) == "▁█ ▅"
    assert sparkline([]) == ""
    # 40 points in 4 buckets: averages 10, 30, 60, 90.
    values = [10.0] * 10 + [30.0] * 10 + [60.0] * 10 + [90.0] * 10
    assert sparkline(values, width=4) == "▂▃▅▇"


def test_dmon_format(two_3090: dict[str, Any]) -> None:
    snap = snapshot(two_3090)
    lines = dmon_header() + [dmon_line(snap, gpu) for gpu in snap.gpus]
    assert lines == [
        "#Time       gpu   pwr gtemp    sm   mem    fb  mclk  pclk",
        "#HH:MM:SS   Idx     W     C     %     %   MiB   MHz   MHz",
        " 22:13:20     0   250    65    45    20 12288  9501  1980",
        " 22:13:20     1     -     -     -     -     0     -     -",
    ]


def test_cluster_workers_show_what_they_are_and_their_node(two_3090: dict[str, Any]) -> None:
    labelled = (
        InstanceSample("http://127.0.0.1:8188", "up", running=1, pending=3, port=8188, label="gateway (Ray 10.0.0.1:6379)"),
        InstanceSample("http://10.0.0.3:40002", "up", running=1, pending=0, port=40002, label="ray-1 on w1 10.0.0.3 bbbbbbbbbbbb"),
    )
    lines = render(monitor_view(snapshot(two_3090, instances=labelled)), width=120).splitlines()
    header = next(line for line in lines if line.lstrip().startswith("URL"))
    assert header.split()[:3] == ["URL", "what", "state"]
    assert any("http://10.0.0.3:40002" in line and "ray-1 on w1 10.0.0.3 bbbbbbbbbbbb" in line for line in lines)
    # Without labels the table is as it was (no empty column).
    assert "what" not in render(monitor_view(snapshot(two_3090, instances=INSTANCES)))
