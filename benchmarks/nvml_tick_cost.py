"""CPU cost of one monitor tick's NVML queries, with handles kept vs NVML re-initialised each tick.

Standalone (only pynvml), so it runs on a GPU machine without comfyrig
installed. It makes exactly the calls of comfyrig.host.gpus.nvml.NvmlDevice.reading()
per GPU: memory, utilisation, power and its limit, temperature, SM and memory
clocks, compute and graphics processes.

    python benchmarks/nvml_tick_cost.py
"""

from __future__ import annotations

import time
from typing import Any

import pynvml as n


def q(f: Any, *a: Any) -> Any:
    try:
        return f(*a)
    except n.NVMLError as e:
        return "ERR:" + str(e)


def tick(handles: list[Any]) -> list[tuple[Any, ...]]:
    return [
        (
            q(n.nvmlDeviceGetMemoryInfo, x),
            q(n.nvmlDeviceGetUtilizationRates, x),
            q(n.nvmlDeviceGetPowerUsage, x),
            q(n.nvmlDeviceGetEnforcedPowerLimit, x),
            q(n.nvmlDeviceGetTemperature, x, n.NVML_TEMPERATURE_GPU),
            q(n.nvmlDeviceGetClockInfo, x, n.NVML_CLOCK_SM),
            q(n.nvmlDeviceGetClockInfo, x, n.NVML_CLOCK_MEM),
            q(n.nvmlDeviceGetComputeRunningProcesses, x),
            q(n.nvmlDeviceGetGraphicsRunningProcesses, x),
        )
        for x in handles
    ]


def main() -> None:
    t = time.process_time()
    n.nvmlInit()
    handles = [n.nvmlDeviceGetHandleByIndex(i) for i in range(n.nvmlDeviceGetCount())]
    init = time.process_time() - t
    print(n.nvmlSystemGetDriverVersion(), n.nvmlSystemGetCudaDriverVersion(), n.nvmlDeviceGetName(handles[0]))
    for value in tick(handles)[0]:
        print(repr(value)[:200])
    rounds = 300
    t, w = time.process_time(), time.perf_counter()
    for _ in range(rounds):
        tick(handles)
    cpu, wall = (time.process_time() - t) / rounds, (time.perf_counter() - w) / rounds
    print(f"init+handles {init * 1e3:.1f} ms cpu; per tick, handles kept: {cpu * 1e3:.3f} ms cpu, "
          f"{wall * 1e3:.3f} ms wall, {len(handles)} GPU(s)")
    t = time.process_time()
    for _ in range(20):
        n.nvmlShutdown()
        n.nvmlInit()
        handles = [n.nvmlDeviceGetHandleByIndex(i) for i in range(n.nvmlDeviceGetCount())]
        tick(handles)
    print(f"per tick, NVML re-initialised each tick: {(time.process_time() - t) / 20 * 1e3:.2f} ms cpu")
    n.nvmlShutdown()


if __name__ == "__main__":
    main()
