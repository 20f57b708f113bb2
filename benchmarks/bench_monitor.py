"""CPU cost of ``comfyrig monitor``: 8 GPUs + 4 ComfyUI instances refreshed at 1 Hz.

Target: under 2 % of one core. Each tick does what the live view does:
sample the GPUs, poll every instance (one GET /prompt each), record the
sparkline history and render the whole view to a 120-column colour terminal
(here a string). The instances are served by benchmarks/stub_comfyui.py in
another process, so only the monitor's own CPU time is measured (all its
threads, from time.process_time).

    python benchmarks/bench_monitor.py [--seconds 60] [--source simulated|nvml]

--source nvml samples this machine's real GPUs through NVML instead of 8
simulated ones. Results are appended to benchmarks/results/monitor.txt.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from machine import cpu_model  # the sibling module (scripts run from this folder)
from rich.console import Console

from comfyrig.monitor.collect import Monitor, run_ticks
from comfyrig.monitor.history import History
from comfyrig.monitor.instances import InstancePoller
from comfyrig.monitor.sampler import GpuSampler, NvmlSampler, SimulatedSampler
from comfyrig.monitor.snapshot import Snapshot
from comfyrig.ui.monitor_view import monitor_view

ROOT = Path(__file__).resolve().parent


def simulated(count: int, ports: list[int]) -> SimulatedSampler:
    gpus = [
        {
            "name": "NVIDIA H100 80GB HBM3",
            "memory_total_mib": 81559,
            "memory_used_mib": 20000 + 1000 * i,
            "power_limit_w": 700,
            "vary": True,
            "processes": [{"pid": 1000 + i, "used_memory_mib": 20000, "user": "bench", "command": "python main.py",
                           "port": ports[i % len(ports)]}],
        }
        for i in range(count)
    ]
    return SimulatedSampler({"driver_version": "580.00", "cuda_driver_version": "13.0", "gpus": gpus})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--instances", type=int, default=4)
    parser.add_argument("--source", choices=("simulated", "nvml"), default="simulated")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "monitor.txt")
    args = parser.parse_args()

    stub = subprocess.Popen(
        [sys.executable, str(ROOT / "stub_comfyui.py"), "--count", str(args.instances)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert stub.stdout is not None
        ports = [int(p) for p in stub.stdout.readline().split()[1].split(",")]
        urls = [f"http://127.0.0.1:{p}" for p in ports]
        sampler: GpuSampler = NvmlSampler() if args.source == "nvml" else simulated(args.gpus, ports)
        monitor = Monitor(sampler, poller=InstancePoller(urls))
        history = History(interval=args.interval)
        screen = io.StringIO()
        console = Console(file=screen, width=120, force_terminal=True, color_system="truecolor")
        gpu_count = len(sampler.sample(0))

        def show(snapshot: Snapshot) -> None:
            history.record(snapshot)
            screen.seek(0)
            screen.truncate()
            console.print(monitor_view(snapshot, history.trends()))
            assert all(i.state == "up" for i in snapshot.instances), snapshot.instances

        # The first tick pays for lazy imports and connection set-up; measure the steady state.
        run_ticks(monitor, args.interval, show, ticks=1)
        ticks = max(int(args.seconds / args.interval), 1)
        wall0, cpu0 = time.perf_counter(), time.process_time()
        run_ticks(monitor, args.interval, show, ticks=ticks)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        monitor.close()
    finally:
        stub.terminate()
        stub.wait(timeout=10)

    # Per second of monitoring: the loop does not sleep after its last tick.
    share = 100.0 * cpu / (ticks * args.interval)
    verdict = "PASS" if share < 2.0 else "FAIL"
    report = (
        f"{time.strftime('%Y-%m-%d %H:%M:%S')}  bench_monitor  {verdict} (target < 2% of one core)\n"
        f"  machine: {platform.node()}, {cpu_model()}, {os.cpu_count()} CPUs, Python {platform.python_version()}\n"
        f"  source: {args.source}, {gpu_count} GPUs, {len(urls)} instances (stub ComfyUI on loopback), "
        f"interval {args.interval} s, {ticks} ticks in {wall:.1f} s\n"
        f"  monitor CPU: {cpu:.3f} s = {share:.2f}% of one core, {1000 * cpu / ticks:.1f} ms per tick\n"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a", encoding="utf-8") as f:
        f.write(report + "\n")
    sys.stdout.write(report)
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
